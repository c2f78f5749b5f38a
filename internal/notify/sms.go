package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// SMS is one text message to send.
type SMS struct {
	To       string // E.164
	Body     string
	Incident string // incident id, for gateways that take a reference
	Key      string // the notification's dedupe key
}

// SMSProvider sends text messages through one provider's API. It returns the provider's id of the
// message when it gives one. Errors follow Sender's rules: permanent ones are marked (Permanent).
type SMSProvider interface {
	SendSMS(ctx context.Context, m SMS) (id string, err error)
}

// SMSSender is the Sender of the SMS channel: it sends the rendered text through a provider.
type SMSSender struct {
	Provider SMSProvider
}

// Send sends d's text to d.Recipient.
func (s SMSSender) Send(ctx context.Context, d Delivery) (string, error) {
	to, err := ParsePhoneNumber(d.Recipient)
	if err != nil {
		return "", Permanent(err)
	}
	if d.Message.Text == "" {
		return "", Permanent(errors.New("the SMS text is empty"))
	}
	return s.Provider.SendSMS(ctx, SMS{To: to, Body: d.Message.Text, Incident: d.IncidentID, Key: d.DedupeKey})
}

// maxErrorBody bounds how much of an error response is read and quoted.
const maxErrorBody = 4 << 10

// httpClient is the client for a sender with this timeout, unless the caller gave one.
func httpClient(c *http.Client, timeout time.Duration) *http.Client {
	if c != nil {
		return c
	}
	return &http.Client{
		Timeout: timeout,
		// A redirect would resend a credential to wherever it points; providers do not redirect
		// API calls, so one is an error to look at.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// doHTTP sends req and returns the response with its body read (bounded). Transport errors are
// retryable and never quote the URL's query, which may hold a key.
func doHTTP(client *http.Client, req *http.Request, what string) (*http.Response, []byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, nil, fmt.Errorf("%s %s %s: %w", what, req.Method, redactURL(req.URL.String()), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody*16))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s %s: reading the response: %w", what, req.Method, redactURL(req.URL.String()), err)
	}
	return resp, body, nil
}

// httpStatusError classifies a refused request: 4xx is permanent (the request itself is wrong,
// and sending it again gets the same answer) except 408 and 429; 5xx and anything else is retried,
// after Retry-After when the server gives one.
func httpStatusError(resp *http.Response, err error) error {
	se := &SendError{Err: err}
	code := resp.StatusCode
	if code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests {
		se.Permanent = true
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" && !se.Permanent {
		if secs, err := strconv.Atoi(ra); err == nil && secs > 0 {
			se.RetryAfter = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(ra); err == nil {
			se.RetryAfter = max(time.Until(t), 0)
		}
	}
	return se
}

// snippet is a response body fit for an error message: short, one line.
func snippet(body []byte) string {
	s := oneLine(string(body))
	return truncateRunes(s, 200)
}
