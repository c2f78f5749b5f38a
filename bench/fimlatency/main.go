// Command fimlatency measures the change monitor's real-time latency as the agent runs it: from a
// file write's return to the event being in the journal (fsynced), through the file-integrity
// watcher (inotify, 100 ms debounce), the package grouper and the journal. It writes -n files, one
// every -every, in a tree under -dir, and prints the latency percentiles.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/serversage/sage/internal/changes"
	"github.com/serversage/sage/internal/fim"
)

func main() {
	n := flag.Int("n", 200, "writes")
	every := flag.Duration("every", 100*time.Millisecond, "time between writes")
	dir := flag.String("dir", "", "work directory (default: a new temporary one)")
	flag.Parse()
	if err := run(*n, *every, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "fimlatency:", err)
		os.Exit(1)
	}
}

func run(n int, every time.Duration, dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "fimlatency-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return err
	}
	j, err := changes.OpenJournal(filepath.Join(dir, "journal"), changes.JournalOptions{})
	if err != nil {
		return err
	}
	defer j.Close()

	var mu sync.Mutex
	written := map[string]time.Time{}
	var lat []time.Duration
	done := make(chan struct{})
	appendFn := func(evs []changes.Event) error {
		if err := j.Append(evs); err != nil {
			return err
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			if t, ok := written[e.Object]; ok {
				lat = append(lat, now.Sub(t))
				delete(written, e.Object)
			}
		}
		if len(lat) == n {
			close(done)
		}
		return nil
	}
	log := slog.New(slog.DiscardHandler)
	g := changes.NewGrouper(changes.GrouperOptions{Append: appendFn, Prefixes: []string{tree}, Logger: log})
	defer g.Close()
	m, err := fim.New(fim.Config{StateDir: filepath.Join(dir, "fim"), Trees: []fim.Tree{{Path: tree}}, Watch: true, ScanInterval: time.Hour}, g, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = m.Run(ctx) }()
	for m.Metrics().Scans == 0 || m.Metrics().DirsWatched == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	for i := range n {
		p := filepath.Join(tree, fmt.Sprintf("f%04d", i))
		mu.Lock()
		written[p] = time.Time{}
		mu.Unlock()
		if err := os.WriteFile(p, []byte(fmt.Sprintf("write %d\n", i)), 0o644); err != nil {
			return err
		}
		mu.Lock()
		written[p] = time.Now()
		mu.Unlock()
		time.Sleep(every)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		return fmt.Errorf("only %d of %d writes reached the journal", len(lat), n)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	q := func(f float64) time.Duration {
		return lat[min(len(lat)-1, int(f*float64(len(lat))))].Round(time.Millisecond)
	}
	fmt.Printf("write -> journal: n=%d min=%s p50=%s p95=%s p99=%s max=%s\n", len(lat), lat[0].Round(time.Millisecond), q(0.5), q(0.95), q(0.99), lat[len(lat)-1].Round(time.Millisecond))
	return nil
}
