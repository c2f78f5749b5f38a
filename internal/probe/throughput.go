package probe

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/serversage/sage/internal/config"
)

// Bounds of a throughput probe's size.
const (
	DefaultThroughputSize int64 = 10 << 20 // when size_bytes is not set
	MaxThroughputSize     int64 = 1 << 30  // a probe never moves more, whatever it is told
)

// ThroughputModule is a timed bulk transfer against a URL: a monitoring URL, or another agent's
// throughput endpoint. It is bounded in size (SizeBytes) and in time (the module's timeout).
//
// A download GETs the URL with `Range: bytes=0-(size-1)` (so that a server holding a big test
// file, and the agents' endpoint, send no more than asked) and reads at most SizeBytes of the
// body, whichever of the two ends first: a body shorter than SizeBytes is a complete download.
// An upload POSTs exactly SizeBytes of incompressible data.
//
// A transfer the deadline cuts still reports the bytes moved and the rate so far (so the rate
// series has a point even on a link too slow for the size), with probe_throughput_complete 0,
// and fails with reason "timeout": the size asked for did not move in the time given, which is
// what a metered practice run must know.
//
// AllowPartial makes the probe time-boxed instead, "move up to size_bytes in at most timeout",
// the form a continuous schedule wants: a download cut by the deadline succeeds when the answer
// was a 2xx and at least one byte arrived; an upload is sent chunked and ends its body at half
// the time, so that the server still answers with what it received, and succeeds on a 2xx
// (and, from the agents' endpoint, the server's count agreeing). Success then says the path
// works; how fast it is, is probe_throughput_bytes_per_second's job. An upload on a path so
// slow that its socket buffers (megabytes on Linux) do not drain in the other half still misses
// the deadline: it fails, reporting the bytes written, which overstate what arrived.
type ThroughputModule struct {
	Direction    string    `yaml:"direction"`  // download (default) or upload
	SizeBytes    int64     `yaml:"size_bytes"` // bytes to move; default 10 MiB, at most 1 GiB
	BearerToken  Secret    `yaml:"bearer_token"`
	TLSConfig    TLSConfig `yaml:"tls_config"`
	ProxyURL     string    `yaml:"proxy_url"`     // http://, https:// or socks5:// proxy; none when empty
	AllowPartial bool      `yaml:"allow_partial"` // a transfer cut by the deadline succeeds (see above)
}

// Throughput directions, the values of Direction and of the metrics' direction label.
const (
	DirectionDownload = "download"
	DirectionUpload   = "upload"
)

func (m *ThroughputModule) validate(path string) []config.FieldError {
	var errs []config.FieldError
	switch m.Direction {
	case "", DirectionDownload, DirectionUpload:
	default:
		errs = append(errs, config.Errorf(path+".direction", "%q is neither download nor upload", m.Direction))
	}
	if m.SizeBytes < 0 || m.SizeBytes > MaxThroughputSize {
		errs = append(errs, config.Errorf(path+".size_bytes", "must be between 0 (the default, %d) and %d", DefaultThroughputSize, MaxThroughputSize))
	}
	if m.ProxyURL != "" {
		if _, err := tpProxyURL(m.ProxyURL); err != nil {
			errs = append(errs, config.Errorf(path+".proxy_url", "%v", err))
		}
	}
	return errs
}

func (m *ThroughputModule) direction() string {
	if m.Direction == "" {
		return DirectionDownload
	}
	return m.Direction
}

func (m *ThroughputModule) size() int64 {
	if m.SizeBytes <= 0 {
		return DefaultThroughputSize
	}
	return min(m.SizeBytes, MaxThroughputSize)
}

func tpProxyURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	switch u.Scheme {
	case "http", "https", "socks5", "socks5h":
	default:
		return nil, fmt.Errorf("%q: the scheme must be http, https or socks5", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q has no host", u.Redacted())
	}
	return u, nil
}

func init() { register("throughput", probeThroughput) }

// The throughput metrics, beside blackbox's probe_http_status_code.
const (
	metricThroughputBytes    = "probe_throughput_bytes"
	metricThroughputRate     = "probe_throughput_bytes_per_second"
	metricThroughputDuration = "probe_throughput_duration_seconds"
	metricThroughputComplete = "probe_throughput_complete"
	metricHTTPStatus         = "probe_http_status_code"
)

