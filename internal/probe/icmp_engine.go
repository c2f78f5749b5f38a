package probe

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// The ICMP engine. Thousands of targets probed every second cannot each open a socket: one
// socket per family and socket options (source address, TTL, don't-fragment) and mode
// (unprivileged "ping" socket or raw) is opened on first use and kept, one goroutine reads it,
// and replies are handed to the waiting probe by (peer address, sequence number), checked
// against an 8-byte random token at the start of the payload.
//
// With an unprivileged socket the kernel replaces the echo identifier by the socket's "port"
// and delivers only the replies to that socket, so the identifier says nothing and is ignored.
// A raw socket sees every echo reply reaching the host: the identifier (random per engine) and
// the token sort ours from other pingers'.

// icmpMode chooses the kind of socket.
type icmpMode int

const (
	// icmpAuto uses an unprivileged ping socket (socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP),
	// allowed for the groups in net.ipv4.ping_group_range), and a raw socket when the system
	// refuses it. Ping sockets are preferred, as blackbox_exporter does, because the kernel
	// demultiplexes their replies: a raw socket is woken for every echo reply on the host.
	icmpAuto icmpMode = iota
	icmpUnprivileged
	icmpRaw
)

// icmpRcvBuf is the receive buffer asked for each socket: a scheduler that starts thousands of
// probes together gets their replies in a burst, and the default (about 200 kB, a few hundred
// packets) would drop some of them and report them as lost.
const icmpRcvBuf = 4 << 20

type icmpEngineKey struct {
	v6  bool
	raw bool
	src netip.Addr // invalid: any
	ttl int        // 0: the system's default
	df  bool
}

// icmpPool holds the engines of one network namespace. The probers use defaultICMPPool; tests
// make their own, opening sockets in a namespace they created.
type icmpPool struct {
	mode  icmpMode
	netns string // path of the network namespace the sockets are opened in; "" the process's own

	mu       sync.Mutex
	engines  map[icmpEngineKey]*icmpEngine
	noUnpriv [2]bool // per family (v4, v6): ping sockets were refused, go raw without asking again
}

var defaultICMPPool = &icmpPool{}

// engine returns the engine for the socket options, opening its socket on first use.
func (p *icmpPool) engine(key icmpEngineKey) (*icmpEngine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.engines == nil {
		p.engines = map[icmpEngineKey]*icmpEngine{}
	}
	fam := 0
	if key.v6 {
		fam = 1
	}
	try := []bool{false, true} // unprivileged, then raw
	switch {
	case p.mode == icmpUnprivileged:
		try = []bool{false}
	case p.mode == icmpRaw || p.noUnpriv[fam]:
		try = []bool{true}
	}
	var errs []error
	for _, raw := range try {
		key.raw = raw
		if e, ok := p.engines[key]; ok {
			return e, nil
		}
		e, err := p.open(key)
		if err == nil {
			p.engines[key] = e
			return e, nil
		}
		errs = append(errs, err)
		if !raw && p.mode == icmpAuto && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EPROTONOSUPPORT)) {
			p.noUnpriv[fam] = true
		}
	}
	return nil, errors.Join(errs...)
}

// close closes every engine's socket and waits for its reader (tests).
func (p *icmpPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, e := range p.engines {
		e.close()
		delete(p.engines, k)
	}
}

func (p *icmpPool) open(key icmpEngineKey) (*icmpEngine, error) {
	var f *os.File
	var err error
	if p.netns == "" {
		f, err = openICMPSocket(key)
	} else {
		err = inNetns(p.netns, func() error {
			f, err = openICMPSocket(key)
			return err
		})
	}
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("icmp socket: %w", err)
	}
	e := &icmpEngine{
		key:      key,
		f:        f,
		rc:       rc,
		id:       uint16(rand.Uint32()),
		pending:  map[icmpPendingKey]*icmpPending{},
		done:     make(chan struct{}),
		stop:     make(chan struct{}),
		sendDone: make(chan struct{}),
		sendWake: make(chan struct{}, 1),
	}
	e.seq.Store(rand.Uint32())
	go e.read()
	go e.sendLoop()
	return e, nil
}

