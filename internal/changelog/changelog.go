// Package changelog is the hub's record of what changed on its hosts: the change events that
// agents' change monitors (internal/changes) keep in their journals and ship to the hub, stored
// per host in the state database for the host pages, the API and Grafana annotations.
//
// An agent resends whatever the hub has not acknowledged, so Insert is idempotent: an event is
// known by its host, its journal's random id and its sequence number in that journal, and one
// received twice is stored once. Events go with their host when it is deleted, and Prune drops
// those older than the retention (DefaultRetention unless configured) from the hub's housekeeping.
package changelog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/serversage/sage/internal/changes"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/store"
)

const (
	// MaxBatch is the most events one Insert (one agent request) may carry.
	MaxBatch = 1000
	// DefaultRetention is how long events are kept: a little over a year, so that "what changed
	// since the same time last year" can still be answered.
	DefaultRetention = 400 * 24 * time.Hour
	// MaxJournalLen bounds a journal id; agents make 32 hex digits.
	MaxJournalLen = 64
	// maxFuture is how far ahead of the hub's clock an event may be dated: clocks differ a little,
	// but an event from next year would sit at the top of every timeline until then.
	maxFuture = 24 * time.Hour
	// maxFieldErrors bounds the problems reported for one batch: the first few say enough.
	maxFieldErrors = 20
	// insertChunk is how many rows go in one INSERT: 15 parameters each stays far below both
	// databases' limits, and a 1000-event batch is 20 statements rather than 1000 round trips.
	insertChunk = 50
)

// earliest is the oldest time an event may carry: anything before is an unset clock.
var earliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// identRE is the shape of a kind or an action.
var identRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// ErrNotFound is wrapped by Insert's error when the host does not exist (deleted meanwhile).
var ErrNotFound = errors.New("not found")

// Kinds lists the event kinds the hub accepts, sorted: every kind the change monitor has a source
// for, and file integrity's.
func Kinds() []string {
	return slices.Sorted(slices.Values(append(changes.Kinds(), changes.KindFiles)))
}

// Actions lists the actions an event may have.
var Actions = []string{changes.Added, changes.Changed, changes.Removed}

// Record is one stored event, with its host's and client's names.
type Record struct {
	ID         string            `json:"id"`
	HostID     string            `json:"host_id"`
	HostName   string            `json:"host"`
	ClientID   string            `json:"client_id"`
	ClientSlug string            `json:"client"`
	Journal    string            `json:"journal"`
	Seq        uint64            `json:"seq"`
	Time       time.Time         `json:"time"`
	Kind       string            `json:"kind"`
	Object     string            `json:"object"`
	Action     string            `json:"action"`
	Before     map[string]string `json:"before"`
	After      map[string]string `json:"after"`
	Diff       string            `json:"diff"`
	Files      []string          `json:"files"`
	Tampered   bool              `json:"tampered"`
	Summary    string            `json:"summary"`
	ReceivedAt time.Time         `json:"received_at"`
}

// Filter selects events for List. Every set field narrows the selection.
type Filter struct {
	HostID   string
	ClientID string
	// ClientSlugs and HostNames select by name (case-insensitive), as Grafana's annotation
	// queries do; any one of each list matches.
	ClientSlugs []string
	HostNames   []string
	Kinds       []string
	// Query matches events whose object or summary contains it, ignoring case.
	Query string
	// From is inclusive and To exclusive; a zero time leaves that end open.
	From, To     time.Time
	TamperedOnly bool
	// Limit (0: no limit) and Offset page the newest-first list.
	Limit, Offset int
}

// Store reads and writes change events in a state database.
type Store struct {
	db  *store.DB
	now func() time.Time
}

// New returns a Store on db, which must have been opened with store.Open (migrated).
func New(db *store.DB) *Store { return &Store{db: db, now: time.Now} }

