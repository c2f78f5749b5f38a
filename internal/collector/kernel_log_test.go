package collector

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kmsgConfig is a configuration reading the kernel log from path, with extra patterns.
func kmsgConfig(t testing.TB, path string, patterns ...KernelLogPattern) *Config {
	t.Helper()
	c := &Config{KmsgPath: path, StateDir: t.TempDir()}
	c.KernelLog.Patterns = patterns
	c.withDefaults()
	return c
}

func newKernelLogT(t testing.TB, cfg *Config, logger *slog.Logger) *kernelLogCollector {
	t.Helper()
	c, err := newKernelLog(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	kc := c.(*kernelLogCollector)
	t.Cleanup(func() { kc.Close() })
	return kc
}

// waitFor scrapes c until ok accepts what it emitted, or fails after a generous deadline. The
// reader is asynchronous; the deadline only bounds a test that would otherwise hang.
func waitFor(t *testing.T, c Collector, what string, ok func(Families) bool) Families {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams, err := scrape(t, c)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok(fams) {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s; last scrape: %v", what, dump(fams))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dump(f Families) string {
	var b strings.Builder
	for _, n := range f.Names() {
		for _, m := range f[n].GetMetric() {
			b.WriteString(n)
			for _, l := range m.GetLabel() {
				fmt.Fprintf(&b, " %s=%q", l.GetName(), l.GetValue())
			}
			fmt.Fprintf(&b, " %g\n", m.GetCounter().GetValue()+m.GetGauge().GetValue())
		}
	}
	return b.String()
}

func randomTag(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestKernelLogReal injects records through the real /dev/kmsg, as root can, and waits for the
// collector to see them.
func TestKernelLogReal(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("writing to /dev/kmsg needs root")
	}
	tag := randomTag(t)
	start := time.Now()
	c := newKernelLogT(t, kmsgConfig(t, "/dev/kmsg",
		KernelLogPattern{Name: "sagetest_custom", Regex: `sagetest-custom-` + tag}), nil)

	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	// Every pattern is there from the first scrape, matched or not.
	for _, p := range append(DefaultKernelLogPatterns, KernelLogPattern{Name: "sagetest_custom"}) {
		if _, ok := fams.Value("sage_kernel_log_matches_total", "pattern", p.Name); !ok {
			t.Errorf("no sage_kernel_log_matches_total for %s", p.Name)
		}
		if _, ok := fams.Value("sage_kernel_log_last_match_timestamp_seconds", "pattern", p.Name); !ok {
			t.Errorf("no sage_kernel_log_last_match_timestamp_seconds for %s", p.Name)
		}
	}
	if v, _ := fams.Value("sage_kernel_log_matches_total", "pattern", "sagetest_custom"); v != 0 {
		t.Errorf("custom pattern matched %v records before any was written", v)
	}
	before, _ := fams.Value("sage_kernel_log_matches_total", "pattern", "segfault")

	w, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, line := range []string{
		"<4>sagetest: segfault at 0 ip sagetest-" + tag,
		"<4>sagetest: custom marker sagetest-custom-" + tag,
		"<4>sagetest: nothing to see sagetest-nomatch-" + tag,
	} {
		if _, err := w.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	fams = waitFor(t, c, "the injected records", func(f Families) bool {
		seg, _ := f.Value("sage_kernel_log_matches_total", "pattern", "segfault")
		custom, _ := f.Value("sage_kernel_log_matches_total", "pattern", "sagetest_custom")
		recs, _ := f.Value("sage_kernel_log_records_total")
		return seg > before && custom == 1 && recs >= 3
	})
	if ts, _ := fams.Value("sage_kernel_log_last_match_timestamp_seconds", "pattern", "sagetest_custom"); ts < float64(start.Unix()) || ts > float64(time.Now().Unix()+1) {
		t.Errorf("last match timestamp %v is not the time of the match", ts)
	}
	last := map[string]KernelLogMatch{}
	for _, m := range c.LastMatches() {
		last[m.Pattern] = m
		if strings.Contains(m.Message, "sagetest-nomatch-"+tag) {
			t.Errorf("pattern %s matched the non-matching record %q", m.Pattern, m.Message)
		}
	}
	if m := last["sagetest_custom"]; m.Message != "sagetest: custom marker sagetest-custom-"+tag || m.Priority != 1<<3|4 {
		t.Errorf("last custom match = %+v", m)
	}
	if m := last["segfault"]; !strings.Contains(m.Message, "segfault at") {
		t.Errorf("last segfault match = %+v", m)
	}

	if err := closeWithin(t, c); err != nil {
		t.Fatal(err)
	}
}

// closeWithin closes c and checks that its reader goroutine has returned.
func closeWithin(t *testing.T, c *kernelLogCollector) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- c.Close() }()
	select {
	case err := <-errc:
		if c.done != nil {
			select {
			case <-c.done:
			default:
				t.Error("Close returned before the reader goroutine")
			}
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: the reader is stuck")
		return nil
	}
}

// TestKernelLogFile runs the reader on a regular file standing in for /dev/kmsg, appended to after
// the collector started, as records arrive.
func TestKernelLogFile(t *testing.T) {
	huge := "6,9,100,-;segfault at " + strings.Repeat("x", 100<<10)
	tests := []struct {
		name     string
		existing string // in the file before the collector starts: must not count
		appended []string
		records  float64
		matches  map[string]float64
		lastMsg  map[string]string
	}{
		{
			name:     "default and custom patterns",
			existing: "6,1,100,-;segfault at 0 ip 1 old record\n",
			appended: []string{
				"6,2,200,-;a.out[123]: segfault at 0 ip 0000 sp 0000 error 4\n",
				"3,3,300,-;blk_update_request: I/O error, dev sda, sector 42\n",
				"6,4,400,-;sagetest custom thing\n",
				"6,5,500,-;nothing interesting\n",
			},
			records: 4,
			matches: map[string]float64{"segfault": 1, "io_error": 1, "custom": 1, "oom_killer": 0, "hung_task": 0},
			lastMsg: map[string]string{"io_error": "blk_update_request: I/O error, dev sda, sector 42"},
		},
		{
			name: "continuation lines belong to their record",
			appended: []string{
				"3,2,200,-;EXT4-fs error (device sda1): bad block\n SUBSYSTEM=block\n DEVICE=+block:sda1\n",
				"6,3,300,-;usb 1-1: new device\n SUBSYSTEM=segfault at 0\n",
			},
			records: 2,
			matches: map[string]float64{"ext4_error": 1, "segfault": 0},
		},
		{
			name:     "record split across writes and several records per write",
			appended: []string{"6,2,200,-;INFO: task foo:1 blocked for more ", "than 120 seconds.\n6,3,1,-;x\n6,4,1,-;y\n"},
			records:  3,
			matches:  map[string]float64{"hung_task": 1},
		},
		{
			name:     "escaped bytes are matched unescaped",
			appended: []string{`6,2,200,-;sagetest custom\x09tab \x5c \xe2\x9c\x93` + "\n"},
			records:  1,
			matches:  map[string]float64{"custom": 1},
			lastMsg:  map[string]string{"custom": "sagetest custom\ttab \\ ✓"},
		},
		{
			name:     "odd records still count and match",
			appended: []string{"no header: Out of memory: Killed process 1\n", "x,y,z,-;I/O error\n", ";\n", "\n"},
			records:  4,
			matches:  map[string]float64{"oom_killer": 1, "io_error": 1},
		},
		{
			name:     "a huge line is cut, not fatal",
			appended: []string{huge + "\n", "6,10,1,-;segfault at 1\n"},
			records:  2,
			matches:  map[string]float64{"segfault": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kmsg")
			if err := os.WriteFile(path, []byte(tt.existing), 0o644); err != nil {
				t.Fatal(err)
			}
			c := newKernelLogT(t, kmsgConfig(t, path, KernelLogPattern{Name: "custom", Regex: `^sagetest custom`}), nil)
			w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			for _, chunk := range tt.appended {
				if _, err := w.WriteString(chunk); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Millisecond) // gives the reader a chance to see a partial record
			}
			fams := waitFor(t, c, "the appended records", func(f Families) bool {
				v, _ := f.Value("sage_kernel_log_records_total")
				return v >= tt.records
			})
			if v, _ := fams.Value("sage_kernel_log_records_total"); v != tt.records {
				t.Errorf("records = %v, want %v", v, tt.records)
			}
			for p, want := range tt.matches {
				if got, ok := fams.Value("sage_kernel_log_matches_total", "pattern", p); !ok || got != want {
					t.Errorf("matches{%s} = %v (%v), want %v", p, got, ok, want)
				}
				ts, _ := fams.Value("sage_kernel_log_last_match_timestamp_seconds", "pattern", p)
				if (want > 0) != (ts > 0) {
					t.Errorf("last match timestamp{%s} = %v with %v matches", p, ts, want)
				}
			}
			if v, _ := fams.Value("sage_kernel_log_lost_records_total"); v != 0 {
				t.Errorf("lost = %v, want 0", v)
			}
			last := map[string]string{}
			for _, m := range c.LastMatches() {
				last[m.Pattern] = m.Message
				if len(m.Message) > kmsgMaxStoredMessage {
					t.Errorf("stored message of %d bytes", len(m.Message))
				}
			}
			for p, want := range tt.lastMsg {
				if last[p] != want {
					t.Errorf("last %s match = %q, want %q", p, last[p], want)
				}
			}
		})
	}
}

// TestKernelLogFIFO checks the path /dev/kmsg takes: a pollable file whose reads wait for data,
// and a Close that wakes a waiting read.
func TestKernelLogFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kmsg")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	c := newKernelLogT(t, kmsgConfig(t, path), nil)
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteString("4,1,1,-;Out of memory: Killed process 42 (java)\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "the OOM record", func(f Families) bool {
		v, _ := f.Value("sage_kernel_log_matches_total", "pattern", "oom_killer")
		return v == 1
	})
	// The writer stays open with nothing to say: the reader now waits in the poller.
	time.Sleep(50 * time.Millisecond)
	if err := closeWithin(t, c); err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, base)
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// A scrape after Close (a reload lets running scrapes finish) reports counts and reopens nothing.
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := fams.Value("sage_kernel_log_matches_total", "pattern", "oom_killer"); v != 1 {
		t.Errorf("after Close: oom matches = %v, want 1", v)
	}
	waitGoroutines(t, base)
}

