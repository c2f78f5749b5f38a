package probe

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http/httpproxy"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"github.com/serversage/sage/internal/config"
)

// HTTPModule is blackbox_exporter's http module: the request to send and what a good answer is.
// The HTTP client settings (tls_config, basic_auth, proxy_url, ...) sit inline, as in blackbox.
type HTTPModule struct {
	IPProtocol                 `yaml:",inline"`
	ValidStatusCodes           []int             `yaml:"valid_status_codes"` // empty: 2xx
	ValidHTTPVersions          []string          `yaml:"valid_http_versions"`
	Method                     string            `yaml:"method"` // default GET
	Headers                    map[string]string `yaml:"headers"`
	Body                       string            `yaml:"body"`
	Compression                string            `yaml:"compression"`
	FailIfSSL                  bool              `yaml:"fail_if_ssl"`
	FailIfNotSSL               bool              `yaml:"fail_if_not_ssl"`
	FailIfBodyMatchesRegexp    []string          `yaml:"fail_if_body_matches_regexp"`
	FailIfBodyNotMatchesRegexp []string          `yaml:"fail_if_body_not_matches_regexp"`
	FailIfHeaderMatches        []HeaderMatch     `yaml:"fail_if_header_matches"`
	FailIfHeaderNotMatches     []HeaderMatch     `yaml:"fail_if_header_not_matches"`
	SkipResolvePhaseWithProxy  bool              `yaml:"skip_resolve_phase_with_proxy"`
	NoFollowRedirects          *bool             `yaml:"no_follow_redirects"` // deprecated in blackbox; follow_redirects wins
	// BodySizeLimit fails the probe when the body is longer ("10MB", as blackbox). Zero: no
	// limit for a body that is only drained, bodyBufferLimit for one that regexps must read.
	BodySizeLimit units.Base2Bytes `yaml:"body_size_limit"`

	// The http_client_config subset, inline as in blackbox.
	BasicAuth          *BasicAuth          `yaml:"basic_auth"`
	BearerToken        string              `yaml:"bearer_token"`
	BearerTokenFile    string              `yaml:"bearer_token_file"`
	TLSConfig          TLSConfig           `yaml:"tls_config"`
	FollowRedirects    *bool               `yaml:"follow_redirects"` // nil: true
	EnableHTTP2        *bool               `yaml:"enable_http2"`     // nil: true
	ProxyURL           string              `yaml:"proxy_url"`        // http://host:port; CONNECT for https targets
	NoProxy            string              `yaml:"no_proxy"`
	ProxyConnectHeader map[string][]string `yaml:"proxy_connect_header"`
}

// HeaderMatch is a header check of blackbox's fail_if_header_(not_)matches.
type HeaderMatch struct {
	Header       string `yaml:"header"`
	Regexp       string `yaml:"regexp"`
	AllowMissing bool   `yaml:"allow_missing"`
}

