package alert_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sort"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/serversage/sage/internal/agent"
	"github.com/serversage/sage/internal/alert"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/metricstore"
	"github.com/serversage/sage/internal/rulepack"
	"github.com/serversage/sage/internal/store/storetest"
)

// packRuleSet is the hub's rule set from the shipped pack (internal/hub's ruleSet).
func packRuleSet(b *testing.B) alert.RuleSet {
	p, err := rulepack.Load()
	if err != nil {
		b.Fatal(err)
	}
	rs := alert.RuleSet{Files: p.Files(), Specs: map[string]alert.WatermarkSpec{}, Alerts: map[string]string{}}
	for _, r := range p.Rules() {
		rs.Alerts[r.Name] = r.Severity
		if r.Watermark != nil {
			rs.Specs[r.Name] = alert.WatermarkSpec{Alert: r.Name, Default: r.Watermark.Default, Unit: r.Watermark.Unit,
				Per: r.Watermark.Per, Direction: r.Watermark.Direction, Severity: r.Severity}
		}
	}
	return rs
}

// agentSeries is one scrape of a real agent on this machine: every series with its value and
// whether it is a counter.
func agentSeries(b *testing.B) (lsets []labels.Labels, values []float64, counter []bool) {
	a, err := agent.New(agent.Options{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	tp := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := tp.TextToMetricFamilies(rec.Body)
	if err != nil {
		b.Fatal(err)
	}
	for name, f := range fams {
		for _, m := range f.Metric {
			var v float64
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				v = m.GetUntyped().GetValue()
			default:
				continue // histograms and summaries: no rule reads them
			}
			sb := labels.NewScratchBuilder(len(m.Label) + 1)
			sb.Add(labels.MetricName, name)
			for _, lp := range m.Label {
				sb.Add(lp.GetName(), lp.GetValue())
			}
			sb.Sort()
			lsets = append(lsets, sb.Labels())
			values = append(values, v)
			counter = append(counter, f.GetType() == dto.MetricType_COUNTER)
		}
	}
	return lsets, values, counter
}

// BenchmarkPackEvaluation is one evaluation of every group of the shipped pack on the estate of
// bench/hub-ui-load.sh: 5,000 active hosts in the inventory (so 5,000 host watermark series per
// threshold alert), 200 of them scraped with a real agent's series for 10 minutes (counters at a
// healthy host's pace, gauges steady) and 100 whose scrapes fail (up 0: AgentDown holds 100
// alerts). One op is a minute of evaluation at the hub's default 1 s, each group at its own
// interval where it has one; the figures to compare are CPU time and allocations per op (ns/op
// is CPU time only on an idle machine).
func BenchmarkPackEvaluation(b *testing.B) {
	ctx := context.Background()
	db := storetest.SQLite(b)
	const clients, perClient, live, down = 50, 100, 4, 2
	inv := inventory.New(db)
	for c := range clients {
		cl, err := inv.CreateClient(ctx, inventory.Client{Name: fmt.Sprintf("Client %d", c), Slug: fmt.Sprintf("client-%d", c)})
		if err != nil {
			b.Fatal(err)
		}
		for h := range perClient {
			if _, err := inv.CreateHost(ctx, inventory.Host{ClientID: cl.ID, Name: fmt.Sprintf("host-%03d", h), Status: inventory.StatusActive}); err != nil {
				b.Fatal(err)
			}
		}
	}

	ms, err := metricstore.Open(metricstore.Options{Dir: b.TempDir(), ScrapeInterval: 15 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ms.Close() })
	lsets, values, counter := agentSeries(b)
	end := time.Now().Truncate(time.Second)
	const steps = 41 // 10 minutes every 15 s
	for c := range clients {
		for h := range live + down {
			target := labels.FromStrings("client", fmt.Sprintf("client-%d", c), "host", fmt.Sprintf("host-%03d", h),
				"job", "sage-agent", "instance", fmt.Sprintf("10.0.%d.%d:10730", c, h))
			add := func(app storage.Appender, ls labels.Labels, ts int64, v float64) {
				lb := labels.NewBuilder(ls)
				target.Range(func(l labels.Label) { lb.Set(l.Name, l.Value) })
				if _, err := app.Append(0, lb.Labels(), ts, v); err != nil {
					b.Fatal(err)
				}
			}
			app := ms.Appender(ctx)
			for s := range steps {
				ts := end.Add(-time.Duration(steps-1-s) * 15 * time.Second).UnixMilli()
				if h >= live {
					add(app, labels.FromStrings(labels.MetricName, "up"), ts, 0)
					continue
				}
				add(app, labels.FromStrings(labels.MetricName, "up"), ts, 1)
				add(app, labels.FromStrings(labels.MetricName, "scrape_duration_seconds"), ts, 0.01)
				for i, ls := range lsets {
					v := values[i]
					if counter[i] {
						v += v / 3600 * float64(s) * 15 // as if up an hour at the scrape
					}
					add(app, ls, ts, v)
				}
			}
			if err := app.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}

	e, err := alert.New(alert.Options{DB: db, Engine: ms.Engine(), Queryable: ms.Queryable(), Appendable: ms.DB(),
		Parser: ms.Parser(), Logger: storetest.Logger(b)})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.SetRules(ctx, packRuleSet(b)); err != nil {
		b.Fatal(err)
	}
	if err := e.LoadGroups(ctx); err != nil {
		b.Fatal(err)
	}
	groups := e.Manager().RuleGroups()
	b.ReportMetric(float64(e.Watermarks().Len()), "watermarks")
	cpu0 := processCPU(b)
	ops := 0
	for b.Loop() {
		ops++
		// A minute of the manager's work: each group at the ticks of its own interval.
		for tick := range 60 {
			for _, g := range groups {
				if every := int(g.Interval() / time.Second); tick%max(every, 1) == 0 {
					g.Eval(ctx, end.Add(time.Duration(tick)*time.Second))
				}
			}
		}
	}
	b.StopTimer()
	// The process's CPU time (garbage collection included), which unlike ns/op does not grow with
	// other work on the machine.
	b.ReportMetric((processCPU(b)-cpu0).Seconds()/float64(ops), "cpu-s/op")
	active := 0
	for _, g := range groups {
		for _, r := range g.AlertingRules() {
			active += len(r.ActiveAlerts())
		}
	}
	b.ReportMetric(float64(active), "alerts")
	if testing.Verbose() {
		// Where an evaluation's time goes, by rule (the last evaluation's duration).
		type cost struct {
			name string
			d    time.Duration
			n    int
		}
		var costs []cost
		for _, g := range groups {
			for _, r := range g.AlertingRules() {
				costs = append(costs, cost{g.Name() + "/" + r.Name(), r.GetEvaluationDuration(), len(r.ActiveAlerts())})
			}
		}
		sort.Slice(costs, func(i, j int) bool { return costs[i].d > costs[j].d })
		for _, c := range costs {
			b.Logf("%-45s %10v %5d alerts", c.name, c.d, c.n)
		}
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
