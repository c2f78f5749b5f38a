package web

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

func TestLogin(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.user("ops", auth.RoleEngineer)
		login := func(user, password, next string) response {
			f := url.Values{"username": {user}, "password": {password}}
			if next != "" {
				f.Set("next", next)
			}
			return e.do("POST", "/login", strings.NewReader(f.Encode()), true, nil)
		}

		// Unauthenticated page views go to the login page with the page to come back to.
		r := e.do("GET", "/hosts?client=x", nil, true, nil)
		if r.code != http.StatusSeeOther || r.location() != "/login?next="+url.QueryEscape("/hosts?client=x") {
			t.Fatalf("anonymous GET /hosts: %d to %q", r.code, r.location())
		}
		must(t, "login page", e.do("GET", "/login?next=/hosts", nil, true, nil), 200, `name="username"`, `name="next" value="/hosts"`)

		tests := []struct {
			name, user, password, next string
			code                       int
			to                         string // redirect target on success
			says                       string // message on failure
		}{
			{"right password, local next", "ops", testPassword, "/hosts?client=x", 303, "/hosts?client=x", ""},
			{"name ignores case", "OPS", testPassword, "", 303, "/", ""},
			{"next to another site is ignored", "ops", testPassword, "//evil.example/x", 303, "/", ""},
			{"next with a scheme is ignored", "ops", testPassword, "https://evil.example/", 303, "/", ""},
			{"next back to login is ignored", "ops", testPassword, "/login", 303, "/", ""},
			{"wrong password", "ops", "not the password", "", 401, "", "Wrong username or password."},
			// An unknown user gets the same answer (the auth package's tests check the timing); it
			// is left out here as it costs a bcrypt comparison at full cost.
			{"empty", "", "", "", 400, "", "Enter your username and password."},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := login(tc.user, tc.password, tc.next)
				if r.code != tc.code {
					t.Fatalf("status %d, want %d\n%s", r.code, tc.code, excerpt(r.body))
				}
				if tc.code == 303 {
					if r.location() != tc.to {
						t.Errorf("redirect to %q, want %q", r.location(), tc.to)
					}
					var token string
					for _, c := range (&http.Response{Header: r.header}).Cookies() {
						if c.Name == auth.SessionCookie {
							token = c.Value
							if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
								t.Errorf("session cookie %+v: want HttpOnly and SameSite=Lax", c)
							}
						}
					}
					if u, err := e.auth.SessionUser(ctx, token); err != nil || u.Username != "ops" {
						t.Errorf("the cookie's session: %v %v", u.Username, err)
					}
					return
				}
				if !strings.Contains(r.body, tc.says) {
					t.Errorf("the page does not say %q\n%s", tc.says, excerpt(r.body))
				}
				if strings.Contains(r.body, tc.password) && tc.password != "" {
					t.Error("the refused password is shown again")
				}
				if tc.user != "" && !strings.Contains(r.body, `value="`+tc.user+`"`) {
					t.Error("the username is not kept")
				}
			})
		}

		// Failures are limited per user and address; the page says when to try again.
		for range 6 {
			r = login("ops", "wrong again", "")
		}
		must(t, "after repeated failures", r, http.StatusTooManyRequests, "Too many failed sign-ins")
		if r.header.Get("Retry-After") == "" {
			t.Error("no Retry-After on 429")
		}

		// A signed-in browser asking for the login page goes on to next.
		r = e.get("/login?next=/clients")
		if r.code != 303 || r.location() != "/clients" {
			t.Errorf("login page when signed in: %d to %q", r.code, r.location())
		}
	})
}

