package probe

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of the agents' throughput endpoint.
const (
	DefaultThroughputServerMaxBytes      int64 = 256 << 20
	DefaultThroughputServerRate          int64 = 100 << 20 // bytes per second, per request and in all
	DefaultThroughputServerMaxConcurrent       = 2
)

// ThroughputServerOptions configures NewThroughputHandler.
type ThroughputServerOptions struct {
	// Tokens returns the accepted Bearer tokens, asked at every request so that a token the hub
	// rotates applies at once; empty strings are ignored. With none, every request is refused
	// with 403: an endpoint that moves hundreds of megabytes is never open.
	Tokens func() []string
	// MaxBytes caps one request, either way; default 256 MiB.
	MaxBytes int64
	// RateBytesPerSec caps each request and, separately, all of them together: a peer's probe
	// must not take the host's link from its real work. 0: 100 MiB/s; negative: no cap.
	RateBytesPerSec int64
	// MaxConcurrent transfers at once (default 2); beyond, 429.
	MaxConcurrent int
	// Logger gets one debug line per transfer; nil: none.
	Logger *slog.Logger
	// Stats, when set, counts requests and bytes, for the agent's /metrics.
	Stats *ThroughputServerStats
}

// ThroughputServerStats counts what a throughput endpoint did. Safe for concurrent use.
type ThroughputServerStats struct {
	requests sync.Map // result -> *atomic.Int64
	sent     atomic.Int64
	received atomic.Int64
	inFlight atomic.Int64
}

// The results counted by ThroughputServerStats.
const (
	tsOK           = "ok"
	tsUnauthorized = "unauthorized" // no or a wrong token
	tsForbidden    = "forbidden"    // no token configured
	tsBusy         = "busy"         // MaxConcurrent reached
	tsBadRequest   = "bad_request"
	tsTooLarge     = "too_large"
	tsAborted      = "aborted" // the client went away mid-transfer
)

