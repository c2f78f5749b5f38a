package alert_test

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/serversage/sage/internal/alert"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/metricstore"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

// The two test rules have the shapes the shipped pack uses: a per-unit watermark (here per
// "group", so a service stands for a process group) and a host-level one.
const testRules = `groups:
- name: test
  rules:
  - alert: GroupBusy
    expr: |
      (test_group_load > on(client, host, group) group_left() sage_watermark{alert="GroupBusy", scope="group"})
      or
      ((test_group_load unless on(client, host, group) sage_watermark{alert="GroupBusy", scope="group"})
        > on(client, host) group_left() sage_watermark{alert="GroupBusy", scope="host"})
    labels: {severity: warning}
    annotations: {watermark: "90", watermark_per: group, summary: "{{ $labels.group }} busy"}
  - alert: HostHot
    expr: test_temp > on(client, host) group_left() sage_watermark{alert="HostHot", scope="host"}
    labels: {severity: critical}
    annotations: {watermark: "70"}
  - alert: NoWatermark
    expr: test_temp > 1000
    labels: {severity: info}
`

func testRuleSet() alert.RuleSet {
	return alert.RuleSet{
		Files: map[string][]byte{"test.yml": []byte(testRules)},
		Specs: map[string]alert.WatermarkSpec{
			"GroupBusy": {Alert: "GroupBusy", Default: 90, Per: "group", Direction: "above", Severity: "warning"},
			"HostHot":   {Alert: "HostHot", Default: 70, Direction: "above", Severity: "critical"},
		},
		Alerts: map[string]string{"GroupBusy": "warning", "HostHot": "critical", "NoWatermark": "info"},
	}
}

type estate struct {
	acme, beta     inventory.Client
	london, paris  inventory.Site
	h1, h2, h3, b1 inventory.Host
	pgOnH2         inventory.Service
	inv            *inventory.Inventory
	metrics        *metricstore.Store
	engine         *alert.Engine
	db             *store.DB
}

// newEstate builds acme (sites london: h1, h2; paris: h3) and beta (b1, no site), with a
// service "pg" on h2, and an engine over a real metrics store.
func newEstate(t *testing.T, db *store.DB) *estate {
	t.Helper()
	ctx := context.Background()
	es := &estate{inv: inventory.New(db), db: db}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var err error
	es.acme, err = es.inv.CreateClient(ctx, inventory.Client{Name: "Acme", Slug: "acme"})
	must(err)
	es.beta, err = es.inv.CreateClient(ctx, inventory.Client{Name: "Beta", Slug: "beta"})
	must(err)
	es.london, err = es.inv.CreateSite(ctx, inventory.Site{ClientID: es.acme.ID, Name: "london"})
	must(err)
	es.paris, err = es.inv.CreateSite(ctx, inventory.Site{ClientID: es.acme.ID, Name: "paris"})
	must(err)
	host := func(c inventory.Client, site, name string) inventory.Host {
		h, err := es.inv.CreateHost(ctx, inventory.Host{ClientID: c.ID, SiteID: site, Name: name, Status: inventory.StatusActive})
		must(err)
		return h
	}
	es.h1, es.h2, es.h3 = host(es.acme, es.london.ID, "h1"), host(es.acme, es.london.ID, "h2"), host(es.acme, es.paris.ID, "h3")
	es.b1 = host(es.beta, "", "b1")
	es.pgOnH2, err = es.inv.CreateService(ctx, inventory.Service{HostID: es.h2.ID, Type: "postgres", Name: "pg"})
	must(err)

	es.metrics, err = metricstore.Open(metricstore.Options{Dir: t.TempDir(), ScrapeInterval: time.Second})
	must(err)
	t.Cleanup(func() { es.metrics.Close() })
	es.engine, err = alert.New(alert.Options{DB: db, Engine: es.metrics.Engine(), Queryable: es.metrics.Queryable(), Parser: es.metrics.Parser()})
	must(err)
	must(es.engine.SetRules(ctx, testRuleSet()))
	return es
}