func TestLogout(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		// Without the CSRF token, logging out is refused (another site cannot sign you out).
		r := e.do("POST", "/logout", strings.NewReader(""), false, nil)
		must(t, "logout without CSRF", r, http.StatusForbidden, "CSRF")
		if _, err := e.auth.SessionUser(ctx, e.session); err != nil {
			t.Fatalf("the session ended without a CSRF token: %v", err)
		}
		r = e.post("/logout", nil)
		if r.code != 303 || r.location() != "/login" {
			t.Fatalf("logout: %d to %q", r.code, r.location())
		}
		if _, err := e.auth.SessionUser(ctx, e.session); err == nil {
			t.Error("the session survived logout")
		}
		if !strings.Contains(r.header.Get("Set-Cookie"), auth.SessionCookie+"=;") {
			t.Errorf("the cookie was not cleared: %q", r.header.Get("Set-Cookie"))
		}
		// The old cookie is worth nothing now; an htmx poll is sent to the login page.
		r = e.get("/hosts")
		if r.code != 303 || !strings.HasPrefix(r.location(), "/login") {
			t.Errorf("after logout GET /hosts: %d to %q", r.code, r.location())
		}
		r = e.htmx("/hosts/_table")
		if r.code != 401 || r.header.Get("HX-Redirect") != "/login?next=%2Fhosts" {
			t.Errorf("after logout, htmx poll: %d, HX-Redirect %q", r.code, r.header.Get("HX-Redirect"))
		}
		// A form posted after the session ended gets a page saying so, not plain text.
		r = e.post("/clients/new", url.Values{"name": {"Late"}})
		must(t, "post after logout", r, http.StatusUnauthorized, "Your session has ended", `href="/login?next=%2F"`)
	})
}

// TestCSRF checks that every unsafe request with the session cookie needs the session's token,
// in the form or in the header htmx sends, and that a cross-site Origin is refused.
func TestCSRF(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		before := e.count("clients")
		form := url.Values{"name": {"Forged"}}
		// csrf_token is auth.CSRFField; spelt out so that a change there shows here.
		tests := []struct {
			name string
			body string
			hdr  http.Header
			code int
		}{
			{"no token", form.Encode(), nil, 403},
			{"wrong token", form.Encode() + "&csrf_token=" + url.QueryEscape(auth.CSRFToken("another session")), nil, 403},
			{"token of the session, in the form, but a cross-site Origin", form.Encode() + "&csrf_token=" + url.QueryEscape(e.csrf),
				http.Header{"Origin": {"https://evil.example"}}, 403},
			{"cross-site fetch metadata", form.Encode() + "&csrf_token=" + url.QueryEscape(e.csrf),
				http.Header{"Sec-Fetch-Site": {"cross-site"}}, 403},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := e.do("POST", "/clients/new", strings.NewReader(tc.body), false, tc.hdr)
				if r.code != tc.code {
					t.Errorf("status %d, want %d", r.code, tc.code)
				}
			})
		}
		if n := e.count("clients"); n != before {
			t.Fatalf("a refused request created a client: %d clients, had %d", n, before)
		}
		// Behind a proxy that does not pass Host on, the browser's host is in X-Forwarded-Host.
		r := e.do("POST", "/clients/new", strings.NewReader(url.Values{"name": {"Behind a proxy"}, "csrf_token": {e.csrf}}.Encode()), false,
			http.Header{"Origin": {"https://hub.example"}, "X-Forwarded-Host": {"hub.example"}})
		if r.code != 303 {
			t.Fatalf("through a proxy: %d\n%s", r.code, excerpt(r.body))
		}
		// The header htmx sends (hx-headers on <body>) is accepted, and so is a same-origin Origin.
		r = e.do("POST", "/clients/new", strings.NewReader(url.Values{"name": {"Via header"}}.Encode()), false,
			http.Header{auth.CSRFHeader: {e.csrf}, "Origin": {e.srv.URL}})
		if r.code != 303 {
			t.Fatalf("with the CSRF header: %d\n%s", r.code, excerpt(r.body))
		}
		// The pages carry the token for forms and for htmx.
		page := e.get("/").body
		if !strings.Contains(page, `name="csrf_token" value="`+e.csrf+`"`) || !strings.Contains(page, `"X-CSRF-Token": "`+e.csrf+`"`) {
			t.Errorf("the page lacks the CSRF token for forms or for htmx")
		}
	})
}

