package auth

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/store"
)

func TestSessions(t *testing.T) {
	each(t, func(t *testing.T, a *Auth, clk *clock, db *store.DB) {
		alice := mustUser(t, a, "alice", RoleAdmin)
		bob := mustUser(t, a, "bob", RoleViewer)
		lastSeen := func(s Session) time.Time {
			var ms int64
			if err := db.QueryRowContext(ctx, "SELECT last_seen_at FROM sessions WHERE token_hash = $1", hashToken(s.Token)).Scan(&ms); err != nil {
				t.Fatal(err)
			}
			return store.FromMillis(ms)
		}
		if _, err := a.NewSession(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("NewSession(unknown user) = %v", err)
		}
		s, err := a.NewSession(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !s.ExpiresAt.Equal(s.CreatedAt.Add(DefaultSessionLifetime)) || len(s.Token) < 43 {
			t.Errorf("session %+v", s)
		}
		u, err := a.SessionUser(ctx, s.Token)
		if err != nil || u.ID != alice.ID || u.Role != RoleAdmin {
			t.Fatalf("SessionUser = %+v, %v", u, err)
		}

		// Use within a minute does not write; after a minute it does.
		start := lastSeen(s)
		clk.advance(30 * time.Second)
		a.SessionUser(ctx, s.Token)
		if got := lastSeen(s); !got.Equal(start) {
			t.Errorf("last_seen_at moved to %v after 30 s, want no write within a minute", got)
		}
		clk.advance(31 * time.Second)
		a.SessionUser(ctx, s.Token)
		if got := lastSeen(s); !got.Equal(clk.now().Truncate(time.Millisecond)) {
			t.Errorf("last_seen_at = %v after 61 s, want %v", got, clk.now())
		}

		for _, tc := range []struct {
			name  string
			token string
		}{
			{"empty", ""},
			{"unknown", newToken()},
			{"hash instead of token", hashToken(s.Token)},
		} {
			if _, err := a.SessionUser(ctx, tc.token); !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("%s token: %v, want ErrUnauthenticated", tc.name, err)
			}
		}

		// Idle expiry.
		idle, _ := a.NewSession(ctx, alice.ID)
		clk.advance(a.IdleTimeout)
		if _, err := a.SessionUser(ctx, idle.Token); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("session idle for %v: %v, want expired", a.IdleTimeout, err)
		}
		if n := count(t, db, "SELECT COUNT(*) FROM sessions WHERE token_hash = $1", hashToken(idle.Token)); n != 0 {
			t.Errorf("expired session still stored")
		}

		// Absolute expiry: used every hour, it still ends after SessionLifetime.
		busy, _ := a.NewSession(ctx, alice.ID)
		for elapsed := time.Duration(0); elapsed < a.SessionLifetime-time.Hour; elapsed += time.Hour {
			clk.advance(time.Hour)
			if _, err := a.SessionUser(ctx, busy.Token); err != nil {
				t.Fatalf("busy session after %v: %v", elapsed+time.Hour, err)
			}
		}
		clk.advance(time.Hour)
		if _, err := a.SessionUser(ctx, busy.Token); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("session past its lifetime: %v, want expired", err)
		}

		// End one, end all, disable.
		s1, _ := a.NewSession(ctx, alice.ID)
		s2, _ := a.NewSession(ctx, alice.ID)
		sb, _ := a.NewSession(ctx, bob.ID)
		if err := a.EndSession(ctx, s1.Token); err != nil {
			t.Fatal(err)
		}
		if err := a.EndSession(ctx, s1.Token); err != nil {
			t.Errorf("ending an ended session: %v", err)
		}
		if _, err := a.SessionUser(ctx, s1.Token); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("ended session: %v", err)
		}
		if _, err := a.SessionUser(ctx, s2.Token); err != nil {
			t.Errorf("the other session ended too: %v", err)
		}
		if err := a.EndAllSessions(ctx, alice.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := a.SessionUser(ctx, s2.Token); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("after EndAllSessions: %v", err)
		}
		if _, err := a.SessionUser(ctx, sb.Token); err != nil {
			t.Errorf("EndAllSessions(alice) ended bob's: %v", err)
		}
		if err := a.Disable(ctx, bob.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := a.SessionUser(ctx, sb.Token); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("session of a disabled user: %v", err)
		}
		if err := a.SetDisabled(ctx, bob.ID, false); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Authenticate(ctx, "bob", goodPassword, "x"); err != nil {
			t.Errorf("re-enabled user: %v", err)
		}
	})
}

