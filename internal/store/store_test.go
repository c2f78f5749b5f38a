package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

var ctx = context.Background()

// tables the first migration creates; every one must exist on both databases.
var tables = []string{"clients", "sites", "hosts", "services", "contracts", "goose_db_version"}

func TestOpenMigrates(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		v, err := db.SchemaVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v < 1 {
			t.Fatalf("schema version %d after Open, want >= 1", v)
		}
		if got := db.Applied(); len(got) == 0 || got[len(got)-1] != v {
			t.Fatalf("Applied() = %v on a fresh database, want versions up to %d", got, v)
		}
		for _, tbl := range tables {
			var n int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+tbl).Scan(&n); err != nil {
				t.Errorf("table %s: %v", tbl, err)
			}
		}
		want := map[string]store.Dialect{"sqlite": store.SQLite, "postgres": store.Postgres}[lastPart(t.Name())]
		if db.Dialect() != want {
			t.Errorf("Dialect() = %q, want %q", db.Dialect(), want)
		}
	})
}

func lastPart(name string) string { return name[strings.LastIndex(name, "/")+1:] }

// TestMigrateTwice opens the same database twice: the second Open applies nothing and leaves the
// goose version table as it was.
func TestMigrateTwice(t *testing.T) {
	storetest.EachDSN(t, func(t *testing.T, dsn string) {
		db1 := open(t, dsn)
		if len(db1.Applied()) == 0 {
			t.Fatal("first Open applied no migrations")
		}
		rows1 := versionRows(t, db1)
		v1, _ := db1.SchemaVersion(ctx)
		db1.Close()

		db2 := open(t, dsn)
		if got := db2.Applied(); len(got) != 0 {
			t.Errorf("second Open applied %v, want nothing", got)
		}
		if rows2 := versionRows(t, db2); rows2 != rows1 {
			t.Errorf("goose_db_version has %d rows after the second Open, %d after the first", rows2, rows1)
		}
		if v2, _ := db2.SchemaVersion(ctx); v2 != v1 {
			t.Errorf("schema version %d after reopening, was %d", v2, v1)
		}
	})
}

func versionRows(t *testing.T, db *store.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM goose_db_version").Scan(&n); err != nil {
		t.Fatalf("goose_db_version: %v", err)
	}
	return n
}

func open(t testing.TB, dsn string) *store.DB {
	t.Helper()
	db, err := store.Open(ctx, dsn, storetest.Logger(t))
	if err != nil {
		t.Fatalf("Open(%s): %v", store.Redact(dsn), err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestNewerSchemaRefused: a database migrated by a newer sage is not touched by an older one.
func TestNewerSchemaRefused(t *testing.T) {
	storetest.EachDSN(t, func(t *testing.T, dsn string) {
		db := open(t, dsn)
		_, err := db.ExecContext(ctx, "INSERT INTO goose_db_version (version_id, is_applied) VALUES (999999, "+db.True()+")")
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		db2, err := store.Open(ctx, dsn, storetest.Logger(t))
		if err == nil {
			db2.Close()
			t.Fatal("Open succeeded on a database with a newer schema version")
		}
		if !strings.Contains(err.Error(), "999999") || !strings.Contains(err.Error(), "newer") {
			t.Errorf("error %q does not name the newer version", err)
		}
	})
}

// TestCommittedSurvivesReopen: what a transaction committed is there after closing and reopening.
func TestCommittedSurvivesReopen(t *testing.T) {
	storetest.EachDSN(t, func(t *testing.T, dsn string) {
		db := open(t, dsn)
		id := store.NewID()
		now := store.Millis(time.Now())
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO clients (id, name, name_fold, slug, created_at, updated_at)
				VALUES ($1, $2, $3, $4, $5, $5)`, id, "Acme", "acme", "acme", now)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// A rolled-back write next to it must not survive.
		wantErr := errors.New("changed my mind")
		err = db.Tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO clients (id, name, name_fold, slug, created_at, updated_at)
				VALUES ($1, 'Gone', 'gone', 'gone', 0, 0)`, store.NewID()); err != nil {
				return err
			}
			return wantErr
		})
		if !errors.Is(err, wantErr) {
			t.Fatalf("Tx returned %v, want the body's error", err)
		}
		db.Close()

		db2 := open(t, dsn)
		var name string
		var created int64
		if err := db2.QueryRowContext(ctx, "SELECT name, created_at FROM clients WHERE id = $1", id).Scan(&name, &created); err != nil {
			t.Fatalf("committed row after reopening: %v", err)
		}
		if name != "Acme" || created != now {
			t.Errorf("got (%q, %d), want (Acme, %d)", name, created, now)
		}
		var n int
		if err := db2.QueryRowContext(ctx, "SELECT COUNT(*) FROM clients").Scan(&n); err != nil || n != 1 {
			t.Errorf("%d clients after reopening (err %v), want 1: the rolled-back one leaked", n, err)
		}
	})
}