// openICMPSocket opens a non-blocking ICMP socket with the key's options; os.NewFile puts it in
// the runtime's poller, so the reader's wait costs no thread.
func openICMPSocket(key icmpEngineKey) (*os.File, error) {
	domain, proto, kind := unix.AF_INET, unix.IPPROTO_ICMP, "udp4"
	if key.v6 {
		domain, proto, kind = unix.AF_INET6, unix.IPPROTO_ICMPV6, "udp6"
	}
	typ := unix.SOCK_DGRAM
	if key.raw {
		typ, kind = unix.SOCK_RAW, "raw"+kind[3:]
	}
	fd, err := unix.Socket(domain, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("opening %s icmp socket: %w", kind, err)
	}
	fail := func(what string, err error) (*os.File, error) {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("%s icmp socket: %s: %w", kind, what, err)
	}
	// Best effort: without kernel timestamps the RTT is taken when the reader wakes, and
	// without the larger buffer a burst may overflow; neither stops the probe.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, icmpRcvBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, icmpRcvBuf)
	}
	if !key.v6 {
		if !key.raw { // a raw socket reads the IP header, which has the TTL
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVTTL, 1)
		}
		if key.ttl > 0 {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, key.ttl); err != nil {
				return fail("setting the TTL", err)
			}
		}
		if key.df {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
				return fail("setting don't-fragment", err)
			}
		}
		if key.raw {
			// Let only echo replies through (a set bit blocks a type): the kernel otherwise
			// queues every ICMP packet the host receives, our own requests to local addresses too.
			if err := unix.SetsockoptInt(fd, unix.SOL_RAW, unix.ICMP_FILTER, ^(1 << int(ipv4.ICMPTypeEchoReply))); err != nil {
				return fail("setting the type filter", err)
			}
		}
		sa := &unix.SockaddrInet4{}
		if key.src.IsValid() {
			sa.Addr = key.src.As4()
		}
		if err := unix.Bind(fd, sa); err != nil {
			return fail("binding to "+key.src.String(), err)
		}
	} else {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1)
		if key.ttl > 0 {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, key.ttl); err != nil {
				return fail("setting the hop limit", err)
			}
		}
		if key.df {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, 1); err != nil {
				return fail("setting don't-fragment", err)
			}
		}
		if key.raw {
			var filter unix.ICMPv6Filter
			for i := range filter.Data {
				filter.Data[i] = ^uint32(0)
			}
			t := int(ipv6.ICMPTypeEchoReply)
			filter.Data[t>>5] &^= 1 << (t & 31)
			if err := unix.SetsockoptICMPv6Filter(fd, unix.SOL_ICMPV6, unix.ICMPV6_FILTER, &filter); err != nil {
				return fail("setting the type filter", err)
			}
		}
		sa := &unix.SockaddrInet6{}
		if key.src.IsValid() {
			sa.Addr = key.src.As16()
		}
		if err := unix.Bind(fd, sa); err != nil {
			return fail("binding to "+key.src.String(), err)
		}
	}
	return os.NewFile(uintptr(fd), kind+" icmp"), nil
}

