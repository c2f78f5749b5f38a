// Command fimbench runs one internal/fim scan over a tree, for bench/fim-vs-aide.sh: with an empty
// state directory the scan builds the baseline (every file hashed, as aide --init), with the state a
// previous run left it verifies the tree against it (as aide --check). It prints what it did; time,
// CPU and peak RSS are measured from outside by /usr/bin/time -v.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/serversage/sage/internal/fim"
)

func main() {
	tree := flag.String("tree", "", "tree to scan (absolute)")
	state := flag.String("state", "", "state directory holding the baseline")
	workers := flag.Int("workers", 0, "hash workers (0: GOMAXPROCS)")
	paranoid := flag.Bool("paranoid", false, "re-hash every file (a paranoid full re-hash)")
	flag.Parse()
	if *tree == "" || *state == "" {
		fmt.Fprintln(os.Stderr, "usage: fimbench -tree DIR -state DIR")
		os.Exit(2)
	}
	var events int
	cfg := fim.Config{StateDir: *state, Trees: []fim.Tree{{Path: *tree}}, HashWorkers: *workers,
		Paranoid: *paranoid, FullRehashInterval: time.Nanosecond}
	m, err := fim.New(cfg, fim.SinkFunc(func(fim.Event) error { events++; return nil }), slog.Default())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w := *workers
	if w <= 0 {
		w = runtime.GOMAXPROCS(0)
	}
	res, err := m.Scan(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("fim: initial=%v entries=%d hashed=%d events=%d errors=%d duration=%s entries/s=%.0f workers=%d\n",
		res.Initial, res.Entries, res.Hashed, events, res.ErrorsN, res.Duration.Round(time.Millisecond),
		float64(res.Entries)/res.Duration.Seconds(), w)
}
