package api

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

func decodeAs[T any](t testing.TB, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	return v
}

func fieldsOf(t testing.TB, r response) []string {
	t.Helper()
	var out []string
	for _, f := range decodeAs[apiError](t, r).Fields {
		out = append(out, f.Field)
	}
	return out
}

// TestInvalidWritesNothing: a refused create or replace reports every invalid field and leaves
// the inventory as it was.
func TestInvalidWritesNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ta := newTestAPI(t, db, apiConfig{})
		ctx := context.Background()
		client := ta.mustCreate(t, "clients", `{"name":"Acme"}`)
		host := ta.mustCreate(t, "hosts", `{"client_id":"`+client+`","name":"web-01","addresses":["10.0.0.5"],"status":"active"}`)
		before, err := ta.inv.GetHost(ctx, host)
		if err != nil {
			t.Fatal(err)
		}
		changed := ta.changed.Load()

		tests := []struct {
			name, method, path, body string
			fields                   []string
		}{
			{"duplicate and bad address", "POST", "hosts", `{"client_id":"` + client + `","name":"WEB-01","addresses":["10.0.0.300","ok.example"],"tags":["Bad Tag"]}`,
				[]string{"addresses[0]", "tags[0]"}}, // the duplicate shows once the rest is valid
			{"bad agent url", "POST", "hosts", `{"client_id":"` + client + `","name":"web-02","agent_url":"ftp://x"}`, []string{"agent_url"}},
			{"unknown service type", "POST", "services", `{"host_id":"` + host + `","type":"cobol"}`, []string{"type"}},
			{"contract dates and currency", "POST", "contracts", `{"client_id":"` + client + `","name":"c","services":["ServerSage"],"currency":"rupees","start_date":"2026-13-01","end_date":"soon"}`,
				[]string{"currency", "end_date", "start_date"}},
			{"replace host with a bad address and no status", "PUT", "hosts/" + host, `{"name":"web-01","addresses":["not an address"]}`,
				[]string{"addresses[0]", "status"}},
			{"replace host with a duplicate address", "PUT", "hosts/" + host, `{"name":"web-01","addresses":["10.0.0.5","10.0.0.5"],"status":"retired"}`,
				[]string{"addresses[1]"}},
			{"replace client without a slug", "PUT", "clients/" + client, `{"name":""}`, []string{"name", "slug"}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := ta.do(t, tc.method, Prefix+tc.path, tc.body)
				if r.code != http.StatusBadRequest {
					t.Fatalf("%d, want 400: %s", r.code, r.body)
				}
				got := fieldsOf(t, r)
				slices.Sort(got)
				if !slices.Equal(got, tc.fields) {
					t.Errorf("fields %v, want %v: %s", got, tc.fields, r.body)
				}
			})
		}
		hosts, err := ta.inv.ListHosts(ctx, inventory.HostFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(hosts) != 1 || !hostsEqual(hosts[0], before) {
			t.Errorf("hosts after refused writes: %+v, want only %+v", hosts, before)
		}
		for _, kind := range []string{"services", "contracts"} {
			if r := ta.do(t, "GET", Prefix+kind, ""); len(decodeAs[page[map[string]any]](t, r).Items) != 0 {
				t.Errorf("%s written by a refused request: %s", kind, r.body)
			}
		}
		if c, err := ta.inv.GetClient(ctx, client); err != nil || c.Name != "Acme" || c.Slug != "acme" {
			t.Errorf("client after a refused replace: %+v %v", c, err)
		}
		if n := ta.changed.Load(); n != changed {
			t.Errorf("HostsChanged called %d times by refused writes", n-changed)
		}
	})
}

