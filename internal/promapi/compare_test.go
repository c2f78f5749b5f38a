package promapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/metricstore"
	"github.com/serversage/sage/internal/testenv"
)

// apiResponse is one answer of a Prometheus API: status code and decoded JSON body.
type apiResponse struct {
	code int
	raw  string
	body map[string]any
}

func (r apiResponse) data() any { return r.body["data"] }

func callAPI(t *testing.T, base, method, path string, params url.Values) apiResponse {
	t.Helper()
	var (
		resp *http.Response
		err  error
	)
	u := base + "/api/v1" + path
	switch method {
	case http.MethodGet:
		if len(params) > 0 {
			u += "?" + params.Encode()
		}
		resp, err = http.Get(u)
	case http.MethodPost:
		resp, err = http.PostForm(u, params)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := apiResponse{code: resp.StatusCode, raw: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("%s %s: %v in %q", method, u, err, b)
		}
	}
	return r
}

// skeleton renders the structure of a JSON value: object keys, array element shapes (as a set) and
// scalar types, without the values. Two answers with equal skeletons have the same keys, types and
// label names everywhere.
func skeleton(v any) string {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = strconv.Quote(k) + ":" + skeleton(v[k])
		}
		return "{" + strings.Join(parts, ",") + "}"
	case []any:
		var elems []string
		for _, e := range v {
			elems = append(elems, skeleton(e))
		}
		slices.Sort(elems)
		return "[" + strings.Join(slices.Compact(elems), "|") + "]"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// skeletonAnyKeys is skeleton with the data object's keys left out, for answers whose keys are
// an arbitrary pick (a limited /metadata).
func skeletonAnyKeys(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return skeleton(v)
	}
	c := map[string]any{}
	for k, x := range m {
		c[k] = x
	}
	if d, ok := m["data"].(map[string]any); ok {
		var vals []any
		for _, x := range d {
			vals = append(vals, x)
		}
		c["data"] = vals
	}
	return skeleton(c)
}

