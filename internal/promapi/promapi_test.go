package promapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/serversage/sage/internal/metricstore"
)

func newAPI(t *testing.T, o Options) (*metricstore.Store, *httptest.Server) {
	t.Helper()
	store, err := metricstore.Open(metricstore.Options{Dir: t.TempDir(), Retention: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h, err := New(store, o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return store, srv
}

func do(t *testing.T, method, u string, form url.Values, header http.Header) (int, http.Header, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// TestAnswers checks exact answers over samples appended to the store: the JSON Prometheus
// clients parse, byte for byte.
func TestAnswers(t *testing.T) {
	store, srv := newAPI(t, Options{Prefix: "/prometheus"})
	base := srv.URL + "/prometheus/api/v1"
	ts := time.Unix(1_800_000_000, 0)
	app := store.Appender(context.Background())
	for i := range 3 {
		for _, host := range []string{"a", "b"} {
			ls := labels.FromStrings("__name__", "requests_total", "host", host, "job", "sage")
			if _, err := app.Append(0, ls, ts.Add(time.Duration(i)*time.Minute).UnixMilli(), float64(10*i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	at := "1800000120"
	tests := []struct {
		name   string
		method string
		path   string
		params url.Values
		code   int
		want   string
	}{
		{"instant", "GET", "/query", url.Values{"query": {`requests_total{host="a"}`}, "time": {at}}, 200,
			`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"requests_total","host":"a","job":"sage"},"value":[1800000120,"20"]}]}}`},
		{"instant POST", "POST", "/query", url.Values{"query": {`sum(requests_total)`}, "time": {at}}, 200,
			`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1800000120,"40"]}]}}`},
		{"range", "GET", "/query_range", url.Values{"query": {`requests_total{host="b"}`}, "start": {"1800000000"}, "end": {at}, "step": {"60"}}, 200,
			`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"requests_total","host":"b","job":"sage"},"values":[[1800000000,"0"],[1800000060,"10"],[1800000120,"20"]]}]}}`},
		{"series", "GET", "/series", url.Values{"match[]": {`requests_total`}, "start": {"1800000000"}, "end": {at}}, 200,
			`{"status":"success","data":[{"__name__":"requests_total","host":"a","job":"sage"},{"__name__":"requests_total","host":"b","job":"sage"}]}`},
		{"labels", "POST", "/labels", url.Values{"start": {"1800000000"}, "end": {at}}, 200,
			`{"status":"success","data":["__name__","host","job"]}`},
		{"label values", "GET", "/label/host/values", url.Values{"start": {"1800000000"}, "end": {at}}, 200,
			`{"status":"success","data":["a","b"]}`},
		{"format", "GET", "/format_query", url.Values{"query": {`sum(rate(x[5m]))by(a)`}}, 200,
			`{"status":"success","data":"sum by (a) (rate(x[5m]))"}`},
		{"bad query", "GET", "/query", url.Values{"query": {`sum(`}}, 400,
			`{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"}`},
		{"no match", "GET", "/series", nil, 400,
			`{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := base + tt.path
			var form url.Values
			if tt.method == "GET" {
				u += "?" + tt.params.Encode()
			} else {
				form = tt.params
			}
			code, h, body := do(t, tt.method, u, form, nil)
			if code != tt.code || body != tt.want {
				t.Errorf("%d %s\nwant %d %s", code, body, tt.code, tt.want)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

// TestEndpoints checks which endpoints are served under the prefix: the read-only ones answer, the
// ones that write, administer or need what the hub does not run answer 404.
func TestEndpoints(t *testing.T) {
	_, srv := newAPI(t, Options{Prefix: "/prometheus/"})
	base := srv.URL + "/prometheus/api/v1"
	tests := []struct {
		method, path string
		code         int
		contains     string
	}{
		{"GET", "/status/buildinfo", 200, `"version":"3.15.0"`},
		{"GET", "/status/runtimeinfo", 200, `"storageRetention":"48h0m0s"`},
		{"GET", "/status/flags", 200, `"query.lookback-delta":"5m0s"`},
		{"GET", "/status/config", 200, `scrape_interval: 15s`},
		{"GET", "/status/tsdb", 200, `"headStats"`},
		{"GET", "/status/walreplay", 200, `"current"`},
		{"GET", "/targets", 200, `"activeTargets":[]`},
		{"GET", "/targets/metadata?match_target={job=\"x\"}", 200, `"data":[]`},
		{"GET", "/scrape_pools", 200, `"scrapePools":[]`},
		{"GET", "/rules", 200, `"groups":[]`},
		{"GET", "/alerts", 200, `"alerts":[]`},
		{"GET", "/metadata", 200, `"data":{}`},
		{"GET", "/query_exemplars?query=up&start=0&end=1", 200, `"data":[]`},
		{"GET", "/parse_query?query=up", 200, `"type":"vectorSelector"`},
		// Prometheus takes label values as GET only.
		{"POST", "/label/job/values", 405, ""},
		{"POST", "/admin/tsdb/snapshot", 404, ""},
		{"POST", "/admin/tsdb/delete_series?match[]=up", 404, ""},
		{"POST", "/write", 404, ""},
		{"POST", "/otlp/v1/metrics", 404, ""},
		{"POST", "/read", 404, ""},
		{"GET", "/notifications", 404, ""},
		{"GET", "/features", 404, ""},
		{"GET", "/openapi.yaml", 404, ""},
		{"GET", "/status/self_metrics", 404, ""},
		{"GET", "/search/metric_names", 404, ""},
		{"GET", "/label//values", 400, `"errorType":"bad_data"`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, _, body := do(t, tt.method, base+tt.path, nil, nil)
			if code != tt.code || !strings.Contains(body, tt.contains) {
				t.Errorf("%d %.300s\nwant %d containing %s", code, body, tt.code, tt.contains)
			}
		})
	}
	for _, u := range []string{srv.URL + "/api/v1/query?query=1", srv.URL + "/prometheus/api/v2/query?query=1", srv.URL + "/prometheusx/api/v1/query?query=1"} {
		if code, _, _ := do(t, "GET", u, nil, nil); code != 404 {
			t.Errorf("%s: %d, want 404 outside the prefix", u, code)
		}
	}
}

func TestCORS(t *testing.T) {
	tests := []struct {
		name, allow, origin, want string
	}{
		{"none by default", "", "https://evil.example", ""},
		{"allowed origin", `https://grafana\.example`, "https://grafana.example", "https://grafana.example"},
		{"other origin", `https://grafana\.example`, "https://evil.example", ""},
		{"any", ".*", "https://anything.example", "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newAPI(t, Options{CORSOrigin: tt.allow})
			code, h, _ := do(t, "GET", srv.URL+"/api/v1/query?query=1", nil, http.Header{"Origin": {tt.origin}})
			if code != 200 || h.Get("Access-Control-Allow-Origin") != tt.want {
				t.Errorf("%d, Access-Control-Allow-Origin %q, want %q", code, h.Get("Access-Control-Allow-Origin"), tt.want)
			}
		})
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	store, err := metricstore.Open(metricstore.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"relative prefix", Options{Prefix: "prometheus"}, "does not start with /"},
		{"bad CORS", Options{CORSOrigin: "("}, "CORS origin"},
		{"bad external URL", Options{ExternalURL: "hub.example"}, "not scheme://host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(store, tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New accepted no store")
	}
}

// TestPrometheusVersion keeps the reported version equal to the module go.mod requires: Prometheus
// tags release 3.15.0 as module version v0.315.0.
func TestPrometheusVersion(t *testing.T) {
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var mod string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/prometheus/prometheus" {
			mod = f[1]
		}
	}
	var minor, patch int
	if _, err := fmt.Sscanf(mod, "v0.%d.%d", &minor, &patch); err != nil {
		t.Fatalf("go.mod requires prometheus %q: %v", mod, err)
	}
	if want := fmt.Sprintf("%d.%d.%d", minor/100, minor%100, patch); PrometheusVersion != want {
		t.Errorf("PrometheusVersion = %s, but go.mod requires %s (release %s)", PrometheusVersion, mod, want)
	}
}
