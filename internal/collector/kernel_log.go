package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

func init() { register("kernel_log", true, newKernelLog) }

const (
	// kmsgBufSize holds any record the kernel hands out (at most 8 KiB on old kernels, about 2 KiB
	// on new ones): /dev/kmsg refuses, with EINVAL, a read into a buffer smaller than the record.
	kmsgBufSize = 16 << 10
	// kmsgMaxBufSize bounds the growth on EINVAL, should a kernel ever hand out bigger records.
	kmsgMaxBufSize = 1 << 20
	// kmsgIdleWait is how long the reader sleeps when its source has nothing and cannot be waited
	// on through the poller: a regular file (a fixture, a log copied into a container) at its end,
	// or a FIFO without a writer. /dev/kmsg itself is waited on by the poller, without polling.
	kmsgIdleWait = 200 * time.Millisecond
	// kmsgMaxStoredMessage bounds the memory kept per pattern for LastMatches.
	kmsgMaxStoredMessage = 4 << 10
)

// kernelLogCollector counts kernel log records matching configured patterns (OOM kills, I/O
// errors, hung tasks, ...) as they arrive on /dev/kmsg, from the agent's start on. A background
// goroutine reads the records; Update only reads counters, so a scrape costs no I/O.
//
// Match times are the wall clock when the agent read the record, not the record's monotonic
// timestamp converted through the boot time: the reader sees a record microseconds after the
// kernel logs it, and the conversion would be wrong after a suspend or a step of the clock.
type kernelLogCollector struct {
	path     string
	patterns []kmsgPattern

	matchesDesc, lastMatchDesc, recordsDesc, lostDesc *Desc

	// start serialises (re)opening with Close.
	start sync.Mutex
	file  *os.File
	stop  chan struct{}
	done  chan struct{} // closed when the reader goroutine has returned

	mu        sync.Mutex // guards what follows, shared by the reader and Update
	matches   []uint64
	lastAt    []float64 // unix seconds of the last match, per pattern
	last      []KernelLogMatch
	records   uint64
	lost      uint64
	lastSeq   uint64
	haveSeq   bool
	lostSince bool  // records were overwritten before we read them (EPIPE); counted at the next record
	err       error // why the reader is not running, nil while it is
	opened    bool  // the kernel log was opened once: the counters mean something
	closed    bool
}

type kmsgPattern struct {
	name string
	re   *regexp.Regexp
}

// KernelLogMatch is the last kernel log record that matched a pattern, kept for the hub: a
// message is too variable to be a label.
type KernelLogMatch struct {
	Pattern string
	Message string    // unescaped, cut to 4 KiB
	Time    time.Time // wall clock when the agent read the record
	// Priority is the syslog facility*8+level from the record's header, -1 if unreadable.
	Priority int
	Seq      uint64 // the kernel's sequence number of the record
}

func newKernelLog(cfg *Config, logger *slog.Logger) (Collector, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &kernelLogCollector{
		path: cfg.KmsgPath,
		matchesDesc: newDesc(namespace+"_kernel_log_matches_total",
			"Kernel log records matching each pattern since the agent started.", []string{"pattern"}),
		lastMatchDesc: newDesc(namespace+"_kernel_log_last_match_timestamp_seconds",
			"Unix time at which the agent read the last kernel log record matching each pattern, 0 if none.", []string{"pattern"}),
		recordsDesc: newDesc(namespace+"_kernel_log_records_total",
			"Kernel log records read since the agent started.", nil),
		lostDesc: newDesc(namespace+"_kernel_log_lost_records_total",
			"Kernel log records overwritten in the kernel's ring buffer before the agent could read them.", nil),
	}
	if c.path == "" {
		c.path = "/dev/kmsg"
	}
	for _, p := range cfg.KernelLogPatterns() {
		re, err := regexp.Compile(p.Regex)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p.Name, err)
		}
		c.patterns = append(c.patterns, kmsgPattern{name: p.Name, re: re})
	}
	c.matches = make([]uint64, len(c.patterns))
	c.lastAt = make([]float64, len(c.patterns))
	c.last = make([]KernelLogMatch, len(c.patterns))
	if err := c.open(); err != nil {
		// Not a configuration error: the agent must run without the kernel log (a container, a
		// user without CAP_SYSLOG). Update reports it on every scrape, and retries.
		logger.Warn("kernel log unavailable; kernel log patterns are not matched until it can be read",
			"path", c.path, "err", err)
	}
	return c, nil
}

