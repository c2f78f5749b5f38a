// Package store opens the hub's state database, SQLite by default or PostgreSQL when given a
// postgres:// DSN, and brings its schema up to date with one set of embedded migrations that runs
// on both. It knows nothing of what the tables mean: the domain packages (inventory and later
// ones) own their types and their SQL, and use the small helpers here for transactions and for
// recognising errors the same way on both databases.
//
// Portability rules the domain packages follow (checked by this package's tests on both
// databases): placeholders are $1, $2, ... (PostgreSQL's native style, which SQLite also accepts
// and binds by number, so no rebinding is needed); ids are TEXT made by NewID; instants are BIGINT
// unix milliseconds (Millis, FromMillis); JSON is TEXT; upserts use INSERT ... ON CONFLICT (...)
// DO UPDATE and reads after writes use RETURNING (SQLite >= 3.35). A bare parameter whose type
// PostgreSQL cannot infer (SELECT $1) needs a CAST.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// Dialect names the database behind a DB.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// sqliteBusyTimeout is how long a writer waits for another writer before SQLite gives up with
// SQLITE_BUSY. Writes are short, so a few seconds means "something is stuck", not "busy".
const sqliteBusyTimeout = 5 * time.Second

// pingTimeout bounds the first contact with PostgreSQL when the caller's context has no deadline,
// so that a server that drops packets fails start-up instead of hanging it.
const pingTimeout = 10 * time.Second

// DB is an open, migrated state database. The embedded *sql.DB is safe for concurrent use.
type DB struct {
	*sql.DB
	dialect  Dialect
	redacted string  // the DSN as it may be shown: password removed
	applied  []int64 // migration versions this Open applied
	logger   *slog.Logger
}

// Open opens the database named by dsn and applies any pending migrations.
//
// dsn is one of:
//   - ":memory:": a private in-memory SQLite database, gone when the DB is closed (tests,
//     throw-away runs; a warning is logged because nothing survives a restart). An empty dsn is
//     an error rather than this: state silently lost at the next restart is worse than a refusal;
//   - a file path, or "sqlite:PATH": a SQLite database file, created if absent (its directory
//     must exist);
//   - "postgres://..." or "postgresql://...": PostgreSQL, in the URL form pgx understands.
//
// The password in a DSN never appears in an error or a log line.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*DB, error) {
	if logger == nil {
		logger = slog.Default()
	}
	var (
		db  *DB
		err error
	)
	switch {
	case strings.TrimSpace(strings.TrimPrefix(dsn, "sqlite:")) == "":
		return nil, errors.New("store: no database given: name a SQLite file, postgres://..., or :memory: for a throw-away store")
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		db, err = openPostgres(ctx, dsn)
	default:
		db, err = openSQLite(ctx, dsn, logger)
	}
	if err != nil {
		return nil, err
	}
	db.logger = logger
	if err := db.migrate(ctx); err != nil {
		db.DB.Close()
		return nil, err
	}
	version, err := db.SchemaVersion(ctx)
	if err != nil {
		db.DB.Close()
		return nil, err
	}
	logger.Info("state store open", "dialect", string(db.dialect), "dsn", db.redacted,
		"schema_version", version, "migrations_applied", len(db.applied))
	return db, nil
}

