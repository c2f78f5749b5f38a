package main

// The alerting path end to end with the real binaries: a `sage hub` process configured by file,
// a `sage agent` enrolled with it watching a process the test owns, a STARTTLS SMTP server with
// AUTH (emersion/go-smtp) and an HTTP server speaking Twilio's Messages API in this process, and
// for the receiver path Debian's prometheus and prometheus-alertmanager.
//
// The breach is the shipped ProcessGroupDown rule's expression, unchanged, under another name
// (E2EProcessGroupDown) with `for: 2s`, loaded from the hub's rules_dir with a copy of the
// shipped runbook. A watermark override cannot do this: overrides change the threshold, not the
// `for`, and the shipped rule waits a minute, which would make each test last minutes. The
// shipped ProcessGroupDown is switched off for the test's client by a watermark override of 0
// (through the API), so that a slow run cannot add a second incident for the same breach.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/notify"
	"github.com/serversage/sage/internal/rulepack"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/testenv"
)

const (
	e2eAlert      = "E2EProcessGroupDown"
	e2eGroup      = "e2e-service"
	e2eHost       = "e2e-alert-host"
	e2eClient     = "acme"
	e2eTwilioSID  = "AC0123456789abcdef0123456789abcdef"
	e2eTwilioFrom = "+15005550006"
	// e2eWait bounds every wait for something the hub should do; the waits end as soon as it
	// happens, so this only matters on a failure or a very slow machine.
	e2eWait = 60 * time.Second
)

// within polls ok until it holds, failing the test after d.
func within(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopwatch logs how long each phase of a test took from its start, for -v runs and failures.
func stopwatch(t *testing.T) func(phase string) {
	start := time.Now()
	return func(phase string) { t.Helper(); t.Logf("%5.1fs %s", time.Since(start).Seconds(), phase) }
}

// selfSignedCert makes a certificate for 127.0.0.1 that is its own CA, and writes it as PEM for
// the hub's ca_file.
func selfSignedCert(t *testing.T, dir string) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "sage e2e SMTP"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "smtp-ca.pem")
	if err := os.WriteFile(path, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, path
}

// e2eMail is one mail the test's SMTP server accepted, decoded.
type e2eMail struct {
	to      []string
	tls     bool   // received after STARTTLS
	user    string // authenticated as
	subject string
	text    string // the text/plain part
	html    string // the text/html part
}

// e2eMailbox is an SMTP server that offers STARTTLS, and AUTH PLAIN only once TLS is up (go-smtp's
// default), and accepts mail only from an authenticated client.
type e2eMailbox struct {
	addr, caFile, password string

	mu    sync.Mutex
	mails []e2eMail
	errs  []string
}

func newE2EMailbox(t *testing.T, dir string) *e2eMailbox {
	t.Helper()
	cert, caFile := selfSignedCert(t, dir)
	box := &e2eMailbox{caFile: caFile, password: "smtp-secret-" + fmt.Sprint(time.Now().UnixNano())}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &e2eSMTPSession{box: box, tls: isTLS}, nil
	}))
	srv.Domain = "mail.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	box.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return box
}

type e2eSMTPSession struct {
	box  *e2eMailbox
	tls  bool
	user string
	to   []string
}

func (s *e2eSMTPSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *e2eSMTPSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "sage" || pass != s.box.password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authentication failed"}
		}
		s.user = user
		return nil
	}), nil
}

func (s *e2eSMTPSession) Mail(string, *smtp.MailOptions) error {
	if s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	return nil
}

func (s *e2eSMTPSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *e2eSMTPSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := parseE2EMail(raw)
	s.box.mu.Lock()
	defer s.box.mu.Unlock()
	if err != nil {
		s.box.errs = append(s.box.errs, err.Error())
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: err.Error()}
	}
	m.to, m.tls, m.user = append([]string(nil), s.to...), s.tls, s.user
	s.box.mails = append(s.box.mails, m)
	return nil
}

func (s *e2eSMTPSession) Reset()        { s.to = nil }
func (s *e2eSMTPSession) Logout() error { return nil }