// waitGoroutines fails if the number of goroutines does not come back to base: a leaked reader.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestKernelLogCloseReal(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("reading /dev/kmsg needs root")
	}
	base := runtime.NumGoroutine()
	c := newKernelLogT(t, realConfig(t), nil)
	if c.done == nil {
		t.Fatalf("reader not started: %v", c.err)
	}
	time.Sleep(50 * time.Millisecond) // lets the reader reach its wait in the poller
	if err := closeWithin(t, c); err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, base)
}

func TestKernelLogUnavailable(t *testing.T) {
	if asNobody(t) {
		return
	}
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "kmsg")
	if err := os.WriteFile(unreadable, nil, 0); err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join(dir, "absent"), unreadable}
	if b, err := os.ReadFile("/proc/sys/kernel/dmesg_restrict"); err == nil && strings.TrimSpace(string(b)) == "1" {
		paths = append(paths, "/dev/kmsg") // as uid 65534 without CAP_SYSLOG
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			var logs bytes.Buffer
			c := newKernelLogT(t, kmsgConfig(t, path), slog.New(slog.NewTextHandler(&logs, nil)))
			for range 2 {
				fams, err := scrape(t, c)
				if err == nil || !strings.Contains(err.Error(), "kernel log") {
					t.Fatalf("err = %v, want one saying the kernel log cannot be read", err)
				}
				if len(fams) != 0 {
					t.Errorf("emitted %v without a kernel log", fams.Names())
				}
			}
			if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), path) {
				t.Errorf("want one warning naming %s, got:\n%s", path, logs.String())
			}
			if err := c.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

