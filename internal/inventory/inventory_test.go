package inventory_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

var ctx = context.Background()

// each runs body against a fresh inventory on SQLite and on PostgreSQL.
func each(t *testing.T, body func(t *testing.T, inv *inventory.Inventory, db *store.DB)) {
	t.Helper()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		body(t, inventory.New(db), db)
	})
}

// sameJSON fails the test unless got and want encode to the same JSON (times compare by instant).
func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

// wantField fails the test unless err is a validation error with an error on field whose message
// contains msg.
func wantField(t *testing.T, err error, field, msg string) {
	t.Helper()
	fes := inventory.FieldErrors(err)
	if fes == nil {
		t.Fatalf("error %v, want a validation error on %s", err, field)
	}
	for _, fe := range fes {
		if fe.Field == field && strings.Contains(fe.Msg, msg) {
			return
		}
	}
	t.Errorf("field errors %v, want one on %q containing %q", fes, field, msg)
}

// rows counts the rows of table, to prove a refused write wrote nothing.
func rows(t *testing.T, db *store.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func mustClient(t *testing.T, inv *inventory.Inventory, name string) inventory.Client {
	t.Helper()
	c, err := inv.CreateClient(ctx, inventory.Client{Name: name})
	if err != nil {
		t.Fatalf("creating client %q: %v", name, err)
	}
	return c
}

func mustSite(t *testing.T, inv *inventory.Inventory, clientID, name string) inventory.Site {
	t.Helper()
	s, err := inv.CreateSite(ctx, inventory.Site{ClientID: clientID, Name: name})
	if err != nil {
		t.Fatalf("creating site %q: %v", name, err)
	}
	return s
}

func mustHost(t *testing.T, inv *inventory.Inventory, h inventory.Host) inventory.Host {
	t.Helper()
	out, err := inv.CreateHost(ctx, h)
	if err != nil {
		t.Fatalf("creating host %q: %v", h.Name, err)
	}
	return out
}

func names[T any](l []T, name func(T) string) []string {
	out := make([]string, len(l))
	for i, x := range l {
		out[i] = name(x)
	}
	return out
}

func clientName(c inventory.Client) string { return c.Name }
func siteName(s inventory.Site) string     { return s.Name }
func hostName(h inventory.Host) string     { return h.Name }

func TestClientCRUD(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		c, err := inv.CreateClient(ctx, inventory.Client{Name: "  Acme Corp  ", Notes: "line 1\nline 2"})
		if err != nil {
			t.Fatal(err)
		}
		if c.ID == "" || c.Name != "Acme Corp" || c.Slug != "acme-corp" || c.CreatedAt.IsZero() || !c.UpdatedAt.Equal(c.CreatedAt) {
			t.Errorf("created %+v: want an id, the trimmed name, a derived slug and equal times", c)
		}
		got, err := inv.GetClient(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "GetClient", got, c)
		bySlug, err := inv.GetClientBySlug(ctx, "acme-corp")
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "GetClientBySlug", bySlug, c)

		c.Name, c.Slug, c.Notes = "Acme Corporation", "acme", ""
		up, err := inv.UpdateClient(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if up.Name != "Acme Corporation" || up.Slug != "acme" || up.Notes != "" || !up.CreatedAt.Equal(c.CreatedAt) || up.UpdatedAt.Before(c.UpdatedAt) {
			t.Errorf("updated %+v", up)
		}
		got, _ = inv.GetClient(ctx, c.ID)
		sameJSON(t, "GetClient after update", got, up)

		if err := inv.DeleteClient(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		for name, err := range map[string]error{
			"get":    second(inv.GetClient(ctx, c.ID)),
			"slug":   second(inv.GetClientBySlug(ctx, "acme")),
			"update": second(inv.UpdateClient(ctx, up)),
			"delete": inv.DeleteClient(ctx, c.ID),
		} {
			if !errors.Is(err, inventory.ErrNotFound) {
				t.Errorf("%s after delete: %v, want ErrNotFound", name, err)
			}
		}
	})
}