// throughputPayloadSize is the size of the random block that uploads and the throughput
// endpoint send over and over. iperf3 repeats a 128 KiB block; 1 MiB is beyond the window of
// the compressors a WAN optimiser would use (deflate's 32 KiB, zstd's default levels' 1-8 MiB
// windows aside), and costs 1 MiB once per process.
const throughputPayloadSize = 1 << 20

// throughputPayload is the random block, made once.
var throughputPayload = sync.OnceValue(func() []byte {
	b := make([]byte, throughputPayloadSize)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	return b
})

// tpReadBuffers hold the download's read buffer: large reads keep the probe's own CPU out of
// the figure at 10 Gb/s, and a pool keeps 256 KiB per concurrent probe, not per probe.
var tpReadBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// tpTimes are the instants of one request, written by httptrace hooks from the transport's
// goroutines. After a redirect they are the last request's.
type tpTimes struct {
	mu                                 sync.Mutex
	getConn, gotConn, wrote, firstByte time.Time
	connected                          bool
}

func (t *tpTimes) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GetConn: func(string) {
			t.mu.Lock()
			t.getConn, t.gotConn, t.wrote, t.firstByte = time.Now(), time.Time{}, time.Time{}, time.Time{}
			t.mu.Unlock()
		},
		GotConn: func(httptrace.GotConnInfo) {
			t.mu.Lock()
			t.gotConn, t.connected = time.Now(), true
			t.mu.Unlock()
		},
		WroteRequest: func(httptrace.WroteRequestInfo) {
			t.mu.Lock()
			t.wrote = time.Now()
			t.mu.Unlock()
		},
		GotFirstResponseByte: func() {
			t.mu.Lock()
			t.firstByte = time.Now()
			t.mu.Unlock()
		},
	}
}

func (t *tpTimes) snapshot() (getConn, gotConn, wrote, firstByte time.Time, connected bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.getConn, t.gotConn, t.wrote, t.firstByte, t.connected
}

// tpUploadBody is an upload's request body: n bytes of the random block, counted as the
// transport takes them (from its own goroutine, hence the atomic). With a non-zero stopAt it
// ends early once that instant has passed (a time-boxed upload, sent chunked).
type tpUploadBody struct {
	left   int64
	off    int
	stopAt time.Time
	moved  *atomic.Int64
}

func (b *tpUploadBody) Read(p []byte) (int, error) {
	if b.left <= 0 || (!b.stopAt.IsZero() && time.Now().After(b.stopAt)) {
		return 0, io.EOF
	}
	src := throughputPayload()[b.off:]
	if int64(len(src)) > b.left {
		src = src[:b.left]
	}
	n := copy(p, src)
	b.off = (b.off + n) % throughputPayloadSize
	b.left -= int64(n)
	b.moved.Add(int64(n))
	return n, nil
}

