package alert

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// WatermarkMetric is the name of the virtual series that carries every effective watermark.
// Rules join against it (see docs/architecture.md, "Watermarks"), so one rule serves every host
// whatever its overrides, and a changed override takes effect at the next evaluation without
// reloading any rule.
const WatermarkMetric = "sage_watermark"

// ScopeHost is the scope label of the per-host series; per-unit series carry the unit label's
// name instead (scope="mountpoint", mountpoint="/var").
const ScopeHost = "host"

// wmStep is the spacing of the synthetic samples: well inside PromQL's 5-minute lookback, so every
// instant and every step of a range query finds one.
const wmStep = 60_000

// maxWMSamples bounds one series' synthetic samples (a year of minutes would be 525,600); a range
// beyond it is served with the samples spaced wider.
const maxWMSamples = 11_000

// wmSeries is one materialised watermark series.
type wmSeries struct {
	lset  labels.Labels
	value float64
}

// watermarkSet is an immutable snapshot of every watermark series, by alert name, each list
// sorted by labels. A rebuild replaces the whole snapshot atomically, so a rule evaluation never
// sees half an update.
type watermarkSet struct {
	byAlert map[string][]wmSeries
	alerts  []string // sorted
}

// Watermarks serves the sage_watermark series as a storage.Queryable, from the current snapshot.
type Watermarks struct {
	set atomic.Pointer[watermarkSet]
	mu  sync.Mutex // serialises rebuilds
}

// NewWatermarks returns an empty set; Resolver.Rebuild fills it.
func NewWatermarks() *Watermarks {
	w := &Watermarks{}
	w.set.Store(&watermarkSet{byAlert: map[string][]wmSeries{}})
	return w
}

// Len is the number of series in the current snapshot.
func (w *Watermarks) Len() int {
	n := 0
	for _, s := range w.set.Load().byAlert {
		n += len(s)
	}
	return n
}

// Value returns the watermark of the series with exactly these labels (without __name__), for
// tests and the UI.
func (w *Watermarks) Value(lset labels.Labels) (float64, bool) {
	s := w.set.Load()
	for _, ws := range s.byAlert[lset.Get("alert")] {
		if labels.Equal(ws.lset.DropMetricName(), lset) {
			return ws.value, true
		}
	}
	return 0, false
}

func (w *Watermarks) replace(byAlert map[string][]wmSeries) {
	alerts := make([]string, 0, len(byAlert))
	for a, s := range byAlert {
		sort.Slice(s, func(i, j int) bool { return labels.Compare(s[i].lset, s[j].lset) < 0 })
		alerts = append(alerts, a)
	}
	sort.Strings(alerts)
	w.set.Store(&watermarkSet{byAlert: byAlert, alerts: alerts})
}

// Querier implements storage.Queryable.
func (w *Watermarks) Querier(mint, maxt int64) (storage.Querier, error) {
	return &wmQuerier{set: w.set.Load(), mint: mint, maxt: maxt}, nil
}

// Merge returns a Queryable serving both q (the TSDB) and the watermark series. The watermarks are
// a secondary querier: if they ever failed, a query would still answer from the TSDB with a
// warning rather than fail.
func (w *Watermarks) Merge(q storage.Queryable) storage.Queryable {
	return storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) {
		primary, err := q.Querier(mint, maxt)
		if err != nil {
			return nil, err
		}
		secondary, _ := w.Querier(mint, maxt)
		return storage.NewMergeQuerier([]storage.Querier{primary}, []storage.Querier{secondary}, storage.ChainedSeriesMerge), nil
	})
}

// MergeForRules is Merge for rule evaluation: it serves the watermark series only of hosts that
// have series in q, by the host label. A watermark only matters joined with a host's own series
// (`M > on(client, host) group_left() sage_watermark{...}`), and with 5,000 hosts in the
// inventory and a few hundred reporting, every threshold rule would otherwise select, iterate and
// hash 5,000 watermark series per evaluation for nothing: most of the rule evaluation's CPU. The
// set is a superset (a host name shared by two clients counts for both), so no join loses a
// match; only a rule that reads sage_watermark on its own (count, absent) sees fewer series than
// the query API serves.
func (w *Watermarks) MergeForRules(q storage.Queryable) storage.Queryable {
	return storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) {
		primary, err := q.Querier(mint, maxt)
		if err != nil {
			return nil, err
		}
		secondary := &wmQuerier{set: w.set.Load(), mint: mint, maxt: maxt, hosts: func(ctx context.Context) (map[string]struct{}, error) {
			// A querier of its own: the merge querier may run the primary's Select beside this.
			hq, err := q.Querier(mint, maxt)
			if err != nil {
				return nil, err
			}
			defer hq.Close()
			names, _, err := hq.LabelValues(ctx, "host", nil)
			if err != nil {
				return nil, err
			}
			set := make(map[string]struct{}, len(names))
			for _, n := range names {
				set[n] = struct{}{}
			}
			return set, nil
		}}
		return storage.NewMergeQuerier([]storage.Querier{primary}, []storage.Querier{secondary}, storage.ChainedSeriesMerge), nil
	})
}

type wmQuerier struct {
	set        *watermarkSet
	mint, maxt int64
	// hosts, when set, names the hosts whose series may be served (MergeForRules); it is asked
	// once per querier.
	hosts     func(context.Context) (map[string]struct{}, error)
	hostsOnce sync.Once
	present   map[string]struct{}
	hostsErr  error
}

