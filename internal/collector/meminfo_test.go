package collector

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMeminfoReal(t *testing.T) {
	c, err := newMeminfo(realConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes",
		"node_memory_SwapFree_bytes", "node_memory_SwapTotal_bytes", "node_memory_Active_anon_bytes"} {
		if v, ok := fams.Value(name); !ok || v < 0 {
			t.Errorf("%s = %v, %v; want a sample", name, v, ok)
		}
	}
	if v, _ := fams.Value("node_memory_MemTotal_bytes"); v < 64<<20 {
		t.Errorf("MemTotal = %v bytes; implausibly small", v)
	}
}

func TestMeminfoFixtures(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    map[string]float64
		wantErr bool
	}{
		{
			name:    "units and counts",
			content: "MemTotal:       16384 kB\nActive(anon):   8 kB\nHugePages_Total:       3\n",
			want: map[string]float64{
				"node_memory_MemTotal_bytes":    16384 * 1024,
				"node_memory_Active_anon_bytes": 8 * 1024,
				"node_memory_HugePages_Total":   3,
			},
		},
		{
			name:    "odd line is reported, good lines kept",
			content: "MemTotal: 1 kB\nthis is not meminfo\nMemFree: 2 kB\n",
			want:    map[string]float64{"node_memory_MemTotal_bytes": 1024, "node_memory_MemFree_bytes": 2048},
			wantErr: true,
		},
		{
			name:    "truncated last line",
			content: "MemTotal: 1 kB\nMemFree:",
			want:    map[string]float64{"node_memory_MemTotal_bytes": 1024},
			wantErr: true,
		},
		{name: "empty file", content: "", want: map[string]float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc := writeTree(t, map[string]string{"meminfo": tt.content})
			c, _ := newMeminfo(fixtureConfig(t, proc, ""), nil)
			fams, err := scrape(t, c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if len(fams) != len(tt.want) {
				t.Errorf("got families %v, want %d", fams.Names(), len(tt.want))
			}
			for name, want := range tt.want {
				if got, ok := fams.Value(name); !ok || got != want {
					t.Errorf("%s = %v (%v), want %v", name, got, ok, want)
				}
			}
		})
	}
}

func TestMeminfoUnreadable(t *testing.T) {
	if asNobody(t) {
		return
	}
	proc := writeTree(t, map[string]string{"meminfo": "MemTotal: 1 kB\n"})
	if err := os.Chmod(filepath.Join(proc, "meminfo"), 0); err != nil {
		t.Fatal(err)
	}
	c, _ := newMeminfo(fixtureConfig(t, proc, ""), nil)
	if _, err := scrape(t, c); err == nil {
		t.Fatal("want an error for an unreadable meminfo")
	}
	// A missing file, as on a host without /proc mounted, fails the same way.
	c, _ = newMeminfo(fixtureConfig(t, filepath.Join(proc, "absent"), ""), nil)
	if _, err := scrape(t, c); err == nil {
		t.Fatal("want an error for a missing meminfo")
	}
}

func FuzzParseMeminfo(f *testing.F) {
	f.Add([]byte("MemTotal:       16384 kB\nActive(anon):   8 kB\nHugePages_Total:       3\n"))
	f.Add([]byte("a:\n:\n\n x: 1 MB"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseMeminfo(data, func(key []byte, v float64) {
			if len(key) == 0 || v < 0 {
				t.Fatalf("bad emit %q %v", key, v)
			}
			_ = meminfoMetricName(key)
		}, func(error) {})
	})
}

func BenchmarkMeminfo(b *testing.B) {
	c, _ := newMeminfo(realConfig(b), nil)
	b.ReportAllocs()
	for b.Loop() {
		m := &Metrics{}
		if err := c.Update(b.Context(), m); err != nil {
			b.Fatal(err)
		}
	}
}
