package probe

import (
	"fmt"
	"io"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ResultFamilies is r as blackbox_exporter exposes a probe on /probe: one gauge family per
// sample name (probe_success, probe_duration_seconds, probe_http_status_code, ...), sorted by name.
func ResultFamilies(r *Result) []*dto.MetricFamily {
	var b familyBuilder
	for i := range r.Samples {
		sm := &r.Samples[i]
		b.add(sm.Name, sm.Help, dto.MetricType_GAUGE, &dto.Metric{
			Label: samplePairs(nil, sm.Labels),
			Gauge: &dto.Gauge{Value: ptr(sm.Value)},
		})
	}
	return b.list()
}

// SampleFamilies turns samples into families: a counter for a name ending in _total, else a gauge.
func SampleFamilies(samples []Sample) []*dto.MetricFamily {
	var b familyBuilder
	for i := range samples {
		sm := &samples[i]
		m := &dto.Metric{Label: samplePairs(nil, sm.Labels)}
		typ := dto.MetricType_GAUGE
		if strings.HasSuffix(sm.Name, "_total") {
			typ, m.Counter = dto.MetricType_COUNTER, &dto.Counter{Value: ptr(sm.Value)}
		} else {
			m.Gauge = &dto.Gauge{Value: ptr(sm.Value)}
		}
		b.add(sm.Name, sm.Help, typ, m)
	}
	return b.list()
}

// WriteResult writes r's families in format (expfmt's negotiated formats).
func WriteResult(w io.Writer, r *Result, format expfmt.Format) error {
	return writeFamilies(w, ResultFamilies(r), format)
}

func writeFamilies(w io.Writer, fams []*dto.MetricFamily, format expfmt.Format) error {
	enc := expfmt.NewEncoder(w, format)
	for _, mf := range fams {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("encoding %s: %w", mf.GetName(), err)
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		return c.Close()
	}
	return nil
}

// The scheduler's families. Every other sample of a target's last result is exposed too, renamed
// probe_X -> sage_probe_X, unless it would take one of these names.
const (
	famSuccess  = "sage_probe_success"
	famDuration = "sage_probe_duration_seconds"
	famFailures = "sage_probe_failures_total"
	famRuns     = "sage_probe_runs_total"
	famSkipped  = "sage_probe_skipped_total"
	famRTT      = "sage_probe_rtt_seconds"
	famRTTMin   = "sage_probe_rtt_min_seconds"
	famRTTAvg   = "sage_probe_rtt_avg_seconds"
	famRTTMax   = "sage_probe_rtt_max_seconds"
	famJitter   = "sage_probe_jitter_seconds"
	famLoss     = "sage_probe_loss_ratio"
	famSent     = "sage_probe_packets_sent_total"
	famReceived = "sage_probe_packets_received_total"
	famTargets  = "sage_probe_scheduler_targets"
	famInFlight = "sage_probe_scheduler_probes_in_flight"
	famSlots    = "sage_probe_scheduler_concurrency"
)

var ownFamilies = map[string]bool{famSuccess: true, famDuration: true, famFailures: true, famRuns: true,
	famSkipped: true, famRTT: true, famRTT + "_bucket": true, famRTT + "_sum": true, famRTT + "_count": true,
	famRTTMin: true, famRTTAvg: true, famRTTMax: true, famJitter: true, famLoss: true, famSent: true,
	famReceived: true, famTargets: true, famInFlight: true, famSlots: true}

// coveredSamples are the result samples the scheduler's own families already carry, better (the
// ICMP round's as a histogram and counters across rounds): not repeated under a sage_ name.
var coveredSamples = map[string]bool{"probe_success": true, "probe_duration_seconds": true,
	"probe_icmp_packets_sent": true, "probe_icmp_packets_received": true, "probe_icmp_loss_ratio": true,
	"probe_icmp_jitter_seconds": true, "probe_icmp_rtt_min_seconds": true, "probe_icmp_rtt_avg_seconds": true,
	"probe_icmp_rtt_max_seconds": true}

// Families returns the scheduler's metric families, sorted by name: per target (labels target,
// module and its own) the last probe's success, duration and other samples, its failures by
// reason, and for ICMP rounds its RTT histogram, last round's min/avg/max RTT, jitter and loss,
// and packet counters; and the scheduler's own gauges. A target not yet probed has only its
// counters.
func (s *Scheduler) Families() []*dto.MetricFamily {
	var b familyBuilder
	targets := s.targets()
	gauge := func(name, help string, v float64, labels []*dto.LabelPair) {
		b.add(name, help, dto.MetricType_GAUGE, &dto.Metric{Label: labels, Gauge: &dto.Gauge{Value: ptr(v)}})
	}
	counter := func(name, help string, v float64, labels []*dto.LabelPair) {
		b.add(name, help, dto.MetricType_COUNTER, &dto.Metric{Label: labels, Counter: &dto.Counter{Value: ptr(v)}})
	}
	gauge(famTargets, "Targets the agent's probe scheduler runs.", float64(len(targets)), nil)
	gauge(famInFlight, "Probes running now.", float64(s.inFlight.Load()), nil)
	gauge(famSlots, "Probes that may run at once (probes.concurrency).", float64(cap(s.sem)), nil)
	for _, t := range targets {
		t.mu.Lock()
		counter(famRuns, "Probes run of the target.", float64(t.runs), t.labels)
		counter(famSkipped, "Runs of the target skipped because its previous probe still ran, or the scheduler was behind.", float64(t.skipped), t.labels)
		for i, n := range t.failures {
			if n > 0 {
				counter(famFailures, "Failed probes of the target, by reason.", float64(n), withLabel(t.labels, "reason", string(Reasons[i])))
			}
		}
		if t.sent > 0 {
			counter(famSent, "ICMP echo requests sent to the target.", float64(t.sent), t.labels)
			counter(famReceived, "ICMP echo replies received from the target.", float64(t.received), t.labels)
			h := &dto.Histogram{SampleCount: ptr(t.received), SampleSum: ptr(t.rttSum)}
			var cum uint64
			for i, ub := range RTTBuckets {
				cum += t.buckets[i]
				h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: ptr(ub), CumulativeCount: ptr(cum)})
			}
			b.add(famRTT, "Round-trip times of ICMP echo replies.", dto.MetricType_HISTOGRAM, &dto.Metric{Label: t.labels, Histogram: h})
		}
		if t.haveRound {
			gauge(famLoss, "Share of the last ICMP round's echo requests that got no reply.", t.round.loss, t.labels)
			if t.round.replies > 0 {
				gauge(famRTTMin, "Shortest round-trip time of the last ICMP round.", t.round.min, t.labels)
				gauge(famRTTAvg, "Mean round-trip time of the last ICMP round.", t.round.avg, t.labels)
				gauge(famRTTMax, "Longest round-trip time of the last ICMP round.", t.round.max, t.labels)
			}
			if t.round.replies > 1 {
				gauge(famJitter, "Mean absolute difference of consecutive round-trip times in the last ICMP round (RFC 3550).", t.round.jitter, t.labels)
			}
		}
		if r := t.last; r != nil {
			v := 0.0
			if r.Success {
				v = 1
			}
			gauge(famSuccess, "Whether the target's last probe succeeded.", v, t.labels)
			gauge(famDuration, "How long the target's last probe took.", r.Duration.Seconds(), t.labels)
			for i := range r.Samples {
				sm := &r.Samples[i]
				if coveredSamples[sm.Name] {
					continue
				}
				name := "sage_" + sm.Name
				if !strings.HasPrefix(sm.Name, "probe_") {
					name = "sage_probe_" + sm.Name
				}
				if ownFamilies[name] || !model.IsValidLegacyMetricName(name) {
					continue
				}
				gauge(name, sm.Help, sm.Value, samplePairs(t.labels, sm.Labels))
			}
		}
		t.mu.Unlock()
	}
	return b.list()
}

