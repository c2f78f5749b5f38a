package inventory

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/store"
)

// Enrolment is what an agent sends when it registers its machine with the hub.
type Enrolment struct {
	MachineID string   `json:"machine_id"` // required: systemd machine-id, Windows MachineGuid
	Hostname  string   `json:"hostname"`   // required: the host's name when it is first seen
	Addresses []string `json:"addresses"`
	OS        string   `json:"os"`
	Facts     Facts    `json:"facts"`
	AgentURL  string   `json:"agent_url"`
	// AutoApprove makes a new (or still pending) host active at once, when the enrolment token
	// allows it; otherwise a new host waits as pending for an operator.
	AutoApprove bool `json:"-"`
}

func (e *Enrolment) normalize() {
	e.MachineID = strings.TrimSpace(e.MachineID)
	e.Hostname = strings.TrimSpace(e.Hostname)
	e.OS = strings.TrimSpace(e.OS)
	e.AgentURL = strings.TrimSpace(e.AgentURL)
	e.Addresses = trimList(e.Addresses, false)
	if e.Facts.Hostname == "" {
		e.Facts.Hostname = e.Hostname
	}
	if len(e.Facts.Extra) == 0 {
		e.Facts.Extra = nil
	}
}

// Validate checks e as EnrolHost would.
func (e Enrolment) Validate() []config.FieldError {
	e.normalize()
	return e.validate()
}

func (e *Enrolment) validate() []config.FieldError {
	var fe fieldErrs
	if e.MachineID == "" {
		fe.add("machine_id", "is required")
	}
	checkMachineID(&fe, e.MachineID)
	fe.text("hostname", e.Hostname, true, maxHostName)
	checkAddresses(&fe, e.Addresses)
	fe.text("os", e.OS, false, maxShort)
	e.Facts.validate(&fe, "facts.")
	if e.AgentURL != "" {
		if len(e.AgentURL) > maxURL {
			fe.add("agent_url", "is longer than %d characters", maxURL)
		} else if msg := checkAgentURL(e.AgentURL); msg != "" {
			fe.add("agent_url", "%s", msg)
		}
	}
	return fe
}

// EnrolHost registers the machine e describes as a host of the client, or refreshes the host it
// already is, and reports whether the host is new. The machine id decides: one machine is one
// host, however often it enrols, also when two enrolments of it race.
//
// Enrolment refreshes what the agent knows (addresses, OS, facts, agent URL; an empty value keeps
// the stored one) and leaves what the operator owns: the name (set from the host name only when the
// host is created), site, role, tags, and status, except that AutoApprove turns a pending host
// active. A retired host stays retired. A host entered by hand under the same name and not yet
// linked to a machine is adopted rather than duplicated. A machine already enrolled under another
// client is refused (a field error on machine_id): one client's token cannot take another's host.
func (inv *Inventory) EnrolHost(ctx context.Context, clientID string, e Enrolment) (Host, bool, error) {
	defer inv.changed()
	e.normalize()
	fe := e.validate()
	if clientID == "" {
		fe = append(fe, config.Errorf("client_id", "is required"))
	}
	var (
		out     Host
		created bool
		err     error
	)
	// A racing enrolment of the same machine can commit its insert between this one's look-up and
	// insert. ON CONFLICT (machine_id) handles that when PostgreSQL notices the clash on machine_id
	// first; when it notices it on the host name index first it raises a unique violation instead
	// (ON CONFLICT covers only its own index). Then the whole enrolment runs again, and its look-up
	// now finds the committed host. SQLite never gets here: BEGIN IMMEDIATE serialises writers.
	for attempt := 1; ; attempt++ {
		out, created, err = inv.enrolOnce(ctx, clientID, &e, fe)
		if !errors.Is(err, errEnrolRace) || attempt == 3 {
			break
		}
	}
	if errors.Is(err, errEnrolRace) {
		err = invalid(config.Errorf("hostname", "this client already has a host named %q linked to another machine", e.Hostname))
	}
	if err != nil {
		return Host{}, false, dbError("enrolling host", err)
	}
	return out, created, nil
}

