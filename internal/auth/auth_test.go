package auth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

var ctx = context.Background()

// clock is a settable time source for the Auth under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// each runs body against a fresh Auth on SQLite and on PostgreSQL, with bcrypt's minimum cost
// (the cost changes the time, not the behaviour) and a clock the test moves.
func each(t *testing.T, body func(t *testing.T, a *Auth, clk *clock, db *store.DB)) {
	t.Helper()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a := New(db)
		a.cost = bcrypt.MinCost
		clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
		a.now = clk.now
		body(t, a, clk, db)
	})
}

const goodPassword = "correct horse battery"

func mustUser(t *testing.T, a *Auth, name string, role Role) User {
	t.Helper()
	u, err := a.CreateUser(ctx, User{Username: name, DisplayName: strings.ToUpper(name), Role: role}, goodPassword)
	if err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
	return u
}

func wantField(t *testing.T, err error, field string) {
	t.Helper()
	for _, fe := range FieldErrors(err) {
		if fe.Field == field {
			return
		}
	}
	t.Errorf("error %v, want a field error on %q", err, field)
}

func count(t *testing.T, db *store.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestEnsureAdmin(t *testing.T) {
	each(t, func(t *testing.T, a *Auth, _ *clock, db *store.DB) {
		created, generated, err := a.EnsureAdmin(ctx, "")
		if err != nil || !created || len(generated) < MinPassword {
			t.Fatalf("first EnsureAdmin = %v, %q, %v; want created with a generated password", created, generated, err)
		}
		u, err := a.Authenticate(ctx, "admin", generated, "127.0.0.1")
		if err != nil || u.Role != RoleAdmin || u.Username != AdminUsername {
			t.Fatalf("signing in with the generated password: %+v, %v", u, err)
		}
		for _, env := range []string{"", "another password here"} {
			created, generated, err = a.EnsureAdmin(ctx, env)
			if err != nil || created || generated != "" {
				t.Errorf("EnsureAdmin(%q) again = %v, %q, %v; want nothing done", env, created, generated, err)
			}
		}
		if n := count(t, db, "SELECT COUNT(*) FROM users"); n != 1 {
			t.Errorf("%d users after EnsureAdmin three times, want 1", n)
		}
	})
}

func TestEnsureAdminFromEnv(t *testing.T) {
	each(t, func(t *testing.T, a *Auth, _ *clock, db *store.DB) {
		_, _, err := a.EnsureAdmin(ctx, "short")
		wantField(t, err, "SAGE_ADMIN_PASSWORD")
		if n := count(t, db, "SELECT COUNT(*) FROM users"); n != 0 {
			t.Fatalf("a refused EnsureAdmin wrote %d users", n)
		}
		created, generated, err := a.EnsureAdmin(ctx, goodPassword)
		if err != nil || !created || generated != "" {
			t.Fatalf("EnsureAdmin(env) = %v, %q, %v; want created, nothing generated", created, generated, err)
		}
		if _, err := a.Authenticate(ctx, "ADMIN", goodPassword, "::1"); err != nil {
			t.Errorf("signing in with the environment's password: %v", err)
		}
	})
}

func TestEnsureAdminNameTaken(t *testing.T) {
	each(t, func(t *testing.T, a *Auth, _ *clock, _ *store.DB) {
		mustUser(t, a, "Admin", RoleViewer)
		if _, _, err := a.EnsureAdmin(ctx, ""); err == nil || !strings.Contains(err.Error(), "not an admin") {
			t.Errorf("EnsureAdmin with a viewer called Admin: %v, want an error saying so", err)
		}
	})
}

func TestAuthenticate(t *testing.T) {
	each(t, func(t *testing.T, a *Auth, _ *clock, _ *store.DB) {
		mustUser(t, a, "alice", RoleEngineer)
		bob := mustUser(t, a, "bob", RoleViewer)
		if err := a.Disable(ctx, bob.ID); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name, user, password string
			want                 error
		}{
			{"right", "alice", goodPassword, nil},
			{"username ignores case", " ALICE"[1:], goodPassword, nil},
			{"wrong password", "alice", goodPassword + "!", ErrInvalidCredentials},
			{"empty password", "alice", "", ErrInvalidCredentials},
			{"too long password", "alice", goodPassword + strings.Repeat("x", 80), ErrInvalidCredentials},
			{"unknown user", "mallory", goodPassword, ErrInvalidCredentials},
			{"disabled, right password", "bob", goodPassword, ErrDisabled},
			{"disabled, wrong password", "bob", "nope nope nope", ErrInvalidCredentials},
		} {
			t.Run(tc.name, func(t *testing.T) {
				// A different address per case keeps the failures from adding up to a lockout.
				u, err := a.Authenticate(ctx, tc.user, tc.password, "192.0.2."+tc.name)
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				if tc.want == nil && fold(u.Username) != fold(tc.user) {
					t.Errorf("user = %+v", u)
				}
				if tc.want != nil && u.ID != "" {
					t.Errorf("a failed login returned user %+v", u)
				}
			})
		}
		// The message must not tell an unknown user from a wrong password.
		_, e1 := a.Authenticate(ctx, "alice", "wrong wrong wrong", "198.51.100.1")
		_, e2 := a.Authenticate(ctx, "nobody", "wrong wrong wrong", "198.51.100.1")
		if e1.Error() != e2.Error() {
			t.Errorf("wrong password says %q, unknown user says %q", e1, e2)
		}
	})
}

