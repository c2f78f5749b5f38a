package alert

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	cron "github.com/netresearch/go-cron"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/store"
)

// Kinds of suppression. Both stop notifications and keep the record; a maintenance window also
// marks what fires inside it as planned, so the SLA report can tell planned downtime from
// unplanned.
const (
	KindSilence     = "silence"
	KindMaintenance = "maintenance"
)

// Matcher is one label condition, as in Alertmanager: = != =~ !~ (regular expressions anchored).
type Matcher struct {
	Name  string `json:"name"`
	Op    string `json:"op"`
	Value string `json:"value"`
	re    *regexp.Regexp
}

func (m *Matcher) compile() error {
	switch m.Op {
	case "=", "!=":
		return nil
	case "=~", "!~":
		re, err := regexp.Compile("^(?:" + m.Value + ")$")
		if err != nil {
			return err
		}
		m.re = re
		return nil
	}
	return fmt.Errorf("unknown operator %q: =, !=, =~ or !~", m.Op)
}

func (m *Matcher) matches(v string) bool {
	switch m.Op {
	case "=":
		return v == m.Value
	case "!=":
		return v != m.Value
	case "=~":
		return m.re != nil && m.re.MatchString(v)
	case "!~":
		return m.re != nil && !m.re.MatchString(v)
	}
	return false
}

// Silence suppresses notifications for matching alerts while it is active. A recurring one (a
// weekly patch window) is active for Duration after each time its cron Recurrence fires, between
// StartsAt and EndsAt, in its time zone.
type Silence struct {
	ID         string        `json:"id"`
	Kind       string        `json:"kind"`
	Matchers   []Matcher     `json:"matchers"`
	ClientID   string        `json:"client_id,omitempty"`
	HostID     string        `json:"host_id,omitempty"`
	StartsAt   time.Time     `json:"starts_at"`
	EndsAt     time.Time     `json:"ends_at"`
	Recurrence string        `json:"recurrence,omitempty"`
	Duration   time.Duration `json:"duration,omitempty"`
	Timezone   string        `json:"timezone,omitempty"`
	Comment    string        `json:"comment"`
	CreatedBy  string        `json:"created_by,omitempty"`
	CreatedAt  time.Time     `json:"created_at"`
	ExpiredAt  time.Time     `json:"expired_at,omitzero"`

	schedule cron.Schedule
}

// ActiveAt says whether the silence suppresses at t.
func (s *Silence) ActiveAt(t time.Time) bool {
	if !s.ExpiredAt.IsZero() && !t.Before(s.ExpiredAt) {
		return false
	}
	if t.Before(s.StartsAt) || !t.Before(s.EndsAt) {
		return false
	}
	if s.Recurrence == "" {
		return true
	}
	if s.schedule == nil {
		return false
	}
	// The window that could contain t starts at the first firing after t - Duration.
	start := s.schedule.Next(t.Add(-s.Duration - time.Second))
	return !start.IsZero() && !start.After(t) && t.Before(start.Add(s.Duration))
}

// NextWindow returns the next window at or after t, for the UI.
func (s *Silence) NextWindow(t time.Time) (from, to time.Time, ok bool) {
	if s.Recurrence == "" || s.schedule == nil {
		if t.Before(s.EndsAt) {
			return s.StartsAt, s.EndsAt, true
		}
		return time.Time{}, time.Time{}, false
	}
	start := s.schedule.Next(t.Add(-s.Duration - time.Second))
	if start.IsZero() || !start.Before(s.EndsAt) {
		return time.Time{}, time.Time{}, false
	}
	return start, start.Add(s.Duration), true
}

func (s *Silence) matches(l map[string]string, clientID, hostID string) bool {
	if s.ClientID != "" && s.ClientID != clientID {
		return false
	}
	if s.HostID != "" && s.HostID != hostID {
		return false
	}
	for i := range s.Matchers {
		if !s.Matchers[i].matches(l[s.Matchers[i].Name]) {
			return false
		}
	}
	return true
}

// validate checks a silence and prepares its matchers and schedule.
func (s *Silence) validate() error {
	var fe []config.FieldError
	bad := func(field, msg string, args ...any) {
		fe = append(fe, config.FieldError{Field: field, Msg: fmt.Sprintf(msg, args...)})
	}
	switch s.Kind {
	case KindSilence, KindMaintenance:
	case "":
		s.Kind = KindSilence
	default:
		bad("kind", "must be silence or maintenance")
	}
	for i := range s.Matchers {
		m := &s.Matchers[i]
		m.Name = strings.TrimSpace(m.Name)
		if m.Op == "" {
			m.Op = "="
		}
		if m.Name == "" {
			bad(fmt.Sprintf("matchers[%d].name", i), "required")
		}
		if err := m.compile(); err != nil {
			bad(fmt.Sprintf("matchers[%d]", i), "%v", err)
		}
	}
	if len(s.Matchers) == 0 && s.ClientID == "" && s.HostID == "" {
		bad("matchers", "a silence needs a client, a host or at least one matcher; it would silence everything")
	}
	if s.StartsAt.IsZero() {
		bad("starts_at", "required")
	}
	if s.EndsAt.IsZero() {
		bad("ends_at", "required")
	} else if !s.EndsAt.After(s.StartsAt) {
		bad("ends_at", "must be after starts_at")
	}
	if strings.TrimSpace(s.Comment) == "" {
		bad("comment", "required: say why (it is shown on every suppressed incident)")
	}
	if s.Timezone == "" {
		s.Timezone = "UTC"
	}
	loc, err := time.LoadLocation(s.Timezone)
	if err != nil {
		bad("timezone", "unknown time zone %q", s.Timezone)
		loc = time.UTC
	}
	if s.Recurrence != "" {
		if s.Duration <= 0 {
			bad("duration", "required for a recurring window, and > 0")
		}
		sched, err := cron.ParseStandard("CRON_TZ=" + loc.String() + " " + s.Recurrence)
		if err != nil {
			bad("recurrence", "%v", err)
		} else {
			s.schedule = sched
		}
	} else if s.Duration != 0 {
		bad("duration", "only for a recurring window (with recurrence)")
	}
	if len(fe) > 0 {
		return config.Invalid(fe...)
	}
	return nil
}

