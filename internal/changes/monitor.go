package changes

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// Metrics are the change monitor's figures for the agent to expose (sage_changes_total{kind} and
// friends). Read them through Snapshot; the fields are plain so that the exposition is trivial.
type Metrics struct {
	mu sync.Mutex
	// Changes counts change events by kind since the process started.
	Changes map[string]uint64
	// SourceErrors counts failed reads by kind.
	SourceErrors map[string]uint64
	LastSnapshot time.Time
	// JournalBytes, JournalDropped and JournalPending mirror the journal's stats after each run.
	JournalBytes   int64
	JournalDropped uint64
	JournalPending uint64
	// JournalErrors counts failed appends (disk full): the events are not lost, the previous
	// snapshot is kept so that the next run finds them again.
	JournalErrors uint64
}

// Copy returns a consistent copy of the figures.
func (m *Metrics) Copy() Metrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Metrics{Changes: maps.Clone(m.Changes), SourceErrors: maps.Clone(m.SourceErrors), LastSnapshot: m.LastSnapshot,
		JournalBytes: m.JournalBytes, JournalDropped: m.JournalDropped, JournalPending: m.JournalPending, JournalErrors: m.JournalErrors}
}

// Count adds journaled events to Changes.
func (m *Metrics) Count(evs []Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Changes == nil {
		m.Changes, m.SourceErrors = map[string]uint64{}, map[string]uint64{}
	}
	for _, e := range evs {
		m.Changes[e.Kind]++
	}
}

// AddJournalError counts a failed append.
func (m *Metrics) AddJournalError() {
	m.mu.Lock()
	m.JournalErrors++
	m.mu.Unlock()
}

// Result is one run's outcome.
type Result struct {
	Snapshot *Snapshot
	// First is true when there was no previous snapshot: nothing to compare, the objects recorded.
	First  bool
	Events []Event
	// JournalErr is the append's failure, if any; the run's other work stands.
	JournalErr error
}

// Run takes a snapshot, diffs it with the previous one in stateDir, appends the events to the
// journal and stores the snapshot as the new previous one. The snapshot is stored only after the
// events are safely in the journal: if the append fails (disk full), the previous snapshot stays
// and the next run produces the same events again, so nothing is lost.
func Run(ctx context.Context, cfg Config, stateDir string, j *Journal, m *Metrics, log *slog.Logger) (*Result, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prev, err := LoadSnapshot(stateDir)
	if err != nil {
		return nil, err
	}
	cur, err := Take(ctx, cfg, prev)
	if err != nil {
		return nil, err
	}
	res := &Result{Snapshot: cur, First: prev == nil}
	for kind, e := range cur.Errors {
		log.Warn("change source failed", "kind", kind, "err", e)
	}
	res.Events = Diff(prev, cur)
	if err := j.Append(res.Events); err != nil {
		res.JournalErr = err
		log.Error("change journal append failed; the changes will be found again next run", "err", err, "events", len(res.Events))
	} else if err := SaveSnapshot(stateDir, cur); err != nil {
		return res, fmt.Errorf("store snapshot: %w", err)
	}
	if m != nil {
		st := j.Stats()
		m.mu.Lock()
		if m.Changes == nil {
			m.Changes, m.SourceErrors = map[string]uint64{}, map[string]uint64{}
		}
		if res.JournalErr != nil {
			m.JournalErrors++
		} else {
			for _, e := range res.Events {
				m.Changes[e.Kind]++
			}
			m.LastSnapshot = cur.Time
		}
		for kind := range cur.Errors {
			m.SourceErrors[kind]++
		}
		m.JournalBytes, m.JournalDropped, m.JournalPending = st.Bytes, st.Dropped, st.LastSeq-st.Acked
		m.mu.Unlock()
	}
	return res, nil
}