// errEnrolRace marks an insert that clashed on a unique index: another machine's host by that
// name, or a concurrent enrolment of this machine.
var errEnrolRace = errors.New("enrolment insert clashed")

func (inv *Inventory) enrolOnce(ctx context.Context, clientID string, e *Enrolment, fe []config.FieldError) (Host, bool, error) {
	status := StatusPending
	if e.AutoApprove {
		status = StatusActive
	}
	var (
		out     Host
		created bool
	)
	err := inv.db.Tx(ctx, func(tx *sql.Tx) error {
		fe := slices.Clone(fe)
		if err := refCheck(ctx, tx, &fe, "clients", "client_id", clientID); err != nil {
			return err
		}
		if err := invalid(fe...); err != nil {
			return err
		}
		now := store.Millis(inv.clock())
		addrs, facts := "[]", jsonText(e.Facts)
		if len(e.Addresses) > 0 {
			addrs = stringList(e.Addresses)
		}
		// $1..$6 are shared by the three statements below; the refresh keeps stored values where
		// the enrolment has none.
		const refresh = `addresses = CASE WHEN $1 = '[]' THEN hosts.addresses ELSE $1 END,
			os = CASE WHEN $2 = '' THEN hosts.os ELSE $2 END,
			facts = $3,
			agent_url = CASE WHEN $4 = '' THEN hosts.agent_url ELSE $4 END,
			status = CASE WHEN hosts.status = 'pending' THEN $5 ELSE hosts.status END,
			enrolled_at = $6, updated_at = $6`
		args := []any{addrs, e.OS, facts, e.AgentURL, string(status), now}

		// 1. The machine is known: refresh it, if it is this client's.
		var err error
		out, err = scanHost(tx.QueryRowContext(ctx, `UPDATE hosts SET `+refresh+`
			WHERE machine_id = $7 RETURNING `+hostCols, append(args, e.MachineID)...))
		if err == nil {
			if out.ClientID != clientID {
				return invalid(config.Errorf("machine_id", "this machine is enrolled under another client"))
			}
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// 2. A host of this name was entered by hand and is not linked to a machine: adopt it.
		out, err = scanHost(tx.QueryRowContext(ctx, `UPDATE hosts SET `+refresh+`, machine_id = $7
			WHERE client_id = $8 AND name_fold = $9 AND machine_id IS NULL RETURNING `+hostCols,
			append(args, e.MachineID, clientID, fold(e.Hostname))...))
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// 3. A new host. ON CONFLICT covers an enrolment of the same machine that committed since
		// step 1 looked: then this refreshes that host instead of failing or duplicating it.
		id := store.NewID()
		out, err = scanHost(tx.QueryRowContext(ctx, `INSERT INTO hosts (id, client_id, name, name_fold, addresses, os, facts, agent_url,
				status, machine_id, enrolled_at, created_at, updated_at)
			VALUES ($8, $9, $10, $11, $1, $2, $3, $4, $5, $7, $6, $6, $6)
			ON CONFLICT (machine_id) DO UPDATE SET `+refresh+` WHERE hosts.client_id = $9
			RETURNING `+hostCols,
			append(args, e.MachineID, id, clientID, e.Hostname, fold(e.Hostname))...))
		if errors.Is(err, sql.ErrNoRows) {
			// The conflicting host belongs to another client, so DO UPDATE's WHERE held it back.
			return invalid(config.Errorf("machine_id", "this machine is enrolled under another client"))
		}
		if err != nil {
			if ce, ok := store.AsConstraint(err); ok && ce.Kind == store.Unique {
				return errEnrolRace
			}
			return err
		}
		created = out.ID == id
		return nil
	})
	return out, created, err
}