const silenceCols = "id, kind, matchers, client_id, host_id, starts_at, ends_at, recurrence, duration_ms, timezone, comment, created_by, created_at, expired_at"

func scanSilence(r store.Row) (Silence, error) {
	var (
		s                         Silence
		matchers                  string
		client, host              sql.NullString
		starts, ends, dur, create int64
		expired                   sql.NullInt64
	)
	if err := r.Scan(&s.ID, &s.Kind, &matchers, &client, &host, &starts, &ends, &s.Recurrence, &dur, &s.Timezone, &s.Comment,
		&s.CreatedBy, &create, &expired); err != nil {
		return Silence{}, err
	}
	s.ClientID, s.HostID = client.String, host.String
	s.StartsAt, s.EndsAt, s.CreatedAt, s.ExpiredAt = store.FromMillis(starts), store.FromMillis(ends), store.FromMillis(create), fromNull(expired)
	s.Duration = time.Duration(dur) * time.Millisecond
	if err := json.Unmarshal([]byte(matchers), &s.Matchers); err != nil {
		return Silence{}, fmt.Errorf("silence %s matchers: %w", s.ID, err)
	}
	// Stored silences were valid when written; compiling again only fills the unexported parts.
	_ = s.validate()
	return s, nil
}

// CreateSilence validates and stores a silence; it applies to open incidents at the next
// escalation tick (they stop escalating) and to new ones at once.
func (e *Engine) CreateSilence(ctx context.Context, s Silence) (Silence, error) {
	if err := s.validate(); err != nil {
		return Silence{}, err
	}
	s.ID, s.CreatedAt = store.NewID(), e.now()
	_, err := e.db.ExecContext(ctx, "INSERT INTO silences ("+silenceCols+") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,NULL)",
		s.ID, s.Kind, mustJSON(s.Matchers), nullable(s.ClientID), nullable(s.HostID), store.Millis(s.StartsAt), store.Millis(s.EndsAt),
		s.Recurrence, s.Duration.Milliseconds(), s.Timezone, s.Comment, s.CreatedBy, store.Millis(s.CreatedAt))
	if err != nil {
		if ce, ok := store.AsConstraint(err); ok && ce.Kind == store.ForeignKey {
			return Silence{}, config.Invalid(config.FieldError{Field: "client_id", Msg: "no such client or host"})
		}
		return Silence{}, fmt.Errorf("alert: creating silence: %w", err)
	}
	e.Wake()
	return s, nil
}

// ExpireSilence ends a silence now; the record stays.
func (e *Engine) ExpireSilence(ctx context.Context, id string) error {
	res, err := e.db.ExecContext(ctx, "UPDATE silences SET expired_at = $2 WHERE id = $1 AND expired_at IS NULL", id, store.Millis(e.now()))
	if err != nil {
		return fmt.Errorf("alert: expiring silence %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := e.GetSilence(ctx, id); err != nil {
			return err
		}
	}
	e.Wake()
	return nil
}

// GetSilence returns one silence.
func (e *Engine) GetSilence(ctx context.Context, id string) (Silence, error) {
	s, err := scanSilence(e.db.QueryRowContext(ctx, "SELECT "+silenceCols+" FROM silences WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Silence{}, ErrNotFound
	}
	return s, err
}

// ListSilences returns silences not yet over (current and future), or all with all=true.
func (e *Engine) ListSilences(ctx context.Context, all bool) ([]Silence, error) {
	q := "SELECT " + silenceCols + " FROM silences"
	var args []any
	if !all {
		q += " WHERE ends_at > $1 AND expired_at IS NULL"
		args = append(args, store.Millis(e.now()))
	}
	rows, err := e.db.QueryContext(ctx, q+" ORDER BY starts_at DESC", args...)
	out, err := store.ScanAll(rows, err, scanSilence)
	if err != nil {
		return nil, fmt.Errorf("alert: listing silences: %w", err)
	}
	return out, nil
}

// activeSilences returns the silences active at now.
func (e *Engine) activeSilences(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, now time.Time) ([]Silence, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+silenceCols+" FROM silences WHERE starts_at <= $1 AND ends_at > $1 AND expired_at IS NULL", store.Millis(now))
	all, err := store.ScanAll(rows, err, scanSilence)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, s := range all {
		if s.ActiveAt(now) {
			out = append(out, s)
		}
	}
	return out, nil
}