func second[T any](_ T, err error) error { return err }

func TestListClients(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		for _, n := range []string{"Zeta", "alpha", "Beta", "Alphabet 50%", "alp_ha"} {
			mustClient(t, inv, n)
		}
		tests := []struct {
			name string
			f    inventory.ClientFilter
			want string
		}{
			{"all, by name ignoring case", inventory.ClientFilter{}, "alp_ha,alpha,Alphabet 50%,Beta,Zeta"},
			{"name contains, any case", inventory.ClientFilter{NameContains: "ALPH"}, "alpha,Alphabet 50%"},
			{"% is literal", inventory.ClientFilter{NameContains: "50%"}, "Alphabet 50%"},
			{"_ is literal", inventory.ClientFilter{NameContains: "p_h"}, "alp_ha"},
			{"limit", inventory.ClientFilter{Page: inventory.Page{Limit: 2}}, "alp_ha,alpha"},
			{"limit and offset", inventory.ClientFilter{Page: inventory.Page{Limit: 2, Offset: 2}}, "Alphabet 50%,Beta"},
			{"offset alone", inventory.ClientFilter{Page: inventory.Page{Offset: 4}}, "Zeta"},
			{"no match", inventory.ClientFilter{NameContains: "nope"}, ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				l, err := inv.ListClients(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.Join(names(l, clientName), ","); got != tc.want {
					t.Errorf("got %q, want %q", got, tc.want)
				}
			})
		}
	})
}

func TestClientValidation(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		tests := []struct {
			name       string
			c          inventory.Client
			field, msg string
		}{
			{"empty name", inventory.Client{Name: "   "}, "name", "required"},
			{"long name", inventory.Client{Name: strings.Repeat("x", 101)}, "name", "longer than 100"},
			{"control character", inventory.Client{Name: "a\x07b"}, "name", "control character"},
			{"invalid UTF-8", inventory.Client{Name: "a\xffb"}, "name", "UTF-8"},
			{"bad slug", inventory.Client{Name: "Acme", Slug: "Acme Corp"}, "slug", "lower-case"},
			{"slug with double hyphen", inventory.Client{Name: "Acme", Slug: "a--b"}, "slug", "single hyphens"},
			{"slug not derivable", inventory.Client{Name: "東京"}, "slug", "cannot be derived"},
			{"notes control character", inventory.Client{Name: "Acme", Notes: "bell\x07"}, "notes", "control character"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := inv.CreateClient(ctx, tc.c)
				wantField(t, err, tc.field, tc.msg)
				if n := rows(t, db, "clients"); n != 0 {
					t.Errorf("%d clients written by a refused create", n)
				}
				// Validate says the same without the database.
				found := false
				for _, fe := range tc.c.Validate() {
					found = found || fe.Field == tc.field
				}
				if !found {
					t.Errorf("Validate() = %v, missing %s", tc.c.Validate(), tc.field)
				}
			})
		}
		// A refused update changes nothing.
		c := mustClient(t, inv, "Acme")
		bad := c
		bad.Name = ""
		_, err := inv.UpdateClient(ctx, bad)
		wantField(t, err, "name", "required")
		got, _ := inv.GetClient(ctx, c.ID)
		sameJSON(t, "after refused update", got, c)
	})
}

