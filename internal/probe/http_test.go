package probe

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// run runs one probe through Run, as the endpoint and the scheduler do.
func runModule(t testing.TB, target string, m Module, timeout time.Duration) *Result {
	t.Helper()
	if errs := m.Validate("m"); len(errs) > 0 {
		t.Fatalf("module does not validate: %v", errs)
	}
	return Run(context.Background(), target, &m, timeout, nil)
}

func mustSample(t testing.TB, r *Result, name string, labels ...string) float64 {
	t.Helper()
	v, ok := r.Get(name, labels...)
	if !ok {
		t.Fatalf("%s%v not recorded; samples: %v", name, labels, r.Samples)
	}
	return v
}

func boolPtr(v bool) *bool { return &v }

// testMux is the HTTP server the http prober tests talk to.
func testMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", "Tue, 15 Nov 1994 12:45:26 GMT")
		w.Header().Set("X-Test", "alpha")
		io.WriteString(w, "hello world")
	})
	mux.HandleFunc("/status/500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/auth", func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "probe" || p != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	mux.HandleFunc("/bearer", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok123" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	mux.HandleFunc("/post", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || string(b) != "ping" || r.Header.Get("X-Custom") != "yes" || r.Host != "virtual.example" {
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	mux.HandleFunc("/gzip", func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(bytes.Repeat([]byte("a"), 1000))
		zw.Close()
		if r.Header.Get("Accept-Encoding") == "gzip" {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Length", fmt.Sprint(buf.Len()))
			w.Write(buf.Bytes())
			return
		}
		w.Write(bytes.Repeat([]byte("a"), 1000))
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(make([]byte, 4096)) })
	mux.HandleFunc("/slowbody", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, "done")
	})
	return mux
}

