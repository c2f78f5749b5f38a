package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"
)

// EmailSender sends notifications over SMTP with net/smtp. The standard library's client is
// enough here: it speaks EHLO, STARTTLS, AUTH and the 8BITMIME/SMTPUTF8 parameters, returns the
// server's reply codes (which decide permanent against retryable), and leaves the message bytes
// to us, which a deterministic Message-ID and MIME boundary need anyway. It adds no dependency.
type EmailSender struct {
	cfg   SMTPConfig // validated
	from  *mail.Address
	tls   *tls.Config
	hello string
}

// NewEmailSender returns a sender for cfg, which it validates; the password (when a username is
// set) is read now to fail early, and again at every send so that a rotated password file needs
// no restart.
func NewEmailSender(cfg SMTPConfig) (*EmailSender, error) {
	if fe := cfg.Validate(); len(fe) > 0 {
		return nil, fmt.Errorf("notify: smtp: %w", fieldErrors(fe))
	}
	s := &EmailSender{cfg: cfg, from: cfg.from, hello: helloName()}
	if cfg.Mode != SMTPNone {
		tc, err := clientTLS(cfg.CAFile, cfg.ServerName, cfg.Host)
		if err != nil {
			return nil, fmt.Errorf("notify: smtp: %w", err)
		}
		s.tls = tc
	}
	if cfg.Username != "" {
		if _, err := cfg.password().read(); err != nil {
			return nil, fmt.Errorf("notify: smtp: %w", err)
		}
	}
	return s, nil
}

// helloName is what the hub calls itself in EHLO: its host name, which some servers check, else
// "localhost" as net/smtp does.
func helloName() string {
	h, err := os.Hostname()
	if err != nil || h == "" || strings.ContainsAny(h, " \r\n") {
		return "localhost"
	}
	return h
}

