package web

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"golang.org/x/crypto/bcrypt"

	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/changelog"
	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/metricstore"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

var ctx = context.Background()

// testPassword is the password of the test users. Their hashes are made at bcrypt's minimum
// cost: the real cost (a quarter second per hash) would make every test wait for it.
const testPassword = "correct horse battery staple"

// testInterval is the scrape interval of the test hubs: short, so that real scrapes happen
// within a test.
const testInterval = time.Second

// env is a UI on a real state store and a real metrics store, served on loopback.
type env struct {
	t       testing.TB
	db      *store.DB
	inv     *inventory.Inventory
	auth    *auth.Auth
	metrics *metricstore.Store
	health  *hosthealth.Tracker
	changes *changelog.Store
	ui      *UI
	srv     *httptest.Server
	changed atomic.Int64 // calls of HostsChanged

	admin   auth.User
	session string // the admin's session token
	csrf    string
}

func newEnv(t testing.TB, db *store.DB) *env {
	t.Helper()
	e := &env{t: t, db: db, inv: inventory.New(db), auth: auth.New(db), changes: changelog.New(db)}
	var err error
	e.metrics, err = metricstore.Open(metricstore.Options{
		Dir: t.TempDir(), ScrapeInterval: testInterval, ScrapeTimeout: testInterval,
		TargetsReload: 100 * time.Millisecond, Logger: storetest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.metrics.Close() })
	e.health = hosthealth.New(e.metrics, AgentJob, testInterval, storetest.Logger(t))
	e.ui, err = New(Options{
		Inventory: e.inv, Auth: e.auth, Metrics: e.metrics, Health: e.health,
		ScrapeInterval: testInterval, Logger: storetest.Logger(t),
		HostsChanged: func() { e.changed.Add(1) },
		Changes:      e.changes,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.ui.Handler())
	t.Cleanup(e.srv.Close)
	e.admin = e.user("admin", auth.RoleAdmin)
	s, err := e.auth.NewSession(ctx, e.admin.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.session, e.csrf = s.Token, auth.CSRFToken(s.Token)
	return e
}

// user adds a user whose password is testPassword.
func (e *env) user(name string, role auth.Role) auth.User {
	e.t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		e.t.Fatal(err)
	}
	now := store.Millis(time.Now())
	id := store.NewID()
	if _, err := e.db.ExecContext(ctx, `INSERT INTO users (id, username, username_fold, display_name, role, password_hash, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7)`, id, name, strings.ToLower(name), "Test "+name, string(role), string(hash), now); err != nil {
		e.t.Fatal(err)
	}
	u, err := e.auth.GetUser(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// response is what a request got.
type response struct {
	code   int
	body   string
	header http.Header
}

func (r response) location() string { return r.header.Get("Location") }

// noRedirects is a client that shows redirects instead of following them.
var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

// do sends a request as a browser would: Accept text/html, the admin's session cookie unless
// anonymous, and any extra headers.
func (e *env) do(method, path string, body io.Reader, anonymous bool, hdr http.Header) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if !anonymous {
		req.AddCookie(&http.Cookie{Name: auth.SessionCookie, Value: e.session})
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{code: resp.StatusCode, body: string(b), header: resp.Header}
}

func (e *env) get(path string) response { e.t.Helper(); return e.do("GET", path, nil, false, nil) }

// post submits a form as the admin, with the session's CSRF token.
func (e *env) post(path string, form url.Values) response {
	e.t.Helper()
	f := url.Values{}
	for k, v := range form {
		f[k] = v
	}
	f.Set(auth.CSRFField, e.csrf)
	return e.do("POST", path, strings.NewReader(f.Encode()), false, nil)
}

// htmx sends a GET as htmx does for a live block.
func (e *env) htmx(path string) response {
	e.t.Helper()
	return e.do("GET", path, nil, false, http.Header{"Accept": {"*/*"}, "Hx-Request": {"true"}, "Hx-Current-Url": {e.srv.URL + "/hosts"}})
}

func (e *env) client(name string) inventory.Client {
	e.t.Helper()
	c, err := e.inv.CreateClient(ctx, inventory.Client{Name: name})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) site(clientID, name string) inventory.Site {
	e.t.Helper()
	s, err := e.inv.CreateSite(ctx, inventory.Site{ClientID: clientID, Name: name})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) host(h inventory.Host) inventory.Host {
	e.t.Helper()
	if h.Status == "" {
		h.Status = inventory.StatusActive
	}
	out, err := e.inv.CreateHost(ctx, h)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// count counts the rows of a table, to show that a refused form wrote nothing.
func (e *env) count(table string) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// agentSeries are an agent's series, as functions of the seconds since a start, shaped so that
// charts have something to show: counters are integrals of smoothly varying rates. load shifts
// the host's figures, so that hosts differ.
func agentSeries(load float64) []struct {
	name   string
	labels []string
	v      func(s float64) float64
} {
	type def = struct {
		name   string
		labels []string
		v      func(s float64) float64
	}
	fs := func(mount, fstype string, avail, size float64) []def {
		l := []string{"mountpoint", mount, "fstype", fstype, "device", "/dev/" + strings.Trim(strings.ReplaceAll(mount, "/", "x"), "x") + "1"}
		return []def{
			{"node_filesystem_avail_bytes", l, func(float64) float64 { return avail }},
			{"node_filesystem_size_bytes", l, func(float64) float64 { return size }},
		}
	}
	out := []def{
		{"node_cpu_seconds_total", []string{"cpu", "0", "mode", "idle"}, func(s float64) float64 { return (0.9-0.6*load)*s - 80*math.Cos(s/400) }},
		{"node_cpu_seconds_total", []string{"cpu", "0", "mode", "iowait"}, func(s float64) float64 { return 0.05*s + 10*math.Sin(s/300) }},
		{"node_memory_MemAvailable_bytes", nil, func(s float64) float64 { return (14 - 10*load) * 1e9 * (1 + 0.1*math.Sin(s/700)) }},
		{"node_memory_MemTotal_bytes", nil, func(float64) float64 { return 16e9 }},
		{"node_load1", nil, func(s float64) float64 { return 4*load + math.Sin(s/350) + 0.3*math.Sin(s/40) + 1 }},
		{"sage_cpu_cores", nil, func(float64) float64 { return 4 }},
		{"node_network_receive_bytes_total", []string{"device", "eth0"}, func(s float64) float64 { return 125000*s - 30e6*math.Cos(s/500) }},
		{"node_network_transmit_bytes_total", []string{"device", "eth0"}, func(s float64) float64 { return 40000*s + 8e6*math.Sin(s/450) }},
		{"node_network_receive_bytes_total", []string{"device", "lo"}, func(s float64) float64 { return 9e9 * s }},
		{"node_disk_read_bytes_total", []string{"device", "sda"}, func(s float64) float64 { return 2e6*s - 4e8*math.Cos(s/250) }},
		{"node_disk_written_bytes_total", []string{"device", "sda"}, func(s float64) float64 { return 5e5*s + 1e8*math.Sin(s/600) }},
	}
	out = append(out, fs("/", "ext4", (1-0.3-0.5*load)*100e9, 100e9)...)
	out = append(out, fs("/var", "xfs", 80e9, 100e9)...)
	out = append(out, fs("/run", "tmpfs", 1, 100)...)
	return out
}

// hostSeries writes history of an agent's series for a host, every scrape interval up to now, as
// the TSDB would hold them after real scrapes; an hour or more of history has a gap of ten
// minutes from 25 minutes in. instance, when set, is the instance label, so that scrapes of a
// stub at that address continue the same series.
func (e *env) hostSeries(clientSlug, host, instance string, load float64, history time.Duration) time.Time {
	e.t.Helper()
	app := e.metrics.Appender(ctx)
	end := time.Now().Truncate(time.Second)
	start := end.Add(-history)
	gap := history >= time.Hour
	defs := agentSeries(load)
	lbls := make([]labels.Labels, len(defs))
	for i, d := range defs {
		l := append([]string{"__name__", d.name, "job", AgentJob, "client", clientSlug, "host", host}, d.labels...)
		if instance != "" {
			l = append(l, "instance", instance)
		}
		lbls[i] = labels.FromStrings(l...)
	}
	for i := 0; ; i++ {
		ts := start.Add(time.Duration(i) * testInterval)
		if ts.After(end) {
			break
		}
		if gap && ts.After(start.Add(25*time.Minute)) && ts.Before(start.Add(35*time.Minute)) {
			continue // the agent was away
		}
		secs := float64(ts.Sub(start) / time.Second)
		for j, d := range defs {
			if _, err := app.Append(0, lbls[j], ts.UnixMilli(), d.v(secs)); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		e.t.Fatal(err)
	}
	return start
}

// agentHost starts a stub agent whose /metrics continue the series hostSeries wrote, and returns
// its address for a scrape target.
func (e *env) agentHost(clientSlug, host string, load float64, history time.Duration) string {
	e.t.Helper()
	var start atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secs := time.Since(time.UnixMilli(start.Load())).Seconds()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		for _, d := range agentSeries(load) {
			var l []string
			for i := 0; i < len(d.labels); i += 2 {
				l = append(l, fmt.Sprintf("%s=%q", d.labels[i], d.labels[i+1]))
			}
			fmt.Fprintf(w, "%s{%s} %g\n", d.name, strings.Join(l, ","), d.v(secs))
		}
	}))
	e.t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	start.Store(e.hostSeries(clientSlug, host, addr, load, history).UnixMilli())
	return addr
}

// must fails the test unless the response has the status and holds every string.
func must(t testing.TB, what string, r response, code int, contains ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: status %d, want %d\n%s", what, r.code, code, excerpt(r.body))
	}
	for _, s := range contains {
		if !strings.Contains(r.body, s) {
			t.Errorf("%s: the page lacks %q\n%s", what, s, excerpt(r.body))
		}
	}
}

func excerpt(s string) string {
	if i := strings.Index(s, `<main`); i >= 0 {
		s = s[i:]
	}
	if len(s) > 3000 {
		s = s[:3000] + "..."
	}
	return s
}

func each(t *testing.T, body func(t *testing.T, e *env)) {
	storetest.Each(t, func(t *testing.T, db *store.DB) { body(t, newEnv(t, db)) })
}

func mustDate(t testing.TB, s string) time.Time {
	t.Helper()
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
