package alert

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/serversage/sage/internal/store"
)

// Sources of alerts.
const (
	SourceRules        = "rules"
	SourceAlertmanager = "alertmanager"
)

// Incident statuses.
const (
	StatusFiring       = "firing"
	StatusAcknowledged = "acknowledged"
	StatusResolved     = "resolved"
)

// Alert is one alert as either source reports it.
type Alert struct {
	Labels       map[string]string
	Annotations  map[string]string
	Value        string
	StartsAt     time.Time
	EndsAt       time.Time
	Resolved     bool
	GeneratorURL string
	Fingerprint  string
}

// Incident is one group of alerts (by default one alert on one host) with its lifecycle.
type Incident struct {
	ID           string            `json:"id"`
	GroupKey     string            `json:"group_key"`
	Source       string            `json:"source"`
	ClientID     string            `json:"client_id,omitempty"`
	HostID       string            `json:"host_id,omitempty"`
	Alertname    string            `json:"alertname"`
	Severity     string            `json:"severity"`
	Title        string            `json:"title"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	Value        string            `json:"value"`
	Status       string            `json:"status"`
	SuppressedBy string            `json:"suppressed_by,omitempty"`
	Planned      bool              `json:"planned"`
	Fires        int               `json:"fires"`
	StartedAt    time.Time         `json:"started_at"`
	LastFiredAt  time.Time         `json:"last_fired_at"`
	AckedAt      time.Time         `json:"acked_at,omitzero"`
	AckedBy      string            `json:"acked_by,omitempty"`
	ResolvedAt   time.Time         `json:"resolved_at,omitzero"`
	ResolvedBy   string            `json:"resolved_by,omitempty"`
	PolicyID     string            `json:"policy_id,omitempty"`
	EscStep      int               `json:"escalation_step"`
	EscRepeats   int               `json:"escalation_repeats"`
	EscWaitUntil time.Time         `json:"escalation_wait_until,omitzero"`
	EscDoneAt    time.Time         `json:"escalation_done_at,omitzero"`
	UpdatedAt    time.Time         `json:"updated_at"`
}

// Event is one line of an incident's timeline.
type Event struct {
	ID         string         `json:"id"`
	IncidentID string         `json:"incident_id"`
	At         time.Time      `json:"at"`
	Kind       string         `json:"kind"`
	Actor      string         `json:"actor,omitempty"`
	Detail     map[string]any `json:"detail,omitempty"`
}

// Event kinds.
const (
	EventFired        = "fired"
	EventRefired      = "refired"
	EventAlertAdded   = "alert_added"
	EventSuppressed   = "suppressed"
	EventUnsuppressed = "unsuppressed"
	EventNotified     = "notified"
	EventEscalated    = "escalated"
	EventAcknowledged = "acknowledged"
	EventResolved     = "resolved"
	EventNoRecipient  = "no_recipient"
)

const incidentCols = `id, group_key, source, client_id, host_id, alertname, severity, title, labels, annotations, value, status,
	suppressed_by, planned, fires, started_at, last_fired_at, acked_at, acked_by, resolved_at, resolved_by, policy_id, esc_step,
	esc_repeats, esc_wait_until, esc_done_at, updated_at`

func scanIncident(r store.Row) (Incident, error) {
	var (
		in                           Incident
		client, host                 sql.NullString
		lbl, ann                     string
		planned                      int
		started, last, wait, updated int64
		acked, resolved, done        sql.NullInt64
	)
	err := r.Scan(&in.ID, &in.GroupKey, &in.Source, &client, &host, &in.Alertname, &in.Severity, &in.Title, &lbl, &ann, &in.Value,
		&in.Status, &in.SuppressedBy, &planned, &in.Fires, &started, &last, &acked, &in.AckedBy, &resolved, &in.ResolvedBy,
		&in.PolicyID, &in.EscStep, &in.EscRepeats, &wait, &done, &updated)
	if err != nil {
		return Incident{}, err
	}
	in.ClientID, in.HostID, in.Planned = client.String, host.String, planned != 0
	in.StartedAt, in.LastFiredAt, in.UpdatedAt = store.FromMillis(started), store.FromMillis(last), store.FromMillis(updated)
	in.AckedAt, in.ResolvedAt, in.EscDoneAt = fromNull(acked), fromNull(resolved), fromNull(done)
	if wait > 0 {
		in.EscWaitUntil = store.FromMillis(wait)
	}
	if err := json.Unmarshal([]byte(lbl), &in.Labels); err != nil {
		return Incident{}, fmt.Errorf("incident %s labels: %w", in.ID, err)
	}
	if err := json.Unmarshal([]byte(ann), &in.Annotations); err != nil {
		return Incident{}, fmt.Errorf("incident %s annotations: %w", in.ID, err)
	}
	return in, nil
}

func fromNull(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return store.FromMillis(v.Int64)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "{}"
	}
	return string(b)
}

// groupKey is the incident an alert belongs to: the values of the GroupBy labels.
func (e *Engine) groupKey(l map[string]string) string {
	var b strings.Builder
	for i, name := range e.opts.GroupBy {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(l[name])
	}
	return b.String()
}

// Receive records alerts from a source: a firing alert opens (or re-opens, or joins) its
// incident, a resolved one closes its part of it, and an incident whose alerts have all resolved
// is resolved. Repeats (the rules manager resends firing alerts every minute, Alertmanager every
// repeat_interval) change nothing but the last-seen time, so Receive is idempotent and a hub
// restart that replays alerts cannot open a second incident or notify twice.
func (e *Engine) Receive(ctx context.Context, source string, alerts []Alert) error {
	changed := false
	var errs []error
	for _, a := range alerts {
		if a.Labels["alertname"] == "" {
			errs = append(errs, fmt.Errorf("an alert without alertname: %v", a.Labels))
			continue
		}
		if a.Fingerprint == "" {
			a.Fingerprint = fingerprint(a.Labels)
		}
		c, err := e.receiveOne(ctx, source, a)
		if err != nil {
			errs = append(errs, err)
		}
		changed = changed || c
	}
	if changed {
		e.changed()
	}
	return errors.Join(errs...)
}

// fingerprint identifies an alert by its labels when the source gave none.
func fingerprint(l map[string]string) string {
	keys := sortedKeys(l)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0xff)
		b.WriteString(l[k])
		b.WriteByte(0xff)
	}
	return fmt.Sprintf("%x", fnv64(b.String()))
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func (e *Engine) receiveOne(ctx context.Context, source string, a Alert) (changed bool, err error) {
	key := e.groupKey(a.Labels)
	now := e.now()
	err = e.db.Tx(ctx, func(tx *sql.Tx) error {
		in, err := scanIncident(tx.QueryRowContext(ctx, "SELECT "+incidentCols+" FROM incidents WHERE open_key = $1", key))
		open := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if a.Resolved {
			if !open {
				return nil // resolved before we knew of it, or already closed by hand
			}
			res, err := tx.ExecContext(ctx, `UPDATE incident_alerts SET status = 'resolved', ends_at = $3, updated_at = $4
				WHERE incident_id = $1 AND fingerprint = $2 AND status = 'firing'`,
				in.ID, a.Fingerprint, store.Millis(orNow(a.EndsAt, now)), store.Millis(now))
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return nil
			}
			changed = true
			var firing int
			if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM incident_alerts WHERE incident_id = $1 AND status = 'firing'", in.ID).Scan(&firing); err != nil {
				return err
			}
			if firing == 0 {
				return e.resolveTx(ctx, tx, in.ID, "", now, map[string]any{"fingerprint": a.Fingerprint})
			}
			return nil
		}

		if !open {
			changed = true
			return e.openTx(ctx, tx, source, key, a, now)
		}
		// An open incident: a new alert joins it; a known one only refreshes.
		res, err := tx.ExecContext(ctx, `UPDATE incident_alerts SET value = $3, status = 'firing', ends_at = NULL, updated_at = $4
			WHERE incident_id = $1 AND fingerprint = $2`, in.ID, a.Fingerprint, a.Value, store.Millis(now))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			changed = true
			if err := insertAlert(ctx, tx, in.ID, a, now); err != nil {
				return err
			}
			if err := addEvent(ctx, tx, in.ID, now, EventAlertAdded, "", map[string]any{"labels": a.Labels, "value": a.Value}); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, "UPDATE incidents SET value = $2, last_fired_at = $3, updated_at = $3 WHERE id = $1", in.ID, a.Value, store.Millis(now))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("alert: recording %s on %s: %w", a.Labels["alertname"], key, err)
	}
	return changed, nil
}

func orNow(t, now time.Time) time.Time {
	if t.IsZero() || t.After(now) {
		return now
	}
	return t
}

// openTx opens an incident for a firing alert, or re-opens the group's last one if it resolved
// within the re-fire window.
func (e *Engine) openTx(ctx context.Context, tx *sql.Tx, source, key string, a Alert, now time.Time) error {
	sil, err := e.activeSilences(ctx, tx, now)
	if err != nil {
		return err
	}
	clientID, hostID := e.resolveIDs(ctx, tx, a.Labels)
	var suppressedBy string
	planned := 0
	for _, s := range sil {
		if s.matches(a.Labels, clientID, hostID) {
			if suppressedBy == "" {
				suppressedBy = s.ID
			}
			if s.Kind == KindMaintenance {
				planned = 1
				suppressedBy = s.ID
			}
		}
	}

	var lastID string
	var resolvedAt int64
	err = tx.QueryRowContext(ctx, `SELECT id, resolved_at FROM incidents WHERE group_key = $1 AND resolved_at IS NOT NULL
		ORDER BY resolved_at DESC LIMIT 1`, key).Scan(&lastID, &resolvedAt)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if lastID != "" && now.Sub(store.FromMillis(resolvedAt)) < e.opts.RefireWindow {
		// Re-fire: the same incident, open again, escalation from its first step, and a new
		// "fires" number so that its notifications are new ones, not duplicates of the last.
		_, err := tx.ExecContext(ctx, `UPDATE incidents SET open_key = $2, status = 'firing', fires = fires + 1, value = $3,
			last_fired_at = $4, acked_at = NULL, acked_by = '', resolved_at = NULL, resolved_by = '', suppressed_by = $5,
			planned = $6, esc_step = 0, esc_repeats = 0, esc_wait_until = 0, esc_done_at = NULL, updated_at = $4 WHERE id = $1`,
			lastID, key, a.Value, store.Millis(now), suppressedBy, planned)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM incident_alerts WHERE incident_id = $1 AND status = 'resolved'", lastID); err != nil {
			return err
		}
		if err := insertAlert(ctx, tx, lastID, a, now); err != nil {
			return err
		}
		if err := addEvent(ctx, tx, lastID, now, EventRefired, "", map[string]any{"value": a.Value}); err != nil {
			return err
		}
		return e.suppressedEvent(ctx, tx, lastID, now, suppressedBy)
	}

	id := store.NewID()
	title := a.Annotations["summary"]
	if title == "" {
		title = a.Labels["alertname"]
		if h := a.Labels["host"]; h != "" {
			title += " on " + h
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO incidents (id, group_key, open_key, source, client_id, host_id, alertname, severity,
		title, labels, annotations, value, status, suppressed_by, planned, fires, started_at, last_fired_at, created_at, updated_at)
		VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'firing', $12, $13, 1, $14, $15, $15, $15)`,
		id, key, source, nullable(clientID), nullable(hostID), a.Labels["alertname"], a.Labels["severity"], title,
		mustJSON(a.Labels), mustJSON(a.Annotations), a.Value, suppressedBy, planned, store.Millis(orNow(a.StartsAt, now)), store.Millis(now))
	if err != nil {
		return err
	}
	if err := insertAlert(ctx, tx, id, a, now); err != nil {
		return err
	}
	if err := addEvent(ctx, tx, id, now, EventFired, "", map[string]any{"value": a.Value, "source": source}); err != nil {
		return err
	}
	return e.suppressedEvent(ctx, tx, id, now, suppressedBy)
}