// BasicAuth is prometheus/common's basic_auth.
type BasicAuth struct {
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// bodyBufferLimit bounds the memory a body regexp check may take when the module sets no
// body_size_limit: a body is matched whole (as blackbox does), so it must be held whole.
const bodyBufferLimit = 16 << 20

// maxRedirects is blackbox's (and net/http's) limit.
const maxRedirects = 10

func (m *HTTPModule) validate(path string) []config.FieldError {
	errs := m.IPProtocol.validate(path)
	if m.Method != "" && !validMethod(m.Method) {
		errs = append(errs, config.Errorf(path+".method", "%q is not an HTTP method", m.Method))
	}
	for i, c := range m.ValidStatusCodes {
		if c < 100 || c > 599 {
			errs = append(errs, config.Errorf(fmt.Sprintf("%s.valid_status_codes[%d]", path, i), "%d is not an HTTP status (100-599)", c))
		}
	}
	for i, v := range m.ValidHTTPVersions {
		switch v {
		case "HTTP/1.0", "HTTP/1.1", "HTTP/2.0":
		default:
			errs = append(errs, config.Errorf(fmt.Sprintf("%s.valid_http_versions[%d]", path, i), "%q: want HTTP/1.0, HTTP/1.1 or HTTP/2.0", v))
		}
	}
	for k := range m.Headers {
		if !httpguts.ValidHeaderFieldName(k) {
			errs = append(errs, config.Errorf(path+".headers", "%q is not a header name", k))
		}
	}
	switch strings.ToLower(m.Compression) {
	case "", "identity", "gzip", "deflate":
	default:
		errs = append(errs, config.Errorf(path+".compression", "%q: want gzip, deflate or identity", m.Compression))
	}
	if m.FailIfSSL && m.FailIfNotSSL {
		errs = append(errs, config.Errorf(path+".fail_if_ssl", "fail_if_ssl and fail_if_not_ssl together fail every probe"))
	}
	if m.BodySizeLimit < 0 {
		errs = append(errs, config.Errorf(path+".body_size_limit", "must not be negative"))
	}
	errs = append(errs, validateRegexps(path+".fail_if_body_matches_regexp", m.FailIfBodyMatchesRegexp)...)
	errs = append(errs, validateRegexps(path+".fail_if_body_not_matches_regexp", m.FailIfBodyNotMatchesRegexp)...)
	for _, hl := range [...]struct {
		name string
		list []HeaderMatch
	}{{"fail_if_header_matches", m.FailIfHeaderMatches}, {"fail_if_header_not_matches", m.FailIfHeaderNotMatches}} {
		for i, hm := range hl.list {
			p := fmt.Sprintf("%s.%s[%d]", path, hl.name, i)
			if hm.Header == "" {
				errs = append(errs, config.Errorf(p+".header", "missing"))
			}
			if hm.Regexp == "" {
				errs = append(errs, config.Errorf(p+".regexp", "missing"))
			} else if _, err := compileRegexp(hm.Regexp); err != nil {
				errs = append(errs, config.Errorf(p+".regexp", "not a regular expression: %v", err))
			}
		}
	}
	if m.BasicAuth != nil && m.BasicAuth.Password != "" && m.BasicAuth.PasswordFile != "" {
		errs = append(errs, config.Errorf(path+".basic_auth", "password and password_file are mutually exclusive"))
	}
	if m.BearerToken != "" && m.BearerTokenFile != "" {
		errs = append(errs, config.Errorf(path+".bearer_token", "bearer_token and bearer_token_file are mutually exclusive"))
	}
	if m.BasicAuth != nil && (m.BearerToken != "" || m.BearerTokenFile != "") {
		errs = append(errs, config.Errorf(path+".basic_auth", "basic_auth and bearer_token are mutually exclusive"))
	}
	if m.ProxyURL != "" {
		u, err := url.Parse(m.ProxyURL)
		switch {
		case err != nil:
			// url's error repeats the URL, which may hold a password.
			errs = append(errs, config.Errorf(path+".proxy_url", "not a URL"))
		case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5":
			errs = append(errs, config.Errorf(path+".proxy_url", "scheme %q: want http, https or socks5", u.Scheme))
		case u.Host == "":
			errs = append(errs, config.Errorf(path+".proxy_url", "no host"))
		}
	} else if m.NoProxy != "" || len(m.ProxyConnectHeader) > 0 {
		errs = append(errs, config.Errorf(path+".proxy_url", "missing, but no_proxy or proxy_connect_header is set"))
	}
	errs = append(errs, validateTLSConfig(path+".tls_config", m.TLSConfig)...)
	return errs
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

func init() { register("http", probeHTTP) }

// httpPhases are blackbox_exporter's phases of probe_http_duration_seconds, all present on
// every probe (zero when a phase was not reached).
var httpPhases = [...]string{"resolve", "connect", "tls", "processing", "transfer"}

const httpDurationHelp = "Duration of http request by phase, summed over all redirects"

// parseHTTPTarget reads a target as blackbox does: a URL, http:// assumed when it has no scheme.
func parseHTTPTarget(target string) (*url.URL, error) {
	if !strings.HasPrefix(target, "http://") && !strings.HasPrefix(target, "https://") {
		if strings.Contains(target, "://") {
			return nil, errors.New("target scheme must be http or https")
		}
		target = "http://" + target
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("target is not a URL: %w", err)
	}
	if u.Hostname() == "" {
		return nil, errors.New("target URL has no host")
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil {
			return nil, fmt.Errorf("target port %q: %w", p, err)
		}
	}
	return u, nil
}

func probeHTTP(ctx context.Context, target string, m *Module, r *Result, logger *slog.Logger) bool {
	h := &m.HTTP
	for _, p := range httpPhases {
		r.Set("probe_http_duration_seconds", httpDurationHelp, 0, "phase", p)
	}
	// blackbox reports these on every probe, zero when not reached.
	var (
		statusCode, redirects, bodyLen int
		contentLength                  int64
		version, isSSL, failedRegex    float64
	)
	defer func() {
		r.Set("probe_http_status_code", "Response HTTP status code", float64(statusCode))
		r.Set("probe_http_content_length", "Length of http content response", float64(contentLength))
		r.Set("probe_http_uncompressed_body_length", "Length of uncompressed response body", float64(bodyLen))
		r.Set("probe_http_redirects", "The number of redirects", float64(redirects))
		r.Set("probe_http_ssl", "Indicates if SSL was used for the final redirect", isSSL)
		r.Set("probe_http_version", "Returns the version of HTTP of the probe response", version)
		r.Set("probe_failed_due_to_regex", "Indicates if probe failed due to regex", failedRegex)
	}()

	u, err := parseHTTPTarget(target)
	if err != nil {
		r.Fail(ReasonConfig, err)
		return false
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	if a, err := idna.Lookup.ToASCII(host); err == nil {
		host = a
	}

	proxy, err := h.proxyFunc()
	if err != nil {
		r.Fail(ReasonConfig, err)
		return false
	}
	proxied := false
	if proxy != nil {
		pu, err := proxy(&http.Request{URL: u})
		if err != nil {
			r.Fail(ReasonConfig, err)
			return false
		}
		proxied = pu != nil
	}

	// The target's address is resolved here, as blackbox does, so that the resolve phase and
	// probe_ip_protocol are the prober's own; through a proxy the proxy is still given the
	// name (it may be the only one that can resolve it), unless told to skip this.
	var ip net.IP
	if !proxied || !h.SkipResolvePhaseWithProxy {
		ip, err = resolve(ctx, host, h.IPProtocol, r, "probe_http_duration_seconds")
		if err != nil {
			logger.Debug("resolving target", "host", host, "err", err)
			return false
		}
	}

	tlsCfg, err := h.TLSConfig.Build("")
	if err != nil {
		r.Fail(ReasonConfig, err)
		return false
	}
	req, err := h.newRequest(ctx, u)
	if err != nil {
		r.Fail(ReasonConfig, err)
		return false
	}

	dialer := &net.Dialer{}
	firstAddr := net.JoinHostPort(host, port)
	tracer := &httpTracer{}
	transport := &http.Transport{
		Proxy: proxy,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			// Dial the address chosen by resolve for the target itself; redirects elsewhere
			// resolve through the dialer, and the trace sees that lookup.
			if ip != nil && !proxied && addr == firstAddr {
				return dialer.DialContext(ctx, ipNetwork("tcp", ip), net.JoinHostPort(ip.String(), port))
			}
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig:    tlsCfg,
		DisableKeepAlives:  true, // every probe measures a fresh connection, as blackbox
		DisableCompression: true, // the body is measured as sent; `compression` decodes it
		ForceAttemptHTTP2:  h.EnableHTTP2 == nil || *h.EnableHTTP2,
		ProxyConnectHeader: http.Header(h.ProxyConnectHeader),
		OnProxyConnectResponse: func(_ context.Context, _ *url.URL, _ *http.Request, res *http.Response) error {
			if res.StatusCode != http.StatusOK {
				return &proxyRefusedError{status: res.Status}
			}
			return nil
		},
		MaxResponseHeaderBytes: 1 << 20,
	}
	defer transport.CloseIdleConnections()
	tracer.rt = transport

	follow := true
	if h.NoFollowRedirects != nil {
		follow = !*h.NoFollowRedirects
	}
	if h.FollowRedirects != nil {
		follow = *h.FollowRedirects
	}
	client := &http.Client{
		Transport: tracer,
		CheckRedirect: func(next *http.Request, via []*http.Request) error {
			redirects = len(via)
			if !follow || len(via) > maxRedirects {
				return http.ErrUseLastResponse
			}
			logger.Debug("following redirect", "location", next.URL.Redacted())
			return nil
		},
	}
	if follow {
		// Redirect chains through a login often set a cookie on the way, as blackbox allows.
		client.Jar, _ = cookiejar.New(&cookiejar.Options{PublicSuffixList: publicsuffix.List})
	}

	req = req.WithContext(httptrace.WithClientTrace(ctx, tracer.clientTrace()))
	resp, err := client.Do(req)
	if err != nil {
		tracer.phases(r)
		reason := tracer.reason(ctx, err)
		r.Fail(reason, err)
		logger.Debug("http request failed", "reason", reason, "err", err)
		return false
	}
	defer resp.Body.Close()

	statusCode = resp.StatusCode
	contentLength = resp.ContentLength
	version = float64(resp.ProtoMajor) + float64(resp.ProtoMinor)/10
	success := true
	if !h.statusValid(resp.StatusCode) {
		success = false
		r.Fail(ReasonStatus, fmt.Errorf("status %d is not valid", resp.StatusCode))
	}
	if success && (len(h.FailIfHeaderMatches) > 0 || len(h.FailIfHeaderNotMatches) > 0) {
		if err := h.checkHeaders(resp.Header); err != nil {
			success = false
			failedRegex = 1
			r.Fail(ReasonContent, err)
		}
	}

	checkBody := success && (len(h.FailIfBodyMatchesRegexp) > 0 || len(h.FailIfBodyNotMatchesRegexp) > 0)
	body, n, err := h.readBody(resp, checkBody)
	bodyLen = n
	tracer.end(time.Now())
	if err != nil {
		success = false
		reason := ReasonContent
		if !errors.Is(err, errBodyTooLarge) {
			reason = netReason(ctx, err)
		}
		r.Fail(reason, err)
	} else if checkBody {
		if err := h.checkBody(body); err != nil {
			success = false
			failedRegex = 1
			r.Fail(ReasonContent, err)
		}
	}

	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		r.Set("probe_http_last_modified_timestamp_seconds", "Returns the Last-Modified HTTP response header in unixtime", float64(t.Unix()))
	}
	if len(h.ValidHTTPVersions) > 0 && !contains(h.ValidHTTPVersions, resp.Proto) {
		success = false
		r.Fail(ReasonProtocol, fmt.Errorf("HTTP version %s is not valid", resp.Proto))
	}
	tracer.phases(r)
	if resp.TLS != nil {
		isSSL = 1
		recordTLS(r, resp.TLS)
		if h.FailIfSSL {
			success = false
			r.Fail(ReasonTLS, errors.New("final request was over TLS (fail_if_ssl)"))
		}
	} else if h.FailIfNotSSL {
		success = false
		r.Fail(ReasonTLS, errors.New("final request was not over TLS (fail_if_not_ssl)"))
	}
	return success
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// proxyFunc returns the transport's Proxy function, nil without proxy_url. As in
// prometheus/common, no_proxy brings in the environment-style matcher (which never proxies
// loopback); without it every request goes through the proxy.
func (h *HTTPModule) proxyFunc() (func(*http.Request) (*url.URL, error), error) {
	if h.ProxyURL == "" {
		return nil, nil
	}
	pu, err := url.Parse(h.ProxyURL)
	if err != nil {
		return nil, errors.New("proxy_url is not a URL")
	}
	if h.NoProxy == "" {
		return http.ProxyURL(pu), nil
	}
	cfg := &httpproxy.Config{HTTPProxy: h.ProxyURL, HTTPSProxy: h.ProxyURL, NoProxy: h.NoProxy}
	f := cfg.ProxyFunc()
	return func(req *http.Request) (*url.URL, error) { return f(req.URL) }, nil
}

// newRequest builds the request of the module for u: method, body, headers, credentials.
func (h *HTTPModule) newRequest(ctx context.Context, u *url.URL) (*http.Request, error) {
	method := h.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if h.Body != "" {
		body = strings.NewReader(h.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("User-Agent", "ServerSage-probe")
	for k, v := range h.Headers {
		if textproto.CanonicalMIMEHeaderKey(k) == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	if h.Compression != "" && req.Header.Get("Accept-Encoding") == "" {
		req.Header.Set("Accept-Encoding", strings.ToLower(h.Compression))
	}
	if ba := h.BasicAuth; ba != nil {
		pw, err := Secret{Inline: ba.Password, File: ba.PasswordFile}.Value()
		if err != nil {
			return nil, fmt.Errorf("basic_auth: %w", err)
		}
		req.SetBasicAuth(ba.Username, pw)
	}
	if h.BearerToken != "" || h.BearerTokenFile != "" {
		tok, err := Secret{Inline: h.BearerToken, File: h.BearerTokenFile}.Value()
		if err != nil {
			return nil, fmt.Errorf("bearer_token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return req, nil
}

func (h *HTTPModule) statusValid(code int) bool {
	if len(h.ValidStatusCodes) == 0 {
		return code >= 200 && code < 300
	}
	for _, c := range h.ValidStatusCodes {
		if c == code {
			return true
		}
	}
	return false
}

// checkHeaders applies fail_if_header_(not_)matches as blackbox does: a missing header fails
// unless allow_missing; "matches" fails when any value matches, "not matches" when none does.
func (h *HTTPModule) checkHeaders(hdr http.Header) error {
	for _, hm := range h.FailIfHeaderMatches {
		values := hdr.Values(hm.Header)
		if len(values) == 0 {
			if hm.AllowMissing {
				continue
			}
			return fmt.Errorf("header %s is missing", hm.Header)
		}
		re, err := compileRegexp(hm.Regexp)
		if err != nil {
			return err
		}
		for _, v := range values {
			if re.MatchString(v) {
				return fmt.Errorf("header %s matched %q", hm.Header, hm.Regexp)
			}
		}
	}
	for _, hm := range h.FailIfHeaderNotMatches {
		values := hdr.Values(hm.Header)
		if len(values) == 0 {
			if hm.AllowMissing {
				continue
			}
			return fmt.Errorf("header %s is missing", hm.Header)
		}
		re, err := compileRegexp(hm.Regexp)
		if err != nil {
			return err
		}
		matched := false
		for _, v := range values {
			if re.MatchString(v) {
				matched = true
				break
			}
		}
		if !matched {
			return fmt.Errorf("header %s did not match %q", hm.Header, hm.Regexp)
		}
	}
	return nil
}

func (h *HTTPModule) checkBody(body []byte) error {
	for _, expr := range h.FailIfBodyMatchesRegexp {
		re, err := compileRegexp(expr)
		if err != nil {
			return err
		}
		if re.Match(body) {
			return fmt.Errorf("body matched %q", expr)
		}
	}
	for _, expr := range h.FailIfBodyNotMatchesRegexp {
		re, err := compileRegexp(expr)
		if err != nil {
			return err
		}
		if !re.Match(body) {
			return fmt.Errorf("body did not match %q", expr)
		}
	}
	return nil
}

var errBodyTooLarge = errors.New("body is larger than the limit")

// readBody reads the body to its end (transfer time is the whole body's), decoding it when
// the module names a compression, and keeps it when keep (for the regexp checks). It returns
// the decoded length.
func (h *HTTPModule) readBody(resp *http.Response, keep bool) ([]byte, int, error) {
	limit := int64(h.BodySizeLimit)
	if limit <= 0 && keep {
		limit = bodyBufferLimit
	}
	var rd io.Reader = resp.Body
	switch enc := strings.ToLower(resp.Header.Get("Content-Encoding")); {
	case h.Compression == "" || enc == "" || enc == "identity":
	case strings.EqualFold(h.Compression, enc) && enc == "gzip":
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return nil, 0, fmt.Errorf("gzip body: %w", err)
		}
		defer zr.Close()
		rd = zr
	case strings.EqualFold(h.Compression, enc) && enc == "deflate":
		zr := flate.NewReader(resp.Body)
		defer zr.Close()
		rd = zr
	default:
		return nil, 0, fmt.Errorf("body encoded as %q, module expects %q", enc, h.Compression)
	}
	if limit > 0 {
		// One byte past the limit tells a body of exactly the limit from a longer one.
		rd = io.LimitReader(rd, limit+1)
	}
	if keep {
		var buf bytes.Buffer
		if resp.ContentLength > 0 && resp.ContentLength <= limit {
			buf.Grow(int(resp.ContentLength))
		}
		n, err := buf.ReadFrom(rd)
		if err == nil && limit > 0 && n > limit {
			return nil, int(n), errBodyTooLarge
		}
		return buf.Bytes(), int(n), err
	}
	n, err := io.Copy(io.Discard, rd)
	if err == nil && limit > 0 && n > limit {
		return nil, int(n), errBodyTooLarge
	}
	return nil, int(n), err
}

// proxyRefusedError is the proxy's answer to CONNECT when it is not 200.
type proxyRefusedError struct{ status string }

func (e *proxyRefusedError) Error() string { return "proxy refused CONNECT: " + e.status }
