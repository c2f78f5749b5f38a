// Package web is the hub's web UI for people: server-rendered pages (html/template) that htmx
// keeps live, for the overview of the estate, hosts with their health and charts, and the
// inventory's clients, sites, hosts, services and contracts with their forms.
//
// Everything is rendered on the server, charts included (inline SVG), so the UI needs no build
// step and works without JavaScript except for live refresh; htmx (embedded, see static/NOTICE)
// only replaces parts of a page. Pages are behind the auth package's session cookie; every form
// and every htmx request carries the session's CSRF token. A Content-Security-Policy allows only
// this hub's own scripts and styles, so an injected attribute or tag cannot run anything.
package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"runtime"
	"strings"
	"time"

	"github.com/serversage/sage/internal/alert"
	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/changelog"
	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/metricstore"
	"github.com/serversage/sage/internal/notify"
	"github.com/serversage/sage/internal/oncall"
	"github.com/serversage/sage/internal/rulepack"
	"github.com/serversage/sage/internal/store"
)

// AgentJob is the scrape job of enrolled agents, whose series the host pages chart. It must equal
// the hub's job name (hub.AgentJob); web cannot import hub, which imports web.
const AgentJob = "sage-agent"

// Options are what the UI is built from. Inventory, Auth and Metrics are required; Health may
// be nil (every host then shows as unmonitored).
type Options struct {
	Inventory *inventory.Inventory
	Auth      *auth.Auth
	// Metrics answers the range queries of the host charts (Engine, Queryable).
	Metrics *metricstore.Store
	// Health gives each host's live state: Get(hosthealth.Key{Client: slug, Host: name}).
	Health *hosthealth.Tracker
	// ScrapeInterval is how often live parts of pages refresh: nothing changes faster.
	ScrapeInterval time.Duration
	Logger         *slog.Logger
	// HostsChanged is called after the UI creates, changes, approves or deletes a host (and after a
	// client's or site's change, which renames labels), so the scrape targets follow at once.
	HostsChanged func()
	// Alerts, OnCall, Pack and Outbox are the alerting parts behind the incident, rule, silence
	// and on-call pages (alerts.go); with Alerts nil those pages answer 404.
	Alerts *alert.Engine
	OnCall *oncall.Store
	Pack   *rulepack.Pack
	Outbox notify.Querier // the state store: each incident's notifications and their results
	// Changes is the hosts' change events (changes.go); with it nil those pages answer 404.
	Changes *changelog.Store
}

// UI serves the web pages.
type UI struct {
	inv          *inventory.Inventory
	auth         *auth.Auth
	metrics      *metricstore.Store
	health       *hosthealth.Tracker
	interval     time.Duration
	logger       *slog.Logger
	hostsChanged func()
	alerting     alerting
	changes      *changelog.Store
	// chartSlots bounds the chart queries running at once across all pages, so that many
	// host pages at once queue rather than hold every query's samples in memory together.
	chartSlots chan struct{}

	pages   map[string]*template.Template
	assets  map[string]string // static file name -> URL with a content hash, for caching forever
	handler http.Handler
	app     http.Handler // the pages behind authentication, for tests that bring their own identity
}

//go:embed static
var staticFS embed.FS

// New checks opts and parses the templates.
func New(opts Options) (*UI, error) {
	switch {
	case opts.Inventory == nil:
		return nil, errors.New("web: no inventory")
	case opts.Auth == nil:
		return nil, errors.New("web: no auth")
	case opts.Metrics == nil:
		return nil, errors.New("web: no metrics store")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ScrapeInterval <= 0 {
		opts.ScrapeInterval = metricstore.DefaultScrapeInterval
	}
	if opts.HostsChanged == nil {
		opts.HostsChanged = func() {}
	}
	u := &UI{
		inv:          opts.Inventory,
		auth:         opts.Auth,
		metrics:      opts.Metrics,
		health:       opts.Health,
		interval:     opts.ScrapeInterval,
		logger:       opts.Logger,
		hostsChanged: opts.HostsChanged,
		chartSlots:   make(chan struct{}, max(8, 4*runtime.GOMAXPROCS(0))),
		alerting:     alerting{alerts: opts.Alerts, oncall: opts.OnCall, pack: opts.Pack, outbox: opts.Outbox},
		changes:      opts.Changes,
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	if u.assets, err = assetURLs(static); err != nil {
		return nil, err
	}
	if u.pages, err = parseTemplates(u.funcs()); err != nil {
		return nil, err
	}
	u.app = u.routes()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", u.loginPage)
	mux.HandleFunc("POST /login", u.login)
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(static)))
	mux.Handle("/", u.authErrorPages(u.auth.MiddlewareWith(auth.MiddlewareOptions{
		LoginPath: "/login",
		Logger:    u.logger.With("component", "auth"),
	}, reached(u.app))))
	u.handler = securityHeaders(sameOrigin(mux))
	return u, nil
}

