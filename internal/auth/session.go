package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/serversage/sage/internal/store"
)

// SessionCookie is the name of the cookie that holds a session token.
const SessionCookie = "sage_session"

// Session is a signed-in browser. Token is the secret the cookie carries; it is set only by
// NewSession and never stored.
type Session struct {
	Token     string
	UserID    string
	CreatedAt time.Time
	ExpiresAt time.Time // absolute: the session ends then even if in use
}

// NewSession starts a session for the user with userID (after Authenticate).
func (a *Auth) NewSession(ctx context.Context, userID string) (Session, error) {
	now := a.clock()
	s := Session{Token: newToken(), UserID: userID, CreatedAt: now, ExpiresAt: now.Add(a.SessionLifetime)}
	_, err := a.db.ExecContext(ctx, `INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at)
		VALUES ($1, $2, $3, $3, $4)`, hashToken(s.Token), userID, store.Millis(now), store.Millis(s.ExpiresAt))
	if ce, ok := store.AsConstraint(err); ok && ce.Kind == store.ForeignKey {
		return Session{}, fmt.Errorf("user %q: %w", userID, ErrNotFound)
	}
	if err != nil {
		return Session{}, fmt.Errorf("starting session: %w", err)
	}
	return s, nil
}

// SessionUser returns the user of the session whose token is token, or an error wrapping
// ErrUnauthenticated when there is no such session, it has expired (idle or absolute), or the
// user is disabled. It records the session's use at most once a minute.
func (a *Auth) SessionUser(ctx context.Context, token string) (User, error) {
	if token == "" {
		return User{}, ErrUnauthenticated
	}
	h := hashToken(token)
	var lastSeen, expires int64
	var u User
	var client sql.NullString
	var disabled sql.NullInt64
	var created, updated int64
	err := a.db.QueryRowContext(ctx, `SELECT s.last_seen_at, s.expires_at, u.id, u.username, u.display_name, u.role, u.client_id, u.disabled_at, u.created_at, u.updated_at
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1`, h).
		Scan(&lastSeen, &expires, &u.ID, &u.Username, &u.DisplayName, &u.Role, &client, &disabled, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrUnauthenticated
	}
	if err != nil {
		return User{}, fmt.Errorf("reading session: %w", err)
	}
	now := a.clock()
	nowMs := store.Millis(now)
	if nowMs >= expires || now.Sub(store.FromMillis(lastSeen)) >= a.IdleTimeout {
		// Expired sessions are removed when met, or by PurgeSessions.
		if _, err := a.db.ExecContext(ctx, "DELETE FROM sessions WHERE token_hash = $1", h); err != nil {
			return User{}, fmt.Errorf("ending expired session: %w", err)
		}
		return User{}, fmt.Errorf("session expired: %w", ErrUnauthenticated)
	}
	if disabled.Valid {
		return User{}, fmt.Errorf("user %q disabled: %w", u.Username, ErrUnauthenticated)
	}
	if now.Sub(store.FromMillis(lastSeen)) >= touchInterval {
		if _, err := a.db.ExecContext(ctx, "UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1 AND last_seen_at < $2", h, nowMs); err != nil {
			return User{}, fmt.Errorf("recording session use: %w", err)
		}
	}
	u.ClientID = client.String
	u.CreatedAt, u.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return u, nil
}

// EndSession ends the session whose token is token (sign out). Ending an unknown or already
// ended session is not an error.
func (a *Auth) EndSession(ctx context.Context, token string) error {
	if _, err := a.db.ExecContext(ctx, "DELETE FROM sessions WHERE token_hash = $1", hashToken(token)); err != nil {
		return fmt.Errorf("ending session: %w", err)
	}
	return nil
}

// EndAllSessions ends every session of the user with userID ("sign out everywhere").
func (a *Auth) EndAllSessions(ctx context.Context, userID string) error {
	if _, err := a.db.ExecContext(ctx, "DELETE FROM sessions WHERE user_id = $1", userID); err != nil {
		return fmt.Errorf("ending sessions: %w", err)
	}
	return nil
}

// PurgeSessions deletes sessions that have expired and were not met since; the hub calls it now
// and then (an expired session is refused whether or not it was purged). It returns how many.
func (a *Auth) PurgeSessions(ctx context.Context) (int64, error) {
	now := a.clock()
	res, err := a.db.ExecContext(ctx, "DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2",
		store.Millis(now), store.Millis(now.Add(-a.IdleTimeout)))
	if err != nil {
		return 0, fmt.Errorf("purging sessions: %w", err)
	}
	return res.RowsAffected()
}

// NewSessionCookie returns the cookie that carries s to the browser that sent r. It is Secure
// when r came over TLS (a hub behind a TLS-terminating proxy should be told so by configuration:
// X-Forwarded-Proto is not trusted here), never readable by scripts, and not sent on cross-site
// subrequests or form posts (SameSite=Lax).
func NewSessionCookie(r *http.Request, s Session) *http.Cookie {
	return &http.Cookie{
		Name:     SessionCookie,
		Value:    s.Token,
		Path:     "/",
		Expires:  s.ExpiresAt,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	}
}

// ClearSessionCookie returns a cookie that removes the session cookie (sign out).
func ClearSessionCookie(r *http.Request) *http.Cookie {
	return &http.Cookie{
		Name:     SessionCookie,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	}
}

// CSRF tokens. A form's token is an HMAC of a fixed label keyed by the session token: only the
// holder of the cookie can compute it, it is stable for the session's life (also across hub
// restarts and several hubs, so no server secret needs storing and sharing), and the token
// shown in a page reveals nothing of the session token it came from.
const (
	// CSRFField is the form field, and CSRFHeader the header (for fetch/htmx), that carry it.
	CSRFField  = "csrf_token"
	CSRFHeader = "X-CSRF-Token"
	csrfLabel  = "sage csrf v1"
)

// CSRFToken returns the CSRF token of the session whose token is sessionToken.
func CSRFToken(sessionToken string) string {
	m := hmac.New(sha256.New, []byte(sessionToken))
	m.Write([]byte(csrfLabel))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// ErrCSRF is returned by CheckCSRF.
var ErrCSRF = errors.New("missing or wrong CSRF token: reload the page and try again")

// CheckCSRF checks the CSRF token a request carries (header CSRFHeader, else form field
// CSRFField) against the session's, in constant time.
func CheckCSRF(r *http.Request, sessionToken string) error {
	got := r.Header.Get(CSRFHeader)
	if got == "" {
		got = r.PostFormValue(CSRFField)
	}
	if got == "" || sessionToken == "" || !hmac.Equal([]byte(got), []byte(CSRFToken(sessionToken))) {
		return ErrCSRF
	}
	return nil
}
