package probe

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/serversage/sage/internal/testenv"
)

func TestICMPModuleValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  ICMPModule
		bad  []string // fields reported
	}{
		{"zero is blackbox's single packet", ICMPModule{}, nil},
		{"round", ICMPModule{Count: 10, Interval: 20 * time.Millisecond, TTL: 64, PayloadSize: 1400, SourceIPAddress: "::1"}, nil},
		{"negative count", ICMPModule{Count: -1}, []string{"count"}},
		{"huge count", ICMPModule{Count: MaxICMPCount + 1}, []string{"count"}},
		{"negative interval", ICMPModule{Interval: -time.Second}, []string{"interval"}},
		{"ttl", ICMPModule{TTL: 256}, []string{"ttl"}},
		{"payload", ICMPModule{PayloadSize: 70000}, []string{"payload_size"}},
		{"source", ICMPModule{SourceIPAddress: "eth0"}, []string{"source_ip_address"}},
		{"protocol", ICMPModule{IPProtocol: IPProtocol{Preferred: "ip5"}}, []string{"preferred_ip_protocol"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := tc.mod.validate("m.icmp")
			if len(errs) != len(tc.bad) {
				t.Fatalf("got %v, want errors on %v", errs, tc.bad)
			}
			for i, e := range errs {
				if !strings.Contains(fmt.Sprint(e), "m.icmp."+tc.bad[i]) {
					t.Errorf("error %d = %v, want it on m.icmp.%s", i, e, tc.bad[i])
				}
			}
		})
	}
}

func TestRoundStats(t *testing.T) {
	ms := func(v ...float64) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			if x < 0 {
				d = append(d, -1)
			} else {
				d = append(d, time.Duration(x*float64(time.Millisecond)))
			}
		}
		return d
	}
	for _, tc := range []struct {
		name              string
		rtts              []time.Duration
		sent, received    int
		loss              float64
		min, avg, max, jt float64 // ms
	}{
		{"empty", nil, 0, 0, 0, 0, 0, 0, 0},
		{"one", ms(5), 1, 1, 0, 5, 5, 5, 0},
		{"all lost", ms(-1, -1), 2, 0, 1, 0, 0, 0, 0},
		{"alternating", ms(20, 26, 20, 26), 4, 4, 0, 20, 23, 26, 6},
		// Lost packets are skipped: the differences are 10-20 and 40-10.
		{"loss in between", ms(20, -1, 10, -1, -1, 40), 6, 3, 0.5, 10, 70.0 / 3, 40, 20},
		{"first lost", ms(-1, 1, 2, 4), 4, 3, 0.25, 1, 7.0 / 3, 4, 1.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := roundStats(tc.rtts)
			near := func(what string, got time.Duration, want float64) {
				if d := got.Seconds()*1000 - want; d > 1e-6 || d < -1e-6 {
					t.Errorf("%s = %v, want %gms", what, got, want)
				}
			}
			if st.sent != tc.sent || st.received != tc.received || st.loss != tc.loss {
				t.Errorf("sent/received/loss = %d/%d/%g, want %d/%d/%g", st.sent, st.received, st.loss, tc.sent, tc.received, tc.loss)
			}
			near("min", st.min, tc.min)
			near("avg", st.avg, tc.avg)
			near("max", st.max, tc.max)
			near("jitter", st.jitter, tc.jt)
		})
	}
}

func TestParseEchoReply(t *testing.T) {
	echo := func(typ icmp.Type, id, seq int, data string) []byte {
		b, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte(data)}}).Marshal(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withHeader := func(ttl byte, p []byte) []byte {
		h := make([]byte, 24) // with 4 bytes of options
		h[0], h[8], h[9] = 0x46, ttl, 1
		return append(h, p...)
	}
	for _, tc := range []struct {
		name     string
		b        []byte
		v6, hdr  bool
		ok       bool
		id, seq  uint16
		data     string
		hopLimit int
	}{
		{"v4 reply", echo(ipv4.ICMPTypeEchoReply, 7, 9, "abc"), false, false, true, 7, 9, "abc", -1},
		{"v4 reply after header", withHeader(61, echo(ipv4.ICMPTypeEchoReply, 1, 65535, "x")), false, true, true, 1, 65535, "x", 61},
		{"v4 request", echo(ipv4.ICMPTypeEcho, 7, 9, "abc"), false, false, false, 0, 0, "", 0},
		{"v6 reply", echo(ipv6.ICMPTypeEchoReply, 3, 4, ""), true, false, true, 3, 4, "", -1},
		{"v4 reply on v6", echo(ipv4.ICMPTypeEchoReply, 3, 4, ""), true, false, false, 0, 0, "", 0},
		{"short", []byte{0, 0, 0, 0, 0, 0, 0}, false, false, false, 0, 0, "", 0},
		{"header too short", []byte{0x45, 0, 0}, false, true, false, 0, 0, "", 0},
		{"not ICMP in header", func() []byte { b := withHeader(1, echo(ipv4.ICMPTypeEchoReply, 1, 1, "")); b[9] = 17; return b }(), false, true, false, 0, 0, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := parseEchoReply(tc.b, tc.v6, tc.hdr)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if ok && (e.id != tc.id || e.seq != tc.seq || string(e.data) != tc.data || e.hopLimit != tc.hopLimit) {
				t.Errorf("got %+v, want id %d seq %d data %q hop %d", e, tc.id, tc.seq, tc.data, tc.hopLimit)
			}
		})
	}
}

