// Package storetest gives tests a fresh, migrated state database of each kind the hub supports,
// so that every test of code that uses the store runs against SQLite and PostgreSQL alike.
//
// PostgreSQL is the server named by SAGE_TEST_POSTGRES (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable); each test gets its own database,
// created with a random name and dropped when the test ends. Without a reachable server the
// PostgreSQL half is skipped on a developer's machine and fails under CI=true (see testenv).
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/testenv"
)

// DefaultPostgres is the server used when SAGE_TEST_POSTGRES is unset.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Each runs body twice, as subtests "sqlite" and "postgres", each with a fresh migrated database.
func Each(t *testing.T, body func(t *testing.T, db *store.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { body(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { body(t, Postgres(t)) })
}

// EachDSN is Each for tests that open (and reopen) the database themselves: body gets the DSN of
// a fresh SQLite file or of a fresh, empty PostgreSQL database.
func EachDSN(t *testing.T, body func(t *testing.T, dsn string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { body(t, SQLiteDSN(t)) })
	t.Run("postgres", func(t *testing.T) { body(t, PostgresDSN(t)) })
}

// EachB is Each for benchmarks.
func EachB(b *testing.B, body func(b *testing.B, db *store.DB)) {
	b.Helper()
	b.Run("sqlite", func(b *testing.B) { body(b, SQLite(b)) })
	b.Run("postgres", func(b *testing.B) { body(b, Postgres(b)) })
}

// Logger returns a logger that writes through t.Log, so that store messages appear with the test
// that caused them and only when it fails or runs verbosely.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// SQLiteDSN returns the DSN of a new SQLite file in a fresh temporary directory.
func SQLiteDSN(t testing.TB) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "sage.db")
}

// SQLite opens a fresh SQLite database file, closed when the test ends.
func SQLite(t testing.TB) *store.DB {
	t.Helper()
	return open(t, SQLiteDSN(t))
}

// Postgres opens a fresh PostgreSQL database, closed and dropped when the test ends.
func Postgres(t testing.TB) *store.DB {
	t.Helper()
	return open(t, PostgresDSN(t))
}

func open(t testing.TB, dsn string) *store.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := store.Open(ctx, dsn, Logger(t))
	if err != nil {
		t.Fatalf("opening %s: %v", store.Redact(dsn), err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// PostgresDSN creates an empty PostgreSQL database for this test (nothing migrated) and returns
// its DSN; the database is dropped when the test ends, after everything the test registered with
// t.Cleanup later than this call has run (connections closed).
func PostgresDSN(t testing.TB) string {
	t.Helper()
	server := os.Getenv("SAGE_TEST_POSTGRES")
	if server == "" {
		server = DefaultPostgres
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := sql.Open("pgx", server)
	if err != nil {
		t.Fatalf("SAGE_TEST_POSTGRES=%s: %v", store.Redact(server), err)
	}
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		testenv.Missing(t, "PostgreSQL at "+store.Redact(server)+" ("+err.Error()+")",
			"install it with: apt-get install postgresql (trust auth on 127.0.0.1), or set SAGE_TEST_POSTGRES to a server's URL")
	}
	var buf [8]byte
	if _, err := rand.Read(buf[:]); err != nil {
		t.Fatal(err)
	}
	name := "sage_test_" + hex.EncodeToString(buf[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		t.Fatalf("creating test database on %s: %v", store.Redact(server), err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE (PostgreSQL 13+) ends sessions a failed test left open.
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("SAGE_TEST_POSTGRES is not a URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// MustExec runs statements on db, failing the test on the first error.
func MustExec(t testing.TB, db *store.DB, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := db.ExecContext(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}
