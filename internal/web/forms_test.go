package web

import (
	"net/url"
	"strings"
	"testing"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/inventory"
)

// idFrom returns the id at the end of a redirect to /clients/{id} or /hosts/{id}.
func idFrom(t *testing.T, r response, prefix string) string {
	t.Helper()
	if r.code != 303 || !strings.HasPrefix(r.location(), prefix) {
		t.Fatalf("want a redirect to %s..., got %d to %q\n%s", prefix, r.code, r.location(), excerpt(r.body))
	}
	return strings.TrimPrefix(r.location(), prefix)
}

func TestClientForms(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		// Create, with the flash shown once on the page redirected to.
		r := e.post("/clients/new", url.Values{"name": {"Acme Corp"}, "notes": {"Key account"}})
		id := idFrom(t, r, "/clients/")
		c, err := e.inv.GetClient(ctx, id)
		if err != nil || c.Name != "Acme Corp" || c.Slug != "acme-corp" || c.Notes != "Key account" {
			t.Fatalf("created %+v, %v", c, err)
		}
		flash := r.header.Get("Set-Cookie")
		if !strings.Contains(flash, flashCookie+"=") {
			t.Fatalf("no flash cookie: %q", flash)
		}
		page := e.do("GET", r.location(), nil, false, map[string][]string{"Cookie": {"sage_session=" + e.session + "; " + strings.Split(flash, ";")[0]}})
		must(t, "client page after create", page, 200, `class="flash"`, "Client Acme Corp created.")

		// Edit.
		r = e.post("/clients/"+id+"/edit", url.Values{"name": {"Acme Corporation"}, "slug": {"acme"}, "notes": {""}})
		if r.code != 303 || r.location() != "/clients/"+id {
			t.Fatalf("edit: %d to %q\n%s", r.code, r.location(), excerpt(r.body))
		}
		if c, _ = e.inv.GetClient(ctx, id); c.Name != "Acme Corporation" || c.Slug != "acme" || c.Notes != "" {
			t.Errorf("edited: %+v", c)
		}
		if e.changed.Load() != 1 {
			t.Errorf("HostsChanged called %d times after a slug change, want 1", e.changed.Load())
		}

		// Invalid input: 400, the input kept, the error beside its field, nothing written.
		e.client("Beta")
		before := e.count("clients")
		tests := []struct {
			name  string
			path  string
			form  url.Values
			field string // the form field whose error list must hold msg
			msg   string
			kept  string
		}{
			{"duplicate name", "/clients/new", url.Values{"name": {"beta"}, "slug": {"beta-2"}}, "name", "already exists", `value="beta"`},
			{"bad slug", "/clients/new", url.Values{"name": {"Gamma"}, "slug": {"Not A Slug"}}, "slug", "lower-case letters", `value="Not A Slug"`},
			{"no name", "/clients/new", url.Values{"notes": {"kept notes"}}, "name", "is required", "kept notes"},
			{"edit to a taken slug", "/clients/" + id + "/edit", url.Values{"name": {"Acme"}, "slug": {"beta"}}, "slug", "already exists", `value="beta"`},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := e.post(tc.path, tc.form)
				must(t, tc.name, r, 400, "Nothing was saved.", tc.kept, `id="e-`+tc.field+`"`)
				if errs := fieldErrorsIn(r.body, tc.field); !strings.Contains(errs, tc.msg) {
					t.Errorf("errors beside %s: %q, want %q", tc.field, errs, tc.msg)
				}
			})
		}
		if n := e.count("clients"); n != before {
			t.Errorf("refused forms wrote: %d clients, had %d", n, before)
		}
		if c2, _ := e.inv.GetClient(ctx, id); c2 != c {
			t.Errorf("a refused edit changed the client: %+v", c2)
		}

		// Delete: confirmation, then the delete; a client with hosts is protected and says why.
		must(t, "confirm", e.get("/clients/"+id+"/delete"), 200, "Delete the client", "Acme Corporation")
		h := e.host(inventory.Host{ClientID: id, Name: "web1"})
		must(t, "protected", e.get("/clients/"+id+"/delete"), 200, "cannot be deleted", "still has 1 host")
		r = e.post("/clients/"+id+"/delete", nil)
		must(t, "protected delete", r, 409, "cannot be deleted", "1 host")
		if _, err := e.inv.GetClient(ctx, id); err != nil {
			t.Fatalf("a protected client was deleted: %v", err)
		}
		if err := e.inv.DeleteHost(ctx, h.ID); err != nil {
			t.Fatal(err)
		}
		r = e.post("/clients/"+id+"/delete", nil)
		if r.code != 303 || r.location() != "/clients" {
			t.Fatalf("delete: %d to %q", r.code, r.location())
		}
		if _, err := e.inv.GetClient(ctx, id); err == nil {
			t.Error("the client is still there")
		}
		must(t, "delete of a deleted client", e.post("/clients/"+id+"/delete", nil), 404)
	})
}