func probeThroughput(ctx context.Context, target string, m *Module, r *Result, logger *slog.Logger) bool {
	tm := &m.Throughput
	dir, size := tm.direction(), tm.size()
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.Fail(ReasonConfig, fmt.Errorf("target %q: must be an http:// or https:// URL with a host", target))
		return false
	}
	if u.User != nil {
		r.Fail(ReasonConfig, errors.New("target: credentials in the URL are refused; use bearer_token"))
		return false
	}
	token, err := tm.BearerToken.Value()
	if err != nil {
		r.Fail(ReasonConfig, fmt.Errorf("bearer_token: %w", err))
		return false
	}
	tlsCfg, err := tm.TLSConfig.Build(u.Hostname())
	if err != nil {
		r.Fail(ReasonConfig, err)
		return false
	}
	tr := &http.Transport{
		DialContext:            (&net.Dialer{}).DialContext,
		TLSClientConfig:        tlsCfg,
		TLSHandshakeTimeout:    0, // the probe's deadline bounds it
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
		// Bulk transfer: fewer, larger writes and reads.
		WriteBufferSize: 256 << 10,
		ReadBufferSize:  256 << 10,
	}
	if tm.ProxyURL != "" {
		pu, err := tpProxyURL(tm.ProxyURL)
		if err != nil {
			r.Fail(ReasonConfig, fmt.Errorf("proxy_url: %w", err))
			return false
		}
		tr.Proxy = http.ProxyURL(pu)
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	if dir == DirectionUpload {
		// A 301/302/303 would turn the POST into a GET and measure nothing.
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}

	times := &tpTimes{}
	ctx = httptrace.WithClientTrace(ctx, times.trace())
	var (
		req   *http.Request
		moved atomic.Int64 // upload: bytes the transport took from the body
	)
	if dir == DirectionUpload {
		// A time-boxed upload ends its body when half the time has passed, so that what sits in
		// socket buffers can drain and the server still answer with what it received: an upload
		// the deadline cuts has no answer.
		var stopAt time.Time
		if deadline, ok := ctx.Deadline(); ok && tm.AllowPartial {
			stopAt = time.Now().Add(time.Until(deadline) / 2)
		}
		body := func() io.ReadCloser {
			moved.Store(0)
			return io.NopCloser(&tpUploadBody{left: size, stopAt: stopAt, moved: &moved})
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u.String(), body())
		if err == nil {
			req.ContentLength = size
			if !stopAt.IsZero() {
				req.ContentLength = -1 // chunked: the body may end before size
			}
			req.GetBody = func() (io.ReadCloser, error) { return body(), nil }
			req.Header.Set("Content-Type", "application/octet-stream")
		}
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err == nil {
			req.Header.Set("Range", "bytes=0-"+strconv.FormatInt(size-1, 10))
		}
	}
	if err != nil {
		r.Fail(ReasonConfig, fmt.Errorf("building the request: %w", err))
		return false
	}
	req.Header.Set("User-Agent", "ServerSage-probe/throughput")
	req.Header.Set("Accept-Encoding", "identity") // wire bytes are what is measured
	req.Header.Set("Cache-Control", "no-cache")   // a caching proxy must not answer for the origin
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}

	start := time.Now()
	resp, err := client.Do(req)
	getConn, gotConn, wrote, firstByte, connected := times.snapshot()
	if getConn.IsZero() {
		getConn = start
	}
	if connected {
		r.Set(metricThroughputDuration, throughputDurationHelp, gotConn.Sub(getConn).Seconds(), "phase", "connect")
	}
	if err != nil {
		reason := tpReason(ctx, err, tm.ProxyURL != "", connected)
		r.Fail(reason, err)
		if dir == DirectionUpload && connected {
			// Cut while sending: what was written so far, at the rate so far. Unconfirmed by
			// the server, so a failure even with allow_partial.
			recordThroughput(r, dir, moved.Load(), time.Since(gotConn), false)
		}
		return false
	}
	defer resp.Body.Close()
	r.Set(metricHTTPStatus, "Response HTTP status code", float64(resp.StatusCode))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		reason := ReasonStatus
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			reason = ReasonAuth
		case http.StatusProxyAuthRequired:
			reason = ReasonProxy
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		r.Fail(reason, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg))))
		return false
	}

	if dir == DirectionUpload {
		sent := moved.Load()
		// The server may answer before the transport reports the body written (its hook runs
		// on another goroutine): no wait then.
		wait := 0.0
		if !wrote.IsZero() && firstByte.After(wrote) {
			wait = firstByte.Sub(wrote).Seconds()
		}
		r.Set(metricThroughputDuration, throughputDurationHelp, wait, "phase", "first_byte")
		recordThroughput(r, dir, sent, firstByte.Sub(gotConn), sent == size)
		// The agents' endpoint says what it received: a proxy or server that cut the body short
		// must not pass for a complete upload.
		var ans struct {
			Bytes *int64 `json:"bytes"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &ans) == nil && ans.Bytes != nil && *ans.Bytes != sent {
			r.Fail(ReasonContent, fmt.Errorf("the server received %d of the %d bytes sent", *ans.Bytes, sent))
			return false
		}
		if sent == size {
			return true
		}
		// Only a time-boxed upload ends short, and only allow_partial makes one.
		r.Fail(ReasonTimeout, fmt.Errorf("time-boxed upload: %d of %d bytes sent before the deadline", sent, size))
		return tm.AllowPartial && sent > 0
	}

	r.Set(metricThroughputDuration, throughputDurationHelp, firstByte.Sub(gotConn).Seconds(), "phase", "first_byte")
	bufp := tpReadBuffers.Get().(*[]byte)
	defer tpReadBuffers.Put(bufp)
	buf := *bufp
	var n int64
	complete := false
	for n < size {
		want := min(int64(len(buf)), size-n)
		k, rerr := resp.Body.Read(buf[:want])
		n += int64(k)
		if rerr == io.EOF {
			complete = true
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	if n >= size {
		complete = true
	}
	end := time.Now()
	recordThroughput(r, dir, n, end.Sub(firstByte), complete)
	if complete {
		logger.Debug("throughput probe done", "target", u.Redacted(), "direction", dir, "bytes", n, "seconds", end.Sub(firstByte).Seconds())
		return true
	}
	reason := tpReason(ctx, err, false, true)
	r.Fail(reason, fmt.Errorf("after %d of %d bytes: %w", n, size, err))
	return reason == ReasonTimeout && tm.AllowPartial && n > 0
}

const throughputDurationHelp = "Duration of the throughput probe by phase: connect (DNS, TCP, TLS, proxy tunnel), first_byte (request sent to the answer's first byte), transfer (what the rate is computed over)"

// recordThroughput sets the bytes, the transfer phase, the rate and whether the transfer
// completed. The rate is bytes over the transfer phase: for a download from the answer's first
// byte to the last byte read; for an upload from the connection to the server's answer, which
// comes once it has read the last byte (bytes merely written may still sit in socket buffers).
func recordThroughput(r *Result, dir string, n int64, d time.Duration, complete bool) {
	r.Set(metricThroughputBytes, "Bytes moved by the throughput probe", float64(n), "direction", dir)
	r.Set(metricThroughputDuration, throughputDurationHelp, d.Seconds(), "phase", "transfer")
	rate := 0.0
	if d > 0 {
		rate = float64(n) / d.Seconds()
	}
	r.Set(metricThroughputRate, "Bytes moved per second during the transfer phase", rate, "direction", dir)
	c := 0.0
	if complete {
		c = 1
	}
	r.Set(metricThroughputComplete, "1 when the transfer moved all it should, 0 when it was cut (by the deadline or an error)", c)
}

// tpReason classifies a transport error. proxied and connected say whether a proxy was in the
// way and whether a connection (through it) was established before the error.
func tpReason(ctx context.Context, err error, proxied, connected bool) Reason {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return ReasonTimeout
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && !connected {
		return ReasonResolve
	}
	var (
		certErr  *tls.CertificateVerificationError
		recErr   tls.RecordHeaderError
		alertErr tls.AlertError
		uaErr    x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invErr   x509.CertificateInvalidError
	)
	if errors.As(err, &certErr) || errors.As(err, &recErr) || errors.As(err, &alertErr) ||
		errors.As(err, &uaErr) || errors.As(err, &hostErr) || errors.As(err, &invErr) {
		return ReasonTLS
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "proxyconnect" {
		return ReasonProxy
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return ReasonTLS // Go reports the record header error only as this text
	}
	if connected {
		return ReasonProtocol
	}
	if proxied {
		// The proxy refused the CONNECT (Go reports its status text) or dropped the tunnel.
		return ReasonProxy
	}
	return ReasonConnect
}

// ParseSize reads a size for humans: a number of bytes, optionally with a fraction and a unit.
// K, M, G, T and KiB, MiB, GiB, TiB are powers of 1024 (as dd and ls); KB, MB, GB, TB powers of
// 1000 (as SI, and as disk and link vendors). Case does not matter; a space may separate the unit.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (100MB, 1GiB, 512k)", s)
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
		"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q (B, K/KiB, KB, M/MiB, MB, G/GiB, GB, T/TiB, TB)", s, unit)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	v := math.Round(f * mult)
	if v > math.MaxInt64/2 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}