// hostFilter returns the hosts a rules querier serves, or nil for every host.
func (q *wmQuerier) hostFilter(ctx context.Context) (map[string]struct{}, error) {
	if q.hosts == nil {
		return nil, nil
	}
	q.hostsOnce.Do(func() { q.present, q.hostsErr = q.hosts(ctx) })
	if q.hostsErr != nil {
		return nil, fmt.Errorf("alert: hosts with series, for the watermarks: %w", q.hostsErr)
	}
	return q.present, nil
}

// candidates returns the series lists a selection can match: none unless the name can be
// sage_watermark, and one alert's list when the selection names the alert.
func (q *wmQuerier) candidates(matchers []*labels.Matcher) [][]wmSeries {
	var alert *labels.Matcher
	for _, m := range matchers {
		switch m.Name {
		case labels.MetricName:
			if !m.Matches(WatermarkMetric) {
				return nil
			}
		case "alert":
			alert = m
		}
	}
	if alert != nil && alert.Type == labels.MatchEqual {
		if s, ok := q.set.byAlert[alert.Value]; ok {
			return [][]wmSeries{s}
		}
		return nil
	}
	out := make([][]wmSeries, 0, len(q.set.alerts))
	for _, a := range q.set.alerts {
		out = append(out, q.set.byAlert[a])
	}
	return out
}

func matchesAll(lset labels.Labels, matchers []*labels.Matcher) bool {
	for _, m := range matchers {
		if !m.Matches(lset.Get(m.Name)) {
			return false
		}
	}
	return true
}

func (q *wmQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, matchers ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = max(mint, hints.Start), min(maxt, hints.End)
	}
	lists := q.candidates(matchers)
	if len(lists) == 0 {
		return storage.EmptySeriesSet()
	}
	hosts, err := q.hostFilter(ctx)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	var out []storage.Series
	for _, list := range lists {
		for _, s := range list {
			if hosts != nil {
				if _, ok := hosts[s.lset.Get("host")]; !ok {
					continue
				}
			}
			if matchesAll(s.lset, matchers) {
				out = append(out, &constSeries{lset: s.lset, value: s.value, mint: mint, maxt: maxt})
			}
		}
	}
	// The lists are sorted and so are the alert names, but a unit label named before "alert" would
	// break the order of the concatenation; sorting the (few) selected series is cheap.
	if sortSeries {
		sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels(), out[j].Labels()) < 0 })
	}
	return &sliceSeriesSet{series: out, i: -1}
}

func (q *wmQuerier) LabelValues(_ context.Context, name string, _ *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	seen := map[string]struct{}{}
	for _, list := range q.candidates(matchers) {
		for _, s := range list {
			if v := s.lset.Get(name); v != "" && matchesAll(s.lset, matchers) {
				seen[v] = struct{}{}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	slices.Sort(out)
	return out, nil, nil
}

func (q *wmQuerier) LabelNames(_ context.Context, _ *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	seen := map[string]struct{}{}
	for _, list := range q.candidates(matchers) {
		for _, s := range list {
			if matchesAll(s.lset, matchers) {
				s.lset.Range(func(l labels.Label) { seen[l.Name] = struct{}{} })
			}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	slices.Sort(out)
	return out, nil, nil
}

func (q *wmQuerier) Close() error { return nil }

type sliceSeriesSet struct {
	series []storage.Series
	i      int
}

func (s *sliceSeriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *sliceSeriesSet) At() storage.Series                { return s.series[s.i] }
func (s *sliceSeriesSet) Err() error                        { return nil }
func (s *sliceSeriesSet) Warnings() annotations.Annotations { return nil }

// constSeries is a watermark over [mint, maxt]: the same value every wmStep, ending exactly at
// maxt so that an instant query at maxt finds a sample at its own timestamp.
type constSeries struct {
	lset       labels.Labels
	value      float64
	mint, maxt int64
}

func (s *constSeries) Labels() labels.Labels { return s.lset }

// Iterator hands the samples to storage's list iterator rather than implementing one: vet's
// stdmethods check rejects any method named Seek with Prometheus's signature outside Prometheus.
func (s *constSeries) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	var samples storage.Samples
	if s.maxt >= s.mint {
		step := int64(wmStep)
		n := (s.maxt-s.mint)/step + 1
		if n > maxWMSamples {
			step = (s.maxt - s.mint) / (maxWMSamples - 1)
			n = maxWMSamples
		}
		list := make(fSamples, n)
		for i := range list {
			list[i] = fSample{t: s.maxt - (n-1-int64(i))*step, f: s.value}
		}
		samples = list
	} else {
		samples = fSamples{}
	}
	return storage.NewListSeriesIterator(samples)
}

type fSample struct {
	t int64
	f float64
}

// The methods are on the pointer so that Get hands out a pointer into the slice: a value in an
// interface is an allocation at every step of the iterator, and PromQL steps through every
// watermark series of every threshold rule at each evaluation.
func (s *fSample) T() int64                      { return s.t }
func (s *fSample) ST() int64                     { return 0 }
func (s *fSample) F() float64                    { return s.f }
func (s *fSample) H() *histogram.Histogram       { return nil }
func (s *fSample) FH() *histogram.FloatHistogram { return nil }
func (s *fSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s *fSample) Copy() chunks.Sample           { c := *s; return &c }

type fSamples []fSample

func (s fSamples) Get(i int) chunks.Sample { return &s[i] }
func (s fSamples) Len() int                { return len(s) }

// formatValue prints a watermark the way a person wrote it: 90, not 90.000000.
func formatValue(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return fmt.Sprint(v)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
