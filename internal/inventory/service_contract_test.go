package inventory_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
)

func TestServiceCRUD(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme, other := mustClient(t, inv, "Acme"), mustClient(t, inv, "Other")
		h1 := mustHost(t, inv, inventory.Host{ClientID: acme.ID, Name: "db1"})
		h2 := mustHost(t, inv, inventory.Host{ClientID: other.ID, Name: "db1"})
		pg, err := inv.CreateService(ctx, inventory.Service{HostID: h1.ID, Type: "Postgres", Target: "db1.acme.example:5432",
			CredentialsRef: "env:PG_MONITOR_DSN"})
		if err != nil {
			t.Fatal(err)
		}
		if pg.Type != "postgres" || pg.Name != "postgres" {
			t.Errorf("created %+v: want the canonical type and the type as default name", pg)
		}
		got, err := inv.GetService(ctx, pg.ID)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "GetService", got, pg)
		for _, s := range []inventory.Service{
			{HostID: h1.ID, Type: "linux"},
			{HostID: h1.ID, Type: "postgres", Name: "postgres-replica", Target: "[2001:db8::7]:5433", CredentialsRef: "file:/etc/sage/pg.pass"},
			{HostID: h2.ID, Type: "nginx", Target: "https://www.other.example/status"},
		} {
			if _, err := inv.CreateService(ctx, s); err != nil {
				t.Fatalf("creating %+v: %v", s, err)
			}
		}
		for _, tc := range []struct {
			name string
			f    inventory.ServiceFilter
			want string
		}{
			{"host", inventory.ServiceFilter{HostID: h1.ID}, "linux,postgres,postgres-replica"},
			{"client", inventory.ServiceFilter{ClientID: other.ID}, "nginx"},
			{"type", inventory.ServiceFilter{Type: "postgres"}, "postgres,postgres-replica"},
			{"client and type", inventory.ServiceFilter{ClientID: acme.ID, Type: "nginx"}, ""},
		} {
			l, err := inv.ListServices(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(names(l, func(s inventory.Service) string { return s.Name }), ","); got != tc.want {
				t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
			}
		}
		pg.Target, pg.HostID = "db1.acme.example:6432", ""
		up, err := inv.UpdateService(ctx, pg)
		if err != nil {
			t.Fatal(err)
		}
		if up.Target != "db1.acme.example:6432" || up.HostID != h1.ID {
			t.Errorf("updated %+v", up)
		}
		up.HostID = h2.ID
		_, err = inv.UpdateService(ctx, up)
		wantField(t, err, "host_id", "cannot be moved")
		if err := inv.DeleteService(ctx, pg.ID); err != nil {
			t.Fatal(err)
		}
		if err := inv.DeleteService(ctx, pg.ID); !errors.Is(err, inventory.ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
	})
}

