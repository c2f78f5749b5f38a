package fim

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// errChanged: the path was replaced between lstat and open (by a FIFO, a link, another file).
var errChanged = errors.New("changed while being scanned")

type itemKind byte

const (
	itemPresent itemKind = iota // found by the walk
	itemDeleted                 // in the old baseline, not found
	itemCarry                   // in the old baseline, under a directory that could not be read: kept as is
)

type item struct {
	kind     itemKind
	rel      string
	old      *Entry
	cur      Entry
	needHash bool
	hashErr  error
	done     chan struct{} // closed once hashed; nil when no hashing is needed
}

// oldStream yields the effective previous state in path order: the baseline file merged with the
// live checks' overlay (an overlay entry replaces or removes the file's entry for its path).
type oldStream struct {
	r       *baselineReader
	over    []overlayEntry
	fileE   Entry
	fileOK  bool
	head    Entry
	headOK  bool
	err     error
	started bool
}

func (s *oldStream) advanceFile() {
	if s.r == nil {
		s.fileOK = false
		return
	}
	e, ok, err := s.r.next()
	if err != nil {
		s.err = err
		ok = false
	}
	s.fileE, s.fileOK = e, ok
}

// fill sets head to the next effective entry.
func (s *oldStream) fill() {
	if !s.started {
		s.started = true
		s.advanceFile()
	}
	for {
		switch {
		case !s.fileOK && len(s.over) == 0:
			s.headOK = false
			return
		case len(s.over) > 0 && (!s.fileOK || comparePaths(s.over[0].e.Path, s.fileE.Path) <= 0):
			o := s.over[0]
			s.over = s.over[1:]
			if s.fileOK && o.e.Path == s.fileE.Path {
				s.advanceFile()
			}
			if !o.present {
				continue
			}
			s.head, s.headOK = o.e, true
			return
		default:
			s.head, s.headOK = s.fileE, true
			s.advanceFile()
			return
		}
	}
}

func (s *oldStream) peek() (*Entry, bool) {
	if !s.headOK {
		return nil, false
	}
	return &s.head, true
}

func (s *oldStream) take() *Entry {
	e := s.head
	s.fill()
	return &e
}

// Scan verifies every tree against its baseline, emits the changes and replaces the baselines. A
// tree without a baseline gets one, without events. On error or cancellation the previous baseline
// of the tree being scanned stays as it was.
func (m *Monitor) Scan(ctx context.Context) (ScanResult, error) {
	m.scanMu.Lock()
	defer m.scanMu.Unlock()
	res := ScanResult{Start: time.Now()}
	var errs []error
	for _, ts := range m.trees {
		if err := m.scanTree(ctx, ts, &res); err != nil {
			errs = append(errs, fmt.Errorf("scanning %s: %w", ts.root, err))
			if ctx.Err() != nil {
				break
			}
		}
	}
	res.Duration = time.Since(res.Start)
	m.met.scans.Add(1)
	m.met.lastScan.Store(res.Start.UnixNano())
	m.met.lastDur.Store(int64(res.Duration))
	m.met.lastErr.Store(res.ErrorsN)
	m.met.errs.Add(res.ErrorsN)
	m.updateFiles()
	return res, errors.Join(errs...)
}

type scanErrors struct {
	mu  sync.Mutex
	max int
	res *ScanResult
}

func (s *scanErrors) add(abs, op string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.res.ErrorsN++
	if len(s.res.Errors) < s.max {
		s.res.Errors = append(s.res.Errors, ScanError{Path: abs, Op: op, Err: err})
	}
}