// open starts the reader if it is not running. It returns why the kernel log cannot be read, or
// why the reader stopped before this (re)start, since records may have been missed meanwhile.
func (c *kernelLogCollector) open() error {
	c.start.Lock()
	defer c.start.Unlock()
	c.mu.Lock()
	closed, running := c.closed, c.done != nil && c.err == nil
	var failed error
	if c.done != nil {
		failed = c.err
	}
	c.mu.Unlock()
	if closed || running {
		return nil
	}
	if c.done != nil { // a reader that failed: it has returned or is about to
		<-c.done
		c.file.Close()
		c.file, c.done = nil, nil
	}
	err := c.openLocked()
	if err != nil {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
	}
	if err == nil && failed != nil {
		return fmt.Errorf("%w (reopened)", failed)
	}
	return err
}

func (c *kernelLogCollector) openLocked() error {
	// Non-blocking, so that the file goes through Go's poller: a read waiting for the next record
	// parks the goroutine instead of a thread, and Close wakes it. It also keeps opening a FIFO
	// from waiting for a writer.
	f, err := os.OpenFile(c.path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("opening kernel log: %w (reading /dev/kmsg needs root, or CAP_SYSLOG when kernel.dmesg_restrict=1)", err)
		}
		return fmt.Errorf("opening kernel log: %w", err)
	}
	// On /dev/kmsg SEEK_END skips the records logged before the agent started: only new ones count.
	if _, err := f.Seek(0, io.SeekEnd); err != nil && !errors.Is(err, syscall.ESPIPE) {
		f.Close()
		return fmt.Errorf("seeking to the end of the kernel log: %w", err)
	}
	c.file = f
	c.stop = make(chan struct{})
	c.done = make(chan struct{})
	// Before the reader starts: it may fail at once, and its error must not be overwritten.
	c.mu.Lock()
	c.err, c.opened = nil, true
	c.mu.Unlock()
	go c.read(f, c.stop, c.done)
	return nil
}

// Close stops the reader and closes the kernel log. Closing the file wakes a read parked in the
// poller, which then returns os.ErrClosed.
func (c *kernelLogCollector) Close() error {
	c.start.Lock()
	defer c.start.Unlock()
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	if already || c.done == nil {
		return nil
	}
	close(c.stop)
	err := c.file.Close()
	<-c.done
	if errors.Is(err, os.ErrClosed) {
		err = nil
	}
	return err
}

func (c *kernelLogCollector) read(f *os.File, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	s := kmsgSplitter{buf: make([]byte, kmsgBufSize)}
	var matched []int
	var unescaped []byte
	var idle *time.Timer
	for {
		n, err := f.Read(s.space())
		if n > 0 {
			now := time.Now()
			s.advance(n, func(line []byte) {
				matched, unescaped = c.handle(line, now, matched[:0], unescaped)
			})
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, syscall.EPIPE):
			// The ring buffer wrapped past our position; the kernel moved us to the oldest record.
			c.mu.Lock()
			c.lostSince = true
			c.mu.Unlock()
			continue
		case errors.Is(err, syscall.EINVAL) && s.n == 0 && len(s.buf) < kmsgMaxBufSize:
			// A record bigger than the buffer: /dev/kmsg keeps it until the read can take it.
			s.buf = make([]byte, 2*len(s.buf))
			continue
		case errors.Is(err, os.ErrClosed):
			return
		case errors.Is(err, io.EOF), errors.Is(err, syscall.EAGAIN):
			if idle == nil {
				idle = time.NewTimer(kmsgIdleWait)
			} else {
				idle.Reset(kmsgIdleWait)
			}
			select {
			case <-stop:
				idle.Stop()
				return
			case <-idle.C:
			}
			continue
		}
		select {
		case <-stop: // closed under us; whatever the read said, it was not a failure of the log
		default:
			c.mu.Lock()
			c.err = fmt.Errorf("reading kernel log: %w", err)
			c.mu.Unlock()
		}
		return
	}
}

// handle counts one record line and matches its message against the patterns. matched and
// unescaped are the reader's scratch space, returned for reuse.
func (c *kernelLogCollector) handle(line []byte, now time.Time, matched []int, unescaped []byte) ([]int, []byte) {
	if len(line) > 0 && line[0] == ' ' {
		return matched, unescaped // a continuation line (" SUBSYSTEM=..."), part of the previous record
	}
	rec := parseKmsgRecord(line)
	msg := rec.msg
	if bytes.IndexByte(msg, '\\') >= 0 {
		unescaped = unescapeKmsg(unescaped[:0], msg)
		msg = unescaped
	}
	// Match outside the lock: a regular expression is the slow part, and Update need not wait for it.
	for i, p := range c.patterns {
		if p.re.Match(msg) {
			matched = append(matched, i)
		}
	}
	var stored string
	if len(matched) > 0 {
		cut := min(len(msg), kmsgMaxStoredMessage)
		for cut < len(msg) && cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut-- // not inside a character
		}
		stored = string(msg[:cut])
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records++
	if c.lostSince {
		lost := uint64(1)
		if rec.ok && c.haveSeq && rec.seq > c.lastSeq+1 {
			lost = rec.seq - c.lastSeq - 1
		}
		c.lost += lost
		c.lostSince = false
	}
	if rec.ok {
		c.lastSeq, c.haveSeq = rec.seq, true
	}
	ts := float64(now.UnixNano()) / 1e9
	for _, i := range matched {
		c.matches[i]++
		c.lastAt[i] = ts
		c.last[i] = KernelLogMatch{Pattern: c.patterns[i].name, Message: stored, Time: now, Priority: rec.prio, Seq: rec.seq}
	}
	return matched, unescaped
}

