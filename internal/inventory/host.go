package inventory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/store"
)

// Status is where a host is in its life: enrolled but not yet approved, monitored, or kept for
// the record after decommissioning.
type Status string

const (
	StatusPending Status = "pending"
	StatusActive  Status = "active"
	StatusRetired Status = "retired"
)

// Statuses lists the valid statuses.
var Statuses = []Status{StatusPending, StatusActive, StatusRetired}

func (s Status) valid() bool {
	return s == StatusPending || s == StatusActive || s == StatusRetired
}

// Facts is what a host's agent reports about the machine at enrolment.
type Facts struct {
	Hostname    string            `json:"hostname,omitempty"`
	Kernel      string            `json:"kernel,omitempty"`
	OSRelease   string            `json:"os_release,omitempty"` // e.g. PRETTY_NAME of os-release
	Arch        string            `json:"arch,omitempty"`
	CPUModel    string            `json:"cpu_model,omitempty"`
	Cores       int               `json:"cores,omitempty"`
	MemoryBytes int64             `json:"memory_bytes,omitempty"`
	Extra       map[string]string `json:"extra,omitempty"` // anything else an agent knows
}

func (f *Facts) validate(fe *fieldErrs, prefix string) {
	fe.text(prefix+"hostname", f.Hostname, false, maxHostName)
	fe.text(prefix+"kernel", f.Kernel, false, maxFact)
	fe.text(prefix+"os_release", f.OSRelease, false, maxFact)
	fe.text(prefix+"arch", f.Arch, false, maxFact)
	fe.text(prefix+"cpu_model", f.CPUModel, false, maxFact)
	if f.Cores < 0 {
		fe.add(prefix+"cores", "must not be negative")
	}
	if f.MemoryBytes < 0 {
		fe.add(prefix+"memory_bytes", "must not be negative")
	}
	if len(f.Extra) > maxList {
		fe.add(prefix+"extra", "has more than %d entries", maxList)
	}
	for k, v := range f.Extra {
		fe.text(prefix+"extra."+k, k, true, maxTag)
		fe.text(prefix+"extra."+k, v, false, maxFact)
	}
}