func openSQLite(ctx context.Context, dsn string, logger *slog.Logger) (*DB, error) {
	path := strings.TrimPrefix(dsn, "sqlite:")
	memory := path == ":memory:"
	if strings.ContainsAny(path, "?#") {
		// modernc treats everything after '?' as DSN parameters; refusing is clearer than
		// opening a different file than the one named.
		return nil, fmt.Errorf("store: SQLite path %q: '?' and '#' are not allowed in the file name", path)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(sqliteBusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "foreign_keys(1)")
	// BEGIN IMMEDIATE takes the write lock at the start of a transaction, so two writers queue on
	// busy_timeout instead of one failing at once with SQLITE_BUSY when it upgrades a read lock.
	q.Set("_txlock", "immediate")
	var name string
	if memory {
		// The memdb VFS shares one database among all pooled connections of this process, under a
		// name no other DB uses; WAL does not apply to memory databases.
		name = "/sage-" + uuid.NewString()
		q.Set("vfs", "memdb")
		logger.Warn("state store is in memory: nothing is kept after the process ends")
	} else {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("store: SQLite path %q: %w", path, err)
		}
		name = abs
		q.Add("_pragma", "journal_mode(WAL)")
		// NORMAL in WAL mode keeps the database consistent on power loss and loses at most the last
		// transactions since the last checkpoint sync; a committed transaction survives a process crash.
		q.Add("_pragma", "synchronous(NORMAL)")
	}
	sdb, err := sql.Open("sqlite", name+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: opening SQLite %s: %w", name, err)
	}
	// WAL lets readers run beside the one writer; more connections than cores buys nothing.
	sdb.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))
	sdb.SetMaxIdleConns(max(4, runtime.GOMAXPROCS(0)))
	if memory {
		// A memdb database lives while one connection to it is open; never let the pool drop all.
		sdb.SetConnMaxIdleTime(0)
		sdb.SetConnMaxLifetime(0)
	}
	db := &DB{DB: sdb, dialect: SQLite, redacted: "sqlite:" + name}
	if memory {
		db.redacted = "sqlite::memory:"
	}
	var mode string
	if err := sdb.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("store: opening SQLite %s: %w", name, err)
	}
	if !memory && !strings.EqualFold(mode, "wal") {
		sdb.Close()
		return nil, fmt.Errorf("store: SQLite %s: journal mode is %q, not WAL (is the file on a file system without shared memory?)", name, mode)
	}
	return db, nil
}

func openPostgres(ctx context.Context, dsn string) (*DB, error) {
	redacted := Redact(dsn)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors already redact the password, but may quote the DSN: say only ours.
		return nil, fmt.Errorf("store: PostgreSQL DSN %s is not valid: %w", redacted, unquoteDSN(err, dsn))
	}
	sdb := stdlib.OpenDB(*cfg)
	sdb.SetMaxOpenConns(20)
	// As many idle as open: with fewer, a burst of concurrent requests closes and reopens
	// connections (a new PostgreSQL backend each) instead of queueing for one (bench/hub-ui-load.sh).
	sdb.SetMaxIdleConns(20)
	sdb.SetConnMaxIdleTime(5 * time.Minute)
	sdb.SetConnMaxLifetime(time.Hour)
	pctx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(ctx, pingTimeout)
		defer cancel()
	}
	if err := sdb.PingContext(pctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("store: cannot reach PostgreSQL at %s (%s): %w", pgAddrs(cfg), redacted, unquoteDSN(err, dsn))
	}
	return &DB{DB: sdb, dialect: Postgres, redacted: redacted}, nil
}

// pgAddrs names every host:port pgx will try, for the error an operator reads.
func pgAddrs(cfg *pgx.ConnConfig) string {
	addrs := []string{hostPort(cfg.Host, cfg.Port)}
	for _, fb := range cfg.Fallbacks {
		a := hostPort(fb.Host, fb.Port)
		if a != addrs[len(addrs)-1] {
			addrs = append(addrs, a)
		}
	}
	return strings.Join(addrs, ", ")
}

func hostPort(host string, port uint16) string {
	if strings.HasPrefix(host, "/") { // Unix socket directory
		return host + "/.s.PGSQL." + strconv.Itoa(int(port))
	}
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(int(port))
	}
	return host + ":" + strconv.Itoa(int(port))
}

// unquoteDSN guards against a driver error that quotes the DSN verbatim: if the raw DSN or its
// password shows up, the error is replaced by its redacted text.
func unquoteDSN(err error, dsn string) error {
	msg := err.Error()
	pw := password(dsn)
	if !strings.Contains(msg, dsn) && (pw == "" || !strings.Contains(msg, pw)) {
		return err
	}
	msg = strings.ReplaceAll(msg, dsn, Redact(dsn))
	if pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return errors.New(msg)
}