func (s *ThroughputServerStats) count(result string) {
	if s == nil {
		return
	}
	v, _ := s.requests.LoadOrStore(result, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// Samples returns the counters as sage_throughput_server_* samples: requests_total{result} and
// bytes_total{direction="sent|received"} are counters, in_flight a gauge.
func (s *ThroughputServerStats) Samples() []Sample {
	var out []Sample
	for _, res := range []string{tsOK, tsUnauthorized, tsForbidden, tsBusy, tsBadRequest, tsTooLarge, tsAborted} {
		var n int64
		if v, ok := s.requests.Load(res); ok {
			n = v.(*atomic.Int64).Load()
		}
		out = append(out, Sample{Name: "sage_throughput_server_requests_total", Help: "Requests to the agent's throughput endpoint by result",
			Labels: []string{"result", res}, Value: float64(n)})
	}
	out = append(out,
		Sample{Name: "sage_throughput_server_bytes_total", Help: "Bytes the agent's throughput endpoint sent or received",
			Labels: []string{"direction", "sent"}, Value: float64(s.sent.Load())},
		Sample{Name: "sage_throughput_server_bytes_total", Help: "Bytes the agent's throughput endpoint sent or received",
			Labels: []string{"direction", "received"}, Value: float64(s.received.Load())},
		Sample{Name: "sage_throughput_server_in_flight", Help: "Transfers the agent's throughput endpoint is serving now",
			Value: float64(s.inFlight.Load())},
	)
	return out
}

type throughputServer struct {
	opts    ThroughputServerOptions
	slots   chan struct{}
	global  *rate.Limiter // nil: no cap
	rate    rate.Limit
	chunk   int // bytes per write or read, and the limiters' burst
	logger  *slog.Logger
	readBuf sync.Pool
}

// NewThroughputHandler serves the agents' throughput endpoint, which another agent's throughput
// probe (or `sage probe throughput`) measures against:
//
//   - GET streams incompressible bytes: ?bytes=N of them (400 above MaxBytes), else as many as
//     a `Range: bytes=0-E` header asks (206, clamped to MaxBytes as for a resource of that
//     length), else 10 MiB. The data is one random block sent over and over; nothing of the
//     requested size is allocated.
//   - POST reads and discards the body, up to MaxBytes (413 beyond), and answers
//     {"bytes": N, "seconds": S}, S the time from the handler's start to the body's end.
//
// Every request needs `Authorization: Bearer <token>` with one of Tokens (401 otherwise; 403 for
// every request while there are none); the tokens are compared in constant time.
func NewThroughputHandler(opts ThroughputServerOptions) http.Handler {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultThroughputServerMaxBytes
	}
	if opts.RateBytesPerSec == 0 {
		opts.RateBytesPerSec = DefaultThroughputServerRate
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultThroughputServerMaxConcurrent
	}
	if opts.Tokens == nil {
		opts.Tokens = func() []string { return nil }
	}
	s := &throughputServer{opts: opts, slots: make(chan struct{}, opts.MaxConcurrent), logger: opts.Logger, chunk: 256 << 10}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if opts.RateBytesPerSec > 0 {
		// About twenty waits a second at the cap, at most 256 KiB and at least 4 KiB each: small
		// enough to keep the rate even over a short probe, large enough to cost little CPU.
		s.chunk = int(min(max(opts.RateBytesPerSec/20, 4<<10), 256<<10))
		s.rate = rate.Limit(opts.RateBytesPerSec)
		s.global = rate.NewLimiter(s.rate, s.chunk)
	}
	s.readBuf.New = func() any { b := make([]byte, s.chunk); return &b }
	return s
}

func (s *throughputServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	stats := s.opts.Stats
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		stats.count(tsBadRequest)
		http.Error(w, "GET to download, POST to upload", http.StatusMethodNotAllowed)
		return
	}
	switch s.authorize(r) {
	case tsForbidden:
		stats.count(tsForbidden)
		http.Error(w, "the throughput endpoint has no token yet, so it refuses every request", http.StatusForbidden)
		return
	case tsUnauthorized:
		stats.count(tsUnauthorized)
		w.Header().Set("WWW-Authenticate", `Bearer realm="sage throughput"`)
		http.Error(w, "a valid Bearer token is required", http.StatusUnauthorized)
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		stats.count(tsBusy)
		w.Header().Set("Retry-After", "5")
		http.Error(w, fmt.Sprintf("%d transfers are running, the most this agent serves at once", cap(s.slots)), http.StatusTooManyRequests)
		return
	}
	if stats != nil {
		stats.inFlight.Add(1)
		defer stats.inFlight.Add(-1)
	}
	if r.Method == http.MethodGet {
		s.download(w, r)
	} else {
		s.upload(w, r)
	}
}

// authorize returns "" when the request carries an accepted token.
func (s *throughputServer) authorize(r *http.Request) string {
	var accepted [][sha256.Size]byte
	for _, t := range s.opts.Tokens() {
		if t != "" {
			accepted = append(accepted, sha256.Sum256([]byte(t)))
		}
	}
	if len(accepted) == 0 {
		return tsForbidden
	}
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(cred) == "" {
		return tsUnauthorized
	}
	// Hashes are compared, not the tokens, so that their lengths do not show in the timing.
	sum := sha256.Sum256([]byte(strings.TrimSpace(cred)))
	hit := 0
	for _, a := range accepted {
		hit |= subtle.ConstantTimeCompare(sum[:], a[:])
	}
	if hit != 1 {
		return tsUnauthorized
	}
	return ""
}

// wait takes n bytes from the request's and the global limiters.
func (s *throughputServer) wait(ctx context.Context, own *rate.Limiter, n int) error {
	if own == nil {
		return nil
	}
	if err := own.WaitN(ctx, n); err != nil {
		return err
	}
	return s.global.WaitN(ctx, n)
}

func (s *throughputServer) limiter() *rate.Limiter {
	if s.global == nil {
		return nil
	}
	return rate.NewLimiter(s.rate, s.chunk)
}

