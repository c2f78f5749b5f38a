package probe

import (
	"container/heap"
	"context"
	"hash/fnv"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// ScheduledTarget is one target as the scheduler runs it: its module resolved, its interval set.
type ScheduledTarget struct {
	Name       string // the `target` label
	Target     string // what the prober gets
	ModuleName string // the `module` label
	Module     *Module
	Interval   time.Duration
	Labels     []string // extra labels, name/value pairs sorted by name
}

// series is what identifies a target's series: two targets with the same would expose the same
// series twice.
func (t *ScheduledTarget) series() string {
	return t.Name + "\xff" + t.ModuleName + "\xff" + strings.Join(t.Labels, "\xff")
}

// SchedulerOptions configure a Scheduler.
type SchedulerOptions struct {
	Concurrency int // probes running at once; 0: DefaultConcurrency
	Logger      *slog.Logger
}

// Scheduler probes targets continuously, each on its own interval, as smokeping_prober does:
// one dispatcher goroutine keeps the targets in a heap ordered by their next run and starts each
// probe, when due, in a goroutine that holds one of Concurrency slots, so thousands of targets
// cost goroutines and sockets only for the probes actually running. A target's runs sit on a grid
// of its interval, offset by a hash of its identity so that targets are spread over the interval
// and keep their phase across reloads and restarts. A probe never overlaps itself: a target
// whose previous probe still runs when it is due skips that run (sage_probe_skipped_total).
//
// The last result of every target, its failure counts by reason and, for ICMP rounds, its RTT
// histogram, jitter, loss and packet counters are kept and exposed by Families as sage_probe_*.
type Scheduler struct {
	logger *slog.Logger
	sem    chan struct{}

	mu     sync.Mutex
	queue  timerHeap
	groups map[string][]*targetState // by group, sorted by series
	series map[string]*targetState   // every target, by series()
	wake   chan struct{}

	inFlight atomic.Int64
	wg       sync.WaitGroup
	cancel   context.CancelFunc
	done     chan struct{}
}

// NewScheduler returns a scheduler with no targets; Start runs it.
func NewScheduler(opts SchedulerOptions) *Scheduler {
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{
		logger: opts.Logger,
		sem:    make(chan struct{}, opts.Concurrency),
		groups: map[string][]*targetState{},
		series: map[string]*targetState{},
		wake:   make(chan struct{}, 1),
	}
}

// Start runs the scheduler until Stop or ctx's end.
func (s *Scheduler) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		s.loop(ctx)
	}()
}

// Stop ends the scheduler, cancels the probes running and waits for them.
func (s *Scheduler) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
	s.wg.Wait()
}

// targetState is one target's schedule and what its probes found.
type targetState struct {
	ScheduledTarget // Module and Interval change on reload, under Scheduler.mu
	group           string
	next            time.Time // under Scheduler.mu
	index           int       // in the heap, -1 when removed; under Scheduler.mu

	running atomic.Bool
	labels  []*dto.LabelPair // target, module and the extra labels, sorted by name

	mu        sync.Mutex // guards what follows
	last      *Result
	failures  []uint64 // by position in Reasons
	runs      uint64
	skipped   uint64
	sent      uint64
	received  uint64
	buckets   []uint64 // per RTTBuckets, not cumulative
	rttSum    float64
	round     roundSummary
	haveRound bool
}

// roundSummary summarise the last ICMP round.
type roundSummary struct {
	loss, jitter, min, avg, max float64
	replies                     int
}

// reasonIndex numbers the reasons for the failure counters.
var reasonIndex = func() map[Reason]int {
	m := make(map[Reason]int, len(Reasons))
	for i, r := range Reasons {
		m[r] = i
	}
	return m
}()

// RTTBuckets are the RTT histogram's upper bounds: smokeping_prober's default, 50 µs doubling up to
// 1.6 s, which covers loopback, LAN and WAN paths with a bucket per factor of two.
var RTTBuckets = func() []float64 {
	b := make([]float64, 16)
	for i := range b {
		b[i] = 50e-6 * math.Pow(2, float64(i))
	}
	return b
}()

