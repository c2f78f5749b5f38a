package inventory_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
)

// TestCountAndRefsMatchListHosts checks that CountHosts and ListHostRefs select exactly the hosts
// ListHosts does, for every kind of filter, so that a paged page's total matches its rows.
func TestCountAndRefsMatchListHosts(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme, other := mustClient(t, inv, "Acme"), mustClient(t, inv, "Other")
		pune := mustSite(t, inv, acme.ID, "Pune")
		for _, h := range []inventory.Host{
			{ClientID: acme.ID, SiteID: pune.ID, Name: "web1", Role: "web", Tags: []string{"prod", "tier_1"}, Status: inventory.StatusActive, MachineID: "m1", AgentURL: "http://10.0.0.1:10730/metrics",
				Addresses: []string{"10.0.0.1", "web1.acme.example"}, Facts: inventory.Facts{Kernel: "6.1", Cores: 4, Extra: map[string]string{"rack": "r1"}}},
			{ClientID: acme.ID, SiteID: pune.ID, Name: "Web2", Role: "web", Tags: []string{"prod"}, Status: inventory.StatusActive},
			{ClientID: acme.ID, Name: "db1", Role: "database", Tags: []string{"prod", "tierx1"}, Status: inventory.StatusPending},
			{ClientID: acme.ID, Name: "old", Tags: []string{"production"}, Status: inventory.StatusRetired},
			{ClientID: other.ID, Name: "web1", Role: "web", Tags: []string{"staging"}, AgentURL: "http://web1.other.example:10730/"},
		} {
			mustHost(t, inv, h)
		}
		filters := []struct {
			name string
			f    inventory.HostFilter
			want int
		}{
			{"all", inventory.HostFilter{}, 5},
			{"client", inventory.HostFilter{ClientID: acme.ID}, 4},
			{"site", inventory.HostFilter{SiteID: pune.ID}, 2},
			{"status", inventory.HostFilter{Status: inventory.StatusActive}, 2},
			{"role", inventory.HostFilter{Role: "web"}, 3},
			{"tag", inventory.HostFilter{Tag: "PROD"}, 3},
			{"tag with _ is literal", inventory.HostFilter{Tag: "tier_1"}, 1},
			{"name contains", inventory.HostFilter{NameContains: "WEB"}, 3},
			{"name with % is literal", inventory.HostFilter{NameContains: "%"}, 0},
			{"machine id", inventory.HostFilter{MachineID: "m1"}, 1},
			{"combined", inventory.HostFilter{ClientID: acme.ID, Role: "web", Tag: "prod", Status: inventory.StatusActive}, 2},
			{"nothing", inventory.HostFilter{ClientID: "no-such-client"}, 0},
		}
		for _, tc := range filters {
			t.Run(tc.name, func(t *testing.T) {
				list, err := inv.ListHosts(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				n, err := inv.CountHosts(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				if n != tc.want || len(list) != tc.want {
					t.Errorf("CountHosts %d, ListHosts %d hosts, want %d", n, len(list), tc.want)
				}
				// The page limits the list, never the count.
				paged := tc.f
				paged.Page = inventory.Page{Limit: 1, Offset: 1}
				if n2, err := inv.CountHosts(ctx, paged); err != nil || n2 != n {
					t.Errorf("CountHosts with a page = %d, %v; want %d", n2, err, n)
				}
				refs, err := inv.ListHostRefs(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				if len(refs) != len(list) {
					t.Fatalf("ListHostRefs gave %d, ListHosts %d", len(refs), len(list))
				}
				slugs := map[string]string{acme.ID: acme.Slug, other.ID: other.Slug}
				for i, h := range list {
					want := inventory.HostRef{ID: h.ID, ClientID: h.ClientID, ClientSlug: slugs[h.ClientID], Name: h.Name, Status: h.Status, HasAgent: h.AgentURL != ""}
					if refs[i] != want {
						t.Errorf("ref %d = %+v, want %+v", i, refs[i], want)
					}
				}
				if n2, err := inv.CountHostsIn(ctx, paged, nil); err != nil || n2 != n {
					t.Errorf("CountHostsIn = %d, %v; want %d", n2, err, n)
				}
				recs, err := inv.ListHostRecords(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				if len(recs) != len(list) {
					t.Fatalf("ListHostRecords gave %d, ListHosts %d", len(recs), len(list))
				}
				for i, r := range recs {
					h, err := r.Decode()
					if err != nil {
						t.Fatal(err)
					}
					if fmt.Sprintf("%#v", h) != fmt.Sprintf("%#v", list[i]) {
						t.Errorf("record %d decodes to %#v, want %#v", i, h, list[i])
					}
				}
				sums, err := inv.ListHostSummaries(ctx, tc.f, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(sums) != len(list) {
					t.Fatalf("ListHostSummaries gave %d, ListHosts %d", len(sums), len(list))
				}
				names := map[string]string{acme.ID: acme.Name, other.ID: other.Name}
				sites := map[string]string{pune.ID: pune.Name}
				for i, h := range list {
					want := inventory.HostSummary{ID: h.ID, ClientID: h.ClientID, ClientName: names[h.ClientID], ClientSlug: slugs[h.ClientID],
						SiteID: h.SiteID, SiteName: sites[h.SiteID], Name: h.Name, Role: h.Role, Status: h.Status, AgentURL: h.AgentURL}
					if sums[i] != want {
						t.Errorf("summary %d = %+v, want %+v", i, sums[i], want)
					}
				}
			})
		}
		refs, err := inv.ListHostRefs(ctx, inventory.HostFilter{Page: inventory.Page{Limit: 2, Offset: 1}})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range refs {
			got = append(got, r.Name)
		}
		if strings.Join(got, ",") != "old,web1" {
			t.Errorf("paged refs %v, want old,web1", got)
		}
	})
}

func TestCountClientsAndHostsByClient(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme, beta := mustClient(t, inv, "Acme"), mustClient(t, inv, "Beta Corp")
		mustClient(t, inv, "Gamma")
		for i, st := range []inventory.Status{inventory.StatusActive, inventory.StatusActive, inventory.StatusPending} {
			mustHost(t, inv, inventory.Host{ClientID: acme.ID, Name: fmt.Sprintf("a%d", i), Status: st})
		}
		mustHost(t, inv, inventory.Host{ClientID: beta.ID, Name: "b", Status: inventory.StatusRetired})

		for _, tc := range []struct {
			f    inventory.ClientFilter
			want int
		}{
			{inventory.ClientFilter{}, 3},
			{inventory.ClientFilter{NameContains: "CORP"}, 1},
			{inventory.ClientFilter{NameContains: "_"}, 0},
			{inventory.ClientFilter{NameContains: "a", Page: inventory.Page{Limit: 1}}, 3},
		} {
			if n, err := inv.CountClients(ctx, tc.f); err != nil || n != tc.want {
				t.Errorf("CountClients(%+v) = %d, %v; want %d", tc.f, n, err, tc.want)
			}
		}

		for _, tc := range []struct {
			status inventory.Status
			want   map[string]int
		}{
			{"", map[string]int{acme.ID: 3, beta.ID: 1}},
			{inventory.StatusActive, map[string]int{acme.ID: 2}},
			{inventory.StatusRetired, map[string]int{beta.ID: 1}},
		} {
			got, err := inv.HostCountsByClient(ctx, tc.status)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("HostCountsByClient(%q) = %v, want %v", tc.status, got, tc.want)
			}
		}
	})
}

