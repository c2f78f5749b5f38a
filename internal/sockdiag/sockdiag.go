// Package sockdiag lists a host's sockets through the kernel's NETLINK_SOCK_DIAG interface
// (inet_diag, as ss(8) does) rather than by parsing /proc/net/tcp and friends.
//
// The point is the state filter: the request names the socket states wanted and the kernel walks
// only those, so listing the listening sockets of a host with thousands of connections costs what
// its few listeners cost, whereas /proc/net/tcp formats every socket as text for the reader to
// parse and throw away. Sockets are those of the caller's network namespace.
package sockdiag

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket states of the kernel's enum (include/net/tcp_states.h), for Query's states mask.
const (
	StateEstablished = 1
	StateClose       = 7  // also a bound, unconnected UDP socket
	StateListen      = 10 // TCP_LISTEN
)

// Socket is one socket as the kernel reports it.
type Socket struct {
	Family uint8 // unix.AF_INET or unix.AF_INET6
	Proto  uint8 // unix.IPPROTO_TCP or unix.IPPROTO_UDP
	State  uint8 // StateListen, StateClose, ...
	Addr   netip.Addr
	Port   uint16
	UID    uint32 // the socket's owner: the uid that created it, not necessarily its holder now
	Inode  uint32 // as in /proc/PID/fd/N -> "socket:[Inode]"
}

// Sizes of the kernel's structures (include/uapi/linux/inet_diag.h, netlink.h); they are the same
// on every architecture.
const (
	sizeofNlMsghdr   = 16
	sizeofReqV2      = 56 // struct inet_diag_req_v2
	sizeofDiagMsg    = 72 // struct inet_diag_msg
	sizeofNlMsgerr   = 4  // the error code; the echoed request header after it is not needed
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	defaultTimeout   = 10 * time.Second
	// The kernel sizes a dump's datagrams from the reader's buffer but caps them just under 32 KiB
	// (netlink_recvmsg), so this buffer holds any of them.
	recvBufSize = 32 << 10
	maxAttempts = 3
)

var (
	// ErrTruncated is a malformed or cut answer from the kernel.
	ErrTruncated = errors.New("sock_diag: truncated message")
	// errRetry marks a failed dump worth doing again.
	errRetry = errors.New("retrying")
	// errInterrupted is a dump the kernel flagged as inconsistent (the tables changed under it).
	errInterrupted = fmt.Errorf("sock_diag: dump interrupted: %w", errRetry)
)

// unavailableError is a failure that means this kernel or sandbox offers no sock_diag (no netlink
// family, no inet_diag module for the protocol, a seccomp or LSM denial), as opposed to a failure
// of one query. It matches errors.ErrUnsupported, so a caller can fall back to /proc/net.
type unavailableError struct {
	op  string
	err error
}

func (e *unavailableError) Error() string   { return "sock_diag " + e.op + ": " + e.err.Error() }
func (e *unavailableError) Unwrap() []error { return []error{errors.ErrUnsupported, e.err} }

// classify wraps errno as unavailable when it is what a kernel without (this part of) sock_diag
// answers: EPROTONOSUPPORT/EAFNOSUPPORT from socket(2) without NETLINK_SOCK_DIAG, ENOENT for a
// family or protocol with no diag handler (udp_diag not built), EINVAL from kernels before 3.3
// that know only the old request, EPERM/EACCES from a sandbox.
func classify(op string, errno unix.Errno) error {
	switch errno {
	case unix.EPROTONOSUPPORT, unix.EAFNOSUPPORT, unix.ENOENT, unix.EOPNOTSUPP, unix.EINVAL,
		unix.EPERM, unix.EACCES:
		return &unavailableError{op: op, err: errno}
	}
	return fmt.Errorf("sock_diag %s: %w", op, errno)
}

// Reader queries sock_diag over one netlink socket, opened on first use and kept between queries,
// with its buffers. It is not safe for concurrent use. The zero value is not usable: use NewReader.
type Reader struct {
	fd  int
	seq uint32
	buf []byte
	req [sizeofNlMsghdr + sizeofReqV2]byte
}

// NewReader returns a Reader; it opens nothing until the first query.
func NewReader() *Reader { return &Reader{fd: -1} }