func TestServiceValidation(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme := mustClient(t, inv, "Acme")
		h := mustHost(t, inv, inventory.Host{ClientID: acme.ID, Name: "db1"})
		if _, err := inv.CreateService(ctx, inventory.Service{HostID: h.ID, Type: "redis", Target: "127.0.0.1:6379"}); err != nil {
			t.Fatal(err)
		}
		svc := func(mod func(s *inventory.Service)) inventory.Service {
			s := inventory.Service{HostID: h.ID, Type: "mysql", Target: "db1:3306"}
			mod(&s)
			return s
		}
		tests := []struct {
			name       string
			s          inventory.Service
			field, msg string
		}{
			{"no host", svc(func(s *inventory.Service) { s.HostID = "" }), "host_id", "required"},
			{"unknown host", svc(func(s *inventory.Service) { s.HostID = store.NewID() }), "host_id", "no host"},
			{"no type", svc(func(s *inventory.Service) { s.Type = "" }), "type", "required"},
			{"unknown type", svc(func(s *inventory.Service) { s.Type = "db2" }), "type", `unknown service type "db2"`},
			{"target without port", svc(func(s *inventory.Service) { s.Target = "db1" }), "target", "host:port"},
			{"target port zero", svc(func(s *inventory.Service) { s.Target = "db1:0" }), "target", "not a port"},
			{"target bad host", svc(func(s *inventory.Service) { s.Target = "db_1:3306" }), "target", "not an IP address or host name"},
			{"bare IPv6 target", svc(func(s *inventory.Service) { s.Target = "2001:db8::1:3306" }), "target", "host:port"},
			{"URL with credentials", svc(func(s *inventory.Service) { s.Target = "http://admin:pw@db1:8080/" }), "target", "credentials_ref"},
			{"URL without host", svc(func(s *inventory.Service) { s.Target = "http:///status" }), "target", "no host"},
			{"a secret as the credentials", svc(func(s *inventory.Service) { s.CredentialsRef = "hunter2" }), "credentials_ref", "never the secret"},
			{"bad env name", svc(func(s *inventory.Service) { s.CredentialsRef = "env:MY-VAR" }), "credentials_ref", "environment variable"},
			{"relative file", svc(func(s *inventory.Service) { s.CredentialsRef = "file:etc/pw" }), "credentials_ref", "absolute"},
			{"unclean file", svc(func(s *inventory.Service) { s.CredentialsRef = "file:/etc/../pw" }), "credentials_ref", "clean"},
			{"unknown scheme", svc(func(s *inventory.Service) { s.CredentialsRef = "vault:secret/x" }), "credentials_ref", "env:NAME"},
			{"duplicate name, other case", svc(func(s *inventory.Service) { s.Type = "redis"; s.Name = "REDIS" }), "name", "already has a service"},
			{"duplicate default name", svc(func(s *inventory.Service) { s.Type = "redis" }), "name", "already has a service"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := inv.CreateService(ctx, tc.s)
				wantField(t, err, tc.field, tc.msg)
				if n := rows(t, db, "services"); n != 1 {
					t.Errorf("%d services, want 1", n)
				}
			})
		}
	})
}

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func validContract(clientID string) inventory.Contract {
	return inventory.Contract{ClientID: clientID, Name: "FY2027", NodesContracted: 40,
		Services: []inventory.Offering{"ServerSage"}, RateMinor: 250000_00, Currency: "INR", StartDate: date(2026, 4, 1)}
}