func (m *Monitor) scanTree(ctx context.Context, ts *treeState, res *ScanResult) error {
	// The baseline is verified whole before it is trusted: a scan must not report changes against a
	// damaged file. This costs one sequential read of it.
	if err := m.load(ts); err != nil {
		return err
	}
	ts.mu.Lock()
	exists, hdr := ts.exists, ts.hdr
	ts.mu.Unlock()
	initial := !exists
	now := time.Now()
	fullHash := initial || (m.cfg.Paranoid && now.Sub(time.Unix(0, hdr.FullHashTime)) >= m.cfg.FullRehashInterval)
	newHdr := header{Root: ts.root, FullHashTime: hdr.FullHashTime}
	if fullHash {
		newHdr.FullHashTime = now.UnixNano()
	}
	res.Initial = res.Initial || initial
	res.FullHash = res.FullHash || (fullHash && !initial)

	over, version := ts.snapshotOverlay()
	old := &oldStream{over: over}
	if exists {
		r, err := openBaseline(ts.file)
		if err != nil {
			return err
		}
		defer r.close()
		old.r = r
	}
	old.fill()

	w, err := createBaseline(ts.file, newHdr)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			w.abort()
		}
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	se := &scanErrors{max: m.cfg.MaxErrors, res: res}
	items := make(chan *item, 1024)
	jobs := make(chan *item, 1024)
	var wg sync.WaitGroup
	for range m.cfg.HashWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for it := range jobs {
				if ctx.Err() != nil {
					it.hashErr = ctx.Err()
				} else {
					it.cur.SHA256, it.hashErr = m.hashFile(ts.abs(it.rel), &it.cur, buf)
					it.cur.HasHash = it.hashErr == nil
				}
				close(it.done)
			}
		}()
	}
	wk := &walker{m: m, ts: ts, ctx: ctx, old: old, items: items, jobs: jobs, full: fullHash, errs: se}
	walkErr := make(chan error, 1)
	go func() {
		err := wk.run()
		close(items)
		close(jobs)
		walkErr <- err
	}()

	var cerr error
	dirty := false // the new baseline differs from the old file
	for it := range items {
		if cerr != nil {
			if it.done != nil {
				<-it.done
			}
			continue // drain so that the walker and workers finish
		}
		if it.done != nil {
			<-it.done
		}
		if it.kind != itemCarry && (it.kind != itemPresent || it.old == nil || *it.old != it.cur) {
			dirty = true
		}
		cerr = m.consume(ts, w, it, initial, version, se, res)
		if cerr != nil {
			cancel()
		}
	}
	wg.Wait()
	if err := <-walkErr; err != nil && cerr == nil {
		cerr = err
	}
	if cerr == nil && old.err != nil {
		cerr = old.err
	}
	if cerr == nil {
		cerr = ctx.Err()
	}
	if cerr != nil {
		return cerr
	}
	if !dirty && len(over) == 0 && newHdr == hdr && exists {
		// Byte for byte the baseline that is there: skip the fsync and rename (and the disk wear
		// of rewriting a large baseline every scan of an unchanged tree).
		res.Entries += w.count
		return nil // the deferred abort removes the temporary file
	}
	// The rename happens under the lock so that a live lookup never pairs the new file with the old
	// index.
	ts.mu.Lock()
	committed = true
	if err := w.commit(); err != nil {
		ts.mu.Unlock()
		return err
	}
	res.Entries += w.count
	ts.exists, ts.hdr, ts.idx, ts.count = true, newHdr, w.idx, w.count
	for p, o := range ts.overlay {
		if o.version <= version || o.byScan {
			delete(ts.overlay, p)
		}
	}
	ts.nOver.Store(int64(len(ts.overlay)))
	ts.mu.Unlock()
	return nil
}