// inNetns runs fn on an OS thread switched into the network namespace at path. A socket opened
// there stays in that namespace when the thread switches back.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is left locked if it cannot be switched back, so that the runtime ends it
		// with this goroutine instead of running other goroutines in the wrong namespace.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("network namespace: %w", err)
			return
		}
		defer orig.Close()
		ns, err := os.Open(path)
		if err != nil {
			errc <- fmt.Errorf("network namespace: %w", err)
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering network namespace %s: %w", path, err)
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

type icmpPendingKey struct {
	peer netip.Addr
	seq  uint16
}

// icmpPending is one echo request awaiting its reply.
type icmpPending struct {
	token  uint64 // first 8 bytes of the payload; only checked when the payload has room for it
	tokens bool
	sent   time.Time
	idx    int
	round  *icmpRoundState
}

// icmpEngine is one socket, its reader and the requests waiting for replies.
type icmpEngine struct {
	key  icmpEngineKey
	f    *os.File
	rc   syscall.RawConn
	id   uint16 // raw sockets' echo identifier
	seq  atomic.Uint32
	done chan struct{}

	// drops is the socket's count of packets dropped for want of buffer (SO_RXQ_OVFL).
	drops atomic.Uint32

	mu      sync.Mutex
	pending map[icmpPendingKey]*icmpPending

	// The sender: one goroutine sends every round's requests after its first when they are
	// due, so that thousands of rounds in flight cost one timer and one goroutine waking, not
	// a timer and a wake-up of their own goroutine per request (on the agent's one thread,
	// those wake-ups queued behind each other for hundreds of milliseconds at 5,000 targets).
	sendMu   sync.Mutex
	sendQ    roundHeap
	sendWake chan struct{}
	stop     chan struct{}
	sendDone chan struct{}
}

func (e *icmpEngine) close() {
	_ = e.f.Close()
	<-e.done
	close(e.stop)
	<-e.sendDone
}

// icmpSendSlack is how early the sender sends a request rather than sleeping until it is due:
// requests due within it are sent in one wake-up. The RTT is timed from the actual send, so
// only the spacing of a round's requests moves, by less than this.
const icmpSendSlack = time.Millisecond

// schedule queues rs's next request for the sender, due at next.
func (e *icmpEngine) schedule(rs *icmpRoundState, next time.Time) {
	e.sendMu.Lock()
	rs.next = next
	heap.Push(&e.sendQ, rs)
	first := e.sendQ[0] == rs
	e.sendMu.Unlock()
	if first {
		select {
		case e.sendWake <- struct{}{}:
		default:
		}
	}
}

// sendLoop sends the requests that are due, in batches, until the engine is closed.
func (e *icmpEngine) sendLoop() {
	defer close(e.sendDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []*icmpRoundState
	type again struct {
		rs   *icmpRoundState
		next time.Time
	}
	var requeue []again
	for {
		now := time.Now()
		wait := time.Hour
		due = due[:0]
		e.sendMu.Lock()
		for len(e.sendQ) > 0 && e.sendQ[0].next.Sub(now) <= icmpSendSlack {
			due = append(due, heap.Pop(&e.sendQ).(*icmpRoundState))
		}
		if len(e.sendQ) > 0 {
			wait = e.sendQ[0].next.Sub(now)
		}
		e.sendMu.Unlock()
		if len(due) > 0 {
			requeue = requeue[:0]
			for i, rs := range due {
				if next, more := rs.sendOne(); more {
					requeue = append(requeue, again{rs, next})
				}
				due[i] = nil
			}
			if len(requeue) > 0 {
				e.sendMu.Lock()
				for _, a := range requeue {
					a.rs.next = a.next
					heap.Push(&e.sendQ, a.rs)
				}
				e.sendMu.Unlock()
			}
			continue // the sends took time: look again
		}
		timer.Reset(wait)
		select {
		case <-e.stop:
			return
		case <-e.sendWake:
		case <-timer.C:
		}
	}
}

// roundHeap orders the rounds waiting to send by when their next request is due; under sendMu.
type roundHeap []*icmpRoundState

func (h roundHeap) Len() int           { return len(h) }
func (h roundHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h roundHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *roundHeap) Push(x any)        { *h = append(*h, x.(*icmpRoundState)) }
func (h *roundHeap) Pop() any {
	old := *h
	rs := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return rs
}

// echoRequest is an echo request to peer with the payload, built once per round and sent
// again for each of its requests with the sequence number and token rewritten.
type echoRequest struct {
	peer netip.Addr
	sa   unix.Sockaddr
	b    []byte // the ICMP message: 8-byte header, then the payload
}

func (e *icmpEngine) newEchoRequest(peer netip.Addr, payload []byte) *echoRequest {
	r := &echoRequest{peer: peer, b: make([]byte, 8+len(payload))}
	if e.key.v6 {
		r.sa = &unix.SockaddrInet6{Addr: peer.As16()}
		r.b[0] = byte(ipv6.ICMPTypeEchoRequest)
	} else {
		r.sa = &unix.SockaddrInet4{Addr: peer.As4()}
		r.b[0] = byte(ipv4.ICMPTypeEcho)
	}
	binary.BigEndian.PutUint16(r.b[4:6], e.id)
	copy(r.b[8:], payload)
	return r
}

// send sends req as request idx of rs, with a fresh sequence number and (when the payload has
// room for it) token in its first 8 bytes, and registers it: the reply, if any, goes to rs.
func (e *icmpEngine) send(req *echoRequest, idx int, rs *icmpRoundState) (icmpPendingKey, error) {
	pe := &icmpPending{idx: idx, round: rs}
	if len(req.b) >= 16 {
		pe.token, pe.tokens = rand.Uint64(), true
		binary.BigEndian.PutUint64(req.b[8:16], pe.token)
	}
	var key icmpPendingKey
	e.mu.Lock()
	// Sequence numbers are shared by every probe of the engine; a wrapped number still waiting
	// for a reply from the same peer (a 65536-request backlog) is skipped rather than reused.
	for range 16 {
		key = icmpPendingKey{req.peer, uint16(e.seq.Add(1))}
		if _, busy := e.pending[key]; !busy {
			break
		}
	}
	e.pending[key] = pe
	e.mu.Unlock()

	b := req.b
	binary.BigEndian.PutUint16(b[6:8], key.seq)
	// The checksum: computed here for IPv4 (the kernel recomputes it on ping sockets anyway),
	// by the kernel for ICMPv6, which covers a pseudo-header with the source address.
	b[2], b[3] = 0, 0
	if !e.key.v6 {
		binary.BigEndian.PutUint16(b[2:4], icmpChecksum(b))
	}
	var serr error
	err := e.rc.Write(func(fd uintptr) bool {
		// Stamped here, after the wait for the socket's write lock that concurrent probes
		// share, so that the wait is not counted in the RTT.
		e.mu.Lock()
		pe.sent = time.Now()
		e.mu.Unlock()
		serr = unix.Sendto(int(fd), b, 0, req.sa)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		e.forget(key, pe)
		return key, fmt.Errorf("sending echo request to %s: %w", req.peer, err)
	}
	return key, nil
}

// icmpChecksum is the Internet checksum (RFC 1071) of b.
func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// forget drops a request that will not wait for its reply any longer.
func (e *icmpEngine) forget(key icmpPendingKey, pe *icmpPending) {
	e.mu.Lock()
	if e.pending[key] == pe {
		delete(e.pending, key)
	}
	e.mu.Unlock()
}

func (e *icmpEngine) pendingCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pending)
}

// The reader takes up to icmpReadBatch replies per system call (recvmmsg): at 5,000 targets the
// replies come tens of thousands a second, and the reader, one goroutine on what may be the
// process's one thread, must empty the socket faster than they come.
const (
	icmpReadBatch = 64
	// icmpReadSize is what is read of each reply: an IPv4 header (raw sockets), the ICMP header
	// and the token are all the engine looks at, so the rest of a large payload may be cut.
	icmpReadSize = 2048
	icmpOOBSize  = 256
)

// icmpReadBufs are the reader's buffers for one recvmmsg.
type icmpReadBufs struct {
	hdrs  [icmpReadBatch]unix.Mmsghdr
	iovs  [icmpReadBatch]unix.Iovec
	names [icmpReadBatch]unix.RawSockaddrAny
	bufs  [icmpReadBatch][icmpReadSize]byte
	oobs  [icmpReadBatch][icmpOOBSize]byte
}

// reset points the headers at the buffers and restores the lengths the kernel overwrote.
func (b *icmpReadBufs) reset(n int) {
	for i := range n {
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(icmpReadSize)
		h := &b.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Namelen = uint32(unsafe.Sizeof(b.names[i]))
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		h.Control = &b.oobs[i][0]
		h.SetControllen(icmpOOBSize)
		h.Flags = 0
		b.hdrs[i].Len = 0
	}
}

// read is the engine's one reader: it stays until the socket is closed.
func (e *icmpEngine) read() {
	defer close(e.done)
	b := new(icmpReadBufs)
	b.reset(icmpReadBatch)
	used := 0
	for {
		var n int
		var rerr error
		err := e.rc.Read(func(fd uintptr) bool {
			b.reset(used)
			r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), icmpReadBatch,
				unix.MSG_DONTWAIT, 0, 0)
			n, rerr = int(r), nil
			if errno != 0 {
				n, rerr = 0, errno
			}
			used = max(n, 1)
			return rerr != unix.EAGAIN
		})
		now := time.Now() // as early as possible, for when the kernel gives no timestamp
		if err != nil {
			return // closed
		}
		if rerr != nil {
			// EINTR, or an error queued by an ICMP error on a ping socket: nothing to deliver.
			continue
		}
		for i := range n {
			h := &b.hdrs[i]
			peer, ok := rawSockaddrAddr(&b.names[i])
			if !ok {
				continue
			}
			e.deliver(b.bufs[i][:min(int(h.Len), icmpReadSize)], b.oobs[i][:h.Hdr.Controllen], peer, now)
		}
	}
}

