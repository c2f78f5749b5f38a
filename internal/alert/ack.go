package alert

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/serversage/sage/internal/store"
)

// AckTokenTTL is how long an acknowledgement link in a notification works: long enough for a
// week-end on call, short enough that an old mail cannot acknowledge a much later re-fire (a
// re-fire's notifications carry new links anyway).
const AckTokenTTL = 7 * 24 * time.Hour

// ErrAckToken is returned for an unknown or expired acknowledgement link.
var ErrAckToken = errors.New("this acknowledgement link is unknown or has expired")

// execer is a *sql.Tx or *sql.DB.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// CreateAckToken makes the secret of an acknowledgement link for one recipient of one incident, in
// the transaction that enqueues the notification carrying it. Only its SHA-256 is stored, as for
// sessions: the database alone cannot acknowledge anything.
func (e *Engine) CreateAckToken(ctx context.Context, q execer, incidentID, recipient, userID string) (string, error) {
	b := make([]byte, 32)
	rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	now := e.now()
	_, err := q.ExecContext(ctx, `INSERT INTO ack_tokens (token_hash, incident_id, recipient, user_id, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, hashAck(tok), incidentID, recipient, nullable(userID), store.Millis(now), store.Millis(now.Add(AckTokenTTL)))
	if err != nil {
		return "", fmt.Errorf("alert: creating acknowledgement link: %w", err)
	}
	return tok, nil
}

func hashAck(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

// AckLink is an acknowledgement token looked up.
type AckLink struct {
	IncidentID string
	Recipient  string
	UserID     string
}

// LookupAckToken returns what a link acknowledges without acknowledging: the GET of a link only
// shows a confirmation page, because mail scanners follow links.
func (e *Engine) LookupAckToken(ctx context.Context, tok string) (AckLink, error) {
	var (
		l       AckLink
		user    sql.NullString
		expires int64
	)
	err := e.db.QueryRowContext(ctx, "SELECT incident_id, recipient, user_id, expires_at FROM ack_tokens WHERE token_hash = $1", hashAck(tok)).
		Scan(&l.IncidentID, &l.Recipient, &user, &expires)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && e.now().After(store.FromMillis(expires))) {
		return AckLink{}, ErrAckToken
	}
	if err != nil {
		return AckLink{}, fmt.Errorf("alert: reading acknowledgement link: %w", err)
	}
	l.UserID = user.String
	return l, nil
}

// AckWithToken acknowledges the incident of a link, as its recipient.
func (e *Engine) AckWithToken(ctx context.Context, tok string) (Incident, error) {
	l, err := e.LookupAckToken(ctx, tok)
	if err != nil {
		return Incident{}, err
	}
	if _, err := e.db.ExecContext(ctx, "UPDATE ack_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL", hashAck(tok), store.Millis(e.now())); err != nil {
		return Incident{}, fmt.Errorf("alert: using acknowledgement link: %w", err)
	}
	return e.Acknowledge(ctx, l.IncidentID, l.Recipient, map[string]any{"via": "link"})
}
