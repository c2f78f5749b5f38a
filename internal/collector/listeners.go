package collector

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/serversage/sage/internal/sockdiag"
)

func init() { register("listeners", true, newListeners) }

// listenerRescanEvery bounds how often the whole of /proc is searched again for the owner of a
// socket that the last search did not settle: a port held by the wrong process, or by none the
// agent can see (a kernel socket such as nfsd's, another user's process when not root). A new
// socket, or an owner that let go of its socket, is searched for at once.
const listenerRescanEvery = time.Minute

// listenersCollector reports whether the configured ports are listening, and by which process.
//
// Sockets come from sock_diag with the state filter done by the kernel (package sockdiag), which on
// a host with many connections costs a fraction of /proc/net/tcp. The owner of a socket is found
// through /proc/PID/fd links ("socket:[inode]"), which is the costly part, so it is looked up only
// for the sockets of configured listeners, remembered between scrapes, checked with one readlink
// while it holds, and searched for again only when that fails.
//
// Sockets are those of the agent's network namespace; the owner lookup reads Config.ProcPath, so the
// agent in a container needs the host's network and PID namespaces for both to mean the host.
type listenersCollector struct {
	procPath string
	specs    []listenerSpec
	byPort   map[uint32]int // listenerKey(proto, port) -> index in specs

	summary, up, info *Desc

	mu    sync.Mutex
	diag  *sockdiag.Reader
	query func(ctx context.Context, dst []sockdiag.Socket, family, proto uint8, states uint32) ([]sockdiag.Socket, error)
	now   func() time.Time

	socks   []sockdiag.Socket
	ports   [2][65536 / 64]uint64     // bitsets of listening ports, tcp and udp
	want    map[uint32]int            // inode -> spec, for this scrape's sockets of configured listeners
	owners  map[uint32]*listenerOwner // inode -> owner, kept between scrapes
	pending map[uint32]int            // inodes a /proc search is looking for
	seen    []listenerSeen            // owners already emitted for the current spec
	scan    listenerScanner
	netBuf  []byte

	searches int // /proc searches so far, for tests of the cache
}

type listenerSpec struct {
	port      uint16
	proto     uint8 // unix.IPPROTO_TCP or IPPROTO_UDP
	protoName string
	portLabel string
	process   string // required owner comm, or ""
}

// listenerOwner is a process found holding a socket.
type listenerOwner struct {
	pid, fd  int // pid 0: no holder known
	comm     string
	pidLabel string
	settled  bool      // the holder satisfies the listener (any holder, or one named Process)
	searched time.Time // when a /proc search last ended without settling it; zero: not since it changed
}

type listenerSeen struct {
	pid  int
	comm string
}

func listenerKey(proto uint8, port uint16) uint32 { return uint32(proto)<<16 | uint32(port) }

func newListeners(cfg *Config, _ *slog.Logger) (Collector, error) {
	c := &listenersCollector{
		procPath: cfg.ProcPath,
		byPort:   map[uint32]int{},
		summary: newDesc(namespace+"_listeners",
			"Number of distinct ports with a listening TCP socket, or a bound unconnected UDP socket, on any address.",
			[]string{"proto"}),
		up: newDesc(namespace+"_listener_up",
			"Whether a configured listener is listening (1) or not (0): a socket on the port, on any IPv4 or IPv6 address, held by the configured process when one is set.",
			[]string{"port", "proto"}),
		info: newDesc(namespace+"_listener_process_info",
			"A process found holding a configured listener's socket; absent when none can be seen (a kernel socket, or another user's process when the agent is not root).",
			[]string{"port", "proto", "process", "pid"}),
		diag:    sockdiag.NewReader(),
		now:     time.Now,
		want:    map[uint32]int{},
		owners:  map[uint32]*listenerOwner{},
		pending: map[uint32]int{},
		scan:    listenerScanner{procfd: -1},
	}
	c.query = c.diag.Query
	for i, l := range cfg.Listeners {
		s := listenerSpec{protoName: l.Proto, process: l.Process}
		switch l.Proto {
		case "", "tcp":
			s.proto, s.protoName = unix.IPPROTO_TCP, "tcp"
		case "udp":
			s.proto = unix.IPPROTO_UDP
		default:
			return nil, fmt.Errorf("listeners[%d]: proto %q: must be tcp or udp", i, l.Proto)
		}
		if l.Port < 1 || l.Port > 65535 {
			return nil, fmt.Errorf("listeners[%d]: port %d is out of range 1-65535", i, l.Port)
		}
		if len(l.Process) > 15 {
			// The kernel keeps 15 bytes of a process name, so a longer one could never match.
			return nil, fmt.Errorf("listeners[%d]: process %q is longer than the kernel's 15-character comm", i, l.Process)
		}
		s.port, s.portLabel = uint16(l.Port), strconv.Itoa(l.Port)
		k := listenerKey(s.proto, s.port)
		if j, dup := c.byPort[k]; dup {
			return nil, fmt.Errorf("listeners[%d]: duplicate listener %d/%s (also listeners[%d])", i, l.Port, s.protoName, j)
		}
		c.byPort[k] = len(c.specs)
		c.specs = append(c.specs, s)
	}
	return c, nil
}

