package oncall

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/serversage/sage/internal/store"
)

// Person is someone to notify, with how to reach them.
type Person struct {
	UserID string `json:"user_id"`
	Name   string `json:"name"` // the display name, or the username when there is none
	Email  string `json:"email"`
	Phone  string `json:"phone"`
	// Channels the person wants to be notified by; empty when they have no contact details.
	Channels []string `json:"channels"`
}

// RotaFilter selects rotas for ListRotas; zero fields do not filter.
type RotaFilter struct {
	Tier     Tier
	ClientID string // rotas of this client only (not the global ones)
}

const rotaCols = "id, name, tier, client_id, time_zone, handover, shift_seconds, start_date, created_at, updated_at"

func scanRota(row store.Row) (Rota, error) {
	var r Rota
	var client sql.NullString
	var shift, created, updated int64
	if err := row.Scan(&r.ID, &r.Name, &r.Tier, &client, &r.TimeZone, &r.Handover, &shift, &r.StartDate, &created, &updated); err != nil {
		return Rota{}, err
	}
	r.ClientID = client.String
	r.ShiftLength = Duration(time.Duration(shift) * time.Second)
	r.CreatedAt, r.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return r, nil
}

const overrideCols = "id, rota_id, user_id, starts_at, ends_at, note, created_at, updated_at"

func scanOverride(row store.Row) (Override, error) {
	var o Override
	var from, until, created, updated int64
	if err := row.Scan(&o.ID, &o.RotaID, &o.UserID, &from, &until, &o.Note, &created, &updated); err != nil {
		return Override{}, err
	}
	o.From, o.Until = store.FromMillis(from), store.FromMillis(until)
	o.CreatedAt, o.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return o, nil
}

// withDetails fills in the members and overrides of rotas. With at set, only the overrides
// covering that instant are read (all OnCall needs); otherwise all of them.
func withDetails(ctx context.Context, q querier, rotas []Rota, at *time.Time) error {
	if len(rotas) == 0 {
		return nil
	}
	ids := make([]any, len(rotas))
	index := make(map[string]int, len(rotas))
	for i, r := range rotas {
		ids[i] = r.ID
		index[r.ID] = i
		rotas[i].Members, rotas[i].Overrides = nil, nil
	}
	in := placeholders(1, len(ids))
	rows, err := q.QueryContext(ctx, "SELECT rota_id, user_id FROM rota_members WHERE rota_id IN ("+in+") ORDER BY rota_id, position", ids...)
	type member struct{ rota, user string }
	members, err := store.ScanAll(rows, err, func(row store.Row) (member, error) {
		var m member
		return m, row.Scan(&m.rota, &m.user)
	})
	if err != nil {
		return err
	}
	for _, m := range members {
		i := index[m.rota]
		rotas[i].Members = append(rotas[i].Members, m.user)
	}
	query, args := "SELECT "+overrideCols+" FROM rota_overrides WHERE rota_id IN ("+in+")", ids
	if at != nil {
		ms := store.Millis(*at)
		n := len(ids)
		query += " AND starts_at <= $" + strconv.Itoa(n+1) + " AND ends_at > $" + strconv.Itoa(n+1)
		args = append(slices.Clone(args), ms)
	}
	rows, err = q.QueryContext(ctx, query+" ORDER BY starts_at, id", args...)
	overrides, err := store.ScanAll(rows, err, scanOverride)
	if err != nil {
		return err
	}
	for _, o := range overrides {
		i := index[o.RotaID]
		rotas[i].Overrides = append(rotas[i].Overrides, o)
	}
	return nil
}

// usersMissing returns the indexes in ids of those that name no user.
func usersMissing(ctx context.Context, q querier, ids []string) ([]int, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	uniq := slices.Compact(slices.Sorted(slices.Values(ids)))
	args := make([]any, len(uniq))
	for i, id := range uniq {
		args[i] = id
	}
	rows, err := q.QueryContext(ctx, "SELECT id FROM users WHERE id IN ("+placeholders(1, len(args))+")", args...)
	found, err := store.ScanAll(rows, err, func(row store.Row) (string, error) {
		var id string
		return id, row.Scan(&id)
	})
	if err != nil {
		return nil, err
	}
	var missing []int
	for i, id := range ids {
		if !slices.Contains(found, id) {
			missing = append(missing, i)
		}
	}
	return missing, nil
}