// Close releases the netlink socket. The Reader can still be used: it opens a new one.
func (r *Reader) Close() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Listening appends to dst the listening TCP sockets and the bound, unconnected UDP sockets (the
// state the kernel reports as CLOSE) of both address families. A dual-stack socket bound to [::]
// appears once, as AF_INET6.
func (r *Reader) Listening(ctx context.Context, dst []Socket) ([]Socket, error) {
	for _, q := range [...]struct {
		family, proto uint8
		states        uint32
	}{
		{unix.AF_INET, unix.IPPROTO_TCP, 1 << StateListen},
		{unix.AF_INET6, unix.IPPROTO_TCP, 1 << StateListen},
		{unix.AF_INET, unix.IPPROTO_UDP, 1 << StateClose},
		{unix.AF_INET6, unix.IPPROTO_UDP, 1 << StateClose},
	} {
		var err error
		if dst, err = r.Query(ctx, dst, q.family, q.proto, q.states); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// Query appends to dst the sockets of one family (unix.AF_INET or AF_INET6) and protocol
// (unix.IPPROTO_TCP or IPPROTO_UDP) whose state is in states, a mask of 1<<State bits; the kernel
// does the filtering. An error matching errors.ErrUnsupported means sock_diag cannot answer this
// query on this host. On error, dst is returned as it was given.
func (r *Reader) Query(ctx context.Context, dst []Socket, family, proto uint8, states uint32) ([]Socket, error) {
	if family != unix.AF_INET && family != unix.AF_INET6 {
		return dst, fmt.Errorf("sock_diag: unsupported address family %d", family)
	}
	n := len(dst)
	var err error
	for range maxAttempts {
		dst, err = r.dump(ctx, dst[:n], family, proto, states)
		if err == nil {
			return dst, nil
		}
		// Any failure leaves the socket mid-dump (the kernel refuses a new dump while one is
		// running), so the next attempt, or the next query, starts on a new socket.
		r.Close()
		if !errors.Is(err, errRetry) {
			break
		}
	}
	return dst[:n], err
}

func (r *Reader) dump(ctx context.Context, dst []Socket, family, proto uint8, states uint32) ([]Socket, error) {
	if err := ctx.Err(); err != nil {
		return dst, err
	}
	if r.fd < 0 {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		if err != nil {
			var errno unix.Errno
			if errors.As(err, &errno) {
				return dst, classify("socket", errno)
			}
			return dst, fmt.Errorf("sock_diag socket: %w", err)
		}
		r.fd = fd
	}
	if len(r.buf) < recvBufSize {
		r.buf = make([]byte, recvBufSize)
	}
	// A receive must not outlive the scrape: the timeout is what is left of ctx, bounded anyway,
	// because a blocking read has no other way to notice ctx.
	timeout := defaultTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(time.Until(dl), timeout)
		if timeout <= 0 {
			return dst, context.DeadlineExceeded
		}
	}
	tv := unix.NsecToTimeval(max(timeout.Nanoseconds(), int64(time.Millisecond)))
	if err := unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return dst, fmt.Errorf("sock_diag setsockopt: %w", err)
	}

	r.seq++
	encodeRequest(r.req[:], r.seq, family, proto, states)
	// A write on an unconnected netlink socket goes to the kernel; it spares Sendto's sockaddr.
	if _, err := unix.Write(r.fd, r.req[:]); err != nil {
		var errno unix.Errno
		if errors.As(err, &errno) {
			return dst, classify("send", errno)
		}
		return dst, fmt.Errorf("sock_diag send: %w", err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return dst, err
		}
		n, err := recvTrunc(r.fd, r.buf)
		if err != nil {
			if err == unix.EAGAIN {
				if ctx.Err() != nil {
					return dst, ctx.Err()
				}
				return dst, fmt.Errorf("sock_diag receive: no answer within %v", timeout)
			}
			return dst, fmt.Errorf("sock_diag receive: %w", err)
		}
		if n > len(r.buf) {
			// The datagram was cut, which the kernel's cap should prevent: grow, and dump again.
			r.buf = make([]byte, n)
			return dst, fmt.Errorf("%w: datagram of %d bytes: %w", ErrTruncated, n, errRetry)
		}
		var done bool
		dst, done, err = parse(r.buf[:n], r.seq, proto, dst)
		if err != nil {
			return dst, err
		}
		if done {
			return dst, nil
		}
		if n == 0 {
			return dst, fmt.Errorf("%w: empty datagram before the end of the dump", ErrTruncated)
		}
	}
}

// recvTrunc is recv(2) with MSG_TRUNC, which returns a datagram's full length even when the buffer
// was shorter, so a cut message is seen rather than parsed as garbage. unix.Recvfrom would
// allocate a sockaddr on every call.
func recvTrunc(fd int, buf []byte) (int, error) {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])),
			uintptr(len(buf)), unix.MSG_TRUNC, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

