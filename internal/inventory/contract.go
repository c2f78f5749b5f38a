package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/store"
)

// Offering is a productised service the MSP sells, from its service catalogue.
type Offering string

// Offerings is the service catalogue, ServerSage first and the add-ons after it.
var Offerings = []Offering{
	"ServerSage", // the base: monitoring, alerting, escalation and reporting
	"PatchIt",    // OS patch management
	"DataPlus",   // data backups and replication
	"MoveUp",     // controlled software upgrades
	"HardCore",   // technical interventions
	"ServerPlus", // setting up new servers
	"FloatBox",   // container-based application management
}

// ParseOffering returns the catalogue offering named s (ignoring case), or false.
func ParseOffering(s string) (Offering, bool) {
	s = strings.TrimSpace(s)
	for _, o := range Offerings {
		if strings.EqualFold(string(o), s) {
			return o, true
		}
	}
	return "", false
}

// Contract is what a client pays for: how many nodes, which offerings, at what rate, for when.
type Contract struct {
	ID              string     `json:"id"`
	ClientID        string     `json:"client_id"`
	Name            string     `json:"name"`
	NodesContracted int        `json:"nodes_contracted"` // hosts under contract, compared with hosts monitored for billing
	Services        []Offering `json:"services"`         // kept in catalogue order
	// RateMinor is the rate in the currency's minor unit (paise, cents), so that amounts add up
	// exactly; Currency is its ISO 4217 code.
	RateMinor int64  `json:"rate_minor"`
	Currency  string `json:"currency"`
	// StartDate and EndDate are calendar dates (UTC midnight; the time of day is dropped); a zero
	// EndDate means open-ended. Both days are included.
	StartDate time.Time `json:"start_date"`
	EndDate   time.Time `json:"end_date"`
	Notes     string    `json:"notes"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (c *Contract) normalize() {
	c.Name = strings.TrimSpace(c.Name)
	c.Currency = strings.ToUpper(strings.TrimSpace(c.Currency))
	c.StartDate, c.EndDate = dateOf(c.StartDate), dateOf(c.EndDate)
	if len(c.Services) == 0 {
		c.Services = nil
		return
	}
	// Canonical names in catalogue order, unless something is wrong: then the input is kept so
	// that errors point at the right index.
	canon := make([]Offering, len(c.Services))
	for i, s := range c.Services {
		o, ok := ParseOffering(string(s))
		if !ok {
			return
		}
		if slices.Contains(canon[:i], o) {
			return
		}
		canon[i] = o
	}
	slices.SortFunc(canon, func(a, b Offering) int {
		return slices.Index(Offerings, a) - slices.Index(Offerings, b)
	})
	c.Services = canon
}

// Validate checks c as Create and Update would, without looking at the database.
func (c Contract) Validate() []config.FieldError {
	c.normalize()
	return c.validate()
}

func (c *Contract) validate() []config.FieldError {
	var fe fieldErrs
	fe.id("client_id", c.ClientID, true)
	fe.text("name", c.Name, true, maxName)
	if c.NodesContracted < 0 {
		fe.add("nodes_contracted", "must not be negative")
	} else if c.NodesContracted > maxNodes {
		fe.add("nodes_contracted", "is more than %d", maxNodes)
	}
	if len(c.Services) == 0 {
		fe.add("services", "name at least one offering: %s", joinOfferings())
	}
	seen := map[Offering]int{}
	for i, s := range c.Services {
		field := "services[" + strconv.Itoa(i) + "]"
		o, ok := ParseOffering(string(s))
		if !ok {
			fe.add(field, "unknown offering %q; known: %s", s, joinOfferings())
			continue
		}
		if j, dup := seen[o]; dup {
			fe.add(field, "repeats services[%d]", j)
		}
		seen[o] = i
	}
	if c.RateMinor < 0 {
		fe.add("rate_minor", "must not be negative")
	}
	if !currencyRE.MatchString(c.Currency) {
		fe.add("currency", "must be a three-letter ISO 4217 code, like INR or EUR")
	}
	if c.StartDate.IsZero() {
		fe.add("start_date", "is required")
	} else if y := c.StartDate.Year(); y < 1900 || y > 9999 {
		fe.add("start_date", "year %d is out of range", y)
	}
	if !c.EndDate.IsZero() {
		if y := c.EndDate.Year(); y < 1900 || y > 9999 {
			fe.add("end_date", "year %d is out of range", y)
		} else if !c.StartDate.IsZero() && c.EndDate.Before(c.StartDate) {
			fe.add("end_date", "is before start_date (%s)", c.StartDate.Format(dateLayout))
		}
	}
	fe.multiline("notes", c.Notes, maxNotes)
	return fe
}

func joinOfferings() string {
	l := make([]string, len(Offerings))
	for i, o := range Offerings {
		l[i] = string(o)
	}
	return strings.Join(l, ", ")
}

// ContractFilter selects contracts for ListContracts; zero fields do not filter.
type ContractFilter struct {
	ClientID string
	Service  Offering  // contracts that include this offering
	ActiveOn time.Time // contracts in force on this date
	Page
}

const contractCols = "id, client_id, name, nodes_contracted, services, rate_minor, currency, start_date, end_date, notes, created_at, updated_at"

func scanContract(row store.Row) (Contract, error) {
	var (
		c                Contract
		services, start  string
		end              sql.NullString
		created, updated int64
	)
	err := row.Scan(&c.ID, &c.ClientID, &c.Name, &c.NodesContracted, &services, &c.RateMinor, &c.Currency,
		&start, &end, &c.Notes, &created, &updated)
	if err != nil {
		return Contract{}, err
	}
	l, err := decodeList("services", services)
	if err != nil {
		return Contract{}, err
	}
	for _, s := range l {
		c.Services = append(c.Services, Offering(s))
	}
	if c.StartDate, err = parseDate(start); err != nil {
		return Contract{}, fmt.Errorf("decoding stored start_date: %w", err)
	}
	if end.Valid {
		if c.EndDate, err = parseDate(end.String); err != nil {
			return Contract{}, fmt.Errorf("decoding stored end_date: %w", err)
		}
	}
	c.CreatedAt, c.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return c, nil
}

func (c *Contract) dbArgs() (services, start string, end any) {
	l := make([]string, len(c.Services))
	for i, s := range c.Services {
		l[i] = string(s)
	}
	services, start = stringList(l), c.StartDate.Format(dateLayout)
	if !c.EndDate.IsZero() {
		end = c.EndDate.Format(dateLayout)
	}
	return services, start, end
}

// CreateContract adds a contract to its client.
func (inv *Inventory) CreateContract(ctx context.Context, c Contract) (Contract, error) {
	defer inv.changed()
	c.normalize()
	fe := c.validate()
	var out Contract
	err := inv.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := refCheck(ctx, tx, &fe, "clients", "client_id", c.ClientID); err != nil {
			return err
		}
		if err := invalid(fe...); err != nil {
			return err
		}
		c.ID = store.NewID()
		services, start, end := c.dbArgs()
		var err error
		out, err = scanContract(tx.QueryRowContext(ctx, `INSERT INTO contracts (id, client_id, name, name_fold, nodes_contracted, services,
				rate_minor, currency, start_date, end_date, notes, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING `+contractCols,
			c.ID, c.ClientID, c.Name, fold(c.Name), c.NodesContracted, services, c.RateMinor, c.Currency,
			start, end, c.Notes, store.Millis(inv.clock())))
		return err
	})
	return out, dbError("creating contract", err)
}

// GetContract returns the contract with id.
func (inv *Inventory) GetContract(ctx context.Context, id string) (Contract, error) {
	return inv.getContract(ctx, inv.db, id)
}

func (inv *Inventory) getContract(ctx context.Context, q querier, id string) (Contract, error) {
	c, err := scanContract(q.QueryRowContext(ctx, "SELECT "+contractCols+" FROM contracts WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Contract{}, fmt.Errorf("contract %q: %w", id, ErrNotFound)
	}
	return c, dbError("reading contract", err)
}

// ListContracts returns the contracts f selects, by start date and name.
func (inv *Inventory) ListContracts(ctx context.Context, f ContractFilter) ([]Contract, error) {
	var w where
	if f.ClientID != "" {
		w.add("client_id = ?", f.ClientID)
	}
	if f.Service != "" {
		o, ok := ParseOffering(string(f.Service))
		if !ok {
			return nil, invalid(config.Errorf("service", "unknown offering %q; known: %s", f.Service, joinOfferings()))
		}
		// As for host tags: offerings are stored as a JSON list of catalogue names.
		w.add("services LIKE ? ESCAPE '!'", likeContains(`"`+string(o)+`"`))
	}
	if !f.ActiveOn.IsZero() {
		d := dateOf(f.ActiveOn).Format(dateLayout)
		w.add("start_date <= ? AND (end_date IS NULL OR end_date >= ?)", d, d)
	}
	rows, err := inv.db.QueryContext(ctx, "SELECT "+contractCols+" FROM contracts"+w.sql()+" ORDER BY start_date, name_fold, id"+w.page(f.Page), w.args...)
	return scanAll(rows, err, scanContract, "listing contracts")
}

// UpdateContract replaces everything but the client and the creation time of the contract with
// c.ID. c.ClientID may be empty (unchanged) but not another client.
func (inv *Inventory) UpdateContract(ctx context.Context, c Contract) (Contract, error) {
	defer inv.changed()
	c.normalize()
	var out Contract
	err := inv.db.Tx(ctx, func(tx *sql.Tx) error {
		cur, err := inv.getContract(ctx, tx, c.ID)
		if err != nil {
			return err
		}
		if err := sameParent("client_id", "contract", c.ClientID, cur.ClientID); err != nil {
			return err
		}
		c.ClientID = cur.ClientID
		if err := invalid(c.validate()...); err != nil {
			return err
		}
		services, start, end := c.dbArgs()
		out, err = scanContract(tx.QueryRowContext(ctx, `UPDATE contracts SET name = $2, name_fold = $3, nodes_contracted = $4, services = $5,
				rate_minor = $6, currency = $7, start_date = $8, end_date = $9, notes = $10, updated_at = $11
			WHERE id = $1 RETURNING `+contractCols,
			c.ID, c.Name, fold(c.Name), c.NodesContracted, services, c.RateMinor, c.Currency, start, end, c.Notes,
			store.Millis(inv.clock())))
		return err
	})
	return out, dbError("updating contract", err)
}

// DeleteContract deletes the contract with id.
func (inv *Inventory) DeleteContract(ctx context.Context, id string) error {
	defer inv.changed()
	return deleteByID(ctx, inv.db, "contracts", "contract", id)
}