// TestPages checks that every page answers 200 with what it is for, with data in every part.
func TestPages(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		acme := e.client("Acme Corp")
		pune := e.site(acme.ID, "Pune DC")
		web1 := e.host(inventory.Host{ClientID: acme.ID, SiteID: pune.ID, Name: "web1.acme.example", Role: "web",
			AgentURL: "http://10.0.0.1:10730/metrics", Addresses: []string{"10.0.0.1"}, Tags: []string{"prod"},
			Facts: inventory.Facts{OSRelease: "Debian GNU/Linux 12 (bookworm)", Kernel: "6.1.0-18-amd64", Cores: 8, MemoryBytes: 32 << 30, CPUModel: "Xeon"}})
		pending := e.host(inventory.Host{ClientID: acme.ID, Name: "new1", Status: inventory.StatusPending, MachineID: "abc123"})
		svc, err := e.inv.CreateService(ctx, inventory.Service{HostID: web1.ID, Type: "nginx", Target: "127.0.0.1:80"})
		if err != nil {
			t.Fatal(err)
		}
		k, err := e.inv.CreateContract(ctx, inventory.Contract{ClientID: acme.ID, Name: "Managed 2025", NodesContracted: 10,
			Services: []inventory.Offering{"ServerSage", "PatchIt"}, RateMinor: 150050, Currency: "INR", StartDate: mustDate(t, "2025-01-01")})
		if err != nil {
			t.Fatal(err)
		}

		pages := []struct {
			path     string
			contains []string
		}{
			{"/", []string{"Overview", "Awaiting approval", "new1", `action="/hosts/` + pending.ID + `/approve"`, "No host is down."}},
			{"/hosts", []string{"web1.acme.example", "new1", "Acme Corp", "Pune DC", "1–2 of 2", `hx-trigger="every 1s"`}},
			{"/hosts?q=WEB", []string{"web1.acme.example", "1–1 of 1"}},
			{"/hosts?status=pending", []string{"new1", "1–1 of 1"}},
			{"/hosts?health=unmonitored", []string{"web1.acme.example", "new1"}},
			{"/hosts/" + web1.ID, []string{"web1.acme.example", "Debian GNU/Linux 12 (bookworm)", "6.1.0-18-amd64", "32 GiB", "10.0.0.1",
				"http://10.0.0.1:10730/metrics", "nginx", "127.0.0.1:80", `id="chart-cpu"`, "Disk I/O, bytes/s", `href="/hosts/` + web1.ID + `?range=7d"`}},
			{"/hosts/" + web1.ID + "?range=24h", []string{`aria-current="true">24h`}},
			{"/hosts/" + pending.ID, []string{"Awaiting approval", "Approve", "abc123", "Not scraped until approved."}},
			{"/hosts/new", []string{"New host", `name="client_id"`, "Acme Corp"}},
			{"/hosts/new?client=" + acme.ID, []string{`<option value="` + acme.ID + `" selected>`}},
			{"/hosts/" + web1.ID + "/edit", []string{"Edit host web1.acme.example", `value="web1.acme.example"`}},
			{"/hosts/" + web1.ID + "/delete", []string{"Delete the host", "1 service is deleted with it"}},
			{"/hosts/" + web1.ID + "/services/new", []string{"New service", "postgres"}},
			{"/services/" + svc.ID + "/edit", []string{"Edit service nginx"}},
			{"/services/" + svc.ID + "/delete", []string{"Delete the service"}},
			{"/clients", []string{"Acme Corp", "acme-corp"}},
			{"/clients/" + acme.ID, []string{"Acme Corp", "Pune DC", "web1.acme.example", "Managed 2025", "nginx", "1 monitored / 10 contracted"}},
			{"/clients/new", []string{"New client"}},
			{"/clients/" + acme.ID + "/edit", []string{`value="Acme Corp"`}},
			{"/clients/" + acme.ID + "/delete", []string{"cannot be deleted", "2 hosts, 1 site and 1 contract"}},
			{"/clients/" + acme.ID + "/sites/new", []string{"New site", "Client Acme Corp"}},
			{"/sites/" + pune.ID + "/edit", []string{`value="Pune DC"`}},
			{"/sites/" + pune.ID + "/delete", []string{"cannot be deleted", "1 host"}},
			{"/contracts", []string{"Managed 2025", "ServerSage, PatchIt", "1500.50 INR", "1 / 10"}},
			{"/contracts/new", []string{"New contract", "FloatBox"}},
			{"/contracts/" + k.ID + "/edit", []string{`value="1500.50"`, `value="PatchIt" checked`}},
			{"/contracts/" + k.ID + "/delete", []string{"Delete the contract"}},
		}
		for _, p := range pages {
			t.Run(p.path, func(t *testing.T) {
				r := e.get(p.path)
				must(t, p.path, r, 200, p.contains...)
				if !strings.Contains(r.body, "Sign out") {
					t.Error("no nav bar with sign out")
				}
				if r.header.Get("Content-Security-Policy") == "" || r.header.Get("X-Frame-Options") != "DENY" {
					t.Error("security headers missing")
				}
			})
		}
		for _, p := range []string{"/hosts/nope", "/clients/nope/edit", "/sites/nope/delete", "/services/nope/edit", "/contracts/nope/edit", "/no/such/page"} {
			r := e.get(p)
			must(t, p, r, 404, "Not found")
		}
	})
}

