package collector

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func groupsConfig(t testing.TB, proc string, groups ...ProcessGroup) *Config {
	t.Helper()
	var cfg *Config
	if proc == "" {
		cfg = realConfig(t)
	} else {
		cfg = fixtureConfig(t, proc, "")
	}
	cfg.ProcessGroups = groups
	return cfg
}

func group(name string, m ProcessMatch) ProcessGroup { return ProcessGroup{Name: name, Match: m} }

// groupValues is what one group's series say in a scrape, absent ones as -1.
type groupValues struct {
	count, up, user, system, rss, threads, fds, oldest float64
}

func readGroup(fams Families, name string) groupValues {
	v := func(metric string, labels ...string) float64 {
		x, ok := fams.Value(metric, append([]string{"group", name}, labels...)...)
		if !ok {
			return -1
		}
		return x
	}
	return groupValues{
		count:   v("sage_process_group_processes"),
		up:      v("sage_process_group_up"),
		user:    v("sage_process_group_cpu_seconds_total", "mode", "user"),
		system:  v("sage_process_group_cpu_seconds_total", "mode", "system"),
		rss:     v("sage_process_group_resident_memory_bytes"),
		threads: v("sage_process_group_threads"),
		fds:     v("sage_process_group_open_fds"),
		oldest:  v("sage_process_group_oldest_start_time_seconds"),
	}
}