// FuzzParseEchoReply checks the parser against x/net's: whatever it accepts is an echo reply
// with the same identifier, sequence number and data.
func FuzzParseEchoReply(f *testing.F) {
	for _, typ := range []icmp.Type{ipv4.ICMPTypeEchoReply, ipv6.ICMPTypeEchoReply, ipv4.ICMPTypeEcho} {
		b, _ := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: 1, Seq: 2, Data: []byte("data")}}).Marshal(nil)
		f.Add(b, false, false)
		f.Add(b, true, false)
		f.Add(append([]byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, b...), false, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, v6, hdr bool) {
		e, ok := parseEchoReply(b, v6, hdr)
		if !ok {
			return
		}
		msg := b
		if hdr {
			msg = b[int(b[0]&0x0f)*4:]
		}
		proto := 1
		if v6 {
			proto = 58
		}
		m, err := icmp.ParseMessage(proto, msg)
		if err != nil {
			t.Fatalf("accepted what x/net rejects: %v", err)
		}
		want := icmp.Type(ipv4.ICMPTypeEchoReply)
		if v6 {
			want = ipv6.ICMPTypeEchoReply
		}
		echo, isEcho := m.Body.(*icmp.Echo)
		if m.Type != want || !isEcho || echo.ID != int(e.id) || echo.Seq != int(e.seq) || string(echo.Data) != string(e.data) {
			t.Fatalf("parsed %+v, x/net %+v %+v", e, m, m.Body)
		}
	})
}

func TestParseICMPControlGarbage(t *testing.T) {
	// Truncated control data must not be read past its end.
	for _, oob := range [][]byte{nil, {1, 2, 3}, make([]byte, 17), binary.NativeEndian.AppendUint64(nil, 200)} {
		rx, hop, drops := parseICMPControl(oob)
		if !rx.IsZero() || hop != -1 || drops != -1 {
			t.Errorf("%v: got %v %d %d", oob, rx, hop, drops)
		}
	}
}

// runICMP does what Run does, with the given pool.
func runICMP(p *icmpPool, target string, mod ICMPModule, timeout time.Duration) *Result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r := &Result{}
	start := time.Now()
	ok := p.probe(ctx, target, &mod, r, testLogger())
	if !ok && r.Reason == ReasonNone {
		r.Fail(ReasonTimeout, ctx.Err())
	}
	r.finish(ok, time.Since(start))
	return r
}

func testLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func sample(t *testing.T, r *Result, name string, labels ...string) float64 {
	t.Helper()
	v, ok := r.Get(name, labels...)
	if !ok {
		t.Fatalf("no sample %s%v in %+v", name, labels, r.Samples)
	}
	return v
}

