package fim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recorder is a Sink that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []Event
	fail   error
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1000)} }

func (r *recorder) Emit(e Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.events = append(r.events, e)
	select {
	case r.notify <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) take() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newMonitor(t *testing.T, root string, rec Sink, mod func(*Config)) *Monitor {
	t.Helper()
	cfg := Config{StateDir: filepath.Join(t.TempDir(), "state"), Trees: []Tree{{Path: root, Exclude: []string{"*.swp", "^.*/cache(/.*)?"}}}}
	if mod != nil {
		mod(&cfg)
	}
	m, err := New(cfg, rec, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// want is an expected event: the attributes listed in has must be among Changed, those in not must not.
type want struct {
	kind Kind
	rel  string
	has  []string
	not  []string
}

func checkEvents(t *testing.T, root string, got []Event, wants []want) {
	t.Helper()
	var desc []string
	for _, e := range got {
		desc = append(desc, fmt.Sprintf("%s %s %v", e.Kind, e.Path, e.Changed))
	}
	if len(got) != len(wants) {
		t.Fatalf("got %d events, want %d:\n%s", len(got), len(wants), strings.Join(desc, "\n"))
	}
	sort.Slice(wants, func(i, j int) bool { return filepath.Join(root, wants[i].rel) < filepath.Join(root, wants[j].rel) })
	for i, w := range wants {
		e := got[i]
		if e.Kind != w.kind || e.Path != filepath.Join(root, w.rel) {
			t.Errorf("event %d: %s %s, want %s %s\nall:\n%s", i, e.Kind, e.Path, w.kind, filepath.Join(root, w.rel), strings.Join(desc, "\n"))
			continue
		}
		for _, a := range w.has {
			if !slices.Contains(e.Changed, a) {
				t.Errorf("%s %s: changed %v lacks %s", e.Kind, e.Path, e.Changed, a)
			}
		}
		for _, a := range w.not {
			if slices.Contains(e.Changed, a) {
				t.Errorf("%s %s: changed %v has %s", e.Kind, e.Path, e.Changed, a)
			}
		}
		if (e.Kind == Created) != (e.Old == nil) || (e.Kind == Deleted) != (e.New == nil) {
			t.Errorf("%s %s: old %v new %v", e.Kind, e.Path, e.Old, e.New)
		}
	}
}

var past = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func TestScanEvents(t *testing.T) {
	setup := func(t *testing.T, root string) {
		write(t, root+"/etc/a.conf", "alpha\n")
		write(t, root+"/etc/b.conf", "bravo\n")
		write(t, root+"/etc/sub/c.conf", "charlie\n")
		write(t, root+"/etc.txt", "sorts after etc/ in a walk\n")
		must(t, os.Symlink("a.conf", root+"/etc/link"))
		must(t, os.MkdirAll(root+"/cache", 0o755))
	}
	cases := []struct {
		name   string
		change func(t *testing.T, root string)
		want   []want
	}{
		{"nothing", func(t *testing.T, root string) {}, nil},
		{"create", func(t *testing.T, root string) { write(t, root+"/etc/new.conf", "x") },
			[]want{{kind: Created, rel: "etc/new.conf"}}},
		{"edit same size", func(t *testing.T, root string) {
			write(t, root+"/etc/a.conf", "ALPHA\n")
			must(t, os.Chtimes(root+"/etc/a.conf", past, past))
		}, []want{{kind: ContentChanged, rel: "etc/a.conf", has: []string{AttrHash, AttrMtime}, not: []string{AttrSize, AttrMode}}}},
		{"append", func(t *testing.T, root string) {
			f, err := os.OpenFile(root+"/etc/sub/c.conf", os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			f.WriteString("more\n")
			f.Close()
		}, []want{{kind: ContentChanged, rel: "etc/sub/c.conf", has: []string{AttrHash, AttrSize}}}},
		{"touch only", func(t *testing.T, root string) { must(t, os.Chtimes(root+"/etc/b.conf", past, past)) },
			[]want{{kind: AttributesChanged, rel: "etc/b.conf", has: []string{AttrMtime}, not: []string{AttrHash, AttrSize}}}},
		{"chmod", func(t *testing.T, root string) { must(t, os.Chmod(root+"/etc/b.conf", 0o600)) },
			[]want{{kind: AttributesChanged, rel: "etc/b.conf", has: []string{AttrMode}, not: []string{AttrHash, AttrMtime}}}},
		{"chmod setuid dir", func(t *testing.T, root string) { must(t, os.Chmod(root+"/etc/sub", 0o755|os.ModeSetgid)) },
			[]want{{kind: AttributesChanged, rel: "etc/sub", has: []string{AttrMode}}}},
		{"chown", func(t *testing.T, root string) {
			if os.Geteuid() != 0 {
				t.Skip("chown needs root")
			}
			must(t, os.Lchown(root+"/etc/b.conf", 65534, 65534))
		}, []want{{kind: AttributesChanged, rel: "etc/b.conf", has: []string{AttrUID, AttrGID}, not: []string{AttrHash}}}},
		{"delete", func(t *testing.T, root string) { must(t, os.Remove(root+"/etc/b.conf")) },
			[]want{{kind: Deleted, rel: "etc/b.conf"}}},
		{"delete tree", func(t *testing.T, root string) { must(t, os.RemoveAll(root+"/etc/sub")) },
			[]want{{kind: Deleted, rel: "etc/sub"}, {kind: Deleted, rel: "etc/sub/c.conf"}}},
		{"rename", func(t *testing.T, root string) { must(t, os.Rename(root+"/etc/b.conf", root+"/etc/z.conf")) },
			[]want{{kind: Deleted, rel: "etc/b.conf"}, {kind: Created, rel: "etc/z.conf"}}},
		{"replace by rename (editor save)", func(t *testing.T, root string) {
			write(t, root+"/etc/.a.tmp", "alpha\n")
			must(t, os.Rename(root+"/etc/.a.tmp", root+"/etc/a.conf"))
		}, []want{{kind: AttributesChanged, rel: "etc/a.conf", has: []string{AttrInode}, not: []string{AttrHash}}}},
		{"symlink retarget", func(t *testing.T, root string) {
			must(t, os.Remove(root+"/etc/link"))
			must(t, os.Symlink("b.conf", root+"/etc/link"))
		}, []want{{kind: ContentChanged, rel: "etc/link", has: []string{AttrLink}}}},
		{"file becomes symlink", func(t *testing.T, root string) {
			must(t, os.Remove(root+"/etc/b.conf"))
			must(t, os.Symlink("a.conf", root+"/etc/b.conf"))
		}, []want{{kind: ContentChanged, rel: "etc/b.conf", has: []string{AttrType, AttrLink}}}},
		{"new directory with files", func(t *testing.T, root string) {
			write(t, root+"/etc/d/1", "1")
			write(t, root+"/etc/d/2", "2")
		}, []want{{kind: Created, rel: "etc/d"}, {kind: Created, rel: "etc/d/1"}, {kind: Created, rel: "etc/d/2"}}},
		{"excluded", func(t *testing.T, root string) {
			write(t, root+"/etc/.a.conf.swp", "x")
			write(t, root+"/cache/x", "x")
		}, nil},
		{"fifo", func(t *testing.T, root string) { must(t, syscall.Mkfifo(root+"/etc/pipe", 0o600)) },
			[]want{{kind: Created, rel: "etc/pipe"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			setup(t, root)
			rec := newRecorder()
			m := newMonitor(t, root, rec, nil)
			res, err := m.Scan(context.Background())
			must(t, err)
			if !res.Initial || res.Hashed != 4 || len(rec.take()) != 0 {
				t.Fatalf("initial scan: %+v, want a baseline of 4 hashed files and no events", res)
			}
			tc.change(t, root)
			res, err = m.Scan(context.Background())
			must(t, err)
			if res.ErrorsN != 0 {
				t.Fatalf("scan errors: %v", res.Errors)
			}
			checkEvents(t, root, rec.take(), tc.want)
			// The change is in the new baseline: a second scan reports nothing and hashes nothing.
			res, err = m.Scan(context.Background())
			must(t, err)
			if ev := rec.take(); len(ev) != 0 || res.Hashed != 0 {
				t.Fatalf("rescan without change: %d events, %d hashed: %+v", len(ev), res.Hashed, ev)
			}
		})
	}
}

func TestNoChangeRescanHashesNothing(t *testing.T) {
	root := t.TempDir()
	for i := range 300 {
		write(t, fmt.Sprintf("%s/d%d/f%03d", root, i%7, i), strings.Repeat("x", i))
	}
	rec := newRecorder()
	m := newMonitor(t, root, rec, nil)
	res, err := m.Scan(context.Background())
	must(t, err)
	if res.Hashed != 300 || res.Entries != 308 {
		t.Fatalf("baseline: hashed %d, entries %d; want 300, 308", res.Hashed, res.Entries)
	}
	before := m.Metrics().Hashed
	fi1, err := os.Stat(m.trees[0].file)
	must(t, err)
	res, err = m.Scan(context.Background())
	must(t, err)
	// An unchanged tree's baseline is not rewritten (no fsync, no disk wear).
	fi2, err := os.Stat(m.trees[0].file)
	must(t, err)
	if !os.SameFile(fi1, fi2) {
		t.Error("the baseline file was replaced by a scan that found no change")
	}
	if res.Hashed != 0 || res.Events != 0 || m.Metrics().Hashed != before || res.Entries != 308 {
		t.Fatalf("no-change rescan: %+v, hashes %d -> %d", res, before, m.Metrics().Hashed)
	}
	met := m.Metrics()
	if met.FilesWatched != 308 || met.Scans != 2 || met.LastScan.IsZero() {
		t.Fatalf("metrics: %+v", met)
	}
}

func TestParanoidRehashesEverything(t *testing.T) {
	for _, tc := range []struct {
		name     string
		paranoid bool
		hashed   uint64
	}{{"off", false, 0}, {"on", true, 20}} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for i := range 20 {
				write(t, fmt.Sprintf("%s/f%d", root, i), fmt.Sprint(i))
			}
			m := newMonitor(t, root, newRecorder(), func(c *Config) {
				c.Paranoid = tc.paranoid
				c.FullRehashInterval = time.Nanosecond
			})
			_, err := m.Scan(context.Background())
			must(t, err)
			res, err := m.Scan(context.Background())
			must(t, err)
			if res.Hashed != tc.hashed || res.FullHash != tc.paranoid {
				t.Fatalf("hashed %d (full %v), want %d", res.Hashed, res.FullHash, tc.hashed)
			}
		})
	}
}

func TestParanoidCatchesForgedStat(t *testing.T) {
	// Content changed with size, mtime and inode forged back and the baseline's ctime matched too
	// (as an attacker with root could arrange): only a full re-hash sees it.
	root := t.TempDir()
	write(t, root+"/bin", "good")
	rec := newRecorder()
	m := newMonitor(t, root, rec, func(c *Config) { c.Paranoid = true; c.FullRehashInterval = time.Nanosecond })
	_, err := m.Scan(context.Background())
	must(t, err)
	write(t, root+"/bin", "evil")
	must(t, os.Chtimes(root+"/bin", past, past))
	// Forge the baseline: record the file's current stat with the old hash.
	forgeBaseline(t, m, "bin", sha256.Sum256([]byte("good")))
	_, err = m.Scan(context.Background())
	must(t, err)
	checkEvents(t, root, rec.take(), []want{{kind: ContentChanged, rel: "bin", has: []string{AttrHash}, not: []string{AttrSize, AttrMtime, AttrInode}}})
}

// forgeBaseline rewrites the tree's baseline so that rel has its current stat but the given hash.
func forgeBaseline(t *testing.T, m *Monitor, rel string, sum [32]byte) {
	t.Helper()
	ts := m.trees[0]
	r, err := openBaseline(ts.file)
	must(t, err)
	var entries []Entry
	for {
		e, ok, err := r.next()
		must(t, err)
		if !ok {
			break
		}
		if e.Path == rel {
			var st syscall.Stat_t
			must(t, lstat(ts.abs(rel), &st))
			e = entryFromStat(rel, &st)
			e.HasHash, e.SHA256 = true, sum
		}
		entries = append(entries, e)
	}
	r.close()
	w, err := createBaseline(ts.file, r.hdr)
	must(t, err)
	for i := range entries {
		must(t, w.add(&entries[i]))
	}
	must(t, w.commit())
}

func TestSymlinkLoopsAreNotFollowed(t *testing.T) {
	root := t.TempDir()
	must(t, os.Mkdir(root+"/d", 0o755))
	must(t, os.Symlink(".", root+"/d/self"))
	must(t, os.Symlink("..", root+"/d/up"))
	must(t, os.Symlink("b", root+"/a"))
	must(t, os.Symlink("a", root+"/b"))
	rec := newRecorder()
	m := newMonitor(t, root, rec, nil)
	res, err := m.Scan(context.Background())
	must(t, err)
	if res.Entries != 6 || res.ErrorsN != 0 {
		t.Fatalf("entries %d errors %v; want 6 entries (root, a, b, d, d/self, d/up)", res.Entries, res.Errors)
	}
	must(t, os.Remove(root+"/a"))
	must(t, os.Symlink("d/self", root+"/a"))
	_, err = m.Scan(context.Background())
	must(t, err)
	ev := rec.take()
	checkEvents(t, root, ev, []want{{kind: ContentChanged, rel: "a", has: []string{AttrLink}}})
	if ev[0].Old.Link != "b" || ev[0].New.Link != "d/self" {
		t.Fatalf("link target %q -> %q", ev[0].Old.Link, ev[0].New.Link)
	}
}

func TestVanishedAndReplacedMidScan(t *testing.T) {
	cases := []struct {
		name   string
		stage  string
		target string
		act    func(t *testing.T, abs string)
		op     string
		want   []want
	}{
		{"removed before lstat", "lstat", "f2", func(t *testing.T, abs string) { os.Remove(abs) }, "vanished",
			[]want{{kind: Deleted, rel: "f2"}}},
		{"removed before hashing", "open", "f2", func(t *testing.T, abs string) { os.Remove(abs) }, "vanished",
			[]want{{kind: Deleted, rel: "f2"}}},
		{"directory removed before lstat", "lstat", "sub", func(t *testing.T, abs string) { os.RemoveAll(abs) }, "vanished",
			[]want{{kind: Deleted, rel: "sub"}, {kind: Deleted, rel: "sub/g"}}},
		{"replaced by a FIFO before hashing", "open", "f2", func(t *testing.T, abs string) {
			os.Remove(abs)
			must(t, syscall.Mkfifo(abs, 0o644))
		}, "changed", nil},
		{"replaced by a symlink before hashing", "open", "f2", func(t *testing.T, abs string) {
			os.Remove(abs)
			must(t, os.Symlink("/etc/passwd", abs))
		}, "changed", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root+"/f1", "1")
			write(t, root+"/f2", "2")
			write(t, root+"/sub/g", "g")
			rec := newRecorder()
			m := newMonitor(t, root, rec, nil)
			_, err := m.Scan(context.Background())
			must(t, err)
			// Change every file so that they are all re-hashed.
			for _, f := range []string{"f1", "f2", "sub/g"} {
				must(t, os.Chtimes(root+"/"+f, past, past))
			}
			var once sync.Once
			m.hook = func(stage, abs string) {
				if stage == tc.stage && abs == root+"/"+tc.target {
					once.Do(func() { tc.act(t, abs) })
				}
			}
			res, err := m.Scan(context.Background())
			must(t, err)
			m.hook = nil
			if res.ErrorsN != 1 || res.Errors[0].Op != tc.op {
				t.Fatalf("scan errors %v, want one %q", res.Errors, tc.op)
			}
			var got []Event
			for _, e := range rec.take() {
				if e.Kind != AttributesChanged { // the mtime changes made above
					got = append(got, e)
				}
			}
			checkEvents(t, root, got, tc.want)
			// What could not be hashed is settled by the next scan.
			res, err = m.Scan(context.Background())
			must(t, err)
			if res.ErrorsN != 0 {
				t.Fatalf("next scan errors: %v", res.Errors)
			}
			if tc.op == "changed" {
				checkEvents(t, root, rec.take(), []want{{kind: ContentChanged, rel: "f2", has: []string{AttrType}}})
			}
		})
	}
}