// fieldErrorsIn returns the text of the error list beside a form field.
func fieldErrorsIn(body, field string) string {
	i := strings.Index(body, `<ul class="field-errors" id="e-`+field+`">`)
	if i < 0 {
		return ""
	}
	j := strings.Index(body[i:], "</ul>")
	return body[i : i+j]
}

func TestSiteForms(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		acme := e.client("Acme")
		r := e.post("/clients/"+acme.ID+"/sites/new", url.Values{"name": {"Pune DC"}, "address": {"Hinjewadi\nPune"}})
		if r.code != 303 || r.location() != "/clients/"+acme.ID {
			t.Fatalf("create: %d %q\n%s", r.code, r.location(), excerpt(r.body))
		}
		sites, _ := e.inv.ListSites(ctx, inventory.SiteFilter{ClientID: acme.ID})
		if len(sites) != 1 || sites[0].Address != "Hinjewadi\nPune" {
			t.Fatalf("sites %+v", sites)
		}
		s := sites[0]
		r = e.post("/clients/"+acme.ID+"/sites/new", url.Values{"name": {"PUNE dc"}})
		must(t, "duplicate site", r, 400, "already has a site")
		r = e.post("/sites/"+s.ID+"/edit", url.Values{"name": {""}, "address": {"kept"}})
		must(t, "edit without name", r, 400, "is required", ">kept</textarea>")
		r = e.post("/sites/"+s.ID+"/edit", url.Values{"name": {"Pune DC 1"}})
		if r.code != 303 {
			t.Fatalf("edit: %d", r.code)
		}
		if e.changed.Load() != 1 {
			t.Errorf("renaming a site: HostsChanged %d, want 1", e.changed.Load())
		}
		h := e.host(inventory.Host{ClientID: acme.ID, SiteID: s.ID, Name: "web1"})
		must(t, "protected", e.post("/sites/"+s.ID+"/delete", nil), 409, "still has 1 host")
		if err := e.inv.DeleteHost(ctx, h.ID); err != nil {
			t.Fatal(err)
		}
		if r := e.post("/sites/"+s.ID+"/delete", nil); r.code != 303 {
			t.Fatalf("delete: %d", r.code)
		}
		if n := e.count("sites"); n != 0 {
			t.Errorf("%d sites left", n)
		}
	})
}

