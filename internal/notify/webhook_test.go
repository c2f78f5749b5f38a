package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amtemplate "github.com/prometheus/alertmanager/template"
)

// amMessage is Alertmanager's own webhook message (notify/webhook.Message), rebuilt from its
// exported template.Data so that the test does not link Alertmanager's notifier.
type amMessage struct {
	*amtemplate.Data
	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

type hookRequest struct {
	Header http.Header
	Body   []byte
}

// hookServer records requests and answers with the statuses given, in turn (200 when exhausted).
func hookServer(t *testing.T, statuses ...int) (*httptest.Server, func() []hookRequest) {
	var mu sync.Mutex
	var reqs []hookRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, hookRequest{Header: r.Header.Clone(), Body: body})
		n := len(reqs)
		mu.Unlock()
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request shape", http.StatusBadRequest)
			return
		}
		if n <= len(statuses) {
			if statuses[n-1] == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "120")
			}
			http.Error(w, "status from the test", statuses[n-1])
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() []hookRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]hookRequest(nil), reqs...)
	}
}

func webhookDelivery(t *testing.T, inc Incident, name string) Delivery {
	t.Helper()
	n, err := WebhookNotification(inc, name)
	if err != nil {
		t.Fatal(err)
	}
	return Delivery{ID: "r", DedupeKey: n.DedupeKey, IncidentID: n.IncidentID, Step: n.Step, Channel: n.Channel,
		Recipient: n.Recipient, Message: n.Message, Attempt: 1}
}

func TestWebhookPayloadIsAlertmanagers(t *testing.T) {
	srv, reqs := hookServer(t)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("hook-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewWebhookSender([]WebhookConfig{{Name: "chat", URL: srv.URL + "/hook", BearerTokenFile: tok}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inc := sampleIncident()
	d := webhookDelivery(t, inc, "chat")
	if _, err := s.Send(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	got := reqs()
	if len(got) != 1 {
		t.Fatalf("%d requests", len(got))
	}
	if a := got[0].Header.Get("Authorization"); a != "Bearer hook-token" {
		t.Errorf("Authorization %q", a)
	}
	if k := got[0].Header.Get("Idempotency-Key"); k != d.DedupeKey {
		t.Errorf("Idempotency-Key %q, want %q", k, d.DedupeKey)
	}
	var m amMessage
	dec := json.NewDecoder(bytes.NewReader(got[0].Body))
	dec.DisallowUnknownFields() // nothing Alertmanager's receivers would not know
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("payload does not decode as Alertmanager's webhook message: %v\n%s", err, got[0].Body)
	}
	if m.Version != "4" || m.Receiver != "chat" || m.Status != "firing" || m.ExternalURL != "https://sage.example.com" {
		t.Errorf("version %q receiver %q status %q externalURL %q", m.Version, m.Receiver, m.Status, m.ExternalURL)
	}
	if len(m.Alerts) != 1 {
		t.Fatalf("%d alerts", len(m.Alerts))
	}
	a := m.Alerts[0]
	if a.Labels["alertname"] != "HostFilesystemSpaceLow" || a.Labels["mountpoint"] != "/var" ||
		a.Annotations["runbook_url"] != inc.RunbookURL || !a.StartsAt.Equal(inc.StartsAt) || !a.EndsAt.IsZero() ||
		a.GeneratorURL != inc.IncidentURL || a.Fingerprint == "" {
		t.Errorf("alert %+v", a)
	}
	if m.GroupLabels["host"] != "db1" || m.CommonLabels["client"] != "acme" || !strings.HasPrefix(m.GroupKey, "{}:{") {
		t.Errorf("groupLabels %v commonLabels %v groupKey %q", m.GroupLabels, m.CommonLabels, m.GroupKey)
	}
	// The payload is Alertmanager's shape, so Alertmanager's own template functions work on it.
	if firing := m.Alerts.Firing(); len(firing) != 1 {
		t.Errorf("Alerts.Firing() = %d", len(firing))
	}
}

func TestWebhookSendOutcomes(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("basic-pw"), 0o600); err != nil {
		t.Fatal(err)
	}
	many := sampleIncident()
	for _, mp := range []string{"/a", "/b", "/c"} {
		many.Alerts = append(many.Alerts, Alert{Labels: map[string]string{"alertname": "X", "mountpoint": mp}})
	}
	tests := []struct {
		name          string
		status        int
		cfg           WebhookConfig
		inc           Incident
		recipient     string
		wantErr       bool
		wantPermanent bool
		wantRetry     time.Duration
		check         func(t *testing.T, r hookRequest)
	}{
		{name: "basic auth", status: 200, cfg: WebhookConfig{BasicAuth: &BasicAuthConfig{Username: "u", PasswordFile: pw}},
			check: func(t *testing.T, r hookRequest) {
				req := &http.Request{Header: r.Header}
				if u, p, ok := req.BasicAuth(); !ok || u != "u" || p != "basic-pw" {
					t.Errorf("basic auth %q %q %v", u, p, ok)
				}
			}},
		{name: "max_alerts truncates", status: 204, cfg: WebhookConfig{MaxAlerts: 2}, inc: many,
			check: func(t *testing.T, r hookRequest) {
				var p WebhookPayload
				if err := json.Unmarshal(r.Body, &p); err != nil {
					t.Fatal(err)
				}
				if len(p.Alerts) != 2 || p.TruncatedAlerts != 1 {
					t.Errorf("%d alerts, %d truncated; want 2, 1", len(p.Alerts), p.TruncatedAlerts)
				}
			}},
		{name: "server error is retried", status: 503, wantErr: true},
		{name: "client error is permanent", status: 400, wantErr: true, wantPermanent: true},
		{name: "rate limit is retried after Retry-After", status: 429, wantErr: true, wantRetry: 2 * time.Minute},
		{name: "unknown webhook", recipient: "nope", wantErr: true, wantPermanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, reqs := hookServer(t, tt.status)
			cfg := tt.cfg
			cfg.Name, cfg.URL = "chat", srv.URL
			s, err := NewWebhookSender([]WebhookConfig{cfg}, nil)
			if err != nil {
				t.Fatal(err)
			}
			inc := tt.inc
			if inc.ID == "" {
				inc = sampleIncident()
			}
			d := webhookDelivery(t, inc, "chat")
			if tt.recipient != "" {
				d.Recipient = tt.recipient
			}
			_, err = s.Send(context.Background(), d)
			if (err != nil) != tt.wantErr || IsPermanent(err) != tt.wantPermanent || retryAfter(err) != tt.wantRetry {
				t.Fatalf("err %v (permanent %v, retry after %v); want error %v, permanent %v, retry after %v",
					err, IsPermanent(err), retryAfter(err), tt.wantErr, tt.wantPermanent, tt.wantRetry)
			}
			if tt.check != nil {
				r := reqs()
				if len(r) != 1 {
					t.Fatalf("%d requests", len(r))
				}
				tt.check(t, r[0])
			}
		})
	}
}

func TestWebhookTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	s, err := NewWebhookSender([]WebhookConfig{{Name: "slow", URL: srv.URL, Timeout: "100ms"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Send(context.Background(), webhookDelivery(t, sampleIncident(), "slow"))
	if err == nil || IsPermanent(err) {
		t.Fatalf("slow webhook: %v, want a retryable timeout", err)
	}
}