// rawSockaddrAddr is the address of an IPv4 or IPv6 socket address the kernel wrote.
func rawSockaddrAddr(sa *unix.RawSockaddrAny) (netip.Addr, bool) {
	switch sa.Addr.Family {
	case unix.AF_INET:
		return netip.AddrFrom4((*unix.RawSockaddrInet4)(unsafe.Pointer(sa)).Addr), true
	case unix.AF_INET6:
		return netip.AddrFrom16((*unix.RawSockaddrInet6)(unsafe.Pointer(sa)).Addr).Unmap(), true
	}
	return netip.Addr{}, false
}

func (e *icmpEngine) deliver(b, oob []byte, peer netip.Addr, now time.Time) {
	echo, ok := parseEchoReply(b, e.key.v6, e.key.raw && !e.key.v6)
	if !ok || (e.key.raw && echo.id != e.id) {
		return
	}
	rx, hop, drops := parseICMPControl(oob)
	if drops >= 0 {
		e.drops.Store(uint32(drops))
	}
	if echo.hopLimit >= 0 {
		hop = echo.hopLimit
	}
	key := icmpPendingKey{peer, echo.seq}
	e.mu.Lock()
	pe, ok := e.pending[key]
	if ok && pe.tokens && (len(echo.data) < 8 || binary.BigEndian.Uint64(echo.data) != pe.token) {
		ok = false // a late reply to an earlier use of the sequence number, or not ours
	}
	if ok {
		delete(e.pending, key)
	}
	e.mu.Unlock()
	if !ok {
		return
	}
	rtt := now.Sub(pe.sent) // monotonic clock
	// The kernel's receive timestamp is on the wall clock, like pe.sent's wall reading; it is
	// used unless a clock step makes it disagree with the monotonic measurement.
	if !rx.IsZero() {
		if k := rx.Sub(pe.sent.Round(0)); k > 0 && k <= rtt {
			rtt = k
		}
	}
	pe.round.reply(pe.idx, rtt, hop)
}

