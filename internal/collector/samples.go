package collector

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// sample is one value of one series in one scrape, kept in Metrics by value: a scrape's samples
// are one slice per collector rather than an object each. Its label pairs are never changed once
// built, so they may be shared by every scrape of the series (a collector that keeps them per
// device saves building them again) and read by two scrapes at once.
//
// A *sample is a prometheus.Metric, for the registry path (Set.Collect), which the tests use to
// check every collector's output with a pedantic registry; the agent uses Set.Gather.
type sample struct {
	desc   *Desc
	labels []*dto.LabelPair
	value  float64
	kind   prometheus.ValueType
}

func (s *sample) Desc() *prometheus.Desc { return s.desc.prom }

func (s *sample) Write(out *dto.Metric) error {
	out.Label = s.labels
	v := s.value
	switch s.kind {
	case prometheus.CounterValue:
		out.Counter = &dto.Counter{Value: &v}
	case prometheus.GaugeValue:
		out.Gauge = &dto.Gauge{Value: &v}
	default:
		out.Untyped = &dto.Untyped{Value: &v}
	}
	return nil
}
