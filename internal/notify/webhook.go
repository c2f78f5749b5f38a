package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// WebhookSender posts Alertmanager webhook payloads to configured webhooks; the recipient of a
// webhook notification is the webhook's name.
type WebhookSender struct {
	hooks  map[string]*webhook
	client *http.Client // nil: each hook's own
}

type webhook struct {
	cfg    WebhookConfig
	bearer secretRef
	basic  secretRef
	client *http.Client
}

// NewWebhookSender returns a sender for cfgs (validated here; secrets are read now to fail early,
// and at every send). client nil means a client with each webhook's timeout.
func NewWebhookSender(cfgs []WebhookConfig, client *http.Client) (*WebhookSender, error) {
	all := Config{Webhooks: cfgs}
	if fe := all.Validate(); len(fe) > 0 {
		return nil, fmt.Errorf("notify: %w", fieldErrors(fe))
	}
	s := &WebhookSender{hooks: map[string]*webhook{}}
	for _, c := range all.Webhooks {
		h := &webhook{cfg: c, client: httpClient(client, c.timeout),
			bearer: secretRef{fileField: "bearer_token_file", envField: "bearer_token_env", file: c.BearerTokenFile, env: c.BearerTokenEnv}}
		if c.BasicAuth != nil {
			h.basic = secretRef{fileField: "basic_auth.password_file", envField: "basic_auth.password_env",
				file: c.BasicAuth.PasswordFile, env: c.BasicAuth.PasswordEnv}
		}
		for _, ref := range []secretRef{h.bearer, h.basic} {
			if ref.set() {
				if _, err := ref.read(); err != nil {
					return nil, fmt.Errorf("notify: webhook %s: %w", c.Name, err)
				}
			}
		}
		s.hooks[c.Name] = h
	}
	return s, nil
}

// Send posts d's payload to the webhook named d.Recipient.
func (s *WebhookSender) Send(ctx context.Context, d Delivery) (string, error) {
	h, ok := s.hooks[d.Recipient]
	if !ok {
		return "", Permanent(fmt.Errorf("webhook %q is not configured", d.Recipient))
	}
	if d.Message.Webhook == nil {
		return "", Permanent(errors.New("the notification has no webhook payload"))
	}
	p := *d.Message.Webhook
	if n := h.cfg.MaxAlerts; n > 0 && len(p.Alerts) > n {
		p.TruncatedAlerts = uint64(len(p.Alerts) - n)
		p.Alerts = p.Alerts[:n]
	}
	body, err := json.Marshal(p)
	if err != nil {
		return "", Permanent(fmt.Errorf("webhook %s: encoding the payload: %w", h.cfg.Name, err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return "", Permanent(fmt.Errorf("webhook %s: %w", h.cfg.Name, err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ServerSage")
	if d.DedupeKey != "" {
		req.Header.Set("Idempotency-Key", d.DedupeKey)
	}
	switch {
	case h.bearer.set():
		tok, err := h.bearer.read()
		if err != nil {
			return "", fmt.Errorf("webhook %s: %w", h.cfg.Name, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	case h.basic.set():
		pw, err := h.basic.read()
		if err != nil {
			return "", fmt.Errorf("webhook %s: %w", h.cfg.Name, err)
		}
		req.SetBasicAuth(h.cfg.BasicAuth.Username, pw)
	}
	resp, rbody, err := doHTTP(h.client, req, "webhook "+h.cfg.Name)
	if err != nil {
		return "", err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", httpStatusError(resp, fmt.Errorf("webhook %s %s: HTTP %d: %s", h.cfg.Name, redactURL(h.cfg.URL), resp.StatusCode, snippet(rbody)))
	}
	return "", nil
}
