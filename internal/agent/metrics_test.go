package agent

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"

	"github.com/serversage/sage/internal/collector"
)

// TestMetricNamesDisjoint makes sure no collector exposes a family of the agent's own metrics:
// the two are gathered into one list, where a name in both would be a conflict.
func TestMetricNamesDisjoint(t *testing.T) {
	ownNames := familyNames(t, &collector.Config{Disable: collector.Names(), StateDir: t.TempDir()}, newOwnMetrics())
	if !slices.Contains(ownNames, "process_cpu_seconds_total") || !slices.Contains(ownNames, "go_goroutines") {
		t.Fatalf("the agent's own families are %v", ownNames)
	}
	hostNames := familyNames(t, &collector.Config{Enable: collector.Names(), StateDir: t.TempDir()})
	for _, n := range ownNames {
		if slices.Contains(hostNames, n) {
			t.Errorf("%s is exposed by a collector and by the agent", n)
		}
	}
	for _, n := range append(ownNames, hostNames...) {
		if !model.IsValidLegacyMetricName(n) {
			t.Errorf("%s is not a legacy metric name: the handler encodes without escaping", n)
		}
	}
}

// familyNames gathers once from the collectors cfg enables and the extra collectors, and fails
// the test on any inconsistency Gather reports.
func familyNames(t *testing.T, cfg *collector.Config, extra ...collector.Collector) []string {
	t.Helper()
	set, err := collector.NewSet(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	var g collector.Gathered
	if err := set.GatherInto(context.Background(), &g, extra...); err != nil {
		t.Fatalf("gather: %v", err)
	}
	var names []string
	for _, mf := range g.List {
		names = append(names, mf.GetName())
	}
	return names
}

func TestMetricsHandler(t *testing.T) {
	a, err := New(Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h := a.Handler()
	tests := []struct {
		name, accept, encoding, query string
		wantType                      string
		wantIn, wantNotIn             []string
		wantEOF                       bool
	}{
		{name: "text", wantType: "text/plain; version=0.0.4; charset=utf-8; escaping=underscores",
			wantIn: []string{"# TYPE node_cpu_seconds_total counter\n", "\ngo_goroutines ", "\nprocess_open_fds ", `sage_build_info{branch=`}},
		{name: "openmetrics", accept: "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
			wantType: "application/openmetrics-text; version=1.0.0", wantEOF: true,
			wantIn: []string{"# TYPE node_cpu_seconds counter\n", "\ngo_threads ", "\ngo_gc_cycles_total_gc_cycles_total "}},
		{name: "gzip", encoding: "gzip", wantType: "text/plain; version=0.0.4",
			wantIn: []string{"# TYPE node_load1 gauge\n"}},
		{name: "name filter", query: "?name[]=node_load1&name[]=go_goroutines", wantType: "text/plain",
			wantIn: []string{"# TYPE node_load1 gauge\n", "\ngo_goroutines "}, wantNotIn: []string{"node_cpu_seconds_total"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/metrics"+tt.query, nil)
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			if tt.encoding != "" {
				req.Header.Set("Accept-Encoding", tt.encoding)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d", w.Code)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type %q, want %q", ct, tt.wantType)
			}
			var body io.Reader = w.Body
			if tt.encoding == "gzip" {
				if ce := w.Header().Get("Content-Encoding"); ce != "gzip" {
					t.Fatalf("Content-Encoding %q", ce)
				}
				zr, err := gzip.NewReader(w.Body)
				if err != nil {
					t.Fatal(err)
				}
				body = zr
			}
			b, err := io.ReadAll(body)
			if err != nil {
				t.Fatal(err)
			}
			text := string(b)
			for _, s := range tt.wantIn {
				if !strings.Contains(text, s) {
					t.Errorf("body lacks %q", s)
				}
			}
			for _, s := range tt.wantNotIn {
				if strings.Contains(text, s) {
					t.Errorf("body has %q", s)
				}
			}
			if got := strings.HasSuffix(text, "# EOF\n"); got != tt.wantEOF {
				t.Errorf("ends with # EOF: %v, want %v", got, tt.wantEOF)
			}
		})
	}
}

var requests200 = regexp.MustCompile(`(?m)^promhttp_metric_handler_requests_total\{code="200"\} (\d+)$`)

func TestMetricsHandlerCountsAndLimits(t *testing.T) {
	a, err := New(Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h := newMetricsHandler(a.set.Load, a.own, a.logger)
	scrape := func() (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		return w.Code, w.Body.String()
	}
	count := func(body string) int {
		m := requests200.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no promhttp_metric_handler_requests_total{code=\"200\"} in\n%s", body)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	_, first := scrape()
	_, second := scrape()
	if c1, c2 := count(first), count(second); c2 != c1+1 {
		t.Errorf("requests_total{code=200} went from %d to %d over one scrape", c1, c2)
	}

	for range maxScrapesInFlight { // as if that many scrapes were running
		h.sem <- struct{}{}
	}
	if code, _ := scrape(); code != http.StatusServiceUnavailable {
		t.Errorf("with %d scrapes in flight: status %d, want 503", maxScrapesInFlight, code)
	}
	for range maxScrapesInFlight {
		<-h.sem
	}
	code, body := scrape()
	if code != http.StatusOK || !strings.Contains(body, `promhttp_metric_handler_requests_total{code="503"} 1`) {
		t.Errorf("after the limit cleared: status %d, 503s not counted once:\n%s", code, body)
	}
}

// TestOwnMetricsValues checks the agent's own figures against what the process knows of itself.
func TestOwnMetricsValues(t *testing.T) {
	set, err := collector.NewSet(&collector.Config{Disable: collector.Names(), StateDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var g collector.Gathered
	if err := set.GatherInto(context.Background(), &g, newOwnMetrics()); err != nil {
		t.Fatal(err)
	}
	value := func(name string) float64 {
		i := slices.IndexFunc(g.List, func(mf *dto.MetricFamily) bool { return mf.GetName() == name })
		if i < 0 || len(g.List[i].Metric) != 1 {
			t.Fatalf("%s missing or not one series", name)
		}
		m := g.List[i].Metric[0]
		return m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	tests := []struct {
		name     string
		min, max float64
	}{
		{"go_goroutines", 1, 1e6},
		{"go_threads", 1, 1e5},
		{"go_sched_gomaxprocs_threads", 1, 1e4},
		{"go_memstats_heap_alloc_bytes", 1 << 10, 1 << 40},
		{"process_open_fds", 3, 1e6}, // stdin, stdout, stderr at least
		{"process_resident_memory_bytes", 1 << 20, 1 << 40},
		{"sage_agent_config_last_reload_successful", 1, 1},
	}
	for _, tt := range tests {
		if v := value(tt.name); v < tt.min || v > tt.max {
			t.Errorf("%s = %v, want within [%v, %v]", tt.name, v, tt.min, tt.max)
		}
	}
}
