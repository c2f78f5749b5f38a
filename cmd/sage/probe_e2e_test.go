package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/serversage/sage/internal/testenv"
)

// TestPrometheusProbesThroughAgent has the real Prometheus scrape the agent's /probe with a scrape
// configuration written exactly as blackbox_exporter's README documents it, and the agent's
// /metrics with a scheduled probe target: both must report success for a loopback HTTP server.
func TestPrometheusProbesThroughAgent(t *testing.T) {
	prom := testenv.LookPath(t, "prometheus", "prometheus")
	bin := testenv.BuildSage(t)
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("hello\n"))
	}))
	defer site.Close()
	agentAddr := startAgent(t, bin, fmt.Sprintf(`probes:
  targets:
    - {name: site, target: %q, module: http_2xx, interval: 1s}
`, site.URL))

	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: 'blackbox'
    metrics_path: /probe
    params:
      module: [http_2xx]  # Look for a HTTP 200 response.
    static_configs:
      - targets:
        - %s
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: %s  # The blackbox exporter's real hostname:port.
  - job_name: 'agent'
    static_configs:
      - targets: ['%s']
`, site.URL, agentAddr, agentAddr)
	promAddr := startPrometheus(t, prom, dir, cfg)

	query := func(q string) (float64, bool) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Result) != 1 {
			return 0, false
		}
		var v float64
		fmt.Sscan(fmt.Sprint(r.Data.Result[0].Value[1]), &v)
		return v, true
	}
	checks := []struct{ query, what string }{
		{fmt.Sprintf(`probe_success{job="blackbox",instance=%q}`, site.URL), "blackbox-style /probe scrape"},
		{fmt.Sprintf(`probe_http_status_code{job="blackbox",instance=%q}`, site.URL), "the HTTP status through /probe"},
		{`sage_probe_success{job="agent",target="site",module="http_2xx"}`, "the agent's scheduled probe"},
	}
	want := []float64{1, 200, 1}
	deadline := time.Now().Add(60 * time.Second)
	for i, c := range checks {
		for {
			v, ok := query(c.query)
			if ok && v == want[i] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s = %v (found %v), want %v", c.what, c.query, v, ok, want[i])
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	if v, ok := query(`min_over_time(up{job="blackbox"}[1m])`); !ok || v != 1 {
		t.Errorf("a /probe scrape failed: min_over_time(up) = %v (%v)", v, ok)
	}
}
