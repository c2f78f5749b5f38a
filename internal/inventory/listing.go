package inventory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/serversage/sage/internal/store"
)

// This file serves pages that show a screenful of a large estate: counts to paginate by, and a
// light listing of hosts (no JSON columns decoded) for figures over every host, such as the
// overview's "how many are down" with thousands of hosts.

// hostWhere is the WHERE clause of f, the same conditions as ListHosts applies, on the hosts
// table's columns qualified by p ("" or an alias and a dot).
func hostWhere(f HostFilter, p string) *where {
	var w where
	if f.ClientID != "" {
		w.add(p+"client_id = ?", f.ClientID)
	}
	if f.SiteID != "" {
		w.add(p+"site_id = ?", f.SiteID)
	}
	if f.Status != "" {
		w.add(p+"status = ?", string(f.Status))
	}
	if f.Role != "" {
		w.add(p+"role = ?", f.Role)
	}
	if f.Tag != "" {
		w.add(p+`tags LIKE ? ESCAPE '!'`, likeContains(`"`+strings.ToLower(strings.TrimSpace(f.Tag))+`"`))
	}
	if f.NameContains != "" {
		w.add(p+"name_fold LIKE ? ESCAPE '!'", likeContains(fold(f.NameContains)))
	}
	if f.MachineID != "" {
		w.add(p+"machine_id = ?", f.MachineID)
	}
	return &w
}

// CountHosts returns how many hosts f selects, ignoring f.Page: the total a paged list shows.
func (inv *Inventory) CountHosts(ctx context.Context, f HostFilter) (int, error) {
	w := hostWhere(f, "")
	var n int
	err := inv.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM hosts"+w.sql(), w.args...).Scan(&n)
	return n, dbError("counting hosts", err)
}

// CountClients returns how many clients f selects, ignoring f.Page.
func (inv *Inventory) CountClients(ctx context.Context, f ClientFilter) (int, error) {
	var w where
	if f.NameContains != "" {
		w.add("name_fold LIKE ? ESCAPE '!'", likeContains(fold(f.NameContains)))
	}
	var n int
	err := inv.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM clients"+w.sql(), w.args...).Scan(&n)
	return n, dbError("counting clients", err)
}

// HostCountsByClient returns the number of hosts of each client that has any, counting only
// hosts with status when status is not "". Contracts compare it with the nodes contracted.
func (inv *Inventory) HostCountsByClient(ctx context.Context, status Status) (map[string]int, error) {
	var w where
	if status != "" {
		w.add("status = ?", string(status))
	}
	rows, err := inv.db.QueryContext(ctx, "SELECT client_id, COUNT(*) FROM hosts"+w.sql()+" GROUP BY client_id", w.args...)
	type pair struct {
		id string
		n  int
	}
	l, err := scanAll(rows, err, func(r store.Row) (pair, error) {
		var p pair
		return p, r.Scan(&p.id, &p.n)
	}, "counting hosts by client")
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(l))
	for _, p := range l {
		out[p.id] = p.n
	}
	return out, nil
}

// HostRef is the little of a host that a health summary needs: what names its series (the
// client and the host's name) and whether it should be scraped.
type HostRef struct {
	ID         string
	ClientID   string
	ClientSlug string
	Name       string
	Status     Status
	HasAgent   bool // an agent URL is set
}

// ListHostRefs returns the HostRef of every host f selects, by name. It reads no JSON column, so
// it stays cheap over the whole estate, and answers from the listing cache until the next write
// (cache.go): the overview and the clients page read every host for their health figures.
func (inv *Inventory) ListHostRefs(ctx context.Context, f HostFilter) ([]HostRef, error) {
	w := hostWhere(f, "h.") // qualified: clients has id and name_fold too
	q := `SELECT h.id, h.client_id, c.slug, h.name, h.status, h.agent_url <> '' FROM hosts h JOIN clients c ON c.id = h.client_id` +
		w.sql() + " ORDER BY h.name_fold, h.id" + w.page(f.Page)
	read := inv.startRead()
	key, _ := listingKey(f, nil, true)
	var (
		hit    []HostRef
		cached bool
	)
	inv.readCache(read, func(c *listCache) { hit, cached = c.refs[key] })
	if cached {
		return slices.Clone(hit), nil
	}
	rows, err := inv.db.QueryContext(ctx, q, w.args...)
	l, err := scanAll(rows, err, func(r store.Row) (HostRef, error) {
		var h HostRef
		var status string
		err := r.Scan(&h.ID, &h.ClientID, &h.ClientSlug, &h.Name, &status, &h.HasAgent)
		h.Status = Status(status)
		return h, err
	}, "listing hosts")
	if err != nil {
		return nil, err
	}
	inv.writeCache(read, func(c *listCache) { c.putRefs(key, slices.Clone(l)) })
	return l, nil
}

