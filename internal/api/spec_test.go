package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/changelog"
	"github.com/serversage/sage/internal/changes"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

// hubTag marks the operations the hub serves itself; this package's handler must not.
const hubTag = "hub"

func loadSpec(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(Spec)
	if err != nil {
		t.Fatalf("loading openapi.yaml: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, router
}

// authenticate checks that a request carries what a security scheme asks for, so that the
// document's security requirements are held to what the requests really send.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	switch in.SecuritySchemeName {
	case "bearerToken", "enrolmentToken":
		if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			return nil
		}
	case "basicToken":
		if _, _, ok := r.BasicAuth(); ok {
			return nil
		}
	case "sessionCookie":
		if _, err := r.Cookie(auth.SessionCookie); err == nil {
			return nil
		}
	case "csrfHeader":
		if r.Header.Get(auth.CSRFHeader) != "" {
			return nil
		}
	}
	return fmt.Errorf("no credentials for %s", in.SecuritySchemeName)
}

// specCase is one request of the sequence TestSpec runs. path and body may name ids saved by
// earlier cases as {name}.
type specCase struct {
	name        string
	method      string
	path        string
	body        string
	contentType string
	auth        authKind
	want        int
	save        string // keep the answer's "id" under this name
	// specRejects says the document itself refuses the request (a field it does not allow, a
	// value out of its range, missing credentials): the handler and the document must agree.
	// Requests refused for what only the database knows (duplicates, unknown ids) are valid.
	specRejects bool
	check       func(t *testing.T, r response)
	// before runs ahead of the request, for state no endpoint of this API writes.
	before func(t *testing.T, ta *testAPI, vars map[string]string)
}

