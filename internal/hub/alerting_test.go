package hub

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/serversage/sage/internal/alert"
	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/notify"
	"github.com/serversage/sage/internal/oncall"
	"github.com/serversage/sage/internal/store/storetest"
)

// mailbox is an SMTP server in the test process that keeps what it receives.
type mailbox struct {
	mu   sync.Mutex
	msgs []mailMsg
	addr string
}

type mailMsg struct {
	to   []string
	data string
}

type mailSession struct {
	box *mailbox
	to  []string
}

func (s *mailSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.box.mu.Lock()
	s.box.msgs = append(s.box.msgs, mailMsg{to: s.to, data: string(b)})
	s.box.mu.Unlock()
	return nil
}
func (s *mailSession) Reset()        { s.to = nil }
func (s *mailSession) Logout() error { return nil }

func newMailbox(t *testing.T) *mailbox {
	t.Helper()
	box := &mailbox{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &mailSession{box: box}, nil }))
	srv.Domain = "localhost"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	box.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return box
}

// waitFor returns the first message to rcpt that matches, waiting up to d.
func (b *mailbox) waitFor(t *testing.T, rcpt string, d time.Duration) (mailMsg, bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		for _, m := range b.msgs {
			for _, to := range m.to {
				if to == rcpt {
					b.mu.Unlock()
					return m, true
				}
			}
		}
		b.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	return mailMsg{}, false
}

const breachRules = `groups:
- name: test
  rules:
  - alert: TestBreach
    expr: test_level > on(client, host) group_left() sage_watermark{alert="TestBreach", scope="host"}
    labels: {severity: critical, component: test}
    annotations:
      watermark: "5"
      summary: "test level {{ $value }} on {{ $labels.host }}"
`

const breachRunbook = `# TestBreach

## What it means
The test level is above its watermark.

## How to confirm
Read the level.

## L1 action plan
1. Run ` + "`check-level --host h1`" + ` and note the value.
2. Restart the level service.

## When to escalate
To L2 after 2 seconds (tests only).

## Notes for L2/L3
None.
`

