package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/store"
)

// Role says what a user may do. Stored as text: later roles (L1/L2/L3) need no schema change.
type Role string

const (
	RoleAdmin    Role = "admin"    // everything, including users
	RoleEngineer Role = "engineer" // operates the estate
	RoleViewer   Role = "viewer"   // reads only
)

// Roles lists the known roles, most powerful first.
var Roles = []Role{RoleAdmin, RoleEngineer, RoleViewer}

func (r Role) valid() bool {
	for _, k := range Roles {
		if r == k {
			return true
		}
	}
	return false
}

// User is a person (or a service account) who may sign in or hold API tokens.
type User struct {
	ID          string `json:"id"`
	Username    string `json:"username"` // unique ignoring case
	DisplayName string `json:"display_name"`
	Role        Role   `json:"role"`
	// ClientID is reserved for client-scoped users (a later issue); it must be empty for now.
	ClientID  string    `json:"client_id,omitempty"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Password length limits. bcrypt uses at most 72 bytes, and refusing more is better than
// silently ignoring the rest.
const (
	MinPassword = 10
	MaxPassword = 72
	maxUsername = 64
	maxDisplay  = 100
)

var usernameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]*$`)

func (u *User) normalize() {
	u.Username = strings.TrimSpace(u.Username)
	u.DisplayName = strings.TrimSpace(u.DisplayName)
}

// Validate checks u as CreateUser would (after trimming), without the password.
func (u User) Validate() []config.FieldError {
	u.normalize()
	return u.validate()
}

func (u *User) validate() []config.FieldError {
	var fe []config.FieldError
	switch {
	case u.Username == "":
		fe = append(fe, config.Errorf("username", "is required"))
	case len(u.Username) > maxUsername:
		fe = append(fe, config.Errorf("username", "is longer than %d characters", maxUsername))
	case !usernameRE.MatchString(u.Username):
		fe = append(fe, config.Errorf("username", "may hold only letters, digits and . _ @ - and must start with a letter or digit"))
	}
	switch {
	case !utf8.ValidString(u.DisplayName):
		fe = append(fe, config.Errorf("display_name", "is not valid UTF-8"))
	case utf8.RuneCountInString(u.DisplayName) > maxDisplay:
		fe = append(fe, config.Errorf("display_name", "is longer than %d characters", maxDisplay))
	case strings.IndexFunc(u.DisplayName, unicode.IsControl) >= 0:
		fe = append(fe, config.Errorf("display_name", "contains a control character"))
	}
	switch {
	case u.Role == "":
		fe = append(fe, config.Errorf("role", "is required"))
	case !u.Role.valid():
		fe = append(fe, config.Errorf("role", "%q is not a role; use admin, engineer or viewer", u.Role))
	}
	if u.ClientID != "" {
		// Stored but not enforced would be a false promise of isolation.
		fe = append(fe, config.Errorf("client_id", "client-scoped users are not supported yet"))
	}
	return fe
}

// validatePassword checks a new password.
func validatePassword(field, p string) []config.FieldError {
	switch {
	case utf8.RuneCountInString(p) < MinPassword:
		return []config.FieldError{config.Errorf(field, "must be at least %d characters", MinPassword)}
	case len(p) > MaxPassword:
		return []config.FieldError{config.Errorf(field, "must be at most %d bytes", MaxPassword)}
	}
	return nil
}

const userCols = "id, username, display_name, role, client_id, disabled_at, created_at, updated_at"

func scanUser(row store.Row) (User, error) {
	var u User
	var client sql.NullString
	var disabled sql.NullInt64
	var created, updated int64
	if err := row.Scan(&u.ID, &u.Username, &u.DisplayName, &u.Role, &client, &disabled, &created, &updated); err != nil {
		return User{}, err
	}
	u.ClientID = client.String
	u.Disabled = disabled.Valid
	u.CreatedAt, u.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return u, nil
}

func fold(s string) string { return strings.ToLower(s) }

// CreateUser adds a user with password; ID, times and Disabled (false) are set here.
func (a *Auth) CreateUser(ctx context.Context, u User, password string) (User, error) {
	u.normalize()
	fe := u.validate()
	fe = append(fe, validatePassword("password", password)...)
	if err := invalid(fe...); err != nil {
		return User{}, err
	}
	hash, err := a.hashPassword(password)
	if err != nil {
		return User{}, err
	}
	return a.insertUser(ctx, u, hash)
}