func TestRateLimit(t *testing.T) {
	each(t, func(t *testing.T, a *Auth, clk *clock, _ *store.DB) {
		mustUser(t, a, "alice", RoleEngineer)
		const ip = "203.0.113.7"
		for i := range loginFailures {
			if _, err := a.Authenticate(ctx, "alice", "guess guess "+string(rune('a'+i)), ip); !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("failure %d: %v", i+1, err)
			}
			clk.advance(time.Second)
		}
		_, err := a.Authenticate(ctx, "Alice", goodPassword, ip)
		var rl *RateLimitError
		if !errors.Is(err, ErrRateLimited) || !errors.As(err, &rl) || rl.RetryAfter <= 0 || rl.RetryAfter > loginWindow {
			t.Fatalf("after %d failures the right password gives %v, want a rate limit with a retry time", loginFailures, err)
		}
		if !strings.Contains(err.Error(), "try again in") {
			t.Errorf("rate limit message %q does not say when to retry", err)
		}
		if _, err := a.Authenticate(ctx, "alice", goodPassword, "203.0.113.8"); err != nil {
			t.Errorf("another address is limited too: %v", err)
		}
		clk.advance(rl.RetryAfter)
		if _, err := a.Authenticate(ctx, "alice", goodPassword, ip); err != nil {
			t.Fatalf("after waiting %v: %v", rl.RetryAfter, err)
		}
		// Success forgets the failures: four more do not lock out.
		for range loginFailures - 1 {
			a.Authenticate(ctx, "alice", "guess guess guess", ip)
		}
		if _, err := a.Authenticate(ctx, "alice", goodPassword, ip); err != nil {
			t.Errorf("after a success and %d failures: %v", loginFailures-1, err)
		}
		// Unknown usernames are limited the same way.
		for range loginFailures {
			a.Authenticate(ctx, "ghost", "guess guess guess", ip)
		}
		if _, err := a.Authenticate(ctx, "ghost", "guess guess guess", ip); !errors.Is(err, ErrRateLimited) {
			t.Errorf("unknown user after %d failures: %v, want rate limited", loginFailures, err)
		}
	})
}

func TestLimiterBounded(t *testing.T) {
	l := newLimiter(5, time.Minute)
	t0 := time.Unix(1e9, 0)
	for i := range limiterSweepAt {
		l.fail(strings.Repeat("k", i%50)+string(rune(i)), t0)
	}
	l.fail("late", t0.Add(2*time.Minute))
	if len(l.fails) != 1 {
		t.Errorf("%d keys kept after a sweep, want only the one inside the window", len(l.fails))
	}
}

