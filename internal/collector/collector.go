// Package collector measures a host: each collector reads one part of it (CPU, memory, filesystems,
// processes, listeners, the kernel log, ...) and turns what it reads into Prometheus metrics.
//
// Collectors are registered by name in the file that defines them, enabled or disabled by name in the
// agent's configuration, and run concurrently on every scrape, each under its own deadline. A collector
// that cannot read what it needs returns an error: the scrape still succeeds, the failure shows as
// sage_collector_success{collector="..."} 0, and it is logged once until the collector recovers.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const namespace = "sage"

// A Collector reads one part of the host. Update adds the collector's metrics to m; it returns an
// error when it could not read all it needs, and the metrics added before the error are still exposed.
// Update must return promptly once ctx is done; a collector that cannot (a syscall stuck on a dead NFS
// server) is abandoned by the scrape, and its late metrics are dropped.
type Collector interface {
	Update(ctx context.Context, m *Metrics) error
}

// Factory builds a collector from the configuration. It returns an error only for a configuration
// the collector cannot work with; a host that lacks what the collector reads is not such an error,
// because the host may change (a module loaded, a file system mounted) while the agent runs.
type Factory func(cfg *Config, logger *slog.Logger) (Collector, error)

type registration struct {
	factory        Factory
	defaultEnabled bool
}

var registry = map[string]registration{}

// register is called from the init function of each collector's file, so that a collector is one file.
func register(name string, defaultEnabled bool, f Factory) {
	if _, dup := registry[name]; dup {
		panic("collector: " + name + " registered twice") // a programming error, caught by any test run
	}
	registry[name] = registration{factory: f, defaultEnabled: defaultEnabled}
}

// Names lists every registered collector, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Known reports whether a collector of that name exists.
func Known(name string) bool {
	_, ok := registry[name]
	return ok
}

// DefaultEnabled reports whether the named collector runs when the configuration says nothing of it.
func DefaultEnabled(name string) bool {
	return registry[name].defaultEnabled
}

// Metrics collects what one collector emits in one scrape. Its helpers store samples of
// descriptors built once, at collector construction, which is what keeps a scrape cheap.
type Metrics struct {
	list []sample
	err  error
}

// Gauge appends a gauge sample.
func (m *Metrics) Gauge(desc *Desc, v float64, labelValues ...string) {
	m.add(desc, prometheus.GaugeValue, v, labelValues)
}

// Counter appends a counter sample.
func (m *Metrics) Counter(desc *Desc, v float64, labelValues ...string) {
	m.add(desc, prometheus.CounterValue, v, labelValues)
}

func (m *Metrics) add(desc *Desc, kind prometheus.ValueType, v float64, labelValues []string) {
	if err := desc.check(labelValues); err != nil {
		// A mismatch between a descriptor and its label values is a bug; record it rather than panic,
		// so the collector shows as failed instead of taking the agent down.
		if m.err == nil {
			m.err = err
		}
		return
	}
	m.list = append(m.list, sample{desc: desc, kind: kind, value: v, labels: desc.labelPairs(labelValues)})
}

// addShared appends a sample whose label pairs the collector built once for the series, with
// labelPairsFor, and keeps: the cheap way to emit per-device series every scrape.
func (m *Metrics) addShared(desc *Desc, kind prometheus.ValueType, v float64, labels []*dto.LabelPair) {
	if desc.err != nil {
		if m.err == nil {
			m.err = desc.err
		}
		return
	}
	m.list = append(m.list, sample{desc: desc, kind: kind, value: v, labels: labels})
}

// Len is the number of metrics added so far.
func (m *Metrics) Len() int { return len(m.list) }

// List returns the metrics added so far, for tests.
func (m *Metrics) List() []prometheus.Metric {
	l := make([]prometheus.Metric, len(m.list))
	for i := range m.list {
		l[i] = &m.list[i]
	}
	return l
}

// Set runs a group of enabled collectors, for Gather or as one prometheus.Collector.
type Set struct {
	members []*member // sorted by name
	logger  *slog.Logger
	mu      sync.Mutex // guards member.failed

	quit      chan struct{} // closed by Close: the members' workers stop
	closeOnce sync.Once
}

