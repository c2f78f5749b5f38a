// Package auth is who may use the hub: users with a role and a bcrypt password, browser sessions
// (a cookie holding a random token), CSRF tokens for the forms of those sessions, and API tokens
// for scripts and for Grafana, plus the HTTP middleware that accepts any of these and puts the
// user in the request's context.
//
// Nothing secret is stored: passwords are bcrypt hashes, and sessions and API tokens are 256-bit
// random strings of which only a SHA-256 is kept (a fast hash suffices for secrets that cannot be
// guessed; a slow one would cost every request). Failed logins are limited per username and
// client address in memory, and a login for an unknown user costs the same bcrypt comparison as
// one for a known user, so neither guessing nor timing tells which usernames exist.
//
// Roles (admin, engineer, viewer) are recorded but not yet enforced beyond "an admin must
// remain": authorisation per role and client-scoped users (the users.client_id column) come with
// a later issue. Agent enrolment tokens are not here yet either.
package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/store"
)

// Errors wrapped by this package's errors; test with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	// ErrInvalidCredentials: wrong username or password, unknown or bad token. Deliberately one
	// error for all of these.
	ErrInvalidCredentials = errors.New("wrong username or password")
	// ErrDisabled: the password was right but the account is disabled.
	ErrDisabled = errors.New("account disabled")
	// ErrRateLimited: too many failed logins; the error is a *RateLimitError saying when to retry.
	ErrRateLimited = errors.New("too many failed logins")
	// ErrLastAdmin: the change would leave no enabled admin.
	ErrLastAdmin = errors.New("it would leave no enabled admin")
	// ErrUnauthenticated: no valid session or token (expired, ended, revoked, user disabled).
	ErrUnauthenticated = errors.New("not authenticated")
)

// ValidationError lists every problem with one write's input. Nothing was written.
type ValidationError = config.ValidationError

// FieldErrors returns the field errors carried by err, or nil when err is not a validation error.
func FieldErrors(err error) []config.FieldError { return config.FieldErrors(err) }

func invalid(fields ...config.FieldError) error { return config.Invalid(fields...) }

// Defaults of an Auth's settings.
const (
	// BcryptCost is the work factor of password hashes: about a quarter of a second per login on
	// a current server core, slow for an offline guesser and tolerable for a person.
	BcryptCost = 12
	// DefaultIdleTimeout ends a session not used for this long.
	DefaultIdleTimeout = 12 * time.Hour
	// DefaultSessionLifetime ends a session this long after login however much it is used.
	DefaultSessionLifetime = 7 * 24 * time.Hour
	// touchInterval is how stale a session's or token's last-seen time may get, so that a page
	// with many requests costs one write a minute rather than one per request.
	touchInterval = time.Minute
	// Failed logins allowed per username and address within loginWindow.
	loginFailures = 5
	loginWindow   = time.Minute
)

// Auth manages users, sessions and API tokens in a state database.
type Auth struct {
	db *store.DB
	// IdleTimeout and SessionLifetime may be changed before the Auth is used.
	IdleTimeout     time.Duration
	SessionLifetime time.Duration

	now     func() time.Time
	cost    int
	limiter *limiter

	dummyOnce sync.Once
	dummy     []byte // a hash of nothing anyone knows, compared against for unknown users
}

// New returns an Auth on db, which must have been opened with store.Open (migrated).
func New(db *store.DB) *Auth {
	return &Auth{
		db:              db,
		IdleTimeout:     DefaultIdleTimeout,
		SessionLifetime: DefaultSessionLifetime,
		now:             time.Now,
		cost:            BcryptCost,
		limiter:         newLimiter(loginFailures, loginWindow),
	}
}

// clock returns the current time as stored: UTC, whole milliseconds.
func (a *Auth) clock() time.Time {
	return a.now().UTC().Truncate(time.Millisecond)
}

// uniqueFields maps the migrations' unique indexes to the field a violation is about.
var uniqueFields = map[string]config.FieldError{
	"users_username_fold_key":          {Field: "username", Msg: "a user with this name already exists (names ignore case)"},
	"api_tokens_user_id_name_fold_key": {Field: "name", Msg: "this user already has a token with this name (names ignore case)"},
}

// dbError maps a unique violation to the ValidationError naming its field; anything else is
// returned wrapped with what was being done.
func dbError(what string, err error) error {
	if err == nil {
		return nil
	}
	var ve *ValidationError
	if errors.As(err, &ve) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrLastAdmin) {
		return err
	}
	if ce, ok := store.AsConstraint(err); ok && ce.Kind == store.Unique {
		if fe, ok := uniqueFields[ce.Name]; ok {
			return invalid(fe)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// hashPassword hashes a password already validated (bcrypt refuses more than 72 bytes).
func (a *Auth) hashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), a.cost)
	if err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	return string(h), nil
}

// dummyHash returns a hash at this Auth's cost of a random password, made once.
func (a *Auth) dummyHash() []byte {
	a.dummyOnce.Do(func() {
		h, err := bcrypt.GenerateFromPassword([]byte(randomString(24)), a.cost)
		if err != nil {
			panic(fmt.Sprintf("auth: making the dummy hash: %v", err))
		}
		a.dummy = h
	})
	return a.dummy
}

func nullMillis(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return store.FromMillis(v.Int64)
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}