// Host is a machine (physical or virtual) of a client, optionally at one of its sites.
type Host struct {
	ID        string   `json:"id"`
	ClientID  string   `json:"client_id"`
	SiteID    string   `json:"site_id,omitempty"` // "" when the host is at no particular site
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"` // IP addresses or DNS names, the first being the one to use
	OS        string   `json:"os"`
	Role      string   `json:"role"`
	Tags      []string `json:"tags"` // lower-case, e.g. "prod", "dc=pune"
	Facts     Facts    `json:"facts"`
	AgentURL  string   `json:"agent_url"` // where the hub scrapes the agent, e.g. http://10.0.0.5:9500/metrics
	Status    Status   `json:"status"`
	// MachineID identifies the machine across re-installs of the agent and renames: the systemd
	// machine-id, or the Windows MachineGuid. "" for a host entered by hand and not enrolled.
	MachineID  string    `json:"machine_id,omitempty"`
	EnrolledAt time.Time `json:"enrolled_at"` // last enrolment; zero if never enrolled
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

func (h *Host) normalize() {
	h.Name = strings.TrimSpace(h.Name)
	h.OS = strings.TrimSpace(h.OS)
	h.Role = strings.TrimSpace(h.Role)
	h.MachineID = strings.TrimSpace(h.MachineID)
	h.AgentURL = strings.TrimSpace(h.AgentURL)
	h.Addresses = trimList(h.Addresses, false)
	h.Tags = trimList(h.Tags, true)
	if h.Status == "" {
		h.Status = StatusPending
	}
	if len(h.Facts.Extra) == 0 {
		h.Facts.Extra = nil
	}
}

// trimList trims each item (and lower-cases it when lower), keeping empty items so that their
// index in an error matches the input; an empty list becomes nil.
func trimList(l []string, lower bool) []string {
	if len(l) == 0 {
		return nil
	}
	out := make([]string, len(l))
	for i, s := range l {
		s = strings.TrimSpace(s)
		if lower {
			s = strings.ToLower(s)
		}
		out[i] = s
	}
	return out
}

// Validate checks h as Create and Update would, without looking at the database.
func (h Host) Validate() []config.FieldError {
	h.normalize()
	return h.validate()
}

func (h *Host) validate() []config.FieldError {
	var fe fieldErrs
	fe.id("client_id", h.ClientID, true)
	fe.id("site_id", h.SiteID, false)
	fe.text("name", h.Name, true, maxHostName)
	checkAddresses(&fe, h.Addresses)
	fe.text("os", h.OS, false, maxShort)
	fe.text("role", h.Role, false, maxShort)
	if len(h.Tags) > maxList {
		fe.add("tags", "has more than %d tags", maxList)
	}
	seen := map[string]int{}
	for i, t := range h.Tags {
		field := "tags[" + strconv.Itoa(i) + "]"
		switch {
		case t == "":
			fe.add(field, "is empty")
		case len(t) > maxTag:
			fe.add(field, "is longer than %d characters", maxTag)
		case !tagRE.MatchString(t):
			fe.add(field, "may hold only letters, digits and _ . : = / - (and starts with a letter or digit)")
		}
		if j, dup := seen[t]; dup && t != "" {
			fe.add(field, "repeats tags[%d]", j)
		}
		seen[t] = i
	}
	h.Facts.validate(&fe, "facts.")
	if h.AgentURL != "" {
		if len(h.AgentURL) > maxURL {
			fe.add("agent_url", "is longer than %d characters", maxURL)
		} else if msg := checkAgentURL(h.AgentURL); msg != "" {
			fe.add("agent_url", "%s", msg)
		}
	}
	if !h.Status.valid() {
		fe.add("status", "must be one of pending, active, retired")
	}
	checkMachineID(&fe, h.MachineID)
	return fe
}

func checkAddresses(fe *fieldErrs, addrs []string) {
	if len(addrs) > maxList {
		fe.add("addresses", "has more than %d addresses", maxList)
	}
	seen := map[string]int{}
	for i, a := range addrs {
		field := "addresses[" + strconv.Itoa(i) + "]"
		if msg := checkAddress(a); msg != "" {
			fe.add(field, "%s", msg)
			continue
		}
		key := strings.ToLower(strings.TrimSuffix(a, "."))
		if j, dup := seen[key]; dup {
			fe.add(field, "repeats addresses[%d]", j)
		}
		seen[key] = i
	}
}

func checkMachineID(fe *fieldErrs, id string) {
	if id == "" {
		return
	}
	if len(id) > 128 || !machineIDRE.MatchString(id) {
		fe.add("machine_id", "must be 1-128 letters, digits and _ . : - { }")
	}
}

// HostFilter selects hosts for ListHosts; zero fields do not filter.
type HostFilter struct {
	ClientID     string
	SiteID       string
	Status       Status
	Role         string
	Tag          string // hosts carrying this tag
	NameContains string // case-insensitive substring of the name
	MachineID    string
	Page
}

const hostCols = "id, client_id, site_id, name, addresses, os, role, tags, facts, agent_url, status, machine_id, enrolled_at, created_at, updated_at"

func scanHost(row store.Row) (Host, error) {
	var (
		h                          Host
		site, machine              sql.NullString
		addrs, tags, facts, status string
		enrolled                   sql.NullInt64
		created, updated           int64
	)
	err := row.Scan(&h.ID, &h.ClientID, &site, &h.Name, &addrs, &h.OS, &h.Role, &tags, &facts,
		&h.AgentURL, &status, &machine, &enrolled, &created, &updated)
	if err != nil {
		return Host{}, err
	}
	h.SiteID, h.MachineID, h.Status = site.String, machine.String, Status(status)
	if enrolled.Valid {
		h.EnrolledAt = store.FromMillis(enrolled.Int64)
	}
	h.CreatedAt, h.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	if h.Addresses, err = decodeList("addresses", addrs); err != nil {
		return Host{}, err
	}
	if h.Tags, err = decodeList("tags", tags); err != nil {
		return Host{}, err
	}
	if err := json.Unmarshal([]byte(facts), &h.Facts); err != nil {
		return Host{}, fmt.Errorf("decoding stored facts: %w", err)
	}
	return h, nil
}

// hostRefs checks that the client exists and that the site, if any, exists and is the client's.
func hostRefs(ctx context.Context, q querier, fe *[]config.FieldError, clientID, siteID string) error {
	if err := refCheck(ctx, q, fe, "clients", "client_id", clientID); err != nil {
		return err
	}
	if siteID == "" || clientID == "" {
		return nil
	}
	var siteClient string
	err := q.QueryRowContext(ctx, "SELECT client_id FROM sites WHERE id = $1", siteID).Scan(&siteClient)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		*fe = append(*fe, config.Errorf("site_id", "no site has id %q", siteID))
	case err != nil:
		return err
	case siteClient != clientID:
		*fe = append(*fe, config.Errorf("site_id", "the site belongs to another client"))
	}
	return nil
}

