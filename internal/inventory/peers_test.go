package inventory_test

import (
	"slices"
	"testing"

	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
)

// Mesh peers are the same client's enrolled, active hosts with an agent URL at the same site,
// "no site" being a site of its own; another client's hosts never are, whatever their site.
func TestMeshPeers(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme, beta := mustClient(t, inv, "Acme"), mustClient(t, inv, "Beta")
		pune, mumbai := mustSite(t, inv, acme.ID, "Pune"), mustSite(t, inv, acme.ID, "Mumbai")
		betaPune := mustSite(t, inv, beta.ID, "Pune")
		ids := map[string]string{} // name -> id
		add := func(client, site, name, machine, url string, status inventory.Status) {
			h := mustHost(t, inv, inventory.Host{ClientID: client, SiteID: site, Name: name, MachineID: machine,
				AgentURL: url, Status: status, Addresses: []string{"10.0.0.1"}})
			ids[name] = h.ID
		}
		const url = "http://10.0.0.1:9500/metrics"
		add(acme.ID, pune.ID, "pune-1", "m-p1", url, inventory.StatusActive)
		add(acme.ID, pune.ID, "pune-2", "m-p2", url, inventory.StatusActive)
		add(acme.ID, pune.ID, "Pune-3", "m-p3", url, inventory.StatusActive)
		add(acme.ID, pune.ID, "pune-pending", "m-p4", url, inventory.StatusPending)
		add(acme.ID, pune.ID, "pune-retired", "m-p5", url, inventory.StatusRetired)
		add(acme.ID, pune.ID, "pune-no-agent-url", "m-p6", "", inventory.StatusActive)
		add(acme.ID, pune.ID, "pune-by-hand", "", url, inventory.StatusActive)
		add(acme.ID, mumbai.ID, "mumbai-1", "m-m1", url, inventory.StatusActive)
		add(acme.ID, "", "nowhere-1", "m-n1", url, inventory.StatusActive)
		add(acme.ID, "", "nowhere-2", "m-n2", url, inventory.StatusActive)
		add(beta.ID, betaPune.ID, "beta-pune-1", "m-b1", url, inventory.StatusActive)
		add(beta.ID, "", "beta-nowhere-1", "m-b2", url, inventory.StatusActive)
		add(beta.ID, "", "beta-nowhere-2", "m-b3", url, inventory.StatusActive)

		tests := []struct {
			name, client, site, self string
			want                     []string
		}{
			{"a site", acme.ID, pune.ID, "pune-1", []string{"pune-2", "Pune-3"}},
			{"a pending host asking", acme.ID, pune.ID, "pune-pending", []string{"pune-1", "pune-2", "Pune-3"}},
			{"alone at its site", acme.ID, mumbai.ID, "mumbai-1", nil},
			{"no site", acme.ID, "", "nowhere-1", []string{"nowhere-2"}},
			{"another client, no site", beta.ID, "", "beta-nowhere-2", []string{"beta-nowhere-1"}},
			{"another client's site of the same name", beta.ID, betaPune.ID, "beta-pune-1", nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				peers, err := inv.MeshPeers(ctx, tt.client, tt.site, ids[tt.self])
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, p := range peers {
					got = append(got, p.Name)
					if p.ClientID != tt.client || p.SiteID != tt.site || p.AgentURL == "" || p.MachineID == "" {
						t.Errorf("peer %+v", p)
					}
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("peers %v, want %v", got, tt.want)
				}
			})
		}
	})
}
