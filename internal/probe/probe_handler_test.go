package probe

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func parseText(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, body)
	}
	return fams
}

func testHandler() http.Handler {
	cfg := &Config{Modules: map[string]Module{
		"fake":       {Prober: "sched_fake"},
		"fake_short": {Prober: "sched_fake", Timeout: time.Second},
		"http_2xx":   {Prober: "sched_fake"}, // the default module, made offline
	}}
	if errs := cfg.Validate("probes"); len(errs) > 0 {
		panic(errs)
	}
	return NewHandler(HandlerOptions{Module: cfg.Module})
}

func get(t *testing.T, h http.Handler, url string, header http.Header) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, body
}

// /probe answers as blackbox_exporter does.
func TestProbeHandler(t *testing.T) {
	h := testHandler()
	cases := []struct {
		name, url string
		header    http.Header
		code      int
		want      []string // substrings of the body
	}{
		{"success", "/probe?target=ok:x&module=fake", nil, 200,
			[]string{"probe_success 1\n", "# TYPE probe_duration_seconds gauge", `probe_fake_value{kind="x"} 42`}},
		{"failure", "/probe?target=fail:x&module=fake", nil, 200, []string{"probe_success 0\n"}},
		{"default module", "/probe?target=ok:y", nil, 200, []string{"probe_success 1\n"}},
		{"unknown module", "/probe?target=ok:x&module=nope", nil, 400, []string{`Unknown module "nope"`}},
		{"missing target", "/probe?module=fake", nil, 400, []string{"Target parameter is missing"}},
		{"bad timeout header", "/probe?target=ok:x&module=fake", http.Header{"X-Prometheus-Scrape-Timeout-Seconds": {"soon"}}, 500,
			[]string{"Failed to parse timeout"}},
		{"debug", "/probe?target=ok:x&module=fake&debug=true", nil, 200,
			[]string{"Logs for the probe:", "fake probe ran", "Metrics that would have been returned:", "probe_success 1", "Module configuration:", "prober: sched_fake"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, h, tc.url, tc.header)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(body), w) {
					t.Errorf("body lacks %q:\n%s", w, body)
				}
			}
			if code == 200 && !strings.Contains(tc.url, "debug") {
				parseText(t, body)
			}
		})
	}
}

// The deadline is the scrape timeout less 0.5 s, or the module's timeout when shorter.
func TestProbeHandlerTimeout(t *testing.T) {
	h := testHandler()
	cases := []struct {
		module, header string
		want           float64
	}{
		{"fake", "3", 2.5},
		{"fake", "10.5", 10},
		{"fake_short", "10", 1},
		{"fake", "", 119.5}, // no header: blackbox's 120 s less the offset
	}
	for _, tc := range cases {
		hdr := http.Header{}
		if tc.header != "" {
			hdr.Set("X-Prometheus-Scrape-Timeout-Seconds", tc.header)
		}
		code, body := get(t, h, "/probe?target=deadline:&module="+tc.module, hdr)
		if code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
		fams := parseText(t, body)
		mf := fams["probe_fake_deadline_seconds"]
		if mf == nil {
			t.Fatalf("no deadline sample:\n%s", body)
		}
		got := mf.Metric[0].GetGauge().GetValue()
		if math.Abs(got-tc.want) > 0.25 {
			t.Errorf("module %s, header %q: deadline in %.3f s, want %.1f", tc.module, tc.header, got, tc.want)
		}
	}
}

// The scheduler's families parse as Prometheus text, with the ICMP round's histogram, the
// renamed samples of the result and the failures by reason.
func TestSchedulerFamilies(t *testing.T) {
	s := NewScheduler(SchedulerOptions{Concurrency: 4})
	m := &Module{Prober: "sched_fake"}
	s.SetTargets("config", []ScheduledTarget{
		{Name: "ok", Target: "ok:1", ModuleName: "fake", Module: m, Interval: time.Hour, Labels: []string{"site", "dc1"}},
		{Name: "ping", Target: "icmp:1", ModuleName: "fake", Module: m, Interval: time.Hour},
		{Name: "down", Target: "fail:1", ModuleName: "fake", Module: m, Interval: time.Hour},
	})
	// Run each target once by hand rather than wait for the schedule.
	for _, ts := range s.targets() {
		ts.record(Run(context.Background(), ts.Target, ts.Module, time.Second, nil))
	}
	var buf bytes.Buffer
	if err := writeFamilies(&buf, s.Families(), expfmt.NewFormat(expfmt.TypeTextPlain)); err != nil {
		t.Fatal(err)
	}
	fams := parseText(t, buf.Bytes())
	val := func(name string, labels map[string]string) (float64, bool) {
		mf := fams[name]
		if mf == nil {
			return 0, false
		}
	next:
		for _, m := range mf.Metric {
			got := map[string]string{}
			for _, lp := range m.Label {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
		return 0, false
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{famSuccess, map[string]string{"target": "ok", "module": "fake", "site": "dc1"}, 1},
		{famSuccess, map[string]string{"target": "down"}, 0},
		{"sage_probe_fake_value", map[string]string{"target": "ok", "kind": "x", "site": "dc1"}, 42},
		{famFailures, map[string]string{"target": "down", "reason": "connect"}, 1},
		{famSent, map[string]string{"target": "ping"}, 4},
		{famReceived, map[string]string{"target": "ping"}, 3},
		{famLoss, map[string]string{"target": "ping"}, 0.25},
		{famRTT, map[string]string{"target": "ping"}, 3},
		{famRTTMax, map[string]string{"target": "ping"}, 0.012},
		{famRuns, map[string]string{"target": "ok"}, 1},
		{famTargets, nil, 3},
		{famSlots, nil, 4},
	}
	for _, c := range checks {
		got, ok := val(c.name, c.labels)
		if !ok || math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if fams[famRTT].GetType() != dto.MetricType_HISTOGRAM || len(fams[famRTT].Metric[0].Histogram.Bucket) != len(RTTBuckets)+1 { // and +Inf
		t.Errorf("%s is not a histogram with %d buckets and +Inf", famRTT, len(RTTBuckets))
	}
	if _, ok := val(famJitter, map[string]string{"target": "ping"}); !ok {
		t.Errorf("no jitter for the ICMP round")
	}
	if _, ok := val(famFailures, map[string]string{"target": "ok"}); ok {
		t.Errorf("a target that never failed has failure series")
	}
}