func TestCreateUserInvalid(t *testing.T) {
	each(t, func(t *testing.T, a *Auth, _ *clock, db *store.DB) {
		mustUser(t, a, "alice", RoleAdmin)
		for _, tc := range []struct {
			name     string
			u        User
			password string
			field    string
		}{
			{"no username", User{Role: RoleViewer}, goodPassword, "username"},
			{"bad username", User{Username: "al ice", Role: RoleViewer}, goodPassword, "username"},
			{"long username", User{Username: strings.Repeat("a", 65), Role: RoleViewer}, goodPassword, "username"},
			{"duplicate ignoring case", User{Username: "ALICE", Role: RoleViewer}, goodPassword, "username"},
			{"no role", User{Username: "bob"}, goodPassword, "role"},
			{"unknown role", User{Username: "bob", Role: "root"}, goodPassword, "role"},
			{"client scoped", User{Username: "bob", Role: RoleViewer, ClientID: store.NewID()}, goodPassword, "client_id"},
			{"control in display name", User{Username: "bob", DisplayName: "B\x07b", Role: RoleViewer}, goodPassword, "display_name"},
			{"short password", User{Username: "bob", Role: RoleViewer}, "short", "password"},
			{"password over 72 bytes", User{Username: "bob", Role: RoleViewer}, strings.Repeat("p", 73), "password"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := a.CreateUser(ctx, tc.u, tc.password)
				wantField(t, err, tc.field)
			})
		}
		if n := count(t, db, "SELECT COUNT(*) FROM users"); n != 1 {
			t.Errorf("%d users after refused creates, want 1", n)
		}
		users, err := a.ListUsers(ctx)
		if err != nil || len(users) != 1 || users[0].Username != "alice" || users[0].DisplayName != "ALICE" {
			t.Errorf("ListUsers = %+v, %v", users, err)
		}
		got, err := a.GetUserByName(ctx, "Alice")
		if err != nil || got.ID != users[0].ID {
			t.Errorf("GetUserByName = %+v, %v", got, err)
		}
		if _, err := a.GetUser(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetUser(unknown) = %v", err)
		}
	})
}

func TestLastAdmin(t *testing.T) {
	each(t, func(t *testing.T, a *Auth, _ *clock, _ *store.DB) {
		root := mustUser(t, a, "root", RoleAdmin)
		eng := mustUser(t, a, "eng", RoleEngineer)
		if err := a.DeleteUser(ctx, root.ID); !errors.Is(err, ErrLastAdmin) {
			t.Errorf("deleting the only admin: %v, want ErrLastAdmin", err)
		}
		if err := a.Disable(ctx, root.ID); !errors.Is(err, ErrLastAdmin) {
			t.Errorf("disabling the only admin: %v, want ErrLastAdmin", err)
		}
		if err := a.DeleteUser(ctx, eng.ID); err != nil {
			t.Errorf("deleting an engineer: %v", err)
		}
		second := mustUser(t, a, "second", RoleAdmin)
		if err := a.Disable(ctx, second.ID); err != nil {
			t.Fatalf("disabling one of two admins: %v", err)
		}
		// A disabled admin does not count: root is again the last.
		if err := a.DeleteUser(ctx, root.ID); !errors.Is(err, ErrLastAdmin) {
			t.Errorf("deleting the last enabled admin: %v, want ErrLastAdmin", err)
		}
		if err := a.DeleteUser(ctx, second.ID); err != nil {
			t.Errorf("deleting a disabled admin: %v", err)
		}
		if err := a.DeleteUser(ctx, second.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleting twice: %v, want ErrNotFound", err)
		}
		u, err := a.GetUser(ctx, root.ID)
		if err != nil || u.Disabled {
			t.Errorf("root after refusals: %+v, %v", u, err)
		}
	})
}

// TestLastAdminConcurrent deletes the only two admins at once: exactly one delete may win.
func TestLastAdminConcurrent(t *testing.T) {
	each(t, func(t *testing.T, a *Auth, _ *clock, db *store.DB) {
		for round := range 5 {
			x := mustUser(t, a, "x"+string(rune('a'+round)), RoleAdmin)
			y := mustUser(t, a, "y"+string(rune('a'+round)), RoleAdmin)
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, id := range []string{x.ID, y.ID} {
				wg.Go(func() { errs[i] = a.DeleteUser(ctx, id) })
			}
			wg.Wait()
			ok := 0
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, ErrLastAdmin):
					t.Fatalf("round %d: %v", round, err)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d: %d of two concurrent deletes of the last two admins succeeded (%v)", round, ok, errs)
			}
			// Start the next round from no admin but the survivor, removed by hand.
			storetest.MustExec(t, db, "DELETE FROM users")
		}
	})
}

func TestSetPassword(t *testing.T) {
	each(t, func(t *testing.T, a *Auth, _ *clock, _ *store.DB) {
		u := mustUser(t, a, "alice", RoleAdmin)
		s, err := a.NewSession(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantField(t, a.SetPassword(ctx, u.ID, "tiny"), "password")
		if err := a.SetPassword(ctx, "nope", "a brand new password"); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetPassword(unknown) = %v", err)
		}
		if err := a.SetPassword(ctx, u.ID, "a brand new password"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Authenticate(ctx, "alice", goodPassword, "a"); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("old password after change: %v", err)
		}
		if _, err := a.Authenticate(ctx, "alice", "a brand new password", "a"); err != nil {
			t.Errorf("new password: %v", err)
		}
		if _, err := a.SessionUser(ctx, s.Token); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("session from before the change: %v, want ended", err)
		}
	})
}
