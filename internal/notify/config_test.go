package notify

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/serversage/sage/internal/config"
)

func TestConfigValid(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"smtp.pw", "twilio.token", "gw.key", "hook.token"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	doc := `
smtp:
  host: mail.example.com
  username: sage
  password_file: smtp.pw
  from: ServerSage <sage@example.com>
  timeout: 20s
sms:
  provider: twilio
  twilio:
    account_sid: AC0123456789abcdef0123456789abcdef
    auth_token_file: twilio.token
    from: "+15005550006"
webhooks:
  - name: chat
    url: https://chat.example.com/hooks/alerts
    bearer_token_file: hook.token
  - name: ticketing
    url: http://10.0.0.5:8080/alertmanager
    max_alerts: 20
`
	var c Config
	if err := config.Load("hub.yml", []byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	if c.SMTP.Mode != SMTPStartTLS || c.SMTP.Port != 587 || c.SMTP.from.Address != "sage@example.com" || c.SMTP.timeout.Seconds() != 20 {
		t.Errorf("smtp defaults: %+v", c.SMTP)
	}
	if c.SMS.Twilio.BaseURL != defaultTwilioURL {
		t.Errorf("twilio base_url %q", c.SMS.Twilio.BaseURL)
	}
	c.ResolvePaths(dir)
	if c.SMTP.PasswordFile != filepath.Join(dir, "smtp.pw") || c.Webhooks[0].BearerTokenFile != filepath.Join(dir, "hook.token") {
		t.Errorf("paths not resolved: %q %q", c.SMTP.PasswordFile, c.Webhooks[0].BearerTokenFile)
	}
	senders, err := NewSenders(c)
	if err != nil {
		t.Fatal(err)
	}
	var chans []string
	for ch := range senders {
		chans = append(chans, ch)
	}
	slices.Sort(chans)
	if strings.Join(chans, ",") != "email,sms,webhook" {
		t.Errorf("senders for %v", chans)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // "line: field: message fragment"
	}{
		{name: "smtp", doc: `
smtp:
  host: mail.example.com:25
  mode: ssl
  port: 70000
  username: sage
  from: not an address
  timeout: soon
`, want: []string{
			"3: smtp.host: without scheme or port",
			"4: smtp.mode: \"ssl\" is not one of",
			"5: smtp.port: 70000 is not a port",
			"2: smtp.password_file: is required",
			"7: smtp.from: is not an email address",
			"8: smtp.timeout: not a positive duration",
		}},
		{name: "clear text to a remote relay", doc: `
smtp:
  host: mail.example.com
  mode: none
  from: sage@example.com
`, want: []string{"4: smtp.mode: none sends in clear"}},
		{name: "both secrets", doc: `
smtp:
  host: 127.0.0.1
  username: u
  password_file: /x
  password_env: "bad name"
  from: sage@example.com
`, want: []string{"5: smtp.password_file: give either"}},
		{name: "sms provider", doc: `
sms:
  provider: pigeon
`, want: []string{"3: sms.provider: \"pigeon\" is not one of"}},
		{name: "twilio", doc: `
sms:
  provider: twilio
  twilio:
    account_sid: XX123
    base_url: ftp://api.twilio.com
`, want: []string{
			"5: sms.twilio.account_sid: AC followed by 32",
			"4: sms.twilio.auth_token_file: is required",
			"4: sms.twilio.from: is required",
			"6: sms.twilio.base_url: must start with https://",
		}},
		{name: "gateway", doc: `
sms:
  provider: http
  http:
    url: "https://gw.example.com/send?to={{.Number}}"
    method: PATCH
    body_template: "{{.To"
    success_status: 200-199
    headers:
      - name: "Bad Header"
        value: x
        value_env: Y
`, want: []string{
			"5: sms.http.url: can't evaluate field Number",
			"6: sms.http.method: \"PATCH\" is not one of",
			"7: sms.http.body_template: template: body_template:1: unclosed action",
			"8: sms.http.success_status: low to high",
			"10: sms.http.headers[0].name: is not an HTTP header name",
			"11: sms.http.headers[0].value: give exactly one",
		}},
		{name: "gateway template loops", doc: `
sms:
  provider: http
  http:
    url: https://gw.example.com/send
    body_template: "{{range 1000000000}}{{end}}"
`, want: []string{"6: sms.http.body_template: template: range is not allowed"}},
		{name: "webhooks", doc: `
webhooks:
  - name: chat
    url: chat.example.com
  - name: chat
    url: https://x.example.com
    bearer_token_file: /t
    basic_auth: {username: u}
    max_alerts: -1
`, want: []string{
			"4: webhooks[0].url: must start with https://",
			"5: webhooks[1].name: \"chat\" is already the name of webhooks[0]",
			"8: webhooks[1].basic_auth: give either a bearer token or basic_auth",
			"8: webhooks[1].basic_auth.password_file: is required",
			"9: webhooks[1].max_alerts: must not be negative",
		}},
		{name: "unknown field", doc: `
smtp:
  hostname: x
`, want: []string{"3: smtp.hostname: unknown field"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			err := config.Load("hub.yml", []byte(tt.doc), &c)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load: %v, want a config.Error", err)
			}
			var got []string
			for _, p := range ce.Problems {
				got = append(got, p.String())
			}
			for _, w := range tt.want {
				line, rest, _ := strings.Cut(w, ": ")
				field, msg, _ := strings.Cut(rest, ": ")
				found := false
				for _, p := range ce.Problems {
					if p.Field == field && strings.Contains(p.Msg, msg) && p.File == "hub.yml" && itoa(p.Line) == line {
						found = true
					}
				}
				if !found {
					t.Errorf("no problem %q among\n%s", w, strings.Join(got, "\n"))
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("%d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
		})
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestNewSendersReadsSecrets(t *testing.T) {
	c := Config{SMTP: &SMTPConfig{Host: "mail.example.com", Username: "u", PasswordFile: filepath.Join(t.TempDir(), "missing"),
		From: "sage@example.com"}}
	_, err := NewSenders(c)
	if err == nil || !strings.Contains(err.Error(), "password_file") {
		t.Fatalf("missing password file: %v", err)
	}
	t.Setenv("SAGE_TEST_EMPTY", "")
	c = Config{Webhooks: []WebhookConfig{{Name: "w", URL: "https://x.example.com", BearerTokenEnv: "SAGE_TEST_EMPTY"}}}
	if _, err := NewSenders(c); err == nil || !strings.Contains(err.Error(), "SAGE_TEST_EMPTY is empty") {
		t.Fatalf("empty token variable: %v", err)
	}
}