// Send delivers d as one email to d.Recipient and returns its Message-ID.
func (s *EmailSender) Send(ctx context.Context, d Delivery) (string, error) {
	to, err := ParseEmailAddress(d.Recipient)
	if err != nil {
		return "", Permanent(err)
	}
	msg, id, err := composeEmail(s.from, to, d)
	if err != nil {
		return "", Permanent(err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	if err := s.transact(ctx, to, msg); err != nil {
		if ctx.Err() != nil && !IsPermanent(err) {
			return "", fmt.Errorf("smtp %s: %w (%v)", s.addr(), ctx.Err(), err)
		}
		return "", err
	}
	return id, nil
}

func (s *EmailSender) addr() string {
	return net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
}

// stage names the SMTP command an error came from, for the log and for deciding whether a 5xx
// reply is about this message (permanent) or about the set-up (worth retrying once fixed).
type stage string

func (s *EmailSender) transact(ctx context.Context, to string, msg []byte) error {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", s.addr())
	if err != nil {
		return fmt.Errorf("smtp %s: connecting: %w", s.addr(), err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// net/smtp takes no context: cancelling moves the deadline to the past, which fails whatever
	// read or write is in progress.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if s.cfg.Mode == SMTPTLS {
		tc := tls.Client(conn, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("smtp %s: TLS handshake: %w", s.addr(), err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, s.cfg.Host)
	if err != nil {
		return fmt.Errorf("smtp %s: greeting: %w", s.addr(), err)
	}
	defer c.Close()
	if err := c.Hello(s.hello); err != nil {
		return s.fail("EHLO", err)
	}
	if s.cfg.Mode == SMTPStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			// Not permanent: the server's configuration, not this message, is at fault, and the
			// queue should drain once it is fixed.
			return fmt.Errorf("smtp %s: the server does not offer STARTTLS, and mode starttls refuses to send in clear", s.addr())
		}
		if err := c.StartTLS(s.tls); err != nil {
			return s.fail("STARTTLS", err)
		}
	}
	if s.cfg.Username != "" {
		pw, err := s.cfg.password().read()
		if err != nil {
			return fmt.Errorf("smtp %s: %w", s.addr(), err)
		}
		mech := s.cfg.Auth
		if mech == "" {
			_, offered := c.Extension("AUTH")
			switch mechs := strings.Fields(strings.ToUpper(offered)); {
			case containsString(mechs, "PLAIN"):
				mech = "plain"
			case containsString(mechs, "LOGIN"):
				mech = "login"
			default:
				return fmt.Errorf("smtp %s: the server offers neither AUTH PLAIN nor AUTH LOGIN (it offers %q)", s.addr(), offered)
			}
		}
		a := &smtpAuth{mech: mech, username: s.cfg.Username, password: pw, clear: s.cfg.Mode == SMTPNone}
		if err := c.Auth(a); err != nil {
			return s.fail("AUTH", err)
		}
	}
	if err := c.Mail(s.from.Address); err != nil {
		return s.fail("MAIL FROM", err)
	}
	if err := c.Rcpt(to); err != nil {
		return s.fail("RCPT TO", err)
	}
	w, err := c.Data()
	if err != nil {
		return s.fail("DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return s.fail("DATA", err)
	}
	if err := w.Close(); err != nil {
		return s.fail("end of DATA", err)
	}
	// The message is accepted; a failing QUIT changes nothing.
	_ = c.Quit()
	return nil
}

// fail wraps an SMTP error: a 5xx reply to RCPT TO or to the message itself is permanent (the
// recipient or the message is refused); everything else, including 5xx replies about the sender
// or authentication, is retried, since those mean the set-up is wrong and will be fixed.
func (s *EmailSender) fail(st stage, err error) error {
	err = fmt.Errorf("smtp %s: %s: %w", s.addr(), st, err)
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 && (st == "RCPT TO" || st == "end of DATA" || st == "DATA") {
		return Permanent(err)
	}
	return err
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// smtpAuth is AUTH PLAIN or LOGIN. Like net/smtp's PlainAuth, it refuses to send a password over
// a connection that is not encrypted, except in mode none, which is only allowed to loopback.
type smtpAuth struct {
	mech               string
	username, password string
	clear              bool
	step               int
}

func (a *smtpAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && !a.clear {
		return "", nil, errors.New("refusing to send the password over an unencrypted connection")
	}
	if a.mech == "login" {
		return "LOGIN", nil, nil
	}
	return "PLAIN", []byte("\x00" + a.username + "\x00" + a.password), nil
}

func (a *smtpAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	if a.mech != "login" {
		return nil, errors.New("unexpected server challenge")
	}
	// LOGIN's prompts are "Username:" and "Password:"; some servers send other words, so the
	// order decides, as in other clients.
	a.step++
	switch a.step {
	case 1:
		return []byte(a.username), nil
	case 2:
		return []byte(a.password), nil
	}
	return nil, errors.New("unexpected server challenge after the password")
}

// MessageID is the Message-ID of the email for dedupeKey sent from an address at domain: the same
// key gives the same Message-ID, so a resend after a crash is recognisably the same message.
func MessageID(dedupeKey, domain string) string {
	sum := sha256.Sum256([]byte(dedupeKey))
	return "<sage." + hex.EncodeToString(sum[:16]) + "@" + domain + ">"
}

// incidentThread is a Message-ID every email about one incident refers to, so mail clients
// thread them together.
func incidentThread(incidentID, domain string) string {
	sum := sha256.Sum256([]byte("incident:" + incidentID))
	return "<sage.incident." + hex.EncodeToString(sum[:12]) + "@" + domain + ">"
}

// composeEmail builds the message: headers and a multipart/alternative body with a text and an
// HTML part, both quoted-printable (7-bit clean, so no server needs 8BITMIME). Every byte is a
// function of the delivery, so a resend is identical.
func composeEmail(from *mail.Address, to string, d Delivery) ([]byte, string, error) {
	domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	id := MessageID(d.DedupeKey, domain)
	date := d.CreatedAt
	if date.IsZero() {
		date = time.Now()
	}
	subject := oneLine(d.Message.Subject)
	if subject == "" {
		subject = "ServerSage notification"
	}
	var b bytes.Buffer
	header := func(name, value string) { writeHeader(&b, name, value) }
	header("Date", date.UTC().Format(time.RFC1123Z))
	header("From", from.String())
	header("To", to)
	header("Subject", mime.QEncoding.Encode("utf-8", subject))
	header("Message-ID", id)
	if d.IncidentID != "" {
		thread := incidentThread(d.IncidentID, domain)
		header("References", thread)
		header("In-Reply-To", thread)
		header("X-Sage-Incident", mime.QEncoding.Encode("utf-8", oneLine(d.IncidentID)))
	}
	header("X-Sage-Step", strconv.Itoa(d.Step))
	// RFC 3834, and Exchange's own header: no out-of-office replies to the hub's sender address.
	header("Auto-Submitted", "auto-generated")
	header("X-Auto-Response-Suppress", "All")
	header("MIME-Version", "1.0")

	mw := multipart.NewWriter(&b)
	sum := sha256.Sum256([]byte("boundary:" + d.DedupeKey))
	if err := mw.SetBoundary("sage-" + hex.EncodeToString(sum[:12])); err != nil {
		return nil, "", err
	}
	header("Content-Type", "multipart/alternative; boundary=\""+mw.Boundary()+"\"")
	b.WriteString("\r\n")
	text := d.Message.Text
	if text == "" {
		text = subject + "\n"
	}
	if err := writePart(mw, "text/plain; charset=utf-8", text); err != nil {
		return nil, "", err
	}
	if d.Message.HTML != "" {
		if err := writePart(mw, "text/html; charset=utf-8", d.Message.HTML); err != nil {
			return nil, "", err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return b.Bytes(), id, nil
}

func writePart(mw *multipart.Writer, contentType, body string) error {
	pw, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {contentType},
		"Content-Transfer-Encoding": {"quoted-printable"},
	})
	if err != nil {
		return err
	}
	qp := quotedprintable.NewWriter(pw)
	if _, err := qp.Write([]byte(strings.ReplaceAll(body, "\r\n", "\n"))); err != nil {
		return err
	}
	return qp.Close()
}

// writeHeader writes "Name: value" folded at spaces so that lines stay within 78 characters
// where the value allows (RFC 5322 2.1.1); encoded words are separated by spaces, so they fold too.
func writeHeader(b *bytes.Buffer, name, value string) {
	line := name + ":"
	for _, word := range strings.Split(value, " ") {
		// Folding may come before the first word too: the field body may begin with folding white
		// space, and an encoded word is up to 75 characters on its own.
		if len(line)+1+len(word) > 78 && strings.TrimSpace(line) != "" && len(word) > 0 {
			b.WriteString(line)
			b.WriteString("\r\n")
			line = ""
		}
		line += " " + word
	}
	b.WriteString(line)
	b.WriteString("\r\n")
}
