package probe

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// delayProxy is a user-space TCP relay that delays every chunk by a fixed time per direction,
// standing in for netem (not available here): a chunk read at t is written at t+delay, in
// order, so that the relay adds latency without limiting throughput. The kernel still
// completes the TCP handshake at once, so a delay shows in what follows the connect (TLS,
// the request, the first byte), not in the connect itself.
type delayProxy struct {
	ln      net.Listener
	backend string
	up      time.Duration // client -> server
	down    time.Duration // server -> client

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

// startDelayProxy relays connections to backend with the given delays until the test ends.
func startDelayProxy(t testing.TB, backend string, up, down time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{ln: ln, backend: backend, up: up, down: down}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *delayProxy) addr() string { return p.ln.Addr().String() }

func (p *delayProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *delayProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *delayProxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.backend)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.track(client)
		p.track(server)
		p.wg.Add(2)
		go p.relay(server, client, p.up)
		go p.relay(client, server, p.down)
	}
}

// waitUntil returns at t, not a timer tick later: it sleeps to 2 ms before and spins the
// rest, since a sleep here overshoots by up to a millisecond and the tests' tolerance is one.
func waitUntil(t time.Time) {
	if d := time.Until(t) - 2*time.Millisecond; d > 0 {
		time.Sleep(d)
	}
	for time.Now().Before(t) {
		runtime.Gosched()
	}
}

type chunk struct {
	data []byte
	at   time.Time
}

