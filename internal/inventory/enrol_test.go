package inventory_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
)

func enrolment(machine, hostname string) inventory.Enrolment {
	return inventory.Enrolment{
		MachineID: machine,
		Hostname:  hostname,
		Addresses: []string{"10.0.0.5"},
		OS:        "linux",
		Facts:     inventory.Facts{Kernel: "6.1.0", CPUModel: "Xeon", Cores: 4, MemoryBytes: 8 << 30, OSRelease: "Debian GNU/Linux 12"},
		AgentURL:  "http://10.0.0.5:9500/metrics",
	}
}

func TestEnrolHost(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme := mustClient(t, inv, "Acme")
		e := enrolment("4c4c4544-0042-3510-8052-b4c04f4e4d32", "web1")
		h, created, err := inv.EnrolHost(ctx, acme.ID, e)
		if err != nil {
			t.Fatal(err)
		}
		if !created || h.Name != "web1" || h.Status != inventory.StatusPending || h.EnrolledAt.IsZero() ||
			h.Facts.Hostname != "web1" || h.Facts.Cores != 4 || h.MachineID != e.MachineID {
			t.Fatalf("first enrolment: created %v, %+v", created, h)
		}

		// The operator renames, tags, places and approves it.
		site := mustSite(t, inv, acme.ID, "Pune")
		h.Name, h.Tags, h.SiteID, h.Status, h.Role = "Web server 1", []string{"prod"}, site.ID, inventory.StatusActive, "web"
		if _, err := inv.UpdateHost(ctx, h); err != nil {
			t.Fatal(err)
		}

		// Re-enrolment (new hostname, more memory, new address, no agent URL) refreshes what the
		// agent knows and keeps what the operator set.
		e2 := e
		e2.Hostname, e2.Addresses, e2.AgentURL = "web1-renamed", []string{"10.0.0.6", "web1.acme.example"}, ""
		e2.Facts.MemoryBytes = 16 << 30
		h2, created, err := inv.EnrolHost(ctx, acme.ID, e2)
		if err != nil {
			t.Fatal(err)
		}
		if created || h2.ID != h.ID {
			t.Fatalf("re-enrolment made a new host (created %v, id %s, was %s)", created, h2.ID, h.ID)
		}
		if h2.Name != "Web server 1" || h2.SiteID != site.ID || h2.Status != inventory.StatusActive || h2.Role != "web" || len(h2.Tags) != 1 {
			t.Errorf("re-enrolment overwrote operator fields: %+v", h2)
		}
		if h2.Facts.MemoryBytes != 16<<30 || h2.Facts.Hostname != "web1-renamed" || len(h2.Addresses) != 2 || h2.Addresses[0] != "10.0.0.6" {
			t.Errorf("re-enrolment did not refresh facts and addresses: %+v", h2)
		}
		if h2.AgentURL != e.AgentURL {
			t.Errorf("an enrolment without agent URL cleared it: %q", h2.AgentURL)
		}
		if h2.EnrolledAt.Before(h.EnrolledAt) {
			t.Errorf("enrolled_at went back: %v < %v", h2.EnrolledAt, h.EnrolledAt)
		}
		if n := rows(t, db, "hosts"); n != 1 {
			t.Errorf("%d hosts after re-enrolling one machine, want 1", n)
		}
		got, _ := inv.GetHost(ctx, h.ID)
		sameJSON(t, "GetHost after re-enrolment", got, h2)
	})
}

func TestEnrolStatus(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme := mustClient(t, inv, "Acme")
		tests := []struct {
			name        string
			first       bool // auto-approve at the first enrolment
			setTo       inventory.Status
			again       bool // auto-approve at the second
			want1, want inventory.Status
		}{
			{"pending stays pending", false, "", false, inventory.StatusPending, inventory.StatusPending},
			{"auto-approved at once", true, "", false, inventory.StatusActive, inventory.StatusActive},
			{"pending, then approved by a later auto-approving enrolment", false, "", true, inventory.StatusPending, inventory.StatusActive},
			{"retired stays retired", true, inventory.StatusRetired, true, inventory.StatusActive, inventory.StatusRetired},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				e := enrolment(fmt.Sprintf("machine-%d", i), fmt.Sprintf("host-%d", i))
				e.AutoApprove = tc.first
				h, _, err := inv.EnrolHost(ctx, acme.ID, e)
				if err != nil {
					t.Fatal(err)
				}
				if h.Status != tc.want1 {
					t.Errorf("after first enrolment: %s, want %s", h.Status, tc.want1)
				}
				if tc.setTo != "" {
					h.Status = tc.setTo
					if _, err := inv.UpdateHost(ctx, h); err != nil {
						t.Fatal(err)
					}
				}
				e.AutoApprove = tc.again
				h, _, err = inv.EnrolHost(ctx, acme.ID, e)
				if err != nil {
					t.Fatal(err)
				}
				if h.Status != tc.want {
					t.Errorf("after second enrolment: %s, want %s", h.Status, tc.want)
				}
			})
		}
	})
}