func (a *Auth) insertUser(ctx context.Context, u User, hash string) (User, error) {
	now := store.Millis(a.clock())
	row := a.db.QueryRowContext(ctx, `INSERT INTO users (id, username, username_fold, display_name, role, password_hash, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING `+userCols,
		store.NewID(), u.Username, fold(u.Username), u.DisplayName, string(u.Role), hash, now)
	out, err := scanUser(row)
	return out, dbError("creating user", err)
}

// GetUser returns the user with id.
func (a *Auth) GetUser(ctx context.Context, id string) (User, error) {
	return getUser(ctx, a.db, id)
}

func getUser(ctx context.Context, q querier, id string) (User, error) {
	u, err := scanUser(q.QueryRowContext(ctx, "SELECT "+userCols+" FROM users WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %q: %w", id, ErrNotFound)
	}
	return u, dbError("reading user", err)
}

// GetUserByName returns the user whose username is name, ignoring case.
func (a *Auth) GetUserByName(ctx context.Context, name string) (User, error) {
	u, err := scanUser(a.db.QueryRowContext(ctx, "SELECT "+userCols+" FROM users WHERE username_fold = $1", fold(strings.TrimSpace(name))))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return u, dbError("reading user", err)
}

// ListUsers returns every user by username.
func (a *Auth) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := a.db.QueryContext(ctx, "SELECT "+userCols+" FROM users ORDER BY username_fold, id")
	out, err := store.ScanAll(rows, err, scanUser)
	return out, dbError("listing users", err)
}

// SetPassword replaces the user's password and ends all their sessions (whoever knew the old
// password is signed out; the caller signs the user in again if they changed it themselves).
// API tokens are kept: they are separate credentials, revoked on their own.
func (a *Auth) SetPassword(ctx context.Context, id, password string) error {
	if err := invalid(validatePassword("password", password)...); err != nil {
		return err
	}
	hash, err := a.hashPassword(password)
	if err != nil {
		return err
	}
	err = a.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1",
			id, hash, store.Millis(a.clock()))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %q: %w", id, ErrNotFound)
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM sessions WHERE user_id = $1", id)
		return err
	})
	return dbError("setting password", err)
}

// SetDisabled disables or re-enables a user. Disabling ends the user's sessions; their API tokens
// stop working while disabled. Disabling the last enabled admin is refused (ErrLastAdmin).
func (a *Auth) SetDisabled(ctx context.Context, id string, disabled bool) error {
	err := a.db.Tx(ctx, func(tx *sql.Tx) error {
		u, err := getUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if u.Disabled == disabled {
			return nil
		}
		now := store.Millis(a.clock())
		if !disabled {
			_, err = tx.ExecContext(ctx, "UPDATE users SET disabled_at = NULL, updated_at = $2 WHERE id = $1", id, now)
			return err
		}
		if err := a.keepAnAdmin(ctx, tx, u, "disable"); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE users SET disabled_at = $2, updated_at = $2 WHERE id = $1", id, now); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM sessions WHERE user_id = $1", id)
		return err
	})
	return dbError("disabling user", err)
}

// Disable disables a user; see SetDisabled.
func (a *Auth) Disable(ctx context.Context, id string) error { return a.SetDisabled(ctx, id, true) }

// DeleteUser deletes a user with their sessions and API tokens. Deleting the last enabled admin
// is refused (ErrLastAdmin).
func (a *Auth) DeleteUser(ctx context.Context, id string) error {
	err := a.db.Tx(ctx, func(tx *sql.Tx) error {
		u, err := getUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := a.keepAnAdmin(ctx, tx, u, "delete"); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM users WHERE id = $1", id)
		return err
	})
	return dbError("deleting user", err)
}

// keepAnAdmin refuses when u is an enabled admin and no other enabled admin exists. On
// PostgreSQL the admins' rows are locked, so two transactions removing the last two admins at
// once queue and the second sees the first's change; SQLite's BEGIN IMMEDIATE already serialises
// writers.
func (a *Auth) keepAnAdmin(ctx context.Context, tx *sql.Tx, u User, verb string) error {
	if u.Role != RoleAdmin || u.Disabled {
		return nil
	}
	q := "SELECT id FROM users WHERE role = $1 AND disabled_at IS NULL"
	if a.db.Dialect() == store.Postgres {
		q += " FOR UPDATE"
	}
	rows, err := tx.QueryContext(ctx, q, string(RoleAdmin))
	if err != nil {
		return err
	}
	defer rows.Close()
	others := 0
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		if id != u.ID {
			others++
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if others == 0 {
		return fmt.Errorf("cannot %s %q: %w; make another user admin first", verb, u.Username, ErrLastAdmin)
	}
	return nil
}
