package collector

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"unsafe"
)

// The processes and process_groups collectors walk every process on every scrape, so the walk is
// written against raw syscalls with buffers reused across scrapes rather than through procfs:
// procfs.Proc.Stat parses with fmt.Fscan and allocates per process, and os.Open, os.Readlink and
// ReadDir allocate per call, which at 10,000 processes is most of a scrape's cost. Paths are built
// NUL-terminated in a reused buffer and passed to openat/readlinkat relative to an open /proc, which
// also spares the kernel a lookup of /proc itself per file.

const (
	// procUserHZ is USER_HZ, the unit of the tick counts in /proc/PID/stat. It is 100 on every
	// architecture Linux and Go share; procfs hard-codes the same value (unexported) for the same
	// reason: reading it needs sysconf(3), i.e. cgo.
	procUserHZ = 100

	procSuperMagic = 0x9fa0 // PROC_SUPER_MAGIC, from statfs(2)

	// O_PATH is 0x200000 on every architecture Go supports on Linux (only alpha, parisc and sparc
	// differ); the syscall package does not define it on all of them.
	procOPath = 0x200000

	procPIDCheckEvery = 256 // how many processes are read between two looks at the context
)

// procStat is what the collectors use of /proc/PID/stat. comm points into the buffer it was parsed
// from.
type procStat struct {
	comm      []byte
	state     byte
	utime     uint64 // ticks
	stime     uint64 // ticks
	threads   uint64
	starttime uint64 // ticks after boot
	rss       uint64 // pages
}

var errProcStat = errors.New("malformed /proc/PID/stat")

// parseProcStat parses one /proc/PID/stat line. comm is between the first '(' and the last ')',
// because a process may name itself anything, parentheses and spaces included; every field after
// it is a number, so the last ')' is always comm's.
func parseProcStat(data []byte, s *procStat) error {
	l, r := -1, -1
	for i, b := range data {
		if b == '(' {
			l = i
			break
		}
	}
	for i := len(data) - 1; i > l; i-- {
		if data[i] == ')' {
			r = i
			break
		}
	}
	if l < 0 || r < 0 {
		return fmt.Errorf("%w: no (comm)", errProcStat)
	}
	s.comm = data[l+1 : r]
	rest := data[r+1:]
	// Fields after comm, numbered from 0 (state is field 3 of proc(5)): 0 state, 11 utime, 12 stime,
	// 17 num_threads, 19 starttime, 21 rss.
	field := 0
	for field <= 21 {
		if len(rest) == 0 || rest[0] != ' ' {
			return fmt.Errorf("%w: %d fields after comm, want at least 22", errProcStat, field)
		}
		rest = rest[1:]
		end := 0
		for end < len(rest) && rest[end] != ' ' && rest[end] != '\n' {
			end++
		}
		if end == 0 {
			return fmt.Errorf("%w: empty field %d", errProcStat, field+3)
		}
		v := rest[:end]
		rest = rest[end:]
		switch field {
		case 0:
			if len(v) != 1 {
				return fmt.Errorf("%w: state %q", errProcStat, v)
			}
			s.state = v[0]
		case 11, 12, 17, 19, 21:
			n, ok := parseDecimal(v)
			if !ok {
				return fmt.Errorf("%w: field %d is %q", errProcStat, field+3, v)
			}
			switch field {
			case 11:
				s.utime = n
			case 12:
				s.stime = n
			case 17:
				s.threads = n
			case 19:
				s.starttime = n
			case 21:
				s.rss = n
			}
		}
		field++
	}
	return nil
}

// procVanished reports whether err means the process exited while it was being read, which on a
// busy host happens on most scrapes and is no error.
func procVanished(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH)
}

// procScanner walks /proc. It is not safe for concurrent use; each collector owns one, for its
// per-process reads and its walks outside a scrape, and each procShare one for its walks.
type procScanner struct {
	root string

	// Valid between open and close (all through scan), for the per-process reads.
	dirfd    int
	isProcfs bool // the fast paths below rely on procfs's behaviour, absent from fixture trees

	dents  []byte // getdents buffer of the /proc walk
	fdDent []byte // getdents buffer for counting a process's fds, used inside the walk
	path   []byte // "PID/file\0"
	stat   []byte
	exe    []byte
	cmd    []byte

	bad      int   // processes whose stat could not be read or parsed in the last scan
	firstBad error // the first of those errors
}