func TestEnrolAdoptsHandEnteredHost(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme := mustClient(t, inv, "Acme")
		pre := mustHost(t, inv, inventory.Host{ClientID: acme.ID, Name: "DB1", Role: "database", Tags: []string{"prod"},
			Addresses: []string{"db1.acme.example"}})
		h, created, err := inv.EnrolHost(ctx, acme.ID, inventory.Enrolment{MachineID: "m-db1", Hostname: "db1"})
		if err != nil {
			t.Fatal(err)
		}
		if created || h.ID != pre.ID || h.MachineID != "m-db1" || h.Role != "database" || h.Name != "DB1" {
			t.Errorf("enrolment did not adopt the hand-entered host: created %v, %+v", created, h)
		}
		if len(h.Addresses) != 1 || h.Addresses[0] != "db1.acme.example" {
			t.Errorf("an enrolment without addresses replaced them: %v", h.Addresses)
		}
		if n := rows(t, db, "hosts"); n != 1 {
			t.Errorf("%d hosts, want 1", n)
		}
	})
}

func TestEnrolRefusals(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme, other := mustClient(t, inv, "Acme"), mustClient(t, inv, "Other")
		if _, _, err := inv.EnrolHost(ctx, acme.ID, enrolment("m1", "web1")); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name       string
			client     string
			e          inventory.Enrolment
			field, msg string
		}{
			{"machine of another client", other.ID, enrolment("m1", "web1"), "machine_id", "another client"},
			{"host name taken by another machine", acme.ID, enrolment("m2", "WEB1"), "hostname", "linked to another machine"},
			{"no machine id", acme.ID, enrolment("", "x"), "machine_id", "required"},
			{"no hostname", acme.ID, enrolment("m3", ""), "hostname", "required"},
			{"bad address", acme.ID, func() inventory.Enrolment {
				e := enrolment("m3", "x")
				e.Addresses = []string{"10.0.0.1", "bad address"}
				return e
			}(), "addresses[1]", "not an IP address"},
			{"negative cores", acme.ID, func() inventory.Enrolment { e := enrolment("m3", "x"); e.Facts.Cores = -2; return e }(), "facts.cores", "negative"},
			{"no client", "", enrolment("m3", "x"), "client_id", "required"},
			{"unknown client", "nope", enrolment("m3", "x"), "client_id", "no client"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				before, _ := inv.ListHosts(ctx, inventory.HostFilter{})
				_, _, err := inv.EnrolHost(ctx, tc.client, tc.e)
				wantField(t, err, tc.field, tc.msg)
				after, _ := inv.ListHosts(ctx, inventory.HostFilter{})
				sameJSON(t, "hosts after a refused enrolment", after, before)
			})
		}
	})
}

// TestEnrolConcurrent: machines enrolling at the same time, each several times at once, end up as
// exactly one host each, and exactly one of each machine's enrolments reports it created.
func TestEnrolConcurrent(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme := mustClient(t, inv, "Acme")
		const machines, racers = 4, 6
		for round := range 3 {
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				created = map[string]int{}
				ids     = map[string]map[string]bool{}
				start   = make(chan struct{})
			)
			for m := range machines {
				machine := fmt.Sprintf("round%d-machine%d", round, m)
				ids[machine] = map[string]bool{}
				for r := range racers {
					wg.Go(func() {
						<-start
						e := enrolment(machine, machine)
						e.Facts.Cores = r + 1
						h, c, err := inv.EnrolHost(ctx, acme.ID, e)
						mu.Lock()
						defer mu.Unlock()
						if err != nil {
							t.Errorf("%s: %v", machine, err)
							return
						}
						ids[machine][h.ID] = true
						if c {
							created[machine]++
						}
					})
				}
			}
			close(start)
			wg.Wait()
			for machine, got := range ids {
				if len(got) != 1 {
					t.Errorf("%s enrolled as %d hosts, want 1", machine, len(got))
				}
				if created[machine] != 1 {
					t.Errorf("%s: %d enrolments reported creating the host, want 1", machine, created[machine])
				}
			}
			if n := rows(t, db, "hosts"); n != machines*(round+1) {
				t.Errorf("round %d: %d hosts, want %d", round, n, machines*(round+1))
			}
		}
	})
}
