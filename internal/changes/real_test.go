package changes

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/serversage/sage/internal/testenv"
)

// monitor runs Run against a state dir with the given kinds, as `sage changes snapshot` does.
type monitor struct {
	t     *testing.T
	state string
	cfg   Config
	j     *Journal
	m     Metrics
}

func newMonitor(t *testing.T, cfg Config) *monitor {
	state := t.TempDir()
	j, err := OpenJournal(filepath.Join(state, "journal"), JournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	mo := &monitor{t: t, state: state, cfg: cfg, j: j}
	if r := mo.run(); !r.First {
		t.Fatal("first run not marked first")
	}
	return mo
}

func (mo *monitor) run() *Result {
	mo.t.Helper()
	r, err := Run(mo.t.Context(), mo.cfg, mo.state, mo.j, &mo.m, nil)
	if err != nil {
		mo.t.Fatal(err)
	}
	if len(r.Snapshot.Errors) > 0 {
		mo.t.Fatalf("source errors: %v", r.Snapshot.Errors)
	}
	return r
}

func eventsFor(evs []Event, kind, objSub string) []Event {
	var out []Event
	for _, e := range evs {
		if e.Kind == kind && strings.Contains(e.Object, objSub) {
			out = append(out, e)
		}
	}
	return out
}

func buildDeb(t *testing.T, dir, version string) string {
	t.Helper()
	return writeDeb(t, dir, "pkg-"+version, "sage-test-pkg_"+version+"_all.deb", map[string]string{
		"DEBIAN/control":                  fmt.Sprintf("Package: sage-test-pkg\nVersion: %s\nArchitecture: all\nMaintainer: ServerSage tests <tests@invalid>\nDescription: throwaway package for ServerSage's change monitor tests\n", version),
		"usr/share/sage-test-pkg/version": version + "\n",
	})
}

// writeDeb writes files (path in the package -> content) under dir/tree and builds dir/deb from them.
func writeDeb(t *testing.T, dir, tree, deb string, files map[string]string) string {
	t.Helper()
	root := filepath.Join(dir, tree)
	for p, s := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deb = filepath.Join(dir, deb)
	if out, err := exec.Command(testenv.LookPath(t, "dpkg-deb", "dpkg"), "--root-owner-group", "--build", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	return deb
}

func TestRealDpkg(t *testing.T) {
	testenv.Root(t, "install a throwaway package with dpkg")
	dpkg := testenv.LookPath(t, "dpkg", "dpkg")
	dir := t.TempDir()
	deb1, deb2 := buildDeb(t, dir, "1.0"), buildDeb(t, dir, "2.0")
	mo := newMonitor(t, Config{Kinds: []string{"packages"}})
	t.Cleanup(func() { _, _ = runDpkg(dpkg, "--purge", "sage-test-pkg") })
	install := func(deb string) {
		if out, err := runDpkg(dpkg, "-i", deb); err != nil {
			t.Fatalf("dpkg -i: %v\n%s", err, out)
		}
	}
	steps := []struct {
		name   string
		do     func()
		action string
		before string
		after  string
	}{
		{"install", func() { install(deb1) }, Added, "", "1.0"},
		{"upgrade", func() { install(deb2) }, Changed, "1.0", "2.0"},
		{"remove", func() {
			if out, err := runDpkg(dpkg, "--purge", "sage-test-pkg"); err != nil {
				t.Fatalf("dpkg --purge: %v\n%s", err, out)
			}
		}, Removed, "2.0", ""},
	}
	for _, s := range steps {
		s.do()
		evs := eventsFor(mo.run().Events, "packages", "sage-test-pkg")
		if len(evs) != 1 {
			t.Fatalf("%s: want one event, got %+v", s.name, evs)
		}
		e := evs[0]
		if e.Object != "sage-test-pkg:all" || e.Action != s.action || e.Before["version"] != s.before || e.After["version"] != s.after {
			t.Fatalf("%s: got %+v", s.name, e)
		}
		t.Logf("%s: %s", s.name, e.Summary())
	}
	if mo.m.Changes["packages"] < 3 {
		t.Errorf("metrics: %+v", mo.m.Changes)
	}
}

func TestRealFirewall(t *testing.T) {
	testenv.Root(t, "add a rule in a chain of its own")
	ipt := testenv.LookPath(t, "iptables", "iptables")
	testenv.LookPath(t, "iptables-save", "iptables")
	chain := fmt.Sprintf("SAGE_TEST_%d", os.Getpid())
	mo := newMonitor(t, Config{Kinds: []string{"firewall"}})
	// The chain is referenced from nowhere, so the rule changes no traffic.
	if out, err := exec.Command(ipt, "-w", "-N", chain).CombinedOutput(); err != nil {
		t.Fatalf("iptables -N: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command(ipt, "-w", "-F", chain).Run()
		_ = exec.Command(ipt, "-w", "-X", chain).Run()
	})
	if out, err := exec.Command(ipt, "-w", "-A", chain, "-s", "192.0.2.1", "-j", "RETURN").CombinedOutput(); err != nil {
		t.Fatalf("iptables -A: %v\n%s", err, out)
	}
	evs := mo.run().Events
	rule := eventsFor(evs, "firewall", "iptables filter -A "+chain+" -s 192.0.2.1/32 -j RETURN")
	if len(rule) != 1 || rule[0].Action != Added {
		t.Fatalf("want one added rule event, got %+v", evs)
	}
	if _, err := exec.LookPath("nft"); err == nil {
		// nft sees the same rule (iptables-nft) or at least the ruleset it is in, as a text diff.
		nft := eventsFor(evs, "firewall", "nft ruleset")
		if strings.Contains(ipsVersion(t, ipt), "nf_tables") && (len(nft) != 1 || !strings.Contains(nft[0].Diff, "192.0.2.1")) {
			t.Errorf("nft ruleset event: %+v", nft)
		}
	}
	_ = exec.Command(ipt, "-w", "-F", chain).Run()
	_ = exec.Command(ipt, "-w", "-X", chain).Run()
	evs = mo.run().Events
	if rule := eventsFor(evs, "firewall", "iptables filter -A "+chain); len(rule) != 1 || rule[0].Action != Removed {
		t.Fatalf("want the rule removed, got %+v", evs)
	}
}

func TestRealMount(t *testing.T) {
	testenv.Root(t, "mount a tmpfs")
	dir := t.TempDir()
	mo := newMonitor(t, Config{Kinds: []string{"mounts"}})
	if err := unix.Mount("sage-test", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	evs := eventsFor(mo.run().Events, "mounts", dir)
	if len(evs) != 1 || evs[0].Action != Added || evs[0].After["fstype"] != "tmpfs" || evs[0].After["source"] != "sage-test" {
		t.Fatalf("mount: %+v", evs)
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	mounted = false
	evs = eventsFor(mo.run().Events, "mounts", dir)
	if len(evs) != 1 || evs[0].Action != Removed {
		t.Fatalf("unmount: %+v", evs)
	}
}

func TestConfigFileSecretRedacted(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "app.conf")
	const secret1, secret2 = "hunter2-very-secret", "correct-horse-battery"
	if err := os.WriteFile(conf, []byte("listen 80\npassword = "+secret1+"\nworkers 4\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	mo := newMonitor(t, Config{Kinds: []string{"config_files"}, ConfigFiles: []string{filepath.Join(dir, "*.conf")}})
	if err := os.WriteFile(conf, []byte("listen 8080\npassword = "+secret2+"\nworkers 4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(conf, 0o600); err != nil {
		t.Fatal(err)
	}
	evs := mo.run().Events
	if len(evs) != 1 || evs[0].Action != Changed || evs[0].Object != conf {
		t.Fatalf("events: %+v", evs)
	}
	e := evs[0]
	// The password line is redacted the same both times, so it is context, not a change.
	if !strings.Contains(e.Diff, "-listen 80\n+listen 8080\n password = <redacted>\n") || strings.Contains(e.Diff, secret2) {
		t.Errorf("diff:\n%s", e.Diff)
	}
	if e.Before["mode"] != "-rw-r-----" || e.After["mode"] != "-rw-------" || e.Before["sha256"] == e.After["sha256"] {
		t.Errorf("attributes: %+v -> %+v", e.Before, e.After)
	}
	files, _ := filepath.Glob(filepath.Join(mo.state, "*", "*"))
	files = append(files, filepath.Join(mo.state, SnapshotFile))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(secret1)) || bytes.Contains(data, []byte(secret2)) {
			t.Errorf("%s holds a secret", f)
		}
	}
}

// TestJournalDiskFull fills a tiny tmpfs: Append fails, the run reports it, the previous
// snapshot is kept, and once there is room again the same changes are journalled.
func TestJournalDiskFull(t *testing.T) {
	testenv.Root(t, "mount a tiny tmpfs to fill")
	state := t.TempDir()
	if err := unix.Mount("sage-full", state, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(state, unix.MNT_DETACH) })
	dir := t.TempDir()
	conf := filepath.Join(dir, "a.conf")
	os.WriteFile(conf, []byte("v 1\n"), 0o644)
	cfg := Config{Kinds: []string{"config_files"}, ConfigFiles: []string{conf}}
	j, err := OpenJournal(filepath.Join(state, "journal"), JournalOptions{MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var m Metrics
	if _, err := Run(t.Context(), cfg, state, j, &m, nil); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(state, "filler")
	f, _ := os.Create(filler)
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	f.Close()
	os.WriteFile(conf, []byte("v 2\n"), 0o644)
	r, err := Run(t.Context(), cfg, state, j, &m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.JournalErr == nil || m.JournalErrors != 1 || len(r.Events) != 1 {
		t.Fatalf("want a journal error, got %v, journal errors %d, events %d", r.JournalErr, m.JournalErrors, len(r.Events))
	}
	os.Remove(filler)
	r, err = Run(t.Context(), cfg, state, j, &m, nil)
	if err != nil || r.JournalErr != nil || len(r.Events) != 1 {
		t.Fatalf("after freeing space: %v %v %+v", err, r.JournalErr, r.Events)
	}
	if all := readAll(t, j, 0); len(all) != 1 || all[0].Seq != 1 {
		t.Fatalf("journal: %+v", all)
	}
}

func ipsVersion(t *testing.T, ipt string) string {
	out, err := exec.Command(ipt, "-V").Output()
	if err != nil {
		t.Fatalf("iptables -V: %v", err)
	}
	return string(out)
}

// runDpkg runs dpkg, waiting up to a minute for its lock: another package operation on the
// machine (unattended upgrades, another test binary) holds it for seconds at a time.
func runDpkg(dpkg string, args ...string) ([]byte, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := exec.Command(dpkg, args...).CombinedOutput()
		if err == nil || !bytes.Contains(out, []byte("lock")) || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(500 * time.Millisecond)
	}
}
