package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineServer speaks a small line protocol: a "220 ready" banner, then "PONG <arg>" for each
// "PING <arg>" and a TLS upgrade after "STARTTLS" (when cfg is set). With tlsFirst the
// listener is TLS from the start.
func lineServer(t testing.TB, cfg *tls.Config, tlsFirst bool) string {
	t.Helper()
	var ln net.Listener
	var err error
	if tlsFirst {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", cfg)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				serveLines(c, cfg)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

func serveLines(c net.Conn, cfg *tls.Config) {
	c.Write([]byte("220 ready\n"))
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "PING "):
			c.Write([]byte("PONG " + strings.TrimPrefix(line, "PING ") + "\n"))
		case line == "STARTTLS" && cfg != nil:
			c.Write([]byte("220 go ahead\n"))
			tc := tls.Server(c, cfg)
			if tc.Handshake() != nil {
				return
			}
			serveLines(tc, nil)
			return
		case line == "QUIT":
			return
		}
	}
}

// testTLS borrows httptest's certificate for a TLS server and a CA file for the client.
func testTLS(t testing.TB) (*tls.Config, string) {
	t.Helper()
	srv := httptest.NewTLSServer(nil)
	t.Cleanup(srv.Close)
	return srv.TLS.Clone(), writeCA(t, srv)
}

func TestTCPProbe(t *testing.T) {
	cfg, ca := testTLS(t)
	plain := lineServer(t, cfg, false)
	tlsAddr := lineServer(t, cfg, true)
	notAfter := float64(0)
	{
		c, err := tls.Dial("tcp", tlsAddr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		notAfter = float64(c.ConnectionState().PeerCertificates[0].NotAfter.Unix())
		c.Close()
	}
	silent := silentServer(t)

	tests := []struct {
		name    string
		target  string
		tcp     TCPModule
		timeout time.Duration
		ok      bool
		reason  Reason
		regex   float64
		expiry  bool
	}{
		{name: "connect", target: plain, ok: true},
		{name: "refused", target: closedAddr(t), reason: ReasonConnect},
		{name: "unresolvable", target: "no-such-host.invalid:80", reason: ReasonResolve},
		{name: "no port", target: "127.0.0.1", reason: ReasonConfig},
		{name: "bad port", target: "127.0.0.1:http2x", reason: ReasonConfig},
		{name: "banner", target: plain, tcp: TCPModule{QueryResponse: []QueryResponse{{Expect: "^220 "}}}, ok: true},
		{name: "exchange with capture", target: plain, ok: true, tcp: TCPModule{QueryResponse: []QueryResponse{
			{Expect: "^220 (\\w+)", Send: "PING ${1}"}, {Expect: "^PONG ready$"}, {Send: "QUIT"}}}},
		{name: "banner mismatch", target: plain, tcp: TCPModule{QueryResponse: []QueryResponse{{Expect: "^SSH-"}}},
			timeout: 300 * time.Millisecond, reason: ReasonTimeout},
		{name: "answer mismatch at close", target: plain, tcp: TCPModule{QueryResponse: []QueryResponse{
			{Send: "QUIT"}, {Expect: "^PONG"}}}, reason: ReasonContent, regex: 1},
		{name: "tls", target: tlsAddr, tcp: TCPModule{TLS: true, TLSConfig: TLSConfig{CAFile: ca}, QueryResponse: []QueryResponse{{Expect: "^220"}}}, ok: true, expiry: true},
		{name: "tls untrusted", target: tlsAddr, tcp: TCPModule{TLS: true}, reason: ReasonTLS},
		{name: "tls to plain", target: plain, tcp: TCPModule{TLS: true, TLSConfig: TLSConfig{CAFile: ca}}, reason: ReasonTLS},
		{name: "starttls", target: plain, ok: true, expiry: true, tcp: TCPModule{TLSConfig: TLSConfig{CAFile: ca}, QueryResponse: []QueryResponse{
			{Expect: "^220 ready", Send: "STARTTLS"}, {Expect: "^220 go ahead", StartTLS: true}, {Expect: "^220 ready", Send: "PING x"}, {Expect: "^PONG x"}}}},
		{name: "starttls untrusted", target: plain, reason: ReasonTLS, tcp: TCPModule{QueryResponse: []QueryResponse{
			{Expect: "^220 ready", Send: "STARTTLS"}, {Expect: "^220 go ahead", StartTLS: true}}}},
		{name: "silent server", target: silent, tcp: TCPModule{QueryResponse: []QueryResponse{{Expect: "."}}}, timeout: 300 * time.Millisecond, reason: ReasonTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			start := time.Now()
			r := runModule(t, tc.target, Module{Prober: "tcp", TCP: tc.tcp}, timeout)
			if took := time.Since(start); took > timeout+500*time.Millisecond {
				t.Errorf("took %v with a %v deadline", took, timeout)
			}
			if r.Success != tc.ok || r.Reason != tc.reason {
				t.Fatalf("success %v reason %q (%s), want %v %q", r.Success, r.Reason, r.Detail, tc.ok, tc.reason)
			}
			if got := mustSample(t, r, "probe_failed_due_to_regex"); got != tc.regex {
				t.Errorf("probe_failed_due_to_regex = %v, want %v", got, tc.regex)
			}
			if tc.ok {
				if mustSample(t, r, "probe_ip_protocol") != 4 {
					t.Error("probe_ip_protocol not 4")
				}
				if v := mustSample(t, r, "probe_tcp_duration_seconds", "phase", "connect"); v <= 0 || v > 1 {
					t.Errorf("connect phase %v", v)
				}
			}
			if tc.expiry {
				if got := mustSample(t, r, "probe_ssl_earliest_cert_expiry"); got != notAfter {
					t.Errorf("expiry %v, want %v", got, notAfter)
				}
				if mustSample(t, r, "probe_tls_version_info", "version", "TLS 1.3") != 1 {
					t.Error("no TLS version")
				}
			}
		})
	}
}

