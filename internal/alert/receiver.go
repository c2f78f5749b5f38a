package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// maxWebhookBody bounds an Alertmanager webhook request. Alertmanager itself caps alerts per
// message with max_alerts; 4 MiB is thousands of alerts.
const maxWebhookBody = 4 << 20

// WebhookMessage is Alertmanager's webhook payload, version 4
// (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config).
type WebhookMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one alert of a webhook message.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// ParseWebhook decodes and checks an Alertmanager webhook message.
func ParseWebhook(r io.Reader) (WebhookMessage, error) {
	var m WebhookMessage
	dec := json.NewDecoder(r)
	if err := dec.Decode(&m); err != nil {
		return WebhookMessage{}, fmt.Errorf("not an Alertmanager webhook message: %w", err)
	}
	if m.Version != "4" {
		return WebhookMessage{}, fmt.Errorf("version: %q is not supported (Alertmanager sends \"4\")", m.Version)
	}
	for i, a := range m.Alerts {
		if a.Status != "firing" && a.Status != "resolved" {
			return WebhookMessage{}, fmt.Errorf("alerts[%d].status: %q is neither firing nor resolved", i, a.Status)
		}
		if a.Labels["alertname"] == "" {
			return WebhookMessage{}, fmt.Errorf("alerts[%d].labels: no alertname", i)
		}
	}
	return m, nil
}

// Alerts converts the message's alerts for Receive.
func (m WebhookMessage) toAlerts() []Alert {
	out := make([]Alert, 0, len(m.Alerts))
	for _, a := range m.Alerts {
		out = append(out, Alert{
			Labels:       a.Labels,
			Annotations:  a.Annotations,
			StartsAt:     a.StartsAt,
			EndsAt:       a.EndsAt,
			Resolved:     a.Status == "resolved",
			GeneratorURL: a.GeneratorURL,
			Fingerprint:  a.Fingerprint,
		})
	}
	return out
}

// WebhookHandler receives Alertmanager's webhook (POST), so an existing Prometheus + Alertmanager
// gets the hub's incidents, acknowledgement and escalation. Mount it behind authentication:
// Alertmanager's http_config sends a bearer token or basic auth.
func (e *Engine) WebhookHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST an Alertmanager webhook message", http.StatusMethodNotAllowed)
			return
		}
		m, err := ParseWebhook(http.MaxBytesReader(w, r.Body, maxWebhookBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				http.Error(w, "message too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := e.Receive(r.Context(), SourceAlertmanager, m.toAlerts()); err != nil {
			e.logger.Error("recording Alertmanager alerts", "receiver", m.Receiver, "alerts", len(m.Alerts), "err", err)
			// 5xx makes Alertmanager retry the message, which Receive handles idempotently.
			http.Error(w, "could not record the alerts; retry", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