func TestHostForms(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		acme, other := e.client("Acme"), e.client("Other")
		pune, elsewhere := e.site(acme.ID, "Pune"), e.site(other.ID, "Elsewhere")

		// The new-host form offers the client's sites only once a client is chosen, and every
		// client's, by client, before.
		must(t, "new, no client", e.get("/hosts/new"), 200, `<optgroup label="Acme">`, `<optgroup label="Other">`)
		r := e.get("/hosts/new?client=" + acme.ID)
		must(t, "new for acme", r, 200, "Pune")
		if strings.Contains(r.body, "Elsewhere") {
			t.Error("another client's site is offered")
		}

		form := url.Values{"client_id": {acme.ID}, "site_id": {pune.ID}, "name": {"db1.acme.example"}, "status": {"active"},
			"addresses": {"10.0.0.5\n\n2001:db8::5, db1.acme.example"}, "tags": {"Prod  dc=pune"}, "role": {"database"},
			"agent_url": {"http://10.0.0.5:10730/metrics"}, "os": {"Debian 12"}}
		id := idFrom(t, e.post("/hosts/new", form), "/hosts/")
		h, err := e.inv.GetHost(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(h.Addresses, ",") != "10.0.0.5,2001:db8::5,db1.acme.example" || strings.Join(h.Tags, ",") != "prod,dc=pune" ||
			h.SiteID != pune.ID || h.Status != inventory.StatusActive || h.Role != "database" {
			t.Errorf("created %+v", h)
		}
		if e.changed.Load() != 1 {
			t.Errorf("HostsChanged %d after create, want 1", e.changed.Load())
		}

		before := e.count("hosts")
		tests := []struct {
			name       string
			path       string
			form       url.Values
			field, msg string
		}{
			{"no client", "/hosts/new", url.Values{"name": {"x"}, "status": {"active"}}, "client_id", "is required"},
			{"duplicate", "/hosts/new", url.Values{"client_id": {acme.ID}, "name": {"DB1.acme.example"}, "status": {"active"}}, "name", "already has a host"},
			{"bad address, counted as the user sees the list", "/hosts/new", url.Values{"client_id": {acme.ID}, "name": {"x"}, "status": {"active"},
				"addresses": {"10.0.0.1\n\nbad!address"}}, "addresses", "item 2: not an IP address or host name"},
			{"bad tag", "/hosts/new", url.Values{"client_id": {acme.ID}, "name": {"x"}, "status": {"active"}, "tags": {"ok b@d"}}, "tags", "item 2:"},
			{"another client's site", "/hosts/new", url.Values{"client_id": {acme.ID}, "site_id": {elsewhere.ID}, "name": {"x"}, "status": {"active"}}, "site_id", "another client"},
			{"agent URL", "/hosts/" + id + "/edit", url.Values{"name": {"db1.acme.example"}, "status": {"active"}, "agent_url": {"ftp://x"}}, "agent_url", "http://"},
			{"status", "/hosts/" + id + "/edit", url.Values{"name": {"db1.acme.example"}, "status": {"lost"}}, "status", "must be one of"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := e.post(tc.path, tc.form)
				must(t, tc.name, r, 400, "Nothing was saved.")
				if errs := fieldErrorsIn(r.body, tc.field); !strings.Contains(errs, tc.msg) {
					t.Errorf("errors beside %s: %q, want %q\n%s", tc.field, errs, tc.msg, excerpt(r.body))
				}
			})
		}
		if n := e.count("hosts"); n != before {
			t.Errorf("refused forms wrote hosts: %d, had %d", n, before)
		}
		if h2, _ := e.inv.GetHost(ctx, id); !h2.UpdatedAt.Equal(h.UpdatedAt) {
			t.Error("a refused edit changed the host")
		}

		// An edit keeps what the form does not show: facts and machine id from enrolment.
		enrolled, _, err := e.inv.EnrolHost(ctx, acme.ID, inventory.Enrolment{MachineID: "m-1", Hostname: "app1",
			Facts: inventory.Facts{Kernel: "6.1", Cores: 4}, AgentURL: "http://10.0.0.9:10730/metrics"})
		if err != nil {
			t.Fatal(err)
		}
		r = e.post("/hosts/"+enrolled.ID+"/edit", url.Values{"name": {"app1"}, "status": {"pending"}, "role": {"app"},
			"agent_url": {enrolled.AgentURL}})
		if r.code != 303 {
			t.Fatalf("edit: %d\n%s", r.code, excerpt(r.body))
		}
		got, _ := e.inv.GetHost(ctx, enrolled.ID)
		if got.Role != "app" || got.MachineID != "m-1" || got.Facts.Kernel != "6.1" || got.Facts.Cores != 4 || got.ClientID != acme.ID {
			t.Errorf("after edit: %+v", got)
		}

		// Approve: pending -> active, HostsChanged, and the page says it.
		n := e.changed.Load()
		r = e.post("/hosts/"+enrolled.ID+"/approve", nil)
		if r.code != 303 || r.location() != "/hosts/"+enrolled.ID {
			t.Fatalf("approve: %d %q", r.code, r.location())
		}
		if got, _ := e.inv.GetHost(ctx, enrolled.ID); got.Status != inventory.StatusActive {
			t.Errorf("approved host is %s", got.Status)
		}
		if e.changed.Load() != n+1 {
			t.Error("approving did not call HostsChanged")
		}
		// Approving again changes nothing.
		if r := e.post("/hosts/"+enrolled.ID+"/approve", nil); r.code != 303 || e.changed.Load() != n+1 {
			t.Errorf("second approve: %d, HostsChanged %d", r.code, e.changed.Load())
		}

		// Delete, with its services.
		if _, err := e.inv.CreateService(ctx, inventory.Service{HostID: id, Type: "postgres", Target: "127.0.0.1:5432"}); err != nil {
			t.Fatal(err)
		}
		r = e.post("/hosts/"+id+"/delete", nil)
		if r.code != 303 || r.location() != "/clients/"+acme.ID {
			t.Fatalf("delete: %d %q", r.code, r.location())
		}
		if _, err := e.inv.GetHost(ctx, id); err == nil || e.count("services") != 0 {
			t.Errorf("after delete: host %v, %d services", err, e.count("services"))
		}
	})
}