func hostsEqual(a, b inventory.Host) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// TestDecoding: the body must be one JSON object of known, writable fields of the right types.
func TestDecoding(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ta := newTestAPI(t, db, apiConfig{})
		client := ta.mustCreate(t, "clients", `{"name":"Acme"}`)
		tests := []struct {
			name, contentType, body string
			code                    int
			field, message          string // the field error wanted, if any
		}{
			{"valid with a charset", "application/json; charset=utf-8", `{"client_id":"` + client + `","name":"a"}`, 201, "", ""},
			{"unknown field", "", `{"client_id":"` + client + `","name":"b","colour":"red"}`, 400, "colour", "is not a field of this record"},
			{"read-only field", "", `{"client_id":"` + client + `","name":"b","machine_id":"m"}`, 400, "machine_id", "is read-only; leave it out"},
			{"health is read-only", "", `{"client_id":"` + client + `","name":"b","health":null}`, 400, "health", "is read-only; leave it out"},
			{"wrong type", "", `{"client_id":"` + client + `","name":["b"]}`, 400, "name", "must be a string"},
			{"wrong item type", "", `{"client_id":"` + client + `","name":"b","tags":[1]}`, 400, "tags", "must be a string"},
			{"empty body", "application/json", ``, 400, "", ""},
			{"null", "", `null`, 400, "", ""},
			{"a list", "", `[{"name":"b"}]`, 400, "", ""},
			{"truncated", "", `{"client_id":"` + client + `","name":"b"`, 400, "", ""},
			{"two objects", "", `{"client_id":"` + client + `","name":"b"}{}`, 400, "", ""},
			{"garbage after", "", `{"client_id":"` + client + `","name":"b"} x`, 400, "", ""},
			{"no content type", "-", `{"client_id":"` + client + `","name":"b"}`, 415, "", ""},
			{"form", "application/x-www-form-urlencoded", `name=b`, 415, "", ""},
			{"JSON-like type", "application/jsonx", `{"client_id":"` + client + `","name":"b"}`, 415, "", ""},
			{"too large", "", `{"client_id":"` + client + `","name":"b","role":"` + strings.Repeat("r", maxBody) + `"}`, 413, "", ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				req := ta.request(t, "POST", Prefix+"hosts", tc.body, byBearer, tc.contentType)
				if tc.contentType == "-" {
					req.Header.Del("Content-Type")
				}
				r := ta.send(t, req)
				if r.code != tc.code {
					t.Fatalf("%d, want %d: %s", r.code, tc.code, truncate(string(r.body), 500))
				}
				if r.header.Get("Content-Type") != "application/json" {
					t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
				}
				if tc.code < 400 {
					return
				}
				e := decodeAs[apiError](t, r)
				if e.Error == "" {
					t.Errorf("no error message: %s", r.body)
				}
				if tc.field != "" && !slices.Contains(e.Fields, fieldError{Field: tc.field, Message: tc.message}) {
					t.Errorf("fields %+v, want %s: %s", e.Fields, tc.field, tc.message)
				}
			})
		}
		// Only the valid one was written.
		hosts, err := ta.inv.ListHosts(context.Background(), inventory.HostFilter{})
		if err != nil || len(hosts) != 1 || hosts[0].Name != "a" {
			t.Errorf("hosts %+v, %v; want only a", hosts, err)
		}
	})
}

