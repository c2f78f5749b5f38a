package notify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// testCert makes a self-signed certificate for localhost and 127.0.0.1 and returns it with the
// path of its PEM file, for ca_file.
func testCert(t testing.TB) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sage test SMTP"},
		DNSNames:              []string{"localhost", "mail.test"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, path
}

// received is one mail the test server accepted.
type received struct {
	From string
	To   []string
	User string // authenticated as
	TLS  bool
	Data []byte
}

// smtpServer is a real SMTP server (emersion/go-smtp) in the test process.
type smtpServer struct {
	t      testing.TB
	srv    *smtp.Server
	ln     net.Listener
	Addr   string
	gate   *gateListener // resets connections while the server is "down"
	CAFile string

	mode  string            // starttls (offered), tls (implicit), plain (no TLS at all)
	users map[string]string // username -> password; empty: no AUTH offered
	mechs []string          // AUTH mechanisms offered

	mu       sync.Mutex
	mails    []received
	reject   map[string]*smtp.SMTPError // RCPT TO address -> reply
	delivery chan received
}

type smtpOptions struct {
	mode   string
	users  map[string]string
	mechs  []string
	addr   string // listen here (to come back on the same port); default 127.0.0.1:0
	cert   *tls.Certificate
	caFile string
}

func newSMTPServer(t testing.TB, o smtpOptions) *smtpServer {
	t.Helper()
	s := &smtpServer{t: t, mode: o.mode, users: o.users, mechs: o.mechs, reject: map[string]*smtp.SMTPError{},
		delivery: make(chan received, 1000)}
	if s.mode == "" {
		s.mode = "starttls"
	}
	if len(s.mechs) == 0 {
		s.mechs = []string{sasl.Plain}
	}
	var cert tls.Certificate
	if o.cert != nil {
		cert, s.CAFile = *o.cert, o.caFile
	} else {
		cert, s.CAFile = testCert(t)
	}
	s.start(o.addr, cert)
	return s
}

func (s *smtpServer) start(addr string, cert tls.Certificate) {
	s.t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.gate = &gateListener{Listener: raw}
	var ln net.Listener = s.gate
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &smtpSession{s: s, tls: isTLS, conn: c}, nil
	}))
	srv.Domain = "mail.test"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = slogLogger{}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	switch s.mode {
	case "starttls":
		srv.TLSConfig = tc
	case "tls":
		ln = tls.NewListener(ln, tc)
	}
	s.srv, s.ln, s.Addr = srv, ln, ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	s.t.Cleanup(func() { _ = srv.Close() })
}

// stop takes the server down: from now on every connection is reset as soon as it is accepted,
// as a mail relay with no backend does. The listening socket itself stays open: a closed port is
// soon taken by another test's outgoing connection (listeners and clients share the ephemeral
// range), and the server could then never come back on it.
func (s *smtpServer) stop() { s.gate.down.Store(true) }

// restart brings the server back on the same address.
func (s *smtpServer) restart(tls.Certificate) { s.gate.down.Store(false) }

// gateListener resets connections while down.
type gateListener struct {
	net.Listener
	down atomic.Bool
}

func (g *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil || !g.down.Load() {
			return c, err
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, not FIN: the client sees the connection refused outright
		}
		_ = c.Close()
	}
}

func (s *smtpServer) host() string { h, _, _ := net.SplitHostPort(s.Addr); return h }
func (s *smtpServer) port() int    { _, p, _ := net.SplitHostPort(s.Addr); return atoi(p) }

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func (s *smtpServer) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.mails...)
}

// messageIDs counts received mails by Message-ID.
func (s *smtpServer) messageIDs(t testing.TB) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range s.received() {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("received mail does not parse: %v", err)
		}
		out[msg.Header.Get("Message-ID")]++
	}
	return out
}

type slogLogger struct{}

func (slogLogger) Printf(format string, v ...any) {}
func (slogLogger) Println(v ...any)               {}

type smtpSession struct {
	s    *smtpServer
	conn *smtp.Conn
	tls  bool
	user string
	from string
	to   []string
}

func (ss *smtpSession) AuthMechanisms() []string {
	if len(ss.s.users) == 0 {
		return nil
	}
	return ss.s.mechs
}

func (ss *smtpSession) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if want, ok := ss.s.users[user]; !ok || want != pass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authentication failed"}
		}
		ss.user = user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, errors.New("unsupported mechanism")
}

// loginServer is the server side of AUTH LOGIN, which go-sasl no longer provides.
type loginServer struct {
	check func(user, pass string) error
	step  int
	user  string
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		if len(resp) > 0 { // initial response carries the user name
			l.user = string(resp)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(resp)
		return []byte("Password:"), false, nil
	case 3:
		return nil, true, l.check(l.user, string(resp))
	}
	return nil, false, errors.New("unexpected response")
}

func (ss *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if len(ss.s.users) > 0 && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	rej := ss.s.reject[to]
	ss.s.mu.Unlock()
	if rej != nil {
		return rej
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := received{From: ss.from, To: ss.to, User: ss.user, TLS: ss.tls, Data: b}
	if _, isTLS := ss.conn.TLSConnectionState(); isTLS {
		m.TLS = true
	}
	ss.s.mu.Lock()
	ss.s.mails = append(ss.s.mails, m)
	ss.s.mu.Unlock()
	ss.s.delivery <- m
	return nil
}

func (ss *smtpSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *smtpSession) Logout() error { return nil }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// sampleIncident is a firing disk-space incident with everything filled in.
func sampleIncident() Incident {
	return Incident{
		ID:          "0190a0b0-1111-7000-8000-000000000001",
		Title:       "HostFilesystemSpaceLow /var",
		Client:      "acme",
		Site:        "London",
		Host:        "db1",
		Alert:       "HostFilesystemSpaceLow",
		Severity:    "critical",
		Status:      StatusFiring,
		Summary:     "Filesystem /var on db1 is 93% full",
		Description: "Less than 7% of /var is free.\nAt the current rate it fills in 3 hours.",
		Value:       "93%",
		Watermark:   "90%",
		StartsAt:    time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC),
		Labels:      map[string]string{"alertname": "HostFilesystemSpaceLow", "client": "acme", "host": "db1", "mountpoint": "/var", "severity": "critical"},
		Annotations: map[string]string{"summary": "Filesystem /var on db1 is 93% full"},
		RunbookURL:  "https://sage.example.com/runbooks/HostFilesystemSpaceLow",
		IncidentURL: "https://sage.example.com/incidents/0190a0b0-1111-7000-8000-000000000001",
		AckURL:      "https://sage.example.com/a/Xk3d9Qe7",
		ActionPlan: []string{
			"Confirm with df -h /var on the host.",
			"Find the largest directories: du -xh /var | sort -h | tail.",
			"Rotate or compress old logs under /var/log <not> the database files.",
		},
		Step: 1,
		Tier: "L1",
	}
}