// Close releases the netlink socket and the /proc descriptor kept between scrapes.
func (c *listenersCollector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scan.close()
	return c.diag.Close()
}

func (c *listenersCollector) Update(ctx context.Context, m *Metrics) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	socks, err := c.listSockets(ctx, c.socks[:0])
	c.socks = socks
	if err != nil {
		return err
	}

	clear(c.want)
	for i := range c.ports {
		clear(c.ports[i][:])
	}
	for _, s := range socks {
		if s.Port == 0 {
			continue
		}
		p := 0
		if s.Proto == unix.IPPROTO_UDP {
			p = 1
		}
		c.ports[p][s.Port/64] |= 1 << (s.Port % 64)
		if i, ok := c.byPort[listenerKey(s.Proto, s.Port)]; ok && s.Inode != 0 {
			c.want[s.Inode] = i
		}
	}
	for p, name := range [2]string{"tcp", "udp"} {
		n := 0
		for _, w := range c.ports[p] {
			n += bits.OnesCount64(w)
		}
		m.Gauge(c.summary, float64(n), name)
	}
	if len(c.specs) == 0 {
		return nil
	}

	ownerErr := c.resolveOwners(ctx)
	for i := range c.specs {
		s := &c.specs[i]
		found, owned := false, false
		c.seen = c.seen[:0]
		for _, sk := range socks {
			if sk.Proto != s.proto || sk.Port != s.port {
				continue
			}
			found = true
			o := c.owners[sk.Inode]
			if o == nil || o.pid == 0 {
				continue
			}
			if s.process != "" && o.comm == s.process {
				owned = true
			}
			dup := false
			for _, x := range c.seen {
				if x.pid == o.pid && x.comm == o.comm {
					dup = true
					break
				}
			}
			if !dup {
				c.seen = append(c.seen, listenerSeen{o.pid, o.comm})
				m.Gauge(c.info, 1, s.portLabel, s.protoName, o.comm, o.pidLabel)
			}
		}
		up := 0.0
		if found && (s.process == "" || owned) {
			up = 1
		}
		m.Gauge(c.up, up, s.portLabel, s.protoName)
	}
	return ownerErr
}

