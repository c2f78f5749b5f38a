package collector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Gather runs every collector as Collect does (concurrently, each under its deadline, with
// sage_collector_success and sage_collector_duration_seconds for each) and returns the metric
// families, sorted by name, their series sorted by label values as client_golang sorts them.
//
// It builds the families itself instead of through a prometheus.Registry: the registry makes a
// dto.Metric, a value and a hash per sample, one at a time, to check consistency that the tests
// already check through a pedantic registry, and that was most of what a scrape allocated. Here a
// scrape's families, metrics and values are a few slices each. What a registry would reject and
// a scrape could still meet (the same series twice, a family whose samples disagree on their type,
// help or label names) is dropped and reported in the error, with everything else returned.
//
// The families share what never changes between scrapes (names, help, label pairs) and must be
// treated as read-only.
func (s *Set) Gather(ctx context.Context) ([]*dto.MetricFamily, error) {
	var f Gathered
	err := s.GatherInto(ctx, &f)
	return f.List, err
}

// Gathered is one scrape's metric families, and the storage behind them, for reuse: GatherInto
// overwrites what the previous scrape left, so a caller that is done with one scrape's families
// (has written them out) can pass the same Gathered to the next scrape and allocate nothing.
//
// Every family is a gauge, counter or untyped family, without timestamps, and its name and label
// names are valid legacy Prometheus names (Desc refuses others): no escaping scheme changes them.
type Gathered struct {
	List []*dto.MetricFamily // sorted by name

	refs   []sref
	sorted []*sample
	spans  []span
	// The order by name of the last scrape's spans, by their position in id order, and their ids:
	// a host's set of descriptors seldom changes, so the next scrape can reuse it.
	spanOrder []int
	spanIDs   []uint64
	ordered   []span
	fams      []dto.MetricFamily
	metrics   []dto.Metric
	ptrs      []*dto.Metric
	values    []float64
	gauges    []dto.Gauge
	counters  []dto.Counter
	untyped   []dto.Untyped
	extra     [][]sample // the extra collectors' sample storage
}

// GatherInto is Gather into f, whose previous content it overwrites. The extra collectors run
// after the set's, in the calling goroutine, without deadline or sage_collector_* metrics: they
// are for what the caller exposes of itself (the agent's own metrics), which must not block.
func (s *Set) GatherInto(ctx context.Context, f *Gathered, extra ...Collector) error {
	outs := s.runAll(ctx)
	var errs []error
	for i, c := range extra {
		var m Metrics
		if i < len(f.extra) {
			m.list = f.extra[i]
		}
		if err := updateRecovering(ctx, c, &m); err != nil {
			errs = append(errs, err)
		}
		outs = append(outs, outcome{samples: m.list})
	}
	if err := f.build(outs); err != nil {
		errs = append(errs, err)
	}
	// The samples are copied out; their storage serves the collectors' next run.
	for i, mb := range s.members {
		mb.recycle(outs[i].samples)
	}
	f.extra = f.extra[:0]
	for _, o := range outs[len(s.members):] {
		clear(o.samples)
		f.extra = append(f.extra, o.samples[:0])
	}
	return errors.Join(errs...)
}

// updateRecovering runs c.Update, turning a panic into an error, and returns the error Update
// returned or the first that m recorded.
func updateRecovering(ctx context.Context, c Collector, m *Metrics) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	if err = c.Update(ctx, m); err == nil {
		err = m.err
	}
	return err
}

// reuse returns s with length n, zeroed, reallocated only when too small.
func reuse[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, n+n/8) // a little room: a host's series come and go
	}
	s = s[:n]
	clear(s)
	return s
}

// The metric types families point to; shared, never changed.
var (
	gaugeType   = dto.MetricType_GAUGE
	counterType = dto.MetricType_COUNTER
	untypedType = dto.MetricType_UNTYPED
)

