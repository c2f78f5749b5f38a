package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Twilio sends SMS through Twilio's Programmable Messaging API: one
// POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json per message, form-encoded To, From
// or MessagingServiceSid, and Body, with HTTP basic authentication AccountSid:AuthToken. Twilio
// answers 201 with the Message resource ({"sid": "SM...", "status": "queued", ...}) or an error
// status with {"code", "message", "more_info", "status"}.
type Twilio struct {
	cfg    TwilioConfig
	token  secretRef
	client *http.Client
}

// NewTwilio returns a Twilio provider for cfg (validated here; the auth token is read now to fail
// early, and at every send). client nil means a client with cfg's timeout.
func NewTwilio(cfg TwilioConfig, client *http.Client) (*Twilio, error) {
	if fe := cfg.Validate(); len(fe) > 0 {
		return nil, fmt.Errorf("notify: sms.twilio: %w", fieldErrors(fe))
	}
	t := &Twilio{cfg: cfg, client: httpClient(client, cfg.timeout),
		token: secretRef{fileField: "auth_token_file", envField: "auth_token_env", file: cfg.AuthTokenFile, env: cfg.AuthTokenEnv}}
	if _, err := t.token.read(); err != nil {
		return nil, fmt.Errorf("notify: sms.twilio: %w", err)
	}
	return t, nil
}

// TwilioError is Twilio's error document (https://www.twilio.com/docs/usage/twilios-response).
type TwilioError struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

func (e *TwilioError) Error() string {
	s := fmt.Sprintf("twilio error %d (HTTP %d): %s", e.Code, e.Status, e.Message)
	if e.MoreInfo != "" {
		s += " (" + e.MoreInfo + ")"
	}
	return s
}

// twilioMessage is the part of Twilio's Message resource the send log keeps.
type twilioMessage struct {
	SID    string `json:"sid"`
	Status string `json:"status"`
}

// SendSMS creates one Message resource and returns its SID.
func (t *Twilio) SendSMS(ctx context.Context, m SMS) (string, error) {
	token, err := t.token.read()
	if err != nil {
		return "", fmt.Errorf("twilio: %w", err)
	}
	form := url.Values{}
	form.Set("To", m.To)
	if t.cfg.MessagingServiceSID != "" {
		form.Set("MessagingServiceSid", t.cfg.MessagingServiceSID)
	}
	if t.cfg.From != "" {
		form.Set("From", t.cfg.From)
	}
	form.Set("Body", m.Body)
	endpoint := strings.TrimRight(t.cfg.BaseURL, "/") + "/2010-04-01/Accounts/" + url.PathEscape(t.cfg.AccountSID) + "/Messages.json"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", Permanent(fmt.Errorf("twilio: %w", err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(t.cfg.AccountSID, token)
	resp, body, err := doHTTP(t.client, req, "twilio")
	if err != nil {
		return "", err
	}
	if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK {
		var msg twilioMessage
		if err := json.Unmarshal(body, &msg); err != nil || msg.SID == "" {
			// Accepted but unreadable: retrying could send it twice, so it counts as sent.
			return "", nil
		}
		return msg.SID, nil
	}
	te := &TwilioError{Status: resp.StatusCode}
	if err := json.Unmarshal(body, te); err != nil || (te.Code == 0 && te.Message == "") {
		te = &TwilioError{Status: resp.StatusCode, Message: snippet(body)}
	}
	if te.Status == 0 {
		te.Status = resp.StatusCode
	}
	return "", httpStatusError(resp, te)
}
