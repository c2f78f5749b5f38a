package probe

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const tpToken = "mesh-0123456789abcdef0123456789abcdef"

// tpServer serves NewThroughputHandler on loopback with the test token.
func tpServer(t *testing.T, opts ThroughputServerOptions) (*httptest.Server, *ThroughputServerStats) {
	t.Helper()
	if opts.Tokens == nil {
		opts.Tokens = func() []string { return []string{"another-token", tpToken} }
	}
	if opts.Stats == nil {
		opts.Stats = &ThroughputServerStats{}
	}
	srv := httptest.NewServer(NewThroughputHandler(opts))
	t.Cleanup(srv.Close)
	return srv, opts.Stats
}

func tpModule(dir string, size int64, timeout time.Duration) *Module {
	return &Module{Prober: "throughput", Timeout: timeout, Throughput: ThroughputModule{
		Direction: dir, SizeBytes: size, BearerToken: Secret{Inline: tpToken},
	}}
}

func tpValue(t *testing.T, r *Result, name string, labels ...string) float64 {
	t.Helper()
	v, ok := r.Get(name, labels...)
	if !ok {
		t.Fatalf("%s%v not set; samples %+v", name, labels, r.Samples)
	}
	return v
}

// Throughput between the endpoint and the prober on loopback, both directions, over HTTP and
// HTTPS: the sizes asked for move completely and a rate is reported.
func TestThroughputLoopback(t *testing.T) {
	plain, _ := tpServer(t, ThroughputServerOptions{RateBytesPerSec: -1, MaxBytes: 1 << 30})
	tlsSrv := httptest.NewTLSServer(NewThroughputHandler(ThroughputServerOptions{
		Tokens: func() []string { return []string{tpToken} }, RateBytesPerSec: -1, MaxBytes: 1 << 30}))
	t.Cleanup(tlsSrv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	tests := []struct {
		name, url, dir string
		tls            TLSConfig
		status         float64
	}{
		{"download", plain.URL, DirectionDownload, TLSConfig{}, 206},
		{"upload", plain.URL, DirectionUpload, TLSConfig{}, 200},
		{"download over TLS", tlsSrv.URL, DirectionDownload, TLSConfig{CAFile: caFile}, 206},
		{"upload over TLS", tlsSrv.URL, DirectionUpload, TLSConfig{CAFile: caFile}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tpModule(tt.dir, size, 30*time.Second)
			m.Throughput.TLSConfig = tt.tls
			r := Run(context.Background(), tt.url, m, 0, nil)
			if !r.Success {
				t.Fatalf("failed: %s %s", r.Reason, r.Detail)
			}
			if got := tpValue(t, r, metricThroughputBytes, "direction", tt.dir); got != size {
				t.Errorf("bytes %v, want %d", got, size)
			}
			if got := tpValue(t, r, metricHTTPStatus); got != tt.status {
				t.Errorf("status %v, want %v", got, tt.status)
			}
			if tpValue(t, r, metricThroughputComplete) != 1 {
				t.Error("not complete")
			}
			rate := tpValue(t, r, metricThroughputRate, "direction", tt.dir)
			transfer := tpValue(t, r, metricThroughputDuration, "phase", "transfer")
			if rate <= 0 || transfer <= 0 || transfer > r.Duration.Seconds() {
				t.Errorf("rate %v over %v s in a probe of %v", rate, transfer, r.Duration)
			}
			for _, phase := range []string{"connect", "first_byte"} {
				if v := tpValue(t, r, metricThroughputDuration, "phase", phase); v < 0 || v > r.Duration.Seconds() {
					t.Errorf("phase %s: %v s in a probe of %v", phase, v, r.Duration)
				}
			}
			t.Logf("%s of %d MiB: %.0f MiB/s (transfer %.3f s, probe %v)", tt.name, size>>20, rate/(1<<20), transfer, r.Duration)
		})
	}
}

