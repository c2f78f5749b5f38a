package auth

import (
	"testing"
	"time"

	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

// BenchmarkAuthenticate signs in at the production bcrypt cost, which is nearly all of a login's
// time; the database is SQLite (the lookup is microseconds against bcrypt's milliseconds).
func BenchmarkAuthenticate(b *testing.B) {
	a := New(storetest.SQLite(b))
	if _, err := a.CreateUser(ctx, User{Username: "alice", Role: RoleAdmin}, goodPassword); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, user string }{{"known", "alice"}, {"unknown", "mallory"}} {
		b.Run(tc.name, func(b *testing.B) {
			a.limiter = newLimiter(1<<30, time.Minute) // measure bcrypt, not the lockout
			b.ReportAllocs()
			for b.Loop() {
				a.Authenticate(ctx, tc.user, "wrong password!", "127.0.0.1")
			}
		})
	}
}

// BenchmarkSessionUser is the cost the middleware adds to every browser request.
func BenchmarkSessionUser(b *testing.B) {
	storetest.EachB(b, func(b *testing.B, db *store.DB) {
		a := New(db)
		a.cost = 4
		u, err := a.CreateUser(ctx, User{Username: "alice", Role: RoleAdmin}, goodPassword)
		if err != nil {
			b.Fatal(err)
		}
		s, err := a.NewSession(ctx, u.ID)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.SessionUser(ctx, s.Token); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAPITokenUser is the cost the middleware adds to every Grafana or script request.
func BenchmarkAPITokenUser(b *testing.B) {
	storetest.EachB(b, func(b *testing.B, db *store.DB) {
		a := New(db)
		a.cost = 4
		u, err := a.CreateUser(ctx, User{Username: "alice", Role: RoleAdmin}, goodPassword)
		if err != nil {
			b.Fatal(err)
		}
		secret, _, err := a.NewAPIToken(ctx, u.ID, "grafana", time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := a.APITokenUser(ctx, secret); err != nil {
				b.Fatal(err)
			}
		}
	})
}