// TestNotFound: unknown records, paths and methods are answered in JSON.
func TestNotFound(t *testing.T) {
	ta := newTestAPI(t, storetest.SQLite(t), apiConfig{})
	tests := []struct {
		method, path string
		code         int
		allow        string
	}{
		{"GET", "/api/v1/nothing", 404, ""},
		{"GET", "/api/v1/", 404, ""},
		{"GET", "/api/v1/hosts/", 404, ""},
		{"GET", "/api/v1/hosts/a/b", 404, ""},
		{"POST", "/api/v1/enrol", 404, ""}, // the hub's, not this handler's
		{"PATCH", "/api/v1/hosts/x", 405, "DELETE, GET, HEAD, PUT"},
		{"DELETE", "/api/v1/hosts", 405, "GET, HEAD, POST"},
		{"POST", "/api/v1/openapi.yaml", 405, "GET, HEAD"},
		{"GET", "/api/v1/clients/" + strings.Repeat("x", 65), 404, ""},
		{"DELETE", "/api/v1/clients/%00", 404, ""},
		{"PUT", "/api/v1/sites/%C3%28", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			body := ""
			if tc.method == "PUT" {
				body = `{"name":"x"}`
			}
			r := ta.do(t, tc.method, tc.path, body)
			if r.code != tc.code {
				t.Fatalf("%d, want %d: %s", r.code, tc.code, r.body)
			}
			if e := decodeAs[apiError](t, r); e.Error == "" {
				t.Errorf("no error message: %s", r.body)
			}
			if got := r.header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
}

// TestConflict: a protected delete is refused with what is left, and deletes nothing.
func TestConflict(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ta := newTestAPI(t, db, apiConfig{})
		client := ta.mustCreate(t, "clients", `{"name":"Acme"}`)
		site := ta.mustCreate(t, "sites", `{"client_id":"`+client+`","name":"DC1"}`)
		ta.mustCreate(t, "hosts", `{"client_id":"`+client+`","name":"a","site_id":"`+site+`"}`)
		ta.mustCreate(t, "hosts", `{"client_id":"`+client+`","name":"b","site_id":"`+site+`"}`)
		for path, want := range map[string]string{
			"clients/" + client: `client "Acme" still has 2 hosts and 1 site`,
			"sites/" + site:     `site "DC1" still has 2 hosts`,
		} {
			r := ta.do(t, "DELETE", Prefix+path, "")
			if r.code != http.StatusConflict || !strings.Contains(decodeAs[apiError](t, r).Error, want) {
				t.Errorf("DELETE %s: %d %s, want 409 saying %s", path, r.code, r.body, want)
			}
			if r := ta.do(t, "GET", Prefix+path, ""); r.code != http.StatusOK {
				t.Errorf("GET %s after a refused delete: %d", path, r.code)
			}
		}
	})
}

// TestPaging walks 250 hosts 100 at a time by next_offset: every host once, in name order.
func TestPaging(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ta := newTestAPI(t, db, apiConfig{health: fakeHealth})
		ctx := context.Background()
		c, err := ta.inv.CreateClient(ctx, inventory.Client{Name: "Acme"})
		if err != nil {
			t.Fatal(err)
		}
		const n = 250
		var want []string
		for i := range n {
			name := fmt.Sprintf("host-%03d", (i*7)%n) // inserted out of order
			if _, err := ta.inv.CreateHost(ctx, inventory.Host{ClientID: c.ID, Name: name}); err != nil {
				t.Fatal(err)
			}
			want = append(want, name)
		}
		slices.Sort(want)

		var got []string
		var offsets []int
		next := ptr(0)
		for next != nil {
			offsets = append(offsets, *next)
			r := ta.do(t, "GET", fmt.Sprintf("%shosts?limit=100&offset=%d", Prefix, *next), "")
			if r.code != http.StatusOK {
				t.Fatalf("%d %s", r.code, r.body)
			}
			p := decodeAs[page[hostView]](t, r)
			if p.Limit != 100 || p.Offset != *next {
				t.Errorf("limit %d offset %d, want 100 %d", p.Limit, p.Offset, *next)
			}
			for _, h := range p.Items {
				got = append(got, h.Name)
				if h.Health == nil || h.Health.State != "unmonitored" {
					t.Errorf("%s: health %+v", h.Name, h.Health)
				}
			}
			next = p.NextOffset
			if len(offsets) > 10 {
				t.Fatal("paging does not end")
			}
		}
		if !slices.Equal(offsets, []int{0, 100, 200}) {
			t.Errorf("offsets %v", offsets)
		}
		if !slices.Equal(got, want) {
			t.Errorf("hosts by paging: %d, want %d in name order", len(got), len(want))
		}

		for _, tc := range []struct {
			query string
			items int
			next  *int
		}{
			{"", 100, ptr(100)}, // the default limit
			{"limit=1000", n, nil},
			{"limit=250", n, nil}, // exactly all: no next page
			{"limit=249", 249, ptr(249)},
			{"offset=250", 0, nil},
			{"offset=2147483647", 0, nil},
			{"limit=&offset=", 100, ptr(100)}, // empty is absent
		} {
			r := ta.do(t, "GET", Prefix+"hosts?"+tc.query, "")
			p := decodeAs[page[hostView]](t, r)
			if r.code != 200 || len(p.Items) != tc.items || deref(p.NextOffset) != deref(tc.next) {
				t.Errorf("?%s: %d, %d items, next %v; want %d items, next %v", tc.query, r.code, len(p.Items), deref(p.NextOffset), tc.items, deref(tc.next))
			}
		}
	})
}

