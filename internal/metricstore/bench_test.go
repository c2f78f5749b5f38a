package metricstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// agentSeries is about one agent's scrape: a thousand series.
func agentSeries(n int) []labels.Labels {
	out := make([]labels.Labels, n)
	for i := range out {
		out[i] = labels.FromStrings("__name__", fmt.Sprintf("node_metric_%d", i%50), "cpu", fmt.Sprint(i/50),
			"instance", "web1:9100", "job", "sage", "client", "acme", "site", "paris", "host", "web1")
	}
	return out
}

// BenchmarkAppend appends one scrape's worth of samples (1000 series) and commits, as the scrape
// loop does: by labels (first sight of a series) and by the series references the scrape cache
// keeps afterwards.
func BenchmarkAppend(b *testing.B) {
	series := agentSeries(1000)
	for _, byRef := range []bool{false, true} {
		b.Run(map[bool]string{false: "labels", true: "refs"}[byRef], func(b *testing.B) {
			s := openStore(b, Options{})
			refs := make([]storage.SeriesRef, len(series))
			ts := time.Now().UnixMilli()
			b.ReportAllocs()
			for b.Loop() {
				ts += 1000
				app := s.Appender(context.Background())
				for i, ls := range series {
					ref := refs[i]
					if !byRef {
						ref = 0
					}
					r, err := app.Append(ref, ls, ts, float64(ts))
					if err != nil {
						b.Fatal(err)
					}
					refs[i] = r
				}
				if err := app.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(series)), "ns/sample")
		})
	}
}

// BenchmarkQuery runs a dashboard-style query over an hour of 1000 series scraped every 15 s.
func BenchmarkQuery(b *testing.B) {
	s := openStore(b, Options{})
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-time.Hour)
	appendSamples(b, s, agentSeries(1000), start, 15*time.Second, 241, func(i int) float64 { return float64(i) })
	ctx := context.Background()
	for _, tt := range []struct {
		name, query string
		rangeQuery  bool
	}{
		{"instant", `sum by (cpu) (rate(node_metric_7[5m]))`, false},
		{"range_1h_step60s", `sum by (cpu) (rate(node_metric_7[5m]))`, true},
		{"range_1h_all_series", `sum by (__name__) ({__name__=~"node_metric_.*"})`, true},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if tt.rangeQuery {
					q, e := s.Engine().NewRangeQuery(ctx, s.Queryable(), nil, tt.query, start, end, time.Minute)
					if e != nil {
						b.Fatal(e)
					}
					err = q.Exec(ctx).Err
					q.Close()
				} else {
					q, e := s.Engine().NewInstantQuery(ctx, s.Queryable(), nil, tt.query, end)
					if e != nil {
						b.Fatal(e)
					}
					err = q.Exec(ctx).Err
					q.Close()
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
