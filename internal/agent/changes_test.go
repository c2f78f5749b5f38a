package agent

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/serversage/sage/internal/changes"
)

func TestChangesConfigErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string // substrings of the error, each naming file, line and field
	}{
		{"ok", "changes:\n  interval: 12h\n  fim:\n    trees:\n      - path: /etc\n        exclude: ['*.swp']\n", nil},
		{"off", "changes:\n  enabled: false\n", nil},
		{"short interval", "changes:\n  interval: 5s\n", []string{":2: changes.interval: 5s is too short"}},
		{"unknown kind", "changes:\n  kinds: [packages, bogus]\n", []string{`changes.kinds[1]: unknown kind "bogus"`}},
		{"bad redact", "changes:\n  redact: ['(']\n", []string{":2: changes.redact[0]:"}},
		{"relative config file", "changes:\n  config_files: [etc/hosts]\n", []string{`changes.config_files[0]: "etc/hosts" is not an absolute path`}},
		{"relative tree", "changes:\n  fim:\n    trees:\n      - path: etc\n", []string{`:4: changes.fim.trees[0].path: "etc" is not absolute`}},
		{"bad exclude", "changes:\n  fim:\n    trees:\n      - path: /etc\n        exclude: ['^(']\n", []string{":5: changes.fim.trees[0].exclude[0]:"}},
		{"small journal", "changes:\n  journal_max_bytes: 100\n", []string{"changes.journal_max_bytes: must be at least 65536"}},
		{"negative", "changes:\n  ship_interval: -1s\n", []string{"changes.ship_interval: must not be negative"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.yml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// shipRecorder is the agent's ShipChanges hook for the test: the hub's side is tested against a
// real hub in cmd/sage.
type shipRecorder struct {
	mu     sync.Mutex
	events []changes.Event
	fail   bool
}

func (r *shipRecorder) ship(_ context.Context, journal string, evs []changes.Event) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if journal == "" {
		return 0, os.ErrInvalid
	}
	if r.fail {
		return 0, os.ErrDeadlineExceeded
	}
	r.events = append(r.events, evs...)
	return evs[len(evs)-1].Seq, nil
}

func (r *shipRecorder) find(kind, object string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Kind == kind && e.Object == object {
			return true
		}
	}
	return false
}

// TestChangeMonitorInAgent runs the agent with a watched configuration file and a watched tree:
// the first snapshot and scan are baselines, then an edit to each is journaled, counted in the
// metrics and shipped.
func TestChangeMonitorInAgent(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "app.conf")
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("port 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "agent.yml")
	cfg := "changes:\n  kinds: [config_files]\n  config_files: [" + conf + "]\n  package_check: -1s\n  ship_interval: 1h\n" +
		"  fim:\n    start_delay: 0s\n    trees:\n      - path: " + tree + "\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := &shipRecorder{fail: true} // the hub is away until the events are journaled
	a, addr := runAgent(t, Options{ConfigFile: cfgPath, ShipChanges: rec.ship})

	eventually(t, addr, "the first snapshot and FIM scan", func(body string) bool {
		return strings.Contains(body, "sage_changes_last_snapshot_timestamp_seconds ") &&
			strings.Contains(body, "sage_fim_scans_total 1") && strings.Contains(body, "sage_fim_files 2")
	})
	if err := os.WriteFile(filepath.Join(tree, "b"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, addr, "the live file event", func(body string) bool {
		return strings.Contains(body, `sage_changes_total{kind="files"} 1`)
	})
	// A snapshot on demand (what the schedule does daily) finds the configuration edit.
	if err := os.WriteFile(conf, []byte("port 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.changes.snapNow <- struct{}{}
	body := eventually(t, addr, "the configuration change", func(body string) bool {
		return strings.Contains(body, `sage_changes_total{kind="config_files"} 1`)
	})
	for _, re := range []string{`sage_changes_up 1`, `sage_changes_journal_pending_events [1-9]`, `sage_changes_ship_errors_total [1-9]`,
		`sage_changes_journal_write_errors_total 0`, `sage_changes_tampered_files_total 0`} {
		if !regexp.MustCompile(`(?m)^` + re).MatchString(body) {
			t.Errorf("metrics lack %s", re)
		}
	}
	// The hub is back: both events reach it and the journal's cursor moves past them.
	rec.mu.Lock()
	rec.fail = false
	rec.mu.Unlock()
	a.changes.kickShip()
	eventually(t, addr, "the events shipped", func(body string) bool {
		return strings.Contains(body, "sage_changes_journal_pending_events 0")
	})
	if !rec.find(changes.KindFiles, filepath.Join(tree, "b")) || !rec.find("config_files", conf) {
		t.Errorf("shipped %+v, want the file and configuration events", rec.events)
	}
}

// TestChangeMonitorJournalUnavailable: a journal that cannot be opened is a metric and a log
// line; the agent serves on.
func TestChangeMonitorJournalUnavailable(t *testing.T) {
	state := t.TempDir()
	// A file where the journal's directory would be.
	if err := os.MkdirAll(filepath.Join(state, "changes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "changes", "journal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, addr := runAgent(t, Options{StateDir: state})
	eventually(t, addr, "sage_changes_up 0", func(body string) bool {
		return strings.Contains(body, "sage_changes_up 0") && strings.Contains(body, "sage_cpu_cores")
	})
}