// icmpEcho is the part of an echo reply the engine looks at.
type icmpEcho struct {
	id, seq  uint16
	data     []byte
	hopLimit int // from the IPv4 header when there is one, else -1
}

// parseEchoReply reads an echo reply: ICMPv4 or ICMPv6, after an IPv4 header when ipHeader (a
// raw IPv4 socket reads the header). Anything else is not ok.
func parseEchoReply(b []byte, v6, ipHeader bool) (icmpEcho, bool) {
	e := icmpEcho{hopLimit: -1}
	if ipHeader {
		if len(b) < 20 || b[0]>>4 != 4 {
			return e, false
		}
		hl := int(b[0]&0x0f) * 4
		if hl < 20 || len(b) < hl || b[9] != unix.IPPROTO_ICMP {
			return e, false
		}
		e.hopLimit = int(b[8])
		b = b[hl:]
	}
	if len(b) < 8 {
		return e, false
	}
	want := byte(ipv4.ICMPTypeEchoReply)
	if v6 {
		want = byte(ipv6.ICMPTypeEchoReply)
	}
	if b[0] != want || b[1] != 0 {
		return e, false
	}
	e.id = binary.BigEndian.Uint16(b[4:6])
	e.seq = binary.BigEndian.Uint16(b[6:8])
	e.data = b[8:]
	return e, true
}

// parseICMPControl reads the control messages the sockets ask for: the kernel's receive
// timestamp (zero when absent), the reply's TTL or hop limit and the socket's count of dropped
// packets (-1 when absent).
func parseICMPControl(oob []byte) (rx time.Time, hopLimit int, drops int64) {
	hopLimit, drops = -1, -1
	for len(oob) >= unix.CmsgLen(0) {
		// One at a time rather than ParseSocketControlMessage's slice: this runs per reply.
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		oob = rest
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SO_TIMESTAMPNS && len(data) >= 16:
			sec := int64(binary.NativeEndian.Uint64(data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(data[8:16]))
			rx = time.Unix(sec, nsec)
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_TTL && len(data) >= 4:
			hopLimit = int(int32(binary.NativeEndian.Uint32(data)))
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_HOPLIMIT && len(data) >= 4:
			hopLimit = int(int32(binary.NativeEndian.Uint32(data)))
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && len(data) >= 4:
			drops = int64(binary.NativeEndian.Uint32(data))
		}
	}
	return rx, hopLimit, drops
}
