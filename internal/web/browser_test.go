package web

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/serversage/sage/internal/changes"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store/storetest"
	"github.com/serversage/sage/internal/testenv"
)

// viewport is a screen the UI must work on.
type viewport struct {
	name          string
	width, height int64
	mobile        bool
}

var viewports = []viewport{
	{"desktop", 1280, 800, false},
	{"phone", 390, 844, true},
}

// newBrowser starts headless Chromium (Debian's) for one test function, with a fresh profile;
// subtests open tabs in it.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := testenv.LookPath(t, "chromium", "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	// The first Run starts the browser; it must not carry a timeout, which would end the browser.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return bctx
}

// tab opens a tab with its own cookies in the browser, at a viewport's size.
func tab(t *testing.T, browser context.Context, vp viewport) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	opts := []chromedp.EmulateViewportOption{chromedp.EmulateScale(1)}
	if vp.mobile {
		opts = append(opts, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(vp.width, vp.height, opts...)); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// step runs actions with a bound, so that a page that never shows what is awaited fails the test
// instead of hanging it.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// submit clicks a button that submits a form and waits for the page that answers.
func submit(t *testing.T, ctx context.Context, what, selector string) *network.Response {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(sctx, chromedp.Click(chromedp.CSS(selector)))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return resp
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// screenshot saves the whole page as a PNG among the test's artefacts.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(testenv.ArtefactDir(t, "screenshots"), name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

// browserEstate fills an inventory with what an MSP's hub shows: clients with sites, hosts that
// are up (with an hour of history), one down, one awaiting approval, one without an agent.
func browserEstate(t *testing.T, e *env) (web1 inventory.Host) {
	t.Helper()
	acme, globex, initech := e.client("Acme Corp"), e.client("Globex"), e.client("Initech")
	pune, mumbai := e.site(acme.ID, "Pune DC"), e.site(acme.ID, "Mumbai DC")
	chennai := e.site(globex.ID, "Chennai")
	type spec struct {
		c    inventory.Client
		site string
		name string
		role string
		load float64
	}
	targets := map[string]map[string]string{} // client slug -> host -> address
	up := []spec{
		{acme, pune.ID, "web1.acme.example", "web", 0.35},
		{acme, pune.ID, "web2.acme.example", "web", 0.2},
		{acme, mumbai.ID, "app1.acme.example", "app", 0.55},
		{acme, mumbai.ID, "cache1.acme.example", "cache", 0.1},
		{globex, chennai.ID, "erp.globex.example", "erp", 0.8},
		{initech, "", "files.initech.example", "file server", 0.45},
	}
	for i, s := range up {
		h := e.host(inventory.Host{ClientID: s.c.ID, SiteID: s.site, Name: s.name, Role: s.role, OS: "Debian 12",
			AgentURL: fmt.Sprintf("http://10.0.0.%d:10730/metrics", i+10), Addresses: []string{fmt.Sprintf("10.0.0.%d", i+10)},
			Facts: inventory.Facts{OSRelease: "Debian GNU/Linux 12 (bookworm)", Kernel: "6.1.0-28-amd64", Arch: "x86_64",
				CPUModel: "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", Cores: 4, MemoryBytes: 16 << 30},
			MachineID: fmt.Sprintf("%032x", i+1), Tags: []string{"prod"}})
		if i == 0 {
			web1 = h
		}
		if targets[s.c.Slug] == nil {
			targets[s.c.Slug] = map[string]string{}
		}
		history := 3 * time.Minute // enough for the usage figures
		if i == 0 {
			history = time.Hour // web1's page is charted
		}
		targets[s.c.Slug][s.name] = e.agentHost(s.c.Slug, s.name, s.load, history)
	}
	e.host(inventory.Host{ClientID: acme.ID, SiteID: mumbai.ID, Name: "db1.acme.example", Role: "database", AgentURL: "http://10.0.0.5:10730/metrics"})
	targets[acme.Slug]["db1.acme.example"] = closedAddr(t)
	e.host(inventory.Host{ClientID: globex.ID, Name: "new-vm-17", Status: inventory.StatusPending, MachineID: "4f1d0c", AgentURL: "http://10.1.0.17:10730/metrics"})
	e.host(inventory.Host{ClientID: initech.ID, Name: "printer.initech.example", Role: "printer"})
	if _, err := e.inv.CreateContract(ctx, inventory.Contract{ClientID: acme.ID, Name: "Managed servers 2025", NodesContracted: 5,
		Services: []inventory.Offering{"ServerSage", "PatchIt", "DataPlus"}, RateMinor: 250000, Currency: "INR",
		StartDate: time.Now().AddDate(0, -3, 0)}); err != nil {
		t.Fatal(err)
	}

	e.scrape(targets)
	return web1
}

func TestBrowser(t *testing.T) {
	browser := newBrowser(t)
	e := newEnv(t, storetest.SQLite(t))
	web1 := browserEstate(t, e)
	// A change timeline: a package upgrade with its grouped files, a configuration diff, a tampered file.
	now := time.Now()
	if _, _, err := e.changes.Insert(context.Background(), web1.ID, "browser", []changes.Event{
		{Seq: 1, Time: now.Add(-26 * time.Hour), Kind: "packages", Object: "openssl:amd64", Action: changes.Changed,
			Before: changes.Object{"version": "3.0.11-1"}, After: changes.Object{"version": "3.0.13-1"}},
		{Seq: 2, Time: now.Add(-26 * time.Hour), Kind: changes.KindFiles, Object: "package openssl:amd64", Action: changes.Changed,
			Before: changes.Object{"version": "3.0.11-1"}, After: changes.Object{"version": "3.0.13-1", "files_changed": "3", "package": "openssl:amd64"},
			Files: []string{"/usr/bin/openssl", "/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"}},
		{Seq: 3, Time: now.Add(-2 * time.Hour), Kind: "config_files", Object: "/etc/ssh/sshd_config", Action: changes.Changed,
			Before: changes.Object{"sha256": "1a2b"}, After: changes.Object{"sha256": "3c4d"},
			Diff: "--- /etc/ssh/sshd_config\n+++ /etc/ssh/sshd_config\n@@ -1,2 +1,2 @@\n-PermitRootLogin no\n+PermitRootLogin yes\n PasswordAuthentication no\n"},
		{Seq: 4, Time: now.Add(-time.Hour), Kind: changes.KindFiles, Object: "/usr/sbin/sshd", Action: changes.Changed, Tampered: true,
			Before: changes.Object{"sha256": "9f8e7d6c5b4a3928"}, After: changes.Object{"sha256": "0011223344556677", "package": "openssh-server:amd64"}},
	}); err != nil {
		t.Fatal(err)
	}

	for _, vp := range viewports {
		t.Run(vp.name, func(t *testing.T) {
			ctx := tab(t, browser, vp)
			shot := func(name string) { screenshot(t, ctx, vp.name+"-"+name) }

			// Signing in: an anonymous visit goes to the login page and comes back after it.
			step(t, ctx, "open hosts", chromedp.Navigate(e.srv.URL+"/hosts"), chromedp.WaitVisible(chromedp.CSS("#username")))
			shot("01-login")
			step(t, ctx, "type credentials",
				chromedp.SendKeys(chromedp.CSS("#username"), "admin"),
				chromedp.SendKeys(chromedp.CSS("#password"), testPassword))
			if resp := submit(t, ctx, "sign in", "form button[type=submit]"); resp.Status != 200 || !strings.HasSuffix(resp.URL, "/hosts") {
				t.Fatalf("after signing in: %d %s", resp.Status, resp.URL)
			}

			// The hosts page lists the hosts with their state.
			step(t, ctx, "hosts table", chromedp.WaitVisible(chromedp.CSS("#hosts-table tbody tr")))
			if n := eval[int](t, ctx, `document.querySelectorAll("#hosts-table tbody tr").length`); n != 9 {
				t.Errorf("hosts table has %d rows, want 9", n)
			}
			if s := eval[string](t, ctx, `document.querySelector("#hosts-table tr.row-down").innerText`); !strings.Contains(s, "db1.acme.example") || !strings.Contains(s, "connection refused") {
				t.Errorf("the down row reads %q", s)
			}
			// The table refreshes itself: htmx replaces it in place, keeping the rows.
			eval[chromedp.Void](t, ctx, `document.querySelector("#hosts-table").dataset.marker = "old"`)
			step(t, ctx, "live refresh", chromedp.WaitReady(chromedp.CSS(`#hosts-table:not([data-marker])`)))
			if n := eval[int](t, ctx, `document.querySelectorAll("#hosts-table tbody tr").length`); n != 9 {
				t.Errorf("after refresh, %d rows", n)
			}
			shot("02-hosts")

			// The overview lists the down host first.
			step(t, ctx, "overview", chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS(".tiles")))
			if s := eval[string](t, ctx, `document.querySelector("#overview-live .card").innerText`); !strings.Contains(s, "db1.acme.example") {
				t.Errorf("the first card of the overview reads %q", s)
			}
			shot("03-overview")

			// A host's charts draw lines of many points.
			step(t, ctx, "host page", chromedp.Navigate(e.srv.URL+"/hosts/"+web1.ID), chromedp.WaitVisible(chromedp.CSS("#chart-cpu path.line")))
			for _, id := range []string{"cpu", "memory", "load", "disk", "network", "diskio"} {
				n := eval[int](t, ctx, `(document.querySelector("#chart-`+id+` path.line").getAttribute("d").match(/[ML]/g) || []).length`)
				if n < 150 {
					t.Errorf("chart %s: %d points", id, n)
				}
				w := eval[float64](t, ctx, `document.querySelector("#chart-`+id+` svg.chart").getBoundingClientRect().width`)
				if w < 250 || w > float64(vp.width) {
					t.Errorf("chart %s is %.0f px wide on a %d px screen", id, w, vp.width)
				}
			}
			if over := eval[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth + 1`); over {
				t.Errorf("the host page scrolls sideways at %d px", vp.width)
			}
			shot("04-host")

			// The host's change timeline: newest first, the tampered file loud, the diff and the
			// package's files there to read.
			step(t, ctx, "changes", chromedp.Navigate(e.srv.URL+"/hosts/"+web1.ID+"/changes"), chromedp.WaitVisible(chromedp.CSS("ol.timeline")))
			if n := eval[int](t, ctx, `document.querySelectorAll("li.change").length`); n != 4 {
				t.Errorf("the timeline shows %d changes, want 4", n)
			}
			if first := eval[string](t, ctx, `document.querySelector("li.change").className`); !strings.Contains(first, "change-tampered") {
				t.Errorf("the newest change is %q, want the tampered file first", first)
			}
			if over := eval[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth + 1`); over {
				t.Errorf("the changes page scrolls sideways at %d px", vp.width)
			}
			shot("04b-changes")
			if !vp.mobile {
				step(t, ctx, "24h", chromedp.Navigate(e.srv.URL+"/hosts/"+web1.ID+"?range=24h"), chromedp.WaitVisible(chromedp.CSS("#chart-cpu path.line")))
			}

			// Creating a client: the form submits and the client appears.
			name := "Zeta Industries " + vp.name
			step(t, ctx, "new client form", chromedp.Navigate(e.srv.URL+"/clients/new"), chromedp.WaitVisible(chromedp.CSS("#f-name")),
				chromedp.SendKeys(chromedp.CSS("#f-name"), name), chromedp.SetValue(chromedp.CSS("#f-notes"), "Signed in the browser test."))
			resp := submit(t, ctx, "create client", "main form button[type=submit]")
			if resp.Status != 200 || !strings.Contains(resp.URL, "/clients/") {
				t.Fatalf("after creating: %d %s", resp.Status, resp.URL)
			}
			if h := eval[string](t, ctx, `document.querySelector("h1").innerText`); h != name {
				t.Errorf("the new client's page is headed %q", h)
			}
			if f := eval[string](t, ctx, `document.querySelector(".flash").innerText`); !strings.Contains(f, "created") {
				t.Errorf("flash %q", f)
			}
			step(t, ctx, "clients", chromedp.Navigate(e.srv.URL+"/clients"), chromedp.WaitVisible(chromedp.CSS("table")))
			if s := eval[string](t, ctx, `document.querySelector("table").innerText`); !strings.Contains(s, name) {
				t.Errorf("the clients list lacks the new client: %q", s)
			}
			shot("05-clients")

			// An invalid form comes back with the error beside the field and the input kept.
			step(t, ctx, "invalid client", chromedp.Navigate(e.srv.URL+"/clients/new"), chromedp.WaitVisible(chromedp.CSS("#f-name")),
				chromedp.SetValue(chromedp.CSS("#f-name"), strings.ToUpper(name)),
				chromedp.SetValue(chromedp.CSS("#f-slug"), "Bad Slug!"))
			if resp := submit(t, ctx, "submit invalid", "main form button[type=submit]"); resp.Status != 400 {
				t.Errorf("invalid form: status %d", resp.Status)
			}
			if s := eval[string](t, ctx, `document.querySelector("#e-slug").innerText`); !strings.Contains(s, "lower-case letters") {
				t.Errorf("the slug's error reads %q", s)
			}
			if v := eval[string](t, ctx, `document.querySelector("#f-slug").value`); v != "Bad Slug!" {
				t.Errorf("the slug typed was not kept: %q", v)
			}
			if inv := eval[string](t, ctx, `document.querySelector("#f-slug").getAttribute("aria-invalid")`); inv != "true" {
				t.Error("the field is not marked invalid")
			}
			shot("06-client-form-error")

			// The contract form with its check boxes, as a phone shows it.
			step(t, ctx, "contract form", chromedp.Navigate(e.srv.URL+"/contracts/new"), chromedp.WaitVisible(chromedp.CSS("#f-name")))
			shot("07-contract-form")

			step(t, ctx, "sign out", chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS(".usermenu button")))
			if resp := submit(t, ctx, "sign out", ".usermenu button"); !strings.HasSuffix(resp.URL, "/login") {
				t.Errorf("after signing out: %s", resp.URL)
			}
		})
	}
}