func specCases() []specCase {
	const (
		hostBody = `{"client_id":"{client}","site_id":"{site}","name":"web-01","addresses":["10.0.0.5","web-01.acme.example"],"os":"linux","role":"web","tags":["prod","dc=pune"],"agent_url":"http://10.0.0.5:9500/metrics"}`
		contract = `"name":"Managed 2026","nodes_contracted":10,"services":["PatchIt","ServerSage"],"rate_minor":150000,"currency":"inr","start_date":"2026-01-01"`
	)
	big := `{"name":"big","notes":"` + strings.Repeat("x", maxBody) + `"}`
	return []specCase{
		{name: "the document", method: "GET", path: "/api/v1/openapi.yaml", want: 200},

		{name: "create client", method: "POST", path: "/api/v1/clients", body: `{"name":"Acme Corp","notes":"first\nclient"}`, want: 201, save: "client",
			check: wantFields(map[string]any{"slug": "acme-corp", "name": "Acme Corp"})},
		{name: "create second client", method: "POST", path: "/api/v1/clients", body: `{"name":"Globex","slug":"globex"}`, want: 201, save: "client2"},
		{name: "duplicate client name", method: "POST", path: "/api/v1/clients", body: `{"name":"ACME corp","slug":"acme-2"}`, want: 400, check: wantFieldError("name")},
		{name: "unknown field", method: "POST", path: "/api/v1/clients", body: `{"name":"X","colour":"red"}`, want: 400, specRejects: true, check: wantFieldError("colour")},
		{name: "read-only field", method: "POST", path: "/api/v1/clients", body: `{"name":"X","id":"abc"}`, want: 400, specRejects: true, check: wantFieldError("id")},
		{name: "wrong type", method: "POST", path: "/api/v1/clients", body: `{"name":7}`, want: 400, specRejects: true, check: wantFieldError("name")},
		{name: "not JSON", method: "POST", path: "/api/v1/clients", body: `name=X`, contentType: "text/plain", want: 415, specRejects: true},
		{name: "too large", method: "POST", path: "/api/v1/clients", body: big, want: 413, specRejects: true},
		{name: "no credentials", method: "POST", path: "/api/v1/clients", body: `{"name":"X"}`, auth: byNothing, want: 401, specRejects: true},
		{name: "session without CSRF token", method: "POST", path: "/api/v1/clients", body: `{"name":"X"}`, auth: bySessionOnly, want: 403, specRejects: true},
		{name: "session with CSRF token", method: "POST", path: "/api/v1/clients", body: `{"name":"Initech"}`, auth: bySession, want: 201},
		{name: "list clients by basic auth", method: "GET", path: "/api/v1/clients", auth: byBasic, want: 200, check: wantPage(3, nil)},
		{name: "list clients by session", method: "GET", path: "/api/v1/clients?limit=2", auth: bySessionOnly, want: 200, check: wantPage(2, ptr(2))},
		{name: "list clients filtered", method: "GET", path: "/api/v1/clients?name_contains=ACME&limit=1&offset=0", want: 200, check: wantPage(1, nil)},
		{name: "limit zero", method: "GET", path: "/api/v1/clients?limit=0", want: 400, specRejects: true, check: wantFieldError("limit")},
		{name: "limit too large", method: "GET", path: "/api/v1/clients?limit=1001", want: 400, specRejects: true, check: wantFieldError("limit")},
		{name: "negative offset", method: "GET", path: "/api/v1/clients?offset=-1", want: 400, specRejects: true, check: wantFieldError("offset")},
		{name: "unknown query parameter", method: "GET", path: "/api/v1/clients?colour=red", want: 400, check: wantFieldError("colour")},
		{name: "list without credentials", method: "GET", path: "/api/v1/clients", auth: byNothing, want: 401, specRejects: true},
		{name: "get client", method: "GET", path: "/api/v1/clients/{client}", want: 200, check: wantFields(map[string]any{"notes": "first\nclient"})},
		{name: "get unknown client", method: "GET", path: "/api/v1/clients/0190f5d2-8c4e-7b7a-9f10-3c2d1e0a4b5c", want: 404},
		{name: "rename client", method: "PUT", path: "/api/v1/clients/{client}", body: `{"name":"Acme Corporation","slug":"acme-corp"}`, want: 200,
			check: wantFields(map[string]any{"name": "Acme Corporation", "notes": ""})},
		{name: "replace client without slug", method: "PUT", path: "/api/v1/clients/{client}", body: `{"name":"Acme"}`, want: 400, specRejects: true, check: wantFieldError("slug")},
		{name: "replace unknown client", method: "PUT", path: "/api/v1/clients/nope", body: `{"name":"A","slug":"a"}`, want: 404},
		{name: "replace client with a taken slug", method: "PUT", path: "/api/v1/clients/{client}", body: `{"name":"Acme Corporation","slug":"globex"}`, want: 400, check: wantFieldError("slug")},

		{name: "create site", method: "POST", path: "/api/v1/sites", body: `{"client_id":"{client}","name":"Pune DC1","address":"Hinjewadi\nPune"}`, want: 201, save: "site"},
		{name: "site of unknown client", method: "POST", path: "/api/v1/sites", body: `{"client_id":"nope","name":"X"}`, want: 400, check: wantFieldError("client_id")},
		{name: "site without name", method: "POST", path: "/api/v1/sites", body: `{"client_id":"{client}"}`, want: 400, specRejects: true, check: wantFieldError("name")},
		{name: "list sites", method: "GET", path: "/api/v1/sites?client_id={client}&name_contains=pune", want: 200, check: wantPage(1, nil)},
		{name: "get site", method: "GET", path: "/api/v1/sites/{site}", want: 200},
		{name: "get unknown site", method: "GET", path: "/api/v1/sites/nope", want: 404},
		{name: "rename site", method: "PUT", path: "/api/v1/sites/{site}", body: `{"name":"Pune DC-1"}`, want: 200, check: wantFields(map[string]any{"name": "Pune DC-1", "address": ""})},
		{name: "move site", method: "PUT", path: "/api/v1/sites/{site}", body: `{"client_id":"{client2}","name":"X"}`, want: 400, check: wantFieldError("client_id")},
		{name: "replace unknown site", method: "PUT", path: "/api/v1/sites/nope", body: `{"name":"X"}`, want: 404},

		{name: "create host", method: "POST", path: "/api/v1/hosts", body: hostBody, want: 201, save: "host",
			check: wantFields(map[string]any{"status": "pending", "machine_id": nil, "enrolled_at": nil})},
		{name: "host without site", method: "POST", path: "/api/v1/hosts", body: `{"client_id":"{client}","name":"db-01","site_id":null,"status":"retired"}`, want: 201, save: "host2",
			check: wantFields(map[string]any{"site_id": nil, "tags": []any{}, "addresses": []any{}})},
		{name: "duplicate host name in client", method: "POST", path: "/api/v1/hosts", body: `{"client_id":"{client}","name":"WEB-01"}`, want: 400, check: wantFieldError("name")},
		{name: "same host name in another client", method: "POST", path: "/api/v1/hosts", body: `{"client_id":"{client2}","name":"web-01"}`, want: 201},
		{name: "bad address", method: "POST", path: "/api/v1/hosts", body: `{"client_id":"{client}","name":"db-02","addresses":["10.0.0.300"]}`, want: 400, check: wantFieldError("addresses[0]")},
		{name: "site of another client", method: "POST", path: "/api/v1/hosts", body: `{"client_id":"{client2}","name":"db-03","site_id":"{site}"}`, want: 400, check: wantFieldError("site_id")},
		{name: "host facts are read-only", method: "POST", path: "/api/v1/hosts", body: `{"client_id":"{client}","name":"x","facts":{}}`, want: 400, specRejects: true, check: wantFieldError("facts")},
		{name: "tags not a list", method: "POST", path: "/api/v1/hosts", body: `{"client_id":"{client}","name":"x","tags":"prod"}`, want: 400, specRejects: true, check: wantFieldError("tags")},
		{name: "trailing data", method: "POST", path: "/api/v1/hosts", body: `{"client_id":"{client}","name":"x"} {}`, want: 400}, // beyond what a schema says
		{name: "list hosts", method: "GET", path: "/api/v1/hosts", want: 200, check: wantPage(3, nil)},
		{name: "list hosts by every filter", method: "GET", path: "/api/v1/hosts?client_id={client}&site_id={site}&status=pending&role=web&tag=PROD&name_contains=WEB&limit=10&offset=0", want: 200, check: wantPage(1, nil)},
		{name: "list hosts by machine id", method: "GET", path: "/api/v1/hosts?machine_id=none", want: 200, check: wantPage(0, nil)},
		{name: "unknown status", method: "GET", path: "/api/v1/hosts?status=gone", want: 400, specRejects: true, check: wantFieldError("status")},
		{name: "get host", method: "GET", path: "/api/v1/hosts/{host}", want: 200, check: wantHealth},
		{name: "approve host", method: "PUT", path: "/api/v1/hosts/{host}", body: strings.Replace(hostBody, `"name"`, `"status":"active","name"`, 1), want: 200,
			check: wantFields(map[string]any{"status": "active", "role": "web"})},
		{name: "replace host without status", method: "PUT", path: "/api/v1/hosts/{host}", body: `{"name":"web-01"}`, want: 400, specRejects: true, check: wantFieldError("status")},
		{name: "move host", method: "PUT", path: "/api/v1/hosts/{host}", body: `{"client_id":"{client2}","name":"web-01","status":"active"}`, want: 400, check: wantFieldError("client_id")},
		{name: "replace unknown host", method: "PUT", path: "/api/v1/hosts/nope", body: `{"name":"x","status":"active"}`, want: 404},
		{name: "get unknown host", method: "GET", path: "/api/v1/hosts/nope", want: 404},
		{name: "get host with an impossible id", method: "GET", path: "/api/v1/hosts/%FF%00", want: 404},

		{name: "host changes", method: "GET", path: "/api/v1/hosts/{host}/changes", want: 200, before: seedChanges, check: wantPage(2, nil)},
		{name: "host changes filtered", method: "GET", path: "/api/v1/hosts/{host}/changes?kind=packages,files&q=NGINX&from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z&limit=10&offset=0", want: 200,
			check: wantChange(map[string]any{
				"host": "web-01", "client": "acme-corp", "journal": "j1", "seq": 1.0,
				"time": "2026-03-10T12:00:00Z", "kind": "packages", "object": "nginx:amd64", "action": "changed",
				"before": map[string]any{"version": "1.24"}, "after": map[string]any{"version": "1.26"}, "diff": "",
				"files": []any{"/usr/sbin/nginx"}, "tampered": false, "summary": "packages: nginx:amd64 upgraded from 1.24 to 1.26",
			})},
		{name: "host changes paged", method: "GET", path: "/api/v1/hosts/{host}/changes?limit=1", want: 200, check: wantPage(1, ptr(1))},
		{name: "host changes of an unknown kind", method: "GET", path: "/api/v1/hosts/{host}/changes?kind=packages,weather", want: 400, check: wantFieldError("kind")},
		{name: "host changes from a bad time", method: "GET", path: "/api/v1/hosts/{host}/changes?from=yesterday", want: 400, specRejects: true, check: wantFieldError("from")},
		{name: "host changes by an unknown parameter", method: "GET", path: "/api/v1/hosts/{host}/changes?host=x", want: 400, check: wantFieldError("host")},
		{name: "changes of an unknown host", method: "GET", path: "/api/v1/hosts/nope/changes", want: 404},
		{name: "client changes in a period", method: "GET", path: "/api/v1/clients/{client}/changes?from=2026-03-10T12:30:00Z&to=2026-03-11T00:00:00Z", want: 200, check: wantPage(1, nil)},
		{name: "client changes ending before they start", method: "GET", path: "/api/v1/clients/{client}/changes?from=2026-03-11T00:00:00Z&to=2026-03-10T00:00:00Z", want: 400, check: wantFieldError("to")},
		{name: "changes of an unknown client", method: "GET", path: "/api/v1/clients/nope/changes", want: 404},
		{name: "client changes without credentials", method: "GET", path: "/api/v1/clients/{client}/changes", auth: byNothing, want: 401, specRejects: true},

		{name: "create service", method: "POST", path: "/api/v1/services", body: `{"host_id":"{host}","type":"postgres","name":"orders-db","target":"10.0.0.5:5432","credentials_ref":"file:/etc/sage/orders.pass"}`, want: 201, save: "service",
			check: wantFields(map[string]any{"type": "postgres"})},
		{name: "unknown service type", method: "POST", path: "/api/v1/services", body: `{"host_id":"{host}","type":"cobol"}`, want: 400, specRejects: true, check: wantFieldError("type")},
		{name: "a secret for a credentials reference", method: "POST", path: "/api/v1/services", body: `{"host_id":"{host}","type":"redis","credentials_ref":"hunter2"}`, want: 400, check: wantFieldError("credentials_ref")},
		{name: "service on unknown host", method: "POST", path: "/api/v1/services", body: `{"host_id":"nope","type":"redis"}`, want: 400, check: wantFieldError("host_id")},
		{name: "list services of a host", method: "GET", path: "/api/v1/services?host_id={host}&type=postgres", want: 200, check: wantPage(1, nil)},
		{name: "list services of a client", method: "GET", path: "/api/v1/services?client_id={client}", want: 200, check: wantPage(1, nil)},
		{name: "unknown type filter", method: "GET", path: "/api/v1/services?type=cobol", want: 400, specRejects: true, check: wantFieldError("type")},
		{name: "get service", method: "GET", path: "/api/v1/services/{service}", want: 200},
		{name: "get unknown service", method: "GET", path: "/api/v1/services/nope", want: 404},
		{name: "replace service", method: "PUT", path: "/api/v1/services/{service}", body: `{"type":"postgres","name":"orders-db","target":"10.0.0.5:5433"}`, want: 200,
			check: wantFields(map[string]any{"target": "10.0.0.5:5433", "credentials_ref": ""})},
		{name: "replace service without name", method: "PUT", path: "/api/v1/services/{service}", body: `{"type":"postgres"}`, want: 400, specRejects: true, check: wantFieldError("name")},
		{name: "replace unknown service", method: "PUT", path: "/api/v1/services/nope", body: `{"type":"postgres","name":"x"}`, want: 404},

		{name: "create contract", method: "POST", path: "/api/v1/contracts", body: `{"client_id":"{client}",` + contract + `,"end_date":"2026-12-31"}`, want: 201, save: "contract",
			check: wantFields(map[string]any{"currency": "INR", "services": []any{"ServerSage", "PatchIt"}, "end_date": "2026-12-31", "start_date": "2026-01-01"})},
		{name: "contract with a bad date", method: "POST", path: "/api/v1/contracts", body: `{"client_id":"{client}","name":"x","services":["ServerSage"],"currency":"INR","start_date":"01/02/2026"}`, want: 400, specRejects: true, check: wantFieldError("start_date")},
		{name: "contract ending before it starts", method: "POST", path: "/api/v1/contracts", body: `{"client_id":"{client}",` + strings.Replace(contract, "Managed", "Other", 1) + `,"end_date":"2025-12-31"}`, want: 400, check: wantFieldError("end_date")},
		{name: "contract without offerings", method: "POST", path: "/api/v1/contracts", body: `{"client_id":"{client}","name":"x","services":[],"currency":"INR","start_date":"2026-01-01"}`, want: 400, specRejects: true, check: wantFieldError("services")},
		{name: "list contracts", method: "GET", path: "/api/v1/contracts?client_id={client}&service=PatchIt&active_on=2026-06-01", want: 200, check: wantPage(1, nil)},
		{name: "list contracts in force later", method: "GET", path: "/api/v1/contracts?active_on=2027-01-01", want: 200, check: wantPage(0, nil)},
		{name: "bad date filter", method: "GET", path: "/api/v1/contracts?active_on=tomorrow", want: 400, specRejects: true, check: wantFieldError("active_on")},
		{name: "get contract", method: "GET", path: "/api/v1/contracts/{contract}", want: 200},
		{name: "make contract open-ended", method: "PUT", path: "/api/v1/contracts/{contract}", body: `{` + contract + `,"end_date":null}`, want: 200, check: wantFields(map[string]any{"end_date": nil})},
		{name: "replace unknown contract", method: "PUT", path: "/api/v1/contracts/nope", body: `{` + contract + `}`, want: 404},
		{name: "delete contract", method: "DELETE", path: "/api/v1/contracts/{contract}", want: 204},
		{name: "delete contract again", method: "DELETE", path: "/api/v1/contracts/{contract}", want: 404},
		{name: "get deleted contract", method: "GET", path: "/api/v1/contracts/{contract}", want: 404},

		{name: "delete client with hosts", method: "DELETE", path: "/api/v1/clients/{client}", want: 409},
		{name: "delete site with hosts", method: "DELETE", path: "/api/v1/sites/{site}", want: 409},
		{name: "delete without CSRF token", method: "DELETE", path: "/api/v1/services/{service}", auth: bySessionOnly, want: 403, specRejects: true},
		{name: "delete service", method: "DELETE", path: "/api/v1/services/{service}", auth: bySession, want: 204},
		{name: "delete unknown service", method: "DELETE", path: "/api/v1/services/{service}", want: 404},
		{name: "delete host", method: "DELETE", path: "/api/v1/hosts/{host}", want: 204},
		{name: "delete other host", method: "DELETE", path: "/api/v1/hosts/{host2}", want: 204},
		{name: "delete unknown host", method: "DELETE", path: "/api/v1/hosts/{host}", want: 404},
		{name: "delete site", method: "DELETE", path: "/api/v1/sites/{site}", want: 204},
		{name: "delete unknown site", method: "DELETE", path: "/api/v1/sites/{site}", want: 404},
		{name: "delete client", method: "DELETE", path: "/api/v1/clients/{client}", want: 204},
		{name: "delete unknown client", method: "DELETE", path: "/api/v1/clients/{client}", want: 404},
	}
}

