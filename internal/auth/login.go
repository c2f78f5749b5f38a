package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/serversage/sage/internal/store"
)

// AdminUsername is the user EnsureAdmin creates.
const AdminUsername = "admin"

// EnsureAdmin creates the first admin when there is no admin yet: user "admin" with
// passwordFromEnv (SAGE_ADMIN_PASSWORD, passed by the caller) or, when that is empty, a generated
// password that is returned so the caller can show it once. It never logs the password. On later
// starts (an admin exists) it does nothing and returns created false. Two hubs starting at once
// on one database create one admin: the loser's insert meets the unique username.
func (a *Auth) EnsureAdmin(ctx context.Context, passwordFromEnv string) (created bool, generated string, err error) {
	var n int
	if err := a.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM users WHERE role = $1", string(RoleAdmin)).Scan(&n); err != nil {
		return false, "", fmt.Errorf("looking for an admin: %w", err)
	}
	if n > 0 {
		return false, "", nil
	}
	password := passwordFromEnv
	if password == "" {
		generated = randomString(15) // 120 bits, 24 characters
		password = generated
	} else if fe := validatePassword("SAGE_ADMIN_PASSWORD", password); fe != nil {
		return false, "", invalid(fe...)
	}
	hash, err := a.hashPassword(password)
	if err != nil {
		return false, "", err
	}
	_, err = a.insertUser(ctx, User{Username: AdminUsername, DisplayName: "Administrator", Role: RoleAdmin}, hash)
	if FieldErrors(err) != nil {
		// A concurrent start created it, or a non-admin user is called "admin": in the second
		// case say so, as nobody could sign in as admin.
		var admins int
		if qerr := a.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM users WHERE role = $1", string(RoleAdmin)).Scan(&admins); qerr == nil && admins > 0 {
			return false, "", nil
		}
		return false, "", fmt.Errorf("creating the first admin: a user named %q exists but is not an admin", AdminUsername)
	}
	if err != nil {
		return false, "", err
	}
	return true, generated, nil
}

// Authenticate checks a username and password from a login form; remoteIP is the client's
// address, which with the username keys the limit on failed attempts. It returns the user, or an
// error wrapping ErrInvalidCredentials (unknown user or wrong password, indistinguishable by
// message or by time), ErrDisabled (right password, disabled account) or ErrRateLimited.
func (a *Auth) Authenticate(ctx context.Context, username, password, remoteIP string) (User, error) {
	key := fold(username) + "\x00" + remoteIP
	now := a.now()
	if wait := a.limiter.wait(key, now); wait > 0 {
		return User{}, &RateLimitError{RetryAfter: wait}
	}
	var (
		u    User
		hash string
	)
	var client sql.NullString
	var disabled sql.NullInt64
	var created, updated int64
	err := a.db.QueryRowContext(ctx, "SELECT "+userCols+", password_hash FROM users WHERE username_fold = $1", fold(username)).
		Scan(&u.ID, &u.Username, &u.DisplayName, &u.Role, &client, &disabled, &created, &updated, &hash)
	known := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("signing in: %w", err)
	}
	cmp := []byte(hash)
	if !known {
		cmp = a.dummyHash()
	}
	// Too long a password cannot be right (none longer is ever set); compare anyway, truncated,
	// to spend the same time.
	pw := []byte(password)
	if len(pw) > MaxPassword {
		pw = pw[:MaxPassword]
	}
	match := bcrypt.CompareHashAndPassword(cmp, pw) == nil && known && len(password) <= MaxPassword
	if !match {
		a.limiter.fail(key, now)
		return User{}, ErrInvalidCredentials
	}
	a.limiter.reset(key)
	if disabled.Valid {
		return User{}, fmt.Errorf("user %q: %w", u.Username, ErrDisabled)
	}
	u.ClientID = client.String
	u.CreatedAt, u.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return u, nil
}

// RateLimitError is returned by Authenticate while a username and address are locked out.
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	secs := int(e.RetryAfter.Round(time.Second) / time.Second)
	return "too many failed logins: try again in " + strconv.Itoa(max(secs, 1)) + " s"
}

func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// limiter counts failed logins per key within a sliding window, in memory: one hub process
// answers the logins, and a restart forgetting the count only grants another few guesses.
type limiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	fails  map[string][]time.Time // the times of the last (at most max) failures
}

// limiterSweepAt is how many keys trigger dropping stale ones, bounding the memory an attacker
// spraying usernames and addresses can make the hub hold to what one window's failures need.
const limiterSweepAt = 10000

func newLimiter(max int, window time.Duration) *limiter {
	return &limiter{max: max, window: window, fails: make(map[string][]time.Time)}
}

// wait returns how long key must wait before trying again; 0 when it may try now.
func (l *limiter) wait(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[key]
	if len(f) < l.max {
		return 0
	}
	return max(f[0].Add(l.window).Sub(now), 0)
}

func (l *limiter) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) >= limiterSweepAt {
		for k, f := range l.fails {
			if now.Sub(f[len(f)-1]) >= l.window {
				delete(l.fails, k)
			}
		}
	}
	f := l.fails[key]
	// Keep only failures inside the window, and at most max of them.
	i := 0
	for i < len(f) && now.Sub(f[i]) >= l.window {
		i++
	}
	f = append(f[i:], now)
	if len(f) > l.max {
		f = f[len(f)-l.max:]
	}
	l.fails[key] = f
}

func (l *limiter) reset(key string) {
	l.mu.Lock()
	delete(l.fails, key)
	l.mu.Unlock()
}