// Handler serves the UI; the hub mounts it at "/".
func (u *UI) Handler() http.Handler { return u.handler }

// routes are the pages that need a signed-in user.
func (u *UI) routes() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, fn func(http.ResponseWriter, *http.Request) error) {
		mux.Handle(pattern, u.handle(fn))
	}
	h("GET /{$}", u.overview)
	h("GET /_overview", u.overviewLive)
	h("POST /logout", u.logout)

	h("GET /hosts", u.hostList)
	h("GET /hosts/_table", u.hostTable)
	h("GET /hosts/new", u.hostNew)
	h("POST /hosts/new", u.hostCreate)
	h("GET /hosts/{id}", u.hostPage)
	h("GET /hosts/{id}/_health", u.hostHealthLive)
	h("GET /hosts/{id}/_charts", u.hostChartsLive)
	h("GET /hosts/{id}/changes", u.hostChanges)
	h("GET /hosts/{id}/edit", u.hostEdit)
	h("POST /hosts/{id}/edit", u.hostUpdate)
	h("POST /hosts/{id}/approve", u.hostApprove)
	h("GET /hosts/{id}/delete", u.hostDeleteConfirm)
	h("POST /hosts/{id}/delete", u.hostDelete)
	h("GET /hosts/{id}/services/new", u.serviceNew)
	h("POST /hosts/{id}/services/new", u.serviceCreate)
	h("GET /services/{id}/edit", u.serviceEdit)
	h("POST /services/{id}/edit", u.serviceUpdate)
	h("GET /services/{id}/delete", u.serviceDeleteConfirm)
	h("POST /services/{id}/delete", u.serviceDelete)

	h("GET /clients", u.clientList)
	h("GET /clients/new", u.clientNew)
	h("POST /clients/new", u.clientCreate)
	h("GET /clients/{id}", u.clientPage)
	h("GET /clients/{id}/changes", u.clientChanges)
	h("GET /clients/{id}/edit", u.clientEdit)
	h("POST /clients/{id}/edit", u.clientUpdate)
	h("GET /clients/{id}/delete", u.clientDeleteConfirm)
	h("POST /clients/{id}/delete", u.clientDelete)
	h("GET /clients/{id}/sites/new", u.siteNew)
	h("POST /clients/{id}/sites/new", u.siteCreate)
	h("GET /sites/{id}/edit", u.siteEdit)
	h("POST /sites/{id}/edit", u.siteUpdate)
	h("GET /sites/{id}/delete", u.siteDeleteConfirm)
	h("POST /sites/{id}/delete", u.siteDelete)

	h("GET /contracts", u.contractList)
	h("GET /contracts/new", u.contractNew)
	h("POST /contracts/new", u.contractCreate)
	h("GET /contracts/{id}/edit", u.contractEdit)
	h("POST /contracts/{id}/edit", u.contractUpdate)
	h("GET /contracts/{id}/delete", u.contractDeleteConfirm)
	h("POST /contracts/{id}/delete", u.contractDelete)

	u.alertRoutes(h)

	h("/", func(w http.ResponseWriter, r *http.Request) error { return errNotFound })
	return mux
}

// handle turns a handler's error into an error page: 404 for what does not exist, 503 while the
// state store is unreachable, 500 otherwise (logged, never shown: it may hold internals).
func (u *UI) handle(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = takeFlash(w, r)
		err := fn(w, r)
		if err == nil {
			return
		}
		var bad badRequestError
		switch {
		case errors.As(err, &bad):
			u.errorPage(w, r, http.StatusBadRequest, "Bad request", "The form could not be read: "+bad.Error())
		case errors.Is(err, errNotFound) || errors.Is(err, inventory.ErrNotFound):
			u.errorPage(w, r, http.StatusNotFound, "Not found", "There is no such page, or what it showed has been deleted.")
		case unavailable(err):
			u.logger.Warn("web: state store unavailable", "path", r.URL.Path, "err", err)
			w.Header().Set("Retry-After", "5")
			u.errorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable",
				"The hub cannot reach its state database just now. This page will work again as soon as it can; try again in a few seconds.")
		case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
			// The browser went away (a poll replaced by navigation): nothing to answer.
		default:
			u.logger.Error("web: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			u.errorPage(w, r, http.StatusInternalServerError, "Something went wrong",
				"The hub could not show this page. The error has been logged for the administrator.")
		}
	})
}