// consume handles one walked item in path order: writes the new baseline record and emits the event.
func (m *Monitor) consume(ts *treeState, w *baselineWriter, it *item, initial bool, version uint64, se *scanErrors, res *ScanResult) error {
	if it.kind == itemCarry {
		return w.add(it.old)
	}
	ts.checkMu.Lock()
	defer ts.checkMu.Unlock()
	old := it.old
	if o, ok := ts.newerThan(it.rel, version); ok {
		// A live check saw this path after the scan started: compare with what it already reported.
		old = nil
		if o.present {
			e := o.e
			e.Path = it.rel
			old = &e
		}
	}
	var cur *Entry
	switch it.kind {
	case itemPresent:
		if it.hashErr != nil {
			if errors.Is(it.hashErr, os.ErrNotExist) {
				se.add(ts.abs(it.rel), "vanished", it.hashErr)
				break // gone between lstat and open: reported as deleted
			}
			op := "hash"
			if errors.Is(it.hashErr, errChanged) {
				op = "changed"
			}
			se.add(ts.abs(it.rel), op, it.hashErr)
			// Content unknown: keep the old hash only if stat says nothing changed, else record none
			// so that the next scan tries again.
			if old != nil && old.HasHash && !mayHaveChanged(old, &it.cur) {
				it.cur.HasHash, it.cur.SHA256 = true, old.SHA256
			}
		}
		if it.cur.HasHash {
			res.Hashed += btoi(it.done != nil)
		}
		cur = &it.cur
		if err := w.add(cur); err != nil {
			return err
		}
	}
	if initial {
		return nil
	}
	ev, ok := m.event(ts, it.rel, old, cur, false)
	if !ok {
		return nil
	}
	res.Events++
	if err := m.emit(ev); err != nil {
		return err
	}
	// Until this scan commits, the baseline file still holds the old state: a live check of the
	// path must compare with what was just reported.
	ts.record(it.rel, cur, true)
	return nil
}

func btoi(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// walker walks one tree depth-first over sorted listings, merging with the old baseline.
type walker struct {
	m     *Monitor
	ts    *treeState
	ctx   context.Context
	old   *oldStream
	items chan<- *item
	jobs  chan<- *item
	full  bool
	errs  *scanErrors
}

func (w *walker) send(it *item) error {
	select {
	case w.items <- it:
	case <-w.ctx.Done():
		if it.done != nil {
			close(it.done)
		}
		return w.ctx.Err()
	}
	if it.done != nil {
		select {
		case w.jobs <- it:
		case <-w.ctx.Done():
			// The consumer drains and waits on done: a job never handed over must still be closed.
			it.hashErr = w.ctx.Err()
			close(it.done)
			return w.ctx.Err()
		}
	}
	return nil
}

// deleteBefore reports every old entry that sorts before rel as deleted (excluded ones silently).
func (w *walker) deleteBefore(rel string) error {
	for {
		o, ok := w.old.peek()
		if !ok {
			return nil
		}
		if comparePaths(o.Path, rel) >= 0 {
			return nil
		}
		e := w.old.take()
		if w.ts.m.excluded(w.ts.abs(e.Path)) {
			continue
		}
		if err := w.send(&item{kind: itemDeleted, rel: e.Path, old: e}); err != nil {
			return err
		}
	}
}

// carryUnder keeps the old entries under an unreadable directory as they were.
func (w *walker) carryUnder(dir string) error {
	for {
		o, ok := w.old.peek()
		if !ok || !under(o.Path, dir) {
			return nil
		}
		if err := w.send(&item{kind: itemCarry, rel: o.Path, old: w.old.take()}); err != nil {
			return err
		}
	}
}

func (w *walker) run() error {
	var st syscall.Stat_t
	if err := lstat(w.ts.root, &st); err != nil {
		w.errs.add(w.ts.root, "lstat", err)
		if errors.Is(err, os.ErrNotExist) {
			return w.deleteRest() // the whole tree is gone
		}
		return w.carryAll()
	}
	if err := w.visit("", w.ts.root, &st); err != nil {
		return err
	}
	return w.deleteRest()
}

// deleteRest reports every old entry not yet matched as deleted.
func (w *walker) deleteRest() error {
	for {
		if _, ok := w.old.peek(); !ok {
			return nil
		}
		e := w.old.take()
		if w.ts.m.excluded(w.ts.abs(e.Path)) {
			continue
		}
		if err := w.send(&item{kind: itemDeleted, rel: e.Path, old: e}); err != nil {
			return err
		}
	}
}

func (w *walker) carryAll() error {
	for {
		if _, ok := w.old.peek(); !ok {
			return nil
		}
		if err := w.send(&item{kind: itemCarry, rel: w.old.head.Path, old: w.old.take()}); err != nil {
			return err
		}
	}
}

func lstat(path string, st *syscall.Stat_t) error {
	for {
		err := syscall.Lstat(path, st)
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "lstat", Path: path, Err: err}
			}
			return nil
		}
	}
}