func newProcScanner(root string) *procScanner {
	return &procScanner{
		root:   root,
		dirfd:  -1,
		dents:  make([]byte, 32<<10),
		fdDent: make([]byte, 8<<10),
		path:   make([]byte, 0, 64),
		stat:   make([]byte, 0, 1024),
	}
}

// scan calls fn for every process whose stat it can read, with its PID (decimal, as in /proc) and
// stat. Arguments are valid only during the call. It returns an error only when the walk could not
// complete (/proc unreadable, ctx done); processes whose stat is unreadable are counted in s.bad
// instead. fn may call s.uid, s.exePath, s.cmdline and s.fdCount.
func (s *procScanner) scan(ctx context.Context, fn func(pid []byte, st *procStat)) error {
	s.bad, s.firstBad = 0, nil
	if err := s.open(); err != nil {
		return err
	}
	defer s.close()
	fd := s.dirfd

	var st procStat
	seen := 0
	for {
		n, err := syscall.Getdents(fd, s.dents)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("listing %s: %w", s.root, err)
		}
		if n <= 0 {
			return nil
		}
		for off := 0; off < n; {
			name, next, ok := procDirent(s.dents[:n], off)
			if !ok {
				return fmt.Errorf("listing %s: malformed directory entry", s.root)
			}
			off = next
			if !procIsPID(name) {
				continue
			}
			if seen++; seen%procPIDCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := s.readStat(name); err != nil {
				if !procVanished(err) {
					s.noteBad(name, err)
				}
				continue
			}
			if err := parseProcStat(s.stat, &st); err != nil {
				s.noteBad(name, err)
				continue
			}
			fn(name, &st)
		}
	}
}

// open opens the root for the per-process reads (readStat, uid, exePath, cmdline, fdCount), which
// are valid until close.
func (s *procScanner) open() error {
	fd, err := syscall.Open(s.root, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", s.root, err)
	}
	var sfs syscall.Statfs_t
	s.isProcfs = syscall.Fstatfs(fd, &sfs) == nil && sfs.Type == procSuperMagic
	s.dirfd = fd
	return nil
}

func (s *procScanner) close() {
	if s.dirfd >= 0 {
		syscall.Close(s.dirfd)
		s.dirfd = -1
	}
}

func (s *procScanner) noteBad(pid []byte, err error) {
	if s.bad == 0 {
		s.firstBad = fmt.Errorf("process %s: %w", pid, err)
	}
	s.bad++
}

// badErr summarises the processes the last scan could not read, or is nil.
func (s *procScanner) badErr() error {
	return procBadErr(s.bad, s.firstBad)
}

func procBadErr(bad int, first error) error {
	if bad == 0 {
		return nil
	}
	if bad == 1 {
		return first
	}
	return fmt.Errorf("%d processes unreadable, first: %w", bad, first)
}

func procIsPID(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// pidPath sets s.path to "PID/file\0".
func (s *procScanner) pidPath(pid []byte, file string) []byte {
	p := append(s.path[:0], pid...)
	p = append(p, '/')
	p = append(p, file...)
	p = append(p, 0)
	s.path = p
	return p
}

// readStat reads PID/stat into s.stat.
func (s *procScanner) readStat(pid []byte) error {
	fd, err := procOpenat(s.dirfd, s.pidPath(pid, "stat"), syscall.O_RDONLY|syscall.O_CLOEXEC)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	s.stat, err = procReadAll(fd, s.stat, s.isProcfs)
	if err != nil {
		return err
	}
	if len(s.stat) == 0 {
		return syscall.ESRCH // a process reaped between open and read reads as empty
	}
	return nil
}

// uid is the effective uid of PID, as the owner of /proc/PID. Only the directory says it for every
// process: the files in it belong to root when the process is not dumpable, which is the case of
// most daemons that drop privileges (mariadbd, mosquitto, ...), so fstat(2) of the open stat file
// would do but be wrong. syscall.Stat copies the path once more; the portable alternatives without
// that copy (O_PATH open, fstat, close) cost two syscalls more.
func (s *procScanner) uid(pid []byte) (uint32, error) {
	p := append(s.path[:0], s.root...)
	p = append(p, '/')
	p = append(p, pid...)
	s.path = p
	var st syscall.Stat_t
	if err := syscall.Stat(unsafe.String(&p[0], len(p)), &st); err != nil {
		return 0, err
	}
	return st.Uid, nil
}

// procReadAll reads fd to its end into buf's storage. With shortIsEOF, a read that returns less
// than asked ends the file: procfs's stat and cmdline produce all they have in one read when the
// buffer holds it, so the read that would return 0 is one syscall per process that can be spared.
// (A cmdline that a process rewrote past its arguments is produced a page per read; it may then be
// cut at 4 KiB, which no group's pattern needs to see past.)
func procReadAll(fd int, buf []byte, shortIsEOF bool) ([]byte, error) {
	buf = buf[:0]
	if cap(buf) < 512 {
		buf = make([]byte, 0, 512)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return buf, err
		}
		if n <= 0 {
			return buf, nil
		}
		short := len(buf)+n < cap(buf)
		buf = buf[:len(buf)+n]
		if shortIsEOF && short {
			return buf, nil
		}
	}
}

