package probe

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/serversage/sage/internal/testenv"
)

// Kernel netem is not available, so impairment is made in user space: a target namespace whose
// kernel does not answer echo requests (icmp echo_ignore_all), where a responder reading a raw
// socket answers them with a scripted delay or not at all. The prober runs in a second
// namespace joined to it by a veth pair, so no test traffic touches the host's interfaces.

var netnsSeq atomic.Int32

type netns struct{ name, path string }

func newNetns(t *testing.T) *netns {
	t.Helper()
	testenv.Root(t, "network namespaces")
	testenv.LookPath(t, "ip", "iproute2")
	name := fmt.Sprintf("sage-icmp-%d-%d", os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	return &netns{name: name, path: "/run/netns/" + name}
}

// ip runs `ip -n <ns> args...`; with a single argument "-batch", stdin lines are the commands.
func (n *netns) ip(t *testing.T, args ...string) {
	t.Helper()
	n.ipBatch(t, nil, args...)
}

func (n *netns) ipBatch(t *testing.T, lines []string, args ...string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"-n", n.name}, args...)...)
	if lines != nil {
		cmd.Args = append(cmd.Args, "-batch", "-")
		cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
}

// sysctl writes /proc/sys/<key> inside the namespace: the net.* entries are per namespace.
func (n *netns) sysctl(t *testing.T, key, value string) {
	t.Helper()
	err := inNetns(n.path, func() error {
		f := "/proc/sys/" + key
		if err := os.WriteFile(f, []byte(value), 0o644); err != nil {
			return err
		}
		got, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if strings.Join(strings.Fields(string(got)), " ") != value {
			return fmt.Errorf("%s reads %q after writing %q", f, got, value)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// impairedNet is the prober's namespace joined to a target namespace where echo requests to
// 10.232.0.0/16 and fd00:232::/64 addresses (the ones added with addTargets) are answered by
// the responders only.
type impairedNet struct {
	prober, target *netns
	v4, v6         *echoResponder
}

func newImpairedNet(t *testing.T) *impairedNet {
	p, tg := newNetns(t), newNetns(t)
	p.ipBatch(t, []string{
		"link add vp address 02:00:00:00:02:01 type veth peer name vt address 02:00:00:00:02:02 netns " + tg.name,
		"addr add 10.231.0.1/30 dev vp",
		"addr add fd00:231::1/64 dev vp nodad",
		"link set vp up",
		"link set lo up",
		"route add 10.232.0.0/16 via 10.231.0.2",
		"route add fd00:232::/64 via fd00:231::2",
		// Static neighbours: address resolution would delay the first packets.
		"neigh add 10.231.0.2 lladdr 02:00:00:00:02:02 dev vp nud permanent",
		"neigh add fd00:231::2 lladdr 02:00:00:00:02:02 dev vp nud permanent",
	})
	tg.ipBatch(t, []string{
		"addr add 10.231.0.2/30 dev vt",
		"addr add fd00:231::2/64 dev vt nodad",
		"link set vt up",
		"link set lo up",
		"neigh add 10.231.0.1 lladdr 02:00:00:00:02:01 dev vt nud permanent",
		"neigh add fd00:231::1 lladdr 02:00:00:00:02:01 dev vt nud permanent",
	})
	p.sysctl(t, "net/ipv4/ping_group_range", "0 2147483647")
	tg.sysctl(t, "net/ipv4/icmp_echo_ignore_all", "1")
	tg.sysctl(t, "net/ipv6/icmp/echo_ignore_all", "1")
	n := &impairedNet{prober: p, target: tg}
	n.v4 = startResponder(t, tg, false)
	n.v6 = startResponder(t, tg, true)
	return n
}

// addTargets puts addresses on the target's loopback (real addresses, so that the responder
// may answer from them).
func (n *impairedNet) addTargets(t *testing.T, addrs ...netip.Addr) {
	var lines []string
	for _, a := range addrs {
		if a.Is4() {
			lines = append(lines, fmt.Sprintf("addr add %s/32 dev lo", a))
		} else {
			lines = append(lines, fmt.Sprintf("addr add %s/128 dev lo nodad", a))
		}
	}
	n.target.ipBatch(t, lines)
}

func (n *impairedNet) script(addr netip.Addr, s *echoScript) {
	if addr.Is4() {
		n.v4.setScript(addr, s)
	} else {
		n.v6.setScript(addr, s)
	}
}

// echoScript says how the responder answers the k-th request (from 0) to one address, and
// records what it did.
type echoScript struct {
	delay func(k int) time.Duration
	drop  func(k int) bool

	mu  sync.Mutex
	log []echoLog
}

type echoLog struct {
	seq    int
	delay  time.Duration
	drop   bool
	actual time.Duration // from reading the request to sending the reply
}

func (s *echoScript) entries() []echoLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]echoLog(nil), s.log...)
}

type pendingEchoReply struct {
	due      time.Time
	received time.Time
	b        []byte
	src, dst netip.Addr
	script   *echoScript
	k        int
}

type replyQueue []*pendingEchoReply

func (q replyQueue) Len() int           { return len(q) }
func (q replyQueue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q replyQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *replyQueue) Push(x any)        { *q = append(*q, x.(*pendingEchoReply)) }
func (q *replyQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// echoResponder answers echo requests of one family in the target namespace, by script.
type echoResponder struct {
	v6   bool
	conn net.PacketConn
	pc4  *ipv4.PacketConn
	pc6  *ipv6.PacketConn

	mu      sync.Mutex
	scripts map[netip.Addr]*echoScript
	queue   replyQueue
	wake    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startResponder(t *testing.T, ns *netns, v6 bool) *echoResponder {
	t.Helper()
	r := &echoResponder{v6: v6, scripts: map[netip.Addr]*echoScript{}, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	err := inNetns(ns.path, func() error {
		var err error
		if v6 {
			r.conn, err = net.ListenPacket("ip6:ipv6-icmp", "::")
		} else {
			r.conn, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		}
		return err
	})
	if err != nil {
		t.Fatalf("responder socket: %v", err)
	}
	if v6 {
		r.pc6 = ipv6.NewPacketConn(r.conn)
		err = r.pc6.SetControlMessage(ipv6.FlagDst, true)
	} else {
		r.pc4 = ipv4.NewPacketConn(r.conn)
	}
	if err != nil {
		t.Fatal(err)
	}
	rc, err := r.conn.(*net.IPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	_ = rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		if err == nil {
			// Hundreds of requests come in a burst (TestICMPNoCrossTalk): with the default
			// buffer, a responder slowed by -race on a loaded machine dropped some, and their
			// rounds waited for replies to requests it never saw.
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, icmpRcvBuf)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	r.wg.Add(2)
	go r.read()
	go r.send()
	t.Cleanup(func() {
		_ = r.conn.Close()
		close(r.stop)
		r.wg.Wait()
	})
	return r
}

func (r *echoResponder) setScript(addr netip.Addr, s *echoScript) {
	r.mu.Lock()
	r.scripts[addr] = s
	r.mu.Unlock()
}

func (r *echoResponder) read() {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	oob := make([]byte, 512)
	ipc := r.conn.(*net.IPConn)
	for {
		n, oobn, _, srcAddr, err := ipc.ReadMsgIP(buf, oob)
		now := time.Now()
		if err != nil {
			return
		}
		// The delay counts from the kernel's receive timestamp, so that the reader's wake-up
		// latency is part of the injected delay instead of an error of the prober's measure.
		if rx, _, _ := parseICMPControl(oob[:oobn]); !rx.IsZero() && rx.Before(now) {
			now = rx
		}
		var dst net.IP
		var src net.Addr = srcAddr
		if r.v6 {
			var cm ipv6.ControlMessage
			if cm.Parse(oob[:oobn]) == nil {
				dst = cm.Dst
			}
		} else if n >= 20 && buf[0]>>4 == 4 { // a raw IPv4 socket reads the header
			hl := int(buf[0]&0x0f) * 4
			dst = net.IP(append([]byte(nil), buf[16:20]...))
			n = copy(buf, buf[hl:n])
		}
		proto, reqType, replyType := 1, icmp.Type(ipv4.ICMPTypeEcho), icmp.Type(ipv4.ICMPTypeEchoReply)
		if r.v6 {
			proto, reqType, replyType = 58, ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != reqType {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		to, ok1 := netip.AddrFromSlice(dst)
		from, ok2 := netip.AddrFromSlice(src.(*net.IPAddr).IP)
		if !ok || !ok1 || !ok2 {
			continue
		}
		to, from = to.Unmap(), from.Unmap()
		r.mu.Lock()
		s := r.scripts[to]
		r.mu.Unlock()
		if s == nil {
			continue
		}
		s.mu.Lock()
		k := len(s.log)
		entry := echoLog{seq: echo.Seq, delay: s.delay(k), drop: s.drop(k)}
		s.log = append(s.log, entry)
		s.mu.Unlock()
		if entry.drop {
			continue
		}
		// ICMPv6's checksum is the kernel's; x/net computes the ICMPv4 one.
		b, err := (&icmp.Message{Type: replyType, Body: echo}).Marshal(nil)
		if err != nil {
			continue
		}
		r.mu.Lock()
		heap.Push(&r.queue, &pendingEchoReply{due: now.Add(entry.delay), received: now, b: b, src: to, dst: from, script: s, k: k})
		r.mu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// send sends the queued replies when due. It runs on a thread of its own and sleeps in the
// kernel (clock_nanosleep wakes within tens of microseconds) rather than on the runtime's
// timers, which may fire a millisecond late, or spinning, which would keep a processor busy
// and delay the runtime's network polling for the prober and the reader.
func (r *echoResponder) send() {
	defer r.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Requests arriving during a sleep may be due before the reply slept for: the sleep is cut
	// into slices no longer than the shortest scripted delay could be missed by.
	const slice = 200 * time.Microsecond
	for {
		now := time.Now()
		var due []*pendingEchoReply
		var next time.Time
		r.mu.Lock()
		for len(r.queue) > 0 && !r.queue[0].due.After(now) {
			due = append(due, heap.Pop(&r.queue).(*pendingEchoReply))
		}
		if len(r.queue) > 0 {
			next = r.queue[0].due
		}
		r.mu.Unlock()
		for _, p := range due {
			// Recorded before sending: the prober may read the log as soon as the reply arrives.
			p.script.mu.Lock()
			p.script.log[p.k].actual = time.Since(p.received)
			p.script.mu.Unlock()
			if r.v6 {
				_, _ = r.pc6.WriteTo(p.b, &ipv6.ControlMessage{Src: p.src.AsSlice()}, &net.IPAddr{IP: p.dst.AsSlice()})
			} else {
				_, _ = r.pc4.WriteTo(p.b, &ipv4.ControlMessage{Src: p.src.AsSlice()}, &net.IPAddr{IP: p.dst.AsSlice()})
			}
		}
		if len(due) > 0 {
			continue
		}
		if next.IsZero() {
			select {
			case <-r.wake:
				continue
			case <-r.stop:
				return
			}
		}
		select {
		case <-r.stop:
			return
		default:
		}
		ts := unix.NsecToTimespec(int64(min(time.Until(next), slice)))
		_ = unix.Nanosleep(&ts, nil)
	}
}

func constDelay(d time.Duration) func(int) time.Duration { return func(int) time.Duration { return d } }
func noLoss(int) bool                                    { return false }

// uniformDelays returns a fixed random sequence of delays in [lo, hi].
func uniformDelays(seed uint64, n int, lo, hi time.Duration) func(int) time.Duration {
	rng := rand.New(rand.NewPCG(seed, 1))
	d := make([]time.Duration, n)
	for i := range d {
		d[i] = lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	}
	return func(k int) time.Duration {
		if k < len(d) {
			return d[k]
		}
		return lo
	}
}

// lossRate drops each request with probability p, a fixed random sequence.
func lossRate(seed uint64, p float64) func(int) bool {
	rng := rand.New(rand.NewPCG(seed, 2))
	var mu sync.Mutex
	return func(int) bool {
		mu.Lock()
		defer mu.Unlock()
		return rng.Float64() < p
	}
}

func icmpModes() []struct {
	name string
	mode icmpMode
} {
	return []struct {
		name string
		mode icmpMode
	}{{"raw", icmpRaw}, {"unprivileged", icmpUnprivileged}}
}

// TestICMPImpairment checks that what the prober reports is what the responder injected:
// average RTT and jitter within 1 ms, loss exactly the responder's drops (packet by packet)
// and within 4 binomial standard deviations of the scripted probability.
func TestICMPImpairment(t *testing.T) {
	n := newImpairedNet(t)
	type tcase struct {
		name     string
		v6       bool
		count    int
		interval time.Duration
		delay    func(int) time.Duration
		p        float64 // loss probability
	}
	cases := []tcase{
		{"delay 20ms", false, 50, 10 * time.Millisecond, constDelay(20 * time.Millisecond), 0},
		{"delay 20ms v6", true, 50, 10 * time.Millisecond, constDelay(20 * time.Millisecond), 0},
		{"jitter 10-30ms", false, 100, 10 * time.Millisecond, uniformDelays(1, 100, 10*time.Millisecond, 30*time.Millisecond), 0},
		{"jitter 10-30ms v6", true, 100, 10 * time.Millisecond, uniformDelays(2, 100, 10*time.Millisecond, 30*time.Millisecond), 0},
		{"loss 20%", false, 400, 2 * time.Millisecond, constDelay(5 * time.Millisecond), 0.2},
		{"delay, jitter and loss v6", true, 200, 5 * time.Millisecond, uniformDelays(3, 200, 15*time.Millisecond, 25*time.Millisecond), 0.1},
	}
	for mi, mode := range icmpModes() {
		pool := &icmpPool{mode: mode.mode, netns: n.prober.path}
		t.Cleanup(pool.close)
		for ci, tc := range cases {
			addr := netip.MustParseAddr(fmt.Sprintf("10.232.0.%d", 1+mi*50+ci))
			if tc.v6 {
				addr = netip.MustParseAddr(fmt.Sprintf("fd00:232::%x", 1+mi*50+ci))
			}
			n.addTargets(t, addr)
			drop := noLoss
			if tc.p > 0 {
				drop = lossRate(uint64(100+ci), tc.p)
			}
			s := &echoScript{delay: tc.delay, drop: drop}
			n.script(addr, s)
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				timeout := time.Duration(tc.count)*tc.interval + time.Second
				r := runICMP(pool, addr.String(), ICMPModule{Count: tc.count, Interval: tc.interval}, timeout)
				log := s.entries()
				if len(log) != tc.count || len(r.RTTs) != tc.count {
					t.Fatalf("responder saw %d requests, prober reports %d, want %d (%s %s)", len(log), len(r.RTTs), tc.count, r.Reason, r.Detail)
				}
				// What was injected is what the responder did to each packet: the time from the
				// kernel's receipt of the request to sending the reply, which is the scripted
				// delay plus the responder's scheduling lateness.
				var sum, diffs, scripted float64
				var answered, dropped int
				prev := time.Duration(-1)
				for k, e := range log {
					if (r.RTTs[k] < 0) != e.drop {
						t.Errorf("packet %d: RTT %v, responder dropped it: %v", k, r.RTTs[k], e.drop)
					}
					if e.drop {
						dropped++
						continue
					}
					if r.RTTs[k] >= 0 && r.RTTs[k] < e.actual {
						t.Errorf("packet %d: RTT %v, shorter than its injected delay %v", k, r.RTTs[k], e.actual)
					}
					answered++
					sum += e.actual.Seconds()
					scripted += e.delay.Seconds()
					if prev >= 0 {
						diffs += math.Abs((e.actual - prev).Seconds())
					}
					prev = e.actual
				}
				if answered == 0 {
					t.Fatal("the script dropped everything")
				}
				wantAvg := sum / float64(answered)
				wantJitter := 0.0
				if answered > 1 {
					wantJitter = diffs / float64(answered-1)
				}
				avg := sample(t, r, "probe_icmp_rtt_avg_seconds")
				jitter := sample(t, r, "probe_icmp_jitter_seconds")
				loss := sample(t, r, "probe_icmp_loss_ratio")
				t.Logf("avg %.3fms (injected %.3fms, scripted %.3fms), jitter %.3fms (injected %.3fms), loss %.4f (dropped %d/%d, p %g)",
					avg*1e3, wantAvg*1e3, scripted/float64(answered)*1e3, jitter*1e3, wantJitter*1e3, loss, dropped, tc.count, tc.p)
				if math.Abs(avg-wantAvg) > 1e-3 {
					t.Errorf("average RTT %.3fms, injected %.3fms", avg*1e3, wantAvg*1e3)
				}
				if math.Abs(jitter-wantJitter) > 1e-3 {
					t.Errorf("jitter %.3fms, injected %.3fms", jitter*1e3, wantJitter*1e3)
				}
				if want := float64(dropped) / float64(tc.count); loss != want {
					t.Errorf("loss %g, responder dropped %g", loss, want)
				}
				if sigma := math.Sqrt(tc.p * (1 - tc.p) / float64(tc.count)); math.Abs(loss-tc.p) > 4*sigma+1e-9 {
					t.Errorf("loss %g, scripted probability %g ± %g", loss, tc.p, 4*sigma)
				}
			})
		}
	}
}

// TestICMPDeadline: a target that never answers ends the probe at its deadline with the loss
// reason, leaving no request pending and no goroutine behind.
func TestICMPDeadline(t *testing.T) {
	n := newImpairedNet(t)
	alive := netip.MustParseAddr("10.232.0.200")
	silent4, silent6 := netip.MustParseAddr("10.232.0.201"), netip.MustParseAddr("fd00:232::201")
	n.addTargets(t, alive, silent4, silent6)
	n.script(alive, &echoScript{delay: constDelay(0), drop: noLoss})
	dropAll := func(int) bool { return true }
	n.script(silent4, &echoScript{delay: constDelay(0), drop: dropAll})
	n.script(silent6, &echoScript{delay: constDelay(0), drop: dropAll})
	for _, mode := range icmpModes() {
		pool := &icmpPool{mode: mode.mode, netns: n.prober.path}
		t.Cleanup(pool.close)
		// Open the engines first: their reader goroutines stay, by design.
		for _, a := range []string{alive.String(), "fd00:232::201"} {
			runICMP(pool, a, ICMPModule{}, 200*time.Millisecond)
		}
		for _, tc := range []struct {
			name     string
			target   string
			mod      ICMPModule
			timeout  time.Duration
			wantSent float64 // -1: fewer than Count
		}{
			{"single v4", silent4.String(), ICMPModule{}, 300 * time.Millisecond, 1},
			{"round v6", silent6.String(), ICMPModule{Count: 5, Interval: 10 * time.Millisecond}, 300 * time.Millisecond, 5},
			{"round longer than the deadline", silent4.String(), ICMPModule{Count: 100, Interval: 10 * time.Millisecond}, 300 * time.Millisecond, -1},
		} {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				before := runtime.NumGoroutine()
				start := time.Now()
				r := runICMP(pool, tc.target, tc.mod, tc.timeout)
				took := time.Since(start)
				if r.Success || r.Reason != ReasonLoss {
					t.Errorf("success %v reason %q (%s), want loss", r.Success, r.Reason, r.Detail)
				}
				if took < tc.timeout-time.Millisecond || took > tc.timeout+200*time.Millisecond {
					t.Errorf("took %v, deadline %v", took, tc.timeout)
				}
				sent := sample(t, r, "probe_icmp_packets_sent")
				if tc.wantSent >= 0 && sent != tc.wantSent || tc.wantSent < 0 && (sent < 1 || sent >= float64(tc.mod.Count)) {
					t.Errorf("sent %g, want %g", sent, tc.wantSent)
				}
				if l := sample(t, r, "probe_icmp_loss_ratio"); l != 1 {
					t.Errorf("loss %g", l)
				}
				for _, name := range []string{"probe_icmp_rtt_avg_seconds", "probe_icmp_jitter_seconds", "probe_icmp_reply_hop_limit"} {
					if _, ok := r.Get(name); ok {
						t.Errorf("%s set without a reply", name)
					}
				}
				for _, e := range pool.engines {
					if c := e.pendingCount(); c != 0 {
						t.Errorf("%d requests still pending", c)
					}
				}
				deadline := time.Now().Add(2 * time.Second)
				for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if g := runtime.NumGoroutine(); g > before {
					t.Errorf("%d goroutines, %d before", g, before)
				}
			})
		}
	}
}

// TestICMPNoCrossTalk runs 200 rounds at once through each engine to targets answering with
// different delays: each round's RTTs must be its own target's delay, not another's.
func TestICMPNoCrossTalk(t *testing.T) {
	n := newImpairedNet(t)
	const targets = 200
	delay := func(i int) time.Duration { return time.Duration(2+4*(i%5)) * time.Millisecond }
	addr := func(mi, i int) netip.Addr {
		if i%2 == 0 {
			return netip.MustParseAddr(fmt.Sprintf("10.232.%d.%d", 10+mi, 1+i))
		}
		return netip.MustParseAddr(fmt.Sprintf("fd00:232::%d:%x", 10+mi, 1+i))
	}
	var all []netip.Addr
	scripts := map[netip.Addr]*echoScript{}
	for mi := range icmpModes() {
		for i := range targets {
			a := addr(mi, i)
			all = append(all, a)
			scripts[a] = &echoScript{delay: constDelay(delay(i)), drop: noLoss}
			n.script(a, scripts[a])
		}
	}
	n.addTargets(t, all...)
	for mi, mode := range icmpModes() {
		t.Run(mode.name, func(t *testing.T) {
			pool := &icmpPool{mode: mode.mode, netns: n.prober.path}
			t.Cleanup(pool.close)
			results := make([]*Result, targets)
			var wg sync.WaitGroup
			for i := range targets {
				wg.Go(func() {
					results[i] = runICMP(pool, addr(mi, i).String(), ICMPModule{Count: 3, Interval: 5 * time.Millisecond}, 5*time.Second)
				})
			}
			wg.Wait()
			late := 0
			defer func() {
				// 600 requests in a few milliseconds on a shared machine: a few are delayed by
				// the scheduling of the test's own threads (the responder's included), but
				// not many.
				if late > 3*targets/20 {
					t.Errorf("%d of %d RTTs more than 1 ms longer than their injected delay", late, 3*targets)
				}
			}()
			for i, r := range results {
				if !r.Success || len(r.RTTs) != 3 {
					t.Errorf("%s: success %v RTTs %v (%s)", addr(mi, i), r.Success, r.RTTs, r.Detail)
					continue
				}
				log := scripts[addr(mi, i)].entries()
				if len(log) != 3 {
					t.Errorf("%s: the responder saw %d requests (RTTs %v)", addr(mi, i), len(log), r.RTTs)
					continue
				}
				for k, d := range r.RTTs {
					// Neighbouring targets' delays are 4 ms apart: a reply handed to the wrong
					// round would show a shorter RTT than this packet's delay for half of them,
					// or one far longer.
					if d < log[k].actual {
						t.Errorf("%s packet %d: RTT %v, shorter than its injected delay %v (scripted %v)", addr(mi, i), k, d, log[k].actual, delay(i))
					}
					if d > log[k].actual+time.Millisecond {
						late++
						t.Logf("%s packet %d: RTT %v, injected delay %v (scripted %v)", addr(mi, i), k, d, log[k].actual, delay(i))
					}
				}
			}
		})
	}
}
