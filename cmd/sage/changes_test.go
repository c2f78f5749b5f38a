package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serversage/sage/internal/changes"
)

func TestChangesCommand(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	conf := filepath.Join(dir, "app.conf")
	cfg := filepath.Join(dir, "changes.yml")
	if err := os.WriteFile(conf, []byte("port 1\ntoken = abc123secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("kinds: [config_files, hardware]\nconfig_files: ["+conf+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sage := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		return code, out.String(), errb.String()
	}
	steps := []struct {
		name     string
		before   func()
		args     []string
		code     int
		want     []string
		wantNot  []string
		stderrIn string
	}{
		{"log before any snapshot", nil, []string{"changes", "log", "--state-dir", state}, 0, []string{"no journal in " + filepath.Join(state, "changes") + " yet"}, nil, ""},
		{"first", nil, []string{"changes", "snapshot", "--state-dir", state, "--config", cfg}, 0, []string{"first snapshot: 3 objects recorded"}, nil, ""},
		{"unchanged", nil, []string{"changes", "snapshot", "--state-dir", state, "--config", cfg}, 0, []string{"no changes since the previous snapshot"}, nil, ""},
		{"edited", func() { os.WriteFile(conf, []byte("port 2\ntoken = zzz999secret\n"), 0o644) },
			[]string{"changes", "snapshot", "--state-dir", state, "--config", cfg}, 0,
			[]string{"config_files: " + conf + " changed", "    -port 1", "    +port 2", "token = <redacted>"}, []string{"zzz999secret"}, ""},
		{"log", nil, []string{"changes", "log", "--state-dir", state}, 0, []string{conf + " changed", "+port 2"}, []string{"abc123secret"}, ""},
		{"log other kind", nil, []string{"changes", "log", "--state-dir", state, "--kind", "packages"}, 0, []string{"no events"}, []string{conf}, ""},
		{"log since", nil, []string{"changes", "log", "--state-dir", state, "--since", "1h"}, 0, []string{conf + " changed"}, nil, ""},
		{"agent running", func() {
			// A running agent holds its journal: a snapshot by hand would write beside it, so it is
			// refused; the log reads it all the same.
			j, err := changes.OpenJournal(filepath.Join(state, "changes", "journal"), changes.JournalOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { j.Close() })
		}, []string{"changes", "snapshot", "--state-dir", state, "--config", cfg}, 1, nil, nil, "the agent running on this host keeps"},
		{"log while the agent runs", nil, []string{"changes", "log", "--state-dir", state}, 0, []string{conf + " changed"}, nil, ""},
		{"bad sub", nil, []string{"changes", "nope"}, 2, nil, nil, "unknown subcommand"},
		{"bad config", func() { os.WriteFile(cfg, []byte("bogus: 1\n"), 0o644) },
			[]string{"changes", "snapshot", "--state-dir", state, "--config", cfg}, 2, nil, nil, "bogus"},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		code, out, errOut := sage(s.args...)
		if code != s.code {
			t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", s.name, code, s.code, out, errOut)
		}
		for _, w := range s.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: stdout lacks %q:\n%s", s.name, w, out)
			}
		}
		for _, w := range s.wantNot {
			if strings.Contains(out, w) {
				t.Errorf("%s: stdout has %q:\n%s", s.name, w, out)
			}
		}
		if s.stderrIn != "" && !strings.Contains(errOut, s.stderrIn) {
			t.Errorf("%s: stderr lacks %q:\n%s", s.name, s.stderrIn, errOut)
		}
	}
}