// parseE2EMail reads a mail as a client would: the subject decoded, each part of the
// multipart/alternative body decoded from its transfer encoding.
func parseE2EMail(raw []byte) (e2eMail, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return e2eMail{}, fmt.Errorf("mail does not parse: %w", err)
	}
	var m e2eMail
	if m.subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil {
		return e2eMail{}, fmt.Errorf("subject: %w", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		return e2eMail{}, fmt.Errorf("content type %q is not multipart/alternative: %v", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart() // decodes quoted-printable
		if err == io.EOF {
			break
		}
		if err != nil {
			return e2eMail{}, fmt.Errorf("body: %w", err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return e2eMail{}, fmt.Errorf("body part: %w", err)
		}
		switch pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); pt {
		case "text/plain":
			m.text = string(b)
		case "text/html":
			m.html = string(b)
		}
	}
	if m.text == "" || m.html == "" {
		return e2eMail{}, fmt.Errorf("a text and an HTML part are expected")
	}
	return m, nil
}

// about returns the mails to rcpt about the incident id whose subject starts with [status
// (FIRING, RESOLVED; "" for all).
func (b *e2eMailbox) about(rcpt, incidentID, status string) []e2eMail {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []e2eMail
	for _, m := range b.mails {
		if strings.Contains(m.text, "/incidents/"+incidentID) && strings.HasPrefix(m.subject, "["+status) && slices.Contains(m.to, rcpt) {
			out = append(out, m)
		}
	}
	return out
}

func (b *e2eMailbox) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

// twilioFake answers Twilio's Messages API as Twilio does: POST
// /2010-04-01/Accounts/{AccountSid}/Messages.json, form-encoded To, From and Body, HTTP basic
// authentication with the account SID and auth token; 201 and the Message resource.
type twilioFake struct {
	url, token string

	mu   sync.Mutex
	msgs []smsMsg
	errs []string
}

type smsMsg struct{ to, from, body string }

func newTwilioFake(t *testing.T) *twilioFake {
	t.Helper()
	f := &twilioFake{token: fmt.Sprintf("twilio-token-%d", time.Now().UnixNano())}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(status, code int, msg string) {
			f.mu.Lock()
			f.errs = append(f.errs, fmt.Sprintf("%s %s: %s", r.Method, r.URL.Path, msg))
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg, "more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code), "status": status})
		}
		if r.Method != http.MethodPost || r.URL.Path != "/2010-04-01/Accounts/"+e2eTwilioSID+"/Messages.json" {
			fail(http.StatusNotFound, 20404, "The requested resource was not found")
			return
		}
		if u, p, ok := r.BasicAuth(); !ok || u != e2eTwilioSID || p != f.token {
			fail(http.StatusUnauthorized, 20003, "Authenticate")
			return
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
			fail(http.StatusBadRequest, 21000, "form-encoded parameters expected, got "+r.Header.Get("Content-Type"))
			return
		}
		if err := r.ParseForm(); err != nil {
			fail(http.StatusBadRequest, 21000, err.Error())
			return
		}
		m := smsMsg{to: r.PostForm.Get("To"), from: r.PostForm.Get("From"), body: r.PostForm.Get("Body")}
		switch {
		case m.to == "":
			fail(http.StatusBadRequest, 21604, "A 'To' phone number is required.")
			return
		case m.from == "":
			fail(http.StatusBadRequest, 21603, "A 'From' phone number is required.")
			return
		case m.body == "":
			fail(http.StatusBadRequest, 21602, "Message body is required.")
			return
		}
		f.mu.Lock()
		f.msgs = append(f.msgs, m)
		n := len(f.msgs)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"sid": fmt.Sprintf("SM%032x", n), "status": "queued", "to": m.to, "from": m.from, "body": m.body})
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *twilioFake) problems() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.errs...)
}

func (f *twilioFake) to(number string) []smsMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []smsMsg
	for _, m := range f.msgs {
		if m.to == number {
			out = append(out, m)
		}
	}
	return out
}

// alertingHub is a `sage hub` process with alerting configured, and what the test needs to
// drive it: its API with an admin token, the mail and SMS servers it sends to, and its state
// database opened from the test (SQLite in WAL mode allows it) for what the API does not offer.
type alertingHub struct {
	bin, dir, cfgFile, addr string
	cmd                     *exec.Cmd
	out                     *testenv.Output
	api                     hubClient
	mail                    *e2eMailbox
	sms                     *twilioFake
	db                      *store.DB
	clientID                string
}

