package fim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is what happened to a path.
type Kind string

// The event kinds.
const (
	Created           Kind = "created"
	Deleted           Kind = "deleted"
	ContentChanged    Kind = "content_changed"
	AttributesChanged Kind = "attributes_changed"
)

var kinds = [...]Kind{Created, Deleted, ContentChanged, AttributesChanged}

func kindIndex(k Kind) int {
	for i, x := range kinds {
		if x == k {
			return i
		}
	}
	return 0
}

// Event is one change to one path. Old is nil for Created, New is nil for Deleted. Changed lists the
// attributes that differ (AttrSize, AttrHash, ...) for ContentChanged and AttributesChanged.
type Event struct {
	Time    time.Time
	Tree    string // the tree's root, as configured
	Path    string // absolute
	Kind    Kind
	Changed []string
	Old     *Entry
	New     *Entry
	// Live is true when the event came from real-time watching rather than a verification scan.
	Live bool
}

// Sink receives events. An error from Emit aborts the scan without replacing the baseline, so the
// same changes are found again by the next scan: events are delivered at least once.
type Sink interface {
	Emit(Event) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Event) error

// Emit calls f.
func (f SinkFunc) Emit(e Event) error { return f(e) }

// ScanError is one path the scan could not fully examine.
type ScanError struct {
	Path string
	Op   string // "lstat", "readdir", "readlink", "hash", "vanished", "changed"
	Err  error
}

func (e ScanError) Error() string { return fmt.Sprintf("%s %s: %v", e.Op, e.Path, e.Err) }

// ScanResult summarises one verification scan.
type ScanResult struct {
	Start    time.Time
	Duration time.Duration
	Entries  uint64 // in the new baselines
	Hashed   uint64
	Events   uint64
	Errors   []ScanError // at most Config.MaxErrors
	ErrorsN  uint64      // all of them
	Initial  bool        // at least one tree had no baseline: it was created, without events
	FullHash bool        // the paranoid full re-hash ran
}

// Metrics are what the agent will expose; read them with Monitor.Metrics.
type Metrics struct {
	FilesWatched      int64 // entries in the baselines
	DirsWatched       int64 // directories with an inotify watch
	WatchLimitReached bool  // some directories are covered by scans only
	LastScan          time.Time
	LastScanDuration  time.Duration
	Scans             uint64
	ScanErrors        uint64 // total over all scans and live checks
	LastScanErrors    uint64
	Hashed            uint64 // files hashed, total
	Events            map[Kind]uint64
}

type metrics struct {
	files, dirs          atomic.Int64
	limit                atomic.Bool
	lastScan, lastDur    atomic.Int64
	scans, errs, lastErr atomic.Uint64
	hashed               atomic.Uint64
	events               [len(kinds)]atomic.Uint64
}

// overlayEntry is a path's state newer than the baseline file: a live check's view, or a change a
// scan has reported but not yet committed (byScan).
type overlayEntry struct {
	e       Entry
	present bool
	byScan  bool
	version uint64
}

type treeState struct {
	tree Tree
	root string
	m    *matcher
	file string

	// checkMu makes "read the old state, report, record the new state" one step for a live check
	// and for a scan's handling of a path, so that a path changed once is reported once even when
	// both see the change at the same time.
	checkMu sync.Mutex

	mu      sync.Mutex // guards the fields below and reading file for lookups
	exists  bool
	hdr     header
	idx     []indexPoint
	count   uint64
	overlay map[string]overlayEntry
	version uint64
	nOver   atomic.Int64 // len(overlay), read without the lock by the scan
}

// Monitor keeps the baselines of the configured trees and reports changes to its Sink.
type Monitor struct {
	cfg   Config
	sink  Sink
	log   *slog.Logger
	trees []*treeState
	met   metrics

	scanMu      sync.Mutex    // one scan at a time
	scanRequest chan struct{} // the watcher asks for a scan (overflow, moved directory)

	// hook lets tests act at a given stage ("lstat" before a child's lstat, "open" before hashing).
	hook func(stage, abs string)
}

const maxOverlay = 10000

// New checks the configuration and loads (verifies) the baselines that exist. A corrupt baseline is
// set aside (renamed *.corrupt) and the next scan builds a new one.
func New(cfg Config, sink Sink, log *slog.Logger) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fim configuration: %w", err)
	}
	cfg.setDefaults()
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("fim state directory: %w", err)
	}
	m := &Monitor{cfg: cfg, sink: sink, log: log, scanRequest: make(chan struct{}, 1)}
	for _, t := range cfg.Trees {
		mt, _ := newMatcher("", t.Exclude)
		root := filepath.Clean(t.Path)
		sum := sha256.Sum256([]byte(root))
		ts := &treeState{
			tree:    t,
			root:    root,
			m:       mt,
			file:    filepath.Join(cfg.StateDir, hex.EncodeToString(sum[:8])+baselineSuffix),
			overlay: map[string]overlayEntry{},
		}
		removeStaleTemps(ts.file)
		if err := m.load(ts); err != nil {
			return nil, err
		}
		m.trees = append(m.trees, ts)
	}
	return m, nil
}