func (s *throughputServer) download(w http.ResponseWriter, r *http.Request) {
	stats := s.opts.Stats
	n, ranged, err := throughputRequestedBytes(r.URL.Query().Get("bytes"), r.URL.Query().Has("bytes"), r.Header.Get("Range"), s.opts.MaxBytes)
	if err != nil {
		stats.count(tsBadRequest)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	code := http.StatusOK
	if ranged {
		code = http.StatusPartialContent
		if n > 0 {
			h.Set("Content-Range", fmt.Sprintf("bytes 0-%d/*", n-1))
		}
	}
	w.WriteHeader(code)
	start := time.Now()
	own := s.limiter()
	payload := throughputPayload()
	var sent int64
	off := 0
	for sent < n {
		k := int(min(int64(s.chunk), n-sent, int64(len(payload)-off)))
		if err := s.wait(r.Context(), own, k); err != nil {
			break
		}
		m, err := w.Write(payload[off : off+k])
		sent += int64(m)
		if stats != nil {
			stats.sent.Add(int64(m))
		}
		if err != nil {
			break
		}
		off = (off + m) % len(payload)
	}
	if sent < n {
		stats.count(tsAborted)
	} else {
		stats.count(tsOK)
	}
	s.logger.Debug("throughput download served", "remote", r.RemoteAddr, "bytes", sent, "asked", n, "seconds", time.Since(start).Seconds())
}

// ThroughputUploadAnswer is the endpoint's answer to an upload.
type ThroughputUploadAnswer struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

func (s *throughputServer) upload(w http.ResponseWriter, r *http.Request) {
	stats := s.opts.Stats
	start := time.Now()
	if r.ContentLength > s.opts.MaxBytes {
		stats.count(tsTooLarge)
		http.Error(w, fmt.Sprintf("at most %d bytes per upload", s.opts.MaxBytes), http.StatusRequestEntityTooLarge)
		return
	}
	own := s.limiter()
	bufp := s.readBuf.Get().(*[]byte)
	defer s.readBuf.Put(bufp)
	buf := *bufp
	var got int64
	for {
		k, err := r.Body.Read(buf)
		got += int64(k)
		if stats != nil {
			stats.received.Add(int64(k))
		}
		// Paying for what was read before reading more: TCP's window then slows the sender.
		if werr := s.wait(r.Context(), own, k); werr != nil {
			stats.count(tsAborted)
			return
		}
		if got > s.opts.MaxBytes {
			stats.count(tsTooLarge)
			// Closing the connection: draining the rest would be what the cap is against.
			w.Header().Set("Connection", "close")
			http.Error(w, fmt.Sprintf("at most %d bytes per upload", s.opts.MaxBytes), http.StatusRequestEntityTooLarge)
			return
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			stats.count(tsAborted)
			s.logger.Debug("throughput upload cut", "remote", r.RemoteAddr, "bytes", got, "err", err)
			return
		}
	}
	d := time.Since(start)
	stats.count(tsOK)
	s.logger.Debug("throughput upload received", "remote", r.RemoteAddr, "bytes", got, "seconds", d.Seconds())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(ThroughputUploadAnswer{Bytes: got, Seconds: d.Seconds()})
}

// throughputRequestedBytes decides a download's size: ?bytes=N (present says whether the query
// had the parameter; above max it is refused), else a Range header of the one form the probe
// sends, `bytes=0-E` or `bytes=0-`, clamped to max as for a resource of max bytes (ranged is
// then true), else DefaultThroughputSize. Any other Range is ignored, which HTTP allows.
func throughputRequestedBytes(bytesParam string, present bool, rangeHeader string, max int64) (n int64, ranged bool, err error) {
	if present {
		n, err := strconv.ParseInt(strings.TrimSpace(bytesParam), 10, 64)
		if err != nil || n < 0 {
			return 0, false, fmt.Errorf("bytes=%.40q: want a whole number of bytes", bytesParam)
		}
		if n > max {
			return 0, false, fmt.Errorf("bytes=%d: at most %d bytes per request", n, max)
		}
		return n, false, nil
	}
	if spec, ok := strings.CutPrefix(strings.TrimSpace(rangeHeader), "bytes="); ok {
		first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
		if ok && strings.TrimSpace(first) == "0" && !strings.Contains(last, ",") {
			last = strings.TrimSpace(last)
			if last == "" {
				return max, true, nil
			}
			if e, err := strconv.ParseInt(last, 10, 64); err == nil && e >= 0 {
				if e == math.MaxInt64 || e+1 > max {
					return max, true, nil
				}
				return e + 1, true, nil
			}
		}
	}
	return min(DefaultThroughputSize, max), false, nil
}