func TestServiceForms(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		acme := e.client("Acme")
		h := e.host(inventory.Host{ClientID: acme.ID, Name: "db1"})
		r := e.post("/hosts/"+h.ID+"/services/new", url.Values{"type": {"postgres"}, "target": {"127.0.0.1:5432"}, "credentials_ref": {"env:PGPASSWORD"}})
		if r.code != 303 || r.location() != "/hosts/"+h.ID {
			t.Fatalf("create: %d %q\n%s", r.code, r.location(), excerpt(r.body))
		}
		l, _ := e.inv.ListServices(ctx, inventory.ServiceFilter{HostID: h.ID})
		if len(l) != 1 || l[0].Name != "postgres" || l[0].CredentialsRef != "env:PGPASSWORD" {
			t.Fatalf("services %+v", l)
		}
		for _, tc := range []struct {
			form       url.Values
			field, msg string
		}{
			{url.Values{"type": {"cobol"}}, "type", "unknown service type"},
			{url.Values{"type": {"redis"}, "target": {"no port"}}, "target", "host:port"},
			{url.Values{"type": {"redis"}, "credentials_ref": {"hunter2"}}, "credentials_ref", "never the secret itself"},
			{url.Values{"type": {"postgres"}}, "name", "already has a service"},
		} {
			r := e.post("/hosts/"+h.ID+"/services/new", tc.form)
			must(t, tc.msg, r, 400, "Nothing was saved.")
			if errs := fieldErrorsIn(r.body, tc.field); !strings.Contains(errs, tc.msg) {
				t.Errorf("errors beside %s: %q, want %q", tc.field, errs, tc.msg)
			}
		}
		if n := e.count("services"); n != 1 {
			t.Errorf("%d services, want 1", n)
		}
		r = e.post("/services/"+l[0].ID+"/edit", url.Values{"type": {"postgres"}, "name": {"main db"}, "target": {"127.0.0.1:5433"}})
		if r.code != 303 {
			t.Fatalf("edit: %d", r.code)
		}
		if s, _ := e.inv.GetService(ctx, l[0].ID); s.Name != "main db" || s.Target != "127.0.0.1:5433" {
			t.Errorf("edited %+v", s)
		}
		if r := e.post("/services/"+l[0].ID+"/delete", nil); r.code != 303 || e.count("services") != 0 {
			t.Errorf("delete: %d, %d left", r.code, e.count("services"))
		}
	})
}

