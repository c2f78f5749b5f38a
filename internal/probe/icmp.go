package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/serversage/sage/internal/config"
)

// ICMPModule is blackbox_exporter's icmp module plus rounds: Count echo requests Interval
// apart, from which RTT min/avg/max, jitter and loss are computed. Count 0 means 1 (blackbox's
// single packet), so blackbox modules behave as before.
//
// Interval 0 with Count > 1 means 100 ms, shortened when needed so that the round's requests
// are all sent within the first half of the probe's deadline and the last one has the other
// half to be answered. An explicit Interval is kept; requests whose time to be sent comes after
// the deadline are not sent (and not counted as sent).
type ICMPModule struct {
	IPProtocol      `yaml:",inline"`
	SourceIPAddress string        `yaml:"source_ip_address"`
	PayloadSize     int           `yaml:"payload_size"`
	DontFragment    bool          `yaml:"dont_fragment"`
	TTL             int           `yaml:"ttl"`
	Count           int           `yaml:"count"`
	Interval        time.Duration `yaml:"interval"` // spacing between the round's packets
}

// Limits of an ICMP module.
const (
	// MaxICMPCount bounds a round: each request is a pending entry and an RTT kept in the Result.
	MaxICMPCount = 10000
	// maxICMPPayload is the largest echo payload IPv4 can carry (65535 - 20 - 8).
	maxICMPPayload = 65507
	// defaultICMPInterval is the spacing of a round's requests when the module gives none.
	defaultICMPInterval = 100 * time.Millisecond
	// icmpDefaultPayload is blackbox_exporter's payload, used when payload_size is 0.
	icmpDefaultPayload = "Prometheus Blackbox Exporter"
)

func (m *ICMPModule) validate(path string) []config.FieldError {
	errs := m.IPProtocol.validate(path)
	if m.SourceIPAddress != "" {
		if _, err := netip.ParseAddr(m.SourceIPAddress); err != nil {
			errs = append(errs, config.Errorf(path+".source_ip_address", "%q is not an IP address", m.SourceIPAddress))
		}
	}
	if m.PayloadSize < 0 || m.PayloadSize > maxICMPPayload {
		errs = append(errs, config.Errorf(path+".payload_size", "must be between 0 and %d", maxICMPPayload))
	}
	if m.TTL < 0 || m.TTL > 255 {
		errs = append(errs, config.Errorf(path+".ttl", "must be between 0 (the system's default) and 255"))
	}
	if m.Count < 0 || m.Count > MaxICMPCount {
		errs = append(errs, config.Errorf(path+".count", "must be between 0 (one packet) and %d", MaxICMPCount))
	}
	if m.Interval < 0 {
		errs = append(errs, config.Errorf(path+".interval", "must not be negative"))
	}
	return errs
}

func init() { register("icmp", probeICMP) }

func probeICMP(ctx context.Context, target string, m *Module, r *Result, logger *slog.Logger) bool {
	return defaultICMPPool.probe(ctx, target, &m.ICMP, r, logger)
}

const icmpDurationHelp = "Duration of icmp request by phase"

// icmpPhases are the label pairs of probe_icmp_duration_seconds, shared (read-only) by every
// Result instead of a slice allocated per sample.
var icmpPhases = [][]string{{"phase", "resolve"}, {"phase", "setup"}, {"phase", "rtt"}}