// listSockets asks sock_diag for the listening sockets of each protocol and family, and reads the
// /proc/net file instead for any of them that sock_diag cannot answer on this host (no sock_diag in
// a sandbox, no udp_diag module, a seccomp policy).
func (c *listenersCollector) listSockets(ctx context.Context, dst []sockdiag.Socket) ([]sockdiag.Socket, error) {
	for _, q := range [...]struct {
		family, proto uint8
		state         uint8
		file          string
	}{
		{unix.AF_INET, unix.IPPROTO_TCP, sockdiag.StateListen, "tcp"},
		{unix.AF_INET6, unix.IPPROTO_TCP, sockdiag.StateListen, "tcp6"},
		{unix.AF_INET, unix.IPPROTO_UDP, sockdiag.StateClose, "udp"},
		{unix.AF_INET6, unix.IPPROTO_UDP, sockdiag.StateClose, "udp6"},
	} {
		var err error
		n := len(dst)
		dst, err = c.query(ctx, dst, q.family, q.proto, 1<<q.state)
		if err == nil {
			continue
		}
		if !errors.Is(err, errors.ErrUnsupported) {
			return dst[:n], fmt.Errorf("listing %s sockets: %w", q.file, err)
		}
		path := filepath.Join(c.procPath, "net", q.file)
		data, rerr := readInto(path, c.netBuf)
		c.netBuf = data
		if rerr != nil {
			if q.family == unix.AF_INET6 && errors.Is(rerr, os.ErrNotExist) {
				continue // a kernel without IPv6
			}
			return dst[:n], fmt.Errorf("listing %s sockets: %w; falling back to %s: %w", q.file, err, path, rerr)
		}
		if dst, rerr = parseProcNet(data, q.family, q.proto, q.state, dst[:n]); rerr != nil {
			return dst[:n], fmt.Errorf("listing %s sockets: %w; falling back to %s: %w", q.file, err, path, rerr)
		}
	}
	return dst, nil
}