func TestTxPanicRollsBack(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("the panic did not propagate out of Tx")
				}
			}()
			_ = db.Tx(ctx, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO clients (id, name, name_fold, slug, created_at, updated_at)
					VALUES ($1, 'P', 'p', 'p', 0, 0)`, store.NewID()); err != nil {
					t.Fatal(err)
				}
				panic("boom")
			})
		}()
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM clients").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d rows after a panicking transaction, want 0", n)
		}
		// The pool must still work: a connection left inside a transaction would block SQLite.
		if err := db.Tx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO clients (id, name, name_fold, slug, created_at, updated_at)
				VALUES ($1, 'Q', 'q', 'q', 0, 0)`, store.NewID())
			return err
		}); err != nil {
			t.Fatalf("transaction after the panic: %v", err)
		}
	})
}

// TestPortableSQL checks the statement forms the domain packages rely on, on both databases.
func TestPortableSQL(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		storetest.MustExec(t, db, `CREATE TABLE kv (k TEXT NOT NULL PRIMARY KEY, v TEXT NOT NULL, n BIGINT NOT NULL DEFAULT 0)`)
		tests := []struct {
			name  string
			query string
			args  []any
			want  string
		}{
			{"numbered placeholders, one used twice, RETURNING",
				`INSERT INTO kv (k, v, n) VALUES ($1, $2 || $1, $3) RETURNING v`, []any{"a", "x-", int64(1)}, "x-a"},
			{"placeholders out of order",
				`INSERT INTO kv (v, k) VALUES ($2, $1) RETURNING k || '=' || v`, []any{"b", "two"}, "b=two"},
			{"ON CONFLICT DO UPDATE with excluded and RETURNING",
				`INSERT INTO kv (k, v, n) VALUES ($1, $2, 1) ON CONFLICT (k) DO UPDATE SET v = excluded.v, n = kv.n + 1 RETURNING v || ':' || CAST(n AS TEXT)`,
				[]any{"a", "new"}, "new:2"},
			{"ON CONFLICT DO UPDATE ... WHERE that does not match returns no row",
				`INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v WHERE kv.v = 'nope' RETURNING v`,
				[]any{"a", "ignored"}, "<no rows>"},
			{"CAST of a bare parameter",
				`SELECT CAST($1 AS TEXT)`, []any{"plain"}, "plain"},
			{"LIKE with an escape character",
				`SELECT k FROM kv WHERE v LIKE $1 ESCAPE '!'`, []any{"%!_%"}, "<no rows>"},
			{"LIKE matches literally after escaping",
				`SELECT k FROM kv WHERE k || '_' || v LIKE $1 ESCAPE '!'`, []any{"b!_two"}, "b"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var got string
				err := db.QueryRowContext(ctx, tc.query, tc.args...).Scan(&got)
				if errors.Is(err, sql.ErrNoRows) {
					got = "<no rows>"
				} else if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Errorf("got %q, want %q", got, tc.want)
				}
			})
		}
	})
}

