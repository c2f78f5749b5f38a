package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/serversage/sage/internal/agent"
	"github.com/serversage/sage/internal/changes"
	"github.com/serversage/sage/internal/config"
)

func init() {
	commands["changes"] = command{summary: "take a change snapshot (packages, config files, mounts, firewall...) or print the change journal", run: runChanges}
}

// changesFile is `sage changes --config FILE`: which configuration files to watch and how to
// redact them.
type changesFile struct {
	ConfigFiles     []string `yaml:"config_files"`
	Redact          []string `yaml:"redact"`
	MaxTextBytes    int64    `yaml:"max_text_bytes"`
	Kinds           []string `yaml:"kinds"`
	JournalMaxBytes int64    `yaml:"journal_max_bytes"`
}

func runChanges(args []string, stdout, stderr io.Writer) int {
	usage := func(w io.Writer) {
		fmt.Fprint(w, `Usage: sage changes snapshot [--state-dir DIR] [--config FILE]
       sage changes log [--state-dir DIR] [--kind KIND] [--since DURATION]

snapshot reads the host (kinds: `+strings.Join(changes.Kinds(), ", ")+`), records what changed since
the previous snapshot in the journal and prints it. log prints the journal.
`)
	}
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	sub := args[0]
	switch sub {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	case "snapshot", "log":
	default:
		fmt.Fprintf(stderr, "sage changes: unknown subcommand %q\n", sub)
		usage(stderr)
		return 2
	}
	fs := flag.NewFlagSet("sage changes "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", agent.DefaultStateDir(), "the agent's state `directory`: the previous snapshot and the journal are in its changes/")
	cfgFile := fs.String("config", "", "YAML `file`: config_files, redact, max_text_bytes, kinds, journal_max_bytes")
	kind := fs.String("kind", "", "log: only this `kind`")
	since := fs.Duration("since", 0, "log: only events newer than this `duration` ago")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sage changes %s: unexpected argument %q\n", sub, fs.Arg(0))
		return 2
	}
	var cf changesFile
	if *cfgFile != "" {
		if err := config.LoadFile(*cfgFile, &cf); err != nil {
			fmt.Fprintf(stderr, "sage changes: %v\n", err)
			return 2
		}
	}
	// The agent's own record: the same snapshot and journal it keeps under its state directory.
	dir := filepath.Join(*stateDir, "changes")
	j, err := changes.OpenJournal(filepath.Join(dir, "journal"), changes.JournalOptions{MaxBytes: cf.JournalMaxBytes, ReadOnly: sub == "log"})
	switch {
	case errors.Is(err, changes.ErrJournalLocked):
		fmt.Fprintf(stderr, "sage changes: the agent running on this host keeps %s and snapshots on its schedule; "+
			"`sage changes log` shows its journal, or give --state-dir another directory for a separate record\n", dir)
		return 1
	case errors.Is(err, os.ErrNotExist) && sub == "log":
		fmt.Fprintf(stdout, "no journal in %s yet: no snapshot has been taken\n", dir)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "sage changes: %v\n", err)
		return 1
	}
	defer j.Close()
	if sub == "log" {
		return printChangeLog(j, *kind, *since, stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := changes.Config{ConfigFiles: cf.ConfigFiles, Redact: cf.Redact, MaxTextBytes: cf.MaxTextBytes, Kinds: cf.Kinds}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	var m changes.Metrics
	res, err := changes.Run(ctx, cfg, dir, j, &m, logger)
	if err != nil {
		fmt.Fprintf(stderr, "sage changes snapshot: %v\n", err)
		return 1
	}
	for kind, e := range res.Snapshot.Errors {
		fmt.Fprintf(stderr, "sage changes snapshot: %s: %s\n", kind, e)
	}
	if res.First {
		fmt.Fprintf(stdout, "first snapshot: %d objects recorded\n", res.Snapshot.Objects())
	} else if len(res.Events) == 0 {
		fmt.Fprintln(stdout, "no changes since the previous snapshot")
	}
	for i := range res.Events {
		printChangeEvent(stdout, &res.Events[i], false)
	}
	if res.JournalErr != nil {
		fmt.Fprintf(stderr, "sage changes snapshot: %v (the previous snapshot is kept; the next run finds these changes again)\n", res.JournalErr)
		return 1
	}
	return 0
}

func printChangeEvent(w io.Writer, e *changes.Event, withTime bool) {
	if withTime {
		fmt.Fprintf(w, "%s %s ", e.Time.Local().Format(time.DateTime), e.Host)
	}
	fmt.Fprintln(w, e.Summary())
	if e.Diff != "" {
		fmt.Fprint(w, indent(e.Diff, "    ")+"\n")
	}
}

func printChangeLog(j *changes.Journal, kind string, since time.Duration, stdout, stderr io.Writer) int {
	var after time.Time
	if since > 0 {
		after = time.Now().Add(-since)
	}
	n := 0
	err := j.Read(0, func(e changes.Event) bool {
		if (kind != "" && e.Kind != kind) || e.Time.Before(after) {
			return true
		}
		printChangeEvent(stdout, &e, true)
		n++
		return true
	})
	if err != nil {
		fmt.Fprintf(stderr, "sage changes log: %v\n", err)
		return 1
	}
	if st := j.Stats(); st.Dropped > 0 {
		fmt.Fprintf(stdout, "(%d older events were dropped to keep the journal within its size bound)\n", st.Dropped)
	}
	if n == 0 {
		fmt.Fprintln(stdout, "no events")
	}
	return 0
}