func TestProcessGroupsNone(t *testing.T) {
	// Without groups the collector reads nothing, not even a /proc that is not there.
	c, err := newProcessGroups(fixtureConfig(t, filepath.Join(t.TempDir(), "absent"), ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := scrape(t, c)
	if err != nil || len(fams) != 0 {
		t.Fatalf("got %v, %v; want nothing", fams.Names(), err)
	}
}

func TestProcessGroupsFixtures(t *testing.T) {
	page := float64(os.Getpagesize())
	me := strconv.Itoa(os.Getuid()) // fixture files belong to whoever runs the test
	myName := me
	if u, err := user.LookupId(me); err == nil {
		myName = u.Username
	}
	procs := []fakeProc{
		{pid: 1, comm: "init", state: 'S', threads: 1, utime: 5, stime: 5, starttime: 1, rss: 10,
			cmdline: []string{"/sbin/init", "splash"}, exe: "/usr/lib/systemd/systemd", fds: 50},
		{pid: 2, comm: "kthreadd", state: 'S', threads: 1, starttime: 1, fds: 0}, // no exe, no cmdline
		{pid: 100, comm: "nginx", state: 'S', threads: 1, utime: 150, stime: 50, starttime: 500, rss: 1000,
			cmdline: []string{"nginx: master process /usr/sbin/nginx", "-g", "daemon off;"}, exe: "/usr/sbin/nginx", fds: 10},
		{pid: 101, comm: "nginx", state: 'S', threads: 4, utime: 1000, stime: 200, starttime: 700, rss: 3000,
			cmdline: []string{"nginx: worker process"}, exe: "/usr/sbin/nginx (deleted)", fds: 20},
		{pid: 200, comm: "my (weird) proc", state: 'R', threads: 2, utime: 1, stime: 1, starttime: 900, rss: 1,
			cmdline: []string{"/opt/weird/bin/weird", "--config", "/etc/weird.conf"}, exe: "/opt/weird/bin/weird", fds: -1},
		{pid: 300, comm: "broken", stat: "300 (broken) S 1 300 300 0 -1"},
	}
	tests := []struct {
		name    string
		groups  []ProcessGroup
		want    map[string]groupValues
		wantErr bool // set because of pid 300's truncated stat in every case
	}{
		{
			name:   "comm",
			groups: []ProcessGroup{group("nginx", ProcessMatch{Comm: "nginx"})},
			want: map[string]groupValues{"nginx": {count: 2, up: 1, user: 11.5, system: 2.5, rss: 4000 * page,
				threads: 5, fds: 30, oldest: 1000 + 5}},
		},
		{
			name:   "comm with spaces and parentheses, missing fd directory",
			groups: []ProcessGroup{group("weird", ProcessMatch{Comm: "my (weird) proc"})},
			want: map[string]groupValues{"weird": {count: 1, up: 1, user: 0.01, system: 0.01, rss: page,
				threads: 2, fds: 0, oldest: 1009}},
		},
		{
			name: "exe by base name and by path, deleted or not",
			groups: []ProcessGroup{
				group("base", ProcessMatch{Exe: "nginx"}),
				group("path", ProcessMatch{Exe: "/usr/sbin/nginx"}),
				group("other-path", ProcessMatch{Exe: "/usr/local/sbin/nginx"}),
				group("partial", ProcessMatch{Exe: "ngin"}),
			},
			want: map[string]groupValues{
				"base":       {count: 2, up: 1, user: 11.5, system: 2.5, rss: 4000 * page, threads: 5, fds: 30, oldest: 1005},
				"path":       {count: 2, up: 1, user: 11.5, system: 2.5, rss: 4000 * page, threads: 5, fds: 30, oldest: 1005},
				"other-path": {count: 0, up: 0, fds: 0, oldest: -1},
				"partial":    {count: 0, up: 0, fds: 0, oldest: -1},
			},
		},
		{
			name: "cmdline is an unanchored regexp on the space-joined arguments",
			groups: []ProcessGroup{
				group("workers", ProcessMatch{Cmdline: `worker process`}),
				group("joined", ProcessMatch{Cmdline: `weird --config /etc/weird\.conf$`}),
				group("all-nginx", ProcessMatch{Comm: "nginx", Cmdline: `^nginx: `}),
				group("anchored", ProcessMatch{Cmdline: `^process`}),
			},
			want: map[string]groupValues{
				"workers":   {count: 1, up: 1, user: 10, system: 2, rss: 3000 * page, threads: 4, fds: 20, oldest: 1007},
				"joined":    {count: 1, up: 1, user: 0.01, system: 0.01, rss: page, threads: 2, fds: 0, oldest: 1009},
				"all-nginx": {count: 2, up: 1, user: 11.5, system: 2.5, rss: 4000 * page, threads: 5, fds: 30, oldest: 1005},
				"anchored":  {count: 0, up: 0, fds: 0, oldest: -1},
			},
		},
		{
			name: "user by name and by uid, with comm; unknown user matches nothing",
			groups: []ProcessGroup{
				group("by-name", ProcessMatch{Comm: "nginx", User: myName}),
				group("by-uid", ProcessMatch{Comm: "nginx", User: me}),
				group("other-uid", ProcessMatch{Comm: "nginx", User: "4242"}),
				group("ghost", ProcessMatch{User: "sage-no-such-user"}),
				group("everyone", ProcessMatch{User: me}),
			},
			want: map[string]groupValues{
				"by-name":   {count: 2, up: 1, user: 11.5, system: 2.5, rss: 4000 * page, threads: 5, fds: 30, oldest: 1005},
				"by-uid":    {count: 2, up: 1, user: 11.5, system: 2.5, rss: 4000 * page, threads: 5, fds: 30, oldest: 1005},
				"other-uid": {count: 0, up: 0, fds: 0, oldest: -1},
				"ghost":     {count: 0, up: 0, fds: 0, oldest: -1},
				"everyone": {count: 5, up: 1, user: 11.56, system: 2.56, rss: 4011 * page, threads: 9, fds: 80,
					oldest: 1000.01},
			},
		},
		{
			name: "every criterion must match",
			groups: []ProcessGroup{
				group("all", ProcessMatch{Comm: "nginx", Exe: "nginx", Cmdline: "master", User: me}),
				group("wrong-comm", ProcessMatch{Comm: "nginx", Exe: "weird"}),
			},
			want: map[string]groupValues{
				"all":        {count: 1, up: 1, user: 1.5, system: 0.5, rss: 1000 * page, threads: 1, fds: 10, oldest: 1005},
				"wrong-comm": {count: 0, up: 0, fds: 0, oldest: -1},
			},
		},
		{
			name: "min_count: 0 means at least one",
			groups: []ProcessGroup{
				{Name: "zero-running", Match: ProcessMatch{Comm: "nginx"}, MinCount: 0},
				{Name: "zero-absent", Match: ProcessMatch{Comm: "apache2"}, MinCount: 0},
				{Name: "enough", Match: ProcessMatch{Comm: "nginx"}, MinCount: 2},
				{Name: "too-few", Match: ProcessMatch{Comm: "nginx"}, MinCount: 3},
			},
			want: map[string]groupValues{
				"zero-running": {count: 2, up: 1, user: 11.5, system: 2.5, rss: 4000 * page, threads: 5, fds: 30, oldest: 1005},
				"zero-absent":  {count: 0, up: 0, fds: 0, oldest: -1},
				"enough":       {count: 2, up: 1, user: 11.5, system: 2.5, rss: 4000 * page, threads: 5, fds: 30, oldest: 1005},
				"too-few":      {count: 2, up: 0, user: 11.5, system: 2.5, rss: 4000 * page, threads: 5, fds: 30, oldest: 1005},
			},
		},
	}
	root := procTree(t, procs...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newProcessGroups(groupsConfig(t, root, tt.groups...), nil)
			if err != nil {
				t.Fatal(err)
			}
			fams, err := scrape(t, c)
			if err == nil || !strings.Contains(err.Error(), "process 300") {
				t.Errorf("err = %v, want one about the truncated stat of process 300", err)
			}
			for name, want := range tt.want {
				got := readGroup(fams, name)
				if fmt.Sprintf("%.6g", got) != fmt.Sprintf("%.6g", want) {
					t.Errorf("group %s:\n got %+v\nwant %+v", name, got, want)
				}
			}
		})
	}
}