// rotaRefs checks that the rota's client and members exist.
func rotaRefs(ctx context.Context, q querier, fe *fieldErrs, r Rota) error {
	if err := refCheck(ctx, q, fe, "clients", "client_id", "client", r.ClientID); err != nil {
		return err
	}
	var ids []string
	var at []int
	for i, m := range r.Members {
		if m != "" {
			ids, at = append(ids, m), append(at, i)
		}
	}
	missing, err := usersMissing(ctx, q, ids)
	if err != nil {
		return err
	}
	for _, i := range missing {
		fe.add("members["+strconv.Itoa(at[i])+"]", "no user has id %q", ids[i])
	}
	return nil
}

func insertMembers(ctx context.Context, tx *sql.Tx, r Rota) error {
	for i, m := range r.Members {
		if _, err := tx.ExecContext(ctx, "INSERT INTO rota_members (rota_id, position, user_id) VALUES ($1, $2, $3)", r.ID, i, m); err != nil {
			return err
		}
	}
	return nil
}

// CreateRota adds a rota with its members; ID and times are set here, Overrides ignored.
func (s *Store) CreateRota(ctx context.Context, r Rota) (Rota, error) {
	r.Members = slices.Clone(r.Members)
	r.normalize()
	fe := fieldErrs(r.validate())
	var out Rota
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := rotaRefs(ctx, tx, &fe, r); err != nil {
			return err
		}
		if err := invalid(fe...); err != nil {
			return err
		}
		r.ID = store.NewID()
		now := store.Millis(s.clock())
		row := tx.QueryRowContext(ctx, `INSERT INTO rotas (id, name, name_fold, tier, client_id, time_zone, handover, shift_seconds, start_date, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING `+rotaCols,
			r.ID, r.Name, fold(r.Name), string(r.Tier), nullString(r.ClientID), r.TimeZone, r.Handover,
			int64(r.ShiftLength.D()/time.Second), r.StartDate, now)
		var err error
		if out, err = scanRota(row); err != nil {
			return err
		}
		if err := insertMembers(ctx, tx, r); err != nil {
			return err
		}
		out.Members = r.Members
		return nil
	})
	return out, dbError("creating rota", err)
}

// GetRota returns the rota with id, with its members and all its overrides.
func (s *Store) GetRota(ctx context.Context, id string) (Rota, error) {
	return getRota(ctx, s.db, id)
}