func (e *Engine) suppressedEvent(ctx context.Context, tx *sql.Tx, id string, now time.Time, by string) error {
	if by == "" {
		return nil
	}
	return addEvent(ctx, tx, id, now, EventSuppressed, "", map[string]any{"silence": by})
}

// resolveIDs finds the inventory client and host an alert's labels name, if any.
func (e *Engine) resolveIDs(ctx context.Context, tx *sql.Tx, l map[string]string) (clientID, hostID string) {
	if l["client"] == "" {
		return "", ""
	}
	if err := tx.QueryRowContext(ctx, "SELECT id FROM clients WHERE slug = $1", l["client"]).Scan(&clientID); err != nil {
		return "", ""
	}
	if l["host"] != "" {
		_ = tx.QueryRowContext(ctx, "SELECT id FROM hosts WHERE client_id = $1 AND name_fold = $2", clientID, strings.ToLower(l["host"])).Scan(&hostID)
	}
	return clientID, hostID
}

func insertAlert(ctx context.Context, tx *sql.Tx, incidentID string, a Alert, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO incident_alerts (incident_id, fingerprint, labels, annotations, value, status, starts_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, 'firing', $6, $7)
		ON CONFLICT (incident_id, fingerprint) DO UPDATE SET status = 'firing', ends_at = NULL, value = excluded.value, updated_at = excluded.updated_at`,
		incidentID, a.Fingerprint, mustJSON(a.Labels), mustJSON(a.Annotations), a.Value, store.Millis(orNow(a.StartsAt, now)), store.Millis(now))
	return err
}

func addEvent(ctx context.Context, tx *sql.Tx, incidentID string, at time.Time, kind, actor string, detail map[string]any) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO incident_events (id, incident_id, at, kind, actor, detail) VALUES ($1, $2, $3, $4, $5, $6)",
		store.NewID(), incidentID, store.Millis(at), kind, actor, mustJSON(detail))
	return err
}

func (e *Engine) resolveTx(ctx context.Context, tx *sql.Tx, id, actor string, now time.Time, detail map[string]any) error {
	res, err := tx.ExecContext(ctx, `UPDATE incidents SET status = 'resolved', open_key = NULL, resolved_at = $2, resolved_by = $3,
		esc_done_at = COALESCE(esc_done_at, $2), updated_at = $2 WHERE id = $1 AND status <> 'resolved'`, id, store.Millis(now), actor)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil
	}
	if actor != "" {
		if _, err := tx.ExecContext(ctx, `UPDATE incident_alerts SET status = 'resolved', ends_at = $2, updated_at = $2
			WHERE incident_id = $1 AND status = 'firing'`, id, store.Millis(now)); err != nil {
			return err
		}
	}
	if err := addEvent(ctx, tx, id, now, EventResolved, actor, detail); err != nil {
		return err
	}
	return e.afterCloseTx(ctx, tx, id, StatusResolved)
}

// Acknowledge marks an incident acknowledged by actor: its escalation stops. Acknowledging twice is
// not an error and records nothing new.
func (e *Engine) Acknowledge(ctx context.Context, id, actor string, detail map[string]any) (Incident, error) {
	now := e.now()
	err := e.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE incidents SET status = 'acknowledged', acked_at = $2, acked_by = $3,
			esc_done_at = COALESCE(esc_done_at, $2), updated_at = $2 WHERE id = $1 AND status = 'firing'`, id, store.Millis(now), actor)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		if err := addEvent(ctx, tx, id, now, EventAcknowledged, actor, detail); err != nil {
			return err
		}
		return e.afterCloseTx(ctx, tx, id, StatusAcknowledged)
	})
	if err != nil {
		return Incident{}, fmt.Errorf("alert: acknowledging %s: %w", id, err)
	}
	e.changed()
	return e.GetIncident(ctx, id)
}

