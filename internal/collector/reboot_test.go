package collector

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRebootReal(t *testing.T) {
	c, err := newReboot(realConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	btime, err := parseBtime(stat)
	if err != nil {
		t.Fatal(err)
	}
	// btime moves only if the clock is stepped between the two reads.
	if v, ok := fams.Value("node_boot_time_seconds"); !ok || v < float64(btime)-5 || v > float64(btime)+5 {
		t.Errorf("node_boot_time_seconds = %v (%v), want about %d", v, ok, btime)
	}
	id, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := fams.Value("sage_host_boot_id_info", "boot_id", strings.TrimSpace(string(id))); !ok || v != 1 {
		t.Errorf("sage_host_boot_id_info for this boot = %v (%v)", v, ok)
	}
	if v, ok := fams.Value("sage_host_reboots_total"); !ok || v != 0 {
		t.Errorf("sage_host_reboots_total = %v (%v) on a first start, want 0", v, ok)
	}
	if v, ok := fams.Value("sage_host_last_reboot_detected_timestamp_seconds"); !ok || v != 0 {
		t.Errorf("last reboot detected = %v (%v), want 0", v, ok)
	}
}

// rebootProc is a fixture /proc with a btime and a boot id.
func rebootProc(t *testing.T, bootID string) string {
	return writeTree(t, map[string]string{
		"stat":                      "cpu  1 2 3 4 5 6 7 8 9 10\nintr 0\nbtime 1700000000\nprocesses 1\n",
		"sys/kernel/random/boot_id": bootID + "\n",
	})
}

// startReboot builds the collector as an agent start would, logging to logs.
func startReboot(t *testing.T, proc, stateDir string, logs *bytes.Buffer) Collector {
	t.Helper()
	cfg := fixtureConfig(t, proc, "")
	cfg.StateDir = stateDir
	c, err := newReboot(cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// logLines decodes the JSON log lines in logs.
func logLines(t *testing.T, logs *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(logs.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestRebootAcrossRestarts starts the collector once per boot id, on the same state directory, as
// successive agent starts would.
func TestRebootAcrossRestarts(t *testing.T) {
	const (
		boot1 = "11111111-1111-1111-1111-111111111111"
		boot2 = "22222222-2222-2222-2222-222222222222"
		boot3 = "33333333-3333-3333-3333-333333333333"
	)
	stateDir := filepath.Join(t.TempDir(), "state", "sage") // does not exist yet
	steps := []struct {
		name     string
		bootID   string
		reboots  float64
		rebooted bool // logs "host rebooted" with previous
		previous string
	}{
		{name: "first start", bootID: boot1},
		{name: "restart in the same boot", bootID: boot1},
		{name: "reboot while down", bootID: boot2, reboots: 1, rebooted: true, previous: boot1},
		{name: "restart after the reboot", bootID: boot2, reboots: 1},
		{name: "another reboot", bootID: boot3, reboots: 2, rebooted: true, previous: boot2},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			var logs bytes.Buffer
			c := startReboot(t, rebootProc(t, st.bootID), stateDir, &logs)
			fams, err := scrape(t, c)
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := fams.Value("sage_host_reboots_total"); v != st.reboots {
				t.Errorf("reboots = %v, want %v", v, st.reboots)
			}
			if v, ok := fams.Value("sage_host_boot_id_info", "boot_id", st.bootID); !ok || v != 1 || fams.Count("sage_host_boot_id_info") != 1 {
				t.Errorf("boot id info: %s", dump(fams))
			}
			if v, _ := fams.Value("node_boot_time_seconds"); v != 1700000000 {
				t.Errorf("node_boot_time_seconds = %v", v)
			}
			detected, _ := fams.Value("sage_host_last_reboot_detected_timestamp_seconds")
			if (st.reboots > 0) != (detected > 0) {
				t.Errorf("last reboot detected = %v with %v reboots", detected, st.reboots)
			}
			lines := logLines(t, &logs)
			if !st.rebooted {
				if len(lines) != 0 {
					t.Errorf("logged %v, want nothing", lines)
				}
				return
			}
			if len(lines) != 1 {
				t.Fatalf("logged %v, want one line", lines)
			}
			l := lines[0]
			if l["msg"] != "host rebooted" || l["level"] != "WARN" || l["previous_boot_id"] != st.previous ||
				l["boot_id"] != st.bootID || l["boot_time"] != "2023-11-14T22:13:20Z" || l["reboots"] != st.reboots {
				t.Errorf("log line %v", l)
			}
			// Scrapes in the same run do not detect it again.
			logs.Reset()
			fams, _ = scrape(t, c)
			if v, _ := fams.Value("sage_host_reboots_total"); v != st.reboots || logs.Len() != 0 {
				t.Errorf("second scrape: reboots %v, logs %q", v, logs.String())
			}
		})
	}
	fi, err := os.Stat(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %v, want 0700", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(stateDir)
	if len(entries) != 1 || entries[0].Name() != rebootStateFile {
		t.Errorf("state directory holds %v, want only %s (no temporary file left)", entries, rebootStateFile)
	}
}

func TestRebootCorruptState(t *testing.T) {
	const bootID = "44444444-4444-4444-4444-444444444444"
	for _, content := range []string{"", "garbage", `{"boot_id":`, `{"boot_id":""}`, `{"reboots":3}`,
		`{"boot_id":"x","reboots":-1}`, `{"boot_id":"x","last_reboot_detected":-5}`, "\x00\xff"} {
		t.Run(content, func(t *testing.T) {
			stateDir := writeTree(t, map[string]string{rebootStateFile: content})
			var logs bytes.Buffer
			c := startReboot(t, rebootProc(t, bootID), stateDir, &logs)
			fams, err := scrape(t, c)
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := fams.Value("sage_host_reboots_total"); !ok || v != 0 {
				t.Errorf("reboots = %v (%v), want 0: a corrupt state is a first start", v, ok)
			}
			lines := logLines(t, &logs)
			if len(lines) != 1 || lines[0]["level"] != "WARN" || !strings.Contains(lines[0]["msg"].(string), "corrupt") {
				t.Errorf("logged %v, want one warning about the corrupt state", lines)
			}
			s, err := readRebootState(filepath.Join(stateDir, rebootStateFile))
			if err != nil || s.BootID != bootID || s.Reboots != 0 {
				t.Errorf("state rewritten as %+v, %v", s, err)
			}
		})
	}
}

// TestRebootNoState covers the cases where the state cannot be kept: the boot time is still
// reported, and the error says that reboots cannot be tracked.
func TestRebootNoState(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{
		"no state directory":           "",
		"state directory under a file": filepath.Join(blocker, "sage"),
		"state directory is a file":    blocker,
	} {
		t.Run(name, func(t *testing.T) {
			var logs bytes.Buffer
			c := startReboot(t, rebootProc(t, "55555555-5555-5555-5555-555555555555"), dir, &logs)
			for range 2 {
				fams, err := scrape(t, c)
				if err == nil || !strings.Contains(err.Error(), "cannot be tracked") {
					t.Errorf("err = %v, want one saying reboots cannot be tracked", err)
				}
				if v, _ := fams.Value("node_boot_time_seconds"); v != 1700000000 {
					t.Errorf("node_boot_time_seconds = %v, want it despite the state", v)
				}
				if _, ok := fams.Value("sage_host_boot_id_info", "boot_id", "55555555-5555-5555-5555-555555555555"); !ok {
					t.Error("no boot id info")
				}
			}
			if logs.Len() != 0 {
				t.Errorf("logged %q: the framework logs Update's error", logs.String())
			}
		})
	}
}

// TestRebootStateRetried checks that a state that could not be written at start is written by a
// later Update, once the directory allows it.
func TestRebootStateRetried(t *testing.T) {
	if asNobody(t) {
		return
	}
	stateDir := t.TempDir()
	path := filepath.Join(stateDir, rebootStateFile)
	if err := os.WriteFile(path, []byte(`{"boot_id":"old","reboots":4}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(stateDir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(stateDir, 0o700) })
	var logs bytes.Buffer
	c := startReboot(t, rebootProc(t, "new"), stateDir, &logs)
	fams, err := scrape(t, c)
	if err == nil || !strings.Contains(err.Error(), "writing reboot state") {
		t.Fatalf("err = %v, want a write error", err)
	}
	if v, _ := fams.Value("sage_host_reboots_total"); v != 5 {
		t.Errorf("reboots = %v, want 5 though not yet persisted", v)
	}
	if v, _ := fams.Value("node_boot_time_seconds"); v != 1700000000 {
		t.Errorf("node_boot_time_seconds = %v", v)
	}
	if err := os.Chmod(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := scrape(t, c); err != nil {
		t.Fatalf("after the directory became writable: %v", err)
	}
	if s, err := readRebootState(path); err != nil || s.BootID != "new" || s.Reboots != 5 || s.LastRebootDetected <= 0 {
		t.Errorf("state = %+v, %v", s, err)
	}
	if n := strings.Count(logs.String(), "host rebooted"); n != 1 {
		t.Errorf("reboot logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestRebootUnreadableState: a state file the agent cannot read is not a first start: it is left
// alone and the error says so.
func TestRebootUnreadableState(t *testing.T) {
	if asNobody(t) {
		return
	}
	stateDir := t.TempDir()
	path := filepath.Join(stateDir, rebootStateFile)
	if err := os.WriteFile(path, []byte(`{"boot_id":"old","reboots":4}`), 0); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	c := startReboot(t, rebootProc(t, "new"), stateDir, &logs)
	fams, err := scrape(t, c)
	if err == nil || !strings.Contains(err.Error(), "reading reboot state") {
		t.Fatalf("err = %v, want a read error", err)
	}
	if _, ok := fams.Value("sage_host_reboots_total"); ok {
		t.Error("reboots reported without a readable state")
	}
	os.Chmod(path, 0o600)
	if s, err := readRebootState(path); err != nil || s.Reboots != 4 {
		t.Errorf("state overwritten: %+v, %v", s, err)
	}
}

func TestRebootBadProc(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string
		btime   bool
		reboots bool
	}{
		{name: "no boot id", files: map[string]string{"stat": "btime 1\n"}, wantErr: "reading boot id", btime: true},
		{name: "empty boot id", files: map[string]string{"stat": "btime 1\n", "sys/kernel/random/boot_id": "\n"}, wantErr: "boot id", btime: true},
		{name: "no btime", files: map[string]string{"stat": "cpu 1\n", "sys/kernel/random/boot_id": "x\n"}, wantErr: "no btime", reboots: true},
		{name: "odd btime", files: map[string]string{"stat": "btime -1\n", "sys/kernel/random/boot_id": "x\n"}, wantErr: "malformed btime", reboots: true},
		{name: "no stat", files: map[string]string{"sys/kernel/random/boot_id": "x\n"}, wantErr: "boot time", reboots: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			c := startReboot(t, writeTree(t, tt.files), t.TempDir(), &logs)
			fams, err := scrape(t, c)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if _, ok := fams.Value("node_boot_time_seconds"); ok != tt.btime {
				t.Errorf("node_boot_time_seconds present = %v, want %v", ok, tt.btime)
			}
			if _, ok := fams.Value("sage_host_reboots_total"); ok != tt.reboots {
				t.Errorf("sage_host_reboots_total present = %v, want %v", ok, tt.reboots)
			}
		})
	}
}

func FuzzParseBtime(f *testing.F) {
	f.Add([]byte("cpu  1 2 3\nbtime 1700000000\nprocesses 1\n"))
	f.Add([]byte("btime \nbtime 1"))
	f.Add([]byte("btime 99999999999999999999999\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := parseBtime(data)
		if err != nil && v != 0 {
			t.Fatalf("value %d with error %v", v, err)
		}
	})
}

func FuzzDecodeRebootState(f *testing.F) {
	f.Add([]byte(`{"boot_id":"a","reboots":2,"last_reboot_detected":1.5}`))
	f.Add([]byte(`{"boot_id":""}`))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeRebootState(data)
		if err != nil {
			return
		}
		if s.BootID == "" || s.LastRebootDetected < 0 {
			t.Fatalf("accepted %+v", s)
		}
		// What is accepted survives a write and a read.
		path := filepath.Join(t.TempDir(), rebootStateFile)
		if err := writeRebootState(path, s); err != nil {
			t.Fatal(err)
		}
		if back, err := readRebootState(path); err != nil || back != s {
			t.Fatalf("round trip %+v -> %+v, %v", s, back, err)
		}
	})
}

func BenchmarkReboot(b *testing.B) {
	c, _ := newReboot(realConfig(b), nil)
	b.ReportAllocs()
	for b.Loop() {
		m := &Metrics{}
		if err := c.Update(b.Context(), m); err != nil {
			b.Fatal(err)
		}
	}
}
