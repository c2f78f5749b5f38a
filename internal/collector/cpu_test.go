package collector

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

const statFixture = `cpu  5779 0 2661 25193 311 0 70 184 0 0
cpu0 2845 10 1026 13091 17 1 13 76 5 6
cpu2 2933 0 1635 12101 293 0 57 108 0 0
intr 1811538 9 0 0 0 0 0 0 0 1 0 0 0 0
ctxt 3123413
btime 1763700000
processes 12683
procs_running 3
procs_blocked 1
softirq 1103064 0 327208 3 51452 0 0 81 458286 0 266034
`

func TestCPUFixtures(t *testing.T) {
	tests := []struct {
		name      string
		stat      string
		wantCores float64
		want      map[[2]string]float64 // {cpu, mode} -> seconds
		wantErr   bool
	}{
		{
			name:      "current kernel, cpu1 offline",
			stat:      statFixture,
			wantCores: 2,
			want: map[[2]string]float64{
				{"0", "user"}: 28.45, {"0", "nice"}: 0.10, {"0", "idle"}: 130.91, {"0", "irq"}: 0.01,
				{"0", "steal"}: 0.76, {"2", "system"}: 16.35, {"2", "iowait"}: 2.93,
			},
		},
		{
			name:      "old kernel with four columns",
			stat:      "cpu  1 2 3 4\ncpu0 1 2 3 4\n",
			wantCores: 1,
			want:      map[[2]string]float64{{"0", "user"}: 0.01, {"0", "idle"}: 0.04, {"0", "steal"}: 0},
		},
		{
			name:      "malformed line reported, others kept",
			stat:      "cpu0 1 2 3 4 5 6 7 8\ncpuX 1 2\ncpu1 x\n",
			wantCores: 1,
			want:      map[[2]string]float64{{"0", "user"}: 0.01},
			wantErr:   true,
		},
		{name: "empty", stat: "", wantCores: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc := writeTree(t, map[string]string{"stat": tt.stat})
			c, _ := newCPU(fixtureConfig(t, proc, ""), nil)
			fams, err := scrape(t, c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got, _ := fams.Value("sage_cpu_cores"); got != tt.wantCores {
				t.Errorf("sage_cpu_cores = %v, want %v", got, tt.wantCores)
			}
			for k, want := range tt.want {
				if got, ok := fams.Value("node_cpu_seconds_total", "cpu", k[0], "mode", k[1]); !ok || got != want {
					t.Errorf("node_cpu_seconds_total{cpu=%q,mode=%q} = %v (%v), want %v", k[0], k[1], got, ok, want)
				}
			}
			if n := fams.Count("node_cpu_seconds_total", "cpu", "1"); n != 0 {
				t.Errorf("offline cpu1 has %d samples", n)
			}
		})
	}
}

func TestStatFixture(t *testing.T) {
	proc := writeTree(t, map[string]string{"stat": statFixture})
	c, _ := newStat(fixtureConfig(t, proc, ""), nil)
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"node_intr_total": 1811538, "node_context_switches_total": 3123413, "node_forks_total": 12683,
		"node_procs_running": 3, "node_procs_blocked": 1,
	} {
		if got, ok := fams.Value(name); !ok || got != want {
			t.Errorf("%s = %v (%v), want %v", name, got, ok, want)
		}
	}
}

func TestCPUReal(t *testing.T) {
	c, _ := newCPU(realConfig(t), nil)
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	cores, _ := fams.Value("sage_cpu_cores")
	if int(cores) != runtime.NumCPU() {
		// NumCPU is the affinity mask, which can be smaller than the online set, never larger.
		if int(cores) < runtime.NumCPU() {
			t.Errorf("sage_cpu_cores = %v, but this process may run on %d CPUs", cores, runtime.NumCPU())
		}
	}
	if n := fams.Count("node_cpu_seconds_total", "mode", "idle"); n != int(cores) {
		t.Errorf("%d idle series for %v cores", n, cores)
	}
	if v, _ := fams.Value("node_cpu_seconds_total", "cpu", "0", "mode", "user"); v <= 0 {
		t.Errorf("cpu0 user time %v; want > 0 on a running machine", v)
	}
}

func TestStatUnreadable(t *testing.T) {
	if asNobody(t) {
		return
	}
	proc := writeTree(t, map[string]string{"stat": statFixture})
	os.Chmod(filepath.Join(proc, "stat"), 0)
	for _, f := range []Factory{newCPU, newStat} {
		c, _ := f(fixtureConfig(t, proc, ""), nil)
		if _, err := scrape(t, c); err == nil {
			t.Error("want an error for an unreadable /proc/stat")
		}
	}
}

func FuzzParseKernelStat(f *testing.F) {
	f.Add([]byte(statFixture))
	f.Add([]byte("cpu99999999999 1 2 3 4\ncpu-1 1 2 3 4\nintr\nctxt x\n"))
	f.Add([]byte("cpu0 18446744073709551615 1 1 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s kernelStat
		_ = parseKernelStat(data, &s)
		n := 0
		for _, c := range s.cpus {
			if c.online {
				n++
			}
		}
		if n != s.online {
			t.Fatalf("online %d but %d CPUs marked", s.online, n)
		}
	})
}

func BenchmarkCPU(b *testing.B) {
	c, _ := newCPU(realConfig(b), nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Update(b.Context(), &Metrics{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStat(b *testing.B) {
	c, _ := newStat(realConfig(b), nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Update(b.Context(), &Metrics{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoadavg(b *testing.B) {
	c, _ := newLoadavg(realConfig(b), nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Update(b.Context(), &Metrics{}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestLoadavg(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    [3]float64
		wantErr bool
	}{
		{"normal", "0.25 1.50 3.00 2/345 6789\n", [3]float64{0.25, 1.5, 3}, false},
		{"truncated", "0.25 1.50", [3]float64{}, true},
		{"garbage", "a b c d e\n", [3]float64{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc := writeTree(t, map[string]string{"loadavg": tt.content})
			c, _ := newLoadavg(fixtureConfig(t, proc, ""), nil)
			fams, err := scrape(t, c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			for i, name := range []string{"node_load1", "node_load5", "node_load15"} {
				if got, _ := fams.Value(name); got != tt.want[i] {
					t.Errorf("%s = %v, want %v", name, got, tt.want[i])
				}
			}
		})
	}
	c, _ := newLoadavg(realConfig(t), nil)
	fams, err := scrape(t, c)
	if err != nil || len(fams) != 3 {
		t.Fatalf("real loadavg: %v, %v", err, fams.Names())
	}
}

func FuzzParseLoadavg(f *testing.F) {
	f.Add([]byte("0.25 1.50 3.00 2/345 6789\n"))
	f.Add([]byte("0.25 1.50"))
	f.Add([]byte("NaN +Inf 1e400 1/1 1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		loads, err := parseLoadavg(data)
		if err == nil && len(bytes.Fields(data)) < 3 {
			t.Fatalf("%q: %v without three fields", data, loads)
		}
	})
}