// ListHostsByID returns the hosts with the given ids that exist, by name. It is how a page shows
// one screenful of hosts chosen by something the database does not know (their health).
func (inv *Inventory) ListHostsByID(ctx context.Context, ids []string) ([]Host, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	ph := make([]string, len(ids))
	args := make([]any, len(ids))
	for i, id := range ids {
		ph[i] = "$" + strconv.Itoa(i+1)
		args[i] = id
	}
	rows, err := inv.db.QueryContext(ctx, "SELECT "+hostCols+" FROM hosts WHERE id IN ("+strings.Join(ph, ", ")+") ORDER BY name_fold, id", args...)
	return scanAll(rows, err, scanHost, "listing hosts")
}

// HostSummary is what a table of hosts shows of each: no addresses, tags or facts (no JSON column
// is read), and the names of its client and site, joined in the same query rather than looked
// up per row or listed whole per page.
type HostSummary struct {
	ID         string
	ClientID   string
	ClientName string
	ClientSlug string
	SiteID     string // "" at no site
	SiteName   string
	Name       string
	Role       string
	Status     Status
	AgentURL   string
}

// HostKey names a host by its client and its name, as its series do (with the client's slug).
type HostKey struct {
	ClientID string
	Name     string
}

// HostSet restricts a listing to the hosts named by Keys, or with Exclude to all the others. It
// is how a page filters by something only the hub's memory knows, such as which hosts are down,
// while the database still does the paging and the count.
type HostSet struct {
	Keys    []HostKey
	Exclude bool
}

// MaxHostSetKeys bounds a HostSet: two placeholders a key, well under SQLite's 32,766.
const MaxHostSetKeys = 10_000

// ErrHostSetTooLarge is returned for a HostSet of more than MaxHostSetKeys keys.
var ErrHostSetTooLarge = errors.New("inventory: host set too large")

// hostSetWhere adds set's condition to w, on the hosts table aliased h.
func hostSetWhere(w *where, set *HostSet) error {
	if set == nil {
		return nil
	}
	if len(set.Keys) > MaxHostSetKeys {
		return fmt.Errorf("%w: %d keys", ErrHostSetTooLarge, len(set.Keys))
	}
	if len(set.Keys) == 0 {
		if !set.Exclude {
			w.add("1 = 0") // in no host: nothing
		}
		return nil
	}
	var b strings.Builder
	args := make([]any, 0, 2*len(set.Keys))
	// (client_id, name_fold) is unique and indexed; the name as series carry it folds to it.
	// Row values are compared against a VALUES list, which both SQLite and PostgreSQL accept.
	b.WriteString("(h.client_id, h.name_fold) IN (VALUES ")
	for i, k := range set.Keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?)")
		args = append(args, k.ClientID, fold(k.Name))
	}
	b.WriteString(")")
	cond := b.String()
	if set.Exclude {
		cond = "NOT " + cond
	}
	w.add(cond, args...)
	return nil
}

// CountHostsIn returns how many hosts f selects within set (nil: all), ignoring f.Page.
func (inv *Inventory) CountHostsIn(ctx context.Context, f HostFilter, set *HostSet) (int, error) {
	if set != nil && !set.Exclude && len(set.Keys) == 0 {
		return 0, nil
	}
	w := hostWhere(f, "h.")
	if err := hostSetWhere(w, set); err != nil {
		return 0, err
	}
	read := inv.startRead()
	key, cacheable := listingKey(f, set, false)
	var (
		hit    int
		cached bool
	)
	if cacheable {
		inv.readCache(read, func(c *listCache) { hit, cached = c.counts[key] })
	}
	if cached {
		return hit, nil
	}
	var n int
	if err := inv.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM hosts h"+w.sql(), w.args...).Scan(&n); err != nil {
		return 0, dbError("counting hosts", err)
	}
	if cacheable {
		inv.writeCache(read, func(c *listCache) { c.counts = put(c.counts, key, n) })
	}
	return n, nil
}