func TestHTTPProbe(t *testing.T) {
	srv := httptest.NewServer(testMux())
	t.Cleanup(srv.Close)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	type check struct {
		name   string
		labels []string
		want   float64
	}
	tests := []struct {
		name   string
		path   string
		http   HTTPModule
		ok     bool
		reason Reason
		checks []check
	}{
		{name: "200", path: "/ok", ok: true, checks: []check{
			{"probe_http_status_code", nil, 200}, {"probe_http_content_length", nil, 11},
			{"probe_http_uncompressed_body_length", nil, 11}, {"probe_http_version", nil, 1.1},
			{"probe_http_ssl", nil, 0}, {"probe_http_redirects", nil, 0}, {"probe_failed_due_to_regex", nil, 0},
			{"probe_http_last_modified_timestamp_seconds", nil, 784903526}, {"probe_ip_protocol", nil, 4},
		}},
		{name: "500 is not 2xx", path: "/status/500", reason: ReasonStatus, checks: []check{{"probe_http_status_code", nil, 500}}},
		{name: "500 allowed", path: "/status/500", http: HTTPModule{ValidStatusCodes: []int{500}}, ok: true},
		{name: "body matches", path: "/ok", http: HTTPModule{FailIfBodyMatchesRegexp: []string{"wor.d"}}, reason: ReasonContent,
			checks: []check{{"probe_failed_due_to_regex", nil, 1}}},
		{name: "body not matches ok", path: "/ok", http: HTTPModule{FailIfBodyNotMatchesRegexp: []string{"^hello"}}, ok: true},
		{name: "body not matches", path: "/ok", http: HTTPModule{FailIfBodyNotMatchesRegexp: []string{"goodbye"}}, reason: ReasonContent},
		{name: "header matches", path: "/ok", http: HTTPModule{FailIfHeaderMatches: []HeaderMatch{{Header: "x-test", Regexp: "^al"}}}, reason: ReasonContent},
		{name: "header not matches ok", path: "/ok", http: HTTPModule{FailIfHeaderNotMatches: []HeaderMatch{{Header: "X-Test", Regexp: "pha$"}}}, ok: true},
		{name: "header missing", path: "/ok", http: HTTPModule{FailIfHeaderNotMatches: []HeaderMatch{{Header: "X-None", Regexp: "."}}}, reason: ReasonContent},
		{name: "header missing allowed", path: "/ok", http: HTTPModule{FailIfHeaderMatches: []HeaderMatch{{Header: "X-None", Regexp: ".", AllowMissing: true}}}, ok: true},
		{name: "redirect followed", path: "/redirect", ok: true, checks: []check{{"probe_http_redirects", nil, 1}, {"probe_http_status_code", nil, 200}}},
		{name: "redirect not followed", path: "/redirect", http: HTTPModule{FollowRedirects: boolPtr(false)}, reason: ReasonStatus,
			checks: []check{{"probe_http_status_code", nil, 302}}},
		{name: "no_follow_redirects", path: "/redirect", http: HTTPModule{NoFollowRedirects: boolPtr(true), ValidStatusCodes: []int{302}}, ok: true},
		{name: "redirect loop stops", path: "/loop", reason: ReasonStatus, checks: []check{{"probe_http_redirects", nil, 11}}},
		{name: "basic auth", path: "/auth", http: HTTPModule{BasicAuth: &BasicAuth{Username: "probe", Password: "s3cret"}}, ok: true},
		{name: "basic auth file", path: "/auth", http: HTTPModule{BasicAuth: &BasicAuth{Username: "probe", PasswordFile: pwFile}}, ok: true},
		{name: "basic auth wrong", path: "/auth", http: HTTPModule{BasicAuth: &BasicAuth{Username: "probe", Password: "nope"}}, reason: ReasonStatus,
			checks: []check{{"probe_http_status_code", nil, 401}}},
		{name: "basic auth missing file", path: "/auth", http: HTTPModule{BasicAuth: &BasicAuth{Username: "probe", PasswordFile: "/nonexistent/pw"}}, reason: ReasonConfig},
		{name: "bearer", path: "/bearer", http: HTTPModule{BearerToken: "tok123"}, ok: true},
		{name: "post with body, header and host", path: "/post", ok: true, http: HTTPModule{Method: "POST", Body: "ping",
			Headers: map[string]string{"X-Custom": "yes", "host": "virtual.example"}}},
		{name: "get where post is wanted", path: "/post", reason: ReasonStatus},
		{name: "fail_if_not_ssl", path: "/ok", http: HTTPModule{FailIfNotSSL: true}, reason: ReasonTLS},
		{name: "http version", path: "/ok", http: HTTPModule{ValidHTTPVersions: []string{"HTTP/2.0"}}, reason: ReasonProtocol},
		{name: "http version ok", path: "/ok", http: HTTPModule{ValidHTTPVersions: []string{"HTTP/1.1"}}, ok: true},
		{name: "body size limit", path: "/big", http: HTTPModule{BodySizeLimit: 1024}, reason: ReasonContent},
		{name: "body size limit exact", path: "/big", http: HTTPModule{BodySizeLimit: 4096}, ok: true,
			checks: []check{{"probe_http_uncompressed_body_length", nil, 4096}}},
		{name: "gzip decoded", path: "/gzip", http: HTTPModule{Compression: "gzip", FailIfBodyNotMatchesRegexp: []string{"^a{1000}$"}}, ok: true,
			checks: []check{{"probe_http_uncompressed_body_length", nil, 1000}}},
		{name: "no scheme means http", path: "/ok", ok: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := srv.URL + tc.path
			if tc.name == "no scheme means http" {
				target = strings.TrimPrefix(target, "http://")
			}
			r := runModule(t, target, Module{Prober: "http", HTTP: tc.http}, 5*time.Second)
			if r.Success != tc.ok || r.Reason != tc.reason {
				t.Fatalf("success %v reason %q (%s), want %v %q", r.Success, r.Reason, r.Detail, tc.ok, tc.reason)
			}
			for _, c := range tc.checks {
				if got := mustSample(t, r, c.name, c.labels...); got != c.want {
					t.Errorf("%s = %v, want %v", c.name, got, c.want)
				}
			}
			for _, p := range httpPhases {
				if v := mustSample(t, r, "probe_http_duration_seconds", "phase", p); v < 0 || v > 5 {
					t.Errorf("phase %s = %v", p, v)
				}
			}
		})
	}
}