// e2eRuleFile is the shipped ProcessGroupDown rule under another name with a short `for`, and
// the shipped runbook under that name.
func e2eRuleFile(t *testing.T) (rules, runbook []byte) {
	t.Helper()
	pack, err := rulepack.Load()
	if err != nil {
		t.Fatal(err)
	}
	r, ok := pack.Rule("ProcessGroupDown")
	if !ok {
		t.Fatal("the shipped pack has no ProcessGroupDown")
	}
	rename := strings.NewReplacer(`alert="ProcessGroupDown"`, `alert="`+e2eAlert+`"`, "/runbooks/ProcessGroupDown", "/runbooks/"+e2eAlert)
	ann := map[string]string{}
	for k, v := range r.Annotations {
		ann[k] = rename.Replace(v)
	}
	type rule struct {
		Alert       string            `yaml:"alert"`
		Expr        string            `yaml:"expr"`
		For         string            `yaml:"for"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	type group struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	}
	expr := rename.Replace(r.Expr)
	if expr == r.Expr {
		t.Fatalf("ProcessGroupDown's expression no longer names its watermark as expected:\n%s", r.Expr)
	}
	rules, err = yaml.Marshal(map[string][]group{"groups": {{Name: "e2e", Rules: []rule{{
		Alert: e2eAlert, Expr: expr, For: "2s", Labels: r.Labels, Annotations: ann,
	}}}}})
	if err != nil {
		t.Fatal(err)
	}
	runbook = []byte(strings.Replace(r.Runbook.Markdown, "# ProcessGroupDown", "# "+e2eAlert, 1))
	return rules, runbook
}

// startAlertingHub writes the hub's configuration (SQLite and the TSDB in a temporary
// directory, 1 s scrapes and evaluations, SMTP with STARTTLS and AUTH, SMS through Twilio's API
// at the test's server) and runs `sage hub`.
func startAlertingHub(t *testing.T) *alertingHub {
	t.Helper()
	bin := testenv.BuildSage(t)
	t.Setenv("SAGE_ADMIN_PASSWORD", "correct horse battery staple")
	dir := t.TempDir()
	h := &alertingHub{bin: bin, dir: dir, addr: testenv.FreeAddr(t), cfgFile: filepath.Join(dir, "hub.yml")}
	h.mail = newE2EMailbox(t, dir)
	h.sms = newTwilioFake(t)

	rules, runbook := e2eRuleFile(t)
	if err := os.MkdirAll(filepath.Join(dir, "rules"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		"enrol.token":               []byte("e2e-alerting-0123456789abcdefghijklmnopqrstuvwxyz\n"),
		"smtp.password":             []byte(h.mail.password + "\n"),
		"twilio.token":              []byte(h.sms.token + "\n"),
		"rules/e2e.yml":             rules,
		"rules/" + e2eAlert + ".md": runbook,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	smtpHost, smtpPort, _ := net.SplitHostPort(h.mail.addr)
	cfg := fmt.Sprintf(`listen: %[1]s
data_dir: data
metrics:
  scrape_interval: 1s
  scrape_timeout: 1s
enrolment:
  - token_file: enrol.token
    auto_approve: true
    client: %[2]s
alerting:
  external_url: http://%[1]s
  evaluation_interval: 1s
  rules_dir: rules
  retry_min: 200ms
  retry_max: 1s
  notify:
    smtp:
      host: %[3]s
      port: %[4]s
      mode: starttls
      username: sage
      password_file: smtp.password
      ca_file: %[5]s
      from: "ServerSage <sage@example.net>"
    sms:
      provider: twilio
      twilio:
        account_sid: %[6]s
        auth_token_file: twilio.token
        from: "%[7]s"
        base_url: %[8]s
`, h.addr, e2eClient, smtpHost, smtpPort, h.mail.caFile, e2eTwilioSID, e2eTwilioFrom, h.sms.url)
	if err := os.WriteFile(h.cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	h.start(t)
	h.api = hubClient{url: "http://" + h.addr, apiToken: createToken(t, bin, "--config", h.cfgFile)}

	db, err := store.Open(context.Background(), filepath.Join(dir, "data", "sage.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h.db = db

	var clients struct{ Items []struct{ ID, Slug string } }
	h.call(t, "GET", "/api/v1/clients", nil, http.StatusOK, &clients)
	for _, c := range clients.Items {
		if c.Slug == e2eClient {
			h.clientID = c.ID
		}
	}
	if h.clientID == "" {
		t.Fatalf("the hub did not create the enrolment's client %q: %+v", e2eClient, clients)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mail problems: %v; SMS API problems: %v", h.mail.problems(), h.sms.problems())
		}
	})
	return h
}

// start runs (or re-runs, on the same configuration and data) the hub until it is ready.
func (h *alertingHub) start(t *testing.T) {
	t.Helper()
	h.cmd, h.out = testenv.Start(t, "http://"+h.addr+"/readyz", h.bin, "hub", "--config", h.cfgFile)
}

// call sends a JSON request with the admin's token and decodes the answer into out (if not nil),
// failing the test on any other status than want.
func (h *alertingHub) call(t *testing.T, method, path string, body any, want int, out any) {
	t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	code, resp := h.api.do(t, method, path, http.Header{"Authorization": {"Bearer " + h.api.apiToken}, "Content-Type": {"application/json"}}, b)
	if code != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, code, resp, want)
	}
	if out != nil {
		if err := json.Unmarshal(resp, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, resp)
		}
	}
}

// e2ePerson is a user with contact details, on call for a tier.
type e2ePerson struct {
	name, tier, email, phone string
	channels                 []string
	id                       string
}

// addPeople creates the users, their contact details and one rota per tier with that user always
// on call. The hub has no user API yet, so the users are written into its database from the
// test, as the other packages' tests do, with a bcrypt hash of the lowest cost: at the
// production cost one hash takes over ten seconds in a -race test binary on a busy machine, and
// these people never log in (the acknowledgement link is their credential). Contacts and rotas
// go through the on-call API.
func (h *alertingHub) addPeople(t *testing.T, people ...*e2ePerson) {
	t.Helper()
	ctx := context.Background()
	hash, err := bcrypt.GenerateFromPassword([]byte("a long enough password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	a := auth.New(h.db)
	for _, p := range people {
		p.id = store.NewID()
		now := store.Millis(time.Now())
		if _, err := h.db.ExecContext(ctx, `INSERT INTO users (id, username, username_fold, display_name, role, password_hash, created_at, updated_at)
			VALUES ($1, $2, $3, '', $4, $5, $6, $6)`, p.id, p.name, strings.ToLower(p.name), string(auth.RoleEngineer), string(hash), now); err != nil {
			t.Fatalf("creating user %s: %v", p.name, err)
		}
		if u, err := a.GetUser(ctx, p.id); err != nil || u.Username != p.name {
			t.Fatalf("user %s as the hub reads it: %+v %v", p.name, u, err)
		}
		h.call(t, "PUT", "/api/v1/contacts/"+p.id, map[string]any{"email": p.email, "phone": p.phone, "channels": p.channels}, http.StatusOK, nil)
		h.call(t, "POST", "/api/v1/rotas", map[string]any{
			"name": p.tier + " " + p.name, "tier": p.tier, "client_id": h.clientID, "time_zone": "UTC", "handover": "00:00",
			"shift_length": "24h", "start_date": time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly), "members": []string{p.id},
		}, http.StatusCreated, nil)
	}
}

// addPolicy gives the client's critical incidents the steps: notify a tier, or wait a duration.
func (h *alertingHub) addPolicy(t *testing.T, steps ...map[string]any) {
	t.Helper()
	h.call(t, "POST", "/api/v1/policies", map[string]any{"name": "acme critical", "client_id": h.clientID, "severity": "critical", "steps": steps},
		http.StatusCreated, nil)
}

func notifyTier(tier string, channels ...string) map[string]any {
	return map[string]any{"kind": "notify_tier", "tier": tier, "channels": channels}
}

func waitStep(d string) map[string]any { return map[string]any{"kind": "wait", "wait": d} }

// watchedService starts the process the agent watches as the group e2eGroup: a sleep with an
// argument no other process has.
func watchedService(t *testing.T) (start func() *exec.Cmd, match string) {
	t.Helper()
	arg := fmt.Sprintf("86400.%d", time.Now().UnixNano()%1_000_000_000)
	start = func() *exec.Cmd {
		cmd := exec.Command("sleep", arg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	return start, "^sleep " + regexp.QuoteMeta(arg) + "$"
}

// startWatchingAgent runs `sage agent` watching the process group, enrolled with the hub through
// the enrolment token, and waits until the hub has scraped the group's process.
func (h *alertingHub) startWatchingAgent(t *testing.T, match string) {
	t.Helper()
	dir := t.TempDir()
	machineID := filepath.Join(dir, "machine-id")
	if err := os.WriteFile(machineID, []byte(fmt.Sprintf("alerting%x\n", time.Now().UnixNano())), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SAGE_MACHINE_ID_FILE", machineID)
	cfg := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("collectors:\n  process_groups:\n    - name: %s\n      match:\n        cmdline: '%s'\n", e2eGroup, match)), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	_, out := testenv.Start(t, "http://"+addr+"/healthz", h.bin, "agent", "--config", cfg, "--listen", addr,
		"--state-dir", filepath.Join(dir, "state"), "--hub", "http://"+h.addr, "--token-file", filepath.Join(h.dir, "enrol.token"),
		"--hostname", e2eHost)
	within(t, e2eWait, "the agent enrolled", func() bool { return strings.Contains(out.String(), "enrolled with the hub") })
	q := fmt.Sprintf(`sage_process_group_processes{client=%q,host=%q,group=%q}`, e2eClient, e2eHost, e2eGroup)
	within(t, e2eWait, "the hub scraped the watched process", func() bool {
		for _, v := range h.api.query(t, q) {
			return v == "1"
		}
		return false
	})
}

// switchOffShipped sets the shipped ProcessGroupDown's watermark to 0 for the client, through the
// overrides API: the test's rule covers the breach.
func (h *alertingHub) switchOffShipped(t *testing.T) {
	t.Helper()
	h.call(t, "POST", "/api/v1/overrides", map[string]any{"alert": "ProcessGroupDown", "scope": "client", "client_id": h.clientID,
		"value": 0, "comment": "the e2e test's " + e2eAlert + " covers this breach with a short for"}, http.StatusCreated, nil)
}

// e2eIncident is an incident as GET /api/v1/incidents returns it.
type e2eIncident struct {
	ID        string            `json:"id"`
	Source    string            `json:"source"`
	Alertname string            `json:"alertname"`
	Status    string            `json:"status"`
	AckedBy   string            `json:"acked_by"`
	Labels    map[string]string `json:"labels"`
}

type e2eEvent struct {
	At     time.Time      `json:"at"`
	Kind   string         `json:"kind"`
	Actor  string         `json:"actor"`
	Detail map[string]any `json:"detail"`
}

// openIncident waits for the open incident of alertname and returns it.
func (h *alertingHub) openIncident(t *testing.T, alertname string) e2eIncident {
	t.Helper()
	var found e2eIncident
	within(t, e2eWait, "an open incident for "+alertname, func() bool {
		var list struct{ Items []e2eIncident }
		h.call(t, "GET", "/api/v1/incidents?open=true", nil, http.StatusOK, &list)
		for _, in := range list.Items {
			if in.Alertname == alertname {
				found = in
				return true
			}
		}
		return false
	})
	return found
}

// incident returns an incident with its timeline and action plan.
func (h *alertingHub) incident(t *testing.T, id string) (e2eIncident, []e2eEvent, []string) {
	t.Helper()
	var r struct {
		Incident   e2eIncident
		Timeline   []e2eEvent
		ActionPlan []string `json:"action_plan"`
	}
	h.call(t, "GET", "/api/v1/incidents/"+id, nil, http.StatusOK, &r)
	return r.Incident, r.Timeline, r.ActionPlan
}

// notified returns the "notified" events of a timeline as "step/user/channel" -> times.
func notified(events []e2eEvent) map[string][]time.Time {
	out := map[string][]time.Time{}
	for _, e := range events {
		if e.Kind == "notified" {
			k := fmt.Sprintf("%v/%v/%v", e.Detail["step"], e.Detail["user"], e.Detail["channel"])
			out[k] = append(out[k], e.At)
		}
	}
	return out
}

// stampSlack: a "notified" event is stamped when its row is written, a few milliseconds after the
// escalation pass whose time the next wait is counted from, so two steps' events can be that much
// closer than the wait between them.
const stampSlack = 100 * time.Millisecond

var ackLink = regexp.MustCompile(`https?://[^\s"<>]+/ack/[A-Za-z0-9_-]+`)

// squash collapses runs of white space, so that text wrapped differently still compares equal.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

// A breach on a real agent becomes an incident; L1 gets a mail (over STARTTLS, authenticated)
// with the runbook's action plan and an acknowledgement link, and an SMS through the Twilio API
// with a link too; without an acknowledgement L2 gets a mail after the policy's wait; the link
// acknowledges (on POST, not GET) and nothing further is sent; the recovery resolves the incident
// and mails those told.
func TestAlertingBreachToAck(t *testing.T) {
	lap := stopwatch(t)
	h := startAlertingHub(t)
	lap("hub started")
	alice := &e2ePerson{name: "alice", tier: "L1", email: "alice@example.net", phone: "+15551230001", channels: []string{"email", "sms"}}
	bob := &e2ePerson{name: "bob", tier: "L2", email: "bob@example.net", channels: []string{"email"}}
	carol := &e2ePerson{name: "carol", tier: "L3", email: "carol@example.net", channels: []string{"email"}}
	h.addPeople(t, alice, bob, carol)
	h.addPolicy(t, notifyTier("L1", "email", "sms"), waitStep("3s"), notifyTier("L2", "email"), waitStep("4s"), notifyTier("L3", "email"))
	h.switchOffShipped(t)
	startService, match := watchedService(t)
	svc := startService()
	h.startWatchingAgent(t, match)
	lap("people, policy and the agent set up; the agent scraped")

	if err := svc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = svc.Wait()
	lap("the watched process killed")
	in := h.openIncident(t, e2eAlert)
	if in.Source != "rules" || in.Labels["host"] != e2eHost || in.Labels["group"] != e2eGroup || in.Status != "firing" {
		t.Errorf("incident: %+v", in)
	}

	// L1: a mail with the shipped runbook's action plan and a link, and an SMS with a link.
	within(t, e2eWait, "L1's mail", func() bool { return len(h.mail.about(alice.email, in.ID, "FIRING")) > 0 })
	lap("L1's mail")
	m := h.mail.about(alice.email, in.ID, "FIRING")[0]
	if !m.tls || m.user != "sage" {
		t.Errorf("L1's mail came without STARTTLS or AUTH: tls %v, user %q", m.tls, m.user)
	}
	pack, err := rulepack.Load()
	if err != nil {
		t.Fatal(err)
	}
	shipped, _ := pack.Rule("ProcessGroupDown")
	if len(shipped.Runbook.ActionPlan) < 3 {
		t.Fatalf("the shipped runbook's action plan: %q", shipped.Runbook.ActionPlan)
	}
	for i, step := range shipped.Runbook.ActionPlan {
		if !strings.Contains(squash(m.text), squash(step)) {
			t.Errorf("L1's mail lacks step %d of the action plan, %q:\n%s", i+1, step, m.text)
		}
	}
	if !strings.Contains(m.subject, e2eAlert) || !strings.Contains(m.subject, e2eGroup) {
		t.Errorf("L1's mail subject: %q", m.subject)
	}
	link := ackLink.FindString(m.text)
	if !strings.HasPrefix(link, "http://"+h.addr+"/ack/") || !strings.Contains(m.html, link) {
		t.Fatalf("L1's mail has no acknowledgement link on the hub (%q):\n%s", link, m.text)
	}
	within(t, e2eWait, "L1's SMS", func() bool { return len(h.sms.to(alice.phone)) > 0 })
	sms := h.sms.to(alice.phone)[0]
	smsLink := ackLink.FindString(sms.body)
	if sms.from != e2eTwilioFrom || !strings.HasPrefix(sms.body, "FIRING CRITICAL") || !strings.HasPrefix(smsLink, "http://"+h.addr+"/ack/") || smsLink == link {
		t.Errorf("L1's SMS (want From %s, FIRING CRITICAL, an acknowledgement link of its own): %+v", e2eTwilioFrom, sms)
	}

	// No acknowledgement: L2 is mailed after the policy's 3 s wait.
	within(t, e2eWait, "L2's mail after the wait", func() bool { return len(h.mail.about(bob.email, in.ID, "FIRING")) > 0 })
	lap("L2's mail")
	if s := h.mail.about(bob.email, in.ID, "FIRING")[0].subject; !strings.Contains(s, "[L2]") {
		t.Errorf("L2's mail does not say it was escalated: %q", s)
	}
	_, events, plan := h.incident(t, in.ID)
	if len(plan) != len(shipped.Runbook.ActionPlan) {
		t.Errorf("the incident's action plan has %d steps, the runbook %d", len(plan), len(shipped.Runbook.ActionPlan))
	}
	sent := notified(events)
	l1, l2 := sent["1/alice/email"], sent["3/bob/email"]
	if len(l1) != 1 || len(l2) != 1 || len(sent["1/alice/sms"]) != 1 {
		t.Fatalf("notified events: %v", sent)
	}
	if gap := l2[0].Sub(l1[0]); gap < 3*time.Second-stampSlack {
		t.Errorf("L2 was notified %s after L1, before the policy's 3 s wait", gap)
	}

	// The link: a GET only shows the page (mail scanners fetch links); a POST acknowledges.
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "<form method=\"post\">") {
		t.Errorf("GET of the link: %d\n%s", resp.StatusCode, page)
	}
	if got, _, _ := h.incident(t, in.ID); got.Status != "firing" {
		t.Fatalf("a GET of the link changed the incident: %+v", got)
	}
	resp, err = http.Post(link, "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, _, _ := h.incident(t, in.ID); got.Status != "acknowledged" || got.AckedBy != alice.name {
		t.Fatalf("after POST of the link: %+v, want acknowledged by %s", got, alice.name)
	}

	lap("acknowledged by the link")
	// L3 was due 4 s after L2: past that (and a margin), nobody heard more of it.
	time.Sleep(time.Until(l2[0].Add(4*time.Second + 3*time.Second)))
	_, events, _ = h.incident(t, in.ID)
	sent = notified(events)
	if len(sent) != 3 {
		t.Errorf("after the acknowledgement the timeline has notifications %v, want only L1's two and L2's", sent)
	}
	for who, want := range map[string]int{alice.email: 1, bob.email: 1, carol.email: 0} {
		if got := len(h.mail.about(who, in.ID, "FIRING")); got != want {
			t.Errorf("%s got %d firing mails, want %d", who, got, want)
		}
	}
	if got := len(h.sms.to(alice.phone)); got != 1 {
		t.Errorf("L1 got %d SMS, want 1", got)
	}

	lap("nothing more sent")
	// The service comes back: the alert resolves, so does the incident, and those mailed hear it.
	startService()
	within(t, e2eWait, "the incident resolved", func() bool { got, _, _ := h.incident(t, in.ID); return got.Status == "resolved" })
	within(t, e2eWait, "resolution mails", func() bool {
		return len(h.mail.about(alice.email, in.ID, "RESOLVED")) == 1 && len(h.mail.about(bob.email, in.ID, "RESOLVED")) == 1
	})
	lap("resolved, and resolution mails")
	if got := len(h.mail.about(carol.email, in.ID, "")); got != 0 {
		t.Errorf("L3, never notified, got %d mails about the incident", got)
	}
	for what, secret := range map[string]string{"SMTP password": h.mail.password, "Twilio auth token": h.sms.token,
		"acknowledgement link": link[strings.LastIndex(link, "/")+1:]} {
		if strings.Contains(h.out.String(), secret) {
			t.Errorf("the hub logged the %s", what)
		}
	}
}

// kill -9 of the hub while an escalation waits between steps: after a restart on the same data
// the escalation resumes, L2 and L3 each get their step's mail once, and L1 is not mailed again.
func TestAlertingHubKill9DuringEscalation(t *testing.T) {
	lap := stopwatch(t)
	h := startAlertingHub(t)
	lap("hub started")
	alice := &e2ePerson{name: "alice", tier: "L1", email: "alice@example.net", channels: []string{"email"}}
	bob := &e2ePerson{name: "bob", tier: "L2", email: "bob@example.net", channels: []string{"email"}}
	carol := &e2ePerson{name: "carol", tier: "L3", email: "carol@example.net", channels: []string{"email"}}
	h.addPeople(t, alice, bob, carol)
	h.addPolicy(t, notifyTier("L1", "email"), waitStep("3s"), notifyTier("L2", "email"), waitStep("3s"), notifyTier("L3", "email"))
	h.switchOffShipped(t)
	startService, match := watchedService(t)
	svc := startService()
	h.startWatchingAgent(t, match)
	lap("people, policy and the agent set up; the agent scraped")

	if err := svc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = svc.Wait()
	lap("the watched process killed")
	in := h.openIncident(t, e2eAlert)
	within(t, e2eWait, "L1's mail", func() bool { return len(h.mail.about(alice.email, in.ID, "FIRING")) > 0 })
	// The SMTP server has the mail before the hub has its answer; a kill in between would send it
	// again after the restart, as any at-least-once delivery must. The test kills the hub once the
	// send is recorded, in the wait before L2.
	within(t, e2eWait, "L1's mail recorded as sent", func() bool {
		recs, err := notify.ListByIncident(context.Background(), h.db, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Recipient == alice.email && r.Status == "sent" {
				return true
			}
		}
		return false
	})
	if got, _, _ := h.incident(t, in.ID); got.Status != "firing" {
		t.Fatalf("before the kill: %+v", got)
	}
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = h.cmd.Wait()
	lap("L1 mailed; the hub killed")
	if n := len(h.mail.about(bob.email, in.ID, "FIRING")); n != 0 {
		t.Logf("L2 was mailed before the kill landed (%d); the restart must still not repeat it", n)
	}

	h.start(t)
	lap("the hub restarted")
	within(t, e2eWait, "L2's mail after the restart", func() bool { return len(h.mail.about(bob.email, in.ID, "FIRING")) > 0 })
	within(t, e2eWait, "L3's mail after the restart", func() bool { return len(h.mail.about(carol.email, in.ID, "FIRING")) > 0 })
	lap("L2's and L3's mails")
	// Everything queued is delivered before counting, so that a duplicate would be there to see.
	var recs []notify.Record
	within(t, e2eWait, "the outbox drained", func() bool {
		var err error
		if recs, err = notify.ListByIncident(context.Background(), h.db, in.ID); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Status != "sent" {
				return false
			}
		}
		return len(recs) >= 3
	})
	if len(recs) != 3 {
		t.Errorf("the outbox holds %d notifications of the incident, want one per step: %+v", len(recs), recs)
	}
	for who, want := range map[string]int{alice.email: 1, bob.email: 1, carol.email: 1} {
		if got := len(h.mail.about(who, in.ID, "FIRING")); got != want {
			t.Errorf("%s got %d firing mails, want %d", who, got, want)
		}
	}
	_, events, _ := h.incident(t, in.ID)
	sent := notified(events)
	for _, k := range []string{"1/alice/email", "3/bob/email", "5/carol/email"} {
		if len(sent[k]) != 1 {
			t.Errorf("step %s notified %d times, want once: %v", k, len(sent[k]), sent)
		}
	}
	if l2, l3 := sent["3/bob/email"], sent["5/carol/email"]; len(l2) == 1 && len(l3) == 1 && l3[0].Sub(l2[0]) < 3*time.Second-stampSlack {
		t.Errorf("L3 was notified %s after L2, before the policy's 3 s wait", l3[0].Sub(l2[0]))
	}
}

