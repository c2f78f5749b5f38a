package hub

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serversage/sage/internal/store/storetest"
)

// cutProxy forwards loopback TCP connections to a target until it is cut: then it drops every
// connection it carries and closes new ones at once, as a database host that went away does
// from the client's side (a refused or reset connection), without touching the shared server.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *cutProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *cutProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, up) {
		c.Close()
		up.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

// The state database lost while the hub runs: requests that need it fail with 503 (never a
// 500, a 401 or a hang), metrics queries with API tokens included; /readyz says so; and the hub
// recovers by itself when the database is back.
func TestPostgresLostAndRecovered(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	th := startHub(t, testConfig(t, u.String(), true))

	enrol := func() int {
		code, _ := th.do(t, "POST", "/api/v1/enrol", bearer(testToken), enrolBody("m-lost", "lost1", ""))
		return code
	}
	if code := enrol(); code != http.StatusCreated {
		t.Fatalf("enrol with the database up: %d", code)
	}
	const q = "/prometheus/api/v1/query?query=1%2B1"
	if code, body := th.do(t, "GET", q, bearer(th.apiToken), ""); code != 200 {
		t.Fatalf("query with the database up: %d %s", code, body)
	}

	proxy.setCut(true)
	checks := []struct {
		name   string
		method string
		path   string
		header http.Header
		body   string
	}{
		{"enrolment", "POST", "/api/v1/enrol", bearer(testToken), enrolBody("m-lost", "lost1", "")},
		{"query with an API token", "GET", q, bearer(th.apiToken), ""},
		{"readiness", "GET", "/readyz", nil, ""},
	}
	for _, c := range checks {
		// The pool may hold a connection that only fails on use; database/sql retries with a
		// new one, which the proxy refuses: the first answer is already the outage's.
		code, body := th.do(t, c.method, c.path, c.header, c.body)
		if code != http.StatusServiceUnavailable {
			t.Errorf("%s with the database lost: %d %s, want 503", c.name, code, body)
		}
		if strings.Contains(body, "127.0.0.1") || strings.Contains(body, "postgres://") {
			t.Errorf("%s: the 503 body discloses the database: %s", c.name, body)
		}
	}
	if code, _ := th.do(t, "GET", "/healthz", nil, ""); code != 200 {
		t.Errorf("liveness with the database lost: %d, want 200 (the process is fine)", code)
	}

	proxy.setCut(false)
	deadline := time.Now().Add(30 * time.Second)
	for enrol() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the hub did not recover within 30 s of the database coming back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, _ := th.do(t, "GET", q, bearer(th.apiToken), ""); code != 200 {
		t.Errorf("query after recovery: %d", code)
	}
	if code, _ := th.do(t, "GET", "/readyz", nil, ""); code != 200 {
		t.Errorf("readiness after recovery: %d", code)
	}
}