// Resolve closes an incident by hand. If its alert still fires, the next report re-opens it (a
// re-fire), as an on-call tool does: resolving does not silence.
func (e *Engine) Resolve(ctx context.Context, id, actor string) (Incident, error) {
	now := e.now()
	if err := e.db.Tx(ctx, func(tx *sql.Tx) error {
		return e.resolveTx(ctx, tx, id, actor, now, map[string]any{"by_hand": true})
	}); err != nil {
		return Incident{}, fmt.Errorf("alert: resolving %s: %w", id, err)
	}
	e.changed()
	return e.GetIncident(ctx, id)
}

// changed runs after an acknowledgement or resolution has committed: the escalation loop looks
// again, and the dispatcher sends what the change enqueued (waking it inside the transaction
// would find nothing yet).
func (e *Engine) changed() {
	e.Wake()
	if e.esc != nil && e.esc.Dispatcher != nil {
		e.esc.Dispatcher.Wake()
	}
	if e.onIncident != nil {
		e.onIncident()
	}
}

// Wake makes the escalation loop look at incidents now rather than at its next tick.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// GetIncident returns one incident.
func (e *Engine) GetIncident(ctx context.Context, id string) (Incident, error) {
	in, err := scanIncident(e.db.QueryRowContext(ctx, "SELECT "+incidentCols+" FROM incidents WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Incident{}, ErrNotFound
	}
	if err != nil {
		return Incident{}, fmt.Errorf("alert: reading incident %s: %w", id, err)
	}
	return in, nil
}

// IncidentFilter narrows ListIncidents.
type IncidentFilter struct {
	Open     bool // firing or acknowledged
	Status   string
	ClientID string
	HostID   string
	Since    time.Time
	Limit    int
	Offset   int
}

// ListIncidents returns incidents, open ones by severity then age, others newest first.
func (e *Engine) ListIncidents(ctx context.Context, f IncidentFilter) ([]Incident, error) {
	q := "SELECT " + incidentCols + " FROM incidents WHERE 1=1"
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if f.Open {
		q += " AND open_key IS NOT NULL"
	}
	if f.Status != "" {
		q += " AND status = " + arg(f.Status)
	}
	if f.ClientID != "" {
		q += " AND client_id = " + arg(f.ClientID)
	}
	if f.HostID != "" {
		q += " AND host_id = " + arg(f.HostID)
	}
	if !f.Since.IsZero() {
		q += " AND started_at >= " + arg(store.Millis(f.Since))
	}
	q += " ORDER BY started_at DESC"
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 1000
	}
	q += " LIMIT " + arg(f.Limit) + " OFFSET " + arg(f.Offset)
	rows, err := e.db.QueryContext(ctx, q, args...)
	out, err := store.ScanAll(rows, err, scanIncident)
	if err != nil {
		return nil, fmt.Errorf("alert: listing incidents: %w", err)
	}
	if f.Open {
		sort.SliceStable(out, func(i, j int) bool { return severityRank(out[i].Severity) < severityRank(out[j].Severity) })
	}
	return out, nil
}