// An existing Prometheus and Alertmanager (Debian's) feed the hub: Prometheus scrapes an exporter
// and evaluates a rule, Alertmanager sends the alert to the hub's webhook receiver with an API
// token; the hub opens an incident and mails L1, and Alertmanager's resolved message resolves it.
func TestAlertmanagerReceiverPath(t *testing.T) {
	promBin := testenv.LookPath(t, "prometheus", "prometheus")
	amBin := testenv.Alertmanager(t)
	lap := stopwatch(t)
	h := startAlertingHub(t)
	lap("hub started")
	alice := &e2ePerson{name: "alice", tier: "L1", email: "alice@example.net", channels: []string{"email"}}
	h.addPeople(t, alice)
	h.addPolicy(t, notifyTier("L1", "email"))

	var level atomic.Int64
	level.Store(1)
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP e2e_level A level the test sets.\n# TYPE e2e_level gauge\ne2e_level %d\n", level.Load())
	}))
	t.Cleanup(exporter.Close)

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "hub.token")
	amAddr, promAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	files := map[string]string{
		"hub.token": h.api.apiToken + "\n",
		"alertmanager.yml": fmt.Sprintf(`route:
  receiver: sage
  group_by: [alertname, client, host]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: sage
    webhook_configs:
      - url: http://%s/api/v1/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: %s
`, h.addr, tokenFile),
		"rules.yml": `groups:
  - name: e2e
    rules:
      - alert: E2ELevelHigh
        expr: e2e_level > 5
        labels: {severity: critical}
        annotations:
          summary: "level {{ $value }} on {{ $labels.host }}"
`,
		"prometheus.yml": fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['%s']
scrape_configs:
  - job_name: e2e
    static_configs:
      - targets: ['%s']
        labels: {client: %s, host: am-host}
`, amAddr, strings.TrimPrefix(exporter.URL, "http://"), e2eClient),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Clustering off: Alertmanager would otherwise listen for peers on every address.
	testenv.Start(t, "http://"+amAddr+"/-/ready", amBin, "--config.file="+filepath.Join(dir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(dir, "am"), "--web.listen-address="+amAddr, "--cluster.listen-address=")
	testenv.Start(t, "http://"+promAddr+"/-/ready", promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "prom"), "--web.listen-address="+promAddr)

	lap("alertmanager and prometheus ready")
	if code, body := h.api.do(t, "POST", "/api/v1/alertmanager", nil, []byte(`{"version":"4","status":"firing","alerts":[]}`)); code != http.StatusUnauthorized {
		t.Errorf("the receiver without a token answered %d %s, want 401", code, body)
	}
	level.Store(9)
	in := h.openIncident(t, "E2ELevelHigh")
	if in.Source != "alertmanager" || in.Labels["client"] != e2eClient || in.Labels["host"] != "am-host" || in.Status != "firing" {
		t.Errorf("incident from Alertmanager: %+v", in)
	}
	within(t, e2eWait, "L1's mail", func() bool { return len(h.mail.about(alice.email, in.ID, "FIRING")) > 0 })
	if m := h.mail.about(alice.email, in.ID, "FIRING")[0]; !strings.HasPrefix(ackLink.FindString(m.text), "http://"+h.addr+"/ack/") {
		t.Errorf("L1's mail has no acknowledgement link:\n%s", m.text)
	}

	lap("incident opened, L1 mailed")
	level.Store(1)
	within(t, e2eWait, "the incident resolved by Alertmanager's resolved message", func() bool {
		got, _, _ := h.incident(t, in.ID)
		return got.Status == "resolved"
	})
	var open struct{ Items []e2eIncident }
	h.call(t, "GET", "/api/v1/incidents?open=true", nil, http.StatusOK, &open)
	for _, x := range open.Items {
		if x.ID == in.ID {
			t.Errorf("the resolved incident is still listed as open: %+v", x)
		}
	}
	within(t, e2eWait, "L1's resolution mail", func() bool { return len(h.mail.about(alice.email, in.ID, "RESOLVED")) == 1 })
	lap("resolved")
}
