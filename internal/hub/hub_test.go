package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store/storetest"
	"github.com/serversage/sage/internal/testenv"
)

const testToken = "enrol-0123456789abcdefghijklmnopqrstuvwxyz"

// testHub is a hub serving on an httptest server with Run going, and an API token of the admin.
type testHub struct {
	*Hub
	srv      *httptest.Server
	apiToken string
	cfg      Config
}

// testConfig is a hub configuration in a fresh data directory with one enrolment token.
func testConfig(t *testing.T, dsn string, autoApprove bool) Config {
	t.Helper()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "enrol.token")
	if err := os.WriteFile(tokFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Config{
		DataDir:   filepath.Join(dir, "data"),
		State:     StateConfig{DSN: dsn},
		Metrics:   MetricsConfig{ScrapeInterval: "1s", ScrapeTimeout: "1s"},
		Enrolment: []EnrolmentConfig{{TokenFile: tokFile, AutoApprove: autoApprove, Client: "local"}},
	}
}

func startHub(t *testing.T, cfg Config) *testHub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h, err := New(ctx, cfg, storetest.Logger(t))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	admin, err := h.Auth().GetUserByName(ctx, auth.AdminUsername)
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := h.Auth().NewAPIToken(ctx, admin.ID, fmt.Sprintf("test %s %d", t.Name(), time.Now().UnixNano()), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return &testHub{Hub: h, srv: srv, apiToken: secret, cfg: cfg}
}

