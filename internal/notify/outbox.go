package notify

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/serversage/sage/internal/store"
)

// Outbox row statuses.
const (
	OutboxPending   = "pending"   // waiting for its next attempt
	OutboxSending   = "sending"   // claimed by a dispatcher
	OutboxSent      = "sent"      // accepted by the server or provider
	OutboxFailed    = "failed"    // refused for good, or given up after the maximum age
	OutboxCancelled = "cancelled" // withdrawn before it was sent (see Cancel)
)

// Execer runs a statement: a *sql.Tx, so that a notification is enqueued in the transaction that
// decides it, or a *sql.DB (*store.DB).
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Querier runs a query: a *sql.Tx or a *sql.DB.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Enqueue adds n to the outbox unless a notification with its dedupe key is already there, and
// reports whether it added it. Call it in the transaction that advances the escalation step and
// call the Dispatcher's Wake after that transaction commits. dialect is the database's
// (db.Dialect()); the statement is the same on both today, and the parameter keeps callers
// unchanged if it ever is not.
func Enqueue(ctx context.Context, q Execer, dialect store.Dialect, n Notification) (created bool, err error) {
	_ = dialect
	if err := n.validate(); err != nil {
		return false, err
	}
	payload, err := json.Marshal(n.Message)
	if err != nil {
		return false, fmt.Errorf("notify: encoding %s: %w", n.DedupeKey, err)
	}
	now := store.Millis(time.Now())
	res, err := q.ExecContext(ctx, `INSERT INTO notifications
		(id, dedupe_key, incident_id, step, channel, recipient, payload, status, attempts, next_attempt_at, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8)
		ON CONFLICT (dedupe_key) DO NOTHING`,
		store.NewID(), n.DedupeKey, n.IncidentID, n.Step, n.Channel, n.Recipient, string(payload), now)
	if err != nil {
		return false, fmt.Errorf("notify: enqueueing %s: %w", n.DedupeKey, err)
	}
	rows, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("notify: enqueueing %s: %w", n.DedupeKey, err)
	}
	return rows == 1, nil
}

// Cancel withdraws the incident's notifications that are still pending (not those being sent),
// for instance when it is acknowledged while an outage held its notifications back, so that
// nobody is paged later for what is already handled. It returns how many it withdrew.
func Cancel(ctx context.Context, q Execer, incidentID, reason string) (int64, error) {
	res, err := q.ExecContext(ctx, `UPDATE notifications SET status = 'cancelled', last_error = $2
		WHERE incident_id = $1 AND status = 'pending'`, incidentID, truncateRunes(oneLine("cancelled: "+reason), 500))
	if err != nil {
		return 0, fmt.Errorf("notify: cancelling the notifications of incident %s: %w", incidentID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("notify: cancelling the notifications of incident %s: %w", incidentID, err)
	}
	return n, nil
}

// Record is an outbox row as the incident timeline and the send log show it.
type Record struct {
	ID            string
	DedupeKey     string
	IncidentID    string
	Step          int
	Channel       string
	Recipient     string
	Status        string
	Attempts      int
	NextAttemptAt time.Time // when pending: the next attempt
	LastAttemptAt time.Time // zero before the first attempt
	LastError     string
	ProviderRef   string // Message-ID, Twilio SID, gateway id
	CreatedAt     time.Time
	SentAt        time.Time // zero unless sent
	Message       *Message  // only from ListByIncident
}

const recordColumns = `id, dedupe_key, incident_id, step, channel, recipient, status, attempts, next_attempt_at,
	last_attempt_at, last_error, provider_ref, created_at, sent_at`

func scanRecord(r store.Row, extra ...any) (Record, error) {
	var rec Record
	var next, created int64
	var last, sent sql.NullInt64
	dest := append([]any{&rec.ID, &rec.DedupeKey, &rec.IncidentID, &rec.Step, &rec.Channel, &rec.Recipient,
		&rec.Status, &rec.Attempts, &next, &last, &rec.LastError, &rec.ProviderRef, &created, &sent}, extra...)
	if err := r.Scan(dest...); err != nil {
		return Record{}, err
	}
	rec.NextAttemptAt = store.FromMillis(next)
	rec.CreatedAt = store.FromMillis(created)
	if last.Valid {
		rec.LastAttemptAt = store.FromMillis(last.Int64)
	}
	if sent.Valid {
		rec.SentAt = store.FromMillis(sent.Int64)
	}
	return rec, nil
}

// ListByIncident returns the incident's notifications in the order they were decided, each with
// its rendered message, for the incident's timeline.
func ListByIncident(ctx context.Context, q Querier, incidentID string) ([]Record, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+recordColumns+`, payload FROM notifications
		WHERE incident_id = $1 ORDER BY created_at, id`, incidentID)
	recs, err := store.ScanAll(rows, err, func(r store.Row) (Record, error) {
		var payload string
		rec, err := scanRecord(r, &payload)
		if err != nil {
			return Record{}, err
		}
		var m Message
		if err := json.Unmarshal([]byte(payload), &m); err == nil {
			rec.Message = &m
		}
		return rec, nil
	})
	if err != nil {
		return nil, fmt.Errorf("notify: listing the notifications of incident %s: %w", incidentID, err)
	}
	return recs, nil
}

// LogFilter selects rows of the send log; zero fields select everything.
type LogFilter struct {
	Channel    string
	Status     string
	IncidentID string
	Recipient  string
	Since      time.Time // created at or after
	Limit      int       // default 50, at most 1000
	Offset     int
}

// ListLog returns the send log, newest first, a page at a time: more reports whether another page
// follows (found by reading one row more, not by counting).
func ListLog(ctx context.Context, q Querier, f LogFilter) (recs []Record, more bool, err error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.Channel != "" {
		add("channel = ?", f.Channel)
	}
	if f.Status != "" {
		add("status = ?", f.Status)
	}
	if f.IncidentID != "" {
		add("incident_id = ?", f.IncidentID)
	}
	if f.Recipient != "" {
		add("recipient = ?", f.Recipient)
	}
	if !f.Since.IsZero() {
		add("created_at >= ?", store.Millis(f.Since))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	query := `SELECT ` + recordColumns + ` FROM notifications`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit+1, max(f.Offset, 0))
	query += fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT $%d OFFSET $%d`, len(args)-1, len(args))
	rows, err := q.QueryContext(ctx, query, args...)
	recs, err = store.ScanAll(rows, err, func(r store.Row) (Record, error) { return scanRecord(r) })
	if err != nil {
		return nil, false, fmt.Errorf("notify: reading the send log: %w", err)
	}
	if len(recs) > limit {
		return recs[:limit], true, nil
	}
	return recs, false, nil
}