// seed appends one sample of each test series at ts.
func (es *estate) seed(t *testing.T, ts time.Time, samples map[string]float64) {
	t.Helper()
	app := es.metrics.Appender(context.Background())
	for spec, v := range samples {
		lset, err := parseSeries(spec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := app.Append(0, lset, ts.UnixMilli(), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

// parseSeries reads `name client/site/host[/group]`.
func parseSeries(spec string) (labels.Labels, error) {
	name, rest, _ := strings.Cut(spec, " ")
	parts := strings.Split(rest, "/")
	b := labels.NewBuilder(labels.EmptyLabels())
	b.Set(labels.MetricName, name)
	b.Set("client", parts[0])
	if parts[1] != "" {
		b.Set("site", parts[1])
	}
	b.Set("host", parts[2])
	if len(parts) > 3 {
		b.Set("group", parts[3])
	}
	return b.Labels(), nil
}

// breaching evaluates an alert's expression at ts and returns "host/group" of each result.
func (es *estate) breaching(t *testing.T, alertName string, ts time.Time) []string {
	t.Helper()
	var expr string
	for _, g := range strings.Split(testRules, "  - alert: ")[1:] {
		if strings.HasPrefix(g, alertName+"\n") {
			_, after, _ := strings.Cut(g, "expr: ")
			expr, _, _ = strings.Cut(after, "    labels:")
			expr = strings.TrimPrefix(expr, "|")
		}
	}
	q, err := es.metrics.Engine().NewInstantQuery(context.Background(), es.engine.Queryable(), nil, expr, ts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", expr, res.Err)
	}
	vec, err := res.Vector()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range vec {
		k := s.Metric.Get("host")
		if g := s.Metric.Get("group"); g != "" {
			k += "/" + g
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestOverrideResolution(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		es := newEstate(t, db)
		ctx := context.Background()
		save := func(o alert.Override) {
			t.Helper()
			if _, err := es.engine.SaveOverride(ctx, o); err != nil {
				t.Fatalf("%+v: %v", o, err)
			}
		}
		// Each level, for HostHot (host level): client acme 80, site london 60, host h2 50.
		// beta has none: the default, 70.
		save(alert.Override{Alert: "HostHot", Scope: alert.ScopeClient, ClientID: es.acme.ID, Value: 80})
		save(alert.Override{Alert: "HostHot", Scope: alert.ScopeSite, SiteID: es.london.ID, Value: 60})
		save(alert.Override{Alert: "HostHot", Scope: alert.ScopeHostOv, HostID: es.h2.ID, Value: 50})
		// GroupBusy per group: client acme's "web" 95; the service pg on h2 (group "pg") 40; a host
		// override on h1 (all its groups) 30, which beats acme's "web" 95 for h1/web.
		save(alert.Override{Alert: "GroupBusy", Scope: alert.ScopeClient, ClientID: es.acme.ID, UnitLabel: "group", UnitValue: "web", Value: 95})
		save(alert.Override{Alert: "GroupBusy", Scope: alert.ScopeService, ServiceID: es.pgOnH2.ID, Value: 40})
		save(alert.Override{Alert: "GroupBusy", Scope: alert.ScopeHostOv, HostID: es.h1.ID, Value: 30})

		wm := func(alertName, scope, client, site, host, group string) float64 {
			t.Helper()
			b := labels.NewBuilder(labels.EmptyLabels())
			b.Set("alert", alertName)
			b.Set("scope", scope)
			b.Set("client", client)
			b.Set("site", site)
			b.Set("host", host)
			if group != "" {
				b.Set("group", group)
			}
			v, ok := es.engine.Watermarks().Value(b.Labels())
			if !ok {
				t.Fatalf("no watermark series %v", b.Labels())
			}
			return v
		}
		for _, c := range []struct {
			name                       string
			alert, scope, client, site string
			host, group                string
			want                       float64
		}{
			{"host override", "HostHot", "host", "acme", "london", "h2", "", 50},
			{"site override", "HostHot", "host", "acme", "london", "h1", "", 60},
			{"client override", "HostHot", "host", "acme", "paris", "h3", "", 80},
			{"default", "HostHot", "host", "beta", "", "b1", "", 70},
			{"service override", "GroupBusy", "group", "acme", "london", "h2", "pg", 40},
			{"client unit override", "GroupBusy", "group", "acme", "paris", "h3", "web", 95},
			{"host beats client unit", "GroupBusy", "group", "acme", "london", "h1", "web", 30},
			{"host level of h1", "GroupBusy", "host", "acme", "london", "h1", "", 30},
			{"default per host", "GroupBusy", "host", "acme", "paris", "h3", "", 90},
		} {
			t.Run(c.name, func(t *testing.T) {
				if got := wm(c.alert, c.scope, c.client, c.site, c.host, c.group); got != c.want {
					t.Errorf("watermark = %v, want %v", got, c.want)
				}
			})
		}

		// The same resolution, seen through PromQL as the rules see it.
		now := time.Now()
		es.seed(t, now, map[string]float64{
			"test_temp acme/london/h1":           65, // > 60 (site)
			"test_temp acme/london/h2":           55, // > 50 (host)
			"test_temp acme/paris/h3":            75, // < 80 (client)
			"test_temp beta//b1":                 75, // > 70 (default)
			"test_group_load acme/london/h2/pg":  45, // > 40 (service)
			"test_group_load acme/london/h2/web": 45, // < 90 (default: no override on h2 for web)
			"test_group_load acme/paris/h3/web":  92, // < 95 (client's web)
			"test_group_load acme/paris/h3/db":   92, // > 90 (default)
			"test_group_load acme/london/h1/web": 35, // > 30 (host beats client's web)
		})
		if got, want := strings.Join(es.breaching(t, "HostHot", now), " "), "b1 h1 h2"; got != want {
			t.Errorf("HostHot breaching %q, want %q", got, want)
		}
		if got, want := strings.Join(es.breaching(t, "GroupBusy", now), " "), "h1/web h2/pg h3/db"; got != want {
			t.Errorf("GroupBusy breaching %q, want %q", got, want)
		}

		// Deleting the host override falls back to the site's at once.
		ovs, err := es.engine.ListOverrides(ctx, alert.OverrideFilter{Alert: "HostHot", HostID: es.h2.ID})
		if err != nil || len(ovs) != 1 {
			t.Fatalf("overrides of h2: %v %v", ovs, err)
		}
		if err := es.engine.DeleteOverride(ctx, ovs[0].ID); err != nil {
			t.Fatal(err)
		}
		if got := wm("HostHot", "host", "acme", "london", "h2", ""); got != 60 {
			t.Errorf("after delete: %v, want the site's 60", got)
		}
		// The UI's view of a host.
		var found bool
		for _, ef := range es.engine.EffectiveFor("acme", "h2") {
			if ef.Alert == "GroupBusy" && ef.UnitValue == "pg" {
				found = ef.Value == 40 && ef.Default == 90
			}
		}
		if !found {
			t.Errorf("EffectiveFor(acme, h2) lacks GroupBusy pg = 40: %+v", es.engine.EffectiveFor("acme", "h2"))
		}
	})
}

func TestOverrideValidation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		es := newEstate(t, db)
		ctx := context.Background()
		for _, c := range []struct {
			name  string
			o     alert.Override
			field string
			msg   string
		}{
			{"unknown alert", alert.Override{Alert: "Nope", Scope: alert.ScopeClient, ClientID: es.acme.ID, Value: 1}, "alert", "unknown alert"},
			{"no watermark", alert.Override{Alert: "NoWatermark", Scope: alert.ScopeClient, ClientID: es.acme.ID, Value: 1}, "alert", "no watermark"},
			{"negative", alert.Override{Alert: "HostHot", Scope: alert.ScopeClient, ClientID: es.acme.ID, Value: -1}, "value", "negative"},
			{"no scope", alert.Override{Alert: "HostHot", ClientID: es.acme.ID, Value: 1}, "scope", "required"},
			{"bad scope", alert.Override{Alert: "HostHot", Scope: "galaxy", Value: 1}, "scope", "unknown scope"},
			{"missing host", alert.Override{Alert: "HostHot", Scope: alert.ScopeHostOv, HostID: "nope", Value: 1}, "host_id", "no host"},
			{"unit on host alert", alert.Override{Alert: "HostHot", Scope: alert.ScopeHostOv, HostID: es.h1.ID, UnitLabel: "group", UnitValue: "x", Value: 1}, "unit_label", "host-level"},
			{"wrong unit", alert.Override{Alert: "GroupBusy", Scope: alert.ScopeHostOv, HostID: es.h1.ID, UnitLabel: "mountpoint", UnitValue: "/", Value: 1}, "unit_label", "per group"},
			{"service on host alert", alert.Override{Alert: "HostHot", Scope: alert.ScopeService, ServiceID: es.pgOnH2.ID, Value: 1}, "service_id", "host-level"},
		} {
			t.Run(c.name, func(t *testing.T) {
				_, err := es.engine.SaveOverride(ctx, c.o)
				fe := config.FieldErrors(err)
				if len(fe) == 0 {
					t.Fatalf("err = %v, want a field error on %s", err, c.field)
				}
				if fe[0].Field != c.field || !strings.Contains(fe[0].Msg, c.msg) {
					t.Errorf("got %v, want %s: ...%s...", fe, c.field, c.msg)
				}
			})
		}
		// A duplicate scope is a field error, not a 500.
		o := alert.Override{Alert: "HostHot", Scope: alert.ScopeClient, ClientID: es.acme.ID, Value: 1}
		if _, err := es.engine.SaveOverride(ctx, o); err != nil {
			t.Fatal(err)
		}
		if _, err := es.engine.SaveOverride(ctx, o); len(config.FieldErrors(err)) == 0 {
			t.Errorf("duplicate: %v, want a field error", err)
		}
		if err := es.engine.DeleteOverride(ctx, "nope"); !errors.Is(err, alert.ErrNotFound) {
			t.Errorf("delete unknown: %v", err)
		}
	})
}

func TestSetRulesRefusesBadRules(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		es := newEstate(t, db)
		bad := testRuleSet()
		bad.Files = map[string][]byte{"bad.yml": []byte("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: rate(foo[5m]\n")}
		err := es.engine.SetRules(context.Background(), bad)
		if err == nil || !strings.Contains(err.Error(), "bad.yml") || !strings.Contains(err.Error(), "unclosed left parenthesis") {
			t.Fatalf("err = %v, want the file and the PromQL parser's message", err)
		}
		if _, ok := es.engine.Rules().Files["test.yml"]; !ok {
			t.Error("the previous rules were dropped")
		}
	})
}