func TestPurgeSessions(t *testing.T) {
	each(t, func(t *testing.T, a *Auth, clk *clock, db *store.DB) {
		u := mustUser(t, a, "alice", RoleAdmin)
		a.NewSession(ctx, u.ID)
		clk.advance(a.IdleTimeout / 2)
		fresh, _ := a.NewSession(ctx, u.ID)
		clk.advance(a.IdleTimeout / 2)
		n, err := a.PurgeSessions(ctx)
		if err != nil || n != 1 {
			t.Errorf("PurgeSessions = %d, %v; want 1", n, err)
		}
		if _, err := a.SessionUser(ctx, fresh.Token); err != nil {
			t.Errorf("purge removed a live session: %v", err)
		}
	})
}

func TestSessionCookie(t *testing.T) {
	s := Session{Token: "tok", ExpiresAt: time.Date(2026, 3, 8, 9, 0, 0, 0, time.UTC)}
	for _, tc := range []struct {
		name   string
		tls    bool
		secure bool
	}{{"plain http", false, false}, {"tls", true, true}} {
		r := httptest.NewRequest("POST", "/login", nil)
		if tc.tls {
			r.TLS = &tls.ConnectionState{}
		}
		for _, c := range []*http.Cookie{NewSessionCookie(r, s), ClearSessionCookie(r)} {
			if c.Name != SessionCookie || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure != tc.secure {
				t.Errorf("%s: cookie %+v", tc.name, c)
			}
		}
		if c := NewSessionCookie(r, s); c.Value != "tok" || !c.Expires.Equal(s.ExpiresAt) {
			t.Errorf("%s: session cookie %+v", tc.name, c)
		}
		if c := ClearSessionCookie(r); c.MaxAge >= 0 || c.Value != "" {
			t.Errorf("%s: clearing cookie %+v", tc.name, c)
		}
	}
}

func TestCSRF(t *testing.T) {
	tokA, tokB := newToken(), newToken()
	first, again := CSRFToken(tokA), CSRFToken(tokA) // derived, not random: the same session gives the same token
	if first != again || first == CSRFToken(tokB) || strings.Contains(first, tokA) {
		t.Fatal("CSRF tokens must be stable per session, differ between sessions, and not contain the session token")
	}
	form := func(v string) *http.Request {
		r := httptest.NewRequest("POST", "/x", strings.NewReader(url.Values{CSRFField: {v}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	}
	header := func(v string) *http.Request {
		r := httptest.NewRequest("POST", "/x", nil)
		r.Header.Set(CSRFHeader, v)
		return r
	}
	for _, tc := range []struct {
		name    string
		r       *http.Request
		session string
		ok      bool
	}{
		{"form field", form(CSRFToken(tokA)), tokA, true},
		{"header", header(CSRFToken(tokA)), tokA, true},
		{"other session's token", form(CSRFToken(tokB)), tokA, false},
		{"missing", form(""), tokA, false},
		{"the session token itself", form(tokA), tokA, false},
		{"no session", form(CSRFToken("")), "", false},
		{"truncated", header(CSRFToken(tokA)[:20]), tokA, false},
	} {
		if err := CheckCSRF(tc.r, tc.session); (err == nil) != tc.ok {
			t.Errorf("%s: CheckCSRF = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