// A server that ignores Range and streams for ever: the prober stops at size_bytes. And the
// endpoint's own cap: a range beyond it is served up to the cap, a complete (shorter) download.
func TestThroughputSizeBound(t *testing.T) {
	var served atomic.Int64
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := throughputPayload()
		for {
			n, err := w.Write(buf[:64<<10])
			served.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(endless.Close)
	capped, _ := tpServer(t, ThroughputServerOptions{RateBytesPerSec: -1, MaxBytes: 3 << 20})

	tests := []struct {
		name, url string
		size      int64
		want      int64
	}{
		{"server ignoring Range", endless.URL, 5 << 20, 5 << 20},
		{"odd size", endless.URL, 1<<20 + 7, 1<<20 + 7},
		{"endpoint's cap", capped.URL, 8 << 20, 3 << 20},
		{"default size", capped.URL, 0, 3 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Run(context.Background(), tt.url, tpModule(DirectionDownload, tt.size, 10*time.Second), 0, nil)
			if !r.Success {
				t.Fatalf("failed: %s %s", r.Reason, r.Detail)
			}
			if got := tpValue(t, r, metricThroughputBytes, "direction", DirectionDownload); int64(got) != tt.want {
				t.Errorf("bytes %v, want %d", got, tt.want)
			}
		})
	}
	if (&ThroughputModule{SizeBytes: 5 << 30}).size() != MaxThroughputSize {
		t.Error("a size above the hard cap is not capped")
	}
	if (&ThroughputModule{}).size() != DefaultThroughputSize {
		t.Error("no default size")
	}
}

// The rate cap holds per request and across requests: bytes moved never exceed rate × time plus
// one burst. Asserted as bounds, not speeds.
func TestThroughputRateLimit(t *testing.T) {
	const rateCap = 2 << 20
	srv, stats := tpServer(t, ThroughputServerOptions{RateBytesPerSec: rateCap, MaxConcurrent: 4})
	burst := float64(min(max(rateCap/20, 4<<10), 256<<10))

	t.Run("one request", func(t *testing.T) {
		m := tpModule(DirectionDownload, 64<<20, 700*time.Millisecond)
		m.Throughput.AllowPartial = true
		r := Run(context.Background(), srv.URL, m, 0, nil)
		if !r.Success {
			t.Fatalf("time-boxed download failed: %s %s", r.Reason, r.Detail)
		}
		got := tpValue(t, r, metricThroughputBytes, "direction", DirectionDownload)
		if limit := rateCap*r.Duration.Seconds() + burst; got <= 0 || got > limit {
			t.Errorf("moved %v bytes in %v; the cap allows at most %.0f", got, r.Duration, limit)
		}
		if tpValue(t, r, metricThroughputComplete) != 0 {
			t.Error("a transfer cut by the deadline is marked complete")
		}
		t.Logf("capped at %d B/s: %.0f B/s measured", rateCap, tpValue(t, r, metricThroughputRate, "direction", DirectionDownload))
	})

	t.Run("global", func(t *testing.T) {
		before := stats.sent.Load()
		start := time.Now()
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := tpModule(DirectionDownload, 64<<20, 700*time.Millisecond)
				m.Throughput.AllowPartial = true
				Run(context.Background(), srv.URL, m, 0, nil)
			}()
		}
		wg.Wait()
		elapsed := time.Since(start).Seconds()
		// Three request limiters each start with a burst, the global one too; everything else
		// passed the global limiter.
		sent := float64(stats.sent.Load() - before)
		if limit := rateCap*elapsed + 4*burst; sent <= 0 || sent > limit {
			t.Errorf("three requests sent %.0f bytes in %.2f s; the global cap allows %.0f", sent, elapsed, limit)
		}
	})

	t.Run("upload", func(t *testing.T) {
		// Half the time sending, half for the socket buffers to drain at the capped rate.
		const rateCap = 8 << 20
		srv, stats := tpServer(t, ThroughputServerOptions{RateBytesPerSec: rateCap})
		burst := float64(min(max(rateCap/20, 4<<10), 256<<10))
		before := stats.received.Load()
		m := tpModule(DirectionUpload, 256<<20, 2*time.Second)
		m.Throughput.AllowPartial = true
		r := Run(context.Background(), srv.URL, m, 0, nil)
		if !r.Success {
			t.Fatalf("time-boxed upload failed: %s %s", r.Reason, r.Detail)
		}
		got := tpValue(t, r, metricThroughputBytes, "direction", DirectionUpload)
		if received := stats.received.Load() - before; float64(received) != got {
			t.Errorf("the prober reports %v bytes, the server received %d", got, received)
		}
		// The server reads a chunk before paying for it, so one chunk more.
		if limit := rateCap*r.Duration.Seconds() + 2*burst; got <= 0 || got > limit {
			t.Errorf("uploaded %v bytes in %v; the cap allows at most %.0f", got, r.Duration, limit)
		}
	})
}

