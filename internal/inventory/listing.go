package inventory

import (
	"context"
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
// it stays cheap over the whole estate.
func (inv *Inventory) ListHostRefs(ctx context.Context, f HostFilter) ([]HostRef, error) {
	w := hostWhere(f, "h.") // qualified: clients has id and name_fold too
	q := `SELECT h.id, h.client_id, c.slug, h.name, h.status, h.agent_url <> '' FROM hosts h JOIN clients c ON c.id = h.client_id` +
		w.sql() + " ORDER BY h.name_fold, h.id" + w.page(f.Page)
	rows, err := inv.db.QueryContext(ctx, q, w.args...)
	return scanAll(rows, err, func(r store.Row) (HostRef, error) {
		var h HostRef
		var status string
		err := r.Scan(&h.ID, &h.ClientID, &h.ClientSlug, &h.Name, &status, &h.HasAgent)
		h.Status = Status(status)
		return h, err
	}, "listing hosts")
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