// TestHealth: without a tracker hosts have no health; with one, unknown figures are null and
// never NaN, which JSON cannot carry.
func TestHealth(t *testing.T) {
	db := storetest.SQLite(t)
	plain := newTestAPI(t, db, apiConfig{})
	client := plain.mustCreate(t, "clients", `{"name":"Acme"}`)
	host := plain.mustCreate(t, "hosts", `{"client_id":"`+client+`","name":"web-01"}`)
	if m := plain.do(t, "GET", Prefix+"hosts/"+host, "").json(t); m["health"] != nil {
		t.Errorf("health without a tracker: %v", m["health"])
	}

	tracked := newTestAPI(t, db, apiConfig{health: fakeHealth})
	r := tracked.do(t, "GET", Prefix+"hosts/"+host, "")
	wantHealth(t, r)
	if strings.Contains(string(r.body), "NaN") || strings.Contains(string(r.body), "Inf") {
		t.Errorf("non-finite number in %s", r.body)
	}
	other := tracked.mustCreate(t, "hosts", `{"client_id":"`+client+`","name":"db-01"}`)
	h := tracked.do(t, "GET", Prefix+"hosts/"+other, "").json(t)["health"].(map[string]any)
	for _, k := range []string{"cpu", "memory", "disk", "load1", "cores", "last_scrape", "last_error", "scrape_duration_seconds"} {
		if v, ok := h[k]; !ok || v != nil {
			t.Errorf("health.%s = %v, want null", k, v)
		}
	}
	if h["state"] != "unmonitored" || h["up"] != false {
		t.Errorf("health %v", h)
	}
}

// TestSlugsFollowClients: health is keyed by the client's slug, which the API caches; a slug
// changed through the API shows at once.
func TestSlugsFollowClients(t *testing.T) {
	var keys []string
	health := func(k hosthealth.Key) hosthealth.Health {
		keys = append(keys, k.Client+"/"+k.Host)
		return fakeHealth(k)
	}
	ta := newTestAPI(t, storetest.SQLite(t), apiConfig{health: health})
	client := ta.mustCreate(t, "clients", `{"name":"Acme"}`)
	host := ta.mustCreate(t, "hosts", `{"client_id":"`+client+`","name":"web-01"}`)
	ta.do(t, "GET", Prefix+"hosts/"+host, "")
	if r := ta.do(t, "PUT", Prefix+"clients/"+client, `{"name":"Acme","slug":"acme-corp"}`); r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	ta.do(t, "GET", Prefix+"hosts?limit=5", "")
	if want := []string{"acme/web-01", "acme/web-01", "acme-corp/web-01"}; !slices.Equal(keys, want) {
		t.Errorf("health keys %v, want %v", keys, want)
	}
}

// TestHostsChanged: writes that change scrape targets or their labels tell the hub; reads and
// other writes do not.
func TestHostsChanged(t *testing.T) {
	ta := newTestAPI(t, storetest.SQLite(t), apiConfig{})
	client := ta.mustCreate(t, "clients", `{"name":"Acme"}`)
	site := ta.mustCreate(t, "sites", `{"client_id":"`+client+`","name":"DC1"}`)
	var host string
	steps := []struct {
		name   string
		do     func()
		change bool
	}{
		{"create host", func() { host = ta.mustCreate(t, "hosts", `{"client_id":"`+client+`","name":"a"}`) }, true},
		{"get host", func() { ta.do(t, "GET", Prefix+"hosts/"+host, "") }, false},
		{"list hosts", func() { ta.do(t, "GET", Prefix+"hosts", "") }, false},
		{"approve host", func() { ta.do(t, "PUT", Prefix+"hosts/"+host, `{"name":"a","status":"active"}`) }, true},
		{"rename client", func() { ta.do(t, "PUT", Prefix+"clients/"+client, `{"name":"Acme","slug":"acme-2"}`) }, true},
		{"rename site", func() { ta.do(t, "PUT", Prefix+"sites/"+site, `{"name":"DC2"}`) }, true},
		{"add service", func() { ta.mustCreate(t, "services", `{"host_id":"`+host+`","type":"linux"}`) }, false},
		{"delete host", func() { ta.do(t, "DELETE", Prefix+"hosts/"+host, "") }, true},
		{"delete unknown host", func() { ta.do(t, "DELETE", Prefix+"hosts/"+host, "") }, false},
	}
	for _, s := range steps {
		before := ta.changed.Load()
		s.do()
		if got := ta.changed.Load() > before; got != s.change {
			t.Errorf("%s: HostsChanged called: %v, want %v", s.name, got, s.change)
		}
	}
}