func ptr[T any](v T) *T { return &v }

// wantChange checks that the answer is a page of one change event with the fields of want and
// non-empty ids and receipt time.
func wantChange(want map[string]any) func(t *testing.T, r response) {
	return func(t *testing.T, r response) {
		t.Helper()
		items, _ := r.json(t)["items"].([]any)
		if len(items) != 1 {
			t.Fatalf("%d items, want 1: %s", len(items), r.body)
		}
		got, _ := items[0].(map[string]any)
		for k, v := range want {
			if !reflect.DeepEqual(got[k], v) {
				t.Errorf("%s = %#v, want %#v", k, got[k], v)
			}
		}
		for _, k := range []string{"id", "host_id", "client_id", "received_at"} {
			if v, _ := got[k].(string); v == "" {
				t.Errorf("%s is empty", k)
			}
		}
	}
}

// seedChanges stores two change events of {host}, as the hub does when its agent ships them.
func seedChanges(t *testing.T, ta *testAPI, vars map[string]string) {
	t.Helper()
	at := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	_, _, err := changelog.New(ta.db).Insert(context.Background(), vars["host"], "j1", []changes.Event{
		{Seq: 1, Time: at, Kind: "packages", Object: "nginx:amd64", Action: changes.Changed,
			Before: changes.Object{"version": "1.24"}, After: changes.Object{"version": "1.26"}, Files: []string{"/usr/sbin/nginx"}},
		{Seq: 2, Time: at.Add(time.Hour), Kind: "files", Object: "/usr/bin/ls", Action: changes.Changed, Tampered: true},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func wantFields(want map[string]any) func(t *testing.T, r response) {
	return func(t *testing.T, r response) {
		t.Helper()
		got := r.json(t)
		for k, v := range want {
			if !reflect.DeepEqual(got[k], v) {
				t.Errorf("%s = %#v, want %#v", k, got[k], v)
			}
		}
	}
}

func wantFieldError(field string) func(t *testing.T, r response) {
	return func(t *testing.T, r response) {
		t.Helper()
		var e struct {
			Fields []fieldError
		}
		_ = json.Unmarshal(r.body, &e)
		for _, f := range e.Fields {
			if f.Field == field && f.Message != "" {
				return
			}
		}
		t.Errorf("no field error on %q in %s", field, r.body)
	}
}

// wantPage checks a list answer's length and next_offset (nil: the last page).
func wantPage(n int, next *int) func(t *testing.T, r response) {
	return func(t *testing.T, r response) {
		t.Helper()
		var p struct {
			Items      []any
			NextOffset *int `json:"next_offset"`
		}
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Items) != n {
			t.Errorf("%d items, want %d: %s", len(p.Items), n, r.body)
		}
		if !reflect.DeepEqual(p.NextOffset, next) {
			t.Errorf("next_offset = %v, want %v", deref(p.NextOffset), deref(next))
		}
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// wantHealth checks web-01's health from fakeHealth: unknown figures are null, known ones numbers.
func wantHealth(t *testing.T, r response) {
	t.Helper()
	h, ok := r.json(t)["health"].(map[string]any)
	if !ok {
		t.Fatalf("no health in %s", r.body)
	}
	want := map[string]any{"state": "up", "up": true, "last_error": nil, "cpu": 0.25, "memory": nil, "disk": nil, "load1": 0.5, "cores": 8.0, "scrape_duration_seconds": 0.012}
	for k, v := range want {
		if !reflect.DeepEqual(h[k], v) {
			t.Errorf("health.%s = %#v, want %#v", k, h[k], v)
		}
	}
	if h["last_scrape"] == nil {
		t.Error("health.last_scrape is null")
	}
}

// TestSpec runs every case through the real handler behind the real authentication, over both
// stores, and holds each request and answer to openapi.yaml. It then checks coverage both ways:
// every operation of the document (but the hub's own) was exercised, and every route the
// handler serves is documented.
func TestSpec(t *testing.T) {
	doc, router := loadSpec(t)
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ta := newTestAPI(t, db, apiConfig{health: fakeHealth})
		vars := map[string]string{}
		seen := map[string]bool{} // "METHOD /path/template"
		for _, c := range specCases() {
			if !t.Run(c.name, func(t *testing.T) {
				op := runSpecCase(t, ta, router, vars, c)
				if op != "" {
					seen[op] = true
				}
			}) {
				t.FailNow() // later cases depend on earlier ones
			}
		}
		for path, item := range doc.Paths.Map() {
			for method, op := range item.Operations() {
				if slices.Contains(op.Tags, hubTag) {
					continue
				}
				if !seen[method+" "+path] {
					t.Errorf("%s %s (%s) is in openapi.yaml but no case exercises it", method, path, op.OperationID)
				}
			}
		}
	})
}

func runSpecCase(t *testing.T, ta *testAPI, router routers.Router, vars map[string]string, c specCase) string {
	expand := func(s string) string {
		for k, v := range vars {
			s = strings.ReplaceAll(s, "{"+k+"}", v)
		}
		return s
	}
	if c.before != nil {
		c.before(t, ta, vars)
	}
	path, body := expand(c.path), expand(c.body)

	// The document's verdict on the request.
	req := ta.request(t, c.method, path, body, c.auth, c.contentType)
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Fatalf("openapi.yaml has no route for %s %s: %v", c.method, path, err)
	}
	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: authenticate},
	}
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	switch {
	case c.specRejects && reqErr == nil:
		t.Errorf("openapi.yaml accepts the request; the handler is meant to refuse it")
	case !c.specRejects && reqErr != nil:
		t.Errorf("openapi.yaml refuses the request: %v", reqErr)
	}

	// The handler's answer, held to the document.
	r := ta.send(t, ta.request(t, c.method, path, body, c.auth, c.contentType))
	if r.code != c.want {
		t.Fatalf("%s %s: %d, want %d: %s", c.method, path, r.code, c.want, truncate(string(r.body), 2000))
	}
	in.Request = ta.request(t, c.method, path, body, c.auth, c.contentType) // with its body unread
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 r.code,
		Header:                 r.header,
		Body:                   io.NopCloser(bytes.NewReader(r.body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("the answer does not match openapi.yaml: %v\n%s", err, truncate(string(r.body), 2000))
	}
	if r.code >= 400 && r.code != http.StatusUnauthorized && r.code != http.StatusForbidden {
		// The authentication layer answers in plain text; everything of the API is JSON.
		if e := r.json(t); e["error"] == "" || e["error"] == nil {
			t.Errorf("error answer without an error message: %s", r.body)
		}
	}
	if r.code == http.StatusCreated {
		loc := r.header.Get("Location")
		if id, _ := r.json(t)["id"].(string); loc != path+"/"+id {
			t.Errorf("Location = %q, want %s/%s", loc, path, id)
		}
	}
	if c.save != "" {
		id, _ := r.json(t)["id"].(string)
		vars[c.save] = id
	}
	if c.check != nil {
		c.check(t, r)
	}
	return c.method + " " + route.Path
}

