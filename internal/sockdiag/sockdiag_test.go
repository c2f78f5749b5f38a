package sockdiag

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// inodeOf is the socket inode of a net.Listener, net.Conn or net.PacketConn, as the kernel
// reports it in /proc/PID/fd.
func inodeOf(t testing.TB, c syscall.Conn) uint32 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return uint32(st.Ino)
}

func find(socks []Socket, inode uint32) (Socket, int) {
	var found Socket
	n := 0
	for _, s := range socks {
		if s.Inode == inode {
			found = s
			n++
		}
	}
	return found, n
}

func countPort(socks []Socket, proto uint8, port uint16) int {
	n := 0
	for _, s := range socks {
		if s.Proto == proto && s.Port == port {
			n++
		}
	}
	return n
}

// ipv6Loopback reports whether [::1] can be bound here; a host or container may run without IPv6.
func ipv6Loopback(t testing.TB) bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Logf("IPv6 loopback unavailable (%v): skipping the IPv6 cases", err)
		return false
	}
	l.Close()
	return true
}

// TestListeningReal checks, on this kernel, that listening TCP and bound UDP sockets are reported
// with their address, port, inode and owner, that connected sockets on the same ports are filtered
// out by the kernel, and that a closed socket disappears.
func TestListeningReal(t *testing.T) {
	type sock struct {
		name   string
		family uint8
		proto  uint8
		state  uint8
		addr   netip.Addr
		inode  uint32
		port   uint16
		closer func() error
	}
	var socks []sock
	listen := func(network, addr string) {
		l, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		ap := l.Addr().(*net.TCPAddr).AddrPort()
		fam := uint8(unix.AF_INET)
		if network == "tcp6" {
			fam = unix.AF_INET6
		}
		socks = append(socks, sock{network, fam, unix.IPPROTO_TCP, StateListen, ap.Addr(), inodeOf(t, l.(*net.TCPListener)), ap.Port(), l.Close})
		// An established connection on the listener's port must not be reported.
		c, err := net.Dial(network, l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		a, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
	}
	bind := func(network, addr string) {
		pc, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		fam := uint8(unix.AF_INET)
		if network == "udp6" {
			fam = unix.AF_INET6
		}
		socks = append(socks, sock{network, fam, unix.IPPROTO_UDP, StateClose, ap.Addr(), inodeOf(t, pc.(*net.UDPConn)), ap.Port(), pc.Close})
		// A connected UDP socket is ESTABLISHED, not a listener.
		c, err := net.Dial(network, pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	listen("tcp4", "127.0.0.1:0")
	bind("udp4", "127.0.0.1:0")
	if ipv6Loopback(t) {
		listen("tcp6", "[::1]:0")
		bind("udp6", "[::1]:0")
	}

	r := NewReader()
	defer r.Close()
	got, err := r.Listening(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range got {
		want := uint8(StateListen)
		if s.Proto == unix.IPPROTO_UDP {
			want = StateClose
		}
		if s.State != want {
			t.Errorf("socket %+v: state %d, the kernel filter should only return %d", s, s.State, want)
		}
	}
	for _, w := range socks {
		s, n := find(got, w.inode)
		if n != 1 {
			t.Errorf("%s: inode %d reported %d times, want once", w.name, w.inode, n)
			continue
		}
		want := Socket{Family: w.family, Proto: w.proto, State: w.state, Addr: w.addr, Port: w.port, UID: uint32(os.Getuid()), Inode: w.inode}
		if s != want {
			t.Errorf("%s: got %+v, want %+v", w.name, s, want)
		}
		if c := countPort(got, w.proto, w.port); c != 1 {
			t.Errorf("%s: %d sockets on port %d, want only the listener (the connection is not listening)", w.name, c, w.port)
		}
	}

	// The connected sockets are there when asked for: the filter is the kernel's, not ours.
	est, err := r.Query(t.Context(), nil, unix.AF_INET, unix.IPPROTO_TCP, 1<<StateEstablished)
	if err != nil {
		t.Fatal(err)
	}
	if c := countPort(est, unix.IPPROTO_TCP, socks[0].port); c != 1 {
		t.Errorf("established sockets on port %d: %d, want 1 (the accepted side)", socks[0].port, c)
	}

	for _, w := range socks {
		w.closer()
	}
	got, err = r.Listening(t.Context(), got[:0])
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range socks {
		if _, n := find(got, w.inode); n != 0 {
			t.Errorf("%s: still reported after close", w.name)
		}
	}
}

func TestQueryContext(t *testing.T) {
	r := NewReader()
	defer r.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	dst := []Socket{{Port: 1}}
	got, err := r.Listening(ctx, dst)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: err = %v", err)
	}
	if len(got) != 1 || got[0].Port != 1 {
		t.Errorf("on error dst must come back as given, got %+v", got)
	}
	ctx, cancel = context.WithTimeout(t.Context(), -1)
	defer cancel()
	if _, err := r.Listening(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired context: err = %v", err)
	}
	if _, err := r.Query(t.Context(), nil, unix.AF_UNIX, unix.IPPROTO_TCP, 1<<StateListen); err == nil {
		t.Error("AF_UNIX: want an error")
	}
	// The reader recovers from the failures above, and after Close.
	for range 2 {
		if _, err := r.Listening(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
}

// The unavailable classes of errors are what a caller falls back on.
func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		errno       unix.Errno
		unsupported bool
	}{
		{unix.EPROTONOSUPPORT, true},
		{unix.ENOENT, true},
		{unix.EPERM, true},
		{unix.EBUSY, false},
		{unix.ENOMEM, false},
	} {
		err := classify("x", tt.errno)
		if errors.Is(err, errors.ErrUnsupported) != tt.unsupported {
			t.Errorf("%v: unsupported = %v, want %v", tt.errno, !tt.unsupported, tt.unsupported)
		}
		if !errors.Is(err, tt.errno) {
			t.Errorf("%v: the errno is lost in %v", tt.errno, err)
		}
	}
}

// Message builders for the parser's tests.

func nlmsg(typ, flags uint16, seq uint32, payload []byte) []byte {
	b := make([]byte, sizeofNlMsghdr, sizeofNlMsghdr+len(payload)+3)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(sizeofNlMsghdr+len(payload)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func diagMsg(family uint8, addr netip.Addr, port uint16, uid, inode uint32, attrs int) []byte {
	p := make([]byte, sizeofDiagMsg+attrs)
	p[0] = family
	p[1] = StateListen
	binary.BigEndian.PutUint16(p[4:], port)
	a := addr.As16()
	if addr.Is4() {
		a4 := addr.As4()
		copy(p[8:], a4[:])
	} else {
		copy(p[8:], a[:])
	}
	binary.NativeEndian.PutUint32(p[64:], uid)
	binary.NativeEndian.PutUint32(p[68:], inode)
	return p
}

func i32(v int32) []byte {
	return binary.NativeEndian.AppendUint32(nil, uint32(v))
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestParse(t *testing.T) {
	const seq = 7
	v4 := diagMsg(unix.AF_INET, netip.MustParseAddr("127.0.0.1"), 8080, 1000, 42, 0)
	v6 := diagMsg(unix.AF_INET6, netip.MustParseAddr("::1"), 443, 0, 43, 8) // with an attribute after it
	s4 := Socket{Family: unix.AF_INET, Proto: unix.IPPROTO_TCP, State: StateListen, Addr: netip.MustParseAddr("127.0.0.1"), Port: 8080, UID: 1000, Inode: 42}
	s6 := Socket{Family: unix.AF_INET6, Proto: unix.IPPROTO_TCP, State: StateListen, Addr: netip.MustParseAddr("::1"), Port: 443, Inode: 43}
	done := nlmsg(unix.NLMSG_DONE, unix.NLM_F_MULTI, seq, i32(0))
	tests := []struct {
		name        string
		data        []byte
		want        []Socket
		done        bool
		wantErr     error // matched with errors.Is; nil means no error
		anyErr      bool  // an error whose kind does not matter
		unsupported bool
	}{
		{name: "empty datagram", data: nil},
		{name: "one part of several", data: cat(nlmsg(20, unix.NLM_F_MULTI, seq, v4), nlmsg(20, unix.NLM_F_MULTI, seq, v6)), want: []Socket{s4, s6}},
		{name: "last part with done", data: cat(nlmsg(20, unix.NLM_F_MULTI, seq, v4), done), want: []Socket{s4}, done: true},
		{name: "done alone", data: done, done: true},
		{name: "done without status", data: nlmsg(unix.NLMSG_DONE, 0, seq, nil), done: true},
		{name: "messages after done are ignored", data: cat(done, nlmsg(20, 0, seq, v4)), done: true},
		{name: "done with an error status", data: nlmsg(unix.NLMSG_DONE, 0, seq, i32(-int32(unix.ENOMEM))), done: true, wantErr: unix.ENOMEM},
		{name: "stale sequence skipped", data: cat(nlmsg(20, 0, seq-1, v4), nlmsg(unix.NLMSG_DONE, 0, seq-1, i32(0)), nlmsg(20, 0, seq, v6)), want: []Socket{s6}},
		{name: "noop skipped", data: cat(nlmsg(unix.NLMSG_NOOP, 0, seq, nil), nlmsg(20, 0, seq, v4)), want: []Socket{s4}},
		{name: "ack skipped", data: cat(nlmsg(unix.NLMSG_ERROR, 0, seq, i32(0)), nlmsg(20, 0, seq, v4)), want: []Socket{s4}},
		{name: "error ENOENT is unsupported", data: nlmsg(unix.NLMSG_ERROR, 0, seq, i32(-int32(unix.ENOENT))), wantErr: unix.ENOENT, unsupported: true},
		{name: "error EBUSY", data: nlmsg(unix.NLMSG_ERROR, 0, seq, i32(-int32(unix.EBUSY))), wantErr: unix.EBUSY},
		{name: "positive error code", data: nlmsg(unix.NLMSG_ERROR, 0, seq, i32(5)), anyErr: true},
		{name: "minimum error code", data: nlmsg(unix.NLMSG_ERROR, 0, seq, i32(-1<<31)), anyErr: true},
		{name: "short error", data: nlmsg(unix.NLMSG_ERROR, 0, seq, []byte{1, 2}), wantErr: ErrTruncated},
		{name: "overrun", data: nlmsg(unix.NLMSG_OVERRUN, 0, seq, nil), anyErr: true},
		{name: "interrupted dump", data: nlmsg(20, unix.NLM_F_MULTI|unix.NLM_F_DUMP_INTR, seq, v4), wantErr: errInterrupted},
		{name: "unknown type", data: nlmsg(99, 0, seq, v4), anyErr: true},
		{name: "short inet_diag_msg", data: nlmsg(20, 0, seq, v4[:71]), wantErr: ErrTruncated},
		{name: "unknown family", data: nlmsg(20, 0, seq, diagMsg(unix.AF_UNIX, netip.MustParseAddr("::1"), 1, 0, 1, 0)), anyErr: true},
		{name: "short header", data: cat(nlmsg(20, 0, seq, v4), []byte{1, 2, 3}), want: []Socket{s4}, wantErr: ErrTruncated},
		{name: "length past the end", data: nlmsg(20, 0, seq, v4)[:60], wantErr: ErrTruncated},
		{name: "length below a header", data: func() []byte {
			b := nlmsg(20, 0, seq, v4)
			binary.NativeEndian.PutUint32(b, 8)
			return b
		}(), wantErr: ErrTruncated},
		{name: "last message without padding", data: cat(nlmsg(20, 0, seq, v4), nlmsg(unix.NLMSG_DONE, 0, seq, []byte{0, 0, 0, 0, 9})[:21]), want: []Socket{s4}, done: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, done, err := parse(tt.data, seq, unix.IPPROTO_TCP, nil)
			switch {
			case tt.anyErr:
				if err == nil {
					t.Fatal("want an error")
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("err = %v", err)
			}
			if errors.Is(err, errors.ErrUnsupported) != tt.unsupported {
				t.Errorf("err %v: unsupported = %v, want %v", err, !tt.unsupported, tt.unsupported)
			}
			if done != tt.done {
				t.Errorf("done = %v, want %v", done, tt.done)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("socket %d: got %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestEncodeRequest(t *testing.T) {
	var b [sizeofNlMsghdr + sizeofReqV2]byte
	for i := range b {
		b[i] = 0xff // stale bytes from a previous request must not survive
	}
	encodeRequest(b[:], 9, unix.AF_INET6, unix.IPPROTO_UDP, 1<<StateClose)
	ne := binary.NativeEndian
	if ne.Uint32(b[0:]) != 72 || ne.Uint16(b[4:]) != 20 || ne.Uint16(b[6:]) != unix.NLM_F_REQUEST|unix.NLM_F_DUMP || ne.Uint32(b[8:]) != 9 {
		t.Errorf("bad header % x", b[:16])
	}
	if b[16] != unix.AF_INET6 || b[17] != unix.IPPROTO_UDP || ne.Uint32(b[20:]) != 1<<StateClose {
		t.Errorf("bad request % x", b[16:24])
	}
	for i, c := range b[24:] {
		if c != 0 {
			t.Fatalf("socket id byte %d = %#x, want 0 (no filter)", i, c)
		}
	}
}

func FuzzParse(f *testing.F) {
	const seq = 3
	v4 := diagMsg(unix.AF_INET, netip.MustParseAddr("10.0.0.1"), 22, 0, 1, 0)
	v6 := diagMsg(unix.AF_INET6, netip.MustParseAddr("fe80::1"), 53, 0, 2, 12)
	f.Add(cat(nlmsg(20, unix.NLM_F_MULTI, seq, v4), nlmsg(20, unix.NLM_F_MULTI, seq, v6)))
	f.Add(cat(nlmsg(20, 0, seq, v4), nlmsg(unix.NLMSG_DONE, 0, seq, i32(0))))
	f.Add(nlmsg(unix.NLMSG_ERROR, 0, seq, i32(-2)))
	f.Add(nlmsg(20, 0, seq, v4)[:40])
	f.Add([]byte{255, 255, 255, 255, 20, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		socks, done, err := parse(data, seq, unix.IPPROTO_TCP, nil)
		if done && len(data) < sizeofNlMsghdr {
			t.Fatal("done without a message")
		}
		if err != nil {
			return
		}
		for _, s := range socks {
			switch {
			case s.Family == unix.AF_INET && s.Addr.Is4():
			case s.Family == unix.AF_INET6 && s.Addr.Is6():
			default:
				t.Fatalf("family %d with address %v", s.Family, s.Addr)
			}
			if s.Proto != unix.IPPROTO_TCP {
				t.Fatalf("proto %d", s.Proto)
			}
		}
	})
}

// withConnections opens a listener and n connections to it on 127.0.0.1, 2n+1 sockets in all, so
// that the benchmarks compare the two ways of listing listeners on a host with traffic (this
// machine's figure was 641 sockets).
func withConnections(b *testing.B, n int) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	for range n {
		c, err := net.Dial("tcp4", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		a, err := l.Accept()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { a.Close() })
	}
}

var benchHosts = []struct {
	name  string
	conns int
}{{"host", 0}, {"641sockets", 320}}

// BenchmarkListeningTCP lists the TCP listeners of both families: what BenchmarkProcNetTCP does.
func BenchmarkListeningTCP(b *testing.B) {
	for _, h := range benchHosts {
		b.Run(h.name, func(b *testing.B) {
			withConnections(b, h.conns)
			r := NewReader()
			defer r.Close()
			var socks []Socket
			b.ReportAllocs()
			for b.Loop() {
				var err error
				socks, err = r.Query(b.Context(), socks[:0], unix.AF_INET, unix.IPPROTO_TCP, 1<<StateListen)
				if err == nil {
					socks, err = r.Query(b.Context(), socks, unix.AF_INET6, unix.IPPROTO_TCP, 1<<StateListen)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkListening is what the listeners collector asks for: TCP and UDP, both families.
func BenchmarkListening(b *testing.B) {
	for _, h := range benchHosts {
		b.Run(h.name, func(b *testing.B) {
			withConnections(b, h.conns)
			r := NewReader()
			defer r.Close()
			var socks []Socket
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if socks, err = r.Listening(b.Context(), socks[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkProcNetTCP is the alternative: procfs parsing /proc/net/tcp and tcp6, keeping the
// listeners.
func BenchmarkProcNetTCP(b *testing.B) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		b.Fatal(err)
	}
	for _, h := range benchHosts {
		b.Run(h.name, func(b *testing.B) {
			withConnections(b, h.conns)
			b.ReportAllocs()
			for b.Loop() {
				n := 0
				for _, read := range []func() (procfs.NetTCP, error){fs.NetTCP, fs.NetTCP6} {
					lines, err := read()
					if err != nil {
						b.Fatal(err)
					}
					for _, l := range lines {
						if l.St == StateListen {
							n++
						}
					}
				}
				if n == 0 {
					b.Fatal("no listener")
				}
			}
		})
	}
}