// relay copies src to dst, each chunk delayed by d from when it was read. A closed src
// half-closes dst after the delayed data, as a delayed FIN would.
func (p *delayProxy) relay(dst, src net.Conn, d time.Duration) {
	defer p.wg.Done()
	queue := make(chan chunk, 1024)
	go func() {
		defer close(queue)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				queue <- chunk{data: buf[:n], at: time.Now().Add(d)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range queue {
		waitUntil(c.at)
		if _, err := dst.Write(c.data); err != nil {
			_ = src.Close()
			for range queue { // let the reader finish
			}
			return
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
}

// floorPhases runs n probes and returns each phase's floor: a late wake-up or a slow
// handshake on a loaded machine (TLS under -race varies by milliseconds) only adds time, so
// the smallest value is the path's own. transfer is the exception: a late first byte makes it
// shorter, so its median is taken.
func floorPhases(t *testing.T, n int, target string, m Module, name string, phases []string) map[string]time.Duration {
	t.Helper()
	all := map[string][]time.Duration{}
	for i := 0; i < n; i++ {
		r := runModule(t, target, m, 5*time.Second)
		if !r.Success {
			t.Fatalf("probe failed: %s %s", r.Reason, r.Detail)
		}
		for _, p := range phases {
			all[p] = append(all[p], time.Duration(mustSample(t, r, name, "phase", p)*float64(time.Second)))
		}
	}
	out := map[string]time.Duration{}
	for p, v := range all {
		slices.Sort(v)
		if p == "transfer" {
			out[p] = v[len(v)/2]
		} else {
			out[p] = v[0]
		}
	}
	return out
}

// injectedWithin measures the phases through a relay without delay and one with, and checks
// that each phase grew by the injected delay within its tolerance (1 ms on the wire, 5 ms where
// CPU work on either side overlaps the crossing). A machine busy with other tests can
// stall a goroutine for milliseconds, so a comparison that misses is measured again, up to
// three times; every miss is logged.
func injectedWithin(t *testing.T, direct, slow string, m Module, name string, want map[string]time.Duration) {
	t.Helper()
	phases := make([]string, 0, len(want))
	for p := range want {
		phases = append(phases, p)
	}
	var misses []string
	for attempt := 0; attempt < 3; attempt++ {
		base := floorPhases(t, 9, direct, m, name, phases)
		delayed := floorPhases(t, 9, slow, m, name, phases)
		misses = misses[:0]
		for p, w := range want {
			tolerance := time.Millisecond
			switch p {
			case "tls":
				// A handshake is milliseconds of CPU on each side (more under -race) that the
				// relay does not touch but a busy machine stretches; 1 ms is for the wire.
				tolerance = 5 * time.Millisecond
			case "query_response":
				// After a TLS handshake the first exchange waits on the client's Finished crossing
				// up, which overlaps the prober's own post-handshake work (certificate checks,
				// milliseconds under -race on a busy machine): the phase can show that much less.
				tolerance = 5 * time.Millisecond
			}
			got := delayed[p] - base[p]
			if got < w-tolerance || got > w+tolerance {
				misses = append(misses, fmt.Sprintf("phase %s: %v with the delay, %v without: added %v, injected %v, tolerance %v", p, delayed[p], base[p], got, w, tolerance))
			} else {
				t.Logf("phase %s: added %v, injected %v", p, got, w)
			}
		}
		if len(misses) == 0 {
			return
		}
		t.Logf("attempt %d missed: %v", attempt+1, misses)
	}
	t.Errorf("phases do not carry the injected delay: %v", misses)
}

const (
	upDelay   = 15 * time.Millisecond
	downDelay = 25 * time.Millisecond
)

// TestHTTPPhasesUnderDelay checks that the http prober's phases carry a delay injected on the
// path: the request and the first response byte each cross the relay once (processing), the
// TLS 1.3 handshake crosses it once each way (tls), and the body's own pause (transfer) does
// not move.
func TestHTTPPhasesUnderDelay(t *testing.T) {
	plain := httptest.NewServer(testMux())
	t.Cleanup(plain.Close)
	cfg, ca := ecdsaTLS(t)
	tlsSrv := httptest.NewUnstartedServer(testMux())
	tlsSrv.TLS = cfg
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)

	for _, tc := range []struct {
		name    string
		backend string
		scheme  string
		want    map[string]time.Duration
	}{
		{"http", plain.Listener.Addr().String(), "http", map[string]time.Duration{"processing": upDelay + downDelay, "transfer": 0, "connect": 0}},
		{"https", tlsSrv.Listener.Addr().String(), "https", map[string]time.Duration{"tls": upDelay + downDelay, "processing": upDelay + downDelay, "transfer": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			direct := startDelayProxy(t, tc.backend, 0, 0)
			slow := startDelayProxy(t, tc.backend, upDelay, downDelay)
			m := Module{Prober: "http", HTTP: HTTPModule{TLSConfig: TLSConfig{CAFile: ca, ServerName: "127.0.0.1"}, EnableHTTP2: boolPtr(false)}}
			injectedWithin(t, tc.scheme+"://"+direct.addr()+"/slowbody", tc.scheme+"://"+slow.addr()+"/slowbody", m, "probe_http_duration_seconds", tc.want)
		})
	}
}

// TestTCPPhasesUnderDelay checks the tcp prober's tls and query_response phases under an
// injected delay: the handshake crosses the relay once each way; the script waits for the
// banner (down), then sends a PING (up) and waits for the PONG (down).
func TestTCPPhasesUnderDelay(t *testing.T) {
	cfg, ca := ecdsaTLS(t)
	backend := lineServer(t, cfg, true)
	direct := startDelayProxy(t, backend, 0, 0)
	slow := startDelayProxy(t, backend, upDelay, downDelay)
	m := Module{Prober: "tcp", TCP: TCPModule{TLS: true, TLSConfig: TLSConfig{CAFile: ca, ServerName: "127.0.0.1"},
		QueryResponse: []QueryResponse{{Expect: "^220", Send: "PING a"}, {Expect: "^PONG a"}}}}
	// The TLS server's banner is written after its handshake, so it waits on the client's
	// Finished (up) before crossing down.
	injectedWithin(t, direct.addr(), slow.addr(), m, "probe_tcp_duration_seconds", map[string]time.Duration{
		"connect":        0,
		"tls":            upDelay + downDelay,
		"query_response": upDelay + downDelay + upDelay + downDelay,
	})
}

// ecdsaTLS makes a P-256 certificate for 127.0.0.1 and its CA file. The phase tests use it rather
// than httptest's RSA-2048 one: an RSA signature is milliseconds of CPU under -race, which a busy
// machine stretches by more than the tolerance, while P-256's assembly is tens of microseconds,
// so the tls phase is the wire's time and the delay injected on it shows.
func ecdsaTLS(t testing.TB) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, path
}
