package changes

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/serversage/sage/internal/fim"
)

// collector is the Grouper's Append for tests.
type collector struct {
	mu   sync.Mutex
	evs  []Event
	fail error
}

func (c *collector) append(evs []Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	c.evs = append(c.evs, evs...)
	return nil
}

func (c *collector) events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.evs)
}

func TestGrouperFixture(t *testing.T) {
	root := dpkgFixtureRoot(t)
	upgrade := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	writeTree(t, root, map[string]string{
		"var/log/dpkg.log": "2026-11-22 03:00:00 upgrade libfoo:amd64 1.9 2.0\n2026-11-22 03:00:00 status half-installed libfoo:amd64 1.9\n" +
			"2026-11-22 03:00:01 status installed libfoo:amd64 2.0\n",
		"usr/bin/tool":                "evil\n", // not what the package recorded
		"usr/share/tool/data.distrib": "data\n", // what it recorded
		"etc/tool.conf":               "conf edited\n",
	})
	col := &collector{}
	g := NewGrouper(GrouperOptions{Config: Config{RootPath: root, Host: "h"}, Append: col.append, Location: time.UTC})
	g.now = func() time.Time { return upgrade.Add(time.Hour) }
	if err := g.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	file := &fim.Entry{Type: fim.TypeFile, Mode: syscall.S_IFREG | 0o644, Size: 5, HasHash: true}
	exe := &fim.Entry{Type: fim.TypeFile, Mode: syscall.S_IFREG | 0o4755, Size: 5, HasHash: true}
	later := upgrade.Add(30 * time.Minute)
	events := []fim.Event{
		{Time: later, Path: root + "/usr/bin/tool", Kind: fim.ContentChanged, Changed: []string{fim.AttrHash, fim.AttrMtime}, Old: file, New: file},
		{Time: upgrade.Add(500 * time.Millisecond), Path: root + "/usr/lib/libfoo.so", Kind: fim.ContentChanged, Changed: []string{fim.AttrHash}, Old: file, New: file},
		{Time: upgrade.Add(time.Second), Path: root + "/usr/bin/tool.foo", Kind: fim.Deleted, Old: file},
		{Time: upgrade.Add(time.Second), Path: root + "/usr/lib/libfoo.so.dpkg-new", Kind: fim.Created, New: file},
		{Time: later, Path: root + "/etc/tool.conf", Kind: fim.ContentChanged, Changed: []string{fim.AttrHash}, Old: file, New: file},
		{Time: later, Path: root + "/usr/share/tool/data.distrib", Kind: fim.ContentChanged, Changed: []string{fim.AttrHash}, Old: file, New: file},
		{Time: later, Path: root + "/srv/unowned", Kind: fim.Created, New: file},
		{Time: later, Path: root + "/usr/bin/tool", Kind: fim.AttributesChanged, Changed: []string{fim.AttrMode, fim.AttrCtime}, Old: file, New: exe},
	}
	for _, ev := range events {
		if err := g.Emit(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[string]Event{}
	for _, e := range col.events() {
		k := e.Object
		if e.Kind == KindFiles && e.Action == Changed && e.Object == root+"/usr/bin/tool" && !e.Tampered {
			k += " attrs"
		}
		if _, dup := got[k]; dup {
			t.Errorf("two events for %s", k)
		}
		got[k] = e
		t.Logf("%s", e.Summary())
	}
	if len(got) != 6 {
		t.Errorf("want 6 events, got %d", len(got))
	}
	check := func(name string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("%s: %+v", name, got)
		}
	}
	tm := got[root+"/usr/bin/tool"]
	check("tampered binary", tm.Tampered && tm.After["package"] == "tool:amd64" && tm.After["expected_md5"] == md5hex("tool binary\n") && tm.After["actual_md5"] == md5hex("evil\n"))
	lib := got["package libfoo:amd64"]
	check("upgrade grouped", lib.Kind == KindFiles && lib.Action == Changed && lib.Before["version"] == "1.9" && lib.After["version"] == "2.0" &&
		lib.After["files_changed"] == "2" && slices.Equal(lib.Files, []string{root + "/usr/bin/tool.foo", root + "/usr/lib/libfoo.so"}) && !lib.Time.After(upgrade.Add(time.Second)))
	restored := got["package tool:amd64"]
	check("restored by checksum", restored.After["verified"] == "checksum" && restored.After["version"] == "1.0-1" && slices.Equal(restored.Files, []string{root + "/usr/share/tool/data.distrib"}))
	conf := got[root+"/etc/tool.conf"]
	check("conffile edit is plain", conf.Kind == KindFiles && conf.Action == Changed && !conf.Tampered)
	check("unowned is plain", got[root+"/srv/unowned"].Action == Added && got[root+"/srv/unowned"].After["mode"] == "-rw-r--r--")
	attrs := got[root+"/usr/bin/tool attrs"]
	check("chmod is plain", attrs.Before["mode"] == "-rw-r--r--" && attrs.After["mode"] == "urwxr-xr-x" && attrs.After["ctime"] == "")
	if s := g.Stats(); s.Tampered != 1 || g.Tampered() != 1 || s.Grouped != 4 || s.PackageEvents != 2 || s.Plain != 4 || s.Held != 0 {
		t.Errorf("stats: %+v", s)
	}
}

// TestGrouperTimers drives the timers by hand: an event waits Settle, a group waits Grace after its
// last file and for dpkg to finish.
func TestGrouperTimers(t *testing.T) {
	root := dpkgFixtureRoot(t)
	start := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	logPath := filepath.Join(root, "var/log/dpkg.log")
	writeTree(t, root, map[string]string{"var/log/dpkg.log": "2026-11-22 03:00:00 upgrade libfoo:amd64 1.9 2.0\n"})
	col := &collector{}
	g := NewGrouper(GrouperOptions{Config: Config{RootPath: root}, Append: col.append, Location: time.UTC, Settle: 2 * time.Second, Grace: 10 * time.Second})
	now := start
	g.now = func() time.Time { return now }
	g.loopOnce.Do(func() {}) // the test is the clock
	if err := g.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	g.Emit(fim.Event{Time: start, Path: root + "/usr/lib/libfoo.so", Kind: fim.Deleted, Old: &fim.Entry{Type: fim.TypeFile}})
	g.Emit(fim.Event{Time: start, Path: root + "/srv/x", Kind: fim.Deleted, Old: &fim.Entry{Type: fim.TypeFile}})
	steps := []struct {
		after     time.Duration
		appendLog string
		emit      bool
		want      int
	}{
		{after: time.Second},     // not settled
		{after: 3 * time.Second}, // settled, but dpkg is busy: nothing is classified
		// dpkg is done: the plain event goes, and the group, whose last file came 20 s ago.
		{after: 20 * time.Second, appendLog: "2026-11-22 03:00:15 status installed libfoo:amd64 2.0\n", emit: true, want: 2},
		{after: 25 * time.Second, want: 2}, // the file emitted at +20 s is in a new group, waiting Grace
		{after: 31 * time.Second, want: 3},
	}
	for i, s := range steps {
		if s.appendLog != "" {
			f, _ := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString(s.appendLog)
			f.Close()
		}
		now = start.Add(s.after)
		g.process(t.Context(), false)
		if s.emit {
			g.Emit(fim.Event{Time: now, Path: root + "/usr/bin/tool.foo", Kind: fim.Deleted, Old: &fim.Entry{Type: fim.TypeFile}})
		}
		if n := len(col.events()); n != s.want {
			t.Fatalf("step %d (+%v): %d events, want %d: %+v", i, s.after, n, s.want, col.events())
		}
	}
	evs := col.events()
	if evs[0].Object != root+"/srv/x" || evs[len(evs)-1].Object != "package libfoo:amd64" || evs[len(evs)-1].Action != Changed {
		t.Errorf("events: %+v", evs)
	}
}

// TestGrouperAppendFails keeps the events when the journal cannot take them, and delivers them once
// it can.
func TestGrouperAppendFails(t *testing.T) {
	col := &collector{fail: errors.New("disk full")}
	g := NewGrouper(GrouperOptions{Config: Config{RootPath: t.TempDir()}, Append: col.append})
	g.loopOnce.Do(func() {})
	g.Emit(fim.Event{Time: time.Now(), Path: "/x", Kind: fim.Created, New: &fim.Entry{Type: fim.TypeDir, Mode: syscall.S_IFDIR | 0o755}})
	if err := g.Flush(t.Context()); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("flush: %v", err)
	}
	col.mu.Lock()
	col.fail = nil
	col.mu.Unlock()
	if err := g.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if evs := col.events(); len(evs) != 1 || evs[0].After["mode"] != "drwxr-xr-x" || evs[0].After["type"] != "directory" {
		t.Fatalf("events: %+v", evs)
	}
	if s := g.Stats(); s.OutErrors != 1 || s.Dropped != 0 {
		t.Errorf("stats: %+v", s)
	}
}