// parseProcNet appends the sockets of a /proc/net/{tcp,udp}{,6} file in the given state. It parses
// the file itself rather than through procfs because only sock_diag's fallback needs it and procfs
// would cost more than the rest of the scrape: it allocates a struct and strings per line, and
// indexes a UDP line's 13th field without checking it is there.
func parseProcNet(data []byte, family, proto, state uint8, dst []sockdiag.Socket) ([]sockdiag.Socket, error) {
	addrLen := 8
	if family == unix.AF_INET6 {
		addrLen = 32
	}
	first := true
	for len(data) > 0 {
		var line []byte
		line, data = nextLine(data)
		if first { // the header
			first = false
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		var f [10][]byte
		n := 0
		for rest := line; n < len(f); n++ {
			rest = bytes.TrimLeft(rest, " \t")
			if len(rest) == 0 {
				break
			}
			end := bytes.IndexAny(rest, " \t")
			if end < 0 {
				end = len(rest)
			}
			f[n], rest = rest[:end], rest[end:]
		}
		if n < len(f) {
			return dst, fmt.Errorf("malformed line %q", line)
		}
		st, err := strconv.ParseUint(string(f[3]), 16, 8)
		if err != nil {
			return dst, fmt.Errorf("malformed state in line %q", line)
		}
		if uint8(st) != state {
			continue
		}
		local := f[1]
		if len(local) != addrLen+5 || local[addrLen] != ':' {
			return dst, fmt.Errorf("malformed local address in line %q", line)
		}
		port, err := strconv.ParseUint(string(local[addrLen+1:]), 16, 16)
		if err != nil {
			return dst, fmt.Errorf("malformed port in line %q", line)
		}
		// The kernel prints the address as 32-bit words in host order.
		var a [16]byte
		for w := 0; w < addrLen/8; w++ {
			v, err := strconv.ParseUint(string(local[w*8:w*8+8]), 16, 32)
			if err != nil {
				return dst, fmt.Errorf("malformed local address in line %q", line)
			}
			binary.NativeEndian.PutUint32(a[w*4:], uint32(v))
		}
		uid, err := strconv.ParseUint(string(f[7]), 10, 32)
		if err != nil {
			return dst, fmt.Errorf("malformed uid in line %q", line)
		}
		inode, err := strconv.ParseUint(string(f[9]), 10, 32)
		if err != nil {
			return dst, fmt.Errorf("malformed inode in line %q", line)
		}
		s := sockdiag.Socket{Family: family, Proto: proto, State: state, Port: uint16(port), UID: uint32(uid), Inode: uint32(inode)}
		if family == unix.AF_INET {
			s.Addr = netip.AddrFrom4([4]byte(a[:4]))
		} else {
			s.Addr = netip.AddrFrom16(a)
		}
		dst = append(dst, s)
	}
	return dst, nil
}

// resolveOwners fills c.owners for the inodes in c.want: first by checking the owner remembered
// from the last scrape, then, for those it leaves unsettled, by one search of /proc that stops as
// soon as all are settled. A process the agent may not inspect is skipped: its sockets' owners stay
// unknown. The error is for a /proc that cannot be read at all, or ctx ending.
func (c *listenersCollector) resolveOwners(ctx context.Context) error {
	for inode := range c.owners {
		if _, ok := c.want[inode]; !ok {
			delete(c.owners, inode)
		}
	}
	if len(c.want) == 0 {
		return nil
	}
	if err := c.scan.open(c.procPath); err != nil {
		for _, o := range c.owners {
			o.pid, o.settled = 0, false
		}
		return fmt.Errorf("looking up listener owners: %w", err)
	}

	now := c.now()
	search := false
	clear(c.pending)
	for inode, i := range c.want {
		o := c.owners[inode]
		if o == nil {
			o = &listenerOwner{}
			c.owners[inode] = o
		}
		o.settled = false
		if o.pid != 0 {
			if comm, ok := c.scan.holds(o.pid, o.fd, inode); ok {
				if string(comm) != o.comm {
					o.comm = string(comm)
				}
				o.settled = c.specs[i].process == "" || o.comm == c.specs[i].process
			} else {
				*o = listenerOwner{} // let go of the socket, or exited: search at once
			}
		}
		if o.settled {
			continue
		}
		c.pending[inode] = i
		if o.searched.IsZero() || now.Sub(o.searched) >= listenerRescanEvery {
			search = true
		}
	}
	if !search {
		return nil
	}
	c.searches++
	err := c.scan.search(ctx, func(pid, fd int, inode uint64, comm func() ([]byte, bool)) bool {
		if inode > 0xffffffff {
			return false
		}
		i, ok := c.pending[uint32(inode)]
		if !ok {
			return false
		}
		name, ok := comm()
		if !ok {
			return false
		}
		o := c.owners[uint32(inode)]
		process := c.specs[i].process
		match := process == "" || string(name) == process
		if match || o.pid == 0 {
			// A holder that is not the process wanted is still worth showing (something else holds
			// the port), until one that is turns up.
			if o.pid != pid {
				o.pidLabel = strconv.Itoa(pid)
			}
			o.pid, o.fd = pid, fd
			if string(name) != o.comm {
				o.comm = string(name)
			}
		}
		if match {
			o.settled = true
			delete(c.pending, uint32(inode))
		}
		return len(c.pending) == 0
	})
	for inode := range c.pending {
		c.owners[inode].searched = now
	}
	if err != nil {
		return fmt.Errorf("looking up listener owners: %w", err)
	}
	return nil
}

// listenerScanner reads /proc/PID/fd links with raw syscalls on NUL-terminated paths in reused
// buffers, relative to an open /proc: the string-taking wrappers copy every path into a new
// allocation, and a search reads one link per open file on the host.
type listenerScanner struct {
	procfd int // kept open between scrapes; -1 when not open
	path   []byte
	link   []byte
	comm   []byte
	dents  []byte
	fdDent []byte
}

const listenerCheckEvery = 32 // processes searched between two looks at the context

// open opens /proc, or keeps it open from the last scrape.
func (s *listenerScanner) open(proc string) error {
	if s.procfd >= 0 {
		return nil
	}
	fd, err := unix.Open(proc, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", proc, err)
	}
	s.procfd = fd
	if s.link == nil {
		s.path = make([]byte, 0, 64)
		s.link = make([]byte, 64) // "socket:[4294967295]" and anything longer is not a socket
		s.comm = make([]byte, 64)
		s.dents = make([]byte, 16<<10)
		s.fdDent = make([]byte, 16<<10)
	}
	return nil
}

func (s *listenerScanner) close() {
	if s.procfd >= 0 {
		unix.Close(s.procfd)
	}
	s.procfd = -1
}

// setPath sets s.path to the NUL-terminated concatenation of parts.
func (s *listenerScanner) setPath(parts ...[]byte) []byte {
	p := s.path[:0]
	for _, x := range parts {
		p = append(p, x...)
	}
	s.path = append(p, 0)
	return s.path
}

// holds reports whether pid's descriptor fd is still the socket inode, and if so the process's comm.
func (s *listenerScanner) holds(pid, fd int, inode uint32) ([]byte, bool) {
	var pb, fb [20]byte
	pidB := strconv.AppendInt(pb[:0], int64(pid), 10)
	n, err := procReadlinkat(s.procfd, s.setPath(pidB, []byte("/fd/"), strconv.AppendInt(fb[:0], int64(fd), 10)), s.link)
	if err != nil {
		return nil, false
	}
	if got, ok := parseSocketLink(s.link[:n]); !ok || got != uint64(inode) {
		return nil, false
	}
	return s.readComm(pidB)
}

// readComm returns /proc/PID/comm without its newline.
func (s *listenerScanner) readComm(pid []byte) ([]byte, bool) {
	fd, err := procOpenat(s.procfd, s.setPath(pid, []byte("/comm")), unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, false
	}
	defer unix.Close(fd)
	n, err := unix.Read(fd, s.comm)
	if err != nil || n <= 0 {
		return nil, false
	}
	return bytes.TrimSuffix(s.comm[:n], []byte("\n")), true
}

// search calls fn for every socket descriptor of every process it may inspect, with a function
// returning the process's comm (read once per process, only if asked), until fn returns true.
func (s *listenerScanner) search(ctx context.Context, fn func(pid, fd int, inode uint64, comm func() ([]byte, bool)) bool) error {
	// The /proc descriptor is reused: list it from the start again.
	if _, err := unix.Seek(s.procfd, 0, 0); err != nil {
		return err
	}
	var pid int
	var pidName []byte
	var comm []byte
	commRead, commOK := false, false
	getComm := func() ([]byte, bool) {
		if !commRead {
			commRead = true
			var c []byte
			c, commOK = s.readComm(pidName)
			comm = append(comm[:0], c...) // s.comm is reused by holds; keep this process's copy
		}
		return comm, commOK
	}
	seen := 0
	for {
		n, err := unix.Getdents(s.procfd, s.dents)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			return nil
		}
		for off := 0; off < n; {
			name, next, ok := procDirent(s.dents[:n], off)
			if !ok {
				return errors.New("malformed directory entry in /proc")
			}
			off = next
			p, ok := listenerAtoi(name)
			if !ok {
				continue
			}
			if seen++; seen%listenerCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			pid, pidName, commRead = p, name, false
			fdDir, err := procOpenat(s.procfd, s.setPath(name, []byte("/fd")), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
			if err != nil {
				continue // exited, or not ours to inspect
			}
			done := s.searchFDs(fdDir, pid, fn, getComm)
			unix.Close(fdDir)
			if done {
				return nil
			}
		}
	}
}

func (s *listenerScanner) searchFDs(dir, pid int, fn func(pid, fd int, inode uint64, comm func() ([]byte, bool)) bool, comm func() ([]byte, bool)) bool {
	for {
		n, err := unix.Getdents(dir, s.fdDent)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return false
		}
		for off := 0; off < n; {
			name, next, ok := procDirent(s.fdDent[:n], off)
			if !ok {
				return false
			}
			off = next
			fd, ok := listenerAtoi(name)
			if !ok {
				continue
			}
			l, err := procReadlinkat(dir, s.setPath(name), s.link)
			if err != nil {
				continue
			}
			inode, ok := parseSocketLink(s.link[:l])
			if !ok {
				continue
			}
			if fn(pid, fd, inode, comm) {
				return true
			}
		}
	}
}

// parseSocketLink reads the inode of a "socket:[12345]" link target.
func parseSocketLink(link []byte) (uint64, bool) {
	const prefix = "socket:["
	if len(link) < len(prefix)+2 || string(link[:len(prefix)]) != prefix || link[len(link)-1] != ']' {
		return 0, false
	}
	digits := link[len(prefix) : len(link)-1]
	if len(digits) > 19 { // fits a uint64 without overflow checks
		return 0, false
	}
	var v uint64
	for _, b := range digits {
		if b < '0' || b > '9' {
			return 0, false
		}
		v = v*10 + uint64(b-'0')
	}
	return v, true
}

// listenerAtoi parses a PID or descriptor number, as /proc names them.
func listenerAtoi(name []byte) (int, bool) {
	if len(name) > 9 {
		return 0, false
	}
	v, ok := parseDecimal(name)
	return int(v), ok
}