// canonical renders a JSON value with arrays sorted, for comparing answers modulo order.
func canonical(v any) string {
	switch v := v.(type) {
	case []any:
		elems := make([]string, len(v))
		for i, e := range v {
			elems[i] = canonical(e)
		}
		slices.Sort(elems)
		return "[" + strings.Join(elems, ",") + "]"
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = strconv.Quote(k) + ":" + canonical(v[k])
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// tolerance decides whether two sample values are close enough, given that two scrapers read the
// same target at moments up to one scrape interval apart.
type tolerance func(ours, theirs float64) bool

func exact(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }

func within(abs, rel float64) tolerance {
	return func(a, b float64) bool {
		return math.Abs(a-b) <= abs+rel*math.Max(math.Abs(a), math.Abs(b))
	}
}

func sampleValue(t *testing.T, v any) (int64, float64) {
	t.Helper()
	pair, ok := v.([]any)
	if !ok || len(pair) != 2 {
		t.Fatalf("not a [time, value] pair: %v", v)
	}
	ts := pair[0].(float64)
	f, err := strconv.ParseFloat(pair[1].(string), 64)
	if err != nil {
		t.Fatalf("value %v: %v", pair[1], err)
	}
	return int64(math.Round(ts * 1000)), f
}

// samples indexes a vector or matrix result by series, then by timestamp.
func samples(t *testing.T, data any) map[string]map[int64]float64 {
	t.Helper()
	out := map[string]map[int64]float64{}
	d := data.(map[string]any)
	switch d["resultType"] {
	case "scalar", "string":
		ts, _ := d["result"].([]any)[0].(float64)
		v := d["result"].([]any)[1].(string)
		f, _ := strconv.ParseFloat(v, 64)
		out[""] = map[int64]float64{int64(ts * 1000): f}
		return out
	}
	for _, s := range d["result"].([]any) {
		s := s.(map[string]any)
		key := canonical(s["metric"])
		out[key] = map[int64]float64{}
		if v, ok := s["value"]; ok {
			ts, f := sampleValue(t, v)
			out[key][ts] = f
		}
		for _, v := range asSlice(s["values"]) {
			ts, f := sampleValue(t, v)
			out[key][ts] = f
		}
	}
	return out
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// sameSamples compares two results series by series and point by point. A range of several
// points may lack its first point in the store that started scraping later; otherwise the
// timestamps must be the same.
func sameSamples(tol tolerance) func(t *testing.T, ours, theirs apiResponse) {
	return func(t *testing.T, ours, theirs apiResponse) {
		o, p := samples(t, ours.data()), samples(t, theirs.data())
		for k := range p {
			if _, ok := o[k]; !ok {
				t.Errorf("series %s is in Prometheus's answer only", k)
			}
		}
		for k, os := range o {
			ps, ok := p[k]
			if !ok {
				t.Errorf("series %s is in our answer only", k)
				continue
			}
			if d := len(ps) - len(os); d < -1 || d > 1 || (len(ps) <= 1 && d != 0) {
				t.Errorf("%s: %d points, Prometheus %d", k, len(os), len(ps))
			}
			for ts, ov := range os {
				pv, ok := ps[ts]
				if !ok {
					continue
				}
				if !tol(ov, pv) {
					t.Errorf("%s @%d: %v, Prometheus %v", k, ts, ov, pv)
				}
			}
		}
	}
}

// sameData compares the data of two answers exactly, modulo the order of arrays.
func sameData(t *testing.T, ours, theirs apiResponse) {
	if o, p := canonical(ours.data()), canonical(theirs.data()); o != p {
		t.Errorf("data differs:\n ours:       %.2000s\n Prometheus: %.2000s", o, p)
	}
}

// sameLength compares only how many entries the data has (a limited answer picks any entries).
func sameLength(t *testing.T, ours, theirs apiResponse) {
	lenOf := func(v any) int {
		switch v := v.(type) {
		case []any:
			return len(v)
		case map[string]any:
			return len(v)
		}
		return -1
	}
	if o, p := lenOf(ours.data()), lenOf(theirs.data()); o != p {
		t.Errorf("%d entries, Prometheus %d", o, p)
	}
}

// TestMatchesPrometheus has the real prometheus binary and the hub's store scrape the same
// `sage agent` every second, then puts the same questions to both APIs and compares the answers:
// status codes, error types and the shape of every answer exactly, the series and label sets
// exactly, and values exactly where the scrape moment cannot matter (constants, counts) and within
// a tolerance where it can (rates, moving gauges).
func TestMatchesPrometheus(t *testing.T) {
	prom := testenv.LookPath(t, "prometheus", "prometheus")
	bin := testenv.BuildSage(t)
	agent := startAgent(t, bin)
	hostname, _ := os.Hostname()
	targetLabels := map[string]string{"client": "local", "site": "lab", "host": hostname}
	theirs := startPrometheus(t, prom, agent, targetLabels)

	store, err := metricstore.Open(metricstore.Options{
		Dir: t.TempDir(), ScrapeInterval: time.Second, ScrapeTimeout: time.Second, TargetsReload: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.SetTargets(context.Background(), map[string][]metricstore.Target{
		"sage": {{Address: agent, Labels: targetLabels}},
	}); err != nil {
		t.Fatal(err)
	}
	h, err := New(store, Options{Prefix: "/prometheus"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ours := srv.URL + "/prometheus"

	// Enough scrapes in both that the earliest 5-second window of the range queries below (8 s
	// back) holds only full data: at a series' first samples, rate() extrapolates less, and the two
	// scrapers did not start at the same moment.
	const scrapes = 16
	deadline := time.Now().Add(90 * time.Second)
	for _, base := range []string{theirs, ours} {
		for {
			r := callAPI(t, base, http.MethodGet, "/query", url.Values{"query": {"count_over_time(up[1m])"}})
			s := samples(t, r.data())
			done := false
			for _, v := range s {
				for _, f := range v {
					done = f >= scrapes
				}
			}
			if done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not scrape the agent %d times: %s", base, scrapes, r.raw)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}

	now := time.Now().Add(-1500 * time.Millisecond).Truncate(time.Second)
	at := strconv.FormatInt(now.Unix(), 10)
	start := strconv.FormatInt(now.Add(-8*time.Second).Unix(), 10)
	q := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}
	type check func(t *testing.T, ours, theirs apiResponse)
	loose := within(0.05, 0.25)
	tests := []struct {
		name   string
		method string
		path   string
		params url.Values
		check  check // after the status, error type and shape, which are always compared
	}{
		// Instant queries.
		{"constant gauge", "GET", "/query", q("query", "node_memory_MemTotal_bytes", "time", at), sameSamples(exact)},
		{"up", "GET", "/query", q("query", "up", "time", at), sameSamples(exact)},
		{"count", "GET", "/query", q("query", "count(node_cpu_seconds_total)", "time", at), sameSamples(exact)},
		{"count by", "GET", "/query", q("query", "count by (mode) (node_cpu_seconds_total)", "time", at), sameSamples(exact)},
		{"cpu rate", "GET", "/query", q("query", "rate(node_cpu_seconds_total[5s])", "time", at), sameSamples(loose)},
		{"sum rate by", "GET", "/query", q("query", `sum by (mode) (rate(node_cpu_seconds_total{mode=~"idle|user|system"}[5s]))`, "time", at), sameSamples(loose)},
		{"load", "GET", "/query", q("query", "node_load1", "time", at), sameSamples(within(0.5, 0.25))},
		{"samples scraped", "GET", "/query", q("query", "scrape_samples_scraped", "time", at), sameSamples(within(0, 0.05))},
		{"range vector", "GET", "/query", q("query", "node_memory_MemTotal_bytes[5s]", "time", at), sameSamples(exact)},
		{"scalar", "GET", "/query", q("query", "scalar(count(up))", "time", at), sameSamples(exact)},
		{"time", "GET", "/query", q("query", "time()", "time", at), sameSamples(exact)},
		{"string", "GET", "/query", q("query", `"hello"`, "time", at), sameData},
		{"absent", "GET", "/query", q("query", "absent(no_such_metric)", "time", at), sameSamples(exact)},
		{"empty", "GET", "/query", q("query", "no_such_metric", "time", at), sameData},
		{"at modifier", "GET", "/query", q("query", "node_memory_MemTotal_bytes @ "+at, "time", at), sameSamples(exact)},
		{"POST query", "POST", "/query", q("query", "node_memory_MemTotal_bytes", "time", at), sameSamples(exact)},

		// Range queries.
		{"range constant", "GET", "/query_range", q("query", "node_memory_MemTotal_bytes", "start", start, "end", at, "step", "1"), sameSamples(exact)},
		{"range up", "GET", "/query_range", q("query", "up", "start", start, "end", at, "step", "2s"), sameSamples(exact)},
		// Both should be close to the number of CPUs, but over a 5 s window of 1 s scrapes one
		// late scrape on a loaded machine moves the extrapolated rate by a fifth: the engine is
		// the same, the samples are not.
		{"range rate", "GET", "/query_range", q("query", "sum(rate(node_cpu_seconds_total[5s]))", "start", start, "end", at, "step", "1"), sameSamples(within(0.1, 0.25))},
		{"POST range", "POST", "/query_range", q("query", "node_memory_MemTotal_bytes", "start", start, "end", at, "step", "1"), sameSamples(exact)},

		// Series, labels, label values.
		{"series", "GET", "/series", q("match[]", "node_memory_MemTotal_bytes", "start", start, "end", at), sameData},
		{"series regex", "GET", "/series", q("match[]", `{__name__=~"node_load(1|5|15)"}`, "start", start, "end", at), sameData},
		{"series two matchers", "GET", "/series", q("match[]", "up", "match[]", `node_cpu_seconds_total{mode="idle"}`, "start", start, "end", at), sameData},
		{"POST series", "POST", "/series", q("match[]", `node_cpu_seconds_total{mode="user"}`, "start", start, "end", at), sameData},
		{"labels", "GET", "/labels", q("start", start, "end", at), sameData},
		{"labels match", "GET", "/labels", q("match[]", "node_filesystem_size_bytes", "start", start, "end", at), sameData},
		{"POST labels", "POST", "/labels", q("match[]", "up", "start", start, "end", at), sameData},
		{"metric names", "GET", "/label/__name__/values", q("start", start, "end", at), sameData},
		{"job values", "GET", "/label/job/values", nil, sameData},
		{"mode values", "GET", "/label/mode/values", q("match[]", "node_cpu_seconds_total"), sameData},
		{"no values", "GET", "/label/no_such_label/values", nil, sameData},

		// Metadata and status.
		{"metadata one", "GET", "/metadata", q("metric", "node_memory_MemTotal_bytes"), sameData},
		{"metadata all", "GET", "/metadata", nil, sameData},
		{"metadata limit", "GET", "/metadata", q("limit", "5"), sameLength}, // any 5 metrics: names differ
		{"metadata none", "GET", "/metadata", q("metric", "no_such_metric"), sameData},
		{"buildinfo", "GET", "/status/buildinfo", nil, nil},

		// Errors.
		{"bad promql", "GET", "/query", q("query", "rate(node_cpu_seconds_total[5s]"), nil},
		{"missing query", "GET", "/query", nil, nil},
		{"bad time", "GET", "/query", q("query", "up", "time", "yesterday"), nil},
		{"missing step", "GET", "/query_range", q("query", "up", "start", start, "end", at), nil},
		{"end before start", "GET", "/query_range", q("query", "up", "start", at, "end", start, "step", "1"), nil},
		{"too many points", "GET", "/query_range", q("query", "up", "start", "0", "end", at, "step", "1"), nil},
		{"series without match", "GET", "/series", nil, nil},
		{"bad matcher", "GET", "/series", q("match[]", "up{"), nil},
		{"range vector in range query", "GET", "/query_range", q("query", "up[1m]", "start", start, "end", at, "step", "1"), nil},
		{"execution error", "GET", "/query", q("query", "vector(1) + on() group_left sum by (mode) (node_cpu_seconds_total)", "time", at), nil},
		{"unknown endpoint", "GET", "/no_such_endpoint", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := callAPI(t, ours, tt.method, tt.path, tt.params)
			p := callAPI(t, theirs, tt.method, tt.path, tt.params)
			if o.code != p.code {
				t.Fatalf("status %d, Prometheus %d\n ours:       %.500s\n Prometheus: %.500s", o.code, p.code, o.raw, p.raw)
			}
			if o.body["status"] != p.body["status"] || o.body["errorType"] != p.body["errorType"] {
				t.Fatalf("status %v/%v, Prometheus %v/%v", o.body["status"], o.body["errorType"], p.body["status"], p.body["errorType"])
			}
			shape := skeleton
			if tt.params.Get("limit") != "" {
				shape = skeletonAnyKeys
			}
			if os, ps := shape(o.body), shape(p.body); os != ps {
				t.Errorf("answers differ in shape:\n ours:       %.3000s\n Prometheus: %.3000s", os, ps)
			}
			if e := o.body["error"]; e != nil && e != p.body["error"] {
				t.Logf("error text differs (not compared):\n ours:       %v\n Prometheus: %v", e, p.body["error"])
			}
			if tt.check != nil && !t.Failed() {
				tt.check(t, o, p)
			}
		})
	}
}
