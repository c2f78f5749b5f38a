package inventory_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
)

func TestHostCRUD(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme := mustClient(t, inv, "Acme")
		pune := mustSite(t, inv, acme.ID, "Pune")
		in := inventory.Host{
			ClientID:  acme.ID,
			SiteID:    pune.ID,
			Name:      " db1.acme.example ",
			Addresses: []string{"10.0.0.5", "2001:db8::5", "db1.acme.example."},
			OS:        "Debian 12",
			Role:      "database",
			Tags:      []string{"Prod", "dc=pune", "tier_1"},
			Facts: inventory.Facts{Kernel: "6.1.0-18-amd64", CPUModel: "Xeon", Cores: 16, MemoryBytes: 64 << 30,
				OSRelease: "Debian GNU/Linux 12 (bookworm)", Extra: map[string]string{"virt": "kvm"}},
			AgentURL:  "http://10.0.0.5:9500/metrics",
			MachineID: "0123456789abcdef0123456789abcdef",
		}
		h, err := inv.CreateHost(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != "db1.acme.example" || h.Status != inventory.StatusPending || h.Tags[0] != "prod" || !h.EnrolledAt.IsZero() {
			t.Errorf("created %+v: want the trimmed name, pending, lower-case tags, never enrolled", h)
		}
		got, err := inv.GetHost(ctx, h.ID)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "GetHost", got, h)
		if got.Facts.MemoryBytes != 64<<30 || got.Facts.Extra["virt"] != "kvm" || len(got.Addresses) != 3 {
			t.Errorf("facts or addresses lost: %+v", got)
		}

		h.SiteID, h.Status, h.Tags, h.Addresses, h.Role = "", inventory.StatusActive, nil, nil, ""
		h.ClientID = ""
		up, err := inv.UpdateHost(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if up.SiteID != "" || up.Status != inventory.StatusActive || up.Tags != nil || up.Addresses != nil || up.ClientID != acme.ID {
			t.Errorf("updated %+v", up)
		}
		got, _ = inv.GetHost(ctx, h.ID)
		sameJSON(t, "GetHost after update", got, up)

		if err := inv.DeleteHost(ctx, h.ID); err != nil {
			t.Fatal(err)
		}
		for name, err := range map[string]error{
			"get":    second(inv.GetHost(ctx, h.ID)),
			"update": second(inv.UpdateHost(ctx, up)),
			"delete": inv.DeleteHost(ctx, h.ID),
		} {
			if !errors.Is(err, inventory.ErrNotFound) {
				t.Errorf("%s after delete: %v, want ErrNotFound", name, err)
			}
		}
	})
}

func TestHostValidation(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme, other := mustClient(t, inv, "Acme"), mustClient(t, inv, "Other")
		otherSite := mustSite(t, inv, other.ID, "Elsewhere")
		mustHost(t, inv, inventory.Host{ClientID: acme.ID, Name: "web1", MachineID: "m-1"})
		ok := func(mod func(h *inventory.Host)) inventory.Host {
			h := inventory.Host{ClientID: acme.ID, Name: "new", Addresses: []string{"10.0.0.1"}}
			mod(&h)
			return h
		}
		tests := []struct {
			name       string
			h          inventory.Host
			field, msg string
		}{
			{"no client", ok(func(h *inventory.Host) { h.ClientID = "" }), "client_id", "required"},
			{"unknown client", ok(func(h *inventory.Host) { h.ClientID = store.NewID() }), "client_id", "no client"},
			{"unknown site", ok(func(h *inventory.Host) { h.SiteID = store.NewID() }), "site_id", "no site"},
			{"another client's site", ok(func(h *inventory.Host) { h.SiteID = otherSite.ID }), "site_id", "another client"},
			{"no name", ok(func(h *inventory.Host) { h.Name = " " }), "name", "required"},
			{"bad second address", ok(func(h *inventory.Host) { h.Addresses = []string{"10.0.0.1", "10.0.0.300"} }), "addresses[1]", "not an IP address or host name"},
			{"address with a space", ok(func(h *inventory.Host) { h.Addresses = []string{"web 1"} }), "addresses[0]", "not an IP address or host name"},
			{"address with underscore", ok(func(h *inventory.Host) { h.Addresses = []string{"my_host"} }), "addresses[0]", "not an IP address"},
			{"empty address", ok(func(h *inventory.Host) { h.Addresses = []string{"10.0.0.1", ""} }), "addresses[1]", "empty"},
			{"address with zone", ok(func(h *inventory.Host) { h.Addresses = []string{"fe80::1%eth0"} }), "addresses[0]", "zone"},
			{"repeated address", ok(func(h *inventory.Host) { h.Addresses = []string{"a.example", "b.example", "A.example."} }), "addresses[2]", "repeats addresses[0]"},
			{"bad tag", ok(func(h *inventory.Host) { h.Tags = []string{"ok", "not ok"} }), "tags[1]", "may hold only"},
			{"tag with a quote", ok(func(h *inventory.Host) { h.Tags = []string{`a"b`} }), "tags[0]", "may hold only"},
			{"repeated tag, other case", ok(func(h *inventory.Host) { h.Tags = []string{"prod", "PROD"} }), "tags[1]", "repeats tags[0]"},
			{"negative cores", ok(func(h *inventory.Host) { h.Facts.Cores = -1 }), "facts.cores", "negative"},
			{"negative memory", ok(func(h *inventory.Host) { h.Facts.MemoryBytes = -1 }), "facts.memory_bytes", "negative"},
			{"agent url not http", ok(func(h *inventory.Host) { h.AgentURL = "ftp://10.0.0.1/metrics" }), "agent_url", "http"},
			{"agent url bad port", ok(func(h *inventory.Host) { h.AgentURL = "http://10.0.0.1:99999/metrics" }), "agent_url", "port"},
			{"agent url with password", ok(func(h *inventory.Host) { h.AgentURL = "http://u:p@10.0.0.1:9500/metrics" }), "agent_url", "credentials"},
			{"unknown status", ok(func(h *inventory.Host) { h.Status = "lost" }), "status", "one of"},
			{"bad machine id", ok(func(h *inventory.Host) { h.MachineID = "has space" }), "machine_id", "letters"},
			{"duplicate name, other case", ok(func(h *inventory.Host) { h.Name = "WEB1" }), "name", "already has a host"},
			{"duplicate machine id", ok(func(h *inventory.Host) { h.MachineID = "m-1" }), "machine_id", "another host"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := inv.CreateHost(ctx, tc.h)
				wantField(t, err, tc.field, tc.msg)
				if n := rows(t, db, "hosts"); n != 1 {
					t.Errorf("%d hosts, want 1: a refused create wrote", n)
				}
			})
		}
		// The same name under another client is fine.
		mustHost(t, inv, inventory.Host{ClientID: other.ID, Name: "web1"})
	})
}