func TestTCPValidate(t *testing.T) {
	m := Module{Prober: "tcp", TCP: TCPModule{SourceIPAddress: "x", TLS: true, QueryResponse: []QueryResponse{{Expect: "ok"}, {Expect: "(", StartTLS: true}}}}
	errs := m.Validate("m")
	want := map[string]bool{"m.tcp.source_ip_address": true, "m.tcp.query_response[1].expect": true, "m.tcp.query_response[1].starttls": true}
	for _, e := range errs {
		delete(want, e.Field)
	}
	if len(want) > 0 {
		t.Fatalf("errors %v; missing %v", errs, want)
	}
	ok := Module{Prober: "tcp", TCP: TCPModule{QueryResponse: []QueryResponse{{Expect: "^220", Send: "QUIT"}}}}
	if errs := ok.Validate("m"); len(errs) > 0 {
		t.Fatalf("valid module refused: %v", errs)
	}
}

func FuzzSplitTarget(f *testing.F) {
	for _, s := range []string{"127.0.0.1:53", "[::1]:53", "::1", "[::1]", "host", "host:0", "host:65536", ":80", "a b:1", ""} {
		f.Add(s, "53")
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, target, def string) {
		host, port, err := splitTarget(target, def)
		if err != nil {
			return
		}
		if host == "" || port == "" {
			t.Fatalf("%q: empty host or port accepted", target)
		}
		if _, _, err := net.SplitHostPort(net.JoinHostPort(host, port)); err != nil {
			t.Fatalf("%q: result does not join: %v", target, err)
		}
	})
}

// FuzzQueryResponse plays a script against arbitrary server output: it must end (with the
// connection's end) and never panic, whatever the peer sends and the send template holds.
func FuzzQueryResponse(f *testing.F) {
	f.Add([]byte("220 ready\nPONG x\n"), "^220 (\\w+)", "PING ${1}")
	f.Add([]byte("no newline at all"), ".", "$0$1${99}")
	f.Add([]byte("\n\n\n"), "^$", "")
	f.Fuzz(func(t *testing.T, server []byte, expect, send string) {
		if _, err := compileRegexp(expect); err != nil {
			return
		}
		client, peer := net.Pipe()
		go func() {
			peer.Write(server)
			peer.Close()
		}()
		go func() { // the pipe is synchronous: drain what the script sends
			buf := make([]byte, 512)
			for {
				if _, err := peer.Read(buf); err != nil {
					return
				}
			}
		}()
		client.SetDeadline(time.Now().Add(2 * time.Second))
		q := queryRunner{steps: []QueryResponse{{Expect: expect, Send: send}, {Expect: expect}}, logger: tcpDiscardLogger()}
		_ = q.run(client)
		client.Close()
	})
}

func BenchmarkTCPProbe(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	b.Cleanup(func() { ln.Close() })
	m := Module{Prober: "tcp"}
	target := ln.Addr().String()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if r := Run(context.Background(), target, &m, 5*time.Second, nil); !r.Success {
			b.Fatalf("failed: %s %s", r.Reason, r.Detail)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "probes/s")
}

func tcpDiscardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