func TestFromFIM(t *testing.T) {
	at := time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)
	var sum [32]byte
	sum[0] = 0xab
	a := &fim.Entry{Type: fim.TypeFile, Size: 3, Mode: syscall.S_IFREG | 0o644, UID: 0, GID: 0, Mtime: at.UnixNano(), HasHash: true}
	b := &fim.Entry{Type: fim.TypeFile, Size: 4, Mode: syscall.S_IFREG | 0o600, UID: 1000, GID: 0, Mtime: at.UnixNano(), HasHash: true, SHA256: sum}
	l := &fim.Entry{Type: fim.TypeSymlink, Mode: syscall.S_IFLNK | 0o777, Link: "/etc/x"}
	tests := []struct {
		name          string
		ev            fim.Event
		action        string
		before, after Object
	}{
		{"created", fim.Event{Kind: fim.Created, New: l}, Added, nil,
			Object{"type": "symlink", "mode": "Lrwxrwxrwx", "uid": "0", "gid": "0", "mtime": "1970-01-01T00:00:00Z", "link_target": "/etc/x"}},
		{"deleted", fim.Event{Kind: fim.Deleted, Old: a}, Removed,
			Object{"type": "file", "size": "3", "mode": "-rw-r--r--", "uid": "0", "gid": "0", "mtime": "2026-11-22T01:02:03Z", "sha256": "0000000000000000"}, nil},
		{"changed", fim.Event{Kind: fim.ContentChanged, Changed: []string{"size", "mode", "uid", "sha256", "ctime"}, Old: a, New: b}, Changed,
			Object{"size": "3", "mode": "-rw-r--r--", "uid": "0", "sha256": "0000000000000000"},
			Object{"size": "4", "mode": "-rw-------", "uid": "1000", "sha256": "ab00000000000000"}},
		{"ctime only", fim.Event{Kind: fim.AttributesChanged, Changed: []string{"ctime"}, Old: a, New: a}, Changed,
			Object{"ctime": "1970-01-01T00:00:00Z"}, Object{"ctime": "1970-01-01T00:00:00Z"}},
	}
	for _, tc := range tests {
		tc.ev.Path, tc.ev.Time = "/etc/f", at
		e := FromFIM(tc.ev, "h")
		if e.Kind != KindFiles || e.Object != "/etc/f" || e.Host != "h" || !e.Time.Equal(at) || e.Action != tc.action ||
			!equalObj(e.Before, tc.before) || !equalObj(e.After, tc.after) {
			t.Errorf("%s: got %+v", tc.name, e)
		}
	}
}

func equalObj(a, b Object) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