// probe runs one round. The metrics are blackbox_exporter's (probe_icmp_duration_seconds by
// phase, where "rtt" is the round's average RTT: the RTT itself for blackbox's single packet;
// probe_icmp_reply_hop_limit of the last reply) and the round's own:
//
//	probe_icmp_packets_sent, probe_icmp_packets_received
//	probe_icmp_loss_ratio       (sent - received) / sent
//	probe_icmp_rtt_{min,avg,max}_seconds over the replies      (set when there is a reply)
//	probe_icmp_jitter_seconds   mean of |RTT[k] - RTT[k-1]| over consecutive replies
//	                            (set when there are two replies)
//
// The jitter is RFC 3550's interarrival variation taken on round trips, unsmoothed: for the
// replies in the order their requests were sent, k = 2..n with lost packets skipped,
// J = sum |R_k - R_(k-1)| / (n - 1). RFC 3550 smooths the same differences with a 1/16 gain
// over a stream; a round is short, so its plain mean is reported.
func (p *icmpPool) probe(ctx context.Context, target string, mod *ICMPModule, r *Result, logger *slog.Logger) bool {
	// Room for the round's samples at once: at thousands of rounds a second, growing the slice
	// sample by sample was a third of the bytes the engine allocated.
	r.Samples = slices.Grow(r.Samples, 16)
	for _, phase := range icmpPhases {
		r.Set("probe_icmp_duration_seconds", icmpDurationHelp, 0, phase...)
	}
	ip, err := resolve(ctx, target, mod.IPProtocol, r, "probe_icmp_duration_seconds")
	if err != nil {
		logger.Debug("icmp: resolving", "target", target, "err", err)
		return false
	}
	dst, ok := netip.AddrFromSlice(ip)
	if !ok {
		r.Fail(ReasonResolve, fmt.Errorf("address %v", ip))
		return false
	}
	dst = dst.Unmap()

	setupStart := time.Now()
	key := icmpEngineKey{v6: dst.Is6(), ttl: mod.TTL, df: mod.DontFragment}
	if mod.SourceIPAddress != "" {
		src, err := netip.ParseAddr(mod.SourceIPAddress)
		if err != nil {
			r.Fail(ReasonConfig, fmt.Errorf("source_ip_address: %w", err))
			return false
		}
		src = src.Unmap()
		if src.Is6() != key.v6 {
			r.Fail(ReasonConfig, fmt.Errorf("source_ip_address %s is not of the target's family (%s)", src, dst))
			return false
		}
		key.src = src
	}
	eng, err := p.engine(key)
	if err != nil {
		r.Fail(ReasonConfig, err)
		logger.Warn("icmp: no socket", "target", target, "err", err)
		return false
	}
	size := mod.PayloadSize
	if size == 0 {
		size = len(icmpDefaultPayload)
	}
	count := max(mod.Count, 1)
	interval := mod.Interval
	if interval == 0 && count > 1 {
		interval = defaultICMPInterval
		if deadline, ok := ctx.Deadline(); ok {
			if budget := time.Until(deadline) / 2 / time.Duration(count-1); budget < interval {
				interval = max(budget, 0)
			}
		}
	}
	r.Set("probe_icmp_duration_seconds", icmpDurationHelp, time.Since(setupStart).Seconds(), icmpPhases[1]...)

	rd := eng.round(ctx, dst, count, interval, size)
	r.RTTs = rd.rtts
	st := roundStats(rd.rtts)
	r.Set("probe_icmp_packets_sent", "Number of echo requests sent in the round", float64(st.sent))
	r.Set("probe_icmp_packets_received", "Number of echo replies received in the round", float64(st.received))
	if st.sent > 0 {
		r.Set("probe_icmp_loss_ratio", "Share of the round's echo requests that got no reply", st.loss)
	}
	if st.received > 0 {
		r.Set("probe_icmp_duration_seconds", icmpDurationHelp, st.avg.Seconds(), icmpPhases[2]...)
		r.Set("probe_icmp_rtt_min_seconds", "Shortest round-trip time of the round", st.min.Seconds())
		r.Set("probe_icmp_rtt_avg_seconds", "Mean round-trip time of the round", st.avg.Seconds())
		r.Set("probe_icmp_rtt_max_seconds", "Longest round-trip time of the round", st.max.Seconds())
		if rd.hopLimit >= 0 {
			r.Set("probe_icmp_reply_hop_limit", "Replied packet hop limit (TTL for ipv4)", float64(rd.hopLimit))
		}
	}
	if st.received > 1 {
		r.Set("probe_icmp_jitter_seconds", "Mean absolute difference of consecutive round-trip times of the round", st.jitter.Seconds())
	}
	logger.Debug("icmp round", "target", target, "addr", dst, "raw", eng.key.raw, "sent", st.sent, "received", st.received,
		"avg", st.avg, "jitter", st.jitter)
	if st.received > 0 {
		return true
	}
	switch {
	case rd.sendErr != nil && rd.sendErrs == st.sent:
		r.Fail(ReasonConnect, rd.sendErr)
	case st.sent == 0 && ctx.Err() != nil:
		r.Fail(ReasonTimeout, ctx.Err())
	default:
		err := fmt.Errorf("no reply to %d echo requests", st.sent)
		if rd.sendErr != nil {
			err = errors.Join(err, rd.sendErr)
		}
		r.Fail(ReasonLoss, err)
	}
	return false
}

// icmpRound is what one round saw.
type icmpRound struct {
	rtts     []time.Duration // per request in order; -1 for no reply
	hopLimit int             // of the last reply to arrive; -1 unknown
	sendErr  error           // the first error sending a request
	sendErrs int
}

// icmpRoundState is one round in flight. Its goroutine sends the first request and then only
// waits: the engine's sender sends the others when due and the reader records the replies, and
// the goroutine is woken once, when the round has everything it will get.
type icmpRoundState struct {
	eng      *icmpEngine
	req      *echoRequest // sent again for each request; only by whoever sends the next one
	count    int
	interval time.Duration
	start    time.Time
	deadline time.Time // zero: none

	next time.Time // when the next request is due; under eng.sendMu while queued

	done chan struct{} // one signal (buffered): every request sent has its reply or failed

	mu       sync.Mutex // guards what follows
	rd       icmpRound  // rtts has an entry per request sent or being sent
	keys     []icmpPendingKey
	sending  bool // requests remain to be sent
	received int
	finished bool // the round's goroutine has taken the result: late replies and sends are dropped
}