// checkHealthyRound asserts what a round with every reply must show.
func checkHealthyRound(t *testing.T, r *Result, count int, elapsed time.Duration) {
	t.Helper()
	if !r.Success {
		t.Fatalf("failed: %s %s", r.Reason, r.Detail)
	}
	if len(r.RTTs) != count {
		t.Fatalf("%d RTTs, want %d", len(r.RTTs), count)
	}
	for i, d := range r.RTTs {
		if d <= 0 || d > elapsed {
			t.Errorf("RTT %d = %v, want in (0, %v]", i, d, elapsed)
		}
	}
	if s, rcv, loss := sample(t, r, "probe_icmp_packets_sent"), sample(t, r, "probe_icmp_packets_received"), sample(t, r, "probe_icmp_loss_ratio"); s != float64(count) || rcv != float64(count) || loss != 0 {
		t.Errorf("sent %g received %g loss %g, want %d %d 0", s, rcv, loss, count, count)
	}
	lo, avg, hi := sample(t, r, "probe_icmp_rtt_min_seconds"), sample(t, r, "probe_icmp_rtt_avg_seconds"), sample(t, r, "probe_icmp_rtt_max_seconds")
	if !(lo > 0 && lo <= avg && avg <= hi) {
		t.Errorf("min %g avg %g max %g out of order", lo, avg, hi)
	}
	if rtt := sample(t, r, "probe_icmp_duration_seconds", "phase", "rtt"); rtt != avg {
		t.Errorf("phase rtt %g, want the average %g", rtt, avg)
	}
	for _, ph := range []string{"resolve", "setup"} {
		sample(t, r, "probe_icmp_duration_seconds", "phase", ph)
	}
	sample(t, r, "probe_ip_protocol")
	sample(t, r, "probe_icmp_reply_hop_limit")
}

// TestICMPLoopbackDefault runs the registered prober through Run, as the agent and /probe do,
// in the test's own network namespace.
func TestICMPLoopbackDefault(t *testing.T) {
	testenv.Root(t, "raw ICMP sockets (the host's ping_group_range may not allow ping sockets)")
	for _, tc := range []struct {
		target string
		count  int
		proto  float64
	}{
		{"127.0.0.1", 0, 4},
		{"127.0.0.1", 5, 4},
		{"::1", 1, 6},
		{"::1", 5, 6},
		{"localhost", 3, 4}, // resolved, preferring ip4
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.target, tc.count), func(t *testing.T) {
			m := &Module{Prober: "icmp", ICMP: ICMPModule{Count: tc.count, Interval: 5 * time.Millisecond,
				IPProtocol: IPProtocol{Preferred: "ip4"}}}
			start := time.Now()
			r := Run(context.Background(), tc.target, m, 3*time.Second, nil)
			checkHealthyRound(t, r, max(tc.count, 1), time.Since(start))
			if p := sample(t, r, "probe_ip_protocol"); p != tc.proto {
				t.Errorf("probe_ip_protocol %g, want %g", p, tc.proto)
			}
			if _, ok := r.Get("probe_icmp_jitter_seconds"); ok != (tc.count > 1) {
				t.Errorf("jitter set: %v, want it with more than one reply", ok)
			}
		})
	}
}

// TestICMPLoopbackModes runs both kinds of socket on loopback in a namespace of the test's own,
// where ping sockets are allowed (they are per namespace), and checks which kind auto picks.
func TestICMPLoopbackModes(t *testing.T) {
	allowed := newNetns(t)
	allowed.ip(t, "link", "set", "lo", "up")
	allowed.sysctl(t, "net/ipv4/ping_group_range", "0 2147483647")
	refused := newNetns(t)
	refused.ip(t, "link", "set", "lo", "up")
	refused.sysctl(t, "net/ipv4/ping_group_range", "1 0")
	for _, tc := range []struct {
		name    string
		ns      *netns
		mode    icmpMode
		wantRaw bool
	}{
		{"unprivileged", allowed, icmpUnprivileged, false},
		{"raw", allowed, icmpRaw, true},
		{"auto prefers ping sockets", allowed, icmpAuto, false},
		{"auto falls back to raw", refused, icmpAuto, true},
	} {
		for _, target := range []string{"127.0.0.1", "::1"} {
			t.Run(tc.name+"/"+target, func(t *testing.T) {
				p := &icmpPool{mode: tc.mode, netns: tc.ns.path}
				t.Cleanup(p.close)
				start := time.Now()
				r := runICMP(p, target, ICMPModule{Count: 4, Interval: 5 * time.Millisecond, TTL: 33, DontFragment: true, PayloadSize: 100}, 3*time.Second)
				checkHealthyRound(t, r, 4, time.Since(start))
				if len(p.engines) != 1 {
					t.Fatalf("%d engines", len(p.engines))
				}
				for k := range p.engines {
					if k.raw != tc.wantRaw {
						t.Errorf("raw socket: %v, want %v", k.raw, tc.wantRaw)
					}
				}
				// The kernel answers loopback with its default TTL; ours (33) is the request's.
				if hop := sample(t, r, "probe_icmp_reply_hop_limit"); hop != 33 && hop != 64 {
					t.Errorf("hop limit %g", hop)
				}
			})
		}
	}
	t.Run("unprivileged refused", func(t *testing.T) {
		p := &icmpPool{mode: icmpUnprivileged, netns: refused.path}
		t.Cleanup(p.close)
		r := runICMP(p, "127.0.0.1", ICMPModule{}, time.Second)
		if r.Success || r.Reason != ReasonConfig {
			t.Errorf("success %v reason %q (%s), want a config failure", r.Success, r.Reason, r.Detail)
		}
	})
}

