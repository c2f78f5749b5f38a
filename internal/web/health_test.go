package web

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/metricstore"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

// agentStub serves a few of an agent's series, as a scrape target.
func agentStub(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "node_memory_MemAvailable_bytes 4e+09\nnode_memory_MemTotal_bytes 1.6e+10\nnode_load1 0.5\nsage_cpu_cores 4\n")
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// scrape makes hosts scrape targets as the hub does (job, client slug, host name), from client
// slug -> host name -> address, and waits until each has been scraped and the tracker has
// refreshed.
func (e *env) scrape(targets map[string]map[string]string) {
	e.t.Helper()
	var all []metricstore.Target
	for slug, hosts := range targets {
		for name, addr := range hosts {
			all = append(all, metricstore.Target{Address: addr, Labels: map[string]string{"client": slug, "host": name}})
		}
	}
	if err := e.metrics.SetTargets(ctx, map[string][]metricstore.Target{AgentJob: all}); err != nil {
		e.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for slug, hosts := range targets {
		for name := range hosts {
			for {
				st := e.health.Get(hosthealth.Key{Client: slug, Host: name}).State()
				if st == "up" || st == "down" {
					break
				}
				if time.Now().After(deadline) {
					e.t.Fatalf("host %s was not scraped: %+v", name, e.metrics.Targets())
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	if err := e.health.Refresh(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// TestHealthOnPages runs real scrapes, one target up and one refusing connections, and checks
// that every page shows each host's state, the down host's error first and prominently.
func TestHealthOnPages(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		acme := e.client("Acme")
		up := e.host(inventory.Host{ClientID: acme.ID, Name: "web1", AgentURL: "http://x.example:1/metrics"})
		down := e.host(inventory.Host{ClientID: acme.ID, Name: "db1", AgentURL: "http://x.example:2/metrics"})
		e.host(inventory.Host{ClientID: acme.ID, Name: "new1", Status: inventory.StatusPending})
		e.host(inventory.Host{ClientID: acme.ID, Name: "old1", Status: inventory.StatusRetired})
		e.scrape(map[string]map[string]string{acme.Slug: {"web1": agentStub(t), "db1": closedAddr(t)}})

		r := e.get("/")
		must(t, "overview", r, 200, "connection refused", `href="/hosts/`+down.ID+`"`, "not counting 1 retired")
		for state, n := range map[string]int{"down": 1, "up": 1, "pending": 0, "unmonitored": 1, "approval": 1} {
			re := regexp.MustCompile(`tile-` + state + `[^"]*" href="[^"]*"><span class="tile-num">(\d+)<`)
			if m := re.FindStringSubmatch(r.body); m == nil || m[1] != fmt.Sprint(n) {
				t.Errorf("overview tile %s: %v, want %d", state, m, n)
			}
		}
		if i, j := strings.Index(r.body, "Down hosts"), strings.Index(r.body, "Awaiting approval</h2>"); i < 0 || j < 0 || i > j {
			t.Error("the down hosts are not listed first")
		}

		r = e.get("/hosts")
		must(t, "hosts", r, 200, `<tr class="row-down">`, "connection refused", `<span class="pill pill-up">Up</span>`, "75 %")
		must(t, "hosts, down only", e.get("/hosts?health=down"), 200, "db1", "1–1 of 1")
		if strings.Contains(e.get("/hosts?health=down").body, ">web1<") {
			t.Error("the down filter lists an up host")
		}
		must(t, "hosts, up only", e.get("/hosts?health=up"), 200, "web1", "1–1 of 1")

		must(t, "down host", e.get("/hosts/"+down.ID), 200, "Down: the last scrape failed.", "connection refused")
		r = e.get("/hosts/" + up.ID)
		must(t, "up host", r, 200, `<span class="pill pill-up">Up</span>`, "75 %")
		if strings.Contains(r.body, "the last scrape failed") {
			t.Error("an up host shows a scrape failure")
		}

		// The live fragments are just the block, without the layout.
		for _, p := range []string{"/_overview", "/hosts/_table?health=down", "/hosts/" + down.ID + "/_health", "/hosts/" + up.ID + "/_charts?range=24h"} {
			r := e.htmx(p)
			if r.code != 200 || strings.Contains(r.body, "<html") || !strings.Contains(r.body, `hx-trigger="every `) {
				t.Errorf("%s: %d, fragment %q", p, r.code, excerpt(r.body))
			}
		}
		must(t, "table fragment", e.htmx("/hosts/_table?health=down"), 200, "connection refused")
	})
}

// TestOverviewBoundsItsLists: with more hosts awaiting approval than the overview lists, it
// lists the first maxApprovalListed by name with their approve buttons, counts them all in its
// tile, and links to the rest.
func TestOverviewBoundsItsLists(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		acme := e.client("Acme")
		n := maxApprovalListed + 7
		for i := range n {
			e.host(inventory.Host{ClientID: acme.ID, Name: fmt.Sprintf("new%02d", i), Status: inventory.StatusPending})
		}
		r := e.get("/")
		must(t, "overview", r, 200, ">new00<", fmt.Sprintf(">new%02d<", maxApprovalListed-1),
			fmt.Sprintf(`<a href="/hosts?status=pending">and %d more awaiting approval</a>`, n-maxApprovalListed))
		if strings.Contains(r.body, fmt.Sprintf(">new%02d<", maxApprovalListed)) {
			t.Errorf("host %d of those awaiting approval is listed", maxApprovalListed+1)
		}
		if got := strings.Count(r.body, `/approve"`); got != maxApprovalListed {
			t.Errorf("%d approve buttons, want %d", got, maxApprovalListed)
		}
		re := regexp.MustCompile(`tile-approval[^"]*" href="[^"]*"><span class="tile-num">(\d+)<`)
		if m := re.FindStringSubmatch(r.body); m == nil || m[1] != fmt.Sprint(n) {
			t.Errorf("approval tile: %v, want %d", m, n)
		}
	})
}

// TestHostsPaging checks the pages of a long list and the filters against the inventory.
func TestHostsPaging(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		acme, beta := e.client("Acme"), e.client("Beta")
		for i := range 120 {
			c := acme
			if i%4 == 0 {
				c = beta
			}
			e.host(inventory.Host{ClientID: c.ID, Name: fmt.Sprintf("host-%03d", i)})
		}
		tests := []struct {
			query string
			shows string // the range shown
			first string
			prev  bool
			next  bool
		}{
			{"", "1–50 of 120", "host-000", false, true},
			{"page=2", "51–100 of 120", "host-050", true, true},
			{"page=3", "101–120 of 120", "host-100", true, false},
			{"page=99", "101–120 of 120", "host-100", true, false},
			{"page=-1", "1–50 of 120", "host-000", false, true},
			{"client=" + beta.ID, "1–30 of 30", "host-000", false, false},
			{"client=" + acme.ID + "&q=1", "1–32 of 32", "host-001", false, false},
			{"health=unmonitored&page=3", "101–120 of 120", "host-100", true, false},
			{"q=nothing-like-this", "0 hosts", "", false, false},
			{"status=retired", "0 hosts", "", false, false},
		}
		for _, tc := range tests {
			t.Run(tc.query, func(t *testing.T) {
				r := e.get("/hosts?" + tc.query)
				must(t, tc.query, r, 200, tc.shows)
				if tc.first != "" {
					rows := regexp.MustCompile(`<strong>(host-\d+)</strong>`).FindAllStringSubmatch(r.body, -1)
					if len(rows) == 0 || rows[0][1] != tc.first {
						t.Errorf("first row %v, want %s", rows, tc.first)
					}
				}
				if got := strings.Contains(r.body, `rel="prev"`); got != tc.prev {
					t.Errorf("previous link %v, want %v", got, tc.prev)
				}
				if got := strings.Contains(r.body, `rel="next"`); got != tc.next {
					t.Errorf("next link %v, want %v", got, tc.next)
				}
			})
		}
		// The next link keeps the filters.
		r := e.get("/hosts?client=" + acme.ID)
		if !strings.Contains(r.body, `href="/hosts?client=`+acme.ID+`&amp;page=2"`) {
			t.Errorf("the next link drops the filter\n%s", excerpt(r.body))
		}
	})
}

// TestHostCharts writes an hour of samples with a gap and checks that every chart of the host
// page draws them: many points, broken where the data are missing.
func TestHostCharts(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		acme := e.client("Acme")
		h := e.host(inventory.Host{ClientID: acme.ID, Name: "web1"})
		e.hostSeries(acme.Slug, "web1", "", 0, time.Hour)
		other := e.host(inventory.Host{ClientID: acme.ID, Name: "web2"})

		r := e.get("/hosts/" + h.ID + "?range=1h")
		must(t, "host page", r, 200)
		for _, id := range []string{"cpu", "memory", "load", "disk", "network", "diskio"} {
			fig := section(r.body, `id="chart-`+id+`"`, "</figure>")
			paths := regexp.MustCompile(`<path class="line" d="([^"]+)"`).FindAllStringSubmatch(fig, -1)
			if len(paths) == 0 {
				t.Errorf("chart %s: no line\n%s", id, fig)
				continue
			}
			d := paths[0][1]
			points := strings.Count(d, "L") + strings.Count(d, "M")
			if points < 150 {
				t.Errorf("chart %s: %d points, want an hour's worth", id, points)
			}
			if strings.Count(d, "M") < 2 {
				t.Errorf("chart %s: the ten-minute gap is drawn as a line: %d subpaths", id, strings.Count(d, "M"))
			}
			if !strings.Contains(fig, "<title>") {
				t.Errorf("chart %s: no tooltip", id)
			}
		}
		disk := section(r.body, `id="chart-disk"`, "</figure>")
		for _, want := range []string{">/<", ">/var<", "30 %", "20 %"} {
			if !strings.Contains(disk, want) {
				t.Errorf("disk chart lacks %q", want)
			}
		}
		must(t, "memory", r, 200, ">RAM<")
		network := section(r.body, `id="chart-network"`, "</figure>")
		if !strings.Contains(network, ">receive<") || !strings.Contains(network, " kB/s<") || strings.Contains(network, "GB/s") {
			t.Errorf("network chart: want receive and transmit in kB/s, lo left out\n%s", network)
		}
		if strings.Contains(disk, ">/run<") {
			t.Error("the disk chart shows a tmpfs")
		}

		for _, rng := range []string{"24h", "7d", "nonsense"} {
			must(t, rng, e.get("/hosts/"+h.ID+"?range="+rng), 200, `<path class="line"`)
		}
		// Another host's page draws none of these series.
		r = e.get("/hosts/" + other.ID)
		must(t, "host without data", r, 200, "No data in this range")
		if strings.Contains(r.body, `<path class="line"`) {
			t.Error("a host without data has lines")
		}
	})
}

