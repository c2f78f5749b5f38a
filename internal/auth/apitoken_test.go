package auth

import (
	"database/sql"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/serversage/sage/internal/store"
)

func TestAPITokens(t *testing.T) {
	each(t, func(t *testing.T, a *Auth, clk *clock, db *store.DB) {
		alice := mustUser(t, a, "alice", RoleAdmin)
		bob := mustUser(t, a, "bob", RoleViewer)
		secret, tok, err := a.NewAPIToken(ctx, alice.ID, "grafana", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(secret, APITokenPrefix) || len(secret) != len(APITokenPrefix)+52 || strings.ToLower(secret) != secret {
			t.Errorf("secret %q: want sage_ and 52 lower-case base32 characters", secret)
		}
		u, got, err := a.APITokenUser(ctx, secret)
		if err != nil || u.ID != alice.ID || got.ID != tok.ID || got.LastUsedAt.IsZero() {
			t.Fatalf("APITokenUser = %+v, %+v, %v", u, got, err)
		}

		// Field errors and unknown users.
		_, _, err = a.NewAPIToken(ctx, alice.ID, "GRAFANA", time.Time{})
		wantField(t, err, "name")
		_, _, err = a.NewAPIToken(ctx, alice.ID, " ", time.Time{})
		wantField(t, err, "name")
		_, _, err = a.NewAPIToken(ctx, alice.ID, "old", clk.now().Add(-time.Second))
		wantField(t, err, "expires_at")
		if _, _, err := a.NewAPIToken(ctx, "nope", "x", time.Time{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("token for an unknown user: %v", err)
		}
		// Names are per user.
		if _, _, err := a.NewAPIToken(ctx, bob.ID, "grafana", time.Time{}); err != nil {
			t.Errorf("bob's grafana token: %v", err)
		}

		expiring, _, err := a.NewAPIToken(ctx, alice.ID, "ci", clk.now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		toRevoke, revTok, _ := a.NewAPIToken(ctx, alice.ID, "script", time.Time{})
		if err := a.RevokeAPIToken(ctx, revTok.ID); err != nil {
			t.Fatal(err)
		}
		if err := a.RevokeAPIToken(ctx, revTok.ID); err != nil {
			t.Errorf("revoking twice: %v", err)
		}
		if err := a.RevokeAPIToken(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("revoking an unknown token: %v", err)
		}
		bobSecret, _, _ := a.NewAPIToken(ctx, bob.ID, "cli", time.Time{})
		if err := a.Disable(ctx, bob.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := a.APITokenUser(ctx, expiring); err != nil {
			t.Errorf("token before its expiry: %v", err)
		}
		clk.advance(time.Hour)
		for _, tc := range []struct{ name, secret string }{
			{"expired", expiring},
			{"revoked", toRevoke},
			{"disabled user", bobSecret},
			{"unknown", APITokenPrefix + randomString(tokenBytes)},
			{"no prefix", strings.TrimPrefix(secret, APITokenPrefix)},
			{"empty", ""},
			{"stored hash", hashToken(secret)},
		} {
			if _, _, err := a.APITokenUser(ctx, tc.secret); !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("%s token: %v, want ErrUnauthenticated", tc.name, err)
			}
		}

		list, err := a.ListAPITokens(ctx, alice.ID)
		if err != nil || len(list) != 3 {
			t.Fatalf("ListAPITokens = %+v, %v; want 3", list, err)
		}
		if list[0].Name != "script" || list[0].RevokedAt.IsZero() || list[1].Name != "ci" || list[1].ExpiresAt.IsZero() || list[2].Name != "grafana" {
			t.Errorf("list (newest first) = %+v", list)
		}
		// Deleting a user takes their tokens with them.
		if err := a.DeleteUser(ctx, bob.ID); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db, "SELECT COUNT(*) FROM api_tokens WHERE user_id = $1", bob.ID); n != 0 {
			t.Errorf("%d tokens left of a deleted user", n)
		}
	})
}

// TestSecretsNotStored reads every stored column of users, sessions and api_tokens and checks no
// password, session token or API token secret appears in any of them.
func TestSecretsNotStored(t *testing.T) {
	each(t, func(t *testing.T, a *Auth, _ *clock, db *store.DB) {
		_, adminPassword, err := a.EnsureAdmin(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		u := mustUser(t, a, "alice", RoleEngineer)
		s, _ := a.NewSession(ctx, u.ID)
		secret, _, _ := a.NewAPIToken(ctx, u.ID, "grafana", time.Time{})
		secrets := []string{adminPassword, goodPassword, s.Token, secret, strings.TrimPrefix(secret, APITokenPrefix), CSRFToken(s.Token)}

		var hashes []string
		for _, table := range []string{"users", "sessions", "api_tokens"} {
			rows, err := db.QueryContext(ctx, "SELECT * FROM "+table)
			if err != nil {
				t.Fatal(err)
			}
			cols, _ := rows.Columns()
			for rows.Next() {
				vals := make([]sql.NullString, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				for i, v := range vals {
					for _, sec := range secrets {
						if strings.Contains(v.String, sec) {
							t.Errorf("%s.%s holds a secret", table, cols[i])
						}
					}
					if cols[i] == "password_hash" {
						hashes = append(hashes, v.String)
					}
				}
			}
			rows.Close()
		}
		if len(hashes) != 2 {
			t.Fatalf("%d password hashes, want 2", len(hashes))
		}
		for i, pw := range []string{adminPassword, goodPassword} {
			if bcrypt.CompareHashAndPassword([]byte(hashes[i]), []byte(pw)) != nil {
				t.Errorf("password_hash %d is not a bcrypt hash of the password", i)
			}
		}
		if n := count(t, db, "SELECT COUNT(*) FROM sessions WHERE token_hash = $1", hashToken(s.Token)); n != 1 {
			t.Errorf("session not stored under the SHA-256 of its token")
		}
		if n := count(t, db, "SELECT COUNT(*) FROM api_tokens WHERE token_hash = $1", hashToken(secret)); n != 1 {
			t.Errorf("API token not stored under the SHA-256 of its secret")
		}
	})
}

func TestMiddleware(t *testing.T) {
	each(t, func(t *testing.T, a *Auth, _ *clock, _ *store.DB) {
		alice := mustUser(t, a, "alice", RoleEngineer)
		s, _ := a.NewSession(ctx, alice.ID)
		secret, _, _ := a.NewAPIToken(ctx, alice.ID, "grafana", time.Time{})
		revoked, rt, _ := a.NewAPIToken(ctx, alice.ID, "old", time.Time{})
		a.RevokeAPIToken(ctx, rt.ID)

		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, ok := IdentityFrom(r.Context())
			u, uok := UserFrom(r.Context())
			if !ok || !uok || u.ID != alice.ID {
				t.Errorf("handler reached without the user in the context")
			}
			if (id.Method == BySession) != (id.CSRF != "") {
				t.Errorf("identity %+v: CSRF token must be set exactly for sessions", id)
			}
			w.Write([]byte(string(id.Method)))
		})
		plain := a.Middleware(handler)
		withLogin := a.MiddlewareWith(MiddlewareOptions{LoginPath: "/login"}, handler)

		cookie := func(r *http.Request) { r.AddCookie(&http.Cookie{Name: SessionCookie, Value: s.Token}) }
		html := func(r *http.Request) { r.Header.Set("Accept", "text/html,application/xhtml+xml") }
		bearer := func(tok string) func(*http.Request) {
			return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
		}
		basic := func(user, pw string) func(*http.Request) {
			return func(r *http.Request) { r.SetBasicAuth(user, pw) }
		}
		csrfForm := func(v string) func(*http.Request) {
			return func(r *http.Request) {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				r.Body = readCloser(url.Values{CSRFField: {v}}.Encode())
			}
		}
		for _, tc := range []struct {
			name     string
			h        http.Handler
			method   string
			setup    []func(*http.Request)
			code     int
			body     string
			location string
		}{
			{"none", plain, "GET", nil, 401, "", ""},
			{"none, browser, no login page", plain, "GET", []func(*http.Request){html}, 401, "", ""},
			{"none, browser, login page", withLogin, "GET", []func(*http.Request){html}, 303, "", "/login?next=%2Fprometheus%2Fapi%2Fv1%2Fquery%3Fquery%3Dup"},
			{"none, API client, login page", withLogin, "GET", nil, 401, "", ""},
			{"cookie", plain, "GET", []func(*http.Request){cookie}, 200, "session", ""},
			{"bad cookie", plain, "GET", []func(*http.Request){func(r *http.Request) { r.AddCookie(&http.Cookie{Name: SessionCookie, Value: "x"}) }}, 401, "", ""},
			{"bearer", plain, "GET", []func(*http.Request){bearer(secret)}, 200, "bearer", ""},
			{"bearer revoked", plain, "GET", []func(*http.Request){bearer(revoked)}, 401, "", ""},
			{"bearer bad, cookie good", plain, "GET", []func(*http.Request){bearer("sage_x"), cookie}, 401, "", ""},
			{"bearer session token", plain, "GET", []func(*http.Request){bearer(s.Token)}, 401, "", ""},
			{"basic", plain, "GET", []func(*http.Request){basic("Alice", secret)}, 200, "basic", ""},
			{"basic, another user's name", plain, "GET", []func(*http.Request){basic("bob", secret)}, 401, "", ""},
			{"basic, password not token", plain, "GET", []func(*http.Request){basic("alice", goodPassword)}, 401, "", ""},
			{"unknown scheme", plain, "GET", []func(*http.Request){func(r *http.Request) { r.Header.Set("Authorization", "Digest x") }}, 401, "", ""},
			{"cookie POST without CSRF", plain, "POST", []func(*http.Request){cookie}, 403, "", ""},
			{"cookie POST wrong CSRF", plain, "POST", []func(*http.Request){cookie, csrfForm("nope")}, 403, "", ""},
			{"cookie POST form CSRF", plain, "POST", []func(*http.Request){cookie, csrfForm(CSRFToken(s.Token))}, 200, "session", ""},
			{"cookie DELETE header CSRF", plain, "DELETE", []func(*http.Request){cookie, func(r *http.Request) { r.Header.Set(CSRFHeader, CSRFToken(s.Token)) }}, 200, "session", ""},
			{"bearer POST needs no CSRF", plain, "POST", []func(*http.Request){bearer(secret)}, 200, "bearer", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := httptest.NewRequest(tc.method, "/prometheus/api/v1/query?query=up", nil)
				for _, f := range tc.setup {
					f(r)
				}
				w := httptest.NewRecorder()
				tc.h.ServeHTTP(w, r)
				if w.Code != tc.code {
					t.Fatalf("status %d, want %d (%s)", w.Code, tc.code, w.Body)
				}
				if tc.body != "" && w.Body.String() != tc.body {
					t.Errorf("body %q, want %q", w.Body, tc.body)
				}
				if tc.code == 401 && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), `Basic realm="sage"`) {
					t.Errorf("401 without a Basic challenge: %q", w.Header().Get("WWW-Authenticate"))
				}
				if tc.location != "" && w.Header().Get("Location") != tc.location {
					t.Errorf("Location %q, want %q", w.Header().Get("Location"), tc.location)
				}
			})
		}
	})
}

type stringBody struct{ *strings.Reader }

func (stringBody) Close() error { return nil }

func readCloser(s string) stringBody { return stringBody{strings.NewReader(s)} }
