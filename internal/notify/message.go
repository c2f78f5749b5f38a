package notify

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Channels: the keys of the senders map a Dispatcher is given, and Notification.Channel.
const (
	ChannelEmail   = "email"
	ChannelSMS     = "sms"
	ChannelWebhook = "webhook"
)

// Incident statuses, as a notification tells them.
const (
	StatusFiring       = "firing"
	StatusAcknowledged = "acknowledged"
	StatusResolved     = "resolved"
)

// Incident is the view of an incident that notifications are rendered from. The alerting package
// fills it; nothing here reads the incident tables.
type Incident struct {
	ID string
	// Title names what is wrong more precisely than the alert name, such as
	// "HostFilesystemSpaceLow /var"; the subject and the SMS use it, or Alert when it is empty.
	Title    string
	Client   string
	Site     string
	Host     string
	Alert    string // the alert rule's name
	Severity string // critical, warning, info
	Status   string // StatusFiring, StatusAcknowledged or StatusResolved

	Summary     string
	Description string
	// Value and Watermark are shown as given ("93%", "90%"), so units are the caller's.
	Value     string
	Watermark string

	StartsAt time.Time
	EndsAt   time.Time // zero while firing

	Labels      map[string]string
	Annotations map[string]string
	// GroupLabels are the labels the incident groups alerts by, for the webhook's groupLabels and
	// groupKey; empty means alertname, client and host.
	GroupLabels map[string]string

	RunbookURL  string
	IncidentURL string
	AckURL      string // a signed link that acknowledges the incident; short, for SMS

	ActionPlan []string // the runbook's L1 steps, in order
	Step       int      // escalation step (1 for the first notification)
	Tier       string   // "L1", "L2", "L3"
	Escalated  bool
	AckedBy    string // who acknowledged, for StatusAcknowledged

	// Alerts are the incident's alerts for the webhook payload; empty means one alert made from
	// the incident itself.
	Alerts []Alert
}

// Alert is one alert of an incident as Alertmanager's webhook carries it.
type Alert struct {
	Status       string // firing or resolved
	Labels       map[string]string
	Annotations  map[string]string
	StartsAt     time.Time
	EndsAt       time.Time
	GeneratorURL string
	Fingerprint  string // empty: computed from Labels as Alertmanager does
}

// Message is a notification rendered for its channel, stored as the outbox row's payload. It is
// rendered when enqueued, so a retry after an outage or a restart sends exactly what was decided
// at the time, and the timeline can show it.
type Message struct {
	Subject string          `json:"subject,omitempty"` // email
	Text    string          `json:"text,omitempty"`    // email text part; the SMS body
	HTML    string          `json:"html,omitempty"`    // email HTML part
	Webhook *WebhookPayload `json:"webhook,omitempty"` // webhook
}

// Notification is one message to one recipient over one channel, to be enqueued.
type Notification struct {
	// DedupeKey is unique across all notifications: enqueueing a second notification with the
	// same key does nothing. DedupeKey() builds the usual "incident/step/recipient/channel".
	DedupeKey  string
	IncidentID string
	Step       int
	Channel    string // ChannelEmail, ChannelSMS, ChannelWebhook (or another key of the senders map)
	// Recipient is an email address, a phone number in E.164 form, or a webhook's name.
	Recipient string
	Message   Message
}

// Delivery is what a Sender is asked to send: a claimed outbox row.
type Delivery struct {
	ID         string
	DedupeKey  string
	IncidentID string
	Step       int
	Channel    string
	Recipient  string
	Message    Message
	Attempt    int       // 1 for the first attempt
	CreatedAt  time.Time // when the notification was enqueued; the email's Date
}

// Sender delivers messages over one channel. Send returns a reference the provider gave the
// message (an SMS id, a Message-ID), for the send log. An error is retried with backoff unless
// it is marked permanent (see Permanent); Send must return when ctx is done.
type Sender interface {
	Send(ctx context.Context, d Delivery) (ref string, err error)
}