func password(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return ""
	}
	if p, ok := u.User.Password(); ok {
		return p
	}
	for k, v := range u.Query() {
		if strings.Contains(strings.ToLower(k), "password") && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// Redact returns dsn with any password (in the user info or a *password* query parameter)
// replaced by "xxxxx", fit for logs and errors. A DSN that is not a URL is returned as its scheme
// alone, since where its secrets are cannot be known.
func Redact(dsn string) string {
	if !strings.Contains(dsn, "://") {
		return dsn // a SQLite path: no secrets
	}
	u, err := url.Parse(dsn)
	if err != nil {
		scheme, _, _ := strings.Cut(dsn, "://")
		return scheme + "://(unparsable DSN)"
	}
	q := u.Query()
	changed := false
	for k := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// migrate applies the pending embedded migrations. On PostgreSQL a session advisory lock keeps two
// hubs starting at once from applying the same migration twice; SQLite's write lock does that job
// there.
func (db *DB) migrate(ctx context.Context) error {
	sub, err := fsSub()
	if err != nil {
		return err
	}
	opts := []goose.ProviderOption{goose.WithSlog(db.logger.With("component", "migrate"))}
	dialect := goose.DialectSQLite3
	if db.dialect == Postgres {
		dialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return fmt.Errorf("store: migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, db.DB, sub, opts...)
	if err != nil {
		return fmt.Errorf("store: loading migrations: %w", err)
	}
	current, known, err := p.GetVersions(ctx)
	if err != nil {
		return fmt.Errorf("store: reading schema version of %s: %w", db.redacted, err)
	}
	if current > known {
		return fmt.Errorf("store: the database %s has schema version %d, newer than this sage knows (%d): run a newer sage, or restore a backup", db.redacted, current, known)
	}
	results, err := p.Up(ctx)
	for _, r := range results {
		if r.Error == nil {
			db.applied = append(db.applied, r.Source.Version)
		}
	}
	if err != nil {
		return fmt.Errorf("store: migrating %s: %w", db.redacted, err)
	}
	return nil
}

func fsSub() (fs.FS, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("store: embedded migrations: %w", err)
	}
	return sub, nil
}

// Dialect reports which database this is.
func (db *DB) Dialect() Dialect { return db.dialect }

// String returns the redacted DSN.
func (db *DB) String() string { return db.redacted }

// Applied returns the migration versions that Open applied (none when the schema was current).
func (db *DB) Applied() []int64 { return append([]int64(nil), db.applied...) }

// SchemaVersion returns the highest migration version applied to the database.
func (db *DB) SchemaVersion(ctx context.Context) (int64, error) {
	var v sql.NullInt64
	err := db.QueryRowContext(ctx, "SELECT MAX(version_id) FROM goose_db_version WHERE is_applied = "+db.True()).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("store: reading schema version: %w", err)
	}
	return v.Int64, nil
}

// True is the boolean literal for true in this dialect; goose's own table uses a boolean column.
func (db *DB) True() string {
	if db.dialect == Postgres {
		return "TRUE"
	}
	return "1"
}

// Close closes the database.
func (db *DB) Close() error { return db.DB.Close() }

// Tx runs fn in a transaction, committing when fn returns nil and rolling back when it returns an
// error or panics (the panic continues). fn must use tx, not the DB, for every statement: on
// SQLite a statement outside the transaction waits for the transaction's write lock.
func (db *DB) Tx(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			return errors.Join(err, fmt.Errorf("store: rollback: %w", rerr))
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// NewID returns a new id: a UUIDv7 string. Version 7 starts with the creation time, so new rows
// land at the end of the primary-key index (as with a sequence) and ids sort by creation, while
// still being made without asking the database, which keeps inserts portable and lets a SQLite
// inventory be copied into PostgreSQL without renumbering.
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// NewV7 fails only if the system's random source does; so would everything else.
		panic(fmt.Sprintf("store: making an id: %v", err))
	}
	return id.String()
}

// Millis converts t to the BIGINT unix milliseconds stored in the database.
func Millis(t time.Time) int64 { return t.UnixMilli() }

// FromMillis converts stored unix milliseconds back to a UTC time.
func FromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// Row is what a scan function reads one row from: *sql.Row and *sql.Rows both are.
type Row interface{ Scan(...any) error }

// ScanAll reads every row of a query with scan and closes the rows. err is the query's own error,
// so a call reads `store.ScanAll(db.QueryContext(...))`-style: ScanAll(rows, err, scan).
func ScanAll[T any](rows *sql.Rows, err error, scan func(Row) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
