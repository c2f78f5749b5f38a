package web

import (
	"context"
	"fmt"
	"html/template"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/serversage/sage/internal/inventory"
)

// chartRange is one of the time ranges a host page offers.
type chartRange struct {
	Key string
	Len time.Duration
}

var chartRanges = []chartRange{{"1h", time.Hour}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}}

// parseRange returns the range named s, or the first (1h) for anything else.
func parseRange(s string) chartRange {
	for _, r := range chartRanges {
		if r.Key == s {
			return r
		}
	}
	return chartRanges[0]
}

// targetPoints is how many points a series gets across a chart: enough for a smooth line at the
// chart's width, few enough to keep a page with eight charts small.
const targetPoints = 270

// chartStep is the query step for a range: about targetPoints per series, never finer than the
// scrape interval (there is nothing between two scrapes), in whole seconds.
func chartStep(length, scrape time.Duration) time.Duration {
	step := (length/targetPoints + time.Second - 1).Truncate(time.Second)
	return max(step, scrape.Truncate(time.Second), time.Second)
}

// rateWindow is the range of rate() for a step: Grafana's $__rate_interval, four scrapes or a step
// and a scrape, so that every step sees at least two samples even when one scrape is missed.
func rateWindow(step, scrape time.Duration) time.Duration {
	return max(4*scrape, step+scrape).Round(time.Second)
}

// fsExclude are filesystems whose fullness means nothing: pseudo filesystems, and read-only
// images that are always full (the same list as hosthealth's).
const fsExclude = `tmpfs|ramfs|squashfs|iso9660|overlay|nsfs|fuse.*`

// chartQuery is one PromQL expression of a chart; legend names each of its series from its labels.
type chartQuery struct {
	expr string
	// needs are the metrics expr reads, each of which must have a series of the host for expr to
	// have a result: without one the query is not run (most hosts of an estate have no series).
	needs  []string
	legend func(promql.Series) string
	dashed bool // a reference line (the core count beside the load)
}

type chartDef struct {
	id, title string
	unit      unit
	max       float64 // a fixed top of the y axis (100 for percentages); 0: from the data
	queries   []chartQuery
}

func named(name string) func(promql.Series) string {
	return func(promql.Series) string { return name }
}

func byLabel(l string) func(promql.Series) string {
	return func(s promql.Series) string { return s.Metric.Get(l) }
}

// chartDefs are the host page's charts, over the host's series (sel: its target labels; w: the
// rate window).
func chartDefs(sel, w string) []chartDef {
	fs := `,fstype!~"` + fsExclude + `"`
	return []chartDef{
		{id: "cpu", title: "CPU busy, %", unit: unitPercent, max: 100, queries: []chartQuery{
			{`100 * (1 - avg(rate(node_cpu_seconds_total{` + sel + `,mode="idle"}[` + w + `])))`,
				[]string{"node_cpu_seconds_total"}, named("busy"), false},
			{`100 * avg(rate(node_cpu_seconds_total{` + sel + `,mode="iowait"}[` + w + `]))`,
				[]string{"node_cpu_seconds_total"}, named("iowait"), false},
		}},
		{id: "memory", title: "Memory used, %", unit: unitPercent, max: 100, queries: []chartQuery{
			{`100 * (1 - node_memory_MemAvailable_bytes{` + sel + `} / node_memory_MemTotal_bytes{` + sel + `})`,
				[]string{"node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes"}, named("RAM"), false},
			{`100 * (1 - node_memory_SwapFree_bytes{` + sel + `} / (node_memory_SwapTotal_bytes{` + sel + `} > 0))`,
				[]string{"node_memory_SwapFree_bytes", "node_memory_SwapTotal_bytes"}, named("swap"), false},
		}},
		{id: "load", title: "Load average (1 min)", unit: unitPlain, queries: []chartQuery{
			{`node_load1{` + sel + `}`, []string{"node_load1"}, named("load1"), false},
			{`sage_cpu_cores{` + sel + `}`, []string{"sage_cpu_cores"}, named("cores"), true},
		}},
		{id: "disk", title: "Disk used, %", unit: unitPercent, max: 100, queries: []chartQuery{
			{`100 * (1 - node_filesystem_avail_bytes{` + sel + fs + `} / node_filesystem_size_bytes{` + sel + fs + `})`,
				[]string{"node_filesystem_avail_bytes", "node_filesystem_size_bytes"}, byLabel("mountpoint"), false},
		}},
		{id: "network", title: "Network, bytes/s", unit: unitBytesRate, queries: []chartQuery{
			{`sum(rate(node_network_receive_bytes_total{` + sel + `,device!="lo"}[` + w + `]))`,
				[]string{"node_network_receive_bytes_total"}, named("receive"), false},
			{`sum(rate(node_network_transmit_bytes_total{` + sel + `,device!="lo"}[` + w + `]))`,
				[]string{"node_network_transmit_bytes_total"}, named("transmit"), false},
		}},
		{id: "diskio", title: "Disk I/O, bytes/s", unit: unitBytesRate, queries: []chartQuery{
			{`sum(rate(node_disk_read_bytes_total{` + sel + `}[` + w + `]))`,
				[]string{"node_disk_read_bytes_total"}, named("read"), false},
			{`sum(rate(node_disk_written_bytes_total{` + sel + `}[` + w + `]))`,
				[]string{"node_disk_written_bytes_total"}, named("write"), false},
		}},
	}
}