// load verifies a tree's baseline file and keeps its header and index.
func (m *Monitor) load(ts *treeState) error {
	hdr, n, idx, err := verifyBaseline(ts.file)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	switch {
	case err == nil:
		ts.exists, ts.hdr, ts.idx, ts.count = true, hdr, idx, n
	case errors.Is(err, os.ErrNotExist):
		ts.exists = false
	case errors.Is(err, ErrCorrupt):
		m.log.Error("fim: corrupt baseline set aside; the next scan builds a new one", "tree", ts.root, "err", err)
		if rerr := os.Rename(ts.file, ts.file+".corrupt"); rerr != nil {
			return fmt.Errorf("setting aside a corrupt baseline: %w", rerr)
		}
		ts.exists = false
	default:
		return fmt.Errorf("fim baseline of %s: %w", ts.root, err)
	}
	m.updateFiles()
	return nil
}

func (m *Monitor) updateFiles() {
	var n int64
	for _, ts := range m.trees {
		n += int64(ts.count)
	}
	m.met.files.Store(n)
}

// Metrics returns a snapshot of the counters.
func (m *Monitor) Metrics() Metrics {
	out := Metrics{
		FilesWatched:      m.met.files.Load(),
		DirsWatched:       m.met.dirs.Load(),
		WatchLimitReached: m.met.limit.Load(),
		LastScanDuration:  time.Duration(m.met.lastDur.Load()),
		Scans:             m.met.scans.Load(),
		ScanErrors:        m.met.errs.Load(),
		LastScanErrors:    m.met.lastErr.Load(),
		Hashed:            m.met.hashed.Load(),
		Events:            map[Kind]uint64{},
	}
	if t := m.met.lastScan.Load(); t != 0 {
		out.LastScan = time.Unix(0, t)
	}
	for i, k := range kinds {
		out.Events[k] = m.met.events[i].Load()
	}
	return out
}

func (m *Monitor) emit(ev Event) error {
	if err := m.sink.Emit(ev); err != nil {
		return fmt.Errorf("fim: emitting %s %s: %w", ev.Kind, ev.Path, err)
	}
	m.met.events[kindIndex(ev.Kind)].Add(1)
	return nil
}

func (ts *treeState) abs(rel string) string {
	if rel == "" {
		return ts.root
	}
	return joinAbs(ts.root, rel)
}

// relOf returns the path relative to the tree's root, if abs is in the tree.
func (ts *treeState) relOf(abs string) (string, bool) {
	switch {
	case abs == ts.root:
		return "", true
	case ts.root == "/":
		return abs[1:], len(abs) > 1 && abs[0] == '/'
	case len(abs) > len(ts.root) && abs[len(ts.root)] == '/' && abs[:len(ts.root)] == ts.root:
		return abs[len(ts.root)+1:], true
	}
	return "", false
}

func joinAbs(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// event builds the event for old -> cur (either may be nil); ok is false when nothing changed.
func (m *Monitor) event(ts *treeState, rel string, old, cur *Entry, live bool) (Event, bool) {
	ev := Event{Time: time.Now(), Tree: ts.tree.Path, Path: ts.abs(rel), Old: old, New: cur, Live: live}
	switch {
	case old == nil && cur == nil:
		return ev, false
	case old == nil:
		ev.Kind = Created
	case cur == nil:
		ev.Kind = Deleted
	default:
		changed, content := diff(old, cur, m.cfg.DirTimes)
		if len(changed) == 0 {
			return ev, false
		}
		ev.Changed = changed
		ev.Kind = AttributesChanged
		if content {
			ev.Kind = ContentChanged
		}
	}
	return ev, true
}

// snapshotOverlay returns the overlay sorted by path, and the version it reflects.
func (ts *treeState) snapshotOverlay() ([]overlayEntry, uint64) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make([]overlayEntry, 0, len(ts.overlay))
	for p, o := range ts.overlay {
		o.e.Path = p
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return comparePaths(out[i].e.Path, out[j].e.Path) < 0 })
	return out, ts.version
}

// newerThan returns the overlay's entry for rel when a live check recorded it after version.
func (ts *treeState) newerThan(rel string, version uint64) (overlayEntry, bool) {
	if ts.nOver.Load() == 0 {
		return overlayEntry{}, false
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	o, ok := ts.overlay[rel]
	if !ok || o.version <= version {
		return overlayEntry{}, false
	}
	return o, true
}

// record notes a path's new state in the overlay and returns the overlay's size.
func (ts *treeState) record(rel string, cur *Entry, byScan bool) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.version++
	o := overlayEntry{present: cur != nil, byScan: byScan, version: ts.version}
	if cur != nil {
		o.e = *cur
	}
	ts.overlay[rel] = o
	n := len(ts.overlay)
	ts.nOver.Store(int64(n))
	return n
}

// Run scans at once (building the baselines if there are none), watches if configured, and scans
// again every ScanInterval and whenever the watcher asks, until ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	if m.cfg.Watch {
		w, err := m.startWatcher(ctx)
		if err != nil {
			m.log.Warn("fim: real-time watching unavailable; verification scans only", "err", err)
		} else {
			defer w.close()
		}
	}
	t := time.NewTicker(m.cfg.ScanInterval)
	defer t.Stop()
	for {
		if _, err := m.Scan(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			m.log.Error("fim: scan failed; the previous baseline is kept", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.scanRequest:
		}
	}
}

func (m *Monitor) requestScan() {
	select {
	case m.scanRequest <- struct{}{}:
	default:
	}
}