// TestConstraintErrors: violations come back as the same ConstraintError on both databases.
func TestConstraintErrors(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		clientID := store.NewID()
		storetest.MustExec(t, db,
			`INSERT INTO clients (id, name, name_fold, slug, created_at, updated_at) VALUES ('`+clientID+`', 'A', 'a', 'a', 0, 0)`,
			`INSERT INTO hosts (id, client_id, name, name_fold, machine_id, created_at, updated_at) VALUES ('h1', '`+clientID+`', 'web', 'web', 'm1', 0, 0)`,
		)
		tests := []struct {
			name     string
			stmt     string
			kind     store.ConstraintKind
			wantName string // "" = do not check (SQLite does not name foreign keys)
		}{
			{"unique on one column", `INSERT INTO clients (id, name, name_fold, slug, created_at, updated_at) VALUES ('c2', 'A', 'a', 'other', 0, 0)`,
				store.Unique, "clients_name_fold_key"},
			{"unique slug", `INSERT INTO clients (id, name, name_fold, slug, created_at, updated_at) VALUES ('c2', 'B', 'b', 'a', 0, 0)`,
				store.Unique, "clients_slug_key"},
			{"unique on two columns", `INSERT INTO hosts (id, client_id, name, name_fold, created_at, updated_at) VALUES ('h2', '` + clientID + `', 'WEB', 'web', 0, 0)`,
				store.Unique, "hosts_client_id_name_fold_key"},
			{"unique machine id", `INSERT INTO hosts (id, client_id, name, name_fold, machine_id, created_at, updated_at) VALUES ('h2', '` + clientID + `', 'db', 'db', 'm1', 0, 0)`,
				store.Unique, "hosts_machine_id_key"},
			{"primary key", `INSERT INTO hosts (id, client_id, name, name_fold, created_at, updated_at) VALUES ('h1', '` + clientID + `', 'db', 'db', 0, 0)`,
				store.Unique, ""},
			{"foreign key on insert", `INSERT INTO hosts (id, client_id, name, name_fold, created_at, updated_at) VALUES ('h3', 'no-such-client', 'x', 'x', 0, 0)`,
				store.ForeignKey, ""},
			{"foreign key on delete (restrict)", `DELETE FROM clients WHERE id = '` + clientID + `'`,
				store.ForeignKey, ""},
			{"check", `UPDATE hosts SET status = 'lost' WHERE id = 'h1'`,
				store.Check, "hosts_status_check"},
			{"not null", `INSERT INTO clients (id, name, name_fold, slug, created_at, updated_at) VALUES ('c3', NULL, 'n', 'n', 0, 0)`,
				store.NotNull, ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := db.ExecContext(ctx, tc.stmt)
				if err == nil {
					t.Fatal("statement succeeded, want a constraint violation")
				}
				ce, ok := store.AsConstraint(fmt.Errorf("wrapped: %w", err))
				if !ok {
					t.Fatalf("AsConstraint(%v) = false", err)
				}
				if ce.Kind != tc.kind {
					t.Errorf("kind %v, want %v (%v)", ce.Kind, tc.kind, err)
				}
				if tc.wantName != "" && ce.Name != tc.wantName {
					t.Errorf("name %q, want %q (%v)", ce.Name, tc.wantName, err)
				}
				if store.IsUnavailable(err) {
					t.Errorf("IsUnavailable(%v) = true for a constraint violation", err)
				}
			})
		}
		if _, ok := store.AsConstraint(errors.New("not a database error")); ok {
			t.Error("AsConstraint accepted a plain error")
		}
		_, err := db.ExecContext(ctx, "SELECT * FROM no_such_table")
		if _, ok := store.AsConstraint(err); ok || err == nil {
			t.Errorf("AsConstraint(%v) = true for a syntax/missing-table error", err)
		}
	})
}

// TestConcurrentWriters: writers queue instead of failing (SQLite: BEGIN IMMEDIATE + busy_timeout).
func TestConcurrentWriters(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		const writers, each = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					err := db.Tx(ctx, func(tx *sql.Tx) error {
						var n int
						if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM clients").Scan(&n); err != nil {
							return err
						}
						name := fmt.Sprintf("c-%d-%d", w, i)
						_, err := tx.ExecContext(ctx, `INSERT INTO clients (id, name, name_fold, slug, created_at, updated_at)
							VALUES ($1, $2, $2, $2, $3, $3)`, store.NewID(), name, int64(n))
						return err
					})
					if err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM clients").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != writers*each {
			t.Errorf("%d rows, want %d", n, writers*each)
		}
	})
}