func TestClientDuplicates(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		a := mustClient(t, inv, "Acme")
		b := mustClient(t, inv, "Bravo")
		tests := []struct {
			name       string
			do         func() error
			field, msg string
		}{
			{"same name, other case", func() error { return second(inv.CreateClient(ctx, inventory.Client{Name: "ACME", Slug: "acme-2"})) }, "name", "already exists"},
			{"same slug", func() error { return second(inv.CreateClient(ctx, inventory.Client{Name: "Acme Two", Slug: "acme"})) }, "slug", "already exists"},
			{"derived slug collides", func() error { return second(inv.CreateClient(ctx, inventory.Client{Name: "ACME!"})) }, "slug", "already exists"},
			{"update to a taken name", func() error { b2 := b; b2.Name = "acme"; return second(inv.UpdateClient(ctx, b2)) }, "name", "already exists"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				wantField(t, tc.do(), tc.field, tc.msg)
				if n := rows(t, db, "clients"); n != 2 {
					t.Errorf("%d clients, want 2", n)
				}
			})
		}
		got, _ := inv.GetClient(ctx, b.ID)
		if got.Name != "Bravo" {
			t.Errorf("a refused update renamed Bravo to %q", got.Name)
		}
		// Renaming to itself with another case is not a duplicate.
		a.Name = "ACME"
		if _, err := inv.UpdateClient(ctx, a); err != nil {
			t.Errorf("changing the case of a client's own name: %v", err)
		}
	})
}

