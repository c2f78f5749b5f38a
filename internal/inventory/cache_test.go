package inventory_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
)

// listingView is everything the listing cache answers for one client's hosts, as text.
func listingView(t *testing.T, inv *inventory.Inventory, clientID string) string {
	t.Helper()
	var b strings.Builder
	clients, err := inv.ListClientNames(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "clients %v\n", clients)
	f := inventory.HostFilter{ClientID: clientID}
	refs, err := inv.ListHostRefs(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "refs %+v\n", refs)
	for _, set := range []*inventory.HostSet{nil, {Keys: []inventory.HostKey{{ClientID: clientID, Name: "web1"}}}, {Exclude: true, Keys: []inventory.HostKey{{ClientID: clientID, Name: "WEB1"}}}} {
		n, err := inv.CountHostsIn(ctx, f, set)
		if err != nil {
			t.Fatal(err)
		}
		f.Page = inventory.Page{Limit: 10}
		l, err := inv.ListHostSummaries(ctx, f, set)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%d hosts: %+v\n", n, l)
	}
	return b.String()
}

// TestListingCacheFollowsWrites: after every kind of write, the cached listings (client names,
// counts, pages, with and without a host set, host refs) are what an Inventory without a cache reads, and
// they did change.
func TestListingCacheFollowsWrites(t *testing.T) {
	type estate struct {
		client inventory.Client
		site   inventory.Site
		web1   inventory.Host
		other  inventory.Client // no sites, no hosts
		empty  inventory.Site   // no hosts
	}
	tests := []struct {
		name  string
		write func(context.Context, *inventory.Inventory, estate) error
		same  bool // the view shows nothing of what it changes (sites are not listed)
	}{
		{"create host", func(ctx context.Context, inv *inventory.Inventory, e estate) error {
			_, err := inv.CreateHost(ctx, inventory.Host{ClientID: e.client.ID, Name: "web2"})
			return err
		}, false},
		{"rename host", func(ctx context.Context, inv *inventory.Inventory, e estate) error {
			h := e.web1
			h.Name = "web9"
			_, err := inv.UpdateHost(ctx, h)
			return err
		}, false},
		{"retire host", func(ctx context.Context, inv *inventory.Inventory, e estate) error {
			h := e.web1
			h.Status = inventory.StatusRetired
			_, err := inv.UpdateHost(ctx, h)
			return err
		}, false},
		{"delete host", func(ctx context.Context, inv *inventory.Inventory, e estate) error {
			return inv.DeleteHost(ctx, e.web1.ID)
		}, false},
		{"enrol a new host", func(ctx context.Context, inv *inventory.Inventory, e estate) error {
			_, _, err := inv.EnrolHost(ctx, e.client.ID, inventory.Enrolment{MachineID: "m-new", Hostname: "db1"})
			return err
		}, false},
		{"enrolment approves a pending host", func(ctx context.Context, inv *inventory.Inventory, e estate) error {
			_, _, err := inv.EnrolHost(ctx, e.client.ID, inventory.Enrolment{MachineID: "m-web1", Hostname: "web1", AutoApprove: true})
			return err
		}, false},
		{"rename client", func(ctx context.Context, inv *inventory.Inventory, e estate) error {
			c := e.client
			c.Name = "Acme Renamed"
			_, err := inv.UpdateClient(ctx, c)
			return err
		}, false},
		{"create client", func(ctx context.Context, inv *inventory.Inventory, e estate) error {
			_, err := inv.CreateClient(ctx, inventory.Client{Name: "Globex"})
			return err
		}, false},
		{"rename site", func(ctx context.Context, inv *inventory.Inventory, e estate) error {
			s := e.site
			s.Name = "Mumbai"
			_, err := inv.UpdateSite(ctx, s)
			return err
		}, false},
		{"move host off its site", func(ctx context.Context, inv *inventory.Inventory, e estate) error {
			h := e.web1
			h.SiteID = ""
			_, err := inv.UpdateHost(ctx, h)
			return err
		}, false},
		{"delete client", func(ctx context.Context, inv *inventory.Inventory, e estate) error {
			return inv.DeleteClient(ctx, e.other.ID)
		}, false},
		{"create site", func(ctx context.Context, inv *inventory.Inventory, e estate) error {
			_, err := inv.CreateSite(ctx, inventory.Site{ClientID: e.client.ID, Name: "Delhi"})
			return err
		}, true},
		{"delete site", func(ctx context.Context, inv *inventory.Inventory, e estate) error {
			return inv.DeleteSite(ctx, e.empty.ID)
		}, true},
	}
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var e estate
				e.client = mustClient(t, inv, fmt.Sprintf("Acme %d", i))
				e.site = mustSite(t, inv, e.client.ID, "Pune")
				e.other = mustClient(t, inv, fmt.Sprintf("Other %d", i))
				e.empty = mustSite(t, inv, e.client.ID, "Empty")
				e.web1 = mustHost(t, inv, inventory.Host{ClientID: e.client.ID, SiteID: e.site.ID, Name: "web1", MachineID: fmt.Sprintf("m-web1-%d", i)})
				if tc.name == "enrolment approves a pending host" {
					e.web1.MachineID = "m-web1"
					e.web1.Status = inventory.StatusPending
					var err error
					if e.web1, err = inv.UpdateHost(ctx, e.web1); err != nil {
						t.Fatal(err)
					}
				}
				before := listingView(t, inv, e.client.ID)
				if again := listingView(t, inv, e.client.ID); again != before {
					t.Fatalf("two reads differ:\n%s\n%s", before, again)
				}
				if err := tc.write(ctx, inv, e); err != nil {
					t.Fatal(err)
				}
				got := listingView(t, inv, e.client.ID)
				want := listingView(t, inventory.New(db), e.client.ID)
				if got != want {
					t.Errorf("after the write the cache answers\n%s\nand the database\n%s", got, want)
				}
				if got == before && !tc.same {
					t.Errorf("the write changed nothing in the view:\n%s", got)
				}
			})
		}
	})
}

// TestListingCacheCopies: what a listing answers is the caller's: changing it changes nothing
// the next call answers.
func TestListingCacheCopies(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		c := mustClient(t, inv, "Acme")
		mustHost(t, inv, inventory.Host{ClientID: c.ID, Name: "web1"})
		f := inventory.HostFilter{ClientID: c.ID}
		for range 2 { // the first calls fill the cache, the second answer from it
			clients, _ := inv.ListClientNames(ctx)
			clients[0].Name = "changed"
			refs, _ := inv.ListHostRefs(ctx, f)
			refs[0].Name = "changed"
			page, _ := inv.ListHostSummaries(ctx, inventory.HostFilter{ClientID: c.ID, Page: inventory.Page{Limit: 10}}, nil)
			page[0].Name = "changed"
			if got, want := listingView(t, inv, c.ID), listingView(t, inventory.New(db), c.ID); got != want {
				t.Fatalf("a caller's change reached the cache:\n%s\nwant\n%s", got, want)
			}
		}
	})
}