// DedupeKey is the usual key of a notification: one per incident, escalation step, recipient and
// channel. Notifications that are not a step's (a resolution, an acknowledgement) need a key of
// their own: the builders below use the status in place of the step for them.
func DedupeKey(incidentID string, step int, recipient, channel string) string {
	return incidentID + "/" + strconv.Itoa(step) + "/" + recipient + "/" + channel
}

func keyFor(inc Incident, recipient, channel string) string {
	if inc.Status == StatusFiring || inc.Status == "" {
		return DedupeKey(inc.ID, inc.Step, recipient, channel)
	}
	return inc.ID + "/" + inc.Status + "/" + recipient + "/" + channel
}

// EmailNotification renders inc as an email to the address to. Its dedupe key is DedupeKey(inc.ID,
// inc.Step, to, "email") while firing, and names the status instead of the step otherwise; set
// DedupeKey before enqueueing to choose another.
func EmailNotification(inc Incident, to string) (Notification, error) {
	addr, err := ParseEmailAddress(to)
	if err != nil {
		return Notification{}, err
	}
	m, err := RenderEmail(inc)
	if err != nil {
		return Notification{}, err
	}
	return Notification{DedupeKey: keyFor(inc, addr, ChannelEmail), IncidentID: inc.ID, Step: inc.Step,
		Channel: ChannelEmail, Recipient: addr, Message: m}, nil
}

// SMSNotification renders inc as an SMS to the E.164 number.
func SMSNotification(inc Incident, number string) (Notification, error) {
	n, err := ParsePhoneNumber(number)
	if err != nil {
		return Notification{}, err
	}
	return Notification{DedupeKey: keyFor(inc, n, ChannelSMS), IncidentID: inc.ID, Step: inc.Step,
		Channel: ChannelSMS, Recipient: n, Message: Message{Text: RenderSMS(inc)}}, nil
}

// WebhookNotification renders inc as the Alertmanager webhook payload for the configured webhook
// named name (which is also the payload's receiver).
func WebhookNotification(inc Incident, name string) (Notification, error) {
	if strings.TrimSpace(name) == "" {
		return Notification{}, errors.New("notify: webhook name is empty")
	}
	p := RenderWebhook(inc, name)
	return Notification{DedupeKey: keyFor(inc, name, ChannelWebhook), IncidentID: inc.ID, Step: inc.Step,
		Channel: ChannelWebhook, Recipient: name, Message: Message{Webhook: &p}}, nil
}

// SendError is a failed send with what the dispatcher should do about it.
type SendError struct {
	Err error
	// Permanent: retrying cannot help (the recipient does not exist, the provider refused the
	// message); the notification is marked failed at once.
	Permanent bool
	// RetryAfter is the provider's own wait (HTTP Retry-After), used when longer than the backoff.
	RetryAfter time.Duration
}

func (e *SendError) Error() string { return e.Err.Error() }
func (e *SendError) Unwrap() error { return e.Err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &SendError{Err: err, Permanent: true}
}

// IsPermanent reports whether err (or an error it wraps) was marked permanent.
func IsPermanent(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Permanent
}

func retryAfter(err error) time.Duration {
	var se *SendError
	if errors.As(err, &se) {
		return se.RetryAfter
	}
	return 0
}

// validate checks what Enqueue needs of a notification.
func (n *Notification) validate() error {
	var probs []string
	if strings.TrimSpace(n.DedupeKey) == "" {
		probs = append(probs, "dedupe key is empty")
	}
	if strings.TrimSpace(n.IncidentID) == "" {
		probs = append(probs, "incident id is empty")
	}
	if strings.TrimSpace(n.Channel) == "" {
		probs = append(probs, "channel is empty")
	}
	if strings.TrimSpace(n.Recipient) == "" {
		probs = append(probs, "recipient is empty")
	}
	if len(probs) > 0 {
		return fmt.Errorf("notify: invalid notification %q: %s", n.DedupeKey, strings.Join(probs, "; "))
	}
	return nil
}
