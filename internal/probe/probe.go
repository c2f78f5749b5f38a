// Package probe runs outward connection tests from a host: ICMP rounds with latency, jitter and
// loss, TCP connect, DNS, HTTP(S) (directly or through a proxy), database logins and bulk
// throughput. Every prober is one function of one shape (blackbox_exporter's lesson): it gets a
// context whose deadline is the probe's, a target and a module, records what it measured into a
// Result under blackbox_exporter's metric names, and says whether the probe succeeded. The same
// probers serve the agent's continuous scheduler (sage_probe_* series), the blackbox-compatible
// /probe endpoint and `sage probe` on the command line.
package probe

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sort"
	"time"
)

// Prober runs one probe of target with module m, records its measurements in r and returns
// whether it succeeded. It must return by ctx's deadline, and on failure should call r.Fail with
// one of the Reason constants so that the reason is a bounded label, not free text.
type Prober func(ctx context.Context, target string, m *Module, r *Result, logger *slog.Logger) bool

var probers = map[string]Prober{}

// register adds a prober by the name modules give in `prober:`. Called from each prober file's init.
func register(name string, p Prober) {
	if _, dup := probers[name]; dup {
		panic("probe: prober registered twice: " + name)
	}
	probers[name] = p
}

// Lookup returns the prober registered under name.
func Lookup(name string) (Prober, bool) {
	p, ok := probers[name]
	return p, ok
}

// Kinds lists the registered probers' names, sorted.
func Kinds() []string {
	names := make([]string, 0, len(probers))
	for n := range probers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Reason is why a probe failed: a small fixed set, so that it can be a label value.
type Reason string

// The failure reasons. A prober picks the most specific that applies.
const (
	ReasonNone     Reason = ""
	ReasonConfig   Reason = "config"   // the module or target cannot be used (bad URL, missing secret)
	ReasonResolve  Reason = "resolve"  // the name did not resolve
	ReasonConnect  Reason = "connect"  // refused, unreachable, reset while connecting
	ReasonTimeout  Reason = "timeout"  // the deadline passed
	ReasonTLS      Reason = "tls"      // handshake or certificate verification failed
	ReasonProxy    Reason = "proxy"    // the proxy refused or failed the tunnel
	ReasonAuth     Reason = "auth"     // credentials refused
	ReasonStatus   Reason = "status"   // an unexpected HTTP status, DNS rcode or server answer
	ReasonContent  Reason = "content"  // a body, header or answer check failed
	ReasonProtocol Reason = "protocol" // the peer spoke something unexpected
	ReasonLoss     Reason = "loss"     // ICMP: every packet of the round was lost
	ReasonInternal Reason = "internal" // a bug in the prober (a recovered panic)
)

// Reasons lists every Reason but ReasonNone, for tests and for documentation.
var Reasons = []Reason{ReasonConfig, ReasonResolve, ReasonConnect, ReasonTimeout, ReasonTLS, ReasonProxy,
	ReasonAuth, ReasonStatus, ReasonContent, ReasonProtocol, ReasonLoss, ReasonInternal}

// Sample is one measured value under a blackbox_exporter metric name (probe_http_status_code),
// with its labels as name/value pairs in a fixed order.
type Sample struct {
	Name   string
	Help   string
	Labels []string // name, value, name, value, ...
	Value  float64
}

// Result is what one probe found. Probers add samples with Set; Run adds probe_success and
// probe_duration_seconds.
type Result struct {
	Samples []Sample
	// Reason is why the probe failed (ReasonNone when it succeeded), Detail the error behind it
	// for the log and the command line: never a label, since it is unbounded.
	Reason Reason
	Detail string
	// RTTs is the ICMP prober's round: one entry per packet sent, in order, and a negative
	// duration for a packet that got no reply. The scheduler feeds them to its histograms.
	RTTs []time.Duration
	// Duration and Success are set by Run.
	Duration time.Duration
	Success  bool
}

// Set records a sample; labels are name/value pairs. Setting the same name and labels again
// replaces the value.
func (r *Result) Set(name, help string, value float64, labels ...string) {
	if len(labels)%2 != 0 {
		panic("probe: odd label list for " + name)
	}
	for i := range r.Samples {
		if r.Samples[i].Name == name && slices.Equal(r.Samples[i].Labels, labels) {
			r.Samples[i].Value = value
			return
		}
	}
	r.Samples = append(r.Samples, Sample{Name: name, Help: help, Labels: labels, Value: value})
}

// Get returns the value of a sample, and whether it was set.
func (r *Result) Get(name string, labels ...string) (float64, bool) {
	for _, s := range r.Samples {
		if s.Name == name && slices.Equal(s.Labels, labels) {
			return s.Value, true
		}
	}
	return 0, false
}

// Fail records why the probe failed. The first reason recorded wins: it is the cause, what
// follows is usually its consequence.
func (r *Result) Fail(reason Reason, err error) {
	if r.Reason != ReasonNone {
		return
	}
	r.Reason = reason
	if err != nil {
		r.Detail = err.Error()
	}
}

// DefaultTimeout is a probe's deadline when neither the module nor the caller sets one:
// blackbox_exporter's default module timeout.
const DefaultTimeout = 5 * time.Second

// Run runs one probe of target with module m. The deadline is the module's timeout, or timeout
// when that is shorter and positive (the scrape timeout on /probe, a flag on the command line),
// or DefaultTimeout. A prober that panics fails the probe with ReasonInternal instead of taking
// the agent down.
func Run(ctx context.Context, target string, m *Module, timeout time.Duration, logger *slog.Logger) *Result {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Result{}
	p, ok := Lookup(m.Prober)
	if !ok {
		r.Fail(ReasonConfig, fmt.Errorf("unknown prober %q", m.Prober))
		r.finish(false, 0)
		return r
	}
	d := m.Timeout
	if d <= 0 || (timeout > 0 && timeout < d) {
		d = timeout
	}
	if d <= 0 {
		d = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	ok = func() (ok bool) {
		defer func() {
			if v := recover(); v != nil {
				logger.Error("prober panicked", "prober", m.Prober, "target", target, "panic", v, "stack", string(debug.Stack()))
				r.Fail(ReasonInternal, fmt.Errorf("prober %s panicked: %v", m.Prober, v))
				ok = false
			}
		}()
		return p(ctx, target, m, r, logger)
	}()
	if !ok && r.Reason == ReasonNone {
		if ctx.Err() != nil {
			r.Fail(ReasonTimeout, ctx.Err())
		} else {
			r.Fail(ReasonProtocol, nil)
		}
	}
	r.finish(ok, time.Since(start))
	return r
}

func (r *Result) finish(ok bool, d time.Duration) {
	r.Success = ok
	r.Duration = d
	if ok {
		r.Reason, r.Detail = ReasonNone, ""
	}
	v := 0.0
	if ok {
		v = 1
	}
	r.Set("probe_success", "Displays whether or not the probe was a success", v)
	r.Set("probe_duration_seconds", "Returns how long the probe took to complete in seconds", d.Seconds())
}