func TestListHostsByID(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme := mustClient(t, inv, "Acme")
		var ids []string
		for _, name := range []string{"zeta", "alpha", "Mid"} {
			ids = append(ids, mustHost(t, inv, inventory.Host{ClientID: acme.ID, Name: name, Tags: []string{"t"}}).ID)
		}
		for _, tc := range []struct {
			name string
			ids  []string
			want string
		}{
			{"none", nil, ""},
			{"by name, not by argument order", ids, "alpha,Mid,zeta"},
			{"unknown ids are left out", []string{"nope", ids[0]}, "zeta"},
			{"repeats give one row", []string{ids[1], ids[1]}, "alpha"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				l, err := inv.ListHostsByID(ctx, tc.ids)
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.Join(names(l, hostName), ","); got != tc.want {
					t.Errorf("got %q, want %q", got, tc.want)
				}
				for _, h := range l {
					if !slices.Equal(h.Tags, []string{"t"}) {
						t.Errorf("host %s decoded without its tags: %+v", h.Name, h)
					}
				}
			})
		}
	})
}

// TestHostSet: a listing restricted to hosts named by client and name (in any case), or to all
// others, pages and counts like any filter.
func TestHostSet(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme, beta := mustClient(t, inv, "Acme"), mustClient(t, inv, "Beta")
		for _, n := range []string{"a1", "A2", "a3", "a4"} {
			mustHost(t, inv, inventory.Host{ClientID: acme.ID, Name: n})
		}
		mustHost(t, inv, inventory.Host{ClientID: beta.ID, Name: "a1"})
		key := func(c inventory.Client, name string) inventory.HostKey {
			return inventory.HostKey{ClientID: c.ID, Name: name}
		}
		tests := []struct {
			name  string
			f     inventory.HostFilter
			set   *inventory.HostSet
			total int
			page  string // the names on the page of f.Page, with the client's name
		}{
			{"no set", inventory.HostFilter{}, nil, 5, "Acme/a1,Beta/a1,Acme/A2,Acme/a3,Acme/a4"},
			{"empty set", inventory.HostFilter{}, &inventory.HostSet{}, 0, ""},
			{"excluding nothing", inventory.HostFilter{}, &inventory.HostSet{Exclude: true}, 5, "Acme/a1,Beta/a1,Acme/A2,Acme/a3,Acme/a4"},
			{"by client and name", inventory.HostFilter{}, &inventory.HostSet{Keys: []inventory.HostKey{key(beta, "a1"), key(acme, "a2"), key(acme, "nope")}}, 2, "Beta/a1,Acme/A2"},
			{"excluding", inventory.HostFilter{}, &inventory.HostSet{Keys: []inventory.HostKey{key(beta, "a1"), key(acme, "A2")}, Exclude: true}, 3, "Acme/a1,Acme/a3,Acme/a4"},
			{"with a filter", inventory.HostFilter{ClientID: acme.ID}, &inventory.HostSet{Keys: []inventory.HostKey{key(beta, "a1"), key(acme, "a1")}}, 1, "Acme/a1"},
			{"paged", inventory.HostFilter{Page: inventory.Page{Limit: 2, Offset: 1}}, &inventory.HostSet{Keys: []inventory.HostKey{key(acme, "a4")}, Exclude: true}, 4, "Beta/a1,Acme/A2"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				n, err := inv.CountHostsIn(ctx, tc.f, tc.set)
				if err != nil || n != tc.total {
					t.Errorf("CountHostsIn = %d, %v; want %d", n, err, tc.total)
				}
				l, err := inv.ListHostSummaries(ctx, tc.f, tc.set)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, h := range l {
					got = append(got, h.ClientName+"/"+h.Name)
				}
				if strings.Join(got, ",") != tc.page {
					t.Errorf("page %v, want %s", got, tc.page)
				}
			})
		}
		big := &inventory.HostSet{Keys: make([]inventory.HostKey, inventory.MaxHostSetKeys+1)}
		if _, err := inv.CountHostsIn(ctx, inventory.HostFilter{}, big); !errors.Is(err, inventory.ErrHostSetTooLarge) {
			t.Errorf("too large a set: %v", err)
		}
		clients, err := inv.ListClientNames(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []inventory.ClientName{{ID: acme.ID, Name: acme.Name, Slug: acme.Slug}, {ID: beta.ID, Name: beta.Name, Slug: beta.Slug}}
		if !slices.Equal(clients, want) {
			t.Errorf("ListClientNames = %+v, want %+v", clients, want)
		}
	})
}
