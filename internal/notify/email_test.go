package notify

import (
	"bytes"
	"context"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func passwordFile(t *testing.T, pw string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "smtp.password")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func emailDelivery(t *testing.T, inc Incident, to string) Delivery {
	t.Helper()
	n, err := EmailNotification(inc, to)
	if err != nil {
		t.Fatal(err)
	}
	return Delivery{ID: "row-1", DedupeKey: n.DedupeKey, IncidentID: n.IncidentID, Step: n.Step, Channel: n.Channel,
		Recipient: n.Recipient, Message: n.Message, Attempt: 1, CreatedAt: time.Date(2026, 11, 21, 10, 0, 5, 0, time.UTC)}
}

// parsedMail is a received mail taken apart as a mail client would.
type parsedMail struct {
	Header  mail.Header
	Subject string
	Text    string
	HTML    string
}

func parseMail(t *testing.T, data []byte) parsedMail {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("message does not parse: %v\n%s", err, data)
	}
	var p parsedMail
	p.Header = msg.Header
	dec := new(mime.WordDecoder)
	if p.Subject, err = dec.DecodeHeader(msg.Header.Get("Subject")); err != nil {
		t.Fatalf("subject: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q (%v), want multipart/alternative", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var order []string
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(part) // multipart decodes quoted-printable itself
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		order = append(order, ct)
		switch ct {
		case "text/plain":
			p.Text = string(body)
		case "text/html":
			p.HTML = string(body)
		}
	}
	if strings.Join(order, ",") != "text/plain,text/html" {
		t.Errorf("parts %v, want text/plain then text/html (the preferred one last)", order)
	}
	for _, line := range strings.Split(string(data), "\r\n") {
		if len(line) > 998 {
			t.Errorf("line of %d characters exceeds RFC 5322's limit", len(line))
		}
	}
	return p
}

func TestEmailSend(t *testing.T) {
	cert, caFile := testCert(t)
	users := map[string]string{"sage": "s3cret pass"}
	tests := []struct {
		name     string
		server   smtpOptions
		cfg      func(c *SMTPConfig, s *smtpServer)
		wantUser string
		wantTLS  bool
	}{
		{
			name:   "starttls with AUTH PLAIN",
			server: smtpOptions{mode: "starttls", users: users},
			cfg: func(c *SMTPConfig, s *smtpServer) {
				c.Mode, c.Username, c.PasswordFile = SMTPStartTLS, "sage", passwordFile(t, "s3cret pass")
			},
			wantUser: "sage", wantTLS: true,
		},
		{
			name:   "starttls with AUTH LOGIN and a server name",
			server: smtpOptions{mode: "starttls", users: users, mechs: []string{sasl.Login}},
			cfg: func(c *SMTPConfig, s *smtpServer) {
				c.Mode, c.Username, c.PasswordEnv, c.ServerName = SMTPStartTLS, "sage", "SAGE_TEST_SMTP_PW", "mail.test"
				t.Setenv("SAGE_TEST_SMTP_PW", "s3cret pass")
			},
			wantUser: "sage", wantTLS: true,
		},
		{
			name:   "implicit TLS with AUTH PLAIN",
			server: smtpOptions{mode: "tls", users: users},
			cfg: func(c *SMTPConfig, s *smtpServer) {
				c.Mode, c.Username, c.PasswordFile, c.Auth = SMTPTLS, "sage", passwordFile(t, "s3cret pass"), "plain"
			},
			wantUser: "sage", wantTLS: true,
		},
		{
			name:   "no TLS to a loopback relay",
			server: smtpOptions{mode: "plain"},
			cfg: func(c *SMTPConfig, s *smtpServer) {
				c.Mode, c.CAFile = SMTPNone, ""
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.server.cert, tt.server.caFile = &cert, caFile
			srv := newSMTPServer(t, tt.server)
			cfg := SMTPConfig{Host: srv.host(), Port: srv.port(), From: "ServerSage <sage@example.com>", CAFile: srv.CAFile}
			tt.cfg(&cfg, srv)
			sender, err := NewEmailSender(cfg)
			if err != nil {
				t.Fatal(err)
			}
			inc := sampleIncident()
			d := emailDelivery(t, inc, "L1 Shift <l1@acme.example>")
			ref, err := sender.Send(context.Background(), d)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := srv.received()
			if len(got) != 1 {
				t.Fatalf("server received %d mails, want 1", len(got))
			}
			m := got[0]
			if m.User != tt.wantUser || m.TLS != tt.wantTLS {
				t.Errorf("authenticated as %q over TLS %v, want %q, %v", m.User, m.TLS, tt.wantUser, tt.wantTLS)
			}
			if m.From != "sage@example.com" || len(m.To) != 1 || m.To[0] != "l1@acme.example" {
				t.Errorf("envelope %s -> %v", m.From, m.To)
			}
			p := parseMail(t, m.Data)
			wantID := MessageID(d.DedupeKey, "example.com")
			if ref != wantID || p.Header.Get("Message-ID") != wantID {
				t.Errorf("Message-ID %q, ref %q, want %q", p.Header.Get("Message-ID"), ref, wantID)
			}
			checkHeaders(t, p, d)
			checkBodies(t, p, inc)
		})
	}
}

func checkHeaders(t *testing.T, p parsedMail, d Delivery) {
	t.Helper()
	from, err := p.Header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Address != "sage@example.com" || from[0].Name != "ServerSage" {
		t.Errorf("From %v (%v)", from, err)
	}
	if to := p.Header.Get("To"); to != "l1@acme.example" {
		t.Errorf("To %q", to)
	}
	if want := "[FIRING:CRITICAL] acme/db1 HostFilesystemSpaceLow /var 93% (watermark 90%)"; p.Subject != want {
		t.Errorf("Subject %q, want %q", p.Subject, want)
	}
	if date, err := p.Header.Date(); err != nil || !date.Equal(d.CreatedAt) {
		t.Errorf("Date %v (%v), want the enqueue time %v", date, err, d.CreatedAt)
	}
	if got := p.Header.Get("X-Sage-Incident"); got != d.IncidentID {
		t.Errorf("X-Sage-Incident %q, want %q", got, d.IncidentID)
	}
	if got := p.Header.Get("X-Sage-Step"); got != "1" {
		t.Errorf("X-Sage-Step %q, want 1", got)
	}
	if got := p.Header.Get("Auto-Submitted"); got != "auto-generated" {
		t.Errorf("Auto-Submitted %q", got)
	}
	if p.Header.Get("References") == "" || p.Header.Get("MIME-Version") != "1.0" {
		t.Errorf("References %q, MIME-Version %q", p.Header.Get("References"), p.Header.Get("MIME-Version"))
	}
}

func checkBodies(t *testing.T, p parsedMail, inc Incident) {
	t.Helper()
	for _, want := range []string{
		"Filesystem /var on db1 is 93% full",
		"ACKNOWLEDGE: " + inc.AckURL,
		"93% (watermark 90%)",
		"  1. Confirm with df -h /var on the host.",
		"  2. Find the largest directories: du -xh /var | sort -h | tail.",
		"  3. Rotate or compress old logs under /var/log <not> the database files.",
		"Runbook:  " + inc.RunbookURL,
		"Incident: " + inc.IncidentURL,
		"At the current rate it fills in 3 hours.",
	} {
		if !strings.Contains(p.Text, want) {
			t.Errorf("text part lacks %q:\n%s", want, p.Text)
		}
	}
	for _, want := range []string{
		`<a href="` + inc.AckURL + `"`,
		`>Acknowledge</a>`,
		`<li style="margin:0 0 6px 0;">Confirm with df -h /var on the host.</li>`,
		`under /var/log &lt;not&gt; the database files.`, // escaped, not markup
		`<a href="` + inc.RunbookURL + `"`,
		`<a href="` + inc.IncidentURL + `"`,
		`93% (watermark 90%)`,
	} {
		if !strings.Contains(p.HTML, want) {
			t.Errorf("HTML part lacks %q:\n%s", want, p.HTML)
		}
	}
	if i, j := strings.Index(p.HTML, "Acknowledge</a>"), strings.Index(p.HTML, "<ol"); i < 0 || j < 0 || i > j {
		t.Errorf("the Acknowledge link should come before the action plan (at %d, plan at %d)", i, j)
	}
}

func TestEmailRefusesClearWithoutSTARTTLS(t *testing.T) {
	srv := newSMTPServer(t, smtpOptions{mode: "plain"})
	sender, err := NewEmailSender(SMTPConfig{Host: srv.host(), Port: srv.port(), Mode: SMTPStartTLS,
		From: "sage@example.com", CAFile: srv.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sender.Send(context.Background(), emailDelivery(t, sampleIncident(), "l1@acme.example"))
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("Send to a server without STARTTLS: %v, want a refusal naming STARTTLS", err)
	}
	if IsPermanent(err) {
		t.Errorf("refusal is permanent; it should be retried once the server is fixed")
	}
	if n := len(srv.received()); n != 0 {
		t.Errorf("server received %d mails in clear", n)
	}
}

func TestEmailFailures(t *testing.T) {
	cert, caFile := testCert(t)
	users := map[string]string{"sage": "right"}
	tests := []struct {
		name          string
		cfg           func(c *SMTPConfig)
		reject        string // RCPT address the server refuses with 550
		wantErr       string
		wantPermanent bool
	}{
		{name: "wrong password", cfg: func(c *SMTPConfig) { c.PasswordFile = passwordFile(t, "wrong") },
			wantErr: "AUTH"},
		{name: "unknown certificate authority", cfg: func(c *SMTPConfig) { c.CAFile = "" },
			wantErr: "certificate"},
		{name: "certificate for another name", cfg: func(c *SMTPConfig) { c.ServerName = "other.test" },
			wantErr: "certificate"},
		{name: "recipient refused", reject: "l1@acme.example", wantErr: "RCPT TO", wantPermanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newSMTPServer(t, smtpOptions{mode: "starttls", users: users, cert: &cert, caFile: caFile})
			if tt.reject != "" {
				srv.reject[tt.reject] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			cfg := SMTPConfig{Host: srv.host(), Port: srv.port(), From: "sage@example.com", CAFile: caFile,
				Username: "sage", PasswordFile: passwordFile(t, "right")}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			sender, err := NewEmailSender(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = sender.Send(context.Background(), emailDelivery(t, sampleIncident(), "l1@acme.example"))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Send: %v, want an error about %s", err, tt.wantErr)
			}
			if IsPermanent(err) != tt.wantPermanent {
				t.Errorf("permanent %v, want %v (%v)", IsPermanent(err), tt.wantPermanent, err)
			}
			if strings.Contains(err.Error(), "right") || strings.Contains(err.Error(), "wrong") {
				t.Errorf("error shows the password: %v", err)
			}
			if n := len(srv.received()); n != 0 {
				t.Errorf("server accepted %d mails", n)
			}
		})
	}
}

func TestEmailSendHonoursContext(t *testing.T) {
	// A server that accepts the connection and never greets: the send must end with the context.
	ln := newSilentListener(t)
	sender, err := NewEmailSender(SMTPConfig{Host: "127.0.0.1", Port: ln.port, Mode: SMTPNone, From: "sage@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := sender.Send(ctx, emailDelivery(t, sampleIncident(), "l1@acme.example"))
		errc <- err
	}()
	<-ln.accepted
	cancel()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("Send after cancel: %v, want context canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Send did not return after its context was cancelled")
	}
}

func TestComposeEmailDeterministic(t *testing.T) {
	from := &mail.Address{Name: "Sérver Sage", Address: "sage@example.com"}
	inc := sampleIncident()
	inc.Title = "Plattenplatz knapp: /var — ünïcödé " + strings.Repeat("lang ", 30)
	d := emailDelivery(t, inc, "l1@acme.example")
	a, id1, err := composeEmail(from, "l1@acme.example", d)
	if err != nil {
		t.Fatal(err)
	}
	d.Attempt = 7
	b, id2, err := composeEmail(from, "l1@acme.example", d)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || id1 != id2 {
		t.Fatal("a resend composes different bytes")
	}
	p := parseMail(t, a)
	if !strings.HasPrefix(p.Subject, "[FIRING:CRITICAL] acme/db1 Plattenplatz knapp: /var — ünïcödé lang") {
		t.Errorf("subject does not round-trip: %q", p.Subject)
	}
	for i, line := range strings.Split(string(a[:bytes.Index(a, []byte("\r\n\r\n"))]), "\r\n") {
		if len(line) > 78 && !strings.Contains(line, "boundary") {
			t.Errorf("header line %d is %d characters: %q", i, len(line), line)
		}
	}
	d.DedupeKey += "x"
	if _, id3, _ := composeEmail(from, "l1@acme.example", d); id3 == id1 {
		t.Error("different dedupe keys gave the same Message-ID")
	}
}

func TestEmailHeaderInjection(t *testing.T) {
	inc := sampleIncident()
	inc.Title = "evil\r\nBcc: victim@example.net"
	inc.ID = "id\r\nX-Evil: 1"
	d := emailDelivery(t, inc, "l1@acme.example")
	raw, _, err := composeEmail(&mail.Address{Address: "sage@example.com"}, "l1@acme.example", d)
	if err != nil {
		t.Fatal(err)
	}
	p := parseMail(t, raw)
	if p.Header.Get("Bcc") != "" || p.Header.Get("X-Evil") != "" {
		t.Errorf("a label value added a header:\n%s", raw)
	}
}

// silentListener accepts connections and says nothing.
type silentListener struct {
	port     int
	accepted chan struct{}
}

func newSilentListener(t *testing.T) *silentListener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	s := &silentListener{port: ln.Addr().(*net.TCPAddr).Port, accepted: make(chan struct{}, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			s.accepted <- struct{}{}
		}
	}()
	return s
}