func TestContractForms(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		acme := e.client("Acme")
		good := url.Values{"client_id": {acme.ID}, "name": {"Managed 2025"}, "nodes_contracted": {"12"},
			"services": {"PatchIt", "ServerSage"}, "rate": {"1,500.5"}, "currency": {"inr"}, "start_date": {"2025-01-01"}, "end_date": {"2025-12-31"}}
		r := e.post("/contracts/new", good)
		if r.code != 303 || r.location() != "/clients/"+acme.ID {
			t.Fatalf("create: %d %q\n%s", r.code, r.location(), excerpt(r.body))
		}
		l, _ := e.inv.ListContracts(ctx, inventory.ContractFilter{ClientID: acme.ID})
		if len(l) != 1 {
			t.Fatalf("contracts %+v", l)
		}
		k := l[0]
		if k.RateMinor != 150050 || k.Currency != "INR" || k.NodesContracted != 12 || len(k.Services) != 2 || k.Services[0] != "ServerSage" ||
			k.StartDate.Format("2006-01-02") != "2025-01-01" || k.EndDate.Format("2006-01-02") != "2025-12-31" {
			t.Errorf("created %+v", k)
		}
		with := func(kv ...string) url.Values {
			f := url.Values{}
			for k, v := range good {
				f[k] = v
			}
			for i := 0; i < len(kv); i += 2 {
				f.Set(kv[i], kv[i+1])
			}
			return f
		}
		tests := []struct {
			name       string
			form       url.Values
			field, msg string
		}{
			{"rate not a number", with("rate", "lots", "name", "Other"), "rate", "is not an amount"},
			{"too many decimals", with("rate", "10.005", "name", "Other"), "rate", "at most 2 decimals"},
			{"yen has no decimals", with("rate", "10.5", "currency", "JPY", "name", "Other"), "rate", "no decimals"},
			{"negative rate, from the inventory", with("rate", "-5", "name", "Other"), "rate", "must not be negative"},
			{"nodes not a number", with("nodes_contracted", "ten", "name", "Other"), "nodes_contracted", "whole number"},
			{"no offering", url.Values{"client_id": {acme.ID}, "name": {"Other"}, "currency": {"INR"}, "start_date": {"2025-01-01"}}, "services", "at least one offering"},
			{"end before start", with("end_date", "2024-01-01", "name", "Other"), "end_date", "is before start_date"},
			{"bad date, one error only", with("start_date", "01/02/2025", "name", "Other"), "start_date", "YYYY-MM-DD"},
			{"currency", with("currency", "rupees", "name", "Other"), "currency", "ISO 4217"},
			{"duplicate", with("name", "MANAGED 2025"), "name", "already has a contract"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := e.post("/contracts/new", tc.form)
				must(t, tc.name, r, 400, "Nothing was saved.")
				errs := fieldErrorsIn(r.body, tc.field)
				if !strings.Contains(errs, tc.msg) {
					t.Errorf("errors beside %s: %q, want %q", tc.field, errs, tc.msg)
				}
				if strings.Count(errs, "<li>") != 1 {
					t.Errorf("errors beside %s: %q, want exactly one", tc.field, errs)
				}
				// Check boxes and typed values come back as they were.
				for _, s := range tc.form["services"] {
					if !strings.Contains(r.body, `value="`+s+`" checked`) {
						t.Errorf("offering %s not kept", s)
					}
				}
			})
		}
		if n := e.count("contracts"); n != 1 {
			t.Errorf("refused forms wrote: %d contracts", n)
		}

		r = e.post("/contracts/"+k.ID+"/edit", with("rate", "2000", "services", "FloatBox", "end_date", ""))
		if r.code != 303 {
			t.Fatalf("edit: %d\n%s", r.code, excerpt(r.body))
		}
		got, _ := e.inv.GetContract(ctx, k.ID)
		if got.RateMinor != 200000 || len(got.Services) != 1 || got.Services[0] != "FloatBox" || !got.EndDate.IsZero() {
			t.Errorf("edited %+v", got)
		}
		if r := e.post("/contracts/"+k.ID+"/delete", nil); r.code != 303 || e.count("contracts") != 0 {
			t.Errorf("delete: %d, %d left", r.code, e.count("contracts"))
		}
	})
}