func TestContractCRUD(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme, other := mustClient(t, inv, "Acme"), mustClient(t, inv, "Other")
		in := validContract(acme.ID)
		in.Services = []inventory.Offering{"dataplus", "ServerSage", "PATCHIT"}
		in.Currency = "inr"
		// A start given late in the day in another zone keeps its calendar date.
		in.StartDate = time.Date(2026, 4, 1, 23, 30, 0, 0, time.FixedZone("IST", 5*3600+1800))
		in.EndDate = date(2027, 3, 31)
		c, err := inv.CreateContract(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if got := names(c.Services, func(o inventory.Offering) string { return string(o) }); strings.Join(got, ",") != "ServerSage,PatchIt,DataPlus" {
			t.Errorf("services %v, want canonical names in catalogue order", got)
		}
		if c.Currency != "INR" || !c.StartDate.Equal(date(2026, 4, 1)) || !c.EndDate.Equal(date(2027, 3, 31)) {
			t.Errorf("created %+v", c)
		}
		got, err := inv.GetContract(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "GetContract", got, c)

		open := validContract(acme.ID)
		open.Name, open.StartDate, open.Services = "Support", date(2027, 1, 1), []inventory.Offering{"HardCore"}
		if _, err := inv.CreateContract(ctx, open); err != nil {
			t.Fatal(err)
		}
		if _, err := inv.CreateContract(ctx, validContract(other.ID)); err != nil { // same name, other client
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			f    inventory.ContractFilter
			want string
		}{
			{"client", inventory.ContractFilter{ClientID: acme.ID}, "FY2027,Support"},
			{"offering", inventory.ContractFilter{Service: "patchit"}, "FY2027"},
			{"active on a date in the first only", inventory.ContractFilter{ActiveOn: date(2026, 12, 31)}, "FY2027,FY2027"},
			{"active on the last day (inclusive)", inventory.ContractFilter{ClientID: acme.ID, ActiveOn: date(2027, 3, 31)}, "FY2027,Support"},
			{"active after the end", inventory.ContractFilter{ClientID: acme.ID, ActiveOn: date(2030, 1, 1)}, "Support"},
			{"before any start", inventory.ContractFilter{ActiveOn: date(2020, 1, 1)}, ""},
		} {
			l, err := inv.ListContracts(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(names(l, func(c inventory.Contract) string { return c.Name }), ","); got != tc.want {
				t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
			}
		}
		_, err = inv.ListContracts(ctx, inventory.ContractFilter{Service: "Nope"})
		wantField(t, err, "service", "unknown offering")

		c.EndDate, c.NodesContracted, c.ClientID = time.Time{}, 45, ""
		up, err := inv.UpdateContract(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if !up.EndDate.IsZero() || up.NodesContracted != 45 || up.ClientID != acme.ID {
			t.Errorf("updated %+v", up)
		}
		got, _ = inv.GetContract(ctx, c.ID)
		sameJSON(t, "GetContract after update", got, up)
		up.ClientID = other.ID
		_, err = inv.UpdateContract(ctx, up)
		wantField(t, err, "client_id", "cannot be moved")
		if err := inv.DeleteContract(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := inv.GetContract(ctx, c.ID); !errors.Is(err, inventory.ErrNotFound) {
			t.Errorf("get after delete: %v", err)
		}
	})
}

func TestContractValidation(t *testing.T) {
	each(t, func(t *testing.T, inv *inventory.Inventory, db *store.DB) {
		acme := mustClient(t, inv, "Acme")
		if _, err := inv.CreateContract(ctx, validContract(acme.ID)); err != nil {
			t.Fatal(err)
		}
		con := func(mod func(c *inventory.Contract)) inventory.Contract {
			c := validContract(acme.ID)
			c.Name = "Other"
			mod(&c)
			return c
		}
		tests := []struct {
			name       string
			c          inventory.Contract
			field, msg string
		}{
			{"no client", con(func(c *inventory.Contract) { c.ClientID = "" }), "client_id", "required"},
			{"unknown client", con(func(c *inventory.Contract) { c.ClientID = "x" }), "client_id", "no client"},
			{"negative nodes", con(func(c *inventory.Contract) { c.NodesContracted = -1 }), "nodes_contracted", "negative"},
			{"no services", con(func(c *inventory.Contract) { c.Services = nil }), "services", "at least one"},
			{"unknown offering", con(func(c *inventory.Contract) { c.Services = []inventory.Offering{"ServerSage", "CloudMagic"} }), "services[1]", `unknown offering "CloudMagic"`},
			{"repeated offering", con(func(c *inventory.Contract) { c.Services = []inventory.Offering{"PatchIt", "patchit"} }), "services[1]", "repeats services[0]"},
			{"negative rate", con(func(c *inventory.Contract) { c.RateMinor = -5 }), "rate_minor", "negative"},
			{"bad currency", con(func(c *inventory.Contract) { c.Currency = "RUPEES" }), "currency", "ISO 4217"},
			{"no start", con(func(c *inventory.Contract) { c.StartDate = time.Time{} }), "start_date", "required"},
			{"end before start", con(func(c *inventory.Contract) { c.EndDate = date(2026, 3, 31) }), "end_date", "before start_date (2026-04-01)"},
			{"duplicate name, other case", con(func(c *inventory.Contract) { c.Name = "fy2027" }), "name", "already has a contract"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := inv.CreateContract(ctx, tc.c)
				wantField(t, err, tc.field, tc.msg)
				if n := rows(t, db, "contracts"); n != 1 {
					t.Errorf("%d contracts, want 1", n)
				}
			})
		}
		// A one-day contract (end == start) is valid.
		one := con(func(c *inventory.Contract) { c.Name = "one day"; c.EndDate = c.StartDate })
		if _, err := inv.CreateContract(ctx, one); err != nil {
			t.Errorf("one-day contract: %v", err)
		}
	})
}
