package collector

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeProc is one process of a fixture /proc tree.
type fakeProc struct {
	pid       int
	comm      string
	state     byte
	utime     uint64
	stime     uint64
	threads   uint64
	starttime uint64
	rss       uint64
	stat      string   // the whole stat file, replacing the one built from the fields above
	cmdline   []string // written NUL-terminated, as the kernel does
	exe       string   // symlink target; none when empty
	fds       int      // entries in fd/; no fd directory when negative
}

// statLine is a /proc/PID/stat line with every field of a 6.x kernel, the used ones set.
func (p fakeProc) statLine() string {
	return fmt.Sprintf("%d (%s) %c 1 %d %d 0 -1 4194560 1234 0 5 0 %d %d 0 0 20 0 %d 0 %d 23456789 %d "+
		"18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
		p.pid, p.comm, p.state, p.pid, p.pid, p.utime, p.stime, p.threads, p.starttime, p.rss)
}

// procTree writes a fixture /proc with the given processes, btime 1000, pid_max 32768 and
// threads-max 60000, and returns its path.
func procTree(t testing.TB, procs ...fakeProc) string {
	t.Helper()
	return procTreeAt(t, t.TempDir(), procs...)
}

func procTreeAt(t testing.TB, root string, procs ...fakeProc) string {
	t.Helper()
	for name, content := range map[string]string{
		"stat":                   "cpu  1 2 3 4 5 6 7 8 9 10\nintr 1 2 3\nctxt 42\nbtime 1000\nprocesses 7\n",
		"sys/kernel/pid_max":     "32768\n",
		"sys/kernel/threads-max": "60000\n",
		"self/stat":              "not a process\n", // non-numeric entries are not processes
		"sys/fs/file-nr":         "1 0 2\n",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range procs {
		writeFakeProc(t, root, p)
	}
	return root
}

func writeFakeProc(t testing.TB, root string, p fakeProc) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(p.pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := p.stat
	if stat == "" {
		stat = p.statLine()
	}
	var cmd []byte
	for _, a := range p.cmdline {
		cmd = append(append(cmd, a...), 0)
	}
	for name, data := range map[string][]byte{"stat": []byte(stat), "cmdline": cmd} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if p.exe != "" {
		if err := os.Symlink(p.exe, filepath.Join(dir, "exe")); err != nil {
			t.Fatal(err)
		}
	}
	if p.fds >= 0 {
		if err := os.Mkdir(filepath.Join(dir, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range p.fds {
			if err := os.Symlink("/dev/null", filepath.Join(dir, "fd", strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestProcessesReal(t *testing.T) {
	// A shell spinning on a builtin makes no syscall, so it is always running or runnable: R.
	busy := exec.Command("/bin/sh", "-c", "while :; do :; done")
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Process.Kill(); busy.Wait() })
	c, err := newProcesses(realConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	procs, _ := fams.Value("sage_processes_pids")
	threads, _ := fams.Value("sage_processes_threads")
	if procs < 1 || threads < procs {
		t.Errorf("processes %v, threads %v; want 1 <= processes <= threads", procs, threads)
	}
	if v, _ := fams.Value("sage_processes", "state", "running"); v < 1 {
		t.Errorf("running = %v, want >= 1", v)
	}
	for _, s := range []string{"running", "sleeping", "disk_sleep", "zombie", "stopped", "idle"} {
		if fams.Count("sage_processes", "state", s) != 1 {
			t.Errorf("no sage_processes{state=%q}", s)
		}
	}
	var sum float64
	for _, m := range fams["sage_processes"].GetMetric() {
		sum += m.GetGauge().GetValue()
	}
	// Processes come and go between the reads, but one scan counts each once.
	if sum != procs {
		t.Errorf("states sum to %v, processes_total = %v", sum, procs)
	}
	for file, name := range map[string]string{"pid_max": "sage_processes_max_pids", "threads-max": "sage_processes_max_threads"} {
		data, err := os.ReadFile("/proc/sys/kernel/" + file)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := strconv.ParseFloat(strings.TrimSpace(string(data)), 64)
		if got, ok := fams.Value(name); !ok || got != want {
			t.Errorf("%s = %v (%v), want %v", name, got, ok, want)
		}
	}
}

func TestProcessesFixtures(t *testing.T) {
	common := func(p ...fakeProc) []fakeProc {
		return append([]fakeProc{
			{pid: 1, comm: "init", state: 'S', threads: 1},
			{pid: 2, comm: "kthreadd", state: 'S', threads: 1},
		}, p...)
	}
	tests := []struct {
		name    string
		procs   []fakeProc
		remove  []string // files removed from the tree after it is written
		empty   []string // files emptied, as a process's files read once it is reaped
		want    map[string]float64
		states  map[string]float64 // sage_processes by state; common states not listed must be 0
		wantErr bool
	}{
		{
			name: "states, threads and limits",
			procs: common(
				fakeProc{pid: 10, comm: "busy", state: 'R', threads: 8},
				fakeProc{pid: 11, comm: "nfs", state: 'D', threads: 1},
				fakeProc{pid: 12, comm: "dead", state: 'Z', threads: 1},
				fakeProc{pid: 13, comm: "kworker/0:1", state: 'I', threads: 1},
				fakeProc{pid: 14, comm: "gdb'd", state: 't', threads: 2},
				fakeProc{pid: 15, comm: "future", state: 'Q', threads: 1},
				fakeProc{pid: 16, comm: "parked", state: 'P', threads: 1},
			),
			want: map[string]float64{"sage_processes_pids": 9, "sage_processes_threads": 17,
				"sage_processes_max_pids": 32768, "sage_processes_max_threads": 60000},
			states: map[string]float64{"sleeping": 2, "running": 1, "disk_sleep": 1, "zombie": 1,
				"idle": 1, "tracing_stop": 1, "unknown": 1, "parked": 1},
		},
		{
			name:   "comm with spaces and parentheses",
			procs:  common(fakeProc{pid: 42, comm: "my (weird) proc", state: 'T', threads: 3}),
			want:   map[string]float64{"sage_processes_pids": 3, "sage_processes_threads": 5},
			states: map[string]float64{"sleeping": 2, "stopped": 1},
		},
		{
			name:    "truncated stat is an error, the others still count",
			procs:   common(fakeProc{pid: 7, stat: "7 (cut) R 1 7 7 0 -1 4194560 12"}),
			want:    map[string]float64{"sage_processes_pids": 2, "sage_processes_threads": 2},
			states:  map[string]float64{"sleeping": 2},
			wantErr: true,
		},
		{
			name:   "a process gone between listing and reading is no error",
			procs:  common(fakeProc{pid: 8, stat: ""}),
			remove: []string{"8/stat"},
			want:   map[string]float64{"sage_processes_pids": 2},
			states: map[string]float64{"sleeping": 2},
		},
		{
			name:   "reaped after open reads as empty",
			procs:  common(fakeProc{pid: 9}),
			empty:  []string{"9/stat"},
			want:   map[string]float64{"sage_processes_pids": 2},
			states: map[string]float64{"sleeping": 2},
		},
		{
			name:    "garbage stat is an error",
			procs:   common(fakeProc{pid: 9, stat: "\x00"}),
			want:    map[string]float64{"sage_processes_pids": 2},
			states:  map[string]float64{"sleeping": 2},
			wantErr: true,
		},
		{
			name:    "missing limits are an error, processes still reported",
			procs:   common(),
			remove:  []string{"sys/kernel/pid_max", "sys/kernel/threads-max"},
			want:    map[string]float64{"sage_processes_pids": 2},
			states:  map[string]float64{"sleeping": 2},
			wantErr: true,
		},
		{
			name:   "no processes",
			want:   map[string]float64{"sage_processes_pids": 0, "sage_processes_threads": 0},
			states: map[string]float64{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := procTree(t, tt.procs...)
			for _, f := range tt.remove {
				if err := os.Remove(filepath.Join(root, f)); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tt.empty {
				// Fixtures are read-only, as /proc is; only root could truncate them as they are.
				if err := os.Chmod(filepath.Join(root, f), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(filepath.Join(root, f), 0); err != nil {
					t.Fatal(err)
				}
			}
			c, _ := newProcesses(fixtureConfig(t, root, ""), nil)
			fams, err := scrape(t, c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			for name, want := range tt.want {
				if got, ok := fams.Value(name); !ok || got != want {
					t.Errorf("%s = %v (%v), want %v", name, got, ok, want)
				}
			}
			for _, s := range []string{"running", "sleeping", "disk_sleep", "zombie", "stopped", "idle"} {
				if _, ok := tt.states[s]; !ok {
					tt.states[s] = 0
				}
			}
			if n := fams.Count("sage_processes"); n != len(tt.states) {
				t.Errorf("%d sage_processes series, want %d", n, len(tt.states))
			}
			for s, want := range tt.states {
				if got, ok := fams.Value("sage_processes", "state", s); !ok || got != want {
					t.Errorf("sage_processes{state=%q} = %v (%v), want %v", s, got, ok, want)
				}
			}
		})
	}
}

func TestProcessesMissingProc(t *testing.T) {
	c, _ := newProcesses(fixtureConfig(t, filepath.Join(t.TempDir(), "absent"), ""), nil)
	fams, err := scrape(t, c)
	if err == nil {
		t.Fatal("want an error without /proc")
	}
	if _, ok := fams.Value("sage_processes_pids"); ok {
		t.Error("a failed scan must not report a process count")
	}
}

// Nothing the collector reads needs privileges.
func TestProcessesNobody(t *testing.T) {
	if asNobody(t) {
		return
	}
	c, _ := newProcesses(realConfig(t), nil)
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := fams.Value("sage_processes_pids"); v < 1 {
		t.Errorf("processes_total = %v as uid %d", v, os.Getuid())
	}
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name string
		line string
		want procStat // comm compared as a string
		ok   bool
	}{
		{
			name: "kernel 6.x line",
			line: "17682 (cat) R 17630 17630 10381 0 -1 4194304 99 0 0 0 7 3 0 0 20 0 1 0 42007 3133440 381 18446744073709551615 94403277361152 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0\n",
			want: procStat{comm: []byte("cat"), state: 'R', utime: 7, stime: 3, threads: 1, starttime: 42007, rss: 381},
			ok:   true,
		},
		{
			name: "parentheses and spaces in comm",
			line: "42 (my (weird) proc) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 4 0 99 0 5",
			want: procStat{comm: []byte("my (weird) proc"), state: 'S', utime: 1, stime: 2, threads: 4, starttime: 99, rss: 5},
			ok:   true,
		},
		{
			name: "comm that looks like the rest of a line",
			line: "43 () R 1 ) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 4 0 99 0 5\n",
			want: procStat{comm: []byte(") R 1 "), state: 'S', utime: 1, stime: 2, threads: 4, starttime: 99, rss: 5},
			ok:   true,
		},
		{name: "empty comm", line: "44 () Z 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0\n",
			want: procStat{comm: []byte(""), state: 'Z', threads: 1, starttime: 1}, ok: true},
		{name: "truncated before rss", line: "7 (cut) R 1 7 7 0 -1 4194560 12 0 0 0 1 2 0 0 20 0 1 0 5 0"},
		{name: "truncated in comm", line: "7 (cu"},
		{name: "no comm", line: "7 cut R 1"},
		{name: "empty", line: ""},
		{name: "negative utime", line: "7 (x) R 1 1 1 0 -1 0 0 0 0 0 -1 2 0 0 20 0 1 0 5 0 1"},
		{name: "two-letter state", line: "7 (x) RS 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 1"},
		{name: "double space", line: "7 (x) R  1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 1"},
		{name: "overflowing rss", line: "7 (x) R 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 18446744073709551616"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got procStat
			err := parseProcStat([]byte(tt.line), &got)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			if !bytes.Equal(got.comm, tt.want.comm) {
				t.Errorf("comm = %q, want %q", got.comm, tt.want.comm)
			}
			got.comm, tt.want.comm = nil, nil
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("17682 (cat) R 17630 17630 10381 0 -1 4194304 99 0 0 0 7 3 0 0 20 0 1 0 42007 3133440 381 18446744073709551615 1 0\n"))
	f.Add([]byte("42 (my (weird) proc) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 4 0 99 0 5"))
	f.Add([]byte("7 (cut) R 1 7 7 0 -1 4194560 12"))
	f.Add([]byte("()"))
	f.Add([]byte(")("))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s procStat
		if err := parseProcStat(data, &s); err != nil {
			return
		}
		if s.state == ' ' || s.state == '\n' {
			t.Fatalf("state %q from %q", s.state, data)
		}
		// comm lies within the line, between a '(' and a ')'.
		i := cap(data) - cap(s.comm) // comm is a subslice of data
		if i < 1 || data[i-1] != '(' || i+len(s.comm) >= len(data) || data[i+len(s.comm)] != ')' {
			t.Fatalf("comm %q not delimited in %q", s.comm, data)
		}
	})
}

func FuzzProcDirent(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 24, 0, 4, '1', '2', 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for off := 0; off < len(data); {
			name, next, ok := procDirent(data, off)
			if !ok {
				return
			}
			if next <= off || next > len(data) || len(name) > next-off {
				t.Fatalf("entry at %d: next %d, name %q", off, next, name)
			}
			off = next
		}
	})
}

func BenchmarkProcesses(b *testing.B) {
	c, _ := newProcesses(realConfig(b), nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Update(b.Context(), &Metrics{}); err != nil {
			b.Fatal(err)
		}
	}
}

// procTree10k is a fixture /proc of 10,000 processes, a host an order of magnitude busier than most,
// to measure a scrape where process-exporter takes minutes. It is written to tmpfs when there is
// one, which is quicker to fill and, like procfs, memory; procfs still costs more per file, as it
// generates each, so this measures the collector's own part of a scrape.
func procTree10k(b *testing.B) string {
	b.Helper()
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	root, err := os.MkdirTemp(base, "sage-proc10k-")
	if err != nil {
		root = b.TempDir()
	} else {
		b.Cleanup(func() { os.RemoveAll(root) })
	}
	procTreeAt(b, root)
	for i := range 10000 {
		p := fakeProc{pid: 100 + i, comm: fmt.Sprintf("worker%d", i%50), state: "SSSSRDI"[i%7],
			utime: uint64(i), stime: uint64(i / 2), threads: uint64(1 + i%4), starttime: uint64(1000 + i),
			rss: uint64(100 + i), cmdline: []string{"/usr/bin/worker", "--id", strconv.Itoa(i)},
			exe: fmt.Sprintf("/usr/bin/worker%d", i%50), fds: 3 + i%3}
		writeFakeProc(b, root, p)
	}
	return root
}

func BenchmarkProcesses10k(b *testing.B) {
	c, _ := newProcesses(fixtureConfig(b, procTree10k(b), ""), nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Update(b.Context(), &Metrics{}); err != nil {
			b.Fatal(err)
		}
	}
}

// The scanner's reads, fast paths included, against the plain reads of the same files.
func TestProcScannerReal(t *testing.T) {
	// A command line longer than a read buffer, made of sleep's arguments: 3600 s + 000...01 s.
	long := strings.Repeat("0", 9000) + "1"
	cmd := exec.Command("sleep", "3600", long)
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	s := newProcScanner("/proc")
	self := []byte(strconv.Itoa(os.Getpid()))
	child := []byte(strconv.Itoa(cmd.Process.Pid))
	found := 0
	err := s.scan(t.Context(), func(pid []byte, st *procStat) {
		switch {
		case bytes.Equal(pid, self):
			found++
			comm, _ := os.ReadFile("/proc/self/comm")
			if string(st.comm) != strings.TrimSuffix(string(comm), "\n") || st.threads < 1 {
				t.Errorf("self: comm %q threads %d; comm file says %q", st.comm, st.threads, comm)
			}
			exe, err := s.exePath(pid)
			want, _ := os.Executable()
			if err != nil || string(exe) != want {
				t.Errorf("self exe = %q, %v; want %q", exe, err, want)
			}
			n, err := s.fdCount(pid)
			entries, _ := os.ReadDir("/proc/self/fd")
			// ReadDir holds one more descriptor while it lists; the runtime may hold another.
			if err != nil || n < 1 || n < len(entries)-2 || n > len(entries)+2 {
				t.Errorf("self fds = %d, %v; /proc/self/fd lists %d", n, err, len(entries))
			}
			uid, err := s.uid(pid)
			if err != nil || uid != uint32(os.Geteuid()) {
				t.Errorf("self uid = %d, %v; want %d", uid, err, os.Geteuid())
			}
		case bytes.Equal(pid, child):
			found++
			line, err := s.cmdline(pid)
			if want := "sleep 3600 " + long; err != nil || string(line) != want {
				t.Errorf("child cmdline: %d bytes, %v; want %d bytes", len(line), err, len(want))
			}
			if string(st.comm) != "sleep" {
				t.Errorf("child comm = %q", st.comm)
			}
		}
	})
	if err != nil || s.badErr() != nil {
		t.Fatal(err, s.badErr())
	}
	if found != 2 {
		t.Errorf("found %d of this process and its child, want both", found)
	}
}