func TestSiteCRUD(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme, other := mustClient(t, inv, "Acme"), mustClient(t, inv, "Other")
		s, err := inv.CreateSite(ctx, inventory.Site{ClientID: acme.ID, Name: "Pune DC", Address: "Plot 7\nHinjewadi"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := inv.GetSite(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "GetSite", got, s)
		mustSite(t, inv, acme.ID, "Mumbai DR")
		mustSite(t, inv, other.ID, "Pune DC") // the same name under another client is fine

		for _, tc := range []struct {
			name string
			f    inventory.SiteFilter
			want string
		}{
			{"all", inventory.SiteFilter{}, "Mumbai DR,Pune DC,Pune DC"},
			{"by client", inventory.SiteFilter{ClientID: acme.ID}, "Mumbai DR,Pune DC"},
			{"by name", inventory.SiteFilter{NameContains: "pune"}, "Pune DC,Pune DC"},
			{"by client and name", inventory.SiteFilter{ClientID: other.ID, NameContains: "pune"}, "Pune DC"},
		} {
			l, err := inv.ListSites(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(names(l, siteName), ","); got != tc.want {
				t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
			}
		}

		s.Name, s.ClientID = "Pune Primary", "" // empty client: unchanged
		up, err := inv.UpdateSite(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if up.Name != "Pune Primary" || up.ClientID != acme.ID {
			t.Errorf("updated %+v", up)
		}
		up.ClientID = other.ID
		_, err = inv.UpdateSite(ctx, up)
		wantField(t, err, "client_id", "cannot be moved")

		_, err = inv.UpdateSite(ctx, inventory.Site{ID: "nope", Name: "x"})
		if !errors.Is(err, inventory.ErrNotFound) {
			t.Errorf("update of a missing site: %v", err)
		}
		if err := inv.DeleteSite(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := inv.GetSite(ctx, s.ID); !errors.Is(err, inventory.ErrNotFound) {
			t.Errorf("get after delete: %v", err)
		}
		if err := inv.DeleteSite(ctx, s.ID); !errors.Is(err, inventory.ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
	})
}

func TestSiteValidation(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme := mustClient(t, inv, "Acme")
		mustSite(t, inv, acme.ID, "Pune")
		tests := []struct {
			name       string
			s          inventory.Site
			field, msg string
		}{
			{"no client", inventory.Site{Name: "X"}, "client_id", "required"},
			{"unknown client", inventory.Site{ClientID: store.NewID(), Name: "X"}, "client_id", "no client"},
			{"no name", inventory.Site{ClientID: acme.ID}, "name", "required"},
			{"duplicate name in the client", inventory.Site{ClientID: acme.ID, Name: "PUNE"}, "name", "already has a site"},
			{"address too long", inventory.Site{ClientID: acme.ID, Name: "X", Address: strings.Repeat("a", 501)}, "address", "longer"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := inv.CreateSite(ctx, tc.s)
				wantField(t, err, tc.field, tc.msg)
				if n := rows(t, db, "sites"); n != 1 {
					t.Errorf("%d sites, want 1", n)
				}
			})
		}
		// Every problem at once, including the database check.
		_, err := inv.CreateSite(ctx, inventory.Site{ClientID: "missing", Name: ""})
		wantField(t, err, "client_id", "no client")
		wantField(t, err, "name", "required")
	})
}

// TestDeleteProtects: a client with sites, hosts or contracts, and a site with hosts, are kept
// (NetBox's PROTECT); deleting a host takes its services with it.
func TestDeleteProtects(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme := mustClient(t, inv, "Acme")
		site := mustSite(t, inv, acme.ID, "Pune")
		h1 := mustHost(t, inv, inventory.Host{ClientID: acme.ID, SiteID: site.ID, Name: "web1"})
		h2 := mustHost(t, inv, inventory.Host{ClientID: acme.ID, Name: "web2"})
		svc, err := inv.CreateService(ctx, inventory.Service{HostID: h1.ID, Type: "nginx", Target: "127.0.0.1:80"})
		if err != nil {
			t.Fatal(err)
		}
		con, err := inv.CreateContract(ctx, validContract(acme.ID))
		if err != nil {
			t.Fatal(err)
		}

		steps := []struct {
			name    string
			do      func() error
			inUse   bool
			message string
		}{
			{"client with hosts, a site and a contract", func() error { return inv.DeleteClient(ctx, acme.ID) }, true, `client "Acme" still has 2 hosts, 1 site and 1 contract`},
			{"site with a host", func() error { return inv.DeleteSite(ctx, site.ID) }, true, `site "Pune" still has 1 host`},
			{"host with a service", func() error { return inv.DeleteHost(ctx, h1.ID) }, false, ""},
			{"the service went with its host", func() error { return second(inv.GetService(ctx, svc.ID)) }, false, "not found"},
			{"site now empty", func() error { return inv.DeleteSite(ctx, site.ID) }, false, ""},
			{"client with a host and a contract", func() error { return inv.DeleteClient(ctx, acme.ID) }, true, "still has 1 host and 1 contract"},
			{"last host", func() error { return inv.DeleteHost(ctx, h2.ID) }, false, ""},
			{"contract", func() error { return inv.DeleteContract(ctx, con.ID) }, false, ""},
			{"client now empty", func() error { return inv.DeleteClient(ctx, acme.ID) }, false, ""},
		}
		for _, st := range steps {
			err := st.do()
			if got := errors.Is(err, inventory.ErrInUse); got != st.inUse {
				t.Fatalf("%s: error %v, in use %v, want %v", st.name, err, got, st.inUse)
			}
			if st.message != "" && (err == nil || !strings.Contains(err.Error(), st.message)) {
				t.Fatalf("%s: error %v, want it to say %q", st.name, err, st.message)
			}
			if st.message == "" && err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		for _, tbl := range []string{"clients", "sites", "hosts", "services", "contracts"} {
			if n := rows(t, db, tbl); n != 0 {
				t.Errorf("%d rows left in %s", n, tbl)
			}
		}
	})
}

// TestDeleteRaceBackstop: the foreign keys refuse what the explicit checks cannot see, a host
// written around the inventory (here, straight into the table).
func TestDeleteRaceBackstop(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme := mustClient(t, inv, "Acme")
		_, err := db.ExecContext(ctx, `INSERT INTO contracts (id, client_id, name, name_fold, nodes_contracted, rate_minor, currency, start_date, created_at, updated_at)
			VALUES ('c1', $1, 'x', 'x', 1, 1, 'INR', '2026-01-01', 0, 0)`, acme.ID)
		if err != nil {
			t.Fatal(err)
		}
		_, err = db.ExecContext(ctx, "DELETE FROM clients WHERE id = $1", acme.ID)
		ce, ok := store.AsConstraint(err)
		if !ok || ce.Kind != store.ForeignKey {
			t.Errorf("deleting a client with a contract behind the inventory's back: %v, want a foreign key violation", err)
		}
	})
}
