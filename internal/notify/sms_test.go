package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const (
	testAccountSID = "AC0123456789abcdef0123456789abcdef"
	testAuthToken  = "tw-auth-token-0123"
	testServiceSID = "MG0123456789abcdef0123456789abcdef"
)

// fakeTwilio implements the request shape of Twilio's Messages API: the path, form-encoded
// To/From/MessagingServiceSid/Body, basic auth with the account SID and auth token; it answers
// 201 with a Message resource or an error document. fail, when set, decides the answer per
// request (status, Twilio error code).
type fakeTwilio struct {
	mu       sync.Mutex
	messages []url.Values
	requests int
	fail     func(n int) (status, code int)
}

func (f *fakeTwilio) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	writeErr := func(status, code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg,
			"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code), "status": status})
	}
	f.mu.Lock()
	f.requests++
	n := f.requests
	f.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/2010-04-01/Accounts/"+testAccountSID+"/Messages.json" {
		writeErr(http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	if user, pass, ok := r.BasicAuth(); !ok || user != testAccountSID || pass != testAuthToken {
		writeErr(http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		writeErr(http.StatusBadRequest, 20001, "unexpected content type "+ct)
		return
	}
	if err := r.ParseForm(); err != nil {
		writeErr(http.StatusBadRequest, 20001, err.Error())
		return
	}
	form := r.PostForm
	switch {
	case form.Get("To") == "":
		writeErr(http.StatusBadRequest, 21604, "A 'To' phone number is required.")
		return
	case form.Get("From") == "" && form.Get("MessagingServiceSid") == "":
		writeErr(http.StatusBadRequest, 21603, "A 'From' phone number is required.")
		return
	case form.Get("Body") == "":
		writeErr(http.StatusBadRequest, 21602, "Message body is required.")
		return
	}
	if f.fail != nil {
		if status, code := f.fail(n); status != 0 {
			writeErr(status, code, "failure from the test")
			return
		}
	}
	f.mu.Lock()
	f.messages = append(f.messages, form)
	sid := fmt.Sprintf("SM%032d", len(f.messages))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"sid": sid, "account_sid": testAccountSID, "to": form.Get("To"),
		"from": form.Get("From"), "messaging_service_sid": form.Get("MessagingServiceSid"), "body": form.Get("Body"),
		"status": "queued", "num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01",
		"error_code": nil, "error_message": nil, "uri": "/2010-04-01/Accounts/" + testAccountSID + "/Messages/" + sid + ".json"})
}

func (f *fakeTwilio) sent() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.messages...)
}