func TestICMPConfigFailures(t *testing.T) {
	testenv.Root(t, "raw ICMP sockets, so that a failure is the configuration's and not a refused socket")
	for _, tc := range []struct {
		name   string
		target string
		mod    ICMPModule
		reason Reason
	}{
		{"source of the other family", "127.0.0.1", ICMPModule{SourceIPAddress: "::1"}, ReasonConfig},
		{"source not local", "127.0.0.1", ICMPModule{SourceIPAddress: "192.0.2.1"}, ReasonConfig},
		{"unresolvable", "no-such-host.invalid", ICMPModule{}, ReasonResolve},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &icmpPool{mode: icmpRaw}
			t.Cleanup(p.close)
			r := runICMP(p, tc.target, tc.mod, 2*time.Second)
			if r.Success || r.Reason != tc.reason {
				t.Errorf("success %v reason %q (%s), want %q", r.Success, r.Reason, r.Detail, tc.reason)
			}
			if v, _ := r.Get("probe_success"); v != 0 {
				t.Errorf("probe_success %g", v)
			}
		})
	}
}

// TestICMPConcurrentLoopback sends 200 rounds at once through one engine to distinct
// loopback addresses: each must get all its own replies.
func TestICMPConcurrentLoopback(t *testing.T) {
	testenv.Root(t, "raw ICMP sockets")
	p := &icmpPool{mode: icmpRaw}
	t.Cleanup(p.close)
	const n = 200
	var wg sync.WaitGroup
	results := make([]*Result, n)
	for i := range n {
		wg.Go(func() {
			results[i] = runICMP(p, fmt.Sprintf("127.0.%d.%d", i/250, 1+i%250), ICMPModule{Count: 3, Interval: 2 * time.Millisecond}, 5*time.Second)
		})
	}
	wg.Wait()
	for i, r := range results {
		if !r.Success || len(r.RTTs) != 3 || r.RTTs[0] < 0 || r.RTTs[1] < 0 || r.RTTs[2] < 0 {
			t.Errorf("probe %d: success %v RTTs %v (%s)", i, r.Success, r.RTTs, r.Detail)
		}
	}
	for _, e := range p.engines {
		if c := e.pendingCount(); c != 0 {
			t.Errorf("%d requests still pending", c)
		}
	}
}

// TestICMPRoundsEnd checks how a round ends when the engine's sender sends its requests: the
// requests due before the deadline are sent and answered, none after it; a round whose context
// is cancelled midway sends nothing more, and neither leaves a request pending or a round
// queued in the sender.
func TestICMPRoundsEnd(t *testing.T) {
	testenv.Root(t, "raw ICMP sockets")
	p := &icmpPool{mode: icmpRaw}
	t.Cleanup(p.close)
	idle := func(t *testing.T) {
		t.Helper()
		for _, e := range p.engines {
			if c := e.pendingCount(); c != 0 {
				t.Errorf("%d requests still pending", c)
			}
			e.sendMu.Lock()
			if n := len(e.sendQ); n != 0 {
				t.Errorf("%d rounds still queued to send", n)
			}
			e.sendMu.Unlock()
		}
	}
	t.Run("deadline", func(t *testing.T) {
		// Requests at 0, 150, 300, 450 ms are before the 500 ms deadline, the fifth is not.
		r := runICMP(p, "127.0.0.1", ICMPModule{Count: 5, Interval: 150 * time.Millisecond}, 500*time.Millisecond)
		if !r.Success || len(r.RTTs) != 4 || slices.Min(r.RTTs) < 0 {
			t.Errorf("success %v RTTs %v (%s), want 4 answered requests", r.Success, r.RTTs, r.Detail)
		}
		idle(t)
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		e, err := p.engine(icmpEngineKey{})
		if err != nil {
			t.Fatal(err)
		}
		rd := e.round(ctx, netip.MustParseAddr("127.0.0.1"), 5, 200*time.Millisecond, 56)
		if len(rd.rtts) != 1 || rd.rtts[0] < 0 {
			t.Errorf("RTTs %v, want the first request answered and no other sent", rd.rtts)
		}
		time.Sleep(300 * time.Millisecond) // past the second request's time, when the sender drops the round
		idle(t)
	})
}