// TestRulesSeeWatermarksOfReportingHostsOnly: the rules' view of sage_watermark holds the hosts
// that have series (by host name), so that a threshold rule does not join every inventory host
// at each evaluation; the query API's view holds every active host; and the join's answer is the
// same through both.
func TestRulesSeeWatermarksOfReportingHostsOnly(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		es := newEstate(t, db)
		now := time.Now()
		query := func(q storage.Queryable, expr string) []string {
			t.Helper()
			qry, err := es.metrics.Engine().NewInstantQuery(context.Background(), q, nil, expr, now)
			if err != nil {
				t.Fatal(err)
			}
			defer qry.Close()
			res := qry.Exec(context.Background())
			if res.Err != nil {
				t.Fatalf("%s: %v", expr, res.Err)
			}
			vec, err := res.Vector()
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, s := range vec {
				out = append(out, s.Metric.Get("client")+"/"+s.Metric.Get("host"))
			}
			sort.Strings(out)
			return out
		}
		const wm = `sage_watermark{alert="HostHot", scope="host"}`
		const rule = `test_temp > on(client, host) group_left() ` + wm
		every := []string{"acme/h1", "acme/h2", "acme/h3", "beta/b1"}

		for _, c := range []struct {
			name       string
			seed       map[string]float64
			rules, api []string // sage_watermark as each side sees it
			breaching  []string
		}{
			{name: "no series yet", rules: nil, api: every},
			{
				name:  "h1 and b1 report, h1 breaches",
				seed:  map[string]float64{"test_temp acme/london/h1": 75, "test_temp beta//b1": 20},
				rules: []string{"acme/h1", "beta/b1"}, api: every, breaching: []string{"acme/h1"},
			},
		} {
			t.Run(c.name, func(t *testing.T) {
				if c.seed != nil {
					es.seed(t, now.Add(-time.Second), c.seed)
				}
				if got := query(es.engine.RulesQueryable(), wm); !slices.Equal(got, c.rules) {
					t.Errorf("rules see watermarks of %v, want %v", got, c.rules)
				}
				if got := query(es.engine.Queryable(), wm); !slices.Equal(got, c.api) {
					t.Errorf("the query API sees watermarks of %v, want %v", got, c.api)
				}
				for name, q := range map[string]storage.Queryable{"rules": es.engine.RulesQueryable(), "api": es.engine.Queryable()} {
					if got := query(q, rule); !slices.Equal(got, c.breaching) {
						t.Errorf("%s: %s = %v, want %v", name, rule, got, c.breaching)
					}
				}
			})
		}
	})
}