var errNotFound = errors.New("not found")

// badRequestError is a form that could not be read at all (too large, malformed): a 400 page.
type badRequestError struct{ err error }

func (e badRequestError) Error() string { return e.err.Error() }
func (e badRequestError) Unwrap() error { return e.err }

func badRequest(err error) error { return badRequestError{err} }

// unavailable reports whether err means the state store cannot be used now. A closed pool (the
// hub shutting down) counts too: asking again shortly reaches the next hub process.
func unavailable(err error) bool {
	return store.IsUnavailable(err) || strings.Contains(err.Error(), "sql: database is closed")
}

// errorPage answers with a page in the layout (a fragment for htmx) saying what went wrong.
func (u *UI) errorPage(w http.ResponseWriter, r *http.Request, code int, title, msg string) {
	if r.Header.Get("HX-Request") == "true" {
		// htmx swaps nothing on an error status; a live block keeps its last content.
		http.Error(w, msg, code)
		return
	}
	data := errorData{base: u.base(r, title, ""), Code: code, Message: msg}
	if code == http.StatusUnauthorized {
		data.SignIn = "/login?next=" + url.QueryEscape(currentPage(r))
	}
	u.render(w, r, code, "error", data)
}

type flashKey struct{}

// flashCookie carries a one-line message ("Client created") across the redirect after a POST.
const flashCookie = "sage_flash"

func setFlash(w http.ResponseWriter, r *http.Request, msg string) {
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: url.QueryEscape(msg), Path: "/", MaxAge: 60,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
}

// takeFlash moves the flash message, if any, from its cookie into the request's context, and
// removes the cookie, so that it shows once: on the next full page, not in an htmx fragment.
func takeFlash(w http.ResponseWriter, r *http.Request) *http.Request {
	if r.Method != http.MethodGet || r.Header.Get("HX-Request") == "true" {
		return r
	}
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return r
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	msg, err := url.QueryUnescape(c.Value)
	if err != nil || msg == "" {
		return r
	}
	if len(msg) > 300 {
		msg = strings.ToValidUTF8(msg[:300], "")
	}
	return r.WithContext(context.WithValue(r.Context(), flashKey{}, msg))
}

type errorData struct {
	base
	Code    int
	Message string
	SignIn  string
}

// base is what every page's layout shows.
type base struct {
	Title    string
	Nav      string // which nav entry is current
	User     auth.User
	CSRF     string
	Flash    string
	Refresh  int // seconds between live refreshes
	Assets   map[string]string
	SignedIn bool
}

func (u *UI) base(r *http.Request, title, nav string) base {
	b := base{Title: title, Nav: nav, Refresh: refreshSeconds(u.interval), Assets: u.assets}
	if id, ok := auth.IdentityFrom(r.Context()); ok {
		b.User, b.CSRF, b.SignedIn = id.User, id.CSRF, true
	}
	if f, ok := r.Context().Value(flashKey{}).(string); ok {
		b.Flash = f
	}
	return b
}

func refreshSeconds(d time.Duration) int {
	return max(int((d+time.Second-1)/time.Second), 1)
}

// render executes a page template with the layout; a failure is logged, and answered with a
// plain 500 if nothing was written yet (templates are executed into a buffer first).
func (u *UI) render(w http.ResponseWriter, r *http.Request, code int, page string, data any) {
	u.renderTemplate(w, code, page, "layout", data)
}

// renderFragment executes one named template of a page without the layout, for htmx.
func (u *UI) renderFragment(w http.ResponseWriter, page, name string, data any) {
	u.renderTemplate(w, http.StatusOK, page, name, data)
}

