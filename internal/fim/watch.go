package fim

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watcher turns inotify events into live checks of single paths. inotify is not recursive: every
// directory gets its own watch, up to Config.MaxWatches and the kernel's max_user_watches; past
// that the verification scans cover the rest (Metrics.WatchLimitReached says so).
type watcher struct {
	m    *Monitor
	fw   *fsnotify.Watcher
	n    int
	done chan struct{}
}

type pending struct{ first, last time.Time }

func (m *Monitor) startWatcher(ctx context.Context) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &watcher{m: m, fw: fw, done: make(chan struct{})}
	for _, ts := range m.trees {
		w.addTree(ts, ts.root, 0)
	}
	go w.loop(ctx)
	return w, nil
}

func (w *watcher) close() {
	w.fw.Close()
	<-w.done
}

// addDir watches one directory; false once the limit is reached.
func (w *watcher) addDir(abs string) bool {
	if w.n >= w.m.cfg.MaxWatches {
		w.m.met.limit.Store(true)
		return false
	}
	if err := w.fw.Add(abs); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			w.m.met.limit.Store(true) // max_user_watches
			return false
		}
		// Vanished or unreadable: the scan records it.
		return true
	}
	w.n++
	w.m.met.dirs.Store(int64(w.n))
	return true
}

// addTree watches abs and the directories under it, never following links.
func (w *watcher) addTree(ts *treeState, abs string, depth int) bool {
	var st syscall.Stat_t
	if lstat(abs, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return true
	}
	if !w.addDir(abs) {
		return false
	}
	entries, _ := os.ReadDir(abs)
	for _, de := range entries {
		if !de.IsDir() { // d_type: a link to a directory is not a directory here
			continue
		}
		c := joinAbs(abs, de.Name())
		if ts.m.excluded(c) {
			continue
		}
		if !w.addTree(ts, c, depth+1) {
			return false
		}
	}
	return true
}

func (w *watcher) tree(abs string) (*treeState, string, bool) {
	for _, ts := range w.m.trees {
		if rel, ok := ts.relOf(abs); ok {
			return ts, rel, true
		}
	}
	return nil, "", false
}

func (w *watcher) loop(ctx context.Context) {
	defer close(w.done)
	deb := w.m.cfg.Debounce
	tick := time.NewTicker(deb / 2)
	defer tick.Stop()
	queue := map[string]pending{}
	removed := false
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			now := time.Now()
			p, seen := queue[ev.Name]
			if !seen {
				p.first = now
			}
			p.last = now
			queue[ev.Name] = p
			if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				// A directory moved away keeps its watch under the old name: drop it. A deleted
				// one's watch goes by itself; the count is re-read at the next tick either way.
				w.fw.Remove(ev.Name)
				removed = true
			}
		case err, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			w.m.log.Warn("fim: watch error; asking for a verification scan", "err", err)
			w.m.requestScan()
		case now := <-tick.C:
			if removed {
				removed = false
				w.n = len(w.fw.WatchList())
				w.m.met.dirs.Store(int64(w.n))
			}
			// A path is checked once writes to it have paused for the debounce time, or at the
			// latest after four debounce times of continuous writing.
			for abs, p := range queue {
				if now.Sub(p.last) < deb && now.Sub(p.first) < 4*deb {
					continue
				}
				delete(queue, abs)
				if ts, rel, ok := w.tree(abs); ok {
					w.check(ctx, ts, rel)
				}
			}
		}
	}
}

// check runs a live check and, for a new directory, watches it and checks what is already in it
// (entries created before its watch existed).
func (w *watcher) check(ctx context.Context, ts *treeState, rel string) {
	cur, old, err := w.m.checkPath(ctx, ts, rel)
	if err != nil {
		w.m.log.Warn("fim: live check failed", "path", ts.abs(rel), "err", err)
		return
	}
	switch {
	case cur != nil && cur.Type == TypeDir && (old == nil || old.Type != TypeDir):
		abs := ts.abs(rel)
		w.addTree(ts, abs, 0)
		budget := maxOverlay / 2
		w.checkNewDir(ctx, ts, rel, &budget)
	case old != nil && old.Type == TypeDir && (cur == nil || cur.Type != TypeDir):
		// A directory removed or moved away: what was under it is found by a scan.
		w.m.requestScan()
	}
}

func (w *watcher) checkNewDir(ctx context.Context, ts *treeState, rel string, budget *int) {
	entries, _ := os.ReadDir(ts.abs(rel))
	for _, de := range entries {
		if ctx.Err() != nil {
			return
		}
		if *budget <= 0 {
			w.m.requestScan()
			return
		}
		*budget--
		crel := joinRel(rel, de.Name())
		if ts.m.excluded(ts.abs(crel)) {
			continue
		}
		cur, _, err := w.m.checkPath(ctx, ts, crel)
		if err == nil && cur != nil && cur.Type == TypeDir {
			w.checkNewDir(ctx, ts, crel, budget)
		}
	}
}

// checkPath compares one path with its baseline (or its last live check), emits the event, and
// records the new state in the overlay that the next scan starts from.
func (m *Monitor) checkPath(ctx context.Context, ts *treeState, rel string) (cur, old *Entry, err error) {
	abs := ts.abs(rel)
	if ts.m.excluded(abs) {
		return nil, nil, nil
	}
	var st syscall.Stat_t
	if err := lstat(abs, &st); err == nil {
		e := entryFromStat(rel, &st)
		if e.Type == TypeSymlink {
			e.Link, _ = os.Readlink(abs)
		}
		cur = &e
	} else if !errors.Is(err, os.ErrNotExist) {
		m.met.errs.Add(1)
		return nil, nil, err
	}

	ts.checkMu.Lock()
	defer ts.checkMu.Unlock()
	ts.mu.Lock()
	if !ts.exists {
		ts.mu.Unlock()
		return cur, nil, nil // the first scan is building the baseline; it will see this path
	}
	if o, ok := ts.overlay[rel]; ok {
		if o.present {
			e := o.e
			e.Path = rel
			old = &e
		}
	} else {
		e, found, lerr := lookupBaseline(ts.file, ts.idx, rel)
		if lerr != nil {
			ts.mu.Unlock()
			return cur, nil, lerr
		}
		if found {
			old = &e
		}
	}
	ts.mu.Unlock()

	if cur != nil && cur.Type == TypeFile {
		if old != nil && !mayHaveChanged(old, cur) {
			cur.HasHash, cur.SHA256 = true, old.SHA256
		} else {
			sum, herr := m.hashFile(abs, cur, make([]byte, 256<<10))
			switch {
			case herr == nil:
				cur.HasHash, cur.SHA256 = true, sum
			case errors.Is(herr, os.ErrNotExist):
				cur = nil // gone again
			default:
				m.met.errs.Add(1)
			}
		}
	}
	if ev, ok := m.event(ts, rel, old, cur, true); ok {
		if err := m.emit(ev); err != nil {
			return cur, old, err // not recorded: the next scan finds it again
		}
	}
	if n := ts.record(rel, cur, false); n >= maxOverlay {
		m.requestScan()
	}
	return cur, old, nil
}
