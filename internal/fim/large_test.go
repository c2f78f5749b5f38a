package fim

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestLargeTreeBoundedMemory scans 100,000 files and checks that the heap stays far below what
// holding the baseline in memory would take: the scan streams the old and new baselines.
func TestLargeTreeBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 100,000 files")
	}
	root := t.TempDir()
	const dirs, per = 100, 1000
	// Hard links, one seed file per directory: 100,000 names at one system call each (ext4 allows
	// 65,000 links to a file).
	for d := range dirs {
		dir := fmt.Sprintf("%s/dir%03d", root, d)
		must(t, os.Mkdir(dir, 0o755))
		seed := fmt.Sprintf("%s/seed%03d", root, d)
		write(t, seed, seed)
		for f := range per {
			must(t, os.Link(seed, fmt.Sprintf("%s/some-longish-file-name-%04d.conf", dir, f)))
		}
	}
	m := newMonitor(t, root, newRecorder(), nil)
	for _, name := range []string{"baseline", "re-check"} {
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		var peak atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			var ms runtime.MemStats
			for {
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
		}()
		res, err := m.Scan(context.Background())
		close(stop)
		<-done
		must(t, err)
		if res.Entries != dirs*per+2*dirs+1 || res.ErrorsN != 0 {
			t.Fatalf("%s: %d entries, errors %v", name, res.Entries, res.Errors)
		}
		grew := int64(peak.Load()) - int64(base.HeapInuse)
		t.Logf("%s: heap in use grew by at most %.1f MiB for %d entries", name, float64(grew)/(1<<20), res.Entries)
		// 100,000 entries held in memory would take well over 20 MiB (path + attributes + hash each).
		if grew > 12<<20 {
			t.Fatalf("%s: heap grew by %d bytes: memory is not bounded by the pipeline", name, grew)
		}
	}
}

func benchTree(b *testing.B, files int) string {
	root := b.TempDir()
	for i := range files {
		dir := fmt.Sprintf("%s/d%02d", root, i%50)
		os.MkdirAll(dir, 0o755)
		if err := os.WriteFile(fmt.Sprintf("%s/f%05d", dir, i), make([]byte, 4096), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return root
}

// BenchmarkScanNoChange is the verification scan of an unchanged tree: stat only, no hashing.
func BenchmarkScanNoChange(b *testing.B) {
	root := benchTree(b, 5000)
	m, err := New(Config{StateDir: b.TempDir(), Trees: []Tree{{Path: root}}}, SinkFunc(func(Event) error { return nil }), quietLog())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.Scan(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Scan(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(5051*b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkBaseline builds a baseline from nothing: every file hashed.
func BenchmarkBaseline(b *testing.B) {
	root := benchTree(b, 5000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m, err := New(Config{StateDir: b.TempDir(), Trees: []Tree{{Path: root}}}, SinkFunc(func(Event) error { return nil }), quietLog())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Scan(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(5051*b.N)/b.Elapsed().Seconds(), "entries/s")
}