func TestHostUpdateRules(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme, other := mustClient(t, inv, "Acme"), mustClient(t, inv, "Other")
		a := mustHost(t, inv, inventory.Host{ClientID: acme.ID, Name: "a"})
		mustHost(t, inv, inventory.Host{ClientID: acme.ID, Name: "b", MachineID: "mb"})
		tests := []struct {
			name       string
			mod        func(h *inventory.Host)
			field, msg string
		}{
			{"move to another client", func(h *inventory.Host) { h.ClientID = other.ID }, "client_id", "cannot be moved"},
			{"rename onto another host", func(h *inventory.Host) { h.Name = "B" }, "name", "already has a host"},
			{"take another host's machine id", func(h *inventory.Host) { h.MachineID = "mb" }, "machine_id", "another host"},
			{"bad address", func(h *inventory.Host) { h.Addresses = []string{"-bad-"} }, "addresses[0]", "not an IP"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				h := a
				tc.mod(&h)
				_, err := inv.UpdateHost(ctx, h)
				wantField(t, err, tc.field, tc.msg)
				got, _ := inv.GetHost(ctx, a.ID)
				sameJSON(t, "host after a refused update", got, a)
			})
		}
	})
}

func TestListHosts(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme, other := mustClient(t, inv, "Acme"), mustClient(t, inv, "Other")
		pune := mustSite(t, inv, acme.ID, "Pune")
		for _, h := range []inventory.Host{
			{ClientID: acme.ID, SiteID: pune.ID, Name: "web1", Role: "web", Tags: []string{"prod", "tier_1"}, Status: inventory.StatusActive, MachineID: "m1"},
			{ClientID: acme.ID, SiteID: pune.ID, Name: "Web2", Role: "web", Tags: []string{"prod"}, Status: inventory.StatusActive},
			{ClientID: acme.ID, Name: "db1", Role: "database", Tags: []string{"prod", "tierx1"}, Status: inventory.StatusPending},
			{ClientID: acme.ID, Name: "old", Tags: []string{"production"}, Status: inventory.StatusRetired},
			{ClientID: other.ID, Name: "web1", Role: "web", Tags: []string{"staging"}},
		} {
			mustHost(t, inv, h)
		}
		tests := []struct {
			name string
			f    inventory.HostFilter
			want string
		}{
			{"all by name", inventory.HostFilter{}, "db1,old,web1,web1,Web2"},
			{"client", inventory.HostFilter{ClientID: acme.ID}, "db1,old,web1,Web2"},
			{"site", inventory.HostFilter{SiteID: pune.ID}, "web1,Web2"},
			{"status", inventory.HostFilter{Status: inventory.StatusActive}, "web1,Web2"},
			{"role", inventory.HostFilter{Role: "web"}, "web1,web1,Web2"},
			{"tag, exact (not production)", inventory.HostFilter{Tag: "prod"}, "db1,web1,Web2"},
			{"tag, any case", inventory.HostFilter{Tag: "PROD"}, "db1,web1,Web2"},
			{"tag with _ is literal", inventory.HostFilter{Tag: "tier_1"}, "web1"},
			{"tag absent", inventory.HostFilter{Tag: "nope"}, ""},
			{"name contains", inventory.HostFilter{NameContains: "WEB"}, "web1,web1,Web2"},
			{"machine id", inventory.HostFilter{MachineID: "m1"}, "web1"},
			{"combined", inventory.HostFilter{ClientID: acme.ID, Role: "web", Tag: "prod", Status: inventory.StatusActive}, "web1,Web2"},
			{"page", inventory.HostFilter{Page: inventory.Page{Limit: 2, Offset: 1}}, "old,web1"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				l, err := inv.ListHosts(ctx, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.Join(names(l, hostName), ","); got != tc.want {
					t.Errorf("got %q, want %q", got, tc.want)
				}
			})
		}
	})
}