// ListHostSummaries returns the summaries of the hosts f selects within set (nil: all), by name,
// one page of f.Page. Like CountHostsIn and ListClientNames, it answers from the listing cache
// until the next write (cache.go).
func (inv *Inventory) ListHostSummaries(ctx context.Context, f HostFilter, set *HostSet) ([]HostSummary, error) {
	if set != nil && !set.Exclude && len(set.Keys) == 0 {
		return nil, nil
	}
	w := hostWhere(f, "h.")
	if err := hostSetWhere(w, set); err != nil {
		return nil, err
	}
	// The page is chosen in a subquery and only its rows are joined: joined outside, a deep page
	// would join every row its OFFSET skips.
	q := `SELECT h.id, h.client_id, c.name, c.slug, h.site_id, s.name, h.name, h.role, h.status, h.agent_url
		FROM (SELECT h.id, h.client_id, h.site_id, h.name, h.name_fold, h.role, h.status, h.agent_url FROM hosts h` +
		w.sql() + " ORDER BY h.name_fold, h.id" + w.page(f.Page) + `) h
		JOIN clients c ON c.id = h.client_id LEFT JOIN sites s ON s.id = h.site_id ORDER BY h.name_fold, h.id`
	read := inv.startRead()
	key, cacheable := listingKey(f, set, true)
	var (
		hit    []HostSummary
		cached bool
	)
	if cacheable {
		inv.readCache(read, func(c *listCache) { hit, cached = c.pages[key] })
	}
	if cached {
		return slices.Clone(hit), nil
	}
	rows, err := inv.db.QueryContext(ctx, q, w.args...)
	l, err := scanAll(rows, err, scanHostSummary, "listing hosts")
	if err != nil {
		return nil, err
	}
	if cacheable {
		inv.writeCache(read, func(c *listCache) { c.pages = put(c.pages, key, slices.Clone(l)) })
	}
	return l, nil
}

func scanHostSummary(r store.Row) (HostSummary, error) {
	var h HostSummary
	var site, siteName sql.NullString
	var status string
	err := r.Scan(&h.ID, &h.ClientID, &h.ClientName, &h.ClientSlug, &site, &siteName, &h.Name, &h.Role, &status, &h.AgentURL)
	h.SiteID, h.SiteName, h.Status = site.String, siteName.String, Status(status)
	return h, err
}

// ClientName is a client's id, name and slug: enough to name it and key its hosts' series.
type ClientName struct {
	ID   string
	Name string
	Slug string
}

// ListClientNames returns every client's ClientName, by name, without the notes.
func (inv *Inventory) ListClientNames(ctx context.Context) ([]ClientName, error) {
	read := inv.startRead()
	var (
		hit    []ClientName
		cached bool
	)
	inv.readCache(read, func(c *listCache) { hit, cached = c.clients, c.cached })
	if cached {
		return slices.Clone(hit), nil
	}
	rows, err := inv.db.QueryContext(ctx, "SELECT id, name, slug FROM clients ORDER BY name_fold, id")
	l, err := scanAll(rows, err, func(r store.Row) (ClientName, error) {
		var c ClientName
		return c, r.Scan(&c.ID, &c.Name, &c.Slug)
	}, "listing clients")
	if err != nil {
		return nil, err
	}
	inv.writeCache(read, func(c *listCache) { c.clients, c.cached = slices.Clone(l), true })
	return l, nil
}

// HostRecord is a host with its JSON columns as the JSON text they are stored as: Host's
// Addresses, Tags and Facts are left empty, and AddressesJSON, TagsJSON and FactsJSON hold the
// text (a JSON array of strings, a JSON array of strings, a JSON object of Facts). It is for a
// caller that passes them on as JSON, such as the REST API's lists, and would otherwise decode
// each only to encode it again.
type HostRecord struct {
	Host
	AddressesJSON string
	TagsJSON      string
	FactsJSON     string
}

// ListHostRecords returns what ListHosts does, the JSON columns as stored.
func (inv *Inventory) ListHostRecords(ctx context.Context, f HostFilter) ([]HostRecord, error) {
	w := hostWhere(f, "")
	rows, err := inv.db.QueryContext(ctx, "SELECT "+hostCols+" FROM hosts"+w.sql()+" ORDER BY name_fold, id"+w.page(f.Page), w.args...)
	return scanAll(rows, err, scanHostRecord, "listing hosts")
}

func scanHostRecord(row store.Row) (HostRecord, error) {
	var (
		r                HostRecord
		site, machine    sql.NullString
		status           string
		enrolled         sql.NullInt64
		created, updated int64
	)
	h := &r.Host
	err := row.Scan(&h.ID, &h.ClientID, &site, &h.Name, &r.AddressesJSON, &h.OS, &h.Role, &r.TagsJSON, &r.FactsJSON,
		&h.AgentURL, &status, &machine, &enrolled, &created, &updated)
	if err != nil {
		return HostRecord{}, err
	}
	h.SiteID, h.MachineID, h.Status = site.String, machine.String, Status(status)
	if enrolled.Valid {
		h.EnrolledAt = store.FromMillis(enrolled.Int64)
	}
	h.CreatedAt, h.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return r, nil
}

// Decode returns the record as ListHosts would: its JSON columns decoded into Host.
func (r HostRecord) Decode() (Host, error) {
	h := r.Host
	var err error
	if h.Addresses, err = decodeList("addresses", r.AddressesJSON); err != nil {
		return Host{}, err
	}
	if h.Tags, err = decodeList("tags", r.TagsJSON); err != nil {
		return Host{}, err
	}
	if err := json.Unmarshal([]byte(r.FactsJSON), &h.Facts); err != nil {
		return Host{}, fmt.Errorf("decoding stored facts: %w", err)
	}
	return h, nil
}