// CreateHost adds a host. Hosts usually appear by enrolment (EnrolHost); this is for entering one
// by hand, ahead of its agent or for a machine without one.
func (inv *Inventory) CreateHost(ctx context.Context, h Host) (Host, error) {
	defer inv.changed()
	h.normalize()
	fe := h.validate()
	var out Host
	err := inv.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := hostRefs(ctx, tx, &fe, h.ClientID, h.SiteID); err != nil {
			return err
		}
		if err := invalid(fe...); err != nil {
			return err
		}
		h.ID = store.NewID()
		var err error
		out, err = scanHost(tx.QueryRowContext(ctx, `INSERT INTO hosts (id, client_id, site_id, name, name_fold, addresses, os, role,
				tags, facts, agent_url, status, machine_id, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) RETURNING `+hostCols,
			h.ID, h.ClientID, nullString(h.SiteID), h.Name, fold(h.Name), stringList(h.Addresses), h.OS, h.Role,
			stringList(h.Tags), jsonText(h.Facts), h.AgentURL, string(h.Status), nullString(h.MachineID), store.Millis(inv.clock())))
		return err
	})
	return out, dbError("creating host", err)
}

// GetHost returns the host with id.
func (inv *Inventory) GetHost(ctx context.Context, id string) (Host, error) {
	return inv.getHost(ctx, inv.db, id)
}

func (inv *Inventory) getHost(ctx context.Context, q querier, id string) (Host, error) {
	h, err := scanHost(q.QueryRowContext(ctx, "SELECT "+hostCols+" FROM hosts WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Host{}, fmt.Errorf("host %q: %w", id, ErrNotFound)
	}
	return h, dbError("reading host", err)
}

// ListHosts returns the hosts f selects, by name.
func (inv *Inventory) ListHosts(ctx context.Context, f HostFilter) ([]Host, error) {
	w := hostWhere(f, "")
	rows, err := inv.db.QueryContext(ctx, "SELECT "+hostCols+" FROM hosts"+w.sql()+" ORDER BY name_fold, id"+w.page(f.Page), w.args...)
	return scanAll(rows, err, scanHost, "listing hosts")
}

// UpdateHost replaces the editable fields of the host with h.ID: everything but its client, the
// enrolment time and the creation time. h.ClientID may be empty (unchanged) but not another client.
func (inv *Inventory) UpdateHost(ctx context.Context, h Host) (Host, error) {
	defer inv.changed()
	h.normalize()
	var out Host
	err := inv.db.Tx(ctx, func(tx *sql.Tx) error {
		cur, err := inv.getHost(ctx, tx, h.ID)
		if err != nil {
			return err
		}
		if err := sameParent("client_id", "host", h.ClientID, cur.ClientID); err != nil {
			return err
		}
		h.ClientID = cur.ClientID
		fe := h.validate()
		if err := hostRefs(ctx, tx, &fe, h.ClientID, h.SiteID); err != nil {
			return err
		}
		if err := invalid(fe...); err != nil {
			return err
		}
		out, err = scanHost(tx.QueryRowContext(ctx, `UPDATE hosts SET site_id = $2, name = $3, name_fold = $4, addresses = $5, os = $6,
				role = $7, tags = $8, facts = $9, agent_url = $10, status = $11, machine_id = $12, updated_at = $13
			WHERE id = $1 RETURNING `+hostCols,
			h.ID, nullString(h.SiteID), h.Name, fold(h.Name), stringList(h.Addresses), h.OS, h.Role, stringList(h.Tags),
			jsonText(h.Facts), h.AgentURL, string(h.Status), nullString(h.MachineID), store.Millis(inv.clock())))
		return err
	})
	return out, dbError("updating host", err)
}

// DeleteHost deletes the host with id and its services. Retiring it (Status) keeps its history.
func (inv *Inventory) DeleteHost(ctx context.Context, id string) error {
	defer inv.changed()
	res, err := inv.db.ExecContext(ctx, "DELETE FROM hosts WHERE id = $1", id)
	if err != nil {
		return dbError("deleting host", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return dbError("deleting host", err)
	} else if n == 0 {
		return fmt.Errorf("host %q: %w", id, ErrNotFound)
	}
	return nil
}
