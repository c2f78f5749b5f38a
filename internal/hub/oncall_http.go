package hub

import (
	"errors"
	"net/http"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/oncall"
)

// oncallRoutes adds the JSON API of contacts, rotas and escalation policies, so that who is
// paged, when, can be set up by a script (and by the end-to-end tests, which drive the real
// binary) as well as in the UI. Rota overrides are not in it yet.
func (h *Hub) oncallRoutes(mux *http.ServeMux, authed func(http.Handler) http.Handler) {
	route := func(pattern string, f http.HandlerFunc) { mux.Handle(pattern, authed(f)) }
	route("GET /api/v1/contacts", h.listContacts)
	route("POST /api/v1/contacts", h.createContact)
	route("GET /api/v1/contacts/{user_id}", h.getContact)
	route("PUT /api/v1/contacts/{user_id}", h.putContact)
	route("DELETE /api/v1/contacts/{user_id}", h.deleteContact)
	route("GET /api/v1/rotas", h.listRotas)
	route("POST /api/v1/rotas", h.saveRota)
	route("GET /api/v1/rotas/{id}", h.getRota)
	route("PUT /api/v1/rotas/{id}", h.saveRota)
	route("DELETE /api/v1/rotas/{id}", h.deleteRota)
	route("GET /api/v1/policies", h.listPolicies)
	route("POST /api/v1/policies", h.savePolicy)
	route("GET /api/v1/policies/{id}", h.getPolicy)
	route("PUT /api/v1/policies/{id}", h.savePolicy)
	route("DELETE /api/v1/policies/{id}", h.deletePolicy)
}

// oncallError maps the on-call store's errors as the inventory API maps the inventory's: field
// errors 400, unknown id 404, a record the hub depends on 409.
func (h *Hub) oncallError(w http.ResponseWriter, err error) {
	if fe := oncall.FieldErrors(err); fe != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "invalid input", Fields: fe})
		return
	}
	switch {
	case errors.Is(err, oncall.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{Error: "not found"})
	case errors.Is(err, oncall.ErrInUse):
		writeJSON(w, http.StatusConflict, apiError{Error: err.Error()})
	default:
		h.logger.Error("on-call request failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "the state store is unavailable; retry"})
	}
}

// contactInput is what a client may set of a contact; the user comes from the path (PUT) or
// the body (POST), the time is the hub's.
type contactInput struct {
	UserID   string   `json:"user_id"`
	Email    string   `json:"email"`
	Phone    string   `json:"phone"`
	Channels []string `json:"channels"`
}

func (in contactInput) contact() oncall.Contact {
	return oncall.Contact{UserID: in.UserID, Email: in.Email, Phone: in.Phone, Channels: in.Channels}
}