func TestTooLongPath(t *testing.T) {
	root := t.TempDir()
	write(t, root+"/ok", "ok")
	// Build a chain deeper than PATH_MAX with *at calls, relative to each new directory.
	name := strings.Repeat("n", 200)
	fd, err := syscall.Open(root, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	must(t, err)
	for range 25 {
		must(t, syscall.Mkdirat(fd, name, 0o755))
		nfd, err := syscall.Openat(fd, name, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		must(t, err)
		syscall.Close(fd)
		fd = nfd
	}
	syscall.Close(fd)
	m := newMonitor(t, root, newRecorder(), nil)
	res, err := m.Scan(context.Background())
	must(t, err)
	if res.ErrorsN == 0 || !errors.Is(res.Errors[0].Err, syscall.ENAMETOOLONG) {
		t.Fatalf("errors %v, want ENAMETOOLONG", res.Errors)
	}
	if res.Entries < 3 {
		t.Fatalf("entries %d: the readable part of the tree is missing", res.Entries)
	}
}

func TestScanErrorsAreBounded(t *testing.T) {
	root := t.TempDir()
	for i := range 30 {
		write(t, fmt.Sprintf("%s/f%02d", root, i), "x")
	}
	m := newMonitor(t, root, newRecorder(), func(c *Config) { c.MaxErrors = 5 })
	m.hook = func(stage, abs string) {
		if stage == "lstat" {
			os.Remove(abs)
		}
	}
	res, err := m.Scan(context.Background())
	must(t, err)
	if res.ErrorsN != 30 || len(res.Errors) != 5 {
		t.Fatalf("errors: %d counted, %d kept; want 30, 5", res.ErrorsN, len(res.Errors))
	}
}

const nobodyEnv = "SAGE_FIM_AS_NOBODY"

// asNobody re-runs the calling test as uid 65534 when run as root, for whom permissions do not apply.
func asNobody(t *testing.T) bool {
	t.Helper()
	if os.Getuid() != 0 || os.Getenv(nobodyEnv) == "1" {
		return false
	}
	dir, err := os.MkdirTemp("", "sage-fim-nobody-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	bin := filepath.Join(dir, "fim.test")
	data, err := os.ReadFile(os.Args[0])
	must(t, err)
	must(t, os.WriteFile(bin, data, 0o755))
	cmd := exec.Command(bin, "-test.run", "^"+t.Name()+"$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), nobodyEnv+"=1", "GOCOVERDIR=", "TMPDIR=/tmp")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("as uid 65534: %v\n%s", err, out)
	}
	t.Logf("passed as uid 65534")
	return true
}

func TestPermissionDenied(t *testing.T) {
	if asNobody(t) {
		return
	}
	root := t.TempDir()
	write(t, root+"/locked/x", "x")
	write(t, root+"/secret", "s")
	write(t, root+"/pub", "p")
	t.Cleanup(func() { os.Chmod(root+"/locked", 0o755) })
	rec := newRecorder()
	m := newMonitor(t, root, rec, nil)
	res, err := m.Scan(context.Background())
	must(t, err)
	entries := res.Entries
	must(t, os.Chmod(root+"/locked", 0))
	must(t, os.Chmod(root+"/secret", 0))
	must(t, os.Chtimes(root+"/secret", past, past)) // so that a re-hash is attempted
	for i := range 2 {
		res, err = m.Scan(context.Background())
		must(t, err)
		var ops []string
		for _, e := range res.Errors {
			ops = append(ops, e.Op+" "+strings.TrimPrefix(e.Path, root))
			if !errors.Is(e.Err, os.ErrPermission) {
				t.Errorf("%v: not a permission error", e)
			}
		}
		if want := []string{"readdir /locked", "hash /secret"}; !slices.Equal(ops, want) {
			t.Fatalf("scan %d errors %v, want %v", i, ops, want)
		}
		if res.Entries != entries {
			t.Fatalf("scan %d: %d entries, want %d: the unreadable directory's contents must be kept", i, res.Entries, entries)
		}
		ev := rec.take()
		if i == 0 {
			checkEvents(t, root, ev, []want{
				{kind: AttributesChanged, rel: "locked", has: []string{AttrMode}},
				{kind: AttributesChanged, rel: "secret", has: []string{AttrMode, AttrMtime}, not: []string{AttrHash}},
			})
		} else if len(ev) != 0 {
			t.Fatalf("second scan: %d events", len(ev))
		}
	}
}

func TestSinkErrorKeepsBaseline(t *testing.T) {
	root := t.TempDir()
	write(t, root+"/a", "a")
	rec := newRecorder()
	m := newMonitor(t, root, rec, nil)
	_, err := m.Scan(context.Background())
	must(t, err)
	write(t, root+"/b", "b")
	rec.fail = errors.New("journal disk full")
	if _, err := m.Scan(context.Background()); err == nil {
		t.Fatal("scan succeeded with a failing sink")
	}
	rec.fail = nil
	_, err = m.Scan(context.Background())
	must(t, err)
	checkEvents(t, root, rec.take(), []want{{kind: Created, rel: "b"}})
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return sha256.Sum256(b)
}

func TestCancelledScanKeepsBaseline(t *testing.T) {
	root := t.TempDir()
	for i := range 100 {
		write(t, fmt.Sprintf("%s/f%03d", root, i), fmt.Sprint(i))
	}
	rec := newRecorder()
	m := newMonitor(t, root, rec, nil)
	_, err := m.Scan(context.Background())
	must(t, err)
	file := m.trees[0].file
	before := fileSum(t, file)
	for i := range 100 {
		write(t, fmt.Sprintf("%s/f%03d", root, i), fmt.Sprint("changed ", i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	m.hook = func(stage, abs string) {
		if stage == "lstat" {
			if n++; n == 50 {
				cancel()
			}
		}
	}
	if _, err := m.Scan(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled scan: %v", err)
	}
	m.hook = nil
	if fileSum(t, file) != before {
		t.Fatal("a cancelled scan changed the baseline")
	}
	if tmp, _ := filepath.Glob(file + ".tmp-*"); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
	// What the cancelled scan reported stands (it reached the sink); the next scan reports the
	// rest, so that each change is reported exactly once.
	seen := map[string]int{}
	for _, ev := range rec.take() {
		seen[ev.Path]++
	}
	if len(seen) == 0 || len(seen) == 100 {
		t.Fatalf("the cancelled scan reported %d changes, want some but not all", len(seen))
	}
	_, err = m.Scan(context.Background())
	must(t, err)
	for _, ev := range rec.take() {
		seen[ev.Path]++
	}
	for i := range 100 {
		p := fmt.Sprintf("%s/f%03d", root, i)
		if seen[p] != 1 {
			t.Errorf("%s reported %d times, want once", p, seen[p])
		}
	}
	// Once a scan has committed, the baseline holds the changes: nothing is reported again.
	res, err := m.Scan(context.Background())
	must(t, err)
	if res.Events != 0 {
		t.Fatalf("a third scan reported %d events, want 0", res.Events)
	}
}

// TestKill9DuringScan kills a real process (this test binary) with SIGKILL while it writes a new
// baseline, then checks that the previous baseline is intact and the next start scans normally.
func TestKill9DuringScan(t *testing.T) {
	if dir := os.Getenv("SAGE_FIM_CHILD"); dir != "" {
		childScan(t, dir)
		return
	}
	root := t.TempDir()
	for i := range 400 {
		write(t, fmt.Sprintf("%s/d%d/f%03d", root, i%4, i), fmt.Sprint(i))
	}
	state := t.TempDir()
	cfg := Config{StateDir: state, Trees: []Tree{{Path: root}}}
	m, err := New(cfg, newRecorder(), quietLog())
	must(t, err)
	_, err = m.Scan(context.Background())
	must(t, err)
	file := m.trees[0].file
	before := fileSum(t, file)
	for i := range 400 {
		write(t, fmt.Sprintf("%s/d%d/f%03d", root, i%4, i), fmt.Sprint("new ", i))
	}

	cmd := exec.Command(os.Args[0], "-test.run", "^TestKill9DuringScan$")
	cmd.Env = append(os.Environ(), "SAGE_FIM_CHILD="+state+"|"+root)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, cmd.Start())
	deadline := time.Now().Add(30 * time.Second)
	for {
		tmp, _ := filepath.Glob(file + ".tmp-*")
		if len(tmp) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the child never started writing a baseline:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let it get well into the scan
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait()
	if fileSum(t, file) != before {
		t.Fatal("the killed scan changed the baseline")
	}
	rec := newRecorder()
	m2, err := New(cfg, rec, quietLog())
	must(t, err)
	if tmp, _ := filepath.Glob(file + ".tmp-*"); len(tmp) != 0 {
		t.Fatalf("New left the killed scan's temporary files: %v", tmp)
	}
	res, err := m2.Scan(context.Background())
	must(t, err)
	if res.Initial || res.Events != 400 {
		t.Fatalf("after kill -9: initial %v, %d events; want the 400 changes against the old baseline", res.Initial, res.Events)
	}
}

// childScan is the process TestKill9DuringScan kills: a scan slowed down so that it is killed
// while the new baseline is being written.
func childScan(t *testing.T, arg string) {
	state, root, _ := strings.Cut(arg, "|")
	m, err := New(Config{StateDir: state, Trees: []Tree{{Path: root}}, HashWorkers: 1}, SinkFunc(func(Event) error { return nil }), quietLog())
	must(t, err)
	m.hook = func(stage, abs string) { time.Sleep(2 * time.Millisecond) }
	m.Scan(context.Background())
	t.Fatal("the child scan finished; it should have been killed")
}

func TestCorruptBaselineIsSetAside(t *testing.T) {
	root := t.TempDir()
	write(t, root+"/a", "a")
	rec := newRecorder()
	cfg := Config{StateDir: t.TempDir(), Trees: []Tree{{Path: root}}}
	m, err := New(cfg, rec, quietLog())
	must(t, err)
	_, err = m.Scan(context.Background())
	must(t, err)
	b, err := os.ReadFile(m.trees[0].file)
	must(t, err)
	b[len(b)/2] ^= 0xff
	must(t, os.WriteFile(m.trees[0].file, b, 0o600))
	m, err = New(cfg, rec, quietLog())
	must(t, err)
	if _, err := os.Stat(m.trees[0].file + ".corrupt"); err != nil {
		t.Fatalf("corrupt baseline not set aside: %v", err)
	}
	res, err := m.Scan(context.Background())
	must(t, err)
	if !res.Initial || len(rec.take()) != 0 {
		t.Fatalf("after a corrupt baseline: %+v", res)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"ok", Config{StateDir: "/s", Trees: []Tree{{Path: "/etc", Exclude: []string{"*.swp", "^/etc/ssl/.*"}}}}, nil},
		{"empty", Config{}, []string{"state_dir: required", "trees: at least one"}},
		{"relative and twice", Config{StateDir: "/s", Trees: []Tree{{Path: "etc"}, {Path: "/x"}, {Path: "/x/"}}},
			[]string{"trees[0].path: \"etc\" is not absolute", "trees[2].path: \"/x/\" is listed twice"}},
		{"bad patterns", Config{StateDir: "/s", Trees: []Tree{{Path: "/etc", Exclude: []string{"[", "^(", ""}}}},
			[]string{"trees[0].exclude[0]", "trees[0].exclude[1]", "trees[0].exclude[2]: empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != (tc.want == nil) {
				t.Fatalf("err %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v lacks %q", err, w)
				}
			}
		})
	}
}

func TestExclude(t *testing.T) {
	m, err := newMatcher("", []string{"*.swp", "/etc/ssl/*", "^/var/lib/(apt|dpkg)/.*"})
	must(t, err)
	for path, want := range map[string]bool{
		"/etc/.x.swp": true, "/etc/ssl/certs": true, "/etc/ssl/certs/a": false, "/etc/ssl": false,
		"/var/lib/dpkg/status": true, "/var/lib/dpkgx": false, "/x/var/lib/apt/y": false, "/etc/passwd": false,
	} {
		if got := m.excluded(path); got != want {
			t.Errorf("excluded(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestComparePathsMatchesWalkOrder(t *testing.T) {
	paths := []string{"", "a", "a/b", "a/b/c", "a.txt", "a0", "b", "b/\xff", "ba"}
	for i := range paths {
		for j := range paths {
			got := comparePaths(paths[i], paths[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got != want {
				t.Errorf("comparePaths(%q, %q) = %d, want %d", paths[i], paths[j], got, want)
			}
		}
	}
}
