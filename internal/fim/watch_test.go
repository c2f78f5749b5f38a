package fim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// waitFor collects events until one matches or the deadline passes. The deadline is generous: the
// test asserts that the event arrives through watching, not how fast.
func waitFor(t *testing.T, rec *recorder, kind Kind, path string) Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		rec.mu.Lock()
		for i, e := range rec.events {
			if e.Kind == kind && e.Path == path {
				rec.events = append(rec.events[:i:i], rec.events[i+1:]...)
				rec.mu.Unlock()
				return e
			}
		}
		rec.mu.Unlock()
		select {
		case <-rec.notify:
		case <-deadline:
			t.Fatalf("no %s event for %s; got %v", kind, path, rec.take())
		}
	}
}

func startWatching(t *testing.T, root string, mod func(*Config)) (*Monitor, *recorder) {
	t.Helper()
	rec := newRecorder()
	m := newMonitor(t, root, rec, func(c *Config) {
		c.Watch = true
		c.ScanInterval = time.Hour // only the first scan: the events below must come from watching
		if mod != nil {
			mod(c)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); m.Metrics().Scans == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the first scan did not finish")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return m, rec
}

func TestWatchEmitsLiveEvents(t *testing.T) {
	root := t.TempDir()
	write(t, root+"/etc/a.conf", "a")
	write(t, root+"/etc/deep/b.conf", "b")
	m, rec := startWatching(t, root, nil)
	if m.Metrics().DirsWatched != 3 {
		t.Fatalf("dirs watched %d, want 3", m.Metrics().DirsWatched)
	}
	steps := []struct {
		name string
		do   func()
		kind Kind
		rel  string
	}{
		{"create", func() { write(t, root+"/etc/new.conf", "n") }, Created, "etc/new.conf"},
		{"edit", func() { write(t, root+"/etc/deep/b.conf", "bb") }, ContentChanged, "etc/deep/b.conf"},
		{"chmod", func() { must(t, os.Chmod(root+"/etc/a.conf", 0o600)) }, AttributesChanged, "etc/a.conf"},
		{"new directory", func() { write(t, root+"/etc/d/x/y.conf", "y") }, Created, "etc/d/x/y.conf"},
		{"in the new directory", func() { write(t, root+"/etc/d/x/z.conf", "z") }, Created, "etc/d/x/z.conf"},
		{"delete", func() { must(t, os.Remove(root+"/etc/a.conf")) }, Deleted, "etc/a.conf"},
		{"excluded", func() { write(t, root+"/etc/x.swp", "x"); write(t, root+"/etc/after", "x") }, Created, "etc/after"},
	}
	for _, s := range steps {
		start := time.Now()
		s.do()
		ev := waitFor(t, rec, s.kind, filepath.Join(root, s.rel))
		if !ev.Live {
			t.Errorf("%s: event not from watching", s.name)
		}
		t.Logf("%s: event after %v", s.name, time.Since(start).Round(time.Millisecond)) // measured, not asserted
	}
	// Everything was reported live: the verification scan finds nothing more, and nothing twice.
	time.Sleep(3 * m.cfg.Debounce) // let pending directory events settle
	for _, e := range rec.take() {
		if e.Path == root+"/etc/x.swp" {
			t.Errorf("excluded path reported: %+v", e)
		}
		if e.Kind != Created || !e.Live {
			t.Errorf("unexpected event %s %s", e.Kind, e.Path)
		}
	}
	res, err := m.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ev := rec.take(); len(ev) != 0 {
		for _, e := range ev {
			t.Errorf("scan after live events repeated %s %s", e.Kind, e.Path)
		}
	}
	// The live checks' overlay is folded into the new baseline.
	if n := m.trees[0].nOver.Load(); n != 0 || res.Events != 0 {
		t.Fatalf("overlay %d entries, %d events after the scan", n, res.Events)
	}
	res, err = m.Scan(context.Background())
	if err != nil || res.Events != 0 || res.Hashed != 0 {
		t.Fatalf("second scan: %+v %v", res, err)
	}
}

func TestWatchLimitFallsBackToScans(t *testing.T) {
	root := t.TempDir()
	for i := range 5 {
		write(t, fmt.Sprintf("%s/d%d/f", root, i), "x")
	}
	m, rec := startWatching(t, root, func(c *Config) { c.MaxWatches = 2 })
	met := m.Metrics()
	if !met.WatchLimitReached || met.DirsWatched != 2 {
		t.Fatalf("metrics %+v, want the limit reached at 2 watches", met)
	}
	write(t, root+"/d4/g", "unwatched")
	if _, err := m.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, rec, Created, root+"/d4/g")
}

func TestWatchRemovedDirectory(t *testing.T) {
	root := t.TempDir()
	for i := range 5 {
		write(t, fmt.Sprintf("%s/d/sub/f%d", root, i), "x")
	}
	m, rec := startWatching(t, root, nil)
	if n := m.Metrics().DirsWatched; n != 3 {
		t.Fatalf("dirs watched %d, want 3", n)
	}
	must(t, os.RemoveAll(root+"/d"))
	// Each path is reported deleted exactly once, by watching or by the scan the watcher asks for.
	want := []string{"d", "d/sub"}
	for i := range 5 {
		want = append(want, fmt.Sprintf("d/sub/f%d", i))
	}
	for _, rel := range want {
		waitFor(t, rec, Deleted, filepath.Join(root, rel))
	}
	deadline := time.Now().Add(10 * time.Second)
	for m.Metrics().DirsWatched != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("dirs watched %d after the removal, want 1", m.Metrics().DirsWatched)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := m.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ev := rec.take(); len(ev) != 0 {
		t.Fatalf("reported twice: %+v", ev)
	}
}