// Validate checks a batch as an agent sends it: a journal id, and events of known kinds and
// actions, numbered, dated neither before 2000 nor over a day ahead of now. Problems are
// config.FieldErrors named as the request's JSON ("events[3].kind"), at most 20.
func Validate(journal string, events []changes.Event, now time.Time) []config.FieldError {
	var fe []config.FieldError
	add := func(field, format string, args ...any) {
		if len(fe) < maxFieldErrors {
			fe = append(fe, config.Errorf(field, format, args...))
		}
	}
	switch {
	case journal == "":
		add("journal", "is required")
	case len(journal) > MaxJournalLen || strings.IndexFunc(journal, notIDRune) >= 0:
		add("journal", "must be at most %d letters, digits, '-' or '_'", MaxJournalLen)
	}
	if len(events) > MaxBatch {
		add("events", "has %d events; at most %d may be sent at once", len(events), MaxBatch)
		return fe
	}
	kinds := Kinds()
	for i, ev := range events {
		p := "events[" + strconv.Itoa(i) + "]."
		if ev.Seq == 0 {
			add(p+"seq", "is required (the journal's sequence number, from 1)")
		}
		// A kind or action this hub does not know yet (a newer agent's) is stored as it comes: a
		// refused batch would hold up its journal until the hub is upgraded. Only the shape is checked.
		if !identRE.MatchString(ev.Kind) {
			add(p+"kind", "%q is not a kind (lower-case letters, digits and '_'; known: %s)", truncate(ev.Kind, 40), strings.Join(kinds, ", "))
		}
		if !identRE.MatchString(ev.Action) {
			add(p+"action", "%q is not an action such as added, removed or changed", truncate(ev.Action, 40))
		}
		// A time before 2000 or over a day ahead is a host clock that is wrong, not a wrong event:
		// Insert dates it when the hub received it (and keeps the host's time in after.host_time).
		if ev.Time.IsZero() {
			add(p+"time", "is required")
		}
		if ev.Object == "" {
			add(p+"object", "is required")
		}
		if !textOK(ev.Object) || !textOK(ev.Diff) || !attrsOK(ev.Before) || !attrsOK(ev.After) || slices.ContainsFunc(ev.Files, notText) {
			add(p[:len(p)-1], "contains text that is not valid UTF-8 or a NUL character")
		}
	}
	return fe
}

func notIDRune(r rune) bool {
	return !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_'))
}

// textOK says whether s can be stored in a TEXT column of both databases (PostgreSQL refuses NUL).
func textOK(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

func notText(s string) bool { return !textOK(s) }

func attrsOK(o changes.Object) bool {
	for k, v := range o {
		if !textOK(k) || !textOK(v) {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// Insert stores a batch of one host's journal, ignoring events it already has, and returns the
// highest sequence number of the batch (every event up to it is now stored: the agent's
// acknowledgement) and how many events were new. An invalid batch is a *config.ValidationError
// and nothing is stored; a host that does not exist is ErrNotFound.
func (s *Store) Insert(ctx context.Context, hostID, journal string, events []changes.Event) (acked uint64, inserted int, err error) {
	if fe := Validate(journal, events, s.now()); len(fe) > 0 {
		return 0, 0, config.Invalid(fe...)
	}
	if len(events) == 0 {
		return 0, 0, nil
	}
	now := s.now()
	received := store.Millis(now)
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		for chunk := range slices.Chunk(events, insertChunk) {
			var (
				q    strings.Builder
				args = make([]any, 0, len(chunk)*15)
			)
			q.WriteString("INSERT INTO change_events (id, host_id, journal, seq, time, kind, object, action, before, after, diff, files, tampered, summary, received_at) VALUES ")
			for i, ev := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteByte('(')
				for j := range 15 {
					if j > 0 {
						q.WriteString(", ")
					}
					q.WriteString("$" + strconv.Itoa(len(args)+j+1))
				}
				q.WriteByte(')')
				tampered := 0
				if ev.Tampered {
					tampered = 1
				}
				if ev.Time.Before(earliest) || ev.Time.After(now.Add(maxFuture)) {
					ev.After = maps.Clone(ev.After)
					if ev.After == nil {
						ev.After = changes.Object{}
					}
					ev.After["host_time"] = ev.Time.UTC().Format(time.RFC3339)
					ev.Time = now
				}
				args = append(args, store.NewID(), hostID, journal, int64(ev.Seq), store.Millis(ev.Time), ev.Kind, ev.Object, ev.Action,
					jsonText(ev.Before, "{}"), jsonText(ev.After, "{}"), ev.Diff, jsonText(ev.Files, "[]"), tampered, ev.Summary(), received)
				acked = max(acked, ev.Seq)
			}
			q.WriteString(" ON CONFLICT (host_id, journal, seq) DO NOTHING")
			res, err := tx.ExecContext(ctx, q.String(), args...)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err == nil {
				inserted += int(n)
			}
		}
		return nil
	})
	if ce, ok := store.AsConstraint(err); ok && ce.Kind == store.ForeignKey {
		return 0, 0, fmt.Errorf("storing change events: host %s: %w", hostID, ErrNotFound)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("storing change events: %w", err)
	}
	return acked, inserted, nil
}

// jsonText encodes a map or list of strings for a TEXT column; empty is empty.
func jsonText[T ~map[string]string | ~[]string](v T, empty string) string {
	if len(v) == 0 {
		return empty
	}
	b, err := json.Marshal(v)
	if err != nil {
		// Maps and lists of strings always encode (invalid UTF-8 is refused by Validate).
		return empty
	}
	return string(b)
}

// where builds a WHERE clause with $n placeholders, which both drivers accept.
type where struct {
	conds []string
	args  []any
}

func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args))
}

func (w *where) add(cond string) { w.conds = append(w.conds, cond) }