func (u *UI) renderTemplate(w http.ResponseWriter, code int, page, name string, data any) {
	t, ok := u.pages[page]
	if !ok {
		u.logger.Error("web: no such page template", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		u.logger.Error("web: rendering", "page", page, "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// redirect sends the browser to a local path after a successful POST (303: GET it).
func redirect(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// securityHeaders are set on every answer. The CSP allows this hub's scripts and styles only:
// no inline script, no inline style (htmx's indicator style is turned off in the layout), and
// SVG charts use presentation attributes, which CSP does not treat as styles.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// sameOrigin refuses unsafe requests that a browser says come from another site. The CSRF token
// already protects signed-in forms; this also covers the login form, which has no session yet
// (a forged login would sign the victim into the attacker's account).
func sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if o := r.Header.Get("Origin"); o != "" && o != "null" {
				ou, err := url.Parse(o)
				// Behind a reverse proxy that does not pass Host on, the host the browser used is in
				// X-Forwarded-Host. Trusting it here is safe: a page on another site cannot make a
				// browser send that header with a form.
				if err != nil || !(strings.EqualFold(ou.Host, r.Host) || strings.EqualFold(ou.Host, r.Header.Get("X-Forwarded-Host"))) {
					http.Error(w, "cross-site request refused", http.StatusForbidden)
					return
				}
			} else if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
				http.Error(w, "cross-site request refused", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// staticHandler serves the embedded files. URLs carry a content hash (assetURLs), so a file may
// be cached for a year: a new build changes the URL.
func staticHandler(static fs.FS) http.Handler {
	files := http.FileServerFS(static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("v") != "" {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "public, max-age=300")
		}
		files.ServeHTTP(w, r)
	})
}

func assetURLs(static fs.FS) (map[string]string, error) {
	out := map[string]string{}
	err := fs.WalkDir(static, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[p] = "/static/" + p + "?v=" + hex.EncodeToString(sum[:6])
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: static files: %w", err)
	}
	return out, nil
}

// reachedWriter lets authErrorPages tell an answer of the auth middleware (refusal, 503) from
// the page's own.
type reachedWriter struct {
	http.ResponseWriter
	reached bool
	code    int
	body    bytes.Buffer
}

func (rw *reachedWriter) WriteHeader(code int) {
	if rw.code == 0 {
		rw.code = code
	}
}

func (rw *reachedWriter) Write(b []byte) (int, error) {
	if rw.code == 0 {
		rw.code = http.StatusOK
	}
	return rw.body.Write(b)
}

// reached marks the request as having got past authentication and gives the page the real writer.
func reached(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rw, ok := w.(*reachedWriter); ok {
			rw.reached = true
			w = rw.ResponseWriter
		}
		next.ServeHTTP(w, r)
	})
}

// authErrorPages shows the auth middleware's refusals (401 on a form post whose session ended,
// 403 for a missing CSRF token, 503 when the store is down) as pages in the layout rather than
// plain text, and sends an htmx poll whose session ended to the login page.
func (u *UI) authErrorPages(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &reachedWriter{ResponseWriter: w}
		next.ServeHTTP(rw, r)
		if rw.reached {
			return
		}
		code := rw.code
		if code == 0 {
			code = http.StatusOK
		}
		if r.Header.Get("HX-Request") == "true" && (code == http.StatusUnauthorized || code == http.StatusSeeOther) {
			// An XMLHttpRequest would follow a redirect and swap the login form into a live
			// block: have htmx load the login page instead.
			w.Header().Del("Location")
			w.Header().Set("HX-Redirect", "/login?next="+url.QueryEscape(currentPage(r)))
			http.Error(w, "signed out", http.StatusUnauthorized)
			return
		}
		if code < 400 {
			w.WriteHeader(code)
			_, _ = w.Write(rw.body.Bytes())
			return
		}
		msg := strings.TrimSpace(rw.body.String())
		title := http.StatusText(code)
		switch code {
		case http.StatusUnauthorized:
			title, msg = "Signed out", "Your session has ended. Sign in again to continue; what you submitted was not saved."
		case http.StatusForbidden:
			title = "Refused"
		case http.StatusServiceUnavailable:
			w.Header().Set("Retry-After", "5")
			title = "Temporarily unavailable"
		}
		w.Header().Del("Content-Length")
		u.errorPage(w, r, code, title, msg)
	})
}

// currentPage is the page a request is for, as a local path: for htmx, the page it was made
// from (HX-Current-URL), so that signing in returns there and not to a fragment.
func currentPage(r *http.Request) string {
	if cu := r.Header.Get("HX-Current-URL"); cu != "" {
		if p, err := url.Parse(cu); err == nil && p.Path != "" {
			return localPath(p.RequestURI())
		}
	}
	if r.Method != http.MethodGet {
		return "/"
	}
	return localPath(r.URL.RequestURI())
}

// localPath returns next when it is a path on this site ("/hosts?x=1"), else "/". A value such as
// "//evil.example", "/\evil.example" or "https://evil.example" would leave the site: browsers
// read the first two as another host.
func localPath(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\\\r\n\t") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	if path.Clean(u.Path) == "/login" {
		return "/"
	}
	return next
}