func secretFile(t *testing.T, name, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func smsDelivery(t *testing.T, inc Incident, number string) Delivery {
	t.Helper()
	n, err := SMSNotification(inc, number)
	if err != nil {
		t.Fatal(err)
	}
	return Delivery{ID: "r", DedupeKey: n.DedupeKey, IncidentID: n.IncidentID, Step: n.Step, Channel: n.Channel,
		Recipient: n.Recipient, Message: n.Message, Attempt: 1}
}

func TestTwilio(t *testing.T) {
	tests := []struct {
		name          string
		cfg           func(c *TwilioConfig)
		fail          func(n int) (int, int)
		wantErr       string
		wantPermanent bool
		check         func(t *testing.T, form url.Values)
	}{
		{name: "from a number", check: func(t *testing.T, f url.Values) {
			if f.Get("From") != "+15005550006" || f.Get("To") != "+447700900123" || f.Has("MessagingServiceSid") {
				t.Errorf("form %v", f)
			}
			if !strings.HasPrefix(f.Get("Body"), "FIRING CRITICAL acme/db1") {
				t.Errorf("Body %q", f.Get("Body"))
			}
		}},
		{name: "through a messaging service", cfg: func(c *TwilioConfig) { c.From, c.MessagingServiceSID = "", testServiceSID },
			check: func(t *testing.T, f url.Values) {
				if f.Get("MessagingServiceSid") != testServiceSID || f.Has("From") {
					t.Errorf("form %v", f)
				}
			}},
		{name: "invalid number is permanent", fail: func(int) (int, int) { return 400, 21211 },
			wantErr: "twilio error 21211 (HTTP 400)", wantPermanent: true},
		{name: "wrong token is permanent", cfg: func(c *TwilioConfig) { c.AuthTokenFile = secretFile(t, "tok", "wrong") },
			wantErr: "twilio error 20003 (HTTP 401): Authenticate", wantPermanent: true},
		{name: "service unavailable is retried", fail: func(int) (int, int) { return 503, 20500 },
			wantErr: "HTTP 503"},
		{name: "too many requests is retried", fail: func(int) (int, int) { return 429, 20429 },
			wantErr: "HTTP 429"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeTwilio{fail: tt.fail}
			srv := httptest.NewServer(fake)
			t.Cleanup(srv.Close)
			cfg := TwilioConfig{AccountSID: testAccountSID, AuthTokenFile: secretFile(t, "token", testAuthToken),
				From: "+15005550006", BaseURL: srv.URL}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			p, err := NewTwilio(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := SMSSender{Provider: p}.Send(context.Background(), smsDelivery(t, sampleIncident(), "+44 7700 900123"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				if IsPermanent(err) != tt.wantPermanent {
					t.Errorf("permanent %v, want %v", IsPermanent(err), tt.wantPermanent)
				}
				if strings.Contains(err.Error(), testAuthToken) {
					t.Errorf("error shows the token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(ref, "SM") || len(ref) != 34 {
				t.Errorf("reference %q, want the message SID", ref)
			}
			sent := fake.sent()
			if len(sent) != 1 {
				t.Fatalf("%d messages", len(sent))
			}
			tt.check(t, sent[0])
		})
	}
}

func TestTwilioRefusesClearToRemote(t *testing.T) {
	c := TwilioConfig{AccountSID: testAccountSID, AuthTokenEnv: "X", From: "+15005550006", BaseURL: "http://api.example.com"}
	if fe := c.Validate(); len(fe) != 1 || fe[0].Field != "base_url" {
		t.Errorf("plain http to a remote host: %v, want a base_url error", fe)
	}
}

// gatewayServer records requests to a generic SMS gateway and answers with status.
type gatewayServer struct {
	mu     sync.Mutex
	reqs   []*http.Request
	bodies []string
	status int
}

func (g *gatewayServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	g.reqs = append(g.reqs, r.Clone(context.Background()))
	g.bodies = append(g.bodies, string(b))
	st := g.status
	g.mu.Unlock()
	if st == 0 {
		st = http.StatusOK
	}
	w.WriteHeader(st)
	_, _ = io.WriteString(w, "id-42")
}

func TestHTTPGateway(t *testing.T) {
	keyFile := secretFile(t, "key", "gw-api-key")
	t.Setenv("SAGE_TEST_GW_TOKEN", "env-token")
	tests := []struct {
		name          string
		cfg           HTTPGatewayConfig
		status        int
		wantErr       string
		wantPermanent bool
		check         func(t *testing.T, r *http.Request, body string)
	}{
		{name: "default JSON body", cfg: HTTPGatewayConfig{},
			check: func(t *testing.T, r *http.Request, body string) {
				var got map[string]string
				if err := json.Unmarshal([]byte(body), &got); err != nil {
					t.Fatalf("body %q: %v", body, err)
				}
				if got["to"] != "+447700900123" || !strings.HasPrefix(got["text"], "FIRING CRITICAL") {
					t.Errorf("body %v", got)
				}
				if r.Method != "POST" || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("%s, Content-Type %q", r.Method, r.Header.Get("Content-Type"))
				}
				if r.Header.Get("Idempotency-Key") == "" {
					t.Error("no Idempotency-Key")
				}
			}},
		{name: "form body with headers by reference",
			cfg: HTTPGatewayConfig{
				BodyTemplate: `number={{urlquery .To}}&message={{urlquery .Body}}&ref={{urlquery .Incident}}`,
				Headers: []HeaderConfig{{Name: "X-Api-Key", ValueFile: keyFile}, {Name: "Authorization", ValueEnv: "SAGE_TEST_GW_TOKEN"},
					{Name: "X-Client", Value: "sage"}},
			},
			check: func(t *testing.T, r *http.Request, body string) {
				f, err := url.ParseQuery(body)
				if err != nil {
					t.Fatal(err)
				}
				if f.Get("number") != "+447700900123" || !strings.Contains(f.Get("message"), "(wm 90%)") || f.Get("ref") != sampleIncident().ID {
					t.Errorf("form %v", f)
				}
				if r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || r.Header.Get("X-Api-Key") != "gw-api-key" ||
					r.Header.Get("Authorization") != "env-token" || r.Header.Get("X-Client") != "sage" {
					t.Errorf("headers %v", r.Header)
				}
			}},
		{name: "GET with the secret in the URL (Kannel style)",
			cfg: HTTPGatewayConfig{Method: "get", SecretFile: keyFile,
				URL: "{{.Base}}/cgi-bin/sendsms?username=sage&password={{urlquery .Secret}}&to={{urlquery .To}}&text={{urlquery .Body}}"},
			check: func(t *testing.T, r *http.Request, body string) {
				q := r.URL.Query()
				if r.Method != "GET" || q.Get("password") != "gw-api-key" || q.Get("to") != "+447700900123" || body != "" {
					t.Errorf("%s %v body %q", r.Method, q, body)
				}
			}},
		{name: "status outside the success set", cfg: HTTPGatewayConfig{SuccessStatus: "200,202"}, status: 201,
			wantErr: "HTTP 201", wantPermanent: false},
		{name: "client error is permanent", cfg: HTTPGatewayConfig{}, status: 422, wantErr: "HTTP 422", wantPermanent: true},
		{name: "server error is retried and hides the secret", status: 502, wantErr: "HTTP 502",
			cfg: HTTPGatewayConfig{SecretFile: keyFile, URL: "{{.Base}}/send?key={{.Secret}}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := &gatewayServer{status: tt.status}
			srv := httptest.NewServer(gw)
			t.Cleanup(srv.Close)
			cfg := tt.cfg
			if cfg.URL == "" {
				cfg.URL = srv.URL + "/send"
			}
			cfg.URL = strings.ReplaceAll(cfg.URL, "{{.Base}}", srv.URL)
			p, err := NewHTTPGateway(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := SMSSender{Provider: p}.Send(context.Background(), smsDelivery(t, sampleIncident(), "+447700900123"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || IsPermanent(err) != tt.wantPermanent {
					t.Fatalf("err %v (permanent %v), want %q (permanent %v)", err, IsPermanent(err), tt.wantErr, tt.wantPermanent)
				}
				if strings.Contains(err.Error(), "gw-api-key") {
					t.Errorf("error shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ref != "id-42" {
				t.Errorf("reference %q", ref)
			}
			if len(gw.reqs) != 1 {
				t.Fatalf("%d requests", len(gw.reqs))
			}
			tt.check(t, gw.reqs[0], gw.bodies[0])
		})
	}
}

func TestHTTPGatewayUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	p, err := NewHTTPGateway(HTTPGatewayConfig{URL: u + "/send?key=topsecret", Timeout: "2s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.SendSMS(context.Background(), SMS{To: "+447700900123", Body: "x"})
	if err == nil || IsPermanent(err) || strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("unreachable gateway: %v; want a retryable error that does not show the query", err)
	}
}