// round sends count echo requests to dst interval apart, the first at once, and waits for their
// replies until all have come or ctx ends.
func (e *icmpEngine) round(ctx context.Context, dst netip.Addr, count int, interval time.Duration, size int) icmpRound {
	rs := &icmpRoundState{eng: e, req: e.newEchoRequest(dst, icmpPayload(size)), count: count, interval: interval,
		done: make(chan struct{}, 1), sending: true}
	rs.rd = icmpRound{rtts: make([]time.Duration, 0, count), hopLimit: -1}
	rs.keys = make([]icmpPendingKey, 0, count)
	if deadline, ok := ctx.Deadline(); ok {
		rs.deadline = deadline
	}
	rs.start = time.Now()
	if next, more := rs.sendOne(); more {
		e.schedule(rs, next)
	}
	select {
	case <-rs.done:
	case <-ctx.Done():
	}
	rs.mu.Lock()
	rs.finished = true
	rd, keys := rs.rd, rs.keys
	rs.mu.Unlock()
	// Requests still unanswered are forgotten so that a late reply finds nobody waiting.
	e.mu.Lock()
	for _, k := range keys {
		if pe, ok := e.pending[k]; ok && pe.round == rs {
			delete(e.pending, k)
		}
	}
	e.mu.Unlock()
	return rd
}

// sendOne sends the round's next request; more says whether another is to be sent, at next.
// Requests whose time comes at or after the deadline are not sent.
func (rs *icmpRoundState) sendOne() (next time.Time, more bool) {
	rs.mu.Lock()
	if rs.finished {
		rs.mu.Unlock()
		return next, false
	}
	idx := len(rs.rd.rtts)
	rs.rd.rtts = append(rs.rd.rtts, -1) // before sending: the reply may come before send returns
	rs.mu.Unlock()

	key, err := rs.eng.send(rs.req, idx, rs)

	rs.mu.Lock()
	defer rs.mu.Unlock()
	if err != nil {
		rs.rd.sendErrs++
		if rs.rd.sendErr == nil {
			rs.rd.sendErr = err
		}
	} else {
		rs.keys = append(rs.keys, key)
	}
	if idx+1 < rs.count && !rs.finished {
		next = rs.start.Add(time.Duration(idx+1) * rs.interval)
		more = rs.deadline.IsZero() || next.Before(rs.deadline)
	}
	rs.sending = more
	rs.checkDone()
	return next, more
}

// reply records request idx's reply.
func (rs *icmpRoundState) reply(idx int, rtt time.Duration, hopLimit int) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.finished || idx >= len(rs.rd.rtts) || rs.rd.rtts[idx] >= 0 {
		return
	}
	rs.rd.rtts[idx] = rtt
	if hopLimit >= 0 {
		rs.rd.hopLimit = hopLimit
	}
	rs.received++
	rs.checkDone()
}

// checkDone wakes the round's goroutine once every request is sent and answered or failed;
// under rs.mu.
func (rs *icmpRoundState) checkDone() {
	if !rs.sending && rs.received+rs.rd.sendErrs == len(rs.rd.rtts) {
		select {
		case rs.done <- struct{}{}:
		default:
		}
	}
}

// icmpPayload is blackbox_exporter's payload of size bytes (its text, zero-padded or cut); the
// engine writes its token over the first 8 bytes.
func icmpPayload(size int) []byte {
	b := make([]byte, size)
	copy(b, icmpDefaultPayload)
	return b
}

type icmpStats struct {
	sent, received int
	loss           float64
	min, avg, max  time.Duration
	jitter         time.Duration
}

// roundStats computes the round's figures from its RTTs (negative: lost); see probe for the
// formulas.
func roundStats(rtts []time.Duration) icmpStats {
	st := icmpStats{sent: len(rtts)}
	var sum, diffs float64
	prev := time.Duration(-1)
	for _, d := range rtts {
		if d < 0 {
			continue
		}
		if st.received == 0 || d < st.min {
			st.min = d
		}
		st.max = max(st.max, d)
		sum += float64(d)
		if prev >= 0 {
			diffs += math.Abs(float64(d - prev))
		}
		prev = d
		st.received++
	}
	if st.sent > 0 {
		st.loss = float64(st.sent-st.received) / float64(st.sent)
	}
	if st.received > 0 {
		st.avg = time.Duration(sum / float64(st.received))
	}
	if st.received > 1 {
		st.jitter = time.Duration(diffs / float64(st.received-1))
	}
	return st
}
