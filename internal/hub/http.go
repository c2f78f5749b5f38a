package hub

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/changelog"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/metricstore"
)

// maxEnrolBody bounds an enrolment request; real ones are a few hundred bytes.
const maxEnrolBody = 64 << 10

// MachineIDHeader names the enrolled machine a remote-write request comes from; with the
// enrolment token it decides which host's labels the samples get.
const MachineIDHeader = "Sage-Machine-Id"

// routes: the hub's own endpoints (health, enrolment, agents' remote write) and the query API,
// the REST API and the web UI. The more specific patterns win in ServeMux, so POST
// /api/v1/enrol and /api/v1/write stay the hub's although the REST API has /api/v1/.
func (h *Hub) routes(prom, rest, ui http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	// Readiness, unlike liveness, needs the state store: a load balancer should send requests
	// elsewhere while this hub's database is away.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := h.db.PingContext(ctx); err != nil {
			h.logger.Warn("not ready: the state store does not answer", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("the state store is unavailable\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("/prometheus/", h.auth.MiddlewareWith(auth.MiddlewareOptions{Logger: h.logger.With("component", "auth")}, prom))
	mux.HandleFunc("POST /api/v1/enrol", h.handleEnrol)
	mux.HandleFunc("POST /api/v1/write", h.handleRemoteWrite)
	mux.HandleFunc("GET /api/v1/peers", h.handlePeers)
	mux.HandleFunc("POST /api/v1/changes", h.handleChanges)
	// Grafana's annotation data source authenticates as its Prometheus one does: an API token.
	mux.Handle("/grafana/changes/", h.auth.MiddlewareWith(auth.MiddlewareOptions{Logger: h.logger.With("component", "auth")},
		http.StripPrefix("/grafana/changes", changelog.GrafanaHandler(h.changes, h.logger.With("component", "grafana")))))
	mux.Handle("/api/v1/", h.auth.MiddlewareWith(auth.MiddlewareOptions{Logger: h.logger.With("component", "auth")}, rest))
	h.alertingRoutes(mux, func(next http.Handler) http.Handler {
		return h.auth.MiddlewareWith(auth.MiddlewareOptions{Logger: h.logger.With("component", "auth")}, next)
	})
	// The UI authenticates its own pages (it serves the login page and static files openly).
	mux.Handle("/", ui)
	return mux
}

// enrolmentToken returns the configured token the request's Bearer credential matches. Every
// token is compared in constant time so that timing reveals nothing about any of them.
func (h *Hub) enrolmentToken(r *http.Request) (enrolToken, bool) {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return enrolToken{}, false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(cred)))
	var (
		found enrolToken
		hit   bool
	)
	for _, t := range h.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.hash[:]) == 1 {
			found, hit = t, true
		}
	}
	return found, hit
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="sage hub enrolment"`)
	writeJSON(w, http.StatusUnauthorized, apiError{Error: "a valid enrolment token is required"})
}

type apiError struct {
	Error  string              `json:"error"`
	Fields []config.FieldError `json:"fields,omitempty"`
}

// EnrolResponse is the answer to an enrolment.
type EnrolResponse struct {
	HostID  string           `json:"host_id"`
	Name    string           `json:"name"`
	Status  inventory.Status `json:"status"`
	Created bool             `json:"created"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// handleEnrol registers (or refreshes) the agent's machine as a host of the token's client.
func (h *Hub) handleEnrol(w http.ResponseWriter, r *http.Request) {
	tok, ok := h.enrolmentToken(r)
	if !ok {
		unauthorized(w)
		return
	}
	var e inventory.Enrolment
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEnrolBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "request body is not a valid enrolment: " + err.Error()})
		return
	}
	e.AutoApprove = tok.autoApprove
	host, created, err := h.inv.EnrolHost(r.Context(), tok.clientID, e)
	if fe := inventory.FieldErrors(err); fe != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "enrolment refused", Fields: fe})
		return
	}
	if err != nil {
		h.logger.Error("enrolment failed", "client", tok.clientSlug, "hostname", e.Hostname, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "enrolment could not be stored; try again"})
		return
	}
	h.logger.Info("host enrolled", "client", tok.clientSlug, "host", host.Name, "host_id", host.ID,
		"created", created, "status", string(host.Status))
	h.HostsChanged()
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, EnrolResponse{HostID: host.ID, Name: host.Name, Status: host.Status, Created: created})
}

// handleRemoteWrite accepts Prometheus remote write from an enrolled, active host (for agents
// the hub cannot reach). The series get the host's target labels, overriding the sender's, so a
// token holder can write only as a host of the token's client.
func (h *Hub) handleRemoteWrite(w http.ResponseWriter, r *http.Request) {
	tok, ok := h.enrolmentToken(r)
	if !ok {
		unauthorized(w)
		return
	}
	mid := strings.TrimSpace(r.Header.Get(MachineIDHeader))
	if mid == "" {
		http.Error(w, MachineIDHeader+" header is required", http.StatusBadRequest)
		return
	}
	hosts, err := h.inv.ListHosts(r.Context(), inventory.HostFilter{ClientID: tok.clientID, MachineID: mid})
	if err != nil {
		h.logger.Error("remote write: looking up host failed", "err", err)
		http.Error(w, "host look-up failed; try again", http.StatusServiceUnavailable)
		return
	}
	if len(hosts) != 1 || hosts[0].Status != inventory.StatusActive {
		// Not a 4xx that a sender drops data for silently: the host must enrol or be approved.
		http.Error(w, "this machine is not an active enrolled host of the token's client", http.StatusForbidden)
		return
	}
	clients, sites, err := h.labelMaps(r.Context())
	if err != nil {
		h.logger.Error("remote write: looking up labels failed", "err", err)
		http.Error(w, "label look-up failed; try again", http.StatusServiceUnavailable)
		return
	}
	l := hostLabels(hosts[0], clients, sites)
	l["job"] = AgentJob
	l["instance"] = hosts[0].Name
	if t, err := agentTarget(hosts[0].AgentURL); err == nil {
		l["instance"] = t.Address // the same series as when it is scraped
	}
	h.metrics.RemoteWriteHandler().ServeHTTP(w, r.WithContext(metricstore.WithTargetLabels(r.Context(), l)))
}