// writeCA writes the test server's certificate as a CA file.
func writeCA(t testing.TB, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHTTPSProbe(t *testing.T) {
	srv := httptest.NewUnstartedServer(testMux())
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := writeCA(t, srv)
	notAfter := float64(srv.Certificate().NotAfter.Unix())

	t.Run("verified", func(t *testing.T) {
		r := runModule(t, srv.URL+"/ok", Module{Prober: "http", HTTP: HTTPModule{TLSConfig: TLSConfig{CAFile: ca}, FailIfNotSSL: true}}, 5*time.Second)
		if !r.Success {
			t.Fatalf("failed: %s %s", r.Reason, r.Detail)
		}
		for name, want := range map[string]float64{
			"probe_ssl_earliest_cert_expiry":                notAfter,
			"probe_ssl_last_chain_expiry_timestamp_seconds": notAfter,
			"probe_http_ssl":                                1,
			"probe_http_version":                            2,
		} {
			if got := mustSample(t, r, name); got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		if mustSample(t, r, "probe_tls_version_info", "version", "TLS 1.3") != 1 {
			t.Error("TLS version not recorded")
		}
		if mustSample(t, r, "probe_http_duration_seconds", "phase", "tls") <= 0 {
			t.Error("tls phase not measured")
		}
	})
	t.Run("http2 off", func(t *testing.T) {
		r := runModule(t, srv.URL+"/ok", Module{Prober: "http", HTTP: HTTPModule{TLSConfig: TLSConfig{CAFile: ca}, EnableHTTP2: boolPtr(false)}}, 5*time.Second)
		if !r.Success || mustSample(t, r, "probe_http_version") != 1.1 {
			t.Fatalf("success %v version %v", r.Success, mustSample(t, r, "probe_http_version"))
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		r := runModule(t, srv.URL+"/ok", Module{Prober: "http"}, 5*time.Second)
		if r.Success || r.Reason != ReasonTLS {
			t.Fatalf("success %v reason %q (%s), want tls", r.Success, r.Reason, r.Detail)
		}
	})
	t.Run("insecure", func(t *testing.T) {
		r := runModule(t, srv.URL+"/ok", Module{Prober: "http", HTTP: HTTPModule{TLSConfig: TLSConfig{InsecureSkipVerify: true}}}, 5*time.Second)
		if !r.Success {
			t.Fatalf("failed: %s %s", r.Reason, r.Detail)
		}
		if mustSample(t, r, "probe_ssl_earliest_cert_expiry") != notAfter {
			t.Error("expiry not recorded without verification")
		}
		if _, ok := r.Get("probe_ssl_last_chain_expiry_timestamp_seconds"); ok {
			t.Error("a chain expiry without a verified chain")
		}
	})
	t.Run("fail_if_ssl", func(t *testing.T) {
		r := runModule(t, srv.URL+"/ok", Module{Prober: "http", HTTP: HTTPModule{TLSConfig: TLSConfig{CAFile: ca}, FailIfSSL: true}}, 5*time.Second)
		if r.Success || r.Reason != ReasonTLS {
			t.Fatalf("success %v reason %q", r.Success, r.Reason)
		}
	})
}

// silentServer accepts connections and never answers.
func silentServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(done)
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestHTTPFaults(t *testing.T) {
	silent := silentServer(t)
	tests := []struct {
		name    string
		target  string
		timeout time.Duration
		http    HTTPModule
		reason  Reason
	}{
		{"refused", "http://" + closedAddr(t) + "/", 5 * time.Second, HTTPModule{}, ReasonConnect},
		{"unresolvable", "http://no-such-host.invalid/", 5 * time.Second, HTTPModule{}, ReasonResolve},
		{"never answers", "http://" + silent + "/", 300 * time.Millisecond, HTTPModule{}, ReasonTimeout},
		{"tls to a silent server", "https://" + silent + "/", 300 * time.Millisecond, HTTPModule{}, ReasonTimeout},
		{"bad scheme", "ftp://127.0.0.1/", time.Second, HTTPModule{}, ReasonConfig},
		{"bad port", "http://127.0.0.1:99999/", time.Second, HTTPModule{}, ReasonConfig},
		{"no host", "http:///path", time.Second, HTTPModule{}, ReasonConfig},
		{"proxy closed", "http://127.0.0.1:1/", 5 * time.Second, HTTPModule{ProxyURL: "http://" + closedAddr(t)}, ReasonProxy},
		{"https proxy closed", "https://127.0.0.1:1/", 5 * time.Second, HTTPModule{ProxyURL: "http://" + closedAddr(t)}, ReasonProxy},
		{"proxy silent", "http://127.0.0.1:1/", 300 * time.Millisecond, HTTPModule{ProxyURL: "http://" + silent}, ReasonTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := runModule(t, tc.target, Module{Prober: "http", HTTP: tc.http}, tc.timeout)
			took := time.Since(start)
			if r.Success || r.Reason != tc.reason {
				t.Fatalf("success %v reason %q (%s), want %q", r.Success, r.Reason, r.Detail, tc.reason)
			}
			if took > tc.timeout+500*time.Millisecond {
				t.Errorf("took %v with a %v deadline", took, tc.timeout)
			}
			if mustSample(t, r, "probe_success") != 0 {
				t.Error("probe_success is not 0")
			}
		})
	}
}

// TestHTTPNoProxy checks that no_proxy bypasses a proxy that would fail the probe.
func TestHTTPNoProxy(t *testing.T) {
	srv := httptest.NewServer(testMux())
	t.Cleanup(srv.Close)
	m := Module{Prober: "http", HTTP: HTTPModule{ProxyURL: "http://" + closedAddr(t), NoProxy: "127.0.0.1"}}
	if r := runModule(t, srv.URL+"/ok", m, 5*time.Second); !r.Success {
		t.Fatalf("failed: %s %s", r.Reason, r.Detail)
	}
}

func TestHTTPValidate(t *testing.T) {
	tests := []struct {
		name  string
		http  HTTPModule
		field string
	}{
		{"ok", HTTPModule{Method: "POST", ValidStatusCodes: []int{200, 301}, FailIfBodyMatchesRegexp: []string{"a+"}}, ""},
		{"method", HTTPModule{Method: "GE T"}, "m.http.method"},
		{"status", HTTPModule{ValidStatusCodes: []int{200, 99}}, "m.http.valid_status_codes[1]"},
		{"version", HTTPModule{ValidHTTPVersions: []string{"HTTP/3"}}, "m.http.valid_http_versions[0]"},
		{"body regexp", HTTPModule{FailIfBodyMatchesRegexp: []string{"ok", "(unclosed"}}, "m.http.fail_if_body_matches_regexp[1]"},
		{"body not regexp", HTTPModule{FailIfBodyNotMatchesRegexp: []string{"[z-a]"}}, "m.http.fail_if_body_not_matches_regexp[0]"},
		{"header regexp", HTTPModule{FailIfHeaderNotMatches: []HeaderMatch{{Header: "A", Regexp: "("}}}, "m.http.fail_if_header_not_matches[0].regexp"},
		{"header name", HTTPModule{FailIfHeaderMatches: []HeaderMatch{{Regexp: "a"}}}, "m.http.fail_if_header_matches[0].header"},
		{"compression", HTTPModule{Compression: "br"}, "m.http.compression"},
		{"proxy scheme", HTTPModule{ProxyURL: "ftp://x"}, "m.http.proxy_url"},
		{"no_proxy without proxy", HTTPModule{NoProxy: "a"}, "m.http.proxy_url"},
		{"basic auth both", HTTPModule{BasicAuth: &BasicAuth{Password: "a", PasswordFile: "b"}}, "m.http.basic_auth"},
		{"tls version", HTTPModule{TLSConfig: TLSConfig{MinVersion: "TLS9"}}, "m.http.tls_config"},
		{"ca file", HTTPModule{TLSConfig: TLSConfig{CAFile: "/nonexistent"}}, "m.http.tls_config"},
		{"ip protocol", HTTPModule{IPProtocol: IPProtocol{Preferred: "ip5"}}, "m.http.preferred_ip_protocol"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Module{Prober: "http", HTTP: tc.http}
			errs := m.Validate("m")
			var fields []string
			for _, e := range errs {
				fields = append(fields, e.Field)
			}
			if tc.field == "" {
				if len(errs) > 0 {
					t.Fatalf("unexpected errors %v", errs)
				}
				return
			}
			if !slices.Contains(fields, tc.field) {
				t.Fatalf("errors %v, want one on %s", errs, tc.field)
			}
		})
	}
}

func FuzzParseHTTPTarget(f *testing.F) {
	for _, s := range []string{"http://example.org/", "example.org:8080/x", "https://[::1]:443/", "ftp://x", "http://%zz", "http://:80", "", "[::1]", "http://a b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseHTTPTarget(s)
		if err != nil {
			return
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("scheme %q accepted from %q", u.Scheme, s)
		}
		if u.Hostname() == "" {
			t.Fatalf("no host accepted from %q", s)
		}
	})
}

func BenchmarkHTTPProbe(b *testing.B) {
	srv := httptest.NewServer(testMux())
	b.Cleanup(srv.Close)
	m := Module{Prober: "http"}
	target := srv.URL + "/ok"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if r := Run(context.Background(), target, &m, 5*time.Second, nil); !r.Success {
			b.Fatalf("failed: %s %s", r.Reason, r.Detail)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "probes/s")
}