// SetTargets replaces the targets of a group ("config", "mesh"): targets already there keep
// their state and schedule, new ones start at their spread offset, missing ones stop (a probe
// of theirs that runs finishes and is discarded). A target whose series another group already
// has is left out.
func (s *Scheduler) SetTargets(group string, targets []ScheduledTarget) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	old := map[string]*targetState{}
	for _, t := range s.groups[group] {
		old[t.series()] = t
	}
	list := make([]*targetState, 0, len(targets))
	for _, nt := range targets {
		key := nt.series()
		if t, ok := old[key]; ok {
			delete(old, key)
			if t.Interval != nt.Interval {
				t.Interval = nt.Interval
				t.next = firstRun(now, key, nt.Interval)
				heap.Fix(&s.queue, t.index)
			}
			t.Module, t.Target = nt.Module, nt.Target
			list = append(list, t)
			continue
		}
		if other, dup := s.series[key]; dup {
			s.logger.Warn("probe target left out: another group already probes it", "target", nt.Name,
				"module", nt.ModuleName, "group", group, "other_group", other.group)
			continue
		}
		t := &targetState{ScheduledTarget: nt, group: group, labels: labelPairs(&nt),
			buckets: make([]uint64, len(RTTBuckets)), failures: make([]uint64, len(Reasons))}
		t.next = firstRun(now, key, nt.Interval)
		heap.Push(&s.queue, t)
		s.series[key] = t
		list = append(list, t)
	}
	for key, t := range old {
		heap.Remove(&s.queue, t.index)
		delete(s.series, key)
	}
	slices.SortFunc(list, func(a, b *targetState) int { return strings.Compare(a.series(), b.series()) })
	s.groups[group] = list
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// firstRun is a target's next run from now: on the grid of its interval (counted from the Unix
// epoch) at an offset hashed from its identity, as Prometheus spreads its scrapes.
func firstRun(now time.Time, key string, interval time.Duration) time.Time {
	off := spreadOffset(key, interval)
	base := now.UnixNano() - now.UnixNano()%int64(interval)
	next := time.Unix(0, base+int64(off))
	if next.Before(now) {
		next = next.Add(interval)
	}
	return next
}

// spreadOffset is key's offset within an interval.
func spreadOffset(key string, interval time.Duration) time.Duration {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return time.Duration(h.Sum64() % uint64(interval))
}