func (w *walker) visit(rel, abs string, st *syscall.Stat_t) error {
	if err := w.deleteBefore(rel); err != nil {
		return err
	}
	var old *Entry
	if o, ok := w.old.peek(); ok && o.Path == rel {
		old = w.old.take()
	}
	it := &item{kind: itemPresent, rel: rel, old: old, cur: entryFromStat(rel, st)}
	switch it.cur.Type {
	case TypeSymlink:
		target, err := os.Readlink(abs)
		if err != nil {
			w.errs.add(abs, "readlink", err)
			if old != nil {
				target = old.Link
			}
		}
		it.cur.Link = target
	case TypeFile:
		if w.full || old == nil || mayHaveChanged(old, &it.cur) {
			it.done = make(chan struct{})
		} else {
			it.cur.HasHash, it.cur.SHA256 = true, old.SHA256
		}
	}
	if err := w.send(it); err != nil {
		return err
	}
	if it.cur.Type != TypeDir {
		return nil
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(abs)
	if err != nil && len(entries) == 0 {
		w.errs.add(abs, "readdir", err)
		if errors.Is(err, os.ErrNotExist) {
			return nil // vanished: its old contents are reported deleted
		}
		return w.carryUnder(rel)
	}
	if err != nil {
		w.errs.add(abs, "readdir", err)
	}
	for _, de := range entries {
		name := de.Name()
		cabs := joinAbs(abs, name)
		if w.ts.m.excluded(cabs) {
			continue
		}
		if w.m.hook != nil {
			w.m.hook("lstat", cabs)
		}
		var cst syscall.Stat_t
		if err := lstat(cabs, &cst); err != nil {
			op := "lstat"
			if errors.Is(err, os.ErrNotExist) {
				op = "vanished"
			}
			w.errs.add(cabs, op, err)
			continue
		}
		if err := w.visit(joinRel(rel, name), cabs, &cst); err != nil {
			return err
		}
	}
	return nil
}

// hashFile hashes a regular file without following links, without blocking on a FIFO that replaced
// it, and without updating its atime where the kernel allows.
func (m *Monitor) hashFile(abs string, want *Entry, buf []byte) ([32]byte, error) {
	var sum [32]byte
	if m.hook != nil {
		m.hook("open", abs)
	}
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	fd, err := openRetry(abs, flags|unix.O_NOATIME)
	if err == unix.EPERM {
		fd, err = openRetry(abs, flags) // O_NOATIME needs ownership or CAP_FOWNER
	}
	if err != nil {
		if err == unix.ELOOP {
			return sum, fmt.Errorf("%s: now a symbolic link: %w", abs, errChanged)
		}
		return sum, &os.PathError{Op: "open", Path: abs, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return sum, &os.PathError{Op: "fstat", Path: abs, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != want.Inode {
		return sum, fmt.Errorf("%s: %w", abs, errChanged)
	}
	h := sha256.New()
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return sum, &os.PathError{Op: "read", Path: abs, Err: err}
		}
		if n == 0 {
			break
		}
		h.Write(buf[:n])
	}
	m.met.hashed.Add(1)
	h.Sum(sum[:0])
	return sum, nil
}

func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}