// The CPU counter must not fall when a member exits, nor when its PID is reused.
func TestProcessGroupsCPUMonotonic(t *testing.T) {
	a := fakeProc{pid: 10, comm: "app", state: 'S', threads: 1, utime: 100, stime: 10, starttime: 50, fds: 1}
	b := fakeProc{pid: 11, comm: "app", state: 'S', threads: 1, utime: 200, stime: 20, starttime: 60, fds: 1}
	root := procTree(t, a, b)
	c, err := newProcessGroups(groupsConfig(t, root, group("app", ProcessMatch{Comm: "app"})), nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name                string
		change              func()
		count, user, system float64
	}{
		{"both running", func() {}, 2, 3, 0.3},
		{"b exited, a ran on", func() {
			os.RemoveAll(filepath.Join(root, "11"))
			a.utime, a.stime = 150, 15
			os.RemoveAll(filepath.Join(root, "10"))
			writeFakeProc(t, root, a)
		}, 1, 3.5, 0.35},
		{"b's PID reused", func() {
			writeFakeProc(t, root, fakeProc{pid: 11, comm: "app", state: 'S', threads: 1, utime: 10, stime: 1, starttime: 90})
		}, 2, 3.6, 0.36},
		{"all gone", func() {
			os.RemoveAll(filepath.Join(root, "10"))
			os.RemoveAll(filepath.Join(root, "11"))
		}, 0, 3.6, 0.36},
	}
	for _, s := range steps {
		s.change()
		fams, err := scrape(t, c)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got := readGroup(fams, "app")
		if got.count != s.count || fmt.Sprintf("%.4g %.4g", got.user, got.system) != fmt.Sprintf("%.4g %.4g", s.user, s.system) {
			t.Errorf("%s: count %v user %v system %v; want %v %v %v", s.name, got.count, got.user, got.system,
				s.count, s.user, s.system)
		}
	}
}

// A scan cut short must not take the members it did not reach for gone.
func TestProcessGroupsCancelled(t *testing.T) {
	var procs []fakeProc
	for i := range 2 * procPIDCheckEvery {
		procs = append(procs, fakeProc{pid: 10 + i, comm: "app", state: 'S', threads: 1, utime: 100, fds: 0})
	}
	root := procTree(t, procs...)
	c, _ := newProcessGroups(groupsConfig(t, root, group("app", ProcessMatch{Comm: "app"})), nil)
	if _, err := scrape(t, c); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	m := &Metrics{}
	if err := c.Update(ctx, m); err == nil || m.Len() != 0 {
		t.Fatalf("cancelled scrape: err %v, %d metrics; want an error and none", err, m.Len())
	}
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if got := readGroup(fams, "app"); got.count != float64(len(procs)) || got.user != float64(len(procs)) {
		t.Errorf("after a cancelled scrape: count %v user %v; want %d and %d", got.count, got.user, len(procs), len(procs))
	}
}