type member struct {
	name    string
	c       Collector
	timeout time.Duration
	labels  []*dto.LabelPair // {collector="name"}, of sage_collector_success and _duration
	size    atomic.Int64     // samples of its last complete run: the next run's initial capacity
	failed  bool             // its last failure was logged, to log once per outage; guarded by Set.mu

	// work feeds the member's worker goroutine, which runs the collector scrape after scrape: a
	// goroutine per run would grow a new stack every time. Unbuffered: a run is handed over only
	// when the worker is idle, and one left running past its deadline makes the next run start a
	// goroutine of its own, as every run did before.
	work      chan *run
	startOnce sync.Once

	spareMu sync.Mutex
	spare   []sample // the storage of a run whose samples were copied out, for the next run
}

// run is one run of one collector.
type run struct {
	ctx     context.Context
	m       Metrics
	done    chan struct{} // closed when Update returned
	err     error
	elapsed time.Duration
}

// recycle keeps list's storage for the next run. Only Gather recycles: it is done with the samples
// when it returns, while Collect hands them to a registry that may read them later.
func (mb *member) recycle(list []sample) {
	clear(list) // not to keep label pairs of series gone alive
	mb.spareMu.Lock()
	if cap(list) > cap(mb.spare) {
		mb.spare = list[:0]
	}
	mb.spareMu.Unlock()
}

// newRun prepares a run of mb, on recycled sample storage when there is some.
func (mb *member) newRun(ctx context.Context) *run {
	mb.spareMu.Lock()
	list := mb.spare
	mb.spare = nil
	mb.spareMu.Unlock()
	// Room for this run's samples and the two the set adds.
	if need := int(mb.size.Load()) + 2; cap(list) < need {
		list = make([]sample, 0, need)
	}
	return &run{ctx: ctx, m: Metrics{list: list}, done: make(chan struct{})}
}

// start has the collector run r, in the member's worker when it is idle.
func (s *Set) start(mb *member, r *run) {
	mb.startOnce.Do(func() {
		mb.work = make(chan *run)
		go func() {
			for {
				select {
				case r := <-mb.work:
					mb.exec(r)
				case <-s.quit:
					return
				}
			}
		}()
	})
	select {
	case mb.work <- r:
	default:
		go mb.exec(r)
	}
}

func (mb *member) exec(r *run) {
	start := time.Now()
	r.err = updateRecovering(r.ctx, mb.c, &r.m)
	r.elapsed = time.Since(start)
	close(r.done)
}

var (
	successDesc = newDesc(namespace+"_collector_success",
		"Whether the collector read everything it needs in the last scrape (1) or not (0).",
		[]string{"collector"})
	durationDesc = newDesc(namespace+"_collector_duration_seconds",
		"How long the collector took in the last scrape.",
		[]string{"collector"})
)

// ErrTimeout is what a collector that missed its deadline reports.
var ErrTimeout = errors.New("deadline exceeded")

func newSet(logger *slog.Logger) *Set {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Set{logger: logger, quit: make(chan struct{})}
}

// NewSet builds every collector that cfg enables. An error names the collector whose configuration
// it cannot use.
func NewSet(cfg *Config, logger *slog.Logger) (*Set, error) {
	s := newSet(logger)
	c := *cfg
	c.withDefaults()
	cfg = &c
	for _, name := range cfg.EnabledNames() {
		reg, ok := registry[name]
		if !ok {
			s.Close()
			return nil, fmt.Errorf("unknown collector %q", name)
		}
		c, err := reg.factory(cfg, s.logger.With("collector", name))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("collector %s: %w", name, err)
		}
		s.add(name, c, cfg.TimeoutFor(name))
	}
	return s, nil
}

func (s *Set) add(name string, c Collector, timeout time.Duration) {
	s.members = append(s.members, &member{name: name, c: c, timeout: timeout, labels: labelPairsFor(successDesc, name)})
	slices.SortFunc(s.members, func(a, b *member) int { return strings.Compare(a.name, b.name) })
}

