package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

// httpTracer times each round trip of one HTTP probe (the first request and every redirect)
// through net/http/httptrace, for blackbox's probe_http_duration_seconds phases. The dial
// runs in a transport goroutine, so the hooks lock.
type httpTracer struct {
	rt http.RoundTripper

	mu     sync.Mutex
	traces []roundTrip
}

// roundTrip is one request's timestamps. start is when the name lookup began (or the
// connection, when there was no lookup); dnsDone when it ended (= start without lookup).
type roundTrip struct {
	https                                          bool
	start, dnsDone, connectDone, tlsStart, tlsDone time.Time
	gotConn, firstByte, end                        time.Time
	connectErr, tlsErr                             error
	connectAddr                                    string
}

// RoundTrip starts a new trace for each request the client sends, then sends it.
func (t *httpTracer) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	t.traces = append(t.traces, roundTrip{https: req.URL.Scheme == "https"})
	t.mu.Unlock()
	return t.rt.RoundTrip(req)
}

// update runs f on the current round trip, if any.
func (t *httpTracer) update(f func(rt *roundTrip)) {
	t.mu.Lock()
	if n := len(t.traces); n > 0 {
		f(&t.traces[n-1])
	}
	t.mu.Unlock()
}

func (t *httpTracer) clientTrace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		DNSStart: func(httptrace.DNSStartInfo) {
			now := time.Now()
			t.update(func(rt *roundTrip) {
				if rt.start.IsZero() {
					rt.start = now
				}
			})
		},
		DNSDone: func(httptrace.DNSDoneInfo) {
			now := time.Now()
			t.update(func(rt *roundTrip) { rt.dnsDone = now })
		},
		ConnectStart: func(_, _ string) {
			now := time.Now()
			t.update(func(rt *roundTrip) {
				// No lookup: the connection was made to an address.
				if rt.dnsDone.IsZero() {
					if rt.start.IsZero() {
						rt.start = now
					}
					rt.dnsDone = now
				}
			})
		},
		ConnectDone: func(_, addr string, err error) {
			now := time.Now()
			t.update(func(rt *roundTrip) { rt.connectDone, rt.connectErr, rt.connectAddr = now, err, addr })
		},
		TLSHandshakeStart: func() {
			now := time.Now()
			t.update(func(rt *roundTrip) { rt.tlsStart = now })
		},
		TLSHandshakeDone: func(_ tls.ConnectionState, err error) {
			now := time.Now()
			t.update(func(rt *roundTrip) { rt.tlsDone, rt.tlsErr = now, err })
		},
		GotConn: func(httptrace.GotConnInfo) {
			now := time.Now()
			t.update(func(rt *roundTrip) { rt.gotConn = now })
		},
		GotFirstResponseByte: func() {
			now := time.Now()
			t.update(func(rt *roundTrip) { rt.firstByte = now })
		},
	}
}

// end marks the body of the last response as read.
func (t *httpTracer) end(now time.Time) { t.update(func(rt *roundTrip) { rt.end = now }) }

// phases adds the round trips' phases to probe_http_duration_seconds as blackbox sums them.
// The first request's resolve phase is resolve()'s. Through a proxy, the CONNECT exchange
// counts as connect (blackbox loses it between connect and tls).
func (t *httpTracer) phases(r *Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var d [len(httpPhases)]time.Duration // resolve, connect, tls, processing, transfer
	for i, rt := range t.traces {
		if i > 0 && !rt.start.IsZero() && !rt.dnsDone.IsZero() {
			d[0] += rt.dnsDone.Sub(rt.start)
		}
		if rt.gotConn.IsZero() {
			continue
		}
		if rt.https && !rt.tlsStart.IsZero() {
			d[1] += rt.tlsStart.Sub(rt.dnsDone)
			d[2] += rt.tlsDone.Sub(rt.tlsStart)
		} else {
			d[1] += rt.gotConn.Sub(rt.dnsDone)
		}
		if rt.firstByte.IsZero() {
			continue
		}
		d[3] += rt.firstByte.Sub(rt.gotConn)
		if rt.end.IsZero() {
			continue
		}
		d[4] += rt.end.Sub(rt.firstByte)
	}
	for i, p := range httpPhases {
		v := d[i].Seconds()
		if i == 0 {
			// resolve() already set the first request's lookup.
			prev, _ := r.Get("probe_http_duration_seconds", "phase", "resolve")
			v += prev
		}
		r.Set("probe_http_duration_seconds", httpDurationHelp, v, "phase", p)
	}
}

// reason classifies a failed client.Do from its error and what the trace saw.
func (t *httpTracer) reason(ctx context.Context, err error) Reason {
	if ctx.Err() != nil {
		return ReasonTimeout
	}
	var refused *proxyRefusedError
	if errors.As(err, &refused) {
		return ReasonProxy
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "proxyconnect" {
		if op.Timeout() {
			return ReasonTimeout
		}
		return ReasonProxy
	}
	t.mu.Lock()
	var last roundTrip
	if n := len(t.traces); n > 0 {
		last = t.traces[n-1]
	}
	t.mu.Unlock()
	if last.tlsErr != nil {
		return ReasonTLS
	}
	return netReason(ctx, err)
}