// Credentials: no token, a wrong one, an endpoint with none configured.
func TestThroughputAuth(t *testing.T) {
	srv, stats := tpServer(t, ThroughputServerOptions{RateBytesPerSec: -1})
	closed, _ := tpServer(t, ThroughputServerOptions{Tokens: func() []string { return []string{""} }})
	tests := []struct {
		name, url, token string
		dir              string
		code             float64
		reason           Reason
	}{
		{"no token", srv.URL, "", DirectionDownload, 401, ReasonAuth},
		{"wrong token", srv.URL, tpToken + "x", DirectionDownload, 401, ReasonAuth},
		{"prefix of the token", srv.URL, tpToken[:10], DirectionUpload, 401, ReasonAuth},
		{"endpoint without tokens", closed.URL, tpToken, DirectionDownload, 403, ReasonAuth},
		{"endpoint without tokens, empty token", closed.URL, "", DirectionUpload, 403, ReasonAuth},
		{"right token", srv.URL, tpToken, DirectionDownload, 206, ReasonNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tpModule(tt.dir, 1<<20, 5*time.Second)
			m.Throughput.BearerToken = Secret{Inline: tt.token}
			r := Run(context.Background(), tt.url, m, 0, nil)
			if r.Success != (tt.reason == ReasonNone) || r.Reason != tt.reason {
				t.Errorf("success %v reason %q (%s), want reason %q", r.Success, r.Reason, r.Detail, tt.reason)
			}
			if got := tpValue(t, r, metricHTTPStatus); got != tt.code {
				t.Errorf("status %v, want %v", got, tt.code)
			}
		})
	}
	if v, _ := stats.requests.Load(tsUnauthorized); v == nil || v.(*atomic.Int64).Load() != 3 {
		t.Errorf("unauthorized requests counted: %v", v)
	}
}

// Beyond MaxConcurrent transfers, 429; the slot frees when the transfer ends.
func TestThroughputBusy(t *testing.T) {
	srv, stats := tpServer(t, ThroughputServerOptions{RateBytesPerSec: 64 << 10, MaxConcurrent: 1})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"?bytes=100000000", nil)
	req.Header.Set("Authorization", "Bearer "+tpToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("first transfer: %d", resp.StatusCode)
	}
	r := Run(context.Background(), srv.URL, tpModule(DirectionDownload, 1<<20, 5*time.Second), 0, nil)
	if r.Success || r.Reason != ReasonStatus || tpValue(t, r, metricHTTPStatus) != 429 {
		t.Errorf("second transfer: success %v reason %s status %v", r.Success, r.Reason, tpValue(t, r, metricHTTPStatus))
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for stats.inFlight.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first transfer's slot was not freed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r = Run(context.Background(), srv.URL, tpModule(DirectionDownload, 32<<10, 5*time.Second), 0, nil)
	if !r.Success {
		t.Errorf("after the slot freed: %s %s", r.Reason, r.Detail)
	}
}

// The deadline cuts a slow transfer: the bytes and rate so far are reported, the probe fails
// with "timeout" unless allow_partial; an upload cut while sending fails even then.
func TestThroughputDeadline(t *testing.T) {
	slow, _ := tpServer(t, ThroughputServerOptions{RateBytesPerSec: 1 << 20})
	// A time-boxed upload needs its socket buffers drained within the deadline.
	fast, _ := tpServer(t, ThroughputServerOptions{RateBytesPerSec: 8 << 20})
	tests := []struct {
		name    string
		url     string
		dir     string
		partial bool
		timeout time.Duration
		success bool
	}{
		{"download", slow.URL, DirectionDownload, false, 600 * time.Millisecond, false},
		{"download, allow_partial", slow.URL, DirectionDownload, true, 600 * time.Millisecond, true},
		{"upload", slow.URL, DirectionUpload, false, 600 * time.Millisecond, false},
		{"upload, allow_partial", fast.URL, DirectionUpload, true, 2 * time.Second, true},
	}
	const size = 256 << 20
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tpModule(tt.dir, size, tt.timeout)
			m.Throughput.AllowPartial = tt.partial
			r := Run(context.Background(), tt.url, m, 0, nil)
			if r.Success != tt.success {
				t.Errorf("success %v, want %v (%s %s)", r.Success, tt.success, r.Reason, r.Detail)
			}
			if !r.Success && r.Reason != ReasonTimeout {
				t.Errorf("reason %q (%s), want timeout", r.Reason, r.Detail)
			}
			if r.Duration > tt.timeout+time.Second {
				t.Errorf("the probe took %v with a %v deadline", r.Duration, tt.timeout)
			}
			got := tpValue(t, r, metricThroughputBytes, "direction", tt.dir)
			if got <= 0 || got >= size {
				t.Errorf("bytes so far %v", got)
			}
			if tpValue(t, r, metricThroughputRate, "direction", tt.dir) <= 0 {
				t.Error("no rate so far")
			}
			if tpValue(t, r, metricThroughputComplete) != 0 {
				t.Error("marked complete")
			}
		})
	}
}