// TestReplaceKeepsAgentFields: approving an enrolled host through PUT keeps what its agent
// reported, and case-insensitive catalogue names are stored canonically.
func TestReplaceKeepsAgentFields(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ta := newTestAPI(t, db, apiConfig{})
		ctx := context.Background()
		client := ta.mustCreate(t, "clients", `{"name":"Acme"}`)
		h, _, err := ta.inv.EnrolHost(ctx, client, inventory.Enrolment{
			MachineID: "0123456789abcdef", Hostname: "web-01", Addresses: []string{"10.0.0.5"},
			Facts: inventory.Facts{Kernel: "6.1.0", Cores: 8, Extra: map[string]string{"virt": "kvm"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		r := ta.do(t, "PUT", Prefix+"hosts/"+h.ID, `{"name":"web-01","addresses":["10.0.0.5"],"status":"active","tags":["Prod"]}`)
		if r.code != 200 {
			t.Fatalf("%d %s", r.code, r.body)
		}
		v := decodeAs[hostView](t, r)
		if v.Status != "active" || deref2(v.MachineID) != "0123456789abcdef" || v.Facts.Kernel != "6.1.0" ||
			v.Facts.Extra["virt"] != "kvm" || v.EnrolledAt == nil || !slices.Equal(v.Tags, []string{"prod"}) {
			t.Errorf("after approval: %s", r.body)
		}

		sv := decodeAs[serviceView](t, ta.do(t, "POST", Prefix+"services", `{"host_id":"`+h.ID+`","type":"PostgreS"}`))
		if sv.Type != "postgres" || sv.Name != "postgres" {
			t.Errorf("service %+v", sv)
		}
		r = ta.do(t, "POST", Prefix+"contracts", `{"client_id":"`+client+`","name":"c","services":["patchit","SERVERSAGE"],"currency":"eur","start_date":"2026-01-01"}`)
		if c := decodeAs[contractView](t, r); !slices.Equal(c.Services, []string{"ServerSage", "PatchIt"}) || c.Currency != "EUR" || c.EndDate != nil {
			t.Errorf("contract %s", r.body)
		}
		if p := decodeAs[page[contractView]](t, ta.do(t, "GET", Prefix+"contracts?service=patchit", "")); len(p.Items) != 1 {
			t.Errorf("contracts by lower-case offering: %+v", p)
		}
		if p := decodeAs[page[serviceView]](t, ta.do(t, "GET", Prefix+"services?type=POSTGRES", "")); len(p.Items) != 1 {
			t.Errorf("services by upper-case type: %+v", p)
		}
	})
}

func deref2(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// TestQueryValidation: only a list's own filters, once each, with printable values; values
// PostgreSQL would refuse as a statement error are a 400 here, not a 500 there.
func TestQueryValidation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ta := newTestAPI(t, db, apiConfig{})
		tests := []struct {
			path  string
			code  int
			field string
		}{
			{"hosts?client_id=%00", 400, "client_id"},
			{"hosts?name_contains=%FF", 400, "name_contains"},
			{"hosts?tag=a&tag=b", 400, "tag"},
			{"hosts?host_id=x", 400, "host_id"},    // a filter of services, not hosts
			{"clients?%FF=1", 400, `"\xff"`},       // named, but quoted
			{"sites?name_contains=%25_!", 200, ""}, // LIKE's specials are literal
			{"hosts?name_contains=" + strings.Repeat("a", maxQueryValue+1), 400, "name_contains"},
			{"hosts?limit=1e3", 400, "limit"},
			{"hosts?offset=2147483648", 400, "offset"},
			{"hosts?a=%zz", 400, "query"},
		}
		for _, tc := range tests {
			r := ta.do(t, "GET", Prefix+tc.path, "")
			if r.code != tc.code {
				t.Errorf("%s: %d, want %d: %s", tc.path, r.code, tc.code, r.body)
				continue
			}
			if tc.field != "" && !slices.Contains(fieldsOf(t, r), tc.field) {
				t.Errorf("%s: fields %v, want %s", tc.path, fieldsOf(t, r), tc.field)
			}
		}
	})
}