func (c *kernelLogCollector) Update(_ context.Context, m *Metrics) error {
	err := c.open()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.opened {
		return err // counters of a log never read would claim that nothing happened
	}
	for i, p := range c.patterns {
		m.Counter(c.matchesDesc, float64(c.matches[i]), p.name)
		m.Gauge(c.lastMatchDesc, c.lastAt[i], p.name)
	}
	m.Counter(c.recordsDesc, float64(c.records))
	m.Counter(c.lostDesc, float64(c.lost))
	return err
}

// LastMatches returns, in pattern order, the last record that matched each pattern that has
// matched since the agent started.
func (c *kernelLogCollector) LastMatches() []KernelLogMatch {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []KernelLogMatch
	for i, n := range c.matches {
		if n > 0 {
			out = append(out, c.last[i])
		}
	}
	return out
}

// kmsgSplitter cuts what the reads return into lines. /dev/kmsg returns one whole record per read,
// but a FIFO or a file returns arbitrary chunks, so the split does not rely on it.
type kmsgSplitter struct {
	buf     []byte
	n       int  // bytes of an incomplete line held at the start of buf
	discard bool // the current line overflowed buf: drop the rest of it, up to its newline
}

// space is where the next read goes.
func (s *kmsgSplitter) space() []byte { return s.buf[s.n:] }

// advance takes n bytes just read into space() and calls line for each complete line, without its
// newline, valid only during the call. A line longer than the buffer is passed cut to the
// buffer's size.
func (s *kmsgSplitter) advance(n int, line func([]byte)) {
	s.n += n
	data := s.buf[:s.n]
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		l := data[:i]
		data = data[i+1:]
		if s.discard {
			s.discard = false
			continue
		}
		line(l)
	}
	if len(data) == len(s.buf) {
		if !s.discard {
			line(data)
		}
		s.discard = true
		data = data[:0]
	}
	s.n = copy(s.buf, data)
}

// kmsgRecord is one /dev/kmsg record: "prio,seq,usec,flags[,more];message".
type kmsgRecord struct {
	prio int // facility*8+level, -1 if unreadable
	seq  uint64
	usec uint64 // CLOCK_MONOTONIC microseconds when logged
	ok   bool   // whether prio, seq and usec were read
	msg  []byte // still escaped as the kernel writes it
}

// parseKmsgRecord reads a record's header line. A line that is not a record (no ';', odd fields)
// still yields its text as the message, so that nothing the kernel says escapes the patterns.
func parseKmsgRecord(line []byte) kmsgRecord {
	r := kmsgRecord{prio: -1}
	semi := bytes.IndexByte(line, ';')
	if semi < 0 {
		r.msg = line
		return r
	}
	r.msg = line[semi+1:]
	h := line[:semi]
	var f [3][]byte
	for i := range f {
		j := bytes.IndexByte(h, ',')
		if j < 0 {
			if i < 2 {
				return r
			}
			j = len(h) // no flags field
		}
		f[i] = h[:j]
		h = h[min(j+1, len(h)):]
	}
	prio, ok1 := parseDecimal(f[0])
	seq, ok2 := parseDecimal(f[1])
	usec, ok3 := parseDecimal(f[2])
	if !ok1 || !ok2 || !ok3 || prio > 1<<10 {
		return r
	}
	r.prio, r.seq, r.usec, r.ok = int(prio), seq, usec, true
	return r
}

// unescapeKmsg undoes the kernel's escaping of message bytes (non-printable, non-ASCII and '\'
// itself become \xNN), appending to dst, so that patterns see the text that was logged.
func unescapeKmsg(dst, msg []byte) []byte {
	for i := 0; i < len(msg); i++ {
		if msg[i] == '\\' && i+3 < len(msg) && msg[i+1] == 'x' {
			hi, ok1 := unhex(msg[i+2])
			lo, ok2 := unhex(msg[i+3])
			if ok1 && ok2 {
				dst = append(dst, hi<<4|lo)
				i += 3
				continue
			}
		}
		dst = append(dst, msg[i])
	}
	return dst
}

func unhex(b byte) (byte, bool) {
	switch {
	case b >= '0' && b <= '9':
		return b - '0', true
	case b >= 'a' && b <= 'f':
		return b - 'a' + 10, true
	case b >= 'A' && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}
