package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/serversage/sage/internal/testenv"
)

// The README's promise, in a real browser: `sage up` prints an address; after login, its hosts
// page shows this machine up, and the machine's page draws charts that grow as scrapes arrive.
func TestUpInBrowser(t *testing.T) {
	chromium := testenv.LookPath(t, "chromium", "chromium")
	bin := testenv.BuildSage(t)
	t.Setenv("SAGE_ADMIN_PASSWORD", "")
	data := filepath.Join(t.TempDir(), "data")
	addr := testenv.FreeAddr(t)
	_, out := testenv.Start(t, "http://"+addr+"/readyz", bin, "up", "--data", data, "--listen", addr, "--scrape-interval", "1s")
	// Standard output and the log share the buffer, so the two are looked for separately, once the
	// announcement has made it through the pipe.
	out.WaitFor("log in as admin with password", 10*time.Second)
	addrM := regexp.MustCompile(`running at (http://\S+/)`).FindStringSubmatch(out.String())
	pwM := regexp.MustCompile(`log in as admin with password (\S+)`).FindStringSubmatch(out.String())
	if addrM == nil || pwM == nil {
		t.Fatalf("sage up did not print an address and a password:\n%s", out.String())
	}
	base, password := addrM[1], pwM[1]
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancel()
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, c := context.WithTimeout(ctx, 30*time.Second)
		defer c()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(js string) string {
		t.Helper()
		sctx, c := context.WithTimeout(ctx, 10*time.Second)
		defer c()
		v, err := chromedp.Run(sctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		sctx, c := context.WithTimeout(ctx, 20*time.Second)
		defer c()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(filepath.Join(testenv.ArtefactDir(t, "screenshots"), name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Do(ctx); err != nil { // starts the browser, without a deadline
		t.Fatal(err)
	}

	run("the printed address asks for a login", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#username")))
	run("log in", chromedp.SendKeys(chromedp.CSS("#username"), "admin"), chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("form button[type=submit]")), chromedp.WaitVisible(chromedp.CSS("nav")))

	run("hosts page", chromedp.Navigate(base+"hosts"), chromedp.WaitVisible(chromedp.CSS("#hosts-table tbody tr")))
	row := func() string {
		return eval(`[...document.querySelectorAll("#hosts-table tbody tr")].map(r => r.innerText).join("\n---\n")`)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !(strings.Contains(row(), hostname) && strings.Contains(strings.ToLower(row()), "up")) {
		if time.Now().After(deadline) {
			t.Fatalf("this machine (%s) never shown up on the hosts page:\n%s", hostname, row())
		}
		time.Sleep(time.Second) // the table re-polls every scrape interval by itself
	}
	shot("up-01-hosts")

	run("this machine's page", chromedp.Click(chromedp.CSS(`#hosts-table tbody tr a[href^="/hosts/"]`)),
		chromedp.WaitVisible(chromedp.CSS("#chart-memory")))
	if h := eval(`document.querySelector("h1").innerText`); !strings.Contains(h, hostname) {
		t.Errorf("the host page is headed %q, want %s", h, hostname)
	}
	points := func() int {
		d := eval(`(document.querySelector("#chart-memory path.line") || {getAttribute: () => ""}).getAttribute("d") || ""`)
		return strings.Count(d, "L") + strings.Count(d, "M")
	}
	// Live: with no reload from the test, the chart gains points as scrapes arrive.
	first := points()
	deadline = time.Now().Add(90 * time.Second)
	for points() < max(first+2, 3) {
		if time.Now().After(deadline) {
			t.Fatalf("the memory chart did not grow: %d points at first, %d now", first, points())
		}
		time.Sleep(time.Second)
	}
	shot("up-02-this-machine")
}