// withLabel is labels with one more, in name order.
func withLabel(labels []*dto.LabelPair, name, value string) []*dto.LabelPair {
	out := make([]*dto.LabelPair, 0, len(labels)+1)
	out = append(out, labels...)
	out = append(out, &dto.LabelPair{Name: ptr(name), Value: ptr(value)})
	slices.SortFunc(out, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// samplePairs merges a sample's labels into base: the sample's win over a target's own label of
// the same name, whose series would otherwise carry the name twice.
func samplePairs(base []*dto.LabelPair, pairs []string) []*dto.LabelPair {
	if len(pairs) == 0 {
		return base
	}
	out := make([]*dto.LabelPair, 0, len(base)+len(pairs)/2)
	for _, lp := range base {
		shadowed := false
		for i := 0; i+1 < len(pairs); i += 2 {
			if pairs[i] == lp.GetName() {
				shadowed = true
			}
		}
		if !shadowed {
			out = append(out, lp)
		}
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, &dto.LabelPair{Name: ptr(pairs[i]), Value: ptr(pairs[i+1])})
	}
	slices.SortFunc(out, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// familyBuilder groups metrics into families by name.
type familyBuilder struct {
	byName map[string]*dto.MetricFamily
}

// add appends m to the family name, created with help and typ if new; a metric whose type
// disagrees with its family's (two probers using one name differently) is dropped.
func (b *familyBuilder) add(name, help string, typ dto.MetricType, m *dto.Metric) {
	if b.byName == nil {
		b.byName = map[string]*dto.MetricFamily{}
	}
	mf, ok := b.byName[name]
	if !ok {
		mf = &dto.MetricFamily{Name: ptr(name), Type: typ.Enum()}
		if help != "" {
			mf.Help = ptr(help)
		}
		b.byName[name] = mf
	}
	if mf.GetType() != typ {
		return
	}
	mf.Metric = append(mf.Metric, m)
}

func (b *familyBuilder) list() []*dto.MetricFamily {
	out := make([]*dto.MetricFamily, 0, len(b.byName))
	for _, mf := range b.byName {
		out = append(out, mf)
	}
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}