// Names lists the collectors in the set, sorted.
func (s *Set) Names() []string {
	names := make([]string, len(s.members))
	for i, m := range s.members {
		names[i] = m.name
	}
	return names
}

// Close releases what collectors hold between scrapes (open files, background readers), and stops
// the goroutines that run them.
func (s *Set) Close() {
	s.closeOnce.Do(func() { close(s.quit) })
	for _, m := range s.members {
		if cl, ok := m.c.(interface{ Close() error }); ok {
			_ = cl.Close()
		}
	}
}

// Describe sends nothing: the set is an unchecked collector, because what it exposes depends on the
// host (which disks, which file systems) and can change between scrapes.
func (s *Set) Describe(chan<- *prometheus.Desc) {}

// Collect runs every collector concurrently, each under its deadline, and sends their metrics plus
// sage_collector_success and sage_collector_duration_seconds for each.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	s.CollectContext(context.Background(), ch)
}

// CollectContext is Collect under a caller's context, so a scrape that is abandoned (the scraper
// gave up) stops its collectors too.
func (s *Set) CollectContext(ctx context.Context, ch chan<- prometheus.Metric) {
	for _, o := range s.runAll(ctx) {
		for i := range o.samples {
			ch <- &o.samples[i]
		}
	}
}

// outcome is one collector's part of a scrape: its samples, then its success and duration.
type outcome struct {
	samples []sample
}

// runAll runs every collector concurrently, each under its deadline, and returns what each
// produced, in the order of s.members.
func (s *Set) runAll(parent context.Context) []outcome {
	parent = withScrapeNumber(parent)
	// One context per distinct timeout (most collectors have the default), as every run starts now.
	type deadline struct {
		timeout time.Duration
		ctx     context.Context
	}
	var deadlines []deadline
	runs := make([]*run, len(s.members))
	for i, mb := range s.members {
		j := slices.IndexFunc(deadlines, func(d deadline) bool { return d.timeout == mb.timeout })
		if j < 0 {
			ctx, cancel := context.WithTimeout(parent, mb.timeout)
			defer cancel()
			deadlines = append(deadlines, deadline{mb.timeout, ctx})
			j = len(deadlines) - 1
		}
		runs[i] = mb.newRun(deadlines[j].ctx)
		s.start(mb, runs[i])
	}

	outs := make([]outcome, len(s.members))
	for i, mb := range s.members {
		r := runs[i]
		var done bool
		select { // what finished counts, even if a slower collector kept us past its deadline
		case <-r.done:
			done = true
		default:
			select {
			case <-r.done:
				done = true
			case <-r.ctx.Done():
			}
		}
		var list []sample
		err, elapsed := ErrTimeout, mb.timeout
		if done {
			list, err, elapsed = r.m.list, r.err, r.elapsed
			mb.size.Store(int64(len(list)))
		}
		// An abandoned run goes on with its Metrics; nothing of it is read or recycled any more.
		ok := 1.0
		if err != nil {
			ok = 0
		}
		if parent.Err() == nil { // a scraper that gave up failed nothing worth a log line
			s.logOutcome(mb, err)
		}
		list = append(list,
			sample{desc: successDesc, labels: mb.labels, value: ok, kind: prometheus.GaugeValue},
			sample{desc: durationDesc, labels: mb.labels, value: elapsed.Seconds(), kind: prometheus.GaugeValue})
		outs[i] = outcome{samples: list}
	}
	return outs
}

// logOutcome logs a collector's failure once, and its recovery once, so that a host without, say,
// /dev/kmsg does not fill the log with one line per scrape.
func (s *Set) logOutcome(mb *member, err error) {
	s.mu.Lock()
	was := mb.failed
	mb.failed = err != nil
	s.mu.Unlock()
	switch {
	case err != nil && !was:
		s.logger.Warn("collector failed", "collector", mb.name, "err", err)
	case err == nil && was:
		s.logger.Info("collector recovered", "collector", mb.name)
	}
}