// TestFailMapping: how errors from below become status codes, and that a 500 says nothing of
// its cause.
func TestFailMapping(t *testing.T) {
	s := newServer(Options{Logger: storetest.Logger(t)}, nil)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		err  error
		ctx  context.Context
		code int
	}{
		{"validation", config.Invalid(config.Errorf("name", "is required")), context.Background(), 400},
		{"not found", fmt.Errorf("host %q: %w", "x", inventory.ErrNotFound), context.Background(), 404},
		{"in use", fmt.Errorf("client still has 1 host: %w", inventory.ErrInUse), context.Background(), 409},
		{"bad connection", fmt.Errorf("listing hosts: %w", driver.ErrBadConn), context.Background(), 503},
		{"caller gone", fmt.Errorf("listing hosts: %w", context.Canceled), canceled, 503},
		{"anything else", errors.New(`pq: relation "hosts" does not exist at /secret/path`), context.Background(), 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			s.fail(w, httptest.NewRequestWithContext(tc.ctx, "GET", "/api/v1/hosts", nil), "host", tc.err)
			if w.Code != tc.code {
				t.Errorf("%d, want %d", w.Code, tc.code)
			}
			if tc.code == 503 && w.Header().Get("Retry-After") == "" && tc.ctx == context.Background() {
				t.Error("503 without Retry-After")
			}
			if strings.Contains(w.Body.String(), "secret") || strings.Contains(w.Body.String(), "relation") {
				t.Errorf("internals in the answer: %s", w.Body)
			}
		})
	}
}

// TestStoreUnavailable takes a real PostgreSQL database away under the handler: the answer is
// 503 with Retry-After, and the API recovers when the database is back.
func TestStoreUnavailable(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	db, err := store.Open(ctx, dsn, storetest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	server := os.Getenv("SAGE_TEST_POSTGRES")
	if server == "" {
		server = storetest.DefaultPostgres
	}
	admin, err := sql.Open("pgx", server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	exec := func(q string) {
		t.Helper()
		if _, err := admin.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	h := newServer(Options{Inventory: inventory.New(db), Logger: storetest.Logger(t)}, nil)
	get := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/hosts", nil))
		return w
	}
	if w := get(); w.Code != 200 {
		t.Fatalf("before: %d %s", w.Code, w.Body)
	}
	exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS false")
	t.Cleanup(func() { _, _ = admin.ExecContext(ctx, "ALTER DATABASE "+name+" ALLOW_CONNECTIONS true") })
	exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name + "'")
	w := get()
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("store away: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if e := (apiError{}); json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == "" {
		t.Errorf("not a JSON error: %s", w.Body)
	}
	exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS true")
	deadline := time.Now().Add(10 * time.Second)
	for w := get(); w.Code != 200; w = get() {
		if time.Now().After(deadline) {
			t.Fatalf("store back: %d %s", w.Code, w.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSpecServed: the document is served as YAML, byte for byte the embedded one.
func TestSpecServed(t *testing.T) {
	ta := newTestAPI(t, storetest.SQLite(t), apiConfig{})
	r := ta.do(t, "GET", Prefix+"openapi.yaml", "")
	if r.code != 200 || r.header.Get("Content-Type") != "application/yaml" || string(r.body) != string(Spec) {
		t.Errorf("%d %q, %d bytes", r.code, r.header.Get("Content-Type"), len(r.body))
	}
	if r := ta.send(t, ta.request(t, "GET", Prefix+"openapi.yaml", "", byNothing, "")); r.code != http.StatusUnauthorized {
		t.Errorf("without credentials: %d", r.code)
	}
}