// TestKernelLogReopens checks that a kernel log that appears later (a device node created, a
// permission granted) is picked up without a restart.
func TestKernelLogReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kmsg")
	c := newKernelLogT(t, kmsgConfig(t, path), nil)
	if _, err := scrape(t, c); err == nil {
		t.Fatal("want an error before the kernel log exists")
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := scrape(t, c); err != nil {
		t.Fatalf("after the kernel log appeared: %v", err)
	}
	if err := os.WriteFile(path, []byte("6,1,1,-;segfault at 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "the record", func(f Families) bool {
		v, _ := f.Value("sage_kernel_log_matches_total", "pattern", "segfault")
		return v == 1
	})
}

// TestKernelLogReadFailure uses a file that opens and seeks but refuses reads (EINVAL, the error
// /dev/kmsg gives for a too small buffer): the reader grows its buffer to the limit, then stops;
// Update says so, still reports the counters, and restarts the reader.
func TestKernelLogReadFailure(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("opening the write-only /proc/self/clear_refs for reading needs root")
	}
	base := runtime.NumGoroutine()
	c := newKernelLogT(t, kmsgConfig(t, "/proc/self/clear_refs"), nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams, err := scrape(t, c)
		if err != nil {
			if !strings.Contains(err.Error(), "reading kernel log") || !strings.Contains(err.Error(), "reopened") {
				t.Fatalf("err = %v", err)
			}
			if _, ok := fams.Value("sage_kernel_log_records_total"); !ok {
				t.Error("counters dropped after a read failure")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the read failure was never reported")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := closeWithin(t, c); err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, base)
}

// TestKernelLogLost drives the record handler directly: an EPIPE cannot be provoked without
// flooding the host's kernel log.
func TestKernelLogLost(t *testing.T) {
	tests := []struct {
		name  string
		steps []string // "EPIPE" or a record line
		want  uint64
	}{
		{name: "gap after EPIPE counts the skipped records", steps: []string{"6,10,1,-;a", "EPIPE", "6,15,1,-;b"}, want: 4},
		{name: "EPIPE before any record counts one", steps: []string{"EPIPE", "6,15,1,-;b"}, want: 1},
		{name: "EPIPE then an unreadable header counts one", steps: []string{"6,10,1,-;a", "EPIPE", "garbage"}, want: 1},
		{name: "a gap without EPIPE is not a loss", steps: []string{"6,10,1,-;a", "6,15,1,-;b"}, want: 0},
		{name: "two EPIPEs, one gap", steps: []string{"6,1,1,-;a", "EPIPE", "6,3,1,-;b", "EPIPE", "6,10,1,-;c"}, want: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newKernelLogT(t, kmsgConfig(t, filepath.Join(t.TempDir(), "absent")), nil)
			for _, s := range tt.steps {
				if s == "EPIPE" {
					c.lostSince = true
					continue
				}
				c.handle([]byte(s), time.Now(), nil, nil)
			}
			if c.lost != tt.want {
				t.Errorf("lost = %d, want %d", c.lost, tt.want)
			}
		})
	}
}

func TestKernelLogBadPattern(t *testing.T) {
	cfg := kmsgConfig(t, "/nonexistent", KernelLogPattern{Name: "bad", Regex: `(`})
	if _, err := newKernelLog(cfg, nil); err == nil {
		t.Fatal("want an error for an invalid regular expression")
	}
}

func TestParseKmsgRecord(t *testing.T) {
	tests := []struct {
		line string
		want kmsgRecord
	}{
		{"6,1234,5678,-;hello", kmsgRecord{prio: 6, seq: 1234, usec: 5678, ok: true, msg: []byte("hello")}},
		{"12,1,2,c,caller=T1;x;y", kmsgRecord{prio: 12, seq: 1, usec: 2, ok: true, msg: []byte("x;y")}},
		{"6,1,2;no flags", kmsgRecord{prio: 6, seq: 1, usec: 2, ok: true, msg: []byte("no flags")}},
		{"6,1;short", kmsgRecord{prio: -1, msg: []byte("short")}},
		{"a,1,2,-;bad prio", kmsgRecord{prio: -1, msg: []byte("bad prio")}},
		{"6,99999999999999999999,2,-;seq overflows", kmsgRecord{prio: -1, msg: []byte("seq overflows")}},
		{"6,,2,-;empty seq", kmsgRecord{prio: -1, msg: []byte("empty seq")}},
		{"no semicolon", kmsgRecord{prio: -1, msg: []byte("no semicolon")}},
		{"", kmsgRecord{prio: -1, msg: []byte("")}},
	}
	for _, tt := range tests {
		got := parseKmsgRecord([]byte(tt.line))
		if got.prio != tt.want.prio || got.seq != tt.want.seq || got.usec != tt.want.usec || got.ok != tt.want.ok || !bytes.Equal(got.msg, tt.want.msg) {
			t.Errorf("parseKmsgRecord(%q) = %+v, want %+v", tt.line, got, tt.want)
		}
	}
}

func FuzzParseKmsgRecord(f *testing.F) {
	for _, s := range []string{"6,1234,5678,-;hello", "12,1,2,c,caller=T1;x", "6,1;x", ";", ",,,;", "6,1,2,-;a\\x41\\x4\\", "no semicolon", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r := parseKmsgRecord(line)
		if len(r.msg) > len(line) {
			t.Fatalf("message longer than the line")
		}
		if !r.ok && r.prio != -1 {
			t.Fatalf("unreadable header with prio %d", r.prio)
		}
		if u := unescapeKmsg(nil, r.msg); len(u) > len(r.msg) {
			t.Fatalf("unescaping grew %q to %q", r.msg, u)
		}
	})
}

