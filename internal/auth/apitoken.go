package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/store"
)

// APITokenPrefix starts every API token, so that a leaked one is recognisable (secret scanners,
// logs) and anything else is refused without a database lookup.
const APITokenPrefix = "sage_"

const maxTokenName = 100

// APIToken describes an API token; the secret itself is returned once, by NewAPIToken.
type APIToken struct {
	ID         string    `json:"id"`
	UserID     string    `json:"user_id"`
	Name       string    `json:"name"` // what it is for ("grafana"), unique per user ignoring case
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"` // zero: never
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
}

const tokenCols = "id, user_id, name, created_at, expires_at, last_used_at, revoked_at"

func scanToken(row store.Row) (APIToken, error) {
	var t APIToken
	var created int64
	var expires, used, revoked sql.NullInt64
	if err := row.Scan(&t.ID, &t.UserID, &t.Name, &created, &expires, &used, &revoked); err != nil {
		return APIToken{}, err
	}
	t.CreatedAt = store.FromMillis(created)
	t.ExpiresAt, t.LastUsedAt, t.RevokedAt = nullMillis(expires), nullMillis(used), nullMillis(revoked)
	return t, nil
}

// NewAPIToken creates an API token for the user with userID, valid until expiresAt (zero: until
// revoked). It returns the secret, which is not stored and cannot be shown again.
func (a *Auth) NewAPIToken(ctx context.Context, userID, name string, expiresAt time.Time) (secret string, tok APIToken, err error) {
	name = strings.TrimSpace(name)
	now := a.clock()
	var fe []config.FieldError
	switch {
	case name == "":
		fe = append(fe, config.Errorf("name", "is required"))
	case !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0:
		fe = append(fe, config.Errorf("name", "must be printable UTF-8 text"))
	case utf8.RuneCountInString(name) > maxTokenName:
		fe = append(fe, config.Errorf("name", "is longer than %d characters", maxTokenName))
	}
	if !expiresAt.IsZero() && !expiresAt.After(now) {
		fe = append(fe, config.Errorf("expires_at", "is not in the future"))
	}
	if err := invalid(fe...); err != nil {
		return "", APIToken{}, err
	}
	var expires any
	if !expiresAt.IsZero() {
		expires = store.Millis(expiresAt)
	}
	secret = APITokenPrefix + randomString(tokenBytes)
	row := a.db.QueryRowContext(ctx, `INSERT INTO api_tokens (id, user_id, name, name_fold, token_hash, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+tokenCols,
		store.NewID(), userID, name, fold(name), hashToken(secret), store.Millis(now), expires)
	tok, err = scanToken(row)
	if ce, ok := store.AsConstraint(err); ok && ce.Kind == store.ForeignKey {
		return "", APIToken{}, fmt.Errorf("user %q: %w", userID, ErrNotFound)
	}
	if err != nil {
		return "", APIToken{}, dbError("creating API token", err)
	}
	return secret, tok, nil
}

// APITokenUser returns the user an API token secret belongs to, and the token, or an error
// wrapping ErrUnauthenticated when the secret is unknown, revoked or expired or its user is
// disabled. It records the token's use at most once a minute.
func (a *Auth) APITokenUser(ctx context.Context, secret string) (User, APIToken, error) {
	if !strings.HasPrefix(secret, APITokenPrefix) {
		return User{}, APIToken{}, ErrUnauthenticated
	}
	var t APIToken
	var tCreated int64
	var expires, used, revoked sql.NullInt64
	var u User
	var client sql.NullString
	var disabled sql.NullInt64
	var created, updated int64
	err := a.db.QueryRowContext(ctx, `SELECT t.id, t.user_id, t.name, t.created_at, t.expires_at, t.last_used_at, t.revoked_at,
		u.id, u.username, u.display_name, u.role, u.client_id, u.disabled_at, u.created_at, u.updated_at
		FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1`, hashToken(secret)).
		Scan(&t.ID, &t.UserID, &t.Name, &tCreated, &expires, &used, &revoked,
			&u.ID, &u.Username, &u.DisplayName, &u.Role, &client, &disabled, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, APIToken{}, ErrUnauthenticated
	}
	if err != nil {
		return User{}, APIToken{}, fmt.Errorf("reading API token: %w", err)
	}
	now := a.clock()
	switch {
	case revoked.Valid:
		return User{}, APIToken{}, fmt.Errorf("API token %q revoked: %w", t.Name, ErrUnauthenticated)
	case expires.Valid && store.Millis(now) >= expires.Int64:
		return User{}, APIToken{}, fmt.Errorf("API token %q expired: %w", t.Name, ErrUnauthenticated)
	case disabled.Valid:
		return User{}, APIToken{}, fmt.Errorf("user %q disabled: %w", u.Username, ErrUnauthenticated)
	}
	if !used.Valid || now.Sub(store.FromMillis(used.Int64)) >= touchInterval {
		if _, err := a.db.ExecContext(ctx, "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1", t.ID, store.Millis(now)); err != nil {
			return User{}, APIToken{}, fmt.Errorf("recording API token use: %w", err)
		}
		used = sql.NullInt64{Int64: store.Millis(now), Valid: true}
	}
	t.CreatedAt = store.FromMillis(tCreated)
	t.ExpiresAt, t.LastUsedAt = nullMillis(expires), nullMillis(used)
	u.ClientID = client.String
	u.CreatedAt, u.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return u, t, nil
}

// ListAPITokens returns the user's tokens, revoked ones included, newest first (never secrets).
func (a *Auth) ListAPITokens(ctx context.Context, userID string) ([]APIToken, error) {
	rows, err := a.db.QueryContext(ctx, "SELECT "+tokenCols+" FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC, id DESC", userID)
	out, err := store.ScanAll(rows, err, scanToken)
	return out, dbError("listing API tokens", err)
}

// RevokeAPIToken revokes the token with id. The row is kept (with its name and times) so that a
// list still shows what existed; revoking twice is not an error.
func (a *Auth) RevokeAPIToken(ctx context.Context, id string) error {
	res, err := a.db.ExecContext(ctx, "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1", id, store.Millis(a.clock()))
	if err != nil {
		return dbError("revoking API token", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("API token %q: %w", id, ErrNotFound)
	}
	return nil
}
