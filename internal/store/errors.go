package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ConstraintKind says which kind of integrity constraint a statement violated.
type ConstraintKind int

const (
	Unique ConstraintKind = iota + 1
	ForeignKey
	Check
	NotNull
)

func (k ConstraintKind) String() string {
	switch k {
	case Unique:
		return "unique"
	case ForeignKey:
		return "foreign key"
	case Check:
		return "check"
	case NotNull:
		return "not null"
	}
	return "unknown"
}

// ConstraintError is a constraint violation, described the same way for both databases.
type ConstraintError struct {
	Kind ConstraintKind
	// Name is the constraint's name: PostgreSQL reports it; for SQLite it is the named index or
	// CHECK constraint, or, for a unique index on plain columns (which SQLite reports by column),
	// "<table>_<col>[_<col>...]_key", the name the migrations give such indexes. Empty for a
	// foreign key violation on SQLite, which does not say which key.
	Name string
	Err  error // the driver's error
}

func (e *ConstraintError) Error() string {
	if e.Name == "" {
		return e.Kind.String() + " constraint violated: " + e.Err.Error()
	}
	return e.Kind.String() + " constraint " + e.Name + " violated: " + e.Err.Error()
}

func (e *ConstraintError) Unwrap() error { return e.Err }

// AsConstraint reports whether err (or an error it wraps) is a constraint violation from either
// driver, and describes it.
func AsConstraint(err error) (*ConstraintError, bool) {
	if err == nil {
		return nil, false
	}
	var ce *ConstraintError
	if errors.As(err, &ce) {
		return ce, true
	}
	var pge *pgconn.PgError
	if errors.As(err, &pge) {
		var kind ConstraintKind
		switch pge.Code {
		case "23505":
			kind = Unique
		case "23503":
			kind = ForeignKey
		case "23514":
			kind = Check
		case "23502":
			kind = NotNull
		default:
			return nil, false
		}
		return &ConstraintError{Kind: kind, Name: pge.ConstraintName, Err: err}, true
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		msg := se.Error()
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return &ConstraintError{Kind: Unique, Name: sqliteUniqueName(after(msg, "UNIQUE constraint failed: ")), Err: err}, true
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return &ConstraintError{Kind: ForeignKey, Err: err}, true
		case sqlite3.SQLITE_CONSTRAINT_CHECK:
			return &ConstraintError{Kind: Check, Name: trimCode(after(msg, "CHECK constraint failed: ")), Err: err}, true
		case sqlite3.SQLITE_CONSTRAINT_NOTNULL:
			return &ConstraintError{Kind: NotNull, Name: trimCode(after(msg, "NOT NULL constraint failed: ")), Err: err}, true
		}
		// ON DELETE RESTRICT is enforced by an internal trigger, so its violation carries
		// SQLITE_CONSTRAINT_TRIGGER; only the message says it was a foreign key.
		if se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT && strings.Contains(msg, "FOREIGN KEY constraint failed") {
			return &ConstraintError{Kind: ForeignKey, Err: err}, true
		}
	}
	return nil, false
}

// after returns what follows marker in msg, or "" when marker is absent.
func after(msg, marker string) string {
	_, rest, ok := strings.Cut(msg, marker)
	if !ok {
		return ""
	}
	return rest
}

// trimCode drops the " (2067)" result code modernc appends to messages.
func trimCode(s string) string {
	if i := strings.LastIndex(s, " ("); i >= 0 && strings.HasSuffix(s, ")") {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// sqliteUniqueName turns what SQLite says after "UNIQUE constraint failed: " into an index name:
// "index 'x'" (an expression index) is x; "t.a, t.b" is "t_a_b_key".
func sqliteUniqueName(detail string) string {
	detail = trimCode(detail)
	if name, ok := strings.CutPrefix(detail, "index '"); ok {
		return strings.TrimSuffix(name, "'")
	}
	if detail == "" {
		return ""
	}
	var table string
	var cols []string
	for _, tc := range strings.Split(detail, ",") {
		t, c, ok := strings.Cut(strings.TrimSpace(tc), ".")
		if !ok {
			return detail
		}
		table = t
		cols = append(cols, c)
	}
	return table + "_" + strings.Join(cols, "_") + "_key"
}

// IsUnavailable reports whether err means the database could not be reached or went away (as
// opposed to rejecting a statement): the caller should answer 503 and try again later, as
// database/sql reconnects by itself.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	// A connection cut mid-statement surfaces as an EOF from the wire, or as pgx's closed
	// connection on the next use, before database/sql discards it.
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, sql.ErrConnDone) {
		return true
	}
	// database/sql's closed pool has no exported error value; its text is stable since Go 1.0.
	if strings.Contains(err.Error(), "sql: database is closed") {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pge *pgconn.PgError
	if errors.As(err, &pge) {
		// Class 08: connection exception; 57P01..57P03: shutting down or not yet accepting
		// connections; 53300: too many connections.
		return strings.HasPrefix(pge.Code, "08") || pge.Code == "57P01" || pge.Code == "57P02" ||
			pge.Code == "57P03" || pge.Code == "53300"
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return !errors.Is(err, context.Canceled)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN:
			return true
		}
		return false
	}
	var ne net.Error
	return errors.As(err, &ne)
}