func (w *where) in(col string, vals []string) {
	ph := make([]string, len(vals))
	for i, v := range vals {
		ph[i] = w.arg(v)
	}
	w.add(col + " IN (" + strings.Join(ph, ", ") + ")")
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

func likeContains(s string) string {
	return "%" + strings.NewReplacer("!", "!!", "%", "!%", "_", "!_").Replace(s) + "%"
}

func lower(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = strings.ToLower(strings.TrimSpace(s))
	}
	return out
}

// List returns the events f selects, newest first.
func (s *Store) List(ctx context.Context, f Filter) ([]Record, error) {
	var w where
	if f.HostID != "" {
		w.add("e.host_id = " + w.arg(f.HostID))
	}
	if f.ClientID != "" {
		w.add("h.client_id = " + w.arg(f.ClientID))
	}
	if len(f.ClientSlugs) > 0 {
		w.in("c.slug", lower(f.ClientSlugs)) // slugs are lower-case
	}
	if len(f.HostNames) > 0 {
		w.in("h.name_fold", lower(f.HostNames))
	}
	if len(f.Kinds) > 0 {
		w.in("e.kind", f.Kinds)
	}
	if q := strings.TrimSpace(f.Query); q != "" {
		p := likeContains(strings.ToLower(q))
		w.add("(LOWER(e.object) LIKE " + w.arg(p) + " ESCAPE '!' OR LOWER(e.summary) LIKE " + w.arg(p) + " ESCAPE '!')")
	}
	if !f.From.IsZero() {
		w.add("e.time >= " + w.arg(store.Millis(f.From)))
	}
	if !f.To.IsZero() {
		w.add("e.time < " + w.arg(store.Millis(f.To)))
	}
	if f.TamperedOnly {
		w.add("e.tampered = 1")
	}
	q := `SELECT e.id, e.host_id, h.name, h.client_id, c.slug, e.journal, e.seq, e.time, e.kind, e.object, e.action,
		e.before, e.after, e.diff, e.files, e.tampered, e.summary, e.received_at
		FROM change_events e JOIN hosts h ON h.id = e.host_id JOIN clients c ON c.id = h.client_id` +
		w.sql() + " ORDER BY e.time DESC, e.seq DESC, e.id DESC"
	if f.Limit > 0 || f.Offset > 0 {
		limit := int64(f.Limit)
		if limit <= 0 {
			limit = 1 << 62 // OFFSET needs a LIMIT on SQLite
		}
		q += " LIMIT " + w.arg(limit) + " OFFSET " + w.arg(int64(max(f.Offset, 0)))
	}
	rows, err := s.db.QueryContext(ctx, q, w.args...)
	out, err := store.ScanAll(rows, err, scanRecord)
	if err != nil {
		return nil, fmt.Errorf("listing change events: %w", err)
	}
	return out, nil
}

// ListHost returns a host's events, newest first; f.HostID is set to hostID.
func (s *Store) ListHost(ctx context.Context, hostID string, f Filter) ([]Record, error) {
	f.HostID = hostID
	return s.List(ctx, f)
}

// ListClient returns the events of every host of a client in [from, to), newest first;
// f.ClientID, f.From and f.To are set from the arguments.
func (s *Store) ListClient(ctx context.Context, clientID string, from, to time.Time, f Filter) ([]Record, error) {
	f.ClientID, f.From, f.To = clientID, from, to
	return s.List(ctx, f)
}

func scanRecord(r store.Row) (Record, error) {
	var (
		rec                  Record
		seq, at, received    int64
		tampered             int64
		before, after, files string
	)
	err := r.Scan(&rec.ID, &rec.HostID, &rec.HostName, &rec.ClientID, &rec.ClientSlug, &rec.Journal, &seq, &at,
		&rec.Kind, &rec.Object, &rec.Action, &before, &after, &rec.Diff, &files, &tampered, &rec.Summary, &received)
	if err != nil {
		return rec, err
	}
	rec.Seq, rec.Time, rec.ReceivedAt, rec.Tampered = uint64(seq), store.FromMillis(at), store.FromMillis(received), tampered != 0
	// The columns are written only by Insert; a damaged value leaves the field empty rather than
	// hiding the event.
	_ = json.Unmarshal([]byte(before), &rec.Before)
	_ = json.Unmarshal([]byte(after), &rec.After)
	_ = json.Unmarshal([]byte(files), &rec.Files)
	if rec.Before == nil {
		rec.Before = map[string]string{}
	}
	if rec.After == nil {
		rec.After = map[string]string{}
	}
	if rec.Files == nil {
		rec.Files = []string{}
	}
	return rec, nil
}

// Prune deletes the events dated before cutoff and returns how many.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM change_events WHERE time < $1", store.Millis(cutoff))
	if err != nil {
		return 0, fmt.Errorf("pruning change events: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("pruning change events: %w", err)
	}
	return n, nil
}
