package collector

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
)

// Desc describes one metric family: its name, help and label names. It is built once, when a
// collector is constructed, and carries what Set.Gather needs to build the family without going
// through client_golang's registry, plus the client_golang descriptor for the registry path
// (Set as a prometheus.Collector, which the tests use to check every collector's output).
type Desc struct {
	id     uint64 // in the order of creation: Gather groups samples by descriptor cheaply by it
	prom   *prometheus.Desc
	name   string
	help   string
	labels []string // variable label names, in the order the collector passes their values
	order  []int    // indices into labels, sorted by label name: the order of a series' label pairs
	err    error    // a descriptor that cannot be exposed; every sample of it is refused
}

var descIDs atomic.Uint64

// newDesc builds a descriptor. Metric and label names must be valid legacy (pre-UTF-8) Prometheus
// names, so that the exposition never needs escaping; a descriptor that breaks that, or that
// client_golang rejects, records the error, and the collector using it fails instead of the scrape.
func newDesc(name, help string, labels []string) *Desc {
	d := &Desc{
		id:     descIDs.Add(1),
		prom:   prometheus.NewDesc(name, help, labels, nil),
		name:   name,
		help:   help,
		labels: slices.Clone(labels),
		order:  make([]int, len(labels)),
	}
	for i := range d.order {
		d.order[i] = i
	}
	slices.SortFunc(d.order, func(a, b int) int { return strings.Compare(d.labels[a], d.labels[b]) })
	switch {
	case !model.LegacyValidation.IsValidMetricName(name):
		d.err = fmt.Errorf("metric name %q is not a valid legacy Prometheus name", name)
	default:
		for i, l := range d.labels {
			if !model.LegacyValidation.IsValidLabelName(l) || strings.HasPrefix(l, "__") {
				d.err = fmt.Errorf("%s: label name %q is not valid", name, l)
				break
			}
			if i > 0 && d.labels[d.order[i]] == d.labels[d.order[i-1]] {
				d.err = fmt.Errorf("%s: label %q twice", name, d.labels[d.order[i]])
				break
			}
		}
	}
	if d.err == nil {
		// Whatever else client_golang checks (it keeps the reason to itself until a metric is made).
		if _, err := prometheus.NewConstMetric(d.prom, prometheus.GaugeValue, 0, make([]string, len(labels))...); err != nil {
			d.err = err
		}
	}
	return d
}

// NewDesc builds a descriptor for metrics exposed beside the collectors' (the agent's own, through
// Set.GatherInto's extra collectors), under the same rules as the collectors' descriptors.
func NewDesc(name, help string, labels []string) *Desc { return newDesc(name, help, labels) }

// Name is the metric name.
func (d *Desc) Name() string { return d.name }

// check says why the label values cannot make a series of d, if they cannot.
func (d *Desc) check(values []string) error {
	if d.err != nil {
		return d.err
	}
	if len(values) != len(d.labels) {
		return fmt.Errorf("%s: %d label values for %d labels %q", d.name, len(values), len(d.labels), d.labels)
	}
	for _, v := range values {
		if !utf8.ValidString(v) {
			return fmt.Errorf("%s: label value %q is not valid UTF-8", d.name, v)
		}
	}
	return nil
}

// labelPairs builds the label pairs of one series of d, sorted by label name as the exposition
// wants them, in three allocations whatever the number of labels (client_golang's MakeLabelPairs
// makes three per label). The names point into d, which never changes; values are copied. The
// result is never changed once built, so a collector may keep it and pass it to every scrape.
func (d *Desc) labelPairs(values []string) []*dto.LabelPair {
	if len(d.labels) == 0 {
		return nil
	}
	vals := slices.Clone(values)
	pairs := make([]dto.LabelPair, len(d.labels))
	ptrs := make([]*dto.LabelPair, len(d.labels))
	for j, i := range d.order {
		pairs[j].Name = &d.labels[i]
		pairs[j].Value = &vals[i]
		ptrs[j] = &pairs[j]
	}
	return ptrs
}

// labelPairsFor builds the label pairs of d for the given values, once, to be shared by every
// sample of the series (see Metrics.addShared). Invalid UTF-8 (a mount point is any bytes) is
// replaced, because Prometheus would otherwise reject the whole scrape. Label values that do not
// fit d are a bug: they give no label pairs, which the tests' pedantic registry rejects.
func labelPairsFor(d *Desc, values ...string) []*dto.LabelPair {
	if len(values) != len(d.labels) {
		return nil
	}
	for i, v := range values {
		if !utf8.ValidString(v) {
			values[i] = strings.ToValidUTF8(v, "\uFFFD")
		}
	}
	return d.labelPairs(values)
}