// A plain forward proxy (Go's ReverseProxy serving absolute-form requests), and one refusing.
func TestThroughputProxy(t *testing.T) {
	srv, _ := tpServer(t, ThroughputServerOptions{RateBytesPerSec: -1})
	var proxied atomic.Int32
	fwd := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		proxied.Add(1)
		pr.Out.URL = pr.In.URL // absolute form: the target itself
		pr.Out.Header["Authorization"] = pr.In.Header["Authorization"]
	}}
	proxy := httptest.NewServer(fwd)
	t.Cleanup(proxy.Close)
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "proxy auth", http.StatusProxyAuthRequired)
	}))
	t.Cleanup(refusing.Close)

	for _, dir := range []string{DirectionDownload, DirectionUpload} {
		m := tpModule(dir, 2<<20, 5*time.Second)
		m.Throughput.ProxyURL = proxy.URL
		r := Run(context.Background(), srv.URL, m, 0, nil)
		if !r.Success || tpValue(t, r, metricThroughputBytes, "direction", dir) != 2<<20 {
			t.Errorf("%s through the proxy: %s %s %+v", dir, r.Reason, r.Detail, r.Samples)
		}
	}
	if proxied.Load() != 2 {
		t.Errorf("the proxy saw %d requests, want 2", proxied.Load())
	}
	m := tpModule(DirectionDownload, 1<<20, 5*time.Second)
	m.Throughput.ProxyURL = refusing.URL
	if r := Run(context.Background(), srv.URL, m, 0, nil); r.Success || r.Reason != ReasonProxy {
		t.Errorf("refusing proxy: success %v reason %q", r.Success, r.Reason)
	}
}

func TestThroughputFailures(t *testing.T) {
	srv, _ := tpServer(t, ThroughputServerOptions{RateBytesPerSec: -1, MaxBytes: 1 << 20})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String()
	l.Close()
	badCA := filepath.Join(t.TempDir(), "nothing.pem")
	if err := os.WriteFile(badCA, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		target string
		mod    func(*ThroughputModule)
		reason Reason
	}{
		{"not a URL", "::nope", nil, ReasonConfig},
		{"ftp", "ftp://127.0.0.1/x", nil, ReasonConfig},
		{"credentials in the URL", "http://u:p@127.0.0.1/", nil, ReasonConfig},
		{"missing secret", srv.URL, func(m *ThroughputModule) { m.BearerToken = Secret{Env: "SAGE_TEST_NO_SUCH_VARIABLE"} }, ReasonConfig},
		{"bad CA file", srv.URL, func(m *ThroughputModule) { m.TLSConfig.CAFile = badCA }, ReasonConfig},
		{"refused", refused, nil, ReasonConnect},
		{"unresolvable", "http://no-such-host.invalid/", nil, ReasonResolve},
		{"upload over the endpoint's cap", srv.URL, func(m *ThroughputModule) { m.Direction = DirectionUpload; m.SizeBytes = 2 << 20 }, ReasonStatus},
		{"chunked upload over the endpoint's cap", srv.URL, func(m *ThroughputModule) {
			m.Direction, m.SizeBytes, m.AllowPartial = DirectionUpload, 2<<20, true
		}, ReasonStatus},
		{"download over the endpoint's cap by ?bytes", srv.URL + "?bytes=2000000", nil, ReasonStatus},
		{"TLS to a plain server", strings.Replace(srv.URL, "http:", "https:", 1), nil, ReasonTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tpModule(DirectionDownload, 1<<20, 5*time.Second)
			if tt.mod != nil {
				tt.mod(&m.Throughput)
			}
			r := Run(context.Background(), tt.target, m, 0, nil)
			if r.Success || r.Reason != tt.reason {
				t.Errorf("success %v reason %q (%s), want %q", r.Success, r.Reason, r.Detail, tt.reason)
			}
			if strings.Contains(r.Detail, tpToken) {
				t.Error("the token is in the failure's detail")
			}
		})
	}
}