// TestRoutesDocumented checks the other direction of TestSpec's coverage: each route the handler
// serves is an operation of the document, and none of the hub's is served here.
func TestRoutesDocumented(t *testing.T) {
	doc, _ := loadSpec(t)
	s := newServer(Options{}, nil)
	var served []string
	for _, rt := range s.routes() {
		served = append(served, rt.method+" "+rt.pattern)
		item := doc.Paths.Find(rt.pattern)
		if item == nil || item.GetOperation(rt.method) == nil {
			t.Errorf("%s %s is served but not in openapi.yaml", rt.method, rt.pattern)
			continue
		}
		if slices.Contains(item.GetOperation(rt.method).Tags, hubTag) {
			t.Errorf("%s %s is served here but tagged %q (served by the hub)", rt.method, rt.pattern, hubTag)
		}
	}
	var hub []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if slices.Contains(op.Tags, hubTag) {
				hub = append(hub, method+" "+path)
				if slices.Contains(served, method+" "+path) {
					t.Errorf("%s %s is the hub's but this handler serves it", method, path)
				}
			}
		}
	}
	sort.Strings(hub)
	if want := []string{"GET /api/v1/peers", "POST /api/v1/changes", "POST /api/v1/enrol", "POST /api/v1/write"}; !slices.Equal(hub, want) {
		t.Errorf("operations tagged %q: %v, want %v", hubTag, hub, want)
	}
}

