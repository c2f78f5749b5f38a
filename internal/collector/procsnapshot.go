package collector

import (
	"context"
	"sync"
)

// procSnapshot is one walk of /proc: every process whose stat could be read, with the fields the
// processes and process_groups collectors use. Both walk /proc on every scrape; a snapshot lets one
// walk of a scrape serve both, as readShared does for /proc/stat. Its storage is reused from walk to
// walk, so that a scrape allocates nothing for it once the host's process count has been reached.
type procSnapshot struct {
	procs []procRecord
	text  []byte // each process's PID followed by its comm, which the records point into

	bad      int   // processes whose stat could not be read or parsed
	firstBad error // the first of those errors
}

// procRecord is one process of a snapshot. The PID and comm are kept as offsets into text while
// the walk appends to it, and comm is made a slice only once text stops moving.
type procRecord struct {
	stat    procStat
	off     uint32 // of the PID in text; comm follows it
	pidLen  uint32
	commLen uint32
}

// walk replaces the snapshot's content with a walk of /proc by s. On error the content is partial
// and must not be used.
func (p *procSnapshot) walk(ctx context.Context, s *procScanner) error {
	p.procs, p.text = p.procs[:0], p.text[:0]
	err := s.scan(ctx, func(pid []byte, st *procStat) {
		r := procRecord{stat: *st, off: uint32(len(p.text)), pidLen: uint32(len(pid)), commLen: uint32(len(st.comm))}
		r.stat.comm = nil
		p.text = append(p.text, pid...)
		p.text = append(p.text, st.comm...)
		p.procs = append(p.procs, r)
	})
	p.bad, p.firstBad = s.bad, s.firstBad
	if err != nil {
		return err
	}
	for i := range p.procs {
		r := &p.procs[i]
		c := r.off + r.pidLen
		r.stat.comm = p.text[c : c+r.commLen : c+r.commLen]
	}
	return nil
}

// proc returns the PID (decimal, as in /proc) and stat of the i-th process.
func (p *procSnapshot) proc(i int) ([]byte, *procStat) {
	r := &p.procs[i]
	return p.text[r.off : r.off+r.pidLen : r.off+r.pidLen], &r.stat
}

// badErr summarises the processes the walk could not read, or is nil.
func (p *procSnapshot) badErr() error {
	return procBadErr(p.bad, p.firstBad)
}

// procShare is the snapshot of a procfs root for the current scrape. Readers of one scrape share
// it under the read lock; the first collector of a scrape to ask walks under the write lock, which
// also makes a scrape that starts while a slow one still reads the previous snapshot wait for it.
type procShare struct {
	mu     sync.RWMutex
	scrape uint64 // the scrape snap is of; 0: none
	scan   *procScanner
	snap   procSnapshot
}

var procShares sync.Map // root -> *procShare; one per procfs mount point

// viewProcs calls use with the processes under root as walked in the scrape of ctx: the first
// collector of a scrape to ask walks, the others reuse its walk. use must not keep the snapshot nor
// change it. Outside a scrape (ctx without a scrape number, as when a test calls Update) it walks
// afresh into own with s, which the caller guards. The error is the walk's.
func viewProcs(ctx context.Context, root string, s *procScanner, own *procSnapshot, use func(*procSnapshot)) error {
	n, _ := ctx.Value(scrapeKey{}).(uint64)
	if n == 0 {
		if err := own.walk(ctx, s); err != nil {
			return err
		}
		use(own)
		return nil
	}
	v, ok := procShares.Load(root)
	if !ok {
		v, _ = procShares.LoadOrStore(root, &procShare{scan: newProcScanner(root)})
	}
	ps := v.(*procShare)
	for {
		ps.mu.RLock()
		if ps.scrape == n {
			defer ps.mu.RUnlock()
			use(&ps.snap)
			return nil
		}
		ps.mu.RUnlock()

		ps.mu.Lock()
		if ps.scrape != n {
			// A failed walk is kept by nobody: each collector's deadline is its own, so a walk cut
			// short by one collector's must not fail another's; the next to ask walks again.
			ps.scrape = 0
			if err := ps.snap.walk(ctx, ps.scan); err != nil {
				ps.mu.Unlock()
				return err
			}
			ps.scrape = n
		}
		ps.mu.Unlock()
		// Another scrape may walk before the read lock is taken again; then this one walks again.
	}
}
