package changes

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Journal is the append-only record of change events in the state directory: segment files of
// one record per line, "CRC32C(hex) JSON\n", named by their first sequence number. The CRC and the
// newline let Open tell a record torn by a crash (kill -9, power loss mid-write) from a good one;
// the torn tail is truncated, and everything before it was fsynced by the Append that wrote it.
//
// The total size is bounded: past MaxBytes the oldest segments are deleted and their records
// counted as dropped. A cursor (Acknowledge) marks what the hub has received, so that shipping can
// resume after a restart or an outage without losing or repeating what is still on disk.
type Journal struct {
	dir  string
	opts JournalOptions

	mu       sync.Mutex
	segs     []segment // oldest first; the last is the one appended to
	active   *os.File
	lock     *os.File // holds the writer's flock; nil when ReadOnly
	next     uint64   // sequence number of the next record
	size     int64    // bytes in all segments
	state    journalState
	torn     int64 // bytes truncated at Open
	scratchB bytes.Buffer
}

type segment struct {
	first uint64
	size  int64
}

// journalState is persisted beside the segments.
type journalState struct {
	// ID names this journal for the hub, which keeps what it received by (host, journal, seq): a
	// state directory wiped and started again numbers from 1 under a new ID, not as duplicates.
	ID      string `json:"id"`
	Acked   uint64 `json:"acked"`
	Dropped uint64 `json:"dropped"`
}

// JournalOptions bound the journal.
type JournalOptions struct {
	// MaxBytes bounds all segments together (default 64 MiB). The segment being written is never
	// deleted, so the bound can be exceeded by up to one segment.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment is started (default MaxBytes/8).
	SegmentBytes int64
	// ReadOnly opens the journal for Read and Pending only, without its lock: it neither
	// truncates a torn tail nor creates anything, so it is safe beside the agent that writes it.
	ReadOnly bool
}

// ErrJournalLocked is returned by OpenJournal when another process (a running agent) has the
// journal open for writing.
var ErrJournalLocked = errors.New("journal is open for writing by another process")