// TestAlertingEndToEnd: a breach of a per-host watermark becomes an incident, L1 gets a mail with
// the runbook's action plan and an acknowledgement link, L2 gets one when nobody acknowledges
// within the policy's wait, and acknowledging through the link stops the escalation.
func TestAlertingEndToEnd(t *testing.T) {
	box := newMailbox(t)
	cfg := testConfig(t, storetest.SQLiteDSN(t), true)
	rules := t.TempDir()
	if err := os.WriteFile(filepath.Join(rules, "test.yml"), []byte(breachRules), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rules, "TestBreach.md"), []byte(breachRunbook), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(box.addr)
	p, _ := strconv.Atoi(port)
	cfg.Alerting = AlertingConfig{
		RulesDir: rules, EvaluationInterval: "1s", RetryMin: "200ms", RetryMax: "1s",
		Notify: notify.Config{SMTP: &notify.SMTPConfig{Host: host, Port: p, Mode: notify.SMTPNone, From: "sage@example.net"}},
	}
	th := startHub(t, cfg)
	ctx := context.Background()

	// The estate and the people: acme/h1; alice is L1, bob L2; acme's critical incidents go to L1,
	// then after 2 s to L2.
	client, err := th.Inventory().CreateClient(ctx, inventory.Client{Name: "Acme", Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := th.Inventory().CreateHost(ctx, inventory.Host{ClientID: client.ID, Name: "h1", Status: inventory.StatusActive}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ name, tier string }{{"alice", "L1"}, {"bob", "L2"}} {
		user, err := th.Auth().CreateUser(ctx, auth.User{Username: u.name, Role: auth.RoleEngineer}, "a long enough password")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := th.OnCall().SetContact(ctx, oncall.Contact{UserID: user.ID, Email: u.name + "@example.net", Channels: []string{"email"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := th.OnCall().CreateRota(ctx, oncall.Rota{Name: u.tier, Tier: oncall.Tier(u.tier), TimeZone: "UTC", Handover: "00:00",
			ShiftLength: oncall.Duration(24 * time.Hour), StartDate: "2026-01-01", Members: []string{user.ID}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := th.OnCall().CreatePolicy(ctx, oncall.Policy{Name: "acme critical", ClientID: client.ID, Severity: "critical", Steps: []oncall.Step{
		{Kind: oncall.KindNotifyTier, Tier: "L1", Channels: []string{"email"}},
		{Kind: oncall.KindWait, Wait: oncall.Duration(2 * time.Second)},
		{Kind: oncall.KindNotifyTier, Tier: "L2", Channels: []string{"email"}},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := th.Alerts().RebuildWatermarks(ctx); err != nil {
		t.Fatal(err)
	}

	// The breach: test_level 9 > 5, written every 200 ms as a scrape would.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		lset := labels.FromStrings("__name__", "test_level", "client", "acme", "host", "h1", "job", "test")
		for {
			app := th.Metrics().Appender(ctx)
			_, _ = app.Append(0, lset, time.Now().UnixMilli(), 9)
			_ = app.Commit()
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()

	mail, ok := box.waitFor(t, "alice@example.net", 30*time.Second)
	if !ok {
		t.Fatal("no mail reached L1 within 30 s of the breach")
	}
	text := strings.ReplaceAll(mail.data, "=\r\n", "") // quoted-printable soft breaks
	for _, want := range []string{"TestBreach", "check-level --host h1", "/ack/"} {
		if !strings.Contains(text, want) {
			t.Errorf("L1's mail lacks %q:\n%s", want, text)
		}
	}
	if _, ok := box.waitFor(t, "bob@example.net", 30*time.Second); !ok {
		t.Fatal("L2 was not notified after the policy's wait without an acknowledgement")
	}

	// Acknowledge through the link in the mail: a GET shows the page, a POST acknowledges.
	link := regexp.MustCompile(`https?://[^\s"<>]+/ack/[A-Za-z0-9_-]+`).FindString(text)
	if link == "" {
		t.Fatal("no acknowledgement link in the mail")
	}
	u := th.srv.URL + link[strings.Index(link, "/ack/"):]
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	open, _ := th.Alerts().ListIncidents(ctx, alert.IncidentFilter{Open: true})
	if len(open) != 1 || open[0].Status != alert.StatusFiring {
		t.Fatalf("after GET of the link: %+v, want one firing incident", open)
	}
	res, err = http.Post(u, "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	in, err := th.Alerts().GetIncident(ctx, open[0].ID)
	if err != nil || in.Status != alert.StatusAcknowledged || in.AckedBy != "alice" {
		t.Fatalf("after POST of the link: %+v %v, want acknowledged by alice", in, err)
	}

	// An override through the API, then the live manual lists it in acme's appendix.
	api := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, th.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+th.apiToken)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := api("POST", "/api/v1/overrides", `{"alert":"TestBreach","scope":"client","client_id":"`+client.ID+`","value":-1}`); code != http.StatusBadRequest || !strings.Contains(body, `"field":"value"`) {
		t.Errorf("negative override: %d %s, want 400 naming value", code, body)
	}
	if code, body := api("POST", "/api/v1/overrides", `{"alert":"TestBreach","scope":"client","client_id":"`+client.ID+`","value":7.5}`); code != http.StatusCreated {
		t.Fatalf("override: %d %s", code, body)
	}
	code, page := api("GET", "/api/v1/manual?format=html", "")
	if code != http.StatusOK || !strings.Contains(page, "TestBreach") || !strings.Contains(page, "check-level --host h1") || !strings.Contains(page, "7.5") {
		t.Errorf("manual: %d, want the rule, its action plan and acme's override 7.5 (%d bytes)", code, len(page))
	}
	if code, pdf := api("GET", "/api/v1/manual?format=pdf", ""); code != http.StatusOK || !strings.HasPrefix(pdf, "%PDF") {
		t.Errorf("manual PDF: %d, %q...", code, pdf[:min(len(pdf), 10)])
	}
}

func TestAlertingConfigErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		a     AlertingConfig
		field string
	}{
		{"interval", AlertingConfig{EvaluationInterval: "soon"}, "alerting.evaluation_interval"},
		{"url", AlertingConfig{ExternalURL: "ftp://x"}, "alerting.external_url"},
		{"group_by", AlertingConfig{GroupBy: []string{"client", "no-dash"}}, "alerting.group_by[1]"},
		{"smtp", AlertingConfig{Notify: notify.Config{SMTP: &notify.SMTPConfig{Host: "smtp.example.net", Mode: "none", From: "a@b.c"}}}, "alerting.notify.smtp.mode"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fe := c.a.validate("127.0.0.1:10731")
			if len(fe) == 0 || fe[0].Field != c.field {
				t.Errorf("got %v, want an error on %s", fe, c.field)
			}
		})
	}
}
