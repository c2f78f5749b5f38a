package oncall

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/serversage/sage/internal/store"
)

// storedStep is a step as the steps column keeps it: durations in seconds, so that the stored
// form does not depend on how the API spells durations.
type storedStep struct {
	Kind        string   `json:"kind"`
	Tier        string   `json:"tier,omitempty"`
	UserID      string   `json:"user_id,omitempty"`
	Channels    []string `json:"channels,omitempty"`
	WaitSeconds int64    `json:"wait_seconds,omitempty"`
	Times       int      `json:"times,omitempty"`
}

func encodeSteps(steps []Step) string {
	l := make([]storedStep, len(steps))
	for i, s := range steps {
		l[i] = storedStep{Kind: s.Kind, Tier: string(s.Tier), UserID: s.UserID, Channels: s.Channels,
			WaitSeconds: int64(s.Wait.D() / time.Second), Times: s.Times}
	}
	b, err := json.Marshal(l)
	if err != nil {
		// Strings and integers always encode.
		panic(fmt.Sprintf("oncall: encoding steps: %v", err))
	}
	return string(b)
}

func decodeSteps(s string) ([]Step, error) {
	var l []storedStep
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("decoding stored steps: %w", err)
	}
	if len(l) == 0 {
		return nil, nil
	}
	out := make([]Step, len(l))
	for i, st := range l {
		out[i] = Step{Kind: st.Kind, Tier: Tier(st.Tier), UserID: st.UserID, Channels: st.Channels,
			Wait: Duration(time.Duration(st.WaitSeconds) * time.Second), Times: st.Times}
	}
	return out, nil
}

const policyCols = "id, name, client_id, severity, steps, created_at, updated_at"

func scanPolicy(row store.Row) (Policy, error) {
	var p Policy
	var client sql.NullString
	var steps string
	var created, updated int64
	if err := row.Scan(&p.ID, &p.Name, &client, &p.Severity, &steps, &created, &updated); err != nil {
		return Policy{}, err
	}
	var err error
	if p.Steps, err = decodeSteps(steps); err != nil {
		return Policy{}, err
	}
	p.ClientID = client.String
	p.CreatedAt, p.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return p, nil
}

// catchAll reports whether p is the policy for all clients and any severity.
func (p Policy) catchAll() bool { return p.ClientID == "" && p.Severity == "" }

// policyRefs checks that the policy's client and the users of its notify_user steps exist.
func policyRefs(ctx context.Context, q querier, fe *fieldErrs, p Policy) error {
	if err := refCheck(ctx, q, fe, "clients", "client_id", "client", p.ClientID); err != nil {
		return err
	}
	var ids []string
	var at []int
	for i, s := range p.Steps {
		if s.Kind == KindNotifyUser && s.UserID != "" {
			ids, at = append(ids, s.UserID), append(at, i)
		}
	}
	missing, err := usersMissing(ctx, q, ids)
	if err != nil {
		return err
	}
	for _, i := range missing {
		fe.add("steps["+strconv.Itoa(at[i])+"].user_id", "no user has id %q", ids[i])
	}
	return nil
}

// CreatePolicy adds an escalation policy; ID and times are set here. At most one policy exists
// per client (or all clients) and severity (or any).
func (s *Store) CreatePolicy(ctx context.Context, p Policy) (Policy, error) {
	p = p.clone()
	p.normalize()
	fe := fieldErrs(p.validate())
	var out Policy
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := policyRefs(ctx, tx, &fe, p); err != nil {
			return err
		}
		if err := invalid(fe...); err != nil {
			return err
		}
		var err error
		out, err = insertPolicy(ctx, tx, p, store.Millis(s.clock()))
		return err
	})
	return out, dbError("creating policy", err)
}

func insertPolicy(ctx context.Context, q querier, p Policy, now int64) (Policy, error) {
	return scanPolicy(q.QueryRowContext(ctx, `INSERT INTO escalation_policies (id, name, name_fold, client_id, severity, steps, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING `+policyCols,
		store.NewID(), p.Name, fold(p.Name), nullString(p.ClientID), p.Severity, encodeSteps(p.Steps), now))
}

// GetPolicy returns the policy with id.
func (s *Store) GetPolicy(ctx context.Context, id string) (Policy, error) {
	return getPolicy(ctx, s.db, id)
}