// TestStatic checks the embedded files: htmx is the recorded version, and asset URLs carry a hash
// that allows caching for good.
func TestStatic(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	page := e.get("/").body
	m := regexp.MustCompile(`src="(/static/htmx\.min\.js\?v=[0-9a-f]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the layout does not load htmx with a versioned URL")
	}
	r := e.do("GET", m[1], nil, true, nil)
	must(t, "htmx", r, 200, "htmx")
	if !strings.Contains(r.header.Get("Cache-Control"), "immutable") {
		t.Errorf("versioned asset Cache-Control %q", r.header.Get("Cache-Control"))
	}
	if r := e.do("GET", "/static/NOTICE", nil, true, nil); r.code != 200 || !strings.Contains(r.body, "htmx 2.0.11") || !strings.Contains(r.body, "0BSD") {
		t.Errorf("NOTICE: %d %q", r.code, r.body)
	}
	for _, p := range []string{"/static/", "/static/nope.js"} {
		if r := e.do("GET", p, nil, true, nil); r.code != 404 {
			t.Errorf("GET %s: %d, want 404", p, r.code)
		}
	}
}

func TestLocalPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/hosts?client=1", "/hosts?client=1"},
		{"/", "/"},
		{"", "/"},
		{"hosts", "/"},
		{"//evil.example/", "/"},
		{"/\\evil.example", "/"},
		{"https://evil.example/", "/"},
		{"/login?next=/x", "/"},
		{"/a\r\nSet-Cookie: x", "/"},
		{"/%2F%2Fevil.example", "/%2F%2Fevil.example"}, // a path on this site, whatever it decodes to
	} {
		if got := localPath(tc.in); got != tc.want {
			t.Errorf("localPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzLocalPath: whatever next is, the result is a path on this site.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/", "/hosts?x=1", "//evil", "/\\evil", "https://x", "/./../x", "/%5c%5cevil", "\t//x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := localPath(s)
		if got == "/" {
			return
		}
		u, err := url.Parse(got)
		if err != nil || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") ||
			strings.HasPrefix(got, "/\\") || strings.ContainsAny(got, "\r\n\t\\") {
			t.Fatalf("localPath(%q) = %q leaves the site", s, got)
		}
		// What a browser resolves it to is on the same host.
		base, _ := url.Parse("https://hub.example/login")
		if r := base.ResolveReference(u); r.Host != "hub.example" {
			t.Fatalf("localPath(%q) = %q resolves to host %q", s, got, r.Host)
		}
	})
}

var _ = store.IsUnavailable

// TestRequestEdges covers answers that no page asks for but that must be right: a form too
// large to read, and an htmx poll whose session ended that asks for HTML.
func TestRequestEdges(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	big := url.Values{"name": {"x"}, "notes": {strings.Repeat("n", maxForm+1)}, "csrf_token": {e.csrf}}
	r := e.do("POST", "/clients/new", strings.NewReader(big.Encode()), false, http.Header{auth.CSRFHeader: {e.csrf}})
	must(t, "oversized form", r, 400, "could not be read")
	if n := e.count("clients"); n != 0 {
		t.Errorf("%d clients written", n)
	}

	if err := e.auth.EndSession(ctx, e.session); err != nil {
		t.Fatal(err)
	}
	// Even when the middleware would redirect (GET, Accept text/html), htmx is told to load the
	// login page instead of having XMLHttpRequest follow the redirect into a live block.
	r = e.do("GET", "/_overview", nil, false, http.Header{"Hx-Request": {"true"}, "Hx-Current-Url": {e.srv.URL + "/?x=1"}})
	if r.code != 401 || r.header.Get("HX-Redirect") != "/login?next=%2F%3Fx%3D1" || r.location() != "" {
		t.Errorf("htmx poll after the session ended: %d, HX-Redirect %q, Location %q", r.code, r.header.Get("HX-Redirect"), r.location())
	}
}