// hostSelector matches a host's series by its scrape target labels, as the hub sets them.
func hostSelector(clientSlug, host string) string {
	return fmt.Sprintf(`job=%s,client=%s,host=%s`, promQuote(AgentJob), promQuote(clientSlug), promQuote(host))
}

// promQuote quotes s as a PromQL string. PromQL's double-quoted strings take Go's escapes.
func promQuote(s string) string { return fmt.Sprintf("%q", s) }

type chartsView struct {
	Charts  []chartView
	Ranges  []rangeLink
	Range   string
	URL     string
	Refresh int
	Error   string
}

type rangeLink struct {
	Key, URL string
	Current  bool
}

type chartView struct {
	ID     string
	Title  string
	SVG    template.HTML
	Legend []legendItem
	Empty  bool
}

// charts runs the chart queries for the host, in parallel. A failed query leaves its chart
// empty and is reported once above the charts: one broken chart must not hide the others.
//
// First one index lookup finds which metrics the host has series of in the range; a query whose
// metrics are missing is not run. Most hosts of an estate are never scraped (catalogued only, or
// awaiting approval), and their pages run no query at all.
func (u *UI) charts(ctx context.Context, h inventory.Host, c inventory.Client, rangeKey string) chartsView {
	rng := parseRange(rangeKey)
	step := chartStep(rng.Len, u.interval)
	// Aligned to the step, so that a refresh shows the same points and new ones, not a shifted
	// resampling of the line.
	end := time.Now().Truncate(step)
	start := end.Add(-rng.Len)
	window := rateWindow(step, u.interval)
	defs := chartDefs(hostSelector(c.Slug, h.Name), strconv.Itoa(int(window/time.Second))+"s")

	v := chartsView{Range: rng.Key,
		URL:     "/hosts/" + url.PathEscape(h.ID) + "/_charts?range=" + rng.Key,
		Refresh: refreshSeconds(max(u.interval, step))}
	for _, r := range chartRanges {
		v.Ranges = append(v.Ranges, rangeLink{Key: r.Key, URL: hostURL(h.ID) + "?range=" + r.Key, Current: r.Key == rng.Key})
	}

	// The earliest sample any query reads: a rate window or the lookback before the first step.
	mint := start.Add(-max(window, u.metrics.Options().LookbackDelta))
	has, err := u.hostMetrics(ctx, c.Slug, h.Name, mint, end)
	var errs []string
	if err != nil {
		// Run every query, as if the host had every metric: the charts may still be drawn.
		errs = append(errs, err.Error())
		has = nil
	}

	type result struct {
		series []series
		err    error
	}
	results := make([][]result, len(defs))
	var wg sync.WaitGroup
	for i, d := range defs {
		results[i] = make([]result, len(d.queries))
		for j, q := range d.queries {
			if has != nil && !hasAll(has, q.needs) {
				continue
			}
			wg.Go(func() {
				select {
				case u.chartSlots <- struct{}{}:
				case <-ctx.Done():
					results[i][j] = result{nil, ctx.Err()}
					return
				}
				defer func() { <-u.chartSlots }()
				s, err := u.rangeQuery(ctx, q, start, end, step)
				results[i][j] = result{s, err}
			})
		}
	}
	wg.Wait()

	for i, d := range defs {
		var all []series
		for _, r := range results[i] {
			if r.err != nil {
				errs = append(errs, r.err.Error())
				continue
			}
			all = append(all, r.series...)
		}
		ch := chart{Title: d.title, Unit: d.unit, Max: d.max, Start: start, End: end, Step: step, Series: all}
		v.Charts = append(v.Charts, chartView{ID: d.id, Title: d.title, SVG: ch.SVG(), Legend: ch.Legend(), Empty: !ch.hasData()})
	}
	if len(errs) > 0 {
		if ctx.Err() == nil {
			u.logger.Warn("web: chart queries failed", "host", h.Name, "errors", strings.Join(errs, "; "))
		}
		v.Error = "Some charts could not be drawn: " + errs[0]
	}
	return v
}