func (h *Hub) listContacts(w http.ResponseWriter, r *http.Request) {
	list, err := h.oncall.ListContacts(r.Context())
	if err != nil {
		h.oncallError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": nonNil(list)})
}

func (h *Hub) createContact(w http.ResponseWriter, r *http.Request) {
	var in contactInput
	if !decodeBody(w, r, &in) {
		return
	}
	c, err := h.oncall.CreateContact(r.Context(), in.contact())
	if err != nil {
		h.oncallError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (h *Hub) getContact(w http.ResponseWriter, r *http.Request) {
	c, err := h.oncall.GetContact(r.Context(), r.PathValue("user_id"))
	if err != nil {
		h.oncallError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// putContact creates or replaces a user's contact details: the user exists already, so PUT on
// its id is the natural way to set them.
func (h *Hub) putContact(w http.ResponseWriter, r *http.Request) {
	var in contactInput
	if !decodeBody(w, r, &in) {
		return
	}
	if in.UserID != "" && in.UserID != r.PathValue("user_id") {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "invalid input", Fields: []config.FieldError{{Field: "user_id", Msg: "differs from the user id in the path"}}})
		return
	}
	in.UserID = r.PathValue("user_id")
	c, err := h.oncall.SetContact(r.Context(), in.contact())
	if err != nil {
		h.oncallError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (h *Hub) deleteContact(w http.ResponseWriter, r *http.Request) {
	if err := h.oncall.DeleteContact(r.Context(), r.PathValue("user_id")); err != nil {
		h.oncallError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// rotaInput is what a client may set of a rota. Overrides are written on their own, so a PUT
// keeps them.
type rotaInput struct {
	Name        string          `json:"name"`
	Tier        oncall.Tier     `json:"tier"`
	ClientID    string          `json:"client_id"`
	TimeZone    string          `json:"time_zone"`
	Handover    string          `json:"handover"`
	ShiftLength oncall.Duration `json:"shift_length"`
	StartDate   string          `json:"start_date"`
	Members     []string        `json:"members"`
}

func (h *Hub) listRotas(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	list, err := h.oncall.ListRotas(r.Context(), oncall.RotaFilter{Tier: oncall.Tier(q.Get("tier")), ClientID: q.Get("client_id")})
	if err != nil {
		h.oncallError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": nonNil(list)})
}

func (h *Hub) getRota(w http.ResponseWriter, r *http.Request) {
	rota, err := h.oncall.GetRota(r.Context(), r.PathValue("id"))
	if err != nil {
		h.oncallError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rota)
}

// saveRota is POST (create) and PUT (replace every writable field).
func (h *Hub) saveRota(w http.ResponseWriter, r *http.Request) {
	var in rotaInput
	if !decodeBody(w, r, &in) {
		return
	}
	rota := oncall.Rota{ID: r.PathValue("id"), Name: in.Name, Tier: in.Tier, ClientID: in.ClientID, TimeZone: in.TimeZone,
		Handover: in.Handover, ShiftLength: in.ShiftLength, StartDate: in.StartDate, Members: in.Members}
	var (
		saved oncall.Rota
		err   error
	)
	code := http.StatusOK
	if rota.ID == "" {
		saved, err = h.oncall.CreateRota(r.Context(), rota)
		code = http.StatusCreated
	} else {
		saved, err = h.oncall.UpdateRota(r.Context(), rota)
	}
	if err != nil {
		h.oncallError(w, err)
		return
	}
	writeJSON(w, code, saved)
}

func (h *Hub) deleteRota(w http.ResponseWriter, r *http.Request) {
	if err := h.oncall.DeleteRota(r.Context(), r.PathValue("id")); err != nil {
		h.oncallError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// policyInput is what a client may set of an escalation policy.
type policyInput struct {
	Name     string        `json:"name"`
	ClientID string        `json:"client_id"`
	Severity string        `json:"severity"`
	Steps    []oncall.Step `json:"steps"`
}

func (h *Hub) listPolicies(w http.ResponseWriter, r *http.Request) {
	list, err := h.oncall.ListPolicies(r.Context())
	if err != nil {
		h.oncallError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": nonNil(list)})
}

func (h *Hub) getPolicy(w http.ResponseWriter, r *http.Request) {
	p, err := h.oncall.GetPolicy(r.Context(), r.PathValue("id"))
	if err != nil {
		h.oncallError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// savePolicy is POST (create) and PUT (replace every writable field). Incidents already under
// the policy follow the edited steps from their current position.
func (h *Hub) savePolicy(w http.ResponseWriter, r *http.Request) {
	var in policyInput
	if !decodeBody(w, r, &in) {
		return
	}
	p := oncall.Policy{ID: r.PathValue("id"), Name: in.Name, ClientID: in.ClientID, Severity: in.Severity, Steps: in.Steps}
	var (
		saved oncall.Policy
		err   error
	)
	code := http.StatusOK
	if p.ID == "" {
		saved, err = h.oncall.CreatePolicy(r.Context(), p)
		code = http.StatusCreated
	} else {
		saved, err = h.oncall.UpdatePolicy(r.Context(), p)
	}
	if err != nil {
		h.oncallError(w, err)
		return
	}
	h.alerts.Wake() // a shorter wait may make an incident due now
	writeJSON(w, code, saved)
}

func (h *Hub) deletePolicy(w http.ResponseWriter, r *http.Request) {
	if err := h.oncall.DeletePolicy(r.Context(), r.PathValue("id")); err != nil {
		h.oncallError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}
