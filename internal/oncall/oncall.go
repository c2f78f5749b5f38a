// Package oncall says who is on call and what an escalation policy does next, as Grafana OnCall
// and Zabbix model them: rotas per tier (L1, L2, L3) hand a shift from member to member at a
// wall-clock time in the rota's time zone, overrides replace the scheduled person for an
// interval, and an escalation policy is an ordered list of steps (notify a tier, notify a user,
// wait, repeat) that runs until someone acknowledges.
//
// The package is in two halves. The pure half needs no database and does no I/O, so that it can
// be tested against any timeline and so that its caller (internal/alert's escalation runner)
// owns persistence: Rota.At and Rota.Shifts compute the schedule, Policy.Advance is the
// escalation state machine. The store half (Store) keeps contacts, rotas, overrides and policies
// in the state database, validating every write as the inventory does (a *ValidationError of
// field errors named after the JSON fields, such as "steps[2].wait"; nothing written), and
// answers OnCall and PolicyFor.
//
// ErrNotFound and ErrInUse are the inventory's own, so that a handler maps this package's
// errors exactly as it maps the inventory's.
package oncall

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // rotas name IANA zones; a hub on a machine without zoneinfo still knows them

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
)

// ErrNotFound is wrapped by the error of a Get, Update or Delete whose id does not exist, and
// by PolicyFor when no policy applies.
var ErrNotFound = inventory.ErrNotFound

// ErrInUse is wrapped by the error of a change refused because the hub depends on the record: the
// policy for all clients and any severity, the fallback of every incident, cannot be deleted or
// narrowed (edit its steps instead).
var ErrInUse = inventory.ErrInUse

// ValidationError lists every problem with one write's input. Nothing was written.
type ValidationError = config.ValidationError

// FieldErrors returns the field errors carried by err, or nil when err is not a validation error.
func FieldErrors(err error) []config.FieldError { return config.FieldErrors(err) }

func invalid(fields ...config.FieldError) error { return config.Invalid(fields...) }

// Tier is a support level. Rotas are per tier, and a policy step notifies whoever is on call
// for one.
type Tier string

const (
	L1 Tier = "L1" // first line: watches alerts, follows the runbook's action plan
	L2 Tier = "L2" // second line: drills down, fixes what the runbook does not cover
	L3 Tier = "L3" // third line: experts, vendors
)

// Tiers lists the tiers in escalation order.
var Tiers = []Tier{L1, L2, L3}

// Valid reports whether t is one of Tiers.
func (t Tier) Valid() bool {
	for _, k := range Tiers {
		if t == k {
			return true
		}
	}
	return false
}

// Channels a person can be notified by.
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"
)

// AllChannels lists the channels in the order they are reported.
var AllChannels = []string{ChannelEmail, ChannelSMS}

// Store reads and writes contacts, rotas and escalation policies in a state database.
type Store struct {
	db  *store.DB
	now func() time.Time
}

// New returns a Store on db, which must have been opened with store.Open (migrated).
func New(db *store.DB) *Store {
	return &Store{db: db, now: time.Now}
}

// clock returns the current time as stored: UTC, whole milliseconds, so that what a write returns
// equals what a later read returns.
func (s *Store) clock() time.Time {
	return s.now().UTC().Truncate(time.Millisecond)
}

// uniqueFields maps the migration's unique indexes to the field a violation is about.
var uniqueFields = map[string]config.FieldError{
	"rotas_name_fold_key":               {Field: "name", Msg: "a rota with this name already exists (names ignore case)"},
	"escalation_policies_name_fold_key": {Field: "name", Msg: "a policy with this name already exists (names ignore case)"},
	"escalation_policies_scope_key":     {Field: "severity", Msg: "a policy for this client and severity already exists; edit it instead"},
	// A duplicate primary key: SQLite names the column, PostgreSQL the constraint.
	"user_contacts_user_id_key": {Field: "user_id", Msg: "this user already has contact details; update them instead"},
	"user_contacts_pkey":        {Field: "user_id", Msg: "this user already has contact details; update them instead"},
}

// dbError turns a unique violation into the ValidationError naming its field; anything else is
// returned wrapped with what was being done.
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
			// Existence of referenced rows is checked first; this is one deleted concurrently.
			return fmt.Errorf("%s: a record it refers to was deleted meanwhile: %w", what, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
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

// refCheck adds a field error when id is set and names no row of table.
func refCheck(ctx context.Context, q querier, fe *fieldErrs, table, field, what, id string) error {
	if id == "" {
		return nil
	}
	ok, err := exists(ctx, q, table, id)
	if err != nil {
		return err
	}
	if !ok {
		fe.add(field, "no %s has id %q", what, id)
	}
	return nil
}

// placeholders returns "$from, $from+1, ..." for n parameters.
func placeholders(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(from+i))
	}
	return b.String()
}

// fold is the form in which names are compared for uniqueness.
func fold(s string) string { return strings.ToLower(s) }

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// scanAll is store.ScanAll with this package's error wrapping; what says what was being done.
func scanAll[T any](rows *sql.Rows, err error, scan func(store.Row) (T, error), what string) ([]T, error) {
	out, err := store.ScanAll(rows, err, scan)
	return out, dbError(what, err)
}