// hostMetrics returns the names of the metrics of which the host has series between mint and
// maxt, from the TSDB's index alone (no samples are read).
func (u *UI) hostMetrics(ctx context.Context, clientSlug, host string, mint, maxt time.Time) (map[string]bool, error) {
	q, err := u.metrics.Queryable().Querier(mint.UnixMilli(), maxt.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("looking up the host's series: %w", err)
	}
	defer q.Close()
	// Only the charted metrics are asked for: a scraped host has thousands of series, and the
	// index would otherwise name each of them.
	names, _, err := q.LabelValues(ctx, labels.MetricName, nil,
		labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, chartedMetrics),
		labels.MustNewMatcher(labels.MatchEqual, "job", AgentJob),
		labels.MustNewMatcher(labels.MatchEqual, "client", clientSlug),
		labels.MustNewMatcher(labels.MatchEqual, "host", host))
	if err != nil {
		return nil, fmt.Errorf("looking up the host's series: %w", err)
	}
	has := make(map[string]bool, len(names))
	for _, n := range names {
		has[n] = true
	}
	return has, nil
}

// chartedMetrics matches the names of the metrics the charts read (a regular expression).
var chartedMetrics = func() string {
	var names []string
	for _, d := range chartDefs("", "1s") {
		for _, q := range d.queries {
			for _, n := range q.needs {
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
		}
	}
	return strings.Join(names, "|")
}()

func hasAll(has map[string]bool, names []string) bool {
	for _, n := range names {
		if !has[n] {
			return false
		}
	}
	return true
}

// rangeQuery runs one chart query and names its series.
func (u *UI) rangeQuery(ctx context.Context, q chartQuery, start, end time.Time, step time.Duration) ([]series, error) {
	qry, err := u.metrics.PageEngine().NewRangeQuery(ctx, u.metrics.Queryable(), nil, q.expr, start, end, step)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", q.expr, err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, fmt.Errorf("query %s: %w", q.expr, res.Err)
	}
	m, err := res.Matrix()
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", q.expr, err)
	}
	out := make([]series, 0, len(m))
	for _, s := range m {
		pts := make([]point, len(s.Floats))
		for i, p := range s.Floats {
			pts[i] = point{T: p.T, V: p.F}
		}
		out = append(out, series{Name: q.legend(s), Points: pts, Dashed: q.dashed})
	}
	slices.SortFunc(out, func(a, b series) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