func FuzzKmsgSplitter(f *testing.F) {
	f.Add([]byte("6,1,1,-;a\n SUB=x\n6,2,1,-;b\n"), uint8(3), uint8(16))
	f.Add([]byte(strings.Repeat("y", 100)+"\nz\n"), uint8(7), uint8(8))
	f.Add([]byte("\n\n\n"), uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk, size uint8) {
		s := kmsgSplitter{buf: make([]byte, int(size)%64+1)}
		step := int(chunk)%16 + 1
		// Every line, whole if it fits the buffer with its newline, else cut to the buffer's size;
		// a last line without newline only once it fills the buffer.
		var want [][]byte
		lines := bytes.Split(data, []byte("\n"))
		for i, l := range lines {
			if len(l) >= len(s.buf) {
				want = append(want, l[:len(s.buf)])
			} else if i < len(lines)-1 {
				want = append(want, l)
			}
		}
		var got [][]byte
		for len(data) > 0 {
			n := copy(s.space()[:min(step, len(s.space()))], data)
			data = data[n:]
			s.advance(n, func(l []byte) {
				if bytes.IndexByte(l, '\n') >= 0 || len(l) > len(s.buf) {
					t.Fatalf("bad line %q (buffer %d)", l, len(s.buf))
				}
				got = append(got, bytes.Clone(l)) // l is only valid during the call
			})
			if s.n >= len(s.buf) {
				t.Fatalf("no room left to read: %d of %d", s.n, len(s.buf))
			}
		}
		if !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("lines %q, want %q", got, want)
		}
	})
}