func (f *Gathered) build(outs []outcome) error {
	n := 0
	for _, o := range outs {
		n += len(o.samples)
	}
	all := reuse(f.refs, n)[:0]
	for _, o := range outs {
		for i := range o.samples {
			all = append(all, sref{o.samples[i].desc.id, &o.samples[i]})
		}
	}
	f.refs = all
	refs := f.sort(all)

	// First pass: drop what cannot be exposed, and count families and values by type.
	var (
		kept         = refs[:0]
		fam          *sample // the first sample of the current family
		families     int
		ng, nc, nu   int
		dropped      int
		firstDropped error
		dropBecause  = func(r *sample, why string) {
			if dropped == 0 {
				firstDropped = fmt.Errorf("%s%s: %s", r.desc.name, labelString(r.labels), why)
			}
			dropped++
		}
	)
	for _, r := range refs {
		switch {
		case fam == nil || (r.desc != fam.desc && r.desc.name != fam.desc.name):
			fam = r
			families++
		case r.kind != fam.kind:
			dropBecause(r, "a "+kindName(r.kind)+" sample in a "+kindName(fam.kind)+" family")
			continue
		case r.desc != fam.desc && (r.desc.help != fam.desc.help || !slices.Equal(r.desc.labels, fam.desc.labels)):
			dropBecause(r, "help or label names differ from those of another collector's family of that name")
			continue
		case compareLabels(kept[len(kept)-1].labels, r.labels) == 0:
			dropBecause(r, "series collected twice")
			continue
		}
		switch r.kind {
		case prometheus.GaugeValue:
			ng++
		case prometheus.CounterValue:
			nc++
		default:
			nu++
		}
		kept = append(kept, r)
	}

	// Second pass: one slice each of families, metrics, values and their typed holders.
	f.fams = reuse(f.fams, families)
	f.List = reuse(f.List, families)
	f.metrics = reuse(f.metrics, len(kept))
	f.ptrs = reuse(f.ptrs, len(kept))
	f.values = reuse(f.values, len(kept))
	f.gauges = reuse(f.gauges, ng)
	f.counters = reuse(f.counters, nc)
	f.untyped = reuse(f.untyped, nu)
	var (
		fams, out, metrics, ptrs, values = f.fams, f.List, f.metrics, f.ptrs, f.values
		gauges, counters, untyped        = f.gauges, f.counters, f.untyped
		fi                               = -1
		start                            = 0
		gi, ci                           int
		ui                               int
	)
	for i, r := range kept {
		if i == 0 || (r.desc != kept[i-1].desc && r.desc.name != kept[i-1].desc.name) {
			if fi >= 0 {
				fams[fi].Metric = ptrs[start:i:i]
			}
			fi, start = fi+1, i
			fam := &fams[fi]
			fam.Name = &r.desc.name
			fam.Help = &r.desc.help
			switch r.kind {
			case prometheus.GaugeValue:
				fam.Type = &gaugeType
			case prometheus.CounterValue:
				fam.Type = &counterType
			default:
				fam.Type = &untypedType
			}
			out[fi] = fam
		}
		m := &metrics[i]
		m.Label = r.labels
		values[i] = r.value
		switch r.kind {
		case prometheus.GaugeValue:
			gauges[gi].Value = &values[i]
			m.Gauge = &gauges[gi]
			gi++
		case prometheus.CounterValue:
			counters[ci].Value = &values[i]
			m.Counter = &counters[ci]
			ci++
		default:
			untyped[ui].Value = &values[i]
			m.Untyped = &untyped[ui]
			ui++
		}
		ptrs[i] = m
	}
	if fi >= 0 {
		fams[fi].Metric = ptrs[start:len(kept):len(kept)]
	}
	clear(all)              // the samples' storage is recycled: no pointers into it kept
	clear(refs[len(kept):]) // nor to dropped samples
	if dropped > 0 {
		return fmt.Errorf("%d inconsistent samples dropped, the first %w", dropped, firstDropped)
	}
	return nil
}

// sref is a sample to sort, with its descriptor's id at hand: the sort compares ids without
// following two pointers for each.
type sref struct {
	id uint64
	s  *sample
}

// span is a run of samples of one descriptor, in Gathered.refs, with what orders it at hand.
type span struct {
	name       string
	id         uint64
	start, end int
}

// sort orders samples by metric name, then as client_golang orders a family's metrics: by their
// (name-sorted) label pairs' values. It sorts by descriptor id first, which compares integers
// where names would be compared, then the hundred-odd runs of one descriptor by name; sorting the
// samples by name directly was a twentieth of a scrape's CPU.
func (f *Gathered) sort(refs []sref) []*sample {
	slices.SortFunc(refs, func(a, b sref) int {
		if a.id != b.id {
			return cmp.Compare(a.id, b.id)
		}
		return compareLabels(a.s.labels, b.s.labels)
	})
	spans := f.spans[:0]
	for i := 0; i < len(refs); {
		j := i + 1
		for j < len(refs) && refs[j].id == refs[i].id {
			j++
		}
		spans = append(spans, span{refs[i].s.desc.name, refs[i].id, i, j})
		i = j
	}
	f.spans = spans
	spans = f.orderSpans(spans)
	sorted := reuse(f.sorted, len(refs))[:0]
	for i := 0; i < len(spans); {
		start := len(sorted)
		j := i
		for ; j < len(spans) && spans[j].name == spans[i].name; j++ {
			for _, r := range refs[spans[j].start:spans[j].end] {
				sorted = append(sorted, r.s)
			}
		}
		if j-i > 1 { // descriptors sharing a name (build reports what cannot be merged)
			slices.SortStableFunc(sorted[start:], func(a, b *sample) int { return compareLabels(a.labels, b.labels) })
		}
		i = j
	}
	clear(f.spans) // their names
	clear(spans)
	f.sorted = sorted
	return sorted
}

// orderSpans returns spans (in descriptor id order) sorted by name, then id: in the order of the
// last scrape when its spans were of the same descriptors, which is the common case.
func (f *Gathered) orderSpans(spans []span) []span {
	same := len(spans) == len(f.spanIDs)
	for i := 0; same && i < len(spans); i++ {
		same = spans[i].id == f.spanIDs[i]
	}
	ordered := reuse(f.ordered, len(spans))
	f.ordered = ordered
	if same {
		for i, j := range f.spanOrder {
			ordered[i] = spans[j]
		}
		return ordered
	}
	f.spanIDs = f.spanIDs[:0]
	f.spanOrder = f.spanOrder[:0]
	for i, sp := range spans {
		f.spanIDs = append(f.spanIDs, sp.id)
		f.spanOrder = append(f.spanOrder, i)
	}
	slices.SortFunc(f.spanOrder, func(a, b int) int {
		if c := strings.Compare(spans[a].name, spans[b].name); c != 0 {
			return c
		}
		return cmp.Compare(spans[a].id, spans[b].id)
	})
	for i, j := range f.spanOrder {
		ordered[i] = spans[j]
	}
	return ordered
}

func compareLabels(a, b []*dto.LabelPair) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	for i, lp := range a {
		if c := strings.Compare(lp.GetValue(), b[i].GetValue()); c != 0 {
			return c
		}
	}
	return 0
}

func kindName(k prometheus.ValueType) string {
	switch k {
	case prometheus.GaugeValue:
		return "gauge"
	case prometheus.CounterValue:
		return "counter"
	}
	return "untyped"
}

func labelString(labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, lp := range labels {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", lp.GetName(), lp.GetValue())
	}
	b.WriteByte('}')
	return b.String()
}