func getPolicy(ctx context.Context, q querier, id string) (Policy, error) {
	p, err := scanPolicy(q.QueryRowContext(ctx, "SELECT "+policyCols+" FROM escalation_policies WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Policy{}, fmt.Errorf("policy %q: %w", id, ErrNotFound)
	}
	return p, dbError("reading policy", err)
}

// ListPolicies returns every policy, by name.
func (s *Store) ListPolicies(ctx context.Context) ([]Policy, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+policyCols+" FROM escalation_policies ORDER BY name_fold, id")
	return scanAll(rows, err, scanPolicy, "listing policies")
}

// UpdatePolicy replaces every writable field of the policy with p.ID. The policy for all clients
// and any severity keeps that scope (ErrInUse): it is the fallback of every incident.
func (s *Store) UpdatePolicy(ctx context.Context, p Policy) (Policy, error) {
	p = p.clone()
	p.normalize()
	fe := fieldErrs(p.validate())
	var out Policy
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		old, err := getPolicy(ctx, tx, p.ID)
		if err != nil {
			return err
		}
		if err := policyRefs(ctx, tx, &fe, p); err != nil {
			return err
		}
		if err := invalid(fe...); err != nil {
			return err
		}
		if old.catchAll() && !p.catchAll() {
			return fmt.Errorf("policy %q is the one for all clients and any severity, which every incident falls back to: %w; create a policy for the client or severity instead", old.Name, ErrInUse)
		}
		out, err = scanPolicy(tx.QueryRowContext(ctx, `UPDATE escalation_policies SET name = $2, name_fold = $3, client_id = $4, severity = $5, steps = $6, updated_at = $7
			WHERE id = $1 RETURNING `+policyCols,
			p.ID, p.Name, fold(p.Name), nullString(p.ClientID), p.Severity, encodeSteps(p.Steps), store.Millis(s.clock())))
		return err
	})
	return out, dbError("updating policy", err)
}

// DeletePolicy deletes the policy with id. The policy for all clients and any severity is not
// deleted (ErrInUse): it is the fallback of every incident; edit its steps instead.
func (s *Store) DeletePolicy(ctx context.Context, id string) error {
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		p, err := getPolicy(ctx, tx, id)
		if err != nil {
			return err
		}
		if p.catchAll() {
			return fmt.Errorf("policy %q is the one for all clients and any severity, which every incident falls back to: %w; edit its steps instead", p.Name, ErrInUse)
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM escalation_policies WHERE id = $1", id)
		return err
	})
	return dbError("deleting policy", err)
}

// PolicyFor returns the policy for an incident of the client with clientID ("" for none) and
// severity, most specific first: the client's for the severity, the client's for any severity,
// all clients' for the severity, all clients' for any severity. ErrNotFound when none applies,
// which EnsureDefaults and the protection of the catch-all policy make rare.
func (s *Store) PolicyFor(ctx context.Context, clientID, severity string) (Policy, error) {
	severity = strings.ToLower(strings.TrimSpace(severity))
	p, err := scanPolicy(s.db.QueryRowContext(ctx, `SELECT `+policyCols+` FROM escalation_policies
		WHERE (client_id = $1 OR client_id IS NULL) AND (severity = $2 OR severity = '')
		ORDER BY CASE WHEN client_id IS NULL THEN 1 ELSE 0 END, CASE WHEN severity = '' THEN 1 ELSE 0 END
		LIMIT 1`, clientID, severity))
	if errors.Is(err, sql.ErrNoRows) {
		return Policy{}, fmt.Errorf("escalation policy for client %q and severity %q: %w", clientID, severity, ErrNotFound)
	}
	return p, dbError("choosing policy", err)
}

// EnsureDefaults gives a fresh hub its escalation policy: when there is no policy at all, it
// creates DefaultPolicy (L1 by email and SMS, L2 after 15 minutes, L3 after 30) for all clients
// and any severity, and reports true. A hub that already has policies is left alone, so that an
// edited default stays as the operator left it; hubs starting at once on one PostgreSQL database
// create it once.
func (s *Store) EnsureDefaults(ctx context.Context) (created bool, err error) {
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM escalation_policies").Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		if _, err := insertPolicy(ctx, tx, DefaultPolicy(), store.Millis(s.clock())); err != nil {
			return err
		}
		created = true
		return nil
	})
	if ce, ok := store.AsConstraint(err); ok && ce.Kind == store.Unique {
		return false, nil // another hub created it between our count and our insert
	}
	if err != nil {
		return false, dbError("creating the default escalation policy", err)
	}
	return created, nil
}