const stateFile = "journal.state"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// OpenJournal opens (creating if needed) the journal in dir, truncating a torn last record.
func OpenJournal(dir string, opts JournalOptions) (*Journal, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 64 << 20
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = max(opts.MaxBytes/8, 4096)
	}
	j := &Journal{dir: dir, opts: opts, next: 1}
	if opts.ReadOnly {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
	} else {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		// Two writers would interleave records and truncate each other's tails: one at a time.
		lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			lock.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("%s: %w", dir, ErrJournalLocked)
			}
			return nil, fmt.Errorf("journal: lock: %w", err)
		}
		j.lock = lock
	}
	ok := false
	defer func() {
		if !ok && j.lock != nil {
			j.lock.Close()
		}
	}()
	if data, err := os.ReadFile(filepath.Join(dir, stateFile)); err == nil {
		if err := json.Unmarshal(data, &j.state); err != nil {
			return nil, fmt.Errorf("journal state %s: %w", filepath.Join(dir, stateFile), err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("journal state: %w", err)
	}
	if j.state.ID == "" && !opts.ReadOnly {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("journal id: %w", err)
		}
		j.state.ID = hex.EncodeToString(b[:])
		if err := j.saveState(); err != nil {
			return nil, err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok {
			continue
		}
		first, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		j.segs = append(j.segs, segment{first: first, size: fi.Size()})
	}
	slices.SortFunc(j.segs, func(a, b segment) int { return cmpU64(a.first, b.first) })
	if opts.ReadOnly {
		for _, sg := range j.segs {
			j.size += sg.size
		}
		if len(j.segs) > 0 {
			if _, lastSeq, err := scanValid(j.segPath(j.segs[len(j.segs)-1].first)); err == nil && lastSeq > 0 {
				j.next = lastSeq + 1
			}
		}
		return j, nil
	}
	if len(j.segs) == 0 {
		j.next = j.state.Acked + 1
		if err := j.newSegment(); err != nil {
			return nil, err
		}
	} else {
		last := &j.segs[len(j.segs)-1]
		good, lastSeq, err := scanValid(j.segPath(last.first))
		if err != nil {
			return nil, err
		}
		j.next = last.first
		if lastSeq > 0 {
			j.next = lastSeq + 1
		}
		if good < last.size {
			// A torn record from a crash mid-append: its Append never returned success.
			if err := os.Truncate(j.segPath(last.first), good); err != nil {
				return nil, fmt.Errorf("journal: truncate torn record: %w", err)
			}
			j.torn = last.size - good
			last.size = good
		}
		f, err := os.OpenFile(j.segPath(last.first), os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		j.active = f
	}
	for _, s := range j.segs {
		j.size += s.size
	}
	ok = true
	return j, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (j *Journal) segPath(first uint64) string {
	return filepath.Join(j.dir, fmt.Sprintf("%020d.log", first))
}

func (j *Journal) newSegment() error {
	f, err := os.OpenFile(j.segPath(j.next), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("journal: new segment: %w", err)
	}
	if err := syncDir(j.dir); err != nil {
		f.Close()
		return fmt.Errorf("journal: new segment: %w", err)
	}
	if j.active != nil {
		j.active.Close()
	}
	j.active = f
	j.segs = append(j.segs, segment{first: j.next})
	return nil
}

// scanValid returns the length of the valid prefix of a segment and the last good sequence number.
func scanValid(path string) (int64, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var good int64
	var last uint64
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			return good, last, nil // a partial line without newline is torn
		}
		if err != nil {
			return 0, 0, fmt.Errorf("journal: %w", err)
		}
		ev, ok := decodeRecord(line)
		if !ok {
			return good, last, nil
		}
		good += int64(len(line))
		last = ev.Seq
	}
}

// decodeRecord checks and decodes one "crc json\n" line.
func decodeRecord(line []byte) (Event, bool) {
	var ev Event
	line = bytes.TrimSuffix(line, []byte("\n"))
	sum, body, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(sum) != 8 {
		return ev, false
	}
	want, err := strconv.ParseUint(string(sum), 16, 32)
	if err != nil || crc32.Checksum(body, crcTable) != uint32(want) {
		return ev, false
	}
	if json.Unmarshal(body, &ev) != nil || ev.Seq == 0 {
		return ev, false
	}
	return ev, true
}

// Append writes the events as one batch, numbering them, and fsyncs before returning: after a
// nil return they survive a crash. On error (disk full) nothing of the batch counts: the segment
// is cut back to where it was, and the caller keeps the events to retry.
func (j *Journal) Append(events []Event) error {
	if len(events) == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.opts.ReadOnly {
		return errors.New("journal opened read-only")
	}
	if j.active == nil {
		return errors.New("journal closed")
	}
	last := &j.segs[len(j.segs)-1]
	if last.size >= j.opts.SegmentBytes {
		if err := j.newSegment(); err != nil {
			return err
		}
		last = &j.segs[len(j.segs)-1]
	}
	b := &j.scratchB
	b.Reset()
	seq := j.next
	for i := range events {
		events[i].Seq = seq
		body, err := json.Marshal(&events[i])
		if err != nil {
			return fmt.Errorf("journal: encode: %w", err)
		}
		fmt.Fprintf(b, "%08x ", crc32.Checksum(body, crcTable))
		b.Write(body)
		b.WriteByte('\n')
		seq++
	}
	if _, err := j.active.Write(b.Bytes()); err != nil {
		j.undo(last)
		return fmt.Errorf("journal: append: %w", err)
	}
	if err := j.active.Sync(); err != nil {
		j.undo(last)
		return fmt.Errorf("journal: fsync: %w", err)
	}
	last.size += int64(b.Len())
	j.size += int64(b.Len())
	j.next = seq
	return j.enforceBound()
}

// undo cuts a failed batch off the active segment, so no half record is left for Open to find.
func (j *Journal) undo(last *segment) {
	_ = j.active.Truncate(last.size)
}

// enforceBound deletes the oldest segments while the journal is over its bound.
func (j *Journal) enforceBound() error {
	changed := false
	for j.size > j.opts.MaxBytes && len(j.segs) > 1 {
		old := j.segs[0]
		if err := os.Remove(j.segPath(old.first)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("journal: drop oldest segment: %w", err)
		}
		j.state.Dropped += j.segs[1].first - old.first
		j.size -= old.size
		j.segs = j.segs[1:]
		changed = true
	}
	if changed {
		return j.saveState()
	}
	return nil
}

func (j *Journal) saveState() error {
	data, _ := json.Marshal(j.state)
	return writeAtomic(filepath.Join(j.dir, stateFile), data, 0o600)
}

// Read calls fn for every record with Seq >= from, oldest first, until fn returns false.
// Records damaged on disk are skipped.
func (j *Journal) Read(from uint64, fn func(Event) bool) error {
	j.mu.Lock()
	segs := slices.Clone(j.segs)
	j.mu.Unlock()
	for i, s := range segs {
		if i+1 < len(segs) && segs[i+1].first <= from {
			continue
		}
		f, err := os.Open(j.segPath(s.first))
		if errors.Is(err, fs.ErrNotExist) {
			continue // dropped meanwhile
		}
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		// Only what was there when Read started: an Append racing with us is not half read.
		br := bufio.NewReaderSize(io.LimitReader(f, s.size), 64<<10)
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				break
			}
			ev, ok := decodeRecord(line)
			if !ok || ev.Seq < from {
				continue
			}
			if !fn(ev) {
				f.Close()
				return nil
			}
		}
		f.Close()
	}
	return nil
}

// Pending calls fn for every record not yet acknowledged.
func (j *Journal) Pending(fn func(Event) bool) error {
	return j.Read(j.Acked()+1, fn)
}

// Acknowledge records that every record up to seq has reached the hub; it survives restarts.
func (j *Journal) Acknowledge(seq uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if seq <= j.state.Acked {
		return nil
	}
	if seq >= j.next {
		return fmt.Errorf("journal: acknowledge %d: only %d records written", seq, j.next-1)
	}
	j.state.Acked = seq
	return j.saveState()
}

// ID is the journal's random identity, made when it was created.
func (j *Journal) ID() string { return j.state.ID }

// Acked is the last acknowledged sequence number.
func (j *Journal) Acked() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state.Acked
}

// JournalStats describe the journal for metrics.
type JournalStats struct {
	Bytes     int64
	Segments  int
	LastSeq   uint64
	Acked     uint64
	Dropped   uint64 // records deleted by the size bound, since the journal was created
	TornBytes int64  // bytes of a torn record truncated at Open
}

// Stats returns the journal's figures.
func (j *Journal) Stats() JournalStats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return JournalStats{Bytes: j.size, Segments: len(j.segs), LastSeq: j.next - 1, Acked: j.state.Acked, Dropped: j.state.Dropped, TornBytes: j.torn}
}

// Close closes the segment being written.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	var err error
	if j.active != nil {
		err = j.active.Close()
		j.active = nil
	}
	if j.lock != nil {
		j.lock.Close() // releases the flock
		j.lock = nil
	}
	return err
}