// Another user's fds cannot be listed without privileges: open_fds goes, the rest stays.
func TestProcessGroupsUnreadableFDs(t *testing.T) {
	if asNobody(t) {
		return
	}
	root := procTree(t,
		fakeProc{pid: 10, comm: "app", state: 'S', threads: 1, fds: 2},
		fakeProc{pid: 11, comm: "app", state: 'S', threads: 1, fds: 3},
		fakeProc{pid: 12, comm: "other", state: 'S', threads: 1, fds: 3},
	)
	fdDir := filepath.Join(root, "11", "fd")
	if err := os.Chmod(fdDir, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(fdDir, 0o755) }) // for TempDir's removal, which runs after
	c, _ := newProcessGroups(groupsConfig(t, root,
		group("app", ProcessMatch{Comm: "app"}), group("other", ProcessMatch{Comm: "other"})), nil)
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if got := readGroup(fams, "app"); got.count != 2 || got.up != 1 || got.threads != 2 || got.fds != -1 {
		t.Errorf("app: %+v; want count 2, up 1, threads 2 and no open_fds", got)
	}
	if got := readGroup(fams, "other"); got.fds != 3 {
		t.Errorf("other: open_fds %v, want 3", got.fds)
	}
}

func TestProcessGroupsMissingBtime(t *testing.T) {
	root := procTree(t, fakeProc{pid: 10, comm: "app", state: 'S', threads: 1, fds: 0})
	if err := os.WriteFile(filepath.Join(root, "stat"), []byte("cpu 1 2 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ := newProcessGroups(groupsConfig(t, root, group("app", ProcessMatch{Comm: "app"})), nil)
	fams, err := scrape(t, c)
	if err == nil {
		t.Fatal("want an error without btime")
	}
	if got := readGroup(fams, "app"); got.count != 1 || got.oldest != -1 {
		t.Errorf("got %+v; want count 1 and no start time", got)
	}
}

func TestNewProcessGroupsInvalid(t *testing.T) {
	for name, groups := range map[string][]ProcessGroup{
		"bad regexp":   {group("a", ProcessMatch{Cmdline: "("})},
		"duplicate":    {group("a", ProcessMatch{Comm: "x"}), group("a", ProcessMatch{Comm: "y"})},
		"no criterion": {group("a", ProcessMatch{})},
		"no name":      {group("", ProcessMatch{Comm: "x"})},
	} {
		if _, err := newProcessGroups(groupsConfig(t, "", groups...), nil); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

// startSleeper runs a copy of sleep under a name no other process has, so that every criterion
// can single it out.
func startSleeper(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sagetestsleep")
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "3600.25")
	if err := cmd.Start(); err != nil { // returns once the exec happened: comm and exe are the copy's
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitAsleep(t, cmd.Process.Pid)
	return cmd, bin
}

// waitAsleep waits until pid sleeps in its nanosleep. Start returns right after the exec, before
// the new program has run at all: its resident set can still be empty then (seen in CI as uid
// 65534), so a scrape at that moment would measure a process that has not started yet.
func waitAsleep(t *testing.T, pid int) {
	t.Helper()
	path := fmt.Sprintf("/proc/%d/stat", pid)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// The state follows the last ')' (comm may itself hold one).
		if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && b[i+2] == 'S' {
			return
		}
	}
	t.Fatalf("process %d did not reach its sleep within 30s", pid)
}

func testProcessGroupsEndToEnd(t *testing.T) {
	cmd, bin := startSleeper(t)
	me := strconv.Itoa(os.Getuid())
	myName := me
	if u, err := user.Current(); err == nil {
		myName = u.Username
	}
	groups := []ProcessGroup{
		group("comm", ProcessMatch{Comm: "sagetestsleep"}),
		group("exe-base", ProcessMatch{Exe: "sagetestsleep"}),
		group("exe-path", ProcessMatch{Exe: bin, User: me}),
		group("cmdline", ProcessMatch{Cmdline: `sagetestsleep 3600\.25$`}),
		group("user-name", ProcessMatch{Comm: "sagetestsleep", User: myName}),
		group("user-uid", ProcessMatch{Cmdline: `sagetestsleep`, User: me}),
	}
	c, err := newProcessGroups(groupsConfig(t, "", groups...), nil)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		got := readGroup(fams, g.Name)
		if got.count != 1 || got.up != 1 || got.threads != 1 || got.rss <= 0 || got.fds < 0 {
			t.Errorf("group %s with the process running: %+v", g.Name, got)
		}
		// Clock ticks and btime's whole seconds make the start time a second or so coarse.
		if started := time.Unix(int64(got.oldest), 0); started.Before(before.Add(-time.Hour)) || started.After(time.Now().Add(time.Minute)) {
			t.Errorf("group %s: start time %v, the process started at about %v", g.Name, started, before)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait() // reaped: gone from /proc
	fams, err = scrape(t, c)
	// exe-base reads every process's executable: without privileges (and for some processes even
	// with them) some are unreadable, which the collector reports once the group is down.
	if err != nil && !strings.Contains(err.Error(), "process group exe-base is down, but the executable of") {
		t.Fatal(err)
	}
	for _, g := range groups {
		if got := readGroup(fams, g.Name); got.count != 0 || got.up != 0 || got.oldest != -1 {
			t.Errorf("group %s after the process exited: %+v", g.Name, got)
		}
	}
}

func TestProcessGroupsEndToEnd(t *testing.T) { testProcessGroupsEndToEnd(t) }

func TestProcessGroupsEndToEndNobody(t *testing.T) {
	if asNobody(t) {
		return
	}
	testProcessGroupsEndToEnd(t)
}

// An unprivileged agent still counts processes of other users by comm, cmdline and user; it cannot
// tell their executable, and says so when that may be why a group is down.
func TestProcessGroupsRealOtherUser(t *testing.T) {
	if asNobody(t) {
		return
	}
	data, err := os.ReadFile("/proc/1/stat")
	if err != nil {
		t.Fatal(err)
	}
	var st procStat
	if err := parseProcStat(data, &st); err != nil {
		t.Fatal(err)
	}
	comm := string(st.comm)
	c, _ := newProcessGroups(groupsConfig(t, "",
		group("init", ProcessMatch{Comm: comm, User: "0"}),
		group("root", ProcessMatch{User: "root"}),
	), nil)
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if got := readGroup(fams, "init"); got.count < 1 || got.up != 1 {
		t.Errorf("init (comm %q): %+v", comm, got)
	}
	if got := readGroup(fams, "root"); got.count < 1 {
		t.Errorf("root: %+v", got)
	}

	c, _ = newProcessGroups(groupsConfig(t, "", group("init-exe", ProcessMatch{Comm: comm, Exe: "init"})), nil)
	fams, err = scrape(t, c)
	if os.Getuid() != 0 && (err == nil || !strings.Contains(err.Error(), "init-exe is down, but the executable of 1 processes could not be read")) {
		t.Errorf("err = %v, want one saying the executable of pid 1 is unreadable", err)
	}
	if got := readGroup(fams, "init-exe"); got.count != 0 || got.up != 0 {
		t.Errorf("init-exe: %+v", got)
	}
}

func BenchmarkProcessGroups(b *testing.B) {
	c, _ := newProcessGroups(groupsConfig(b, "",
		group("init", ProcessMatch{Comm: "systemd"}),
		group("root-shells", ProcessMatch{Comm: "bash", User: "root"}),
		group("daemons", ProcessMatch{Cmdline: `d$`}),
		group("sleepers", ProcessMatch{Exe: "sleep"}),
	), nil)
	m := &Metrics{}
	// Whether these groups are up, and so whether unreadable executables are reported, depends on
	// the host; what is measured is the scan.
	_ = c.Update(b.Context(), m)
	if m.Len() == 0 {
		b.Fatal("no metrics")
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = c.Update(b.Context(), &Metrics{})
	}
}

// At 10,000 processes, with groups that make the collector read every process's uid, exe and
// cmdline: the dearest configuration there is.
func BenchmarkProcessGroups10k(b *testing.B) {
	root := procTree10k(b)
	uid := strconv.Itoa(os.Getuid())
	c, _ := newProcessGroups(groupsConfig(b, root,
		group("by-comm", ProcessMatch{Comm: "worker7"}),
		group("by-user", ProcessMatch{User: uid}),
		group("by-exe", ProcessMatch{Exe: "worker3"}),
		group("by-cmdline", ProcessMatch{Cmdline: `--id 99\d\d$`}),
	), nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Update(b.Context(), &Metrics{}); err != nil {
			b.Fatal(err)
		}
	}
}