func getRota(ctx context.Context, q querier, id string) (Rota, error) {
	r, err := scanRota(q.QueryRowContext(ctx, "SELECT "+rotaCols+" FROM rotas WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Rota{}, fmt.Errorf("rota %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Rota{}, dbError("reading rota", err)
	}
	l := []Rota{r}
	if err := withDetails(ctx, q, l, nil); err != nil {
		return Rota{}, dbError("reading rota", err)
	}
	return l[0], nil
}

// ListRotas returns the rotas f selects, by name, with their members and overrides.
func (s *Store) ListRotas(ctx context.Context, f RotaFilter) ([]Rota, error) {
	q := "SELECT " + rotaCols + " FROM rotas WHERE 1 = 1"
	var args []any
	if f.Tier != "" {
		args = append(args, string(f.Tier))
		q += " AND tier = $" + strconv.Itoa(len(args))
	}
	if f.ClientID != "" {
		args = append(args, f.ClientID)
		q += " AND client_id = $" + strconv.Itoa(len(args))
	}
	// No transaction: on SQLite it would take the write lock. A rota deleted between the two
	// queries just comes without members.
	rows, err := s.db.QueryContext(ctx, q+" ORDER BY name_fold, id", args...)
	out, err := store.ScanAll(rows, err, scanRota)
	if err == nil {
		err = withDetails(ctx, s.db, out, nil)
	}
	return out, dbError("listing rotas", err)
}

// UpdateRota replaces every writable field of the rota with r.ID, members included; its
// overrides are kept.
func (s *Store) UpdateRota(ctx context.Context, r Rota) (Rota, error) {
	r.Members = slices.Clone(r.Members)
	r.normalize()
	fe := fieldErrs(r.validate())
	var out Rota
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, "rotas", r.ID); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("rota %q: %w", r.ID, ErrNotFound)
		}
		if err := rotaRefs(ctx, tx, &fe, r); err != nil {
			return err
		}
		if err := invalid(fe...); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE rotas SET name = $2, name_fold = $3, tier = $4, client_id = $5, time_zone = $6,
			handover = $7, shift_seconds = $8, start_date = $9, updated_at = $10 WHERE id = $1`,
			r.ID, r.Name, fold(r.Name), string(r.Tier), nullString(r.ClientID), r.TimeZone, r.Handover,
			int64(r.ShiftLength.D()/time.Second), r.StartDate, store.Millis(s.clock()))
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM rota_members WHERE rota_id = $1", r.ID); err != nil {
			return err
		}
		if err := insertMembers(ctx, tx, r); err != nil {
			return err
		}
		out, err = getRota(ctx, tx, r.ID)
		return err
	})
	return out, dbError("updating rota", err)
}

// DeleteRota deletes the rota with id, with its members and overrides.
func (s *Store) DeleteRota(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM rotas WHERE id = $1", id)
	if err != nil {
		return dbError("deleting rota", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("rota %q: %w", id, ErrNotFound)
	}
	return nil
}

// CreateOverride adds an override to the rota o.RotaID; ID and times are set here.
func (s *Store) CreateOverride(ctx context.Context, o Override) (Override, error) {
	o.normalize()
	fe := fieldErrs(o.validate())
	var out Override
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := refCheck(ctx, tx, &fe, "rotas", "rota_id", "rota", o.RotaID); err != nil {
			return err
		}
		if err := refCheck(ctx, tx, &fe, "users", "user_id", "user", o.UserID); err != nil {
			return err
		}
		if err := invalid(fe...); err != nil {
			return err
		}
		now := store.Millis(s.clock())
		var err error
		out, err = scanOverride(tx.QueryRowContext(ctx, `INSERT INTO rota_overrides (id, rota_id, user_id, starts_at, ends_at, note, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING `+overrideCols,
			store.NewID(), o.RotaID, o.UserID, store.Millis(o.From), store.Millis(o.Until), o.Note, now))
		return err
	})
	return out, dbError("creating override", err)
}

// GetOverride returns the override with id.
func (s *Store) GetOverride(ctx context.Context, id string) (Override, error) {
	return getOverride(ctx, s.db, id)
}

func getOverride(ctx context.Context, q querier, id string) (Override, error) {
	o, err := scanOverride(q.QueryRowContext(ctx, "SELECT "+overrideCols+" FROM rota_overrides WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Override{}, fmt.Errorf("override %q: %w", id, ErrNotFound)
	}
	return o, dbError("reading override", err)
}

// ListOverrides returns the overrides of the rota with rotaID, by start.
func (s *Store) ListOverrides(ctx context.Context, rotaID string) ([]Override, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+overrideCols+" FROM rota_overrides WHERE rota_id = $1 ORDER BY starts_at, id", rotaID)
	return scanAll(rows, err, scanOverride, "listing overrides")
}

// UpdateOverride replaces the user, interval and note of the override with o.ID. Its rota
// cannot change (an empty RotaID keeps it), nor its creation time, which decides precedence.
func (s *Store) UpdateOverride(ctx context.Context, o Override) (Override, error) {
	var out Override
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		old, err := getOverride(ctx, tx, o.ID)
		if err != nil {
			return err
		}
		if o.RotaID == "" {
			o.RotaID = old.RotaID
		}
		o.normalize()
		fe := fieldErrs(o.validate())
		if o.RotaID != old.RotaID {
			fe.add("rota_id", "an override cannot move to another rota; delete it and create one there")
		}
		if err := refCheck(ctx, tx, &fe, "users", "user_id", "user", o.UserID); err != nil {
			return err
		}
		if err := invalid(fe...); err != nil {
			return err
		}
		out, err = scanOverride(tx.QueryRowContext(ctx, `UPDATE rota_overrides SET user_id = $2, starts_at = $3, ends_at = $4, note = $5, updated_at = $6
			WHERE id = $1 RETURNING `+overrideCols,
			o.ID, o.UserID, store.Millis(o.From), store.Millis(o.Until), o.Note, store.Millis(s.clock())))
		return err
	})
	return out, dbError("updating override", err)
}

// DeleteOverride deletes the override with id.
func (s *Store) DeleteOverride(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM rota_overrides WHERE id = $1", id)
	if err != nil {
		return dbError("deleting override", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("override %q: %w", id, ErrNotFound)
	}
	return nil
}

// OnCall returns who is on call for tier at the instant at, for an incident of the client with
// clientID ("" for none): the person each of the client's own rotas for the tier puts on call,
// else, when the client has no such rota or none of them has anyone on call at that instant,
// each global rota's person. Disabled users are left out. Rotas are taken by name and a person
// on call in two of them is listed once. No one on call is an empty list, not an error: the
// caller decides what an escalation step with nobody to notify means.
func (s *Store) OnCall(ctx context.Context, tier Tier, clientID string, at time.Time) ([]Person, error) {
	scopes := []string{""}
	if clientID != "" {
		scopes = []string{clientID, ""}
	}
	for _, scope := range scopes {
		out, err := s.onCallIn(ctx, tier, scope, at)
		if err != nil {
			return nil, dbError("finding who is on call", err)
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	return nil, nil
}

// onCallIn returns who the rotas for tier of the client with clientID ("": the global rotas)
// put on call at the instant at. Reads go without a transaction, which on SQLite would take the
// write lock; a rota changed between the queries is at worst read half old, half new.
func (s *Store) onCallIn(ctx context.Context, tier Tier, clientID string, at time.Time) ([]Person, error) {
	q, args := "SELECT "+rotaCols+" FROM rotas WHERE tier = $1 AND client_id IS NULL", []any{string(tier)}
	if clientID != "" {
		q, args = "SELECT "+rotaCols+" FROM rotas WHERE tier = $1 AND client_id = $2", []any{string(tier), clientID}
	}
	rows, err := s.db.QueryContext(ctx, q+" ORDER BY name_fold, id", args...)
	rotas, err := store.ScanAll(rows, err, scanRota)
	if err != nil {
		return nil, err
	}
	if err := withDetails(ctx, s.db, rotas, &at); err != nil {
		return nil, err
	}
	var ids []string
	for _, r := range rotas {
		if id, ok := r.At(at); ok && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return persons(ctx, s.db, ids)
}

// Person returns the enabled user with userID and how to reach them (a notify_user step's
// recipient); ErrNotFound when there is no such user or they are disabled.
func (s *Store) Person(ctx context.Context, userID string) (Person, error) {
	l, err := persons(ctx, s.db, []string{userID})
	if err != nil {
		return Person{}, dbError("reading person", err)
	}
	if len(l) == 0 {
		return Person{}, fmt.Errorf("enabled user %q: %w", userID, ErrNotFound)
	}
	return l[0], nil
}

// persons returns the enabled users among ids, in the order of ids.
func persons(ctx context.Context, q querier, ids []string) ([]Person, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := q.QueryContext(ctx, `SELECT u.id, u.username, u.display_name, c.email, c.phone, c.email_enabled_at, c.sms_enabled_at
		FROM users u LEFT JOIN user_contacts c ON c.user_id = u.id
		WHERE u.disabled_at IS NULL AND u.id IN (`+placeholders(1, len(args))+`)`, args...)
	found, err := store.ScanAll(rows, err, func(row store.Row) (Person, error) {
		var p Person
		var username, display string
		var email, phone sql.NullString
		var emailOn, smsOn sql.NullInt64
		if err := row.Scan(&p.UserID, &username, &display, &email, &phone, &emailOn, &smsOn); err != nil {
			return Person{}, err
		}
		p.Name = display
		if p.Name == "" {
			p.Name = username
		}
		p.Email, p.Phone = email.String, phone.String
		p.Channels = channelList(emailOn.Valid, smsOn.Valid)
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Person, 0, len(found))
	for _, id := range ids {
		if i := slices.IndexFunc(found, func(p Person) bool { return p.UserID == id }); i >= 0 {
			out = append(out, found[i])
		}
	}
	return out, nil
}