func section(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	j := strings.Index(s[i:], end)
	if j < 0 {
		return s[i:]
	}
	return s[i : i+j]
}

// TestStoreUnavailable: while the state store cannot be reached, pages answer 503 with a page
// saying so, never a 500 with internals.
func TestStoreUnavailable(t *testing.T) {
	t.Run("closed", func(t *testing.T) {
		storetest.Each(t, func(t *testing.T, db *store.DB) {
			e := newEnv(t, db)
			c := e.client("Acme")
			h := e.host(inventory.Host{ClientID: c.ID, Name: "web1"})
			db.Close()
			// The pages themselves, past authentication (which the auth package answers).
			id := auth.Identity{User: e.admin, Method: auth.BySession, CSRF: e.csrf}
			for _, p := range []string{"/", "/hosts", "/hosts/" + h.ID, "/clients", "/clients/" + c.ID, "/contracts", "/hosts/new"} {
				w := httptest.NewRecorder()
				req := httptest.NewRequest("GET", p, nil).WithContext(auth.WithIdentity(context.Background(), id))
				e.ui.app.ServeHTTP(w, req)
				if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "Temporarily unavailable") ||
					strings.Contains(w.Body.String(), "sql:") || w.Header().Get("Retry-After") == "" {
					t.Errorf("GET %s: %d, Retry-After %q\n%s", p, w.Code, w.Header().Get("Retry-After"), excerpt(w.Body.String()))
				}
			}
			w := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/clients/new", strings.NewReader("name=X")).WithContext(auth.WithIdentity(context.Background(), id))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			e.ui.app.ServeHTTP(w, req)
			if w.Code != http.StatusServiceUnavailable {
				t.Errorf("POST /clients/new: %d", w.Code)
			}
		})
	})
	t.Run("postgres refusing connections", func(t *testing.T) {
		// The whole handler, authentication included, against a server that refuses new
		// connections to the database (as during a failover), with the pool's connections gone.
		dsn := storetest.PostgresDSN(t)
		db, err := store.Open(ctx, dsn, storetest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		e := newEnv(t, db)
		must(t, "before", e.get("/"), 200, "Overview")

		server := os.Getenv("SAGE_TEST_POSTGRES")
		if server == "" {
			server = storetest.DefaultPostgres
		}
		admin, err := sql.Open("pgx", server)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		u, _ := url.Parse(dsn)
		name := strings.TrimPrefix(u.Path, "/")
		for _, q := range []string{
			"ALTER DATABASE " + name + " ALLOW_CONNECTIONS false",
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name + "'",
		} {
			if _, err := admin.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		t.Cleanup(func() { admin.ExecContext(ctx, "ALTER DATABASE "+name+" ALLOW_CONNECTIONS true") })

		for _, p := range []string{"/", "/hosts"} {
			r := e.get(p)
			must(t, p, r, http.StatusServiceUnavailable, "Temporarily unavailable")
			if strings.Contains(r.body, "SQLSTATE") || strings.Contains(r.body, name) {
				t.Errorf("%s shows internals\n%s", p, excerpt(r.body))
			}
		}
		r := e.do("POST", "/login", strings.NewReader("username=admin&password=x"), true, nil)
		must(t, "login", r, http.StatusServiceUnavailable, "cannot reach its state database")
	})
}
