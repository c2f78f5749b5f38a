package enrol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Result is the hub's answer to an enrolment.
type Result struct {
	HostID  string `json:"host_id"`
	Name    string `json:"name"`
	Status  string `json:"status"` // "pending" until an operator approves the host, "active" once scraped
	Created bool   `json:"created"`
}

// FieldError is one problem the hub found in the enrolment (config.FieldError's JSON form).
type FieldError struct {
	Field string `json:"field"`
	Msg   string `json:"message"`
}

// HubError is a refusal by the hub (a 4xx): retrying the same request cannot help.
type HubError struct {
	StatusCode int
	Message    string
	Fields     []FieldError
}

func (e *HubError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hub refused the request (%d %s)", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	for _, f := range e.Fields {
		fmt.Fprintf(&b, "; %s: %s", f.Field, f.Msg)
	}
	return b.String()
}

// Client posts enrolments. The zero value is usable.
type Client struct {
	HTTP *http.Client // nil: a client with a 30 s timeout per attempt
	// MinBackoff and MaxBackoff bound the wait between attempts (defaults 1 s and 2 min); the wait
	// doubles per failure with full jitter, so that a fleet of agents whose hub comes back does
	// not enrol in lockstep.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger // retries are logged at warn; nil: not logged
}

// Enrol posts e to hubURL's /api/v1/enrol with the Bearer token, using a default Client.
func Enrol(ctx context.Context, hubURL, token string, e Enrolment) (Result, error) {
	return (&Client{}).Enrol(ctx, hubURL, token, e)
}

// Enrol posts e to hubURL's /api/v1/enrol with the Bearer token. Network errors and 5xx answers
// are retried until ctx ends; a 4xx is returned at once as a *HubError carrying the hub's message
// and field errors.
func (c *Client) Enrol(ctx context.Context, hubURL, token string, e Enrolment) (Result, error) {
	endpoint, err := enrolURL(hubURL)
	if err != nil {
		return Result{}, err
	}
	body, err := json.Marshal(e)
	if err != nil {
		return Result{}, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	lo, hi := c.MinBackoff, c.MaxBackoff
	if lo <= 0 {
		lo = time.Second
	}
	if hi < lo {
		hi = max(2*time.Minute, lo)
	}
	wait := lo
	for attempt := 1; ; attempt++ {
		res, err := c.once(ctx, hc, endpoint, token, body)
		var he *HubError
		if err == nil || errors.As(err, &he) {
			return res, err
		}
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("enrolling with %s: %w (last error: %v)", hubURL, ctx.Err(), err)
		}
		d := lo + rand.N(wait-lo+1) // full jitter above the floor
		if c.Logger != nil {
			c.Logger.Warn("enrolment failed; retrying", "hub", hubURL, "attempt", attempt, "retry_in", d.Round(time.Millisecond), "err", err)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return Result{}, fmt.Errorf("enrolling with %s: %w (last error: %v)", hubURL, ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, hi)
	}
}

func enrolURL(hubURL string) (string, error) {
	u, err := url.Parse(hubURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("hub URL %q: must be an http:// or https:// URL with a host", hubURL)
	}
	if u.User != nil {
		return "", fmt.Errorf("hub URL %q: must not carry credentials; the token file authenticates", u.Redacted())
	}
	return u.JoinPath("api/v1/enrol").String(), nil
}

func (c *Client) once(ctx context.Context, hc *http.Client, endpoint, token string, body []byte) (Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Result{}, fmt.Errorf("reading the hub's answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
		var r Result
		if err := json.Unmarshal(b, &r); err != nil || r.HostID == "" {
			// Not the hub, or a proxy's page: worth retrying, as a proxy may be waiting for it.
			return Result{}, fmt.Errorf("the hub's answer (%d) is not an enrolment result: %.200q", resp.StatusCode, b)
		}
		return r, nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		he := &HubError{StatusCode: resp.StatusCode}
		var ae struct {
			Error  string       `json:"error"`
			Fields []FieldError `json:"fields"`
		}
		if json.Unmarshal(b, &ae) == nil {
			he.Message, he.Fields = ae.Error, ae.Fields
		} else {
			he.Message = fmt.Sprintf("%.200s", strings.TrimSpace(string(b)))
		}
		return Result{}, he
	default:
		msg := strings.TrimSpace(string(b))
		var ae struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &ae) == nil && ae.Error != "" {
			msg = ae.Error
		}
		return Result{}, fmt.Errorf("hub answered %d: %.200s", resp.StatusCode, msg)
	}
}

// ReadToken reads an enrolment token from a file, which keeps it out of the command line (visible
// to every user in ps) and out of logs. warning is set when others may read the file.
func ReadToken(path string) (token, warning string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("enrolment token: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", "", fmt.Errorf("enrolment token: %w", err)
	}
	if st.Mode().Perm()&0o004 != 0 {
		warning = fmt.Sprintf("the enrolment token file %s is readable by every user (mode %04o); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", "", fmt.Errorf("enrolment token: %w", err)
	}
	token = strings.TrimSpace(string(b))
	if token == "" {
		return "", "", fmt.Errorf("enrolment token: %s is empty", path)
	}
	if strings.ContainsAny(token, " \t\r\n") {
		return "", "", fmt.Errorf("enrolment token: %s holds more than one word; it must hold the token alone", path)
	}
	return token, warning, nil
}