// TestSQLitePragmas: every pooled connection has the settings, not only the first one.
func TestSQLitePragmas(t *testing.T) {
	db := storetest.SQLite(t)
	var conns []*sql.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 4 { // held at once, so the pool must open four connections
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	want := map[string]string{"journal_mode": "wal", "foreign_keys": "1", "synchronous": "1", "busy_timeout": "5000"}
	for i, c := range conns {
		for pragma, w := range want {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if !strings.EqualFold(got, w) {
				t.Errorf("connection %d: PRAGMA %s = %q, want %q", i, pragma, got, w)
			}
		}
	}
	var version string
	if err := conns[0].QueryRowContext(ctx, "SELECT sqlite_version()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	// ON CONFLICT ... DO UPDATE and RETURNING need 3.35.
	var maj, min int
	fmt.Sscanf(version, "%d.%d", &maj, &min)
	if maj < 3 || (maj == 3 && min < 35) {
		t.Errorf("SQLite %s is older than 3.35", version)
	}
}

func TestOpenInMemory(t *testing.T) {
	for _, dsn := range []string{":memory:", "sqlite::memory:"} {
		t.Run(fmt.Sprintf("%q", dsn), func(t *testing.T) {
			db := open(t, dsn)
			if db.Dialect() != store.SQLite {
				t.Fatalf("dialect %q", db.Dialect())
			}
			// Two connections held at once must see the same database.
			c1, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c1.Close()
			if _, err := c1.ExecContext(ctx, `INSERT INTO clients (id, name, name_fold, slug, created_at, updated_at) VALUES ('x', 'X', 'x', 'x', 0, 0)`); err != nil {
				t.Fatal(err)
			}
			c2, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			var n int
			if err := c2.QueryRowContext(ctx, "SELECT COUNT(*) FROM clients").Scan(&n); err != nil || n != 1 {
				t.Fatalf("second connection sees %d clients (err %v), want 1", n, err)
			}
			var fk int
			if err := c2.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
				t.Errorf("foreign_keys = %d (err %v), want 1", fk, err)
			}
		})
	}
	// Two in-memory DBs are separate.
	a, b := open(t, ":memory:"), open(t, ":memory:")
	storetest.MustExec(t, a, `INSERT INTO clients (id, name, name_fold, slug, created_at, updated_at) VALUES ('x', 'X', 'x', 'x', 0, 0)`)
	var n int
	if err := b.QueryRowContext(ctx, "SELECT COUNT(*) FROM clients").Scan(&n); err != nil || n != 0 {
		t.Errorf("a second in-memory database sees %d clients of the first (err %v)", n, err)
	}
}

func TestOpenSQLiteErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, dsn, want string
	}{
		{"missing directory", filepath.Join(dir, "no", "such", "dir", "sage.db"), filepath.Join(dir, "no", "such", "dir")},
		{"no database named", "", "no database given"},
		{"sqlite prefix only", "sqlite:", "no database given"},
		{"question mark in path", "sqlite:" + filepath.Join(dir, "a?b.db"), "not allowed"},
		{"not a database", writeFile(t, filepath.Join(dir, "junk.db"), strings.Repeat("this is not SQLite\n", 300)), "junk.db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, err := store.Open(ctx, tc.dsn, storetest.Logger(t))
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOpenPostgresUnreachable: a clear error naming host:port, without the password, fast.
func TestOpenPostgresUnreachable(t *testing.T) {
	// A port that was just free: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	const secret = "s3cr3t-Pa55"
	for _, dsn := range []string{
		"postgres://sage:" + secret + "@" + addr + "/sage?sslmode=disable",
		"postgresql://sage@" + addr + "/sage?sslmode=disable&password=" + secret,
	} {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		db, err := store.Open(cctx, dsn, storetest.Logger(t))
		cancel()
		if err == nil {
			db.Close()
			t.Fatalf("Open(%s) succeeded with nothing listening", store.Redact(dsn))
		}
		msg := err.Error()
		if !strings.Contains(msg, addr) {
			t.Errorf("error %q does not name %s", msg, addr)
		}
		if strings.Contains(msg, secret) {
			t.Errorf("error %q shows the password", msg)
		}
		if !store.IsUnavailable(err) {
			t.Errorf("IsUnavailable(%v) = false", err)
		}
	}
	// Not even parsable: still no password.
	_, err = store.Open(ctx, "postgres://u:"+secret+"@127.0.0.1:notaport/db", storetest.Logger(t))
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("bad DSN: error %v", err)
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://u:pw@h:5432/db?sslmode=disable", "postgres://u:xxxxx@h:5432/db?sslmode=disable"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgresql://u@h/db?password=pw&sslpassword=k", "postgresql://u@h/db?password=xxxxx&sslpassword=xxxxx"},
		{"/var/lib/sage/sage.db", "/var/lib/sage/sage.db"},
		{"sqlite:/x.db", "sqlite:/x.db"},
		{"postgres://u:pw@h:%zz/db", "postgres://(unparsable DSN)"},
	}
	for _, tc := range tests {
		if got := store.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNewIDOrdered(t *testing.T) {
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = store.NewID()
	}
	if !slices.IsSorted(ids) {
		t.Error("ids made in sequence do not sort in creation order")
	}
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Error("duplicate ids")
	}
}

func TestMillisRoundTrip(t *testing.T) {
	in := time.Date(2026, 11, 21, 13, 14, 15, 123456789, time.FixedZone("X", 3600))
	got := store.FromMillis(store.Millis(in))
	if !got.Equal(in.Truncate(time.Millisecond)) || got.Location() != time.UTC {
		t.Errorf("round trip of %v gave %v", in, got)
	}
}

// TestPostgresConnectionLost: a connection killed under a transaction fails it with an error
// IsUnavailable recognises (the hub answers 503), and the pool recovers by itself.
func TestPostgresConnectionLost(t *testing.T) {
	db := storetest.Postgres(t)
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		var pid int
		if err := tx.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			return err
		}
		var ok bool
		if err := db.QueryRowContext(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("terminating backend %d: %v %v", pid, ok, err)
		}
		var one int
		return tx.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	})
	if err == nil {
		t.Fatal("a transaction whose connection was killed succeeded")
	}
	if !store.IsUnavailable(err) {
		t.Errorf("IsUnavailable(%v) = false", err)
	}
	if _, ok := store.AsConstraint(err); ok {
		t.Errorf("AsConstraint(%v) = true", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM clients").Scan(&n); err != nil {
		t.Errorf("the pool did not recover: %v", err)
	}
}
