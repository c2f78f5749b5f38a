// Package inventory is the tracking repository: what the MSP looks after, for whom, and under
// which contract. Its model follows NetBox's tenant -> site -> device -> service: a Client (the
// tenant) has Sites, Hosts (optionally at a site) and Contracts; a Host carries the Services
// monitored on it. Hosts enrol themselves through their agent (EnrolHost), keyed by the
// machine's id, so that re-enrolling a machine updates its host instead of adding another.
//
// Every write validates first and writes nothing when its input is invalid; problems come back as
// a *ValidationError listing config.FieldErrors named after the JSON fields ("addresses[1]",
// "facts.cores"), including duplicates, which the database's unique indexes detect and this
// package maps to the field ("name", "slug", "machine_id") on SQLite and PostgreSQL alike. Names
// are unique ignoring case: clients globally, sites, hosts and contracts within their client,
// services within their host.
//
// Deletion protects, as NetBox does (its Tenant, Site and Device foreign keys are PROTECT): a
// client is not deleted while it has sites, hosts or contracts, nor a site while hosts are at it;
// the refusal is an error wrapping ErrInUse that says what is left. Deleting a host deletes its
// services (NetBox cascades a device's services too): they describe the host and mean nothing
// without it. The foreign keys are ON DELETE RESTRICT / CASCADE to match, so the rule holds even
// against a concurrent insert.
//
// A client, site, host or contract never moves to another client, nor a service to another host:
// Update refuses it. Clients are the unit of isolation for the roles that come later, and a move
// is better done as an explicit operation than as a side effect of an edit.
package inventory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/store"
)

// ErrNotFound is wrapped by the error of a Get, Update or Delete whose id does not exist.
var ErrNotFound = errors.New("not found")

// ErrInUse is wrapped by the error of a Delete refused because other records depend on the one
// to be deleted.
var ErrInUse = errors.New("in use")

// ValidationError lists every problem with one write's input. Nothing was written.
type ValidationError = config.ValidationError

// FieldErrors returns the field errors carried by err, or nil when err is not a validation error.
func FieldErrors(err error) []config.FieldError { return config.FieldErrors(err) }

func invalid(fields ...config.FieldError) error { return config.Invalid(fields...) }

// Inventory reads and writes the inventory in a state database.
type Inventory struct {
	db  *store.DB
	now func() time.Time

	gen   atomic.Uint64 // bumped by every write (cache.go)
	cache listCache
}

// New returns an Inventory on db, which must have been opened with store.Open (migrated).
func New(db *store.DB) *Inventory {
	return &Inventory{db: db, now: time.Now}
}

// Page limits a List. Zero Limit means no limit.
type Page struct {
	Limit  int
	Offset int
}

// clock returns the current time as stored: UTC, whole milliseconds, so that what a write returns
// equals what a later read returns.
func (inv *Inventory) clock() time.Time {
	return inv.now().UTC().Truncate(time.Millisecond)
}

// uniqueFields maps the migrations' unique indexes to the field a violation is about.
var uniqueFields = map[string]config.FieldError{
	"clients_name_fold_key":             {Field: "name", Msg: "a client with this name already exists (names ignore case)"},
	"clients_slug_key":                  {Field: "slug", Msg: "a client with this slug already exists"},
	"sites_client_id_name_fold_key":     {Field: "name", Msg: "this client already has a site with this name (names ignore case)"},
	"hosts_client_id_name_fold_key":     {Field: "name", Msg: "this client already has a host with this name (names ignore case)"},
	"hosts_machine_id_key":              {Field: "machine_id", Msg: "another host already has this machine id"},
	"services_host_id_name_fold_key":    {Field: "name", Msg: "this host already has a service with this name (names ignore case)"},
	"contracts_client_id_name_fold_key": {Field: "name", Msg: "this client already has a contract with this name (names ignore case)"},
}

// dbError turns a unique violation into the ValidationError naming its field, and a foreign-key
// violation on delete into ErrInUse; anything else is returned wrapped with what was being done.
func dbError(what string, err error) error {
	if err == nil {
		return nil
	}
	var ve *ValidationError
	if errors.As(err, &ve) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInUse) {
		return err
	}
	if ce, ok := store.AsConstraint(err); ok {
		switch ce.Kind {
		case store.Unique:
			if fe, ok := uniqueFields[ce.Name]; ok {
				return invalid(fe)
			}
		case store.ForeignKey:
			if strings.HasPrefix(what, "deleting") {
				// The explicit checks ran first; this is a row added concurrently.
				return fmt.Errorf("%s: %w: other records were added that refer to it", what, ErrInUse)
			}
			// Existence of referenced rows is checked first; this is one deleted concurrently.
			return fmt.Errorf("%s: a record it refers to was deleted meanwhile: %w", what, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// exists reports whether a row with id exists in table (a constant from this package).
func exists(ctx context.Context, q querier, table, id string) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, "SELECT 1 FROM "+table+" WHERE id = $1", id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// count returns the number of rows of table whose column equals id.
func count(ctx context.Context, q querier, table, column, id string) (int, error) {
	var n int
	err := q.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table+" WHERE "+column+" = $1", id).Scan(&n)
	return n, err
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// where builds a WHERE clause with numbered placeholders: each "?" in a condition becomes the
// next $n.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	var b strings.Builder
	ai := 0
	for i := 0; i < len(cond); i++ {
		if cond[i] == '?' && ai < len(args) {
			w.args = append(w.args, args[ai])
			ai++
			b.WriteString("$" + strconv.Itoa(len(w.args)))
			continue
		}
		b.WriteByte(cond[i])
	}
	w.conds = append(w.conds, b.String())
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// page appends LIMIT/OFFSET. OFFSET needs a LIMIT on SQLite and "LIMIT ALL" is PostgreSQL's
// only, so "no limit" with an offset is the largest BIGINT.
func (w *where) page(p Page) string {
	if p.Limit <= 0 && p.Offset <= 0 {
		return ""
	}
	limit := int64(p.Limit)
	if limit <= 0 {
		limit = math.MaxInt64
	}
	w.args = append(w.args, limit, int64(max(p.Offset, 0)))
	n := len(w.args)
	return " LIMIT $" + strconv.Itoa(n-1) + " OFFSET $" + strconv.Itoa(n)
}

// likeContains returns a LIKE pattern (with '!' as the escape character) matching s anywhere.
func likeContains(s string) string {
	return "%" + escapeLike(s) + "%"
}

func escapeLike(s string) string {
	r := strings.NewReplacer("!", "!!", "%", "!%", "_", "!_")
	return r.Replace(s)
}

// fold is the form in which names are compared for uniqueness and searched.
func fold(s string) string { return strings.ToLower(s) }

// jsonText encodes v for a TEXT column.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only lists of strings and the Facts struct are stored; they always encode.
		panic(fmt.Sprintf("inventory: encoding %T: %v", v, err))
	}
	return string(b)
}

func stringList(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	return jsonText(l)
}

func decodeList(field, s string) ([]string, error) {
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("decoding stored %s: %w", field, err)
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// dateLayout is how calendar dates are stored: as text, which sorts and compares like the dates.
const dateLayout = "2006-01-02"

// dateOf returns t's calendar date (in t's own location) as UTC midnight.
func dateOf(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func parseDate(s string) (time.Time, error) {
	return time.Parse(dateLayout, s)
}

// scanAll is store.ScanAll with this package's error wrapping; what says what was being done.
func scanAll[T any](rows *sql.Rows, err error, scan func(store.Row) (T, error), what string) ([]T, error) {
	out, err := store.ScanAll(rows, err, scan)
	return out, dbError(what, err)
}