func (th *testHub) do(t *testing.T, method, path string, header http.Header, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, th.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
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
	return resp.StatusCode, string(b)
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// query runs an instant query through /prometheus with the admin's API token and returns the
// result vector's samples as labels -> value.
func (th *testHub) query(t *testing.T, q string) map[string]string {
	t.Helper()
	code, body := th.do(t, "GET", "/prometheus/api/v1/query?query="+url.QueryEscape(q), bearer(th.apiToken), "")
	if code != 200 {
		t.Fatalf("query %s: %d %s", q, code, body)
	}
	var r struct {
		Status string
		Data   struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Status != "success" || r.Data.ResultType != "vector" {
		t.Fatalf("query %s: %v %s", q, err, body)
	}
	out := map[string]string{}
	for _, s := range r.Data.Result {
		out[fmt.Sprint(s.Metric)] = fmt.Sprint(s.Value[1])
	}
	return out
}

// waitUp waits until up{host=name} is 1 through the query API, for up to 20 scrape intervals.
func (th *testHub) waitUp(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	q := fmt.Sprintf(`up{job=%q,client="local",host=%q}`, AgentJob, name)
	for {
		res := th.query(t, q)
		if len(res) == 1 {
			for _, v := range res {
				if v == "1" {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %v, targets %+v", q, res, th.Metrics().Targets())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, yaml string
		want       []string // substrings of the error, each naming file:line: field
	}{
		{"no data dir", "listen: 127.0.0.1:1\n", []string{"data_dir: is required"}},
		{"bad listen", "data_dir: d\nlisten: nowhere\n", []string{":2: listen: must be host:port"}},
		{"listen port", "data_dir: d\nlisten: 127.0.0.1:99999\n", []string{":2: listen: port"}},
		{"bad duration", "data_dir: d\nmetrics:\n  retention: forever\n", []string{":3: metrics.retention:"}},
		{"timeout over interval", "data_dir: d\nmetrics:\n  scrape_interval: 5s\n  scrape_timeout: 10s\n", []string{":4: metrics.scrape_timeout: 10s exceeds"}},
		{"enrolment fields", "data_dir: d\nenrolment:\n  - auto_approve: true\n", []string{
			":3: enrolment[0].token_file: is required", ":3: enrolment[0].client: is required"}},
		{"duplicate token file", "data_dir: d\nenrolment:\n  - {token_file: t, client: a}\n  - {token_file: t, client: b}\n", []string{":4: enrolment[1].token_file: is already used"}},
		{"inline token refused", "data_dir: d\nenrolment:\n  - {token: abc, client: a}\n", []string{":3:", "token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yml")
			if err := os.WriteFile(p, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(p)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hub.yml")
	if err := os.WriteFile(p, []byte("data_dir: data\nenrolment:\n  - {token_file: enrol.token, client: local}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || c.DataDir != filepath.Join(dir, "data") ||
		c.Enrolment[0].TokenFile != filepath.Join(dir, "enrol.token") || c.stateDSN() != filepath.Join(dir, "data", "sage.db") {
		t.Errorf("defaults/relative paths wrong: %+v dsn %s", c, c.stateDSN())
	}
	if c.retention != 15*24*time.Hour || c.scrapeInterval != 15*time.Second || c.scrapeTimeout != 10*time.Second {
		t.Errorf("durations: %s %s %s", c.retention, c.scrapeInterval, c.scrapeTimeout)
	}
	if DefaultListen == "127.0.0.1:10730" {
		t.Error("the hub's default address must differ from the agent's")
	}
}

func TestNewRefusesBadTokenFile(t *testing.T) {
	cfg := testConfig(t, storetest.SQLiteDSN(t), true)
	for name, content := range map[string]string{"short": "abc", "empty": "\n"} {
		if err := os.WriteFile(cfg.Enrolment[0].TokenFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := New(context.Background(), cfg, storetest.Logger(t))
		if err == nil || !strings.Contains(err.Error(), "enrolment[0].token_file") {
			t.Errorf("%s token: want an error naming enrolment[0].token_file, got %v", name, err)
		}
	}
	cfg.Enrolment[0].TokenFile = filepath.Join(t.TempDir(), "missing")
	if _, err := New(context.Background(), cfg, storetest.Logger(t)); err == nil {
		t.Error("missing token file accepted")
	}
}

func TestNewPostgresUnreachable(t *testing.T) {
	addr := testenv.FreeAddr(t) // nothing listens there
	cfg := testConfig(t, "postgres://sage:secretpw@"+addr+"/sage?sslmode=disable", true)
	_, err := New(context.Background(), cfg, storetest.Logger(t))
	if err == nil || !strings.Contains(err.Error(), "cannot reach PostgreSQL") || strings.Contains(err.Error(), "secretpw") {
		t.Fatalf("want a clear error without the password, got %v", err)
	}
}

func TestAdminAndQueryAuth(t *testing.T) {
	storetest.EachDSN(t, func(t *testing.T, dsn string) {
		t.Setenv("SAGE_ADMIN_PASSWORD", "")
		cfg := testConfig(t, dsn, true)
		th := startHub(t, cfg)
		if len(th.InitialAdminPassword()) < 16 {
			t.Fatalf("first start: generated admin password %q", th.InitialAdminPassword())
		}
		if _, err := th.Auth().Authenticate(context.Background(), auth.AdminUsername, th.InitialAdminPassword(), "127.0.0.1"); err != nil {
			t.Fatalf("admin cannot sign in with the generated password: %v", err)
		}

		if code, body := th.do(t, "GET", "/healthz", nil, ""); code != 200 || body != "ok\n" {
			t.Errorf("/healthz: %d %q", code, body)
		}
		const q = "/prometheus/api/v1/query?query=1%2B1"
		for name, h := range map[string]http.Header{
			"none":             nil,
			"wrong token":      bearer("sage_nope"),
			"enrolment token":  bearer(testToken),
			"basic wrong user": {"Authorization": {"Basic " + basic("nobody", th.apiToken)}},
		} {
			if code, _ := th.do(t, "GET", q, h, ""); code != http.StatusUnauthorized {
				t.Errorf("%s: %d, want 401", name, code)
			}
		}
		for name, h := range map[string]http.Header{
			"bearer": bearer(th.apiToken),
			"basic":  {"Authorization": {"Basic " + basic("admin", th.apiToken)}},
		} {
			code, body := th.do(t, "GET", q, h, "")
			if code != 200 || !strings.Contains(body, `"result":[`) || !strings.Contains(body, `"2"`) {
				t.Errorf("%s: %d %s", name, code, body)
			}
		}
		if code, _ := th.do(t, "GET", "/prometheus/api/v1/status/buildinfo", bearer(th.apiToken), ""); code != 200 {
			t.Errorf("buildinfo: %d", code)
		}

		// A second start on the same state keeps the one admin and generates nothing.
		cfg2 := cfg
		cfg2.DataDir = filepath.Join(t.TempDir(), "data2") // metrics dir is locked by the first
		th2 := startHub(t, cfg2)
		if th2.InitialAdminPassword() != "" {
			t.Error("second start generated another admin password")
		}
		users, err := th2.Auth().ListUsers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(users) != 1 || users[0].Username != auth.AdminUsername {
			t.Errorf("users after two starts: %+v", users)
		}
	})
}

func TestAdminFromEnvironment(t *testing.T) {
	t.Setenv("SAGE_ADMIN_PASSWORD", "correct horse battery staple")
	th := startHub(t, testConfig(t, storetest.SQLiteDSN(t), true))
	if th.InitialAdminPassword() != "" {
		t.Error("a password was generated although SAGE_ADMIN_PASSWORD is set")
	}
	if _, err := th.Auth().Authenticate(context.Background(), auth.AdminUsername, "correct horse battery staple", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
}

func basic(user, pw string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pw)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func enrolBody(machineID, hostname, agentURL string) string {
	b, _ := json.Marshal(map[string]any{
		"machine_id": machineID,
		"hostname":   hostname,
		"addresses":  []string{"127.0.0.1"},
		"os":         "linux",
		"facts":      map[string]any{"kernel": "6.1.0", "cpu_model": "test cpu", "cores": 4, "memory_bytes": 8 << 30},
		"agent_url":  agentURL,
	})
	return string(b)
}

func (th *testHub) enrol(t *testing.T, body string, wantCode int) EnrolResponse {
	t.Helper()
	code, resp := th.do(t, "POST", "/api/v1/enrol", bearer(testToken), body)
	if code != wantCode {
		t.Fatalf("enrol: %d %s, want %d", code, resp, wantCode)
	}
	var r EnrolResponse
	if err := json.Unmarshal([]byte(resp), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// startAgent runs a real `sage agent` on a free port and returns its /metrics URL.
func startAgent(t *testing.T, bin string) string {
	t.Helper()
	addr := testenv.FreeAddr(t)
	testenv.Start(t, "http://"+addr+"/healthz", bin, "agent", "--listen", addr, "--state-dir", filepath.Join(t.TempDir(), "state"))
	return "http://" + addr + "/metrics"
}

func TestEnrolAndScrape(t *testing.T) {
	bin := testenv.BuildSage(t)
	storetest.EachDSN(t, func(t *testing.T, dsn string) {
		th := startHub(t, testConfig(t, dsn, true))
		ctx := context.Background()
		url1, url2 := startAgent(t, bin), startAgent(t, bin)

		for name, h := range map[string]http.Header{
			"no token":    nil,
			"wrong token": bearer(testToken + "x"),
			"api token":   bearer(th.apiToken),
		} {
			if code, _ := th.do(t, "POST", "/api/v1/enrol", h, enrolBody("m1", "alpha", url1)); code != http.StatusUnauthorized {
				t.Errorf("%s: %d, want 401", name, code)
			}
		}
		if hosts, _ := th.Inventory().ListHosts(ctx, inventory.HostFilter{}); len(hosts) != 0 {
			t.Fatalf("refused enrolments wrote hosts: %+v", hosts)
		}
		code, body := th.do(t, "POST", "/api/v1/enrol", bearer(testToken), enrolBody("", "alpha", "ftp://x"))
		if code != 400 || !strings.Contains(body, `"machine_id"`) || !strings.Contains(body, `"agent_url"`) {
			t.Errorf("invalid enrolment: %d %s", code, body)
		}

		first := th.enrol(t, enrolBody("m1", "alpha", url1), http.StatusCreated)
		if !first.Created || first.Status != inventory.StatusActive || first.Name != "alpha" {
			t.Errorf("first enrolment: %+v", first)
		}
		host, err := th.Inventory().GetHost(ctx, first.HostID)
		if err != nil {
			t.Fatal(err)
		}
		if host.Facts.Kernel != "6.1.0" || host.Facts.Cores != 4 || host.AgentURL != url1 || host.MachineID != "m1" {
			t.Errorf("stored host: %+v", host)
		}
		th.waitUp(t, "alpha")

		again := th.enrol(t, enrolBody("m1", "alpha", url1), http.StatusOK)
		if again.HostID != first.HostID || again.Created {
			t.Errorf("re-enrolment: %+v, first %+v", again, first)
		}

		second := th.enrol(t, enrolBody("m2", "beta", url2), http.StatusCreated)
		if second.HostID == first.HostID {
			t.Fatal("second machine got the first's host")
		}
		th.waitUp(t, "beta")
		th.waitUp(t, "alpha")

		hosts, err := th.Inventory().ListHosts(ctx, inventory.HostFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(hosts) != 2 {
			t.Errorf("hosts: %d, want 2: %+v", len(hosts), hosts)
		}
		if res := th.query(t, `count by (host) (up{job="sage-agent",client="local"} == 1)`); len(res) != 2 {
			t.Errorf("hosts up: %v, want alpha and beta", res)
		}
	})
}

func TestPendingHostNotScraped(t *testing.T) {
	th := startHub(t, testConfig(t, storetest.SQLiteDSN(t), false))
	addr := testenv.FreeAddr(t)
	r := th.enrol(t, enrolBody("m-pending", "gamma", "http://"+addr+"/metrics"), http.StatusCreated)
	if r.Status != inventory.StatusPending {
		t.Fatalf("without auto_approve: status %s", r.Status)
	}
	if ts, err := th.targets(context.Background()); err != nil || len(ts) != 0 {
		t.Fatalf("a pending host is a scrape target: %+v %v", ts, err)
	}
	// Approving the host makes it a target once the hub is told.
	h, err := th.Inventory().GetHost(context.Background(), r.HostID)
	if err != nil {
		t.Fatal(err)
	}
	h.Status = inventory.StatusActive
	if _, err := th.Inventory().UpdateHost(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	th.HostsChanged()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ts := th.Metrics().Targets()
		if len(ts) == 1 && ts[0].Labels["host"] == "gamma" && ts[0].Labels["client"] == "local" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("approved host is not a target: %+v", ts)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// remoteWrite posts one v1 remote-write sample and returns the status code.
func (th *testHub) remoteWrite(t *testing.T, token, machineID string, ls []prompb.Label, v float64) int {
	t.Helper()
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  ls,
		Samples: []prompb.Sample{{Value: v, Timestamp: time.Now().UnixMilli()}},
	}}}
	b, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{
		"Content-Type":                      {"application/x-protobuf"},
		"Content-Encoding":                  {"snappy"},
		"X-Prometheus-Remote-Write-Version": {"0.1.0"},
	}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	if machineID != "" {
		h.Set(MachineIDHeader, machineID)
	}
	code, body := th.do(t, "POST", "/api/v1/write", h, string(snappy.Encode(nil, b)))
	if code >= 300 {
		t.Logf("remote write: %d %s", code, body)
	}
	return code
}

func TestRemoteWrite(t *testing.T) {
	storetest.EachDSN(t, func(t *testing.T, dsn string) {
		th := startHub(t, testConfig(t, dsn, false))
		ctx := context.Background()
		ls := []prompb.Label{{Name: "__name__", Value: "pushed"}, {Name: "client", Value: "spoofed"}, {Name: "host", Value: "someone-else"}}

		r := th.enrol(t, enrolBody("m-nat", "behind-nat", ""), http.StatusCreated)
		for name, tc := range map[string]struct {
			token, machine string
			want           int
		}{
			"no token":        {"", "m-nat", http.StatusUnauthorized},
			"wrong token":     {"x" + testToken, "m-nat", http.StatusUnauthorized},
			"no machine id":   {testToken, "", http.StatusBadRequest},
			"unknown machine": {testToken, "m-other", http.StatusForbidden},
			"pending host":    {testToken, "m-nat", http.StatusForbidden},
		} {
			if got := th.remoteWrite(t, tc.token, tc.machine, ls, 1); got != tc.want {
				t.Errorf("%s: %d, want %d", name, got, tc.want)
			}
		}

		h, err := th.Inventory().GetHost(ctx, r.HostID)
		if err != nil {
			t.Fatal(err)
		}
		h.Status = inventory.StatusActive
		if _, err := th.Inventory().UpdateHost(ctx, h); err != nil {
			t.Fatal(err)
		}
		if got := th.remoteWrite(t, testToken, "m-nat", ls, 42); got != http.StatusNoContent {
			t.Fatalf("active host: %d, want 204", got)
		}
		res := th.query(t, "pushed")
		want := fmt.Sprint(map[string]string{"__name__": "pushed", "client": "local", "host": "behind-nat", "instance": "behind-nat", "job": AgentJob})
		if len(res) != 1 || res[want] != "42" {
			t.Errorf("pushed series: %v, want %s = 42", res, want)
		}
	})
}

// The hub's routes: its own endpoints keep their paths next to the REST API's /api/v1/, the REST
// API and the query API need credentials, and the UI sends a browser to its login page.
func TestRoutes(t *testing.T) {
	th := startHub(t, testConfig(t, storetest.SQLiteDSN(t), true))
	html := http.Header{"Accept": {"text/html"}}
	tests := []struct {
		name, method, path string
		header             http.Header
		body               string
		code               int
		contains           string
	}{
		{"liveness", "GET", "/healthz", nil, "", 200, "ok"},
		{"readiness", "GET", "/readyz", nil, "", 200, "ready"},
		{"REST API without credentials", "GET", "/api/v1/hosts", nil, "", 401, ""},
		{"REST API with an API token", "GET", "/api/v1/hosts", bearer(th.apiToken), "", 200, `"items"`},
		{"OpenAPI document", "GET", "/api/v1/openapi.yaml", bearer(th.apiToken), "", 200, "openapi:"},
		{"enrolment stays the hub's", "POST", "/api/v1/enrol", bearer(testToken), enrolBody("m-routes", "routes1", ""), 201, `"host_id"`},
		{"enrolment refused field by field", "POST", "/api/v1/enrol", bearer(testToken), enrolBody("", "routes2", ""), 400, `"field":"machine_id"`},
		{"remote write stays the hub's", "POST", "/api/v1/write", nil, "", 401, ""},
		{"query API without credentials", "GET", "/prometheus/api/v1/query?query=1", nil, "", 401, ""},
		{"a page sends a browser to log in", "GET", "/hosts", html, "", 200, "password"},
		{"login page", "GET", "/login", nil, "", 200, "password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := th.do(t, tt.method, tt.path, tt.header, tt.body)
			if code != tt.code || !strings.Contains(body, tt.contains) {
				t.Errorf("%s %s: %d %.300s; want %d containing %q", tt.method, tt.path, code, body, tt.code, tt.contains)
			}
		})
	}
}

// The example in the documentation is a valid configuration.
func TestExampleConfig(t *testing.T) {
	c, err := LoadConfig("../../docs/hub.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Enrolment) != 2 || c.Listen != DefaultListen {
		t.Errorf("example config: %+v", c)
	}
	if c.Alerting.Notify.SMTP == nil || c.Alerting.interval != time.Second || c.Alerting.externalURL.Host != "sage.example.net" {
		t.Errorf("example alerting section: %+v", c.Alerting)
	}
}
