// Package api is the hub's inventory REST API under /api/v1/: clients, sites, hosts, services
// and contracts as JSON, with the OpenAPI document that describes it (openapi.yaml, served at
// /api/v1/openapi.yaml and checked against the handlers by this package's tests).
//
// The handler trusts whoever the hub put in front of it (auth.Middleware) for authentication and
// owns everything after that: routing, strict decoding (unknown fields, wrong types and trailing
// data are refused with the field named), the mapping of inventory errors to status codes, and
// paging. Every error, including 404 and 405 for paths and methods it does not serve, is the JSON
// object {"error": "...", "fields": [{"field": "...", "message": "..."}]}; a failure of the state
// store is 503, and nothing internal reaches a 500's body.
//
// Lists are paged by limit (default 100, at most 1000) and offset, and answer
// {"items": [...], "limit": n, "offset": n, "next_offset": n | null}. next_offset comes from
// fetching one row more than asked, so a page costs one query and no COUNT.
//
// A PUT replaces every writable field: an omitted field becomes empty. The fields whose empty
// value would silently mean something else (a client's slug is derived from the name, a host's
// status defaults to pending, a service's name to its type) are therefore required on PUT, so
// that approving a host or renaming a client never changes what the caller did not send. Facts
// and the machine id of a host are the agent's (written by enrolment) and read-only here.
package api

import (
	"log/slog"
	"net/http"

	"github.com/serversage/sage/internal/changelog"
	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
)

// Prefix is where the hub mounts the handler; the handler sees full paths under it.
const Prefix = "/api/v1/"

// Options configure New.
type Options struct {
	Inventory *inventory.Inventory
	// Health, when set, adds a "health" object to every host.
	Health *hosthealth.Tracker
	// Changes, when set, serves the hosts' and clients' change events.
	Changes *changelog.Store
	Logger  *slog.Logger
	// HostsChanged is called after a write that changes scrape targets or their labels (a host
	// created, updated or deleted; a client's slug or a site's name changed).
	HostsChanged func()
}

// healthFunc returns a host's health; a seam so that tests can give unknown and known figures.
type healthFunc func(hosthealth.Key) hosthealth.Health

type server struct {
	inv          *inventory.Inventory
	changes      *changelog.Store
	logger       *slog.Logger
	hostsChanged func()
	health       healthFunc // nil: hosts carry no health
	slugs        *slugCache
	facts        factsCache // the list's encoded facts (hostjson.go)
	mux          *http.ServeMux
}

// New returns the API handler, to be mounted at Prefix behind authentication.
func New(opts Options) http.Handler {
	var hf healthFunc
	if opts.Health != nil {
		hf = opts.Health.Get
	}
	return newServer(opts, hf)
}

func newServer(opts Options, health healthFunc) *server {
	s := &server{
		inv:          opts.Inventory,
		changes:      opts.Changes,
		logger:       opts.Logger,
		hostsChanged: opts.HostsChanged,
		health:       health,
		slugs:        newSlugCache(opts.Inventory),
		mux:          http.NewServeMux(),
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.hostsChanged == nil {
		s.hostsChanged = func() {}
	}
	for _, rt := range s.routes() {
		s.mux.HandleFunc(rt.method+" "+rt.pattern, rt.handler)
	}
	return s
}

// route is one method and path the handler serves; the tests check each against the OpenAPI
// document, so this list is the source of truth for what is served.
type route struct {
	method, pattern string
	handler         http.HandlerFunc
}

func (s *server) routes() []route {
	rs := []route{{http.MethodGet, Prefix + "openapi.yaml", serveSpec}}
	add := func(kind string, list, create, get, update, del http.HandlerFunc) {
		rs = append(rs,
			route{http.MethodGet, Prefix + kind, list},
			route{http.MethodPost, Prefix + kind, create},
			route{http.MethodGet, Prefix + kind + "/{id}", get},
			route{http.MethodPut, Prefix + kind + "/{id}", update},
			route{http.MethodDelete, Prefix + kind + "/{id}", del},
		)
	}
	add("clients", s.listClients, s.createClient, s.getClient, s.updateClient, s.deleteClient)
	add("sites", s.listSites, s.createSite, s.getSite, s.updateSite, s.deleteSite)
	add("hosts", s.listHosts, s.createHost, s.getHost, s.updateHost, s.deleteHost)
	add("services", s.listServices, s.createService, s.getService, s.updateService, s.deleteService)
	add("contracts", s.listContracts, s.createContract, s.getContract, s.updateContract, s.deleteContract)
	rs = append(rs,
		route{http.MethodGet, Prefix + "hosts/{id}/changes", s.listHostChanges},
		route{http.MethodGet, Prefix + "clients/{id}/changes", s.listClientChanges},
	)
	return rs
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern == "" {
		// ServeMux's own 404 and 405 answers are plain text; learn which it would give (and its
		// Allow header) without letting it write, and answer in JSON like everything else.
		h, _ := s.mux.Handler(r)
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.code {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", rec.header.Get("Allow"))
			writeError(w, http.StatusMethodNotAllowed, apiError{Error: "method " + r.Method + " is not allowed here; allowed: " + rec.header.Get("Allow")})
			return
		case http.StatusNotFound, 0:
			writeError(w, http.StatusNotFound, apiError{Error: "no such endpoint: " + r.URL.Path})
			return
		}
		// A redirect to the cleaned path: let the mux answer it.
	}
	s.mux.ServeHTTP(w, r)
}

// statusRecorder keeps the status and headers a handler would send and drops its body.
type statusRecorder struct {
	header http.Header
	code   int
}

func (r *statusRecorder) Header() http.Header { return r.header }
func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return len(b), nil
}