func TestSplitFieldPath(t *testing.T) {
	for _, tc := range []struct{ path, field, msg string }{
		{"name", "name", "m"},
		{"addresses[1]", "addresses", "item 2: m"},
		{"services[0]", "services", "item 1: m"},
		{"facts.cores", "facts", "cores: m"},
		{"facts.extra.k", "facts", "extra.k: m"},
		{"items[2].port", "items", "item 3, port: m"},
		{"odd[x]", "odd", "[x]: m"},
		{"", "", "m"},
	} {
		field, msg := splitFieldPath(tc.path, "m")
		if field != tc.field || msg != tc.msg {
			t.Errorf("splitFieldPath(%q) = %q, %q; want %q, %q", tc.path, field, msg, tc.field, tc.msg)
		}
	}
	f := newForm("name", "rate")
	f.addFieldErrors([]config.FieldError{{Field: "rate_minor", Msg: "must not be negative"}, {Field: "client_id", Msg: "is required"}},
		map[string]string{"rate_minor": "rate"})
	if strings.Join(f.Errors("rate"), "") != "must not be negative" || strings.Join(f.Other(), "") != "client_id: is required" {
		t.Errorf("renamed %v, other %v", f.Errors("rate"), f.Other())
	}
}

func TestParseList(t *testing.T) {
	for _, tc := range []struct {
		in     string
		spaces bool
		want   string
	}{
		{"", false, ""},
		{"a\nb\r\nc", false, "a|b|c"},
		{" a , b ,, c ", false, "a|b|c"},
		{"two words\nthree", false, "two words|three"},
		{"prod  dc=pune,x", true, "prod|dc=pune|x"},
	} {
		if got := strings.Join(parseList(tc.in, tc.spaces), "|"); got != tc.want {
			t.Errorf("parseList(%q, %v) = %q, want %q", tc.in, tc.spaces, got, tc.want)
		}
	}
}

func TestAmounts(t *testing.T) {
	for _, tc := range []struct {
		in     string
		digits int
		want   int64
		err    string
	}{
		{"1500", 2, 150000, ""},
		{"1,500.5", 2, 150050, ""},
		{"0.05", 2, 5, ""},
		{".5", 2, 50, ""},
		{"5.", 2, 500, ""},
		{"", 2, 0, ""},
		{"-3", 2, -300, ""},
		{"1.234", 3, 1234, ""},
		{"700", 0, 700, ""},
		{"7.5", 0, 0, "no decimals"},
		{"1.001", 2, 0, "at most 2 decimals"},
		{"1e3", 2, 0, "not an amount"},
		{".", 2, 0, "not an amount"},
		{"-", 2, 0, "not an amount"},
		{"1.2.3", 2, 0, "not an amount"},
		{"99999999999999999999", 2, 0, "too large"},
	} {
		got, err := parseAmount(tc.in, tc.digits)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseAmount(%q, %d) = %d, %v; want an error %q", tc.in, tc.digits, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseAmount(%q, %d) = %d, %v; want %d", tc.in, tc.digits, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		minor  int64
		digits int
		want   string
	}{{150050, 2, "1500.50"}, {5, 2, "0.05"}, {-5, 2, "-0.05"}, {0, 2, "0.00"}, {700, 0, "700"}, {1234, 3, "1.234"}} {
		if got := formatAmount(tc.minor, tc.digits); got != tc.want {
			t.Errorf("formatAmount(%d, %d) = %q, want %q", tc.minor, tc.digits, got, tc.want)
		}
	}
}

// FuzzAmount: parseAmount never panics, and what formatAmount writes reads back the same.
func FuzzAmount(f *testing.F) {
	for _, s := range []string{"1500", "1,500.50", "-0.05", ".5", "5.", "", "1e3", "99999999999999999999", "١٢"} {
		f.Add(s, 2)
	}
	f.Add("7", 0)
	f.Add("1.5", 4)
	f.Fuzz(func(t *testing.T, s string, digits int) {
		digits = ((digits % 5) + 5) % 5
		n, err := parseAmount(s, digits)
		if err != nil {
			return
		}
		back, err := parseAmount(formatAmount(n, digits), digits)
		if err != nil || back != n {
			t.Fatalf("parseAmount(%q) = %d; formatted %q reads back as %d, %v", s, n, formatAmount(n, digits), back, err)
		}
	})
}

// FuzzParseList: items are never empty nor carry the separators.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{"", "a\nb", " a , b ,, c ", "x\r\ny", "\u00a0a"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, spaces bool) {
		for _, it := range parseList(s, spaces) {
			if strings.TrimSpace(it) == "" || it != strings.TrimSpace(it) || strings.ContainsAny(it, ",\r\n") {
				t.Fatalf("parseList(%q) gave item %q", s, it)
			}
		}
	})
}