// exePath returns the target of PID/exe, without the " (deleted)" the kernel appends once the file
// was replaced, because a daemon still running after its package was upgraded is still that daemon.
// Kernel threads have none (ENOENT); another user's process is unreadable without privileges (EACCES).
func (s *procScanner) exePath(pid []byte) ([]byte, error) {
	if cap(s.exe) < 4096 {
		s.exe = make([]byte, 4096) // PATH_MAX: readlink never returns more
	}
	buf := s.exe[:cap(s.exe)]
	n, err := procReadlinkat(s.dirfd, s.pidPath(pid, "exe"), buf)
	if err != nil {
		return nil, err
	}
	target := buf[:n]
	const deleted = " (deleted)"
	if len(target) > len(deleted) && string(target[len(target)-len(deleted):]) == deleted {
		target = target[:len(target)-len(deleted)]
	}
	return target, nil
}

// cmdline returns PID/cmdline with its NUL separators turned into spaces and trailing NULs dropped,
// as ps prints it. A kernel thread's is empty.
func (s *procScanner) cmdline(pid []byte) ([]byte, error) {
	fd, err := procOpenat(s.dirfd, s.pidPath(pid, "cmdline"), syscall.O_RDONLY|syscall.O_CLOEXEC)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	if cap(s.cmd) < 4096 {
		s.cmd = make([]byte, 0, 4096) // most command lines in one read
	}
	s.cmd, err = procReadAll(fd, s.cmd, s.isProcfs)
	if err != nil {
		return nil, err
	}
	c := s.cmd
	for len(c) > 0 && c[len(c)-1] == 0 {
		c = c[:len(c)-1]
	}
	for i, b := range c {
		if b == 0 {
			c[i] = ' '
		}
	}
	return c, nil
}

// fdCount counts PID's open file descriptors. Since Linux 6.2 procfs reports the count as the size
// of /proc/PID/fd, which stat(2) reads without listing the directory and without the ptrace
// permission listing needs; an O_PATH open is enough to fstat it. Older kernels (size 0) and
// fixture trees fall back to counting entries, which for another user's process needs privileges
// (EACCES).
func (s *procScanner) fdCount(pid []byte) (int, error) {
	path := s.pidPath(pid, "fd")
	if s.isProcfs {
		fd, err := procOpenat(s.dirfd, path, procOPath|syscall.O_DIRECTORY|syscall.O_CLOEXEC)
		if err != nil {
			return 0, err
		}
		var st syscall.Stat_t
		err = syscall.Fstat(fd, &st)
		syscall.Close(fd)
		if err != nil {
			return 0, err
		}
		if st.Size > 0 {
			return int(st.Size), nil
		}
	}
	fd, err := procOpenat(s.dirfd, path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC)
	if err != nil {
		return 0, err
	}
	defer syscall.Close(fd)
	count := 0
	for {
		n, err := syscall.Getdents(fd, s.fdDent)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n <= 0 {
			return count, nil
		}
		for off := 0; off < n; {
			name, next, ok := procDirent(s.fdDent[:n], off)
			if !ok {
				return 0, fmt.Errorf("malformed directory entry in %s/%s/fd", s.root, pid)
			}
			off = next
			if string(name) != "." && string(name) != ".." {
				count++
			}
		}
	}
}