func TestKmsgSplitter(t *testing.T) {
	s := kmsgSplitter{buf: make([]byte, 8)}
	var got []string
	for _, chunk := range []string{"ab\ncd", "\n0123456789", "ab\nok\n", "x"} {
		n := copy(s.space(), chunk)
		s.advance(n, func(l []byte) { got = append(got, string(l)) })
		for rest := chunk[n:]; rest != ""; rest = rest[n:] {
			n = copy(s.space(), rest)
			s.advance(n, func(l []byte) { got = append(got, string(l)) })
		}
	}
	want := []string{"ab", "cd", "01234567", "ok"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q, want %q", got, want)
	}
}

func BenchmarkKernelLog(b *testing.B) {
	c, err := newKernelLog(realConfig(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.(*kernelLogCollector).Close()
	if err := c.Update(b.Context(), &Metrics{}); err != nil {
		b.Skipf("no kernel log here: %v", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		m := &Metrics{}
		if err := c.Update(b.Context(), m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKernelLogRecord is the reader's cost for one record against the default patterns.
func BenchmarkKernelLogRecord(b *testing.B) {
	c, _ := newKernelLog(kmsgConfig(b, "/nonexistent"), nil)
	kc := c.(*kernelLogCollector)
	line := []byte("6,1234,56789012,-;EXT4-fs (sda1): mounted filesystem with ordered data mode. Quota mode: none.")
	var matched []int
	var scratch []byte
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		matched, scratch = kc.handle(line, now, matched[:0], scratch)
	}
}