// encodeRequest writes a netlink header and an inet_diag_req_v2 asking for a dump.
func encodeRequest(b []byte, seq uint32, family, proto uint8, states uint32) {
	clear(b)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFamily)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(b[8:], seq)
	// nlmsg_pid 0: the kernel fills in the socket's port id.
	req := b[sizeofNlMsghdr:]
	req[0] = family
	req[1] = proto
	ne.PutUint32(req[4:], states)
	// The socket id is left zero: no address or port filter.
}

// parse decodes one datagram of a dump answering seq, appending the sockets it carries to dst;
// proto is the protocol asked for, which the answer does not repeat. done is the end of the dump.
// Messages for another sequence number (left over from an abandoned dump) are skipped. It never
// reads outside b: a length that does not fit is ErrTruncated.
func parse(b []byte, seq uint32, proto uint8, dst []Socket) (_ []Socket, done bool, err error) {
	ne := binary.NativeEndian
	for len(b) > 0 {
		if len(b) < sizeofNlMsghdr {
			return dst, false, fmt.Errorf("%w: %d bytes left, want a %d-byte header", ErrTruncated, len(b), sizeofNlMsghdr)
		}
		msgLen := int(ne.Uint32(b[0:]))
		typ := ne.Uint16(b[4:])
		flags := ne.Uint16(b[6:])
		msgSeq := ne.Uint32(b[8:])
		if msgLen < sizeofNlMsghdr || msgLen > len(b) {
			return dst, false, fmt.Errorf("%w: message length %d with %d bytes left", ErrTruncated, msgLen, len(b))
		}
		payload := b[sizeofNlMsghdr:msgLen]
		// Messages are 4-byte aligned; the last one may end without its padding.
		next := min((msgLen+3)&^3, len(b))
		b = b[next:]
		if msgSeq != seq {
			continue
		}
		if flags&unix.NLM_F_DUMP_INTR != 0 {
			return dst, false, errInterrupted
		}
		switch typ {
		case unix.NLMSG_NOOP:
		case unix.NLMSG_DONE:
			// The dump's own status: 0, or a negative errno the dump ended with.
			if len(payload) >= 4 {
				if code := int32(ne.Uint32(payload)); code < 0 {
					return dst, true, classify("dump", unix.Errno(-code))
				}
			}
			return dst, true, nil
		case unix.NLMSG_ERROR:
			if len(payload) < sizeofNlMsgerr {
				return dst, false, fmt.Errorf("%w: error message of %d bytes", ErrTruncated, len(payload))
			}
			code := int32(ne.Uint32(payload))
			if code == 0 {
				continue // an acknowledgement, though none was asked for
			}
			if code > 0 || code == -code { // not a negated errno (math.MinInt32 negates to itself)
				return dst, false, fmt.Errorf("sock_diag: kernel error code %d", code)
			}
			return dst, false, classify("request", unix.Errno(-code))
		case unix.NLMSG_OVERRUN:
			return dst, false, errors.New("sock_diag: netlink overrun, messages lost")
		case sockDiagByFamily:
			s, err := decodeDiagMsg(payload)
			if err != nil {
				return dst, false, err
			}
			s.Proto = proto
			dst = append(dst, s)
		default:
			return dst, false, fmt.Errorf("sock_diag: unexpected message type %d", typ)
		}
	}
	return dst, false, nil
}

// decodeDiagMsg decodes a struct inet_diag_msg; the attributes that may follow it are not asked
// for and are ignored.
func decodeDiagMsg(p []byte) (Socket, error) {
	if len(p) < sizeofDiagMsg {
		return Socket{}, fmt.Errorf("%w: inet_diag_msg of %d bytes, want %d", ErrTruncated, len(p), sizeofDiagMsg)
	}
	s := Socket{
		Family: p[0],
		State:  p[1],
		Port:   binary.BigEndian.Uint16(p[4:]), // idiag_sport, network order
		UID:    binary.NativeEndian.Uint32(p[64:]),
		Inode:  binary.NativeEndian.Uint32(p[68:]),
	}
	src := p[8:24] // idiag_src: the first 4 bytes for IPv4
	switch s.Family {
	case unix.AF_INET:
		s.Addr = netip.AddrFrom4([4]byte(src[:4]))
	case unix.AF_INET6:
		s.Addr = netip.AddrFrom16([16]byte(src))
	default:
		return Socket{}, fmt.Errorf("sock_diag: unexpected address family %d", s.Family)
	}
	return s, nil
}