// TestSpecMatchesTypes checks what the document lists against the Go definitions it mirrors:
// the catalogues, the statuses, and the fields of every record and input.
func TestSpecMatchesTypes(t *testing.T) {
	doc, _ := loadSpec(t)
	schema := func(name string) *openapi3.Schema {
		ref, ok := doc.Components.Schemas[name]
		if !ok || ref.Value == nil {
			t.Fatalf("openapi.yaml has no schema %s", name)
		}
		return ref.Value
	}
	enum := func(name string) []string {
		var out []string
		for _, v := range schema(name).Enum {
			out = append(out, fmt.Sprint(v))
		}
		return out
	}
	toStrings := func(l any) []string {
		var out []string
		v := reflect.ValueOf(l)
		for i := range v.Len() {
			out = append(out, v.Index(i).String())
		}
		return out
	}
	for _, c := range []struct {
		schema string
		want   []string
	}{
		{"ServiceType", toStrings(inventory.ServiceTypes)},
		{"Offering", toStrings(inventory.Offerings)},
		{"HostStatus", toStrings(inventory.Statuses)},
	} {
		if got := enum(c.schema); !slices.Equal(got, c.want) {
			t.Errorf("%s enum = %v, want %v", c.schema, got, c.want)
		}
	}
	// Change kinds and actions are open (a newer agent's are stored): the spec names today's in
	// the schema's description instead of an enum.
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		schema string
		want   []string
	}{{"ChangeKind", changelog.Kinds()}, {"ChangeAction", changelog.Actions}} {
		_, block, _ := strings.Cut(string(raw), "\n    "+c.schema+":\n")
		if loc := regexp.MustCompile(`\n    [A-Za-z]`).FindStringIndex(block); loc != nil {
			block = block[:loc[0]] // up to the next schema
		}
		for _, w := range c.want {
			if !strings.Contains(block, w) {
				t.Errorf("%s's description does not name %q", c.schema, w)
			}
		}
	}

	for _, c := range []struct {
		schema string
		typ    any
	}{
		{"Client", clientView{}}, {"ClientCreate", clientInput{}}, {"ClientUpdate", clientInput{}},
		{"Site", siteView{}}, {"SiteCreate", siteInput{}}, {"SiteUpdate", siteInput{}},
		{"Host", hostView{}}, {"HostCreate", hostInput{}}, {"HostUpdate", hostInput{}},
		{"Facts", factsView{}}, {"Health", healthView{}},
		{"Service", serviceView{}}, {"ServiceCreate", serviceInput{}}, {"ServiceUpdate", serviceInput{}},
		{"Contract", contractView{}}, {"ContractCreate", contractInput{}}, {"ContractUpdate", contractInput{}},
		{"Error", apiError{}}, {"FieldError", fieldError{}},
		{"EnrolRequest", inventory.Enrolment{}}, {"EnrolFacts", inventory.Facts{}},
		{"ChangeEvent", changelog.Record{}}, {"ChangeEventIn", changes.Event{}},
	} {
		var props []string
		for p := range schema(c.schema).Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		if want := jsonFields(reflect.TypeOf(c.typ)); !slices.Equal(props, want) {
			t.Errorf("schema %s has properties %v; %T encodes %v", c.schema, props, c.typ, want)
		}
	}
	// The read-only lists name exactly what a record has and its input has not.
	for _, c := range []struct {
		view, input any
		readOnly    []string
	}{
		{clientView{}, clientInput{}, clientReadOnly}, {siteView{}, siteInput{}, siteReadOnly},
		{hostView{}, hostInput{}, hostReadOnly}, {serviceView{}, serviceInput{}, serviceReadOnly},
		{contractView{}, contractInput{}, contractReadOnly},
	} {
		in := jsonFields(reflect.TypeOf(c.input))
		var want []string
		for _, f := range jsonFields(reflect.TypeOf(c.view)) {
			if !slices.Contains(in, f) {
				want = append(want, f)
			}
		}
		got := slices.Sorted(slices.Values(c.readOnly))
		if !slices.Equal(got, want) {
			t.Errorf("read-only fields of %T: %v, want %v", c.view, got, want)
		}
	}
}

// jsonFields lists the JSON names of a struct's encoded fields, sorted.
func jsonFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported():
			continue
		case name == "":
			name = f.Name
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