func labelPairs(t *ScheduledTarget) []*dto.LabelPair {
	pairs := []*dto.LabelPair{
		{Name: ptr("module"), Value: ptr(t.ModuleName)},
		{Name: ptr("target"), Value: ptr(t.Name)},
	}
	for i := 0; i+1 < len(t.Labels); i += 2 {
		pairs = append(pairs, &dto.LabelPair{Name: ptr(t.Labels[i]), Value: ptr(t.Labels[i+1])})
	}
	slices.SortFunc(pairs, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
	return pairs
}

func ptr[T any](v T) *T { return &v }

// loop starts each target's probe when it is due.
func (s *Scheduler) loop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var (
			due     *targetState
			target  string
			module  *Module
			timeout time.Duration
			wait    = time.Hour
		)
		now := time.Now()
		s.mu.Lock()
		if len(s.queue) > 0 {
			t := s.queue[0]
			if d := t.next.Sub(now); d > 0 {
				wait = d
			} else {
				due, target, module, timeout = t, t.Target, t.Module, t.Interval
				t.next = t.next.Add(t.Interval)
				if t.next.Before(now) {
					// The dispatcher fell a whole interval behind (all slots busy, a suspended
					// machine): the runs missed are skipped, and the grid kept.
					missed := now.Sub(t.next)/t.Interval + 1
					t.next = t.next.Add(missed * t.Interval)
					t.mu.Lock()
					t.skipped += uint64(missed)
					t.mu.Unlock()
				}
				heap.Fix(&s.queue, 0)
			}
		}
		s.mu.Unlock()
		if due != nil {
			if !s.dispatch(ctx, due, target, module, timeout) {
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}

// dispatch starts one probe of t once a slot is free; false when ctx ended meanwhile.
func (s *Scheduler) dispatch(ctx context.Context, t *targetState, target string, m *Module, timeout time.Duration) bool {
	if !t.running.CompareAndSwap(false, true) {
		t.mu.Lock()
		t.skipped++
		t.mu.Unlock()
		return true
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		t.running.Store(false)
		return false
	}
	s.wg.Add(1)
	s.inFlight.Add(1)
	go func() {
		defer func() {
			s.inFlight.Add(-1)
			<-s.sem
			t.running.Store(false)
			s.wg.Done()
		}()
		// A probe's deadline is at most its interval, so that it ends before it is due again.
		r := Run(ctx, target, m, timeout, s.logger)
		if ctx.Err() != nil {
			return // stopped: the result says only that
		}
		t.record(r)
		if !r.Success {
			s.logger.Debug("probe failed", "target", t.Name, "module", t.ModuleName, "reason", string(r.Reason), "detail", r.Detail)
		}
	}()
	return true
}

// record keeps r as t's last result and adds it to t's counters and histogram.
func (t *targetState) record(r *Result) {
	var st roundSummary
	var sent, replies int
	var prev time.Duration = -1
	var jitterSum float64
	var jitterN int
	if len(r.RTTs) > 0 {
		st.min = math.Inf(1)
		var sum float64
		for _, d := range r.RTTs {
			sent++
			if d < 0 {
				continue
			}
			replies++
			v := d.Seconds()
			sum += v
			st.min = min(st.min, v)
			st.max = max(st.max, v)
			// RFC 3550's jitter is over consecutive packets; a lost packet has no transit time,
			// so the difference is taken between consecutive replies.
			if prev >= 0 {
				jitterSum += math.Abs((d - prev).Seconds())
				jitterN++
			}
			prev = d
		}
		st.replies = replies
		st.loss = float64(sent-replies) / float64(sent)
		if replies > 0 {
			st.avg = sum / float64(replies)
		}
		if jitterN > 0 {
			st.jitter = jitterSum / float64(jitterN)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last = r
	t.runs++
	if !r.Success {
		if i, ok := reasonIndex[r.Reason]; ok {
			t.failures[i]++
		} else {
			t.failures[reasonIndex[ReasonInternal]]++
		}
	}
	if sent > 0 {
		t.sent += uint64(sent)
		t.received += uint64(replies)
		for _, d := range r.RTTs {
			if d < 0 {
				continue
			}
			v := d.Seconds()
			t.rttSum += v
			i, _ := slices.BinarySearch(RTTBuckets, v)
			if i < len(t.buckets) {
				t.buckets[i]++
			}
		}
		t.round, t.haveRound = st, true
	}
}

// TargetStatus is a target's state, for tests and the command line.
type TargetStatus struct {
	ScheduledTarget
	Group          string
	Runs, Skipped  uint64
	Last           *Result
	Sent, Received uint64
}

// Status lists the targets with their state, sorted by group and series.
func (s *Scheduler) Status() []TargetStatus {
	s.mu.Lock() // for the targets' Module and Interval, which SetTargets changes
	defer s.mu.Unlock()
	var out []TargetStatus
	for _, t := range s.targetsLocked() {
		t.mu.Lock()
		out = append(out, TargetStatus{ScheduledTarget: t.ScheduledTarget, Group: t.group, Runs: t.runs,
			Skipped: t.skipped, Last: t.last, Sent: t.sent, Received: t.received})
		t.mu.Unlock()
	}
	return out
}

// targets lists every target, by group name then series.
func (s *Scheduler) targets() []*targetState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.targetsLocked()
}

func (s *Scheduler) targetsLocked() []*targetState {
	groups := make([]string, 0, len(s.groups))
	n := 0
	for g, l := range s.groups {
		groups = append(groups, g)
		n += len(l)
	}
	slices.Sort(groups)
	out := make([]*targetState, 0, n)
	for _, g := range groups {
		out = append(out, s.groups[g]...)
	}
	return out
}

// timerHeap orders targets by their next run.
type timerHeap []*targetState

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*targetState)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}