func severityRank(s string) int {
	switch s {
	case "critical":
		return 0
	case "warning":
		return 1
	case "info":
		return 2
	}
	return 3
}

// Events returns an incident's timeline, oldest first.
func (e *Engine) Events(ctx context.Context, incidentID string) ([]Event, error) {
	rows, err := e.db.QueryContext(ctx, "SELECT id, incident_id, at, kind, actor, detail FROM incident_events WHERE incident_id = $1 ORDER BY at, id", incidentID)
	out, err := store.ScanAll(rows, err, func(r store.Row) (Event, error) {
		var (
			ev     Event
			at     int64
			detail string
		)
		if err := r.Scan(&ev.ID, &ev.IncidentID, &at, &ev.Kind, &ev.Actor, &detail); err != nil {
			return Event{}, err
		}
		ev.At = store.FromMillis(at)
		_ = json.Unmarshal([]byte(detail), &ev.Detail)
		return ev, nil
	})
	if err != nil {
		return nil, fmt.Errorf("alert: reading timeline of %s: %w", incidentID, err)
	}
	return out, nil
}

// IncidentAlert is one alert inside an incident.
type IncidentAlert struct {
	Fingerprint string            `json:"fingerprint"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Value       string            `json:"value"`
	Status      string            `json:"status"`
	StartsAt    time.Time         `json:"starts_at"`
	EndsAt      time.Time         `json:"ends_at,omitzero"`
}

// IncidentAlerts returns the alerts of an incident.
func (e *Engine) IncidentAlerts(ctx context.Context, incidentID string) ([]IncidentAlert, error) {
	rows, err := e.db.QueryContext(ctx, `SELECT fingerprint, labels, annotations, value, status, starts_at, ends_at
		FROM incident_alerts WHERE incident_id = $1 ORDER BY starts_at, fingerprint`, incidentID)
	out, err := store.ScanAll(rows, err, func(r store.Row) (IncidentAlert, error) {
		var (
			a        IncidentAlert
			lbl, ann string
			starts   int64
			ends     sql.NullInt64
		)
		if err := r.Scan(&a.Fingerprint, &lbl, &ann, &a.Value, &a.Status, &starts, &ends); err != nil {
			return IncidentAlert{}, err
		}
		a.StartsAt, a.EndsAt = store.FromMillis(starts), fromNull(ends)
		_ = json.Unmarshal([]byte(lbl), &a.Labels)
		_ = json.Unmarshal([]byte(ann), &a.Annotations)
		return a, nil
	})
	if err != nil {
		return nil, fmt.Errorf("alert: reading alerts of %s: %w", incidentID, err)
	}
	return out, nil
}