func TestThroughputModuleValidate(t *testing.T) {
	tests := []struct {
		m    ThroughputModule
		want string // a field named in the errors; "" for none
	}{
		{ThroughputModule{}, ""},
		{ThroughputModule{Direction: "upload", SizeBytes: MaxThroughputSize, ProxyURL: "http://proxy:3128"}, ""},
		{ThroughputModule{Direction: "sideways"}, "t.direction"},
		{ThroughputModule{SizeBytes: -1}, "t.size_bytes"},
		{ThroughputModule{SizeBytes: MaxThroughputSize + 1}, "t.size_bytes"},
		{ThroughputModule{ProxyURL: "ftp://proxy"}, "t.proxy_url"},
		{ThroughputModule{ProxyURL: "http://"}, "t.proxy_url"},
	}
	for _, tt := range tests {
		errs := tt.m.validate("t")
		if (tt.want == "") != (len(errs) == 0) || (tt.want != "" && errs[0].Field != tt.want) {
			t.Errorf("%+v: %v, want %q", tt.m, errs, tt.want)
		}
	}
}

// The endpoint on its own: exact sizes, incompressible data, the upload's answer, methods.
func TestThroughputHandler(t *testing.T) {
	srv, stats := tpServer(t, ThroughputServerOptions{RateBytesPerSec: -1, MaxBytes: 4 << 20})
	do := func(method, path, rangeHeader string, body io.Reader) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, body)
		req.Header.Set("Authorization", "Bearer "+tpToken)
		if rangeHeader != "" {
			req.Header.Set("Range", rangeHeader)
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
		return resp, b
	}
	tests := []struct {
		name, path, rng string
		code            int
		n               int
		contentRange    string
	}{
		{"bytes", "?bytes=3000000", "", 200, 3000000, ""},
		{"zero bytes", "?bytes=0", "", 200, 0, ""},
		{"range", "", "bytes=0-99", 206, 100, "bytes 0-99/*"},
		{"open range", "", "bytes=0-", 206, 4 << 20, "bytes 0-4194303/*"},
		{"range beyond the cap", "", "bytes=0-999999999", 206, 4 << 20, "bytes 0-4194303/*"},
		{"other range ignored", "", "bytes=5-9", 200, 4 << 20, ""},
		{"default", "", "", 200, 4 << 20, ""},
		{"bytes over the cap", "?bytes=4194305", "", 400, -1, ""},
		{"negative bytes", "?bytes=-1", "", 400, -1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := do("GET", tt.path, tt.rng, nil)
			if resp.StatusCode != tt.code || (tt.n >= 0 && len(b) != tt.n) || resp.Header.Get("Content-Range") != tt.contentRange {
				t.Errorf("%d, %d bytes, Content-Range %q; want %d, %d, %q", resp.StatusCode, len(b), resp.Header.Get("Content-Range"), tt.code, tt.n, tt.contentRange)
			}
		})
	}

	_, b := do("GET", "?bytes=2000000", "", nil)
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(b)
	_ = zw.Close()
	if z.Len() < len(b)*99/100 {
		t.Errorf("the data compresses from %d to %d bytes", len(b), z.Len())
	}

	resp, b := do("POST", "", "", io.LimitReader(zeroReader{}, 3<<20))
	var ans ThroughputUploadAnswer
	if err := json.Unmarshal(b, &ans); err != nil || resp.StatusCode != 200 || ans.Bytes != 3<<20 || ans.Seconds <= 0 {
		t.Errorf("upload answer: %d %s", resp.StatusCode, b)
	}
	if resp, _ := do("PUT", "", "", nil); resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, POST" {
		t.Errorf("PUT: %d", resp.StatusCode)
	}

	got := map[string]float64{}
	for _, s := range stats.Samples() {
		got[s.Name+fmt.Sprint(s.Labels)] = s.Value
	}
	if got["sage_throughput_server_bytes_total[direction received]"] != 3<<20 ||
		got["sage_throughput_server_requests_total[result bad_request]"] != 3 ||
		got["sage_throughput_server_in_flight[]"] != 0 {
		t.Errorf("stats: %v", got)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestThroughputRequestedBytes(t *testing.T) {
	const max = 1000
	tests := []struct {
		param   string
		present bool
		rng     string
		n       int64
		ranged  bool
		err     bool
	}{
		{"10", true, "", 10, false, false},
		{" 10 ", true, "bytes=0-5", 10, false, false},
		{"1001", true, "", 0, false, true},
		{"", true, "", 0, false, true},
		{"1e3", true, "", 0, false, true},
		{"", false, "bytes=0-9", 10, true, false},
		{"", false, "bytes=0-", max, true, false},
		{"", false, "bytes=0-9223372036854775807", max, true, false},
		{"", false, "bytes=0-9223372036854775808", min(DefaultThroughputSize, max), false, false},
		{"", false, "bytes=0-1,5-9", min(DefaultThroughputSize, max), false, false},
		{"", false, "bytes=1-9", min(DefaultThroughputSize, max), false, false},
		{"", false, "bytes=-5", min(DefaultThroughputSize, max), false, false},
		{"", false, "", min(DefaultThroughputSize, max), false, false},
	}
	for _, tt := range tests {
		n, ranged, err := throughputRequestedBytes(tt.param, tt.present, tt.rng, max)
		if n != tt.n || ranged != tt.ranged || (err != nil) != tt.err {
			t.Errorf("(%q, %v, %q): %d %v %v; want %d %v err %v", tt.param, tt.present, tt.rng, n, ranged, err, tt.n, tt.ranged, tt.err)
		}
	}
}

func FuzzThroughputRequestedBytes(f *testing.F) {
	for _, s := range []string{"", "0", "10", "-1", "bytes=0-", "bytes=0-99", "bytes=0-1,2-3", "bytes=-5", "bytes=0-9223372036854775807"} {
		f.Add(s, true, s)
		f.Add(s, false, s)
	}
	f.Fuzz(func(t *testing.T, param string, present bool, rng string) {
		const max = 1 << 20
		n, _, err := throughputRequestedBytes(param, present, rng, max)
		if err == nil && (n < 0 || n > max) {
			t.Fatalf("(%q, %v, %q): %d outside [0, %d]", param, present, rng, n, max)
		}
	})
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"1048576", 1 << 20, false},
		{"100MB", 100e6, false},
		{"100 MiB", 100 << 20, false},
		{"100m", 100 << 20, false},
		{"1.5GB", 1.5e9, false},
		{"1GiB", 1 << 30, false},
		{"512k", 512 << 10, false},
		{"2TB", 2e12, false},
		{"10B", 10, false},
		{"", 0, true},
		{"MB", 0, true},
		{"10 parsecs", 0, true},
		{"1.2.3MB", 0, true},
		{"-5MB", 0, true},
		{"99999999999TB", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1", "100MB", "1.5 GiB", "512k", "", "x", "1e9", "99999999999999999999TB", ".", "0.0000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}

// BenchmarkThroughputLoopback: the prober against the endpoint, uncapped, on loopback; MB/s is
// what one probe moves (both ends in this process).
func BenchmarkThroughputLoopback(b *testing.B) {
	srv := httptest.NewServer(NewThroughputHandler(ThroughputServerOptions{
		Tokens: func() []string { return []string{tpToken} }, RateBytesPerSec: -1, MaxBytes: 1 << 30}))
	defer srv.Close()
	const size = 256 << 20
	for _, dir := range []string{DirectionDownload, DirectionUpload} {
		b.Run(dir, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if r := Run(context.Background(), srv.URL, tpModule(dir, size, time.Minute), 0, nil); !r.Success {
					b.Fatalf("%s %s", r.Reason, r.Detail)
				}
			}
		})
	}
}
