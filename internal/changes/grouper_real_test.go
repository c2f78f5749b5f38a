package changes

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/fim"
	"github.com/serversage/sage/internal/testenv"
)

const grouperPkg = "sage-test-grouper"

// buildGrouperDeb builds a package with files under /usr/share/sage-test-grouper/: files 0..49 at
// 1.0; at 2.0 files 0..39 changed, 40..49 gone, 50..59 new (some in a new directory).
func buildGrouperDeb(t *testing.T, dir, version string) string {
	t.Helper()
	files := map[string]string{
		"DEBIAN/control": fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: ServerSage tests <tests@invalid>\nDescription: throwaway package for ServerSage's grouper tests\n", grouperPkg, version),
	}
	lo, hi := 0, 50
	if version != "1.0" {
		lo, hi = 0, 60
	}
	for i := lo; i < hi; i++ {
		if version != "1.0" && i >= 40 && i < 50 {
			continue
		}
		p := fmt.Sprintf("usr/share/%s/file%02d", grouperPkg, i)
		if i >= 55 {
			p = fmt.Sprintf("usr/share/%s/sub/file%02d", grouperPkg, i)
		}
		files[p] = fmt.Sprintf("file %d of version %s\n", i, version)
	}
	// dpkg-deb --build writes no md5sums; dpkg records them only if the package has them.
	var sums strings.Builder
	for p, s := range files {
		if !strings.HasPrefix(p, "DEBIAN/") {
			fmt.Fprintf(&sums, "%s  %s\n", md5hex(s), p)
		}
	}
	files["DEBIAN/md5sums"] = sums.String()
	return writeDeb(t, dir, "grouper-"+version, grouperPkg+"_"+version+"_all.deb", files)
}

// TestGrouperRealDpkg upgrades a real package under a real file monitor: the upgrade's 60 file
// changes come out as one grouped event, and a byte changed behind dpkg's back as one tampered file.
func TestGrouperRealDpkg(t *testing.T) {
	testenv.Root(t, "install a throwaway package with dpkg")
	dpkg := testenv.LookPath(t, "dpkg", "dpkg")
	dir := t.TempDir()
	deb1, deb2 := buildGrouperDeb(t, dir, "1.0"), buildGrouperDeb(t, dir, "2.0")
	t.Cleanup(func() {
		if out, err := runDpkg(dpkg, "--purge", grouperPkg); err != nil {
			t.Errorf("dpkg --purge: %v\n%s", err, out)
		}
	})
	install := func(deb string) {
		t.Helper()
		if out, err := runDpkg(dpkg, "-i", deb); err != nil {
			t.Fatalf("dpkg -i: %v\n%s", err, out)
		}
	}
	install(deb1)
	tree := "/usr/share/" + grouperPkg

	col := &collector{}
	// Grace and Settle are long: the test flushes by hand once the monitor has reported everything,
	// so that no timer splits the group.
	g := NewGrouper(GrouperOptions{Append: col.append, Prefixes: []string{tree}, Grace: time.Hour, Settle: time.Hour})
	if err := g.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	m, err := fim.New(fim.Config{StateDir: t.TempDir(), Trees: []fim.Tree{{Path: tree}}, Watch: true, Debounce: 20 * time.Millisecond, ScanInterval: time.Hour}, g, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := m.Scan(t.Context()); err != nil || !r.Initial {
		t.Fatalf("baseline: %+v %v", r, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; g.Close() })

	settle := func() []Event {
		t.Helper()
		// The scan reports whatever the watcher has not yet: after it, every change is in.
		if _, err := m.Scan(t.Context()); err != nil {
			t.Fatal(err)
		}
		before := len(col.events())
		if err := g.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		return col.events()[before:]
	}

	install(deb2)
	evs := settle()
	if len(evs) != 1 {
		for _, e := range evs {
			t.Log(e.Summary())
		}
		t.Fatalf("upgrade: want one grouped event, got %d", len(evs))
	}
	e := evs[0]
	t.Logf("upgrade: %s (%d files)", e.Summary(), len(e.Files))
	// 40 changed, 10 removed, 10 new files and the new directory sub.
	if e.Kind != KindFiles || e.Object != "package "+grouperPkg+":all" || e.Action != Changed || e.Before["version"] != "1.0" ||
		e.After["version"] != "2.0" || e.After["files_changed"] != "61" || len(e.Files) != 61 || e.Tampered {
		t.Fatalf("upgrade event: %+v", e)
	}
	for _, want := range []string{tree + "/file00", tree + "/file45", tree + "/sub", tree + "/sub/file59"} {
		found := false
		for _, f := range e.Files {
			found = found || f == want
		}
		if !found {
			t.Errorf("%s not among the grouped files", want)
		}
	}

	// One byte changed behind dpkg's back, well after its transaction.
	target := tree + "/file07"
	data, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	data[0] ^= 0x20
	time.Sleep(7 * time.Second) // out of the transaction's window: its last whole second and the 5 s slack
	if err := os.WriteFile(target, data, 0o644); err != nil {
		t.Fatal(err)
	}
	evs = settle()
	if len(evs) != 1 || !evs[0].Tampered || evs[0].Object != target || evs[0].After["package"] != grouperPkg+":all" ||
		evs[0].After["expected_md5"] != md5hex("file 7 of version 2.0\n") || evs[0].After["actual_md5"] != md5hex(string(data)) {
		t.Fatalf("tampering: %+v", evs)
	}
	t.Logf("tampering: %s", evs[0].Summary())
	if g.Tampered() != 1 {
		t.Errorf("Tampered() = %d", g.Tampered())
	}

	// The purge: every file goes, as one removal.
	if out, err := runDpkg(dpkg, "--purge", grouperPkg); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, out)
	}
	evs = settle()
	for _, e := range evs {
		t.Logf("purge: %s (%d files)", e.Summary(), len(e.Files))
	}
	if len(evs) != 1 || evs[0].Action != Removed || evs[0].Object != "package "+grouperPkg+":all" || evs[0].Before["version"] != "2.0" || len(evs[0].Files) < 50 {
		t.Fatalf("purge: want one removal event, got %+v", evs)
	}
}
