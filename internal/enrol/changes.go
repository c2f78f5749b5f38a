package enrol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/serversage/sage/internal/changes"
)

// MaxChangesBatch is the most events the hub takes in one POST /api/v1/changes; its body may be
// at most MaxChangesBody bytes.
const (
	MaxChangesBatch = 1000
	MaxChangesBody  = 8 << 20
)

// maxChangesAnswer bounds the hub's answer, a small object (an error lists at most 20 fields).
const maxChangesAnswer = 64 << 10

// ShipChanges sends events of the journal named journal (changes.Journal.ID) to the hub, with
// the enrolment token and the machine id the host enrolled with, and returns the highest
// sequence number the hub now holds from the batch: the events up to it may be dropped. One
// attempt: the caller keeps the events and tries again on its own schedule. A 4xx is a *HubError
// (403 while the host is pending or not enrolled, 400 with fields for an event the hub refuses,
// 413 for a batch over MaxChangesBatch events or MaxChangesBody bytes); anything else that is not
// a valid answer is a plain error.
func (c *Client) ShipChanges(ctx context.Context, hubURL, token, machineID, journal string, events []changes.Event) (acked uint64, err error) {
	u, err := url.Parse(hubURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return 0, fmt.Errorf("hub URL %q: must be an http:// or https:// URL with a host", hubURL)
	}
	if u.User != nil {
		return 0, fmt.Errorf("hub URL %q: must not carry credentials; the token file authenticates", u.Redacted())
	}
	if strings.TrimSpace(machineID) == "" {
		return 0, errors.New("shipping change events: no machine id")
	}
	if len(events) > MaxChangesBatch {
		return 0, fmt.Errorf("shipping change events: %d in one batch; the hub takes at most %d", len(events), MaxChangesBatch)
	}
	body, err := json.Marshal(struct {
		Journal string          `json:"journal"`
		Events  []changes.Event `json:"events"`
	}{journal, events})
	if err != nil {
		return 0, fmt.Errorf("shipping change events: %w", err)
	}
	if len(body) > MaxChangesBody {
		return 0, fmt.Errorf("shipping change events: the batch is %d bytes, over the hub's %d: send fewer at once", len(body), MaxChangesBody)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.JoinPath("api/v1/changes").String(), bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(MachineIDHeader, machineID)
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("shipping change events to %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxChangesAnswer+1))
	if err != nil {
		return 0, fmt.Errorf("reading the hub's answer to change events: %w", err)
	}
	if len(b) > maxChangesAnswer {
		return 0, fmt.Errorf("the hub's answer to change events is over %d bytes", maxChangesAnswer)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		var a struct {
			Acked *uint64 `json:"acked"`
		}
		if err := json.Unmarshal(b, &a); err != nil || a.Acked == nil {
			return 0, fmt.Errorf("the hub's answer is not an acknowledgement: %.200q", b)
		}
		// The hub acknowledges what it was sent; a higher number would drop events it never saw.
		var highest uint64
		for _, e := range events {
			highest = max(highest, e.Seq)
		}
		if *a.Acked > highest {
			return 0, fmt.Errorf("the hub acknowledged sequence %d, beyond the batch's highest %d", *a.Acked, highest)
		}
		return *a.Acked, nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		he := &HubError{StatusCode: resp.StatusCode}
		var ae struct {
			Error  string       `json:"error"`
			Fields []FieldError `json:"fields"`
		}
		if json.Unmarshal(b, &ae) == nil && ae.Error != "" {
			he.Message, he.Fields = ae.Error, ae.Fields
		} else {
			he.Message = fmt.Sprintf("%.200s", strings.TrimSpace(string(b)))
		}
		return 0, fmt.Errorf("shipping change events: %w", he)
	default:
		return 0, fmt.Errorf("shipping change events: the hub answered %d: %.200s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
}
