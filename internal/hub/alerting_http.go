package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/serversage/sage/internal/alert"
	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/manual"
)

// maxAlertingBody bounds an override or silence request.
const maxAlertingBody = 64 << 10

// alertingRoutes adds the alerting API (behind authentication), the Alertmanager receiver, the
// acknowledgement link pages (authenticated by the link's own secret) and runbooks.
func (h *Hub) alertingRoutes(mux *http.ServeMux, authed func(http.Handler) http.Handler) {
	mux.Handle("POST /api/v1/alertmanager", authed(h.alerts.WebhookHandler()))
	mux.Handle("GET /api/v1/incidents", authed(http.HandlerFunc(h.listIncidents)))
	mux.Handle("GET /api/v1/incidents/{id}", authed(http.HandlerFunc(h.getIncident)))
	mux.Handle("POST /api/v1/incidents/{id}/ack", authed(http.HandlerFunc(h.ackIncident)))
	mux.Handle("POST /api/v1/incidents/{id}/resolve", authed(http.HandlerFunc(h.resolveIncident)))
	mux.Handle("GET /api/v1/overrides", authed(http.HandlerFunc(h.listOverrides)))
	mux.Handle("POST /api/v1/overrides", authed(http.HandlerFunc(h.saveOverride)))
	mux.Handle("PUT /api/v1/overrides/{id}", authed(http.HandlerFunc(h.saveOverride)))
	mux.Handle("DELETE /api/v1/overrides/{id}", authed(http.HandlerFunc(h.deleteOverride)))
	mux.Handle("GET /api/v1/watermarks", authed(http.HandlerFunc(h.effectiveWatermarks)))
	mux.Handle("GET /api/v1/silences", authed(http.HandlerFunc(h.listSilences)))
	mux.Handle("POST /api/v1/silences", authed(http.HandlerFunc(h.createSilence)))
	mux.Handle("DELETE /api/v1/silences/{id}", authed(http.HandlerFunc(h.expireSilence)))
	mux.Handle("GET /api/v1/rules", authed(http.HandlerFunc(h.listRules)))
	mux.Handle("GET /api/v1/manual", authed(http.HandlerFunc(h.manualDownload)))
	mux.HandleFunc("GET /ack/{token}", h.ackPage)
	mux.HandleFunc("POST /ack/{token}", h.ackPost)
	mux.Handle("GET /runbooks/{alert}", authed(http.HandlerFunc(h.runbookPage)))
	h.oncallRoutes(mux, authed)
}

func actor(r *http.Request) string {
	if u, ok := auth.UserFrom(r.Context()); ok {
		return u.Username
	}
	return ""
}

// alertingError maps the alerting package's errors to the API's JSON errors.
func (h *Hub) alertingError(w http.ResponseWriter, err error) {
	if fe := config.FieldErrors(err); fe != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "invalid input", Fields: fe})
		return
	}
	var re *alert.RulesError
	switch {
	case errors.Is(err, alert.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{Error: "not found"})
	case errors.As(err, &re):
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
	default:
		h.logger.Error("alerting request failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "the state store is unavailable; retry"})
	}
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAlertingBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "invalid JSON: " + err.Error()})
		return false
	}
	return true
}

func (h *Hub) listIncidents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	offset, _ := strconv.Atoi(q.Get("offset"))
	f := alert.IncidentFilter{Open: q.Get("open") == "true", Status: q.Get("status"), ClientID: q.Get("client_id"),
		HostID: q.Get("host_id"), Limit: limit, Offset: offset}
	list, err := h.alerts.ListIncidents(r.Context(), f)
	if err != nil {
		h.alertingError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": list})
}

func (h *Hub) getIncident(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	in, err := h.alerts.GetIncident(r.Context(), id)
	if err != nil {
		h.alertingError(w, err)
		return
	}
	events, err := h.alerts.Events(r.Context(), id)
	if err != nil {
		h.alertingError(w, err)
		return
	}
	alerts, err := h.alerts.IncidentAlerts(r.Context(), id)
	if err != nil {
		h.alertingError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"incident": in, "alerts": alerts, "timeline": events,
		"action_plan": h.alerts.ActionPlan(in.Alertname)})
}

func (h *Hub) ackIncident(w http.ResponseWriter, r *http.Request) {
	in, err := h.alerts.Acknowledge(r.Context(), r.PathValue("id"), actor(r), map[string]any{"via": "api"})
	if err != nil {
		h.alertingError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func (h *Hub) resolveIncident(w http.ResponseWriter, r *http.Request) {
	in, err := h.alerts.Resolve(r.Context(), r.PathValue("id"), actor(r))
	if err != nil {
		h.alertingError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}

func (h *Hub) listOverrides(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	list, err := h.alerts.ListOverrides(r.Context(), alert.OverrideFilter{Alert: q.Get("alert"), ClientID: q.Get("client_id"), HostID: q.Get("host_id")})
	if err != nil {
		h.alertingError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": list})
}

// overrideInput is what a client may set; ids and times are the hub's.
type overrideInput struct {
	Alert     string      `json:"alert"`
	Scope     alert.Scope `json:"scope"`
	ClientID  string      `json:"client_id"`
	SiteID    string      `json:"site_id"`
	HostID    string      `json:"host_id"`
	ServiceID string      `json:"service_id"`
	UnitLabel string      `json:"unit_label"`
	UnitValue string      `json:"unit_value"`
	Value     *float64    `json:"value"`
	Comment   string      `json:"comment"`
}

func (h *Hub) saveOverride(w http.ResponseWriter, r *http.Request) {
	var in overrideInput
	if !decodeBody(w, r, &in) {
		return
	}
	if in.Value == nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "invalid input", Fields: []config.FieldError{{Field: "value", Msg: "required"}}})
		return
	}
	o := alert.Override{ID: r.PathValue("id"), Alert: in.Alert, Scope: in.Scope, ClientID: in.ClientID, SiteID: in.SiteID,
		HostID: in.HostID, ServiceID: in.ServiceID, UnitLabel: in.UnitLabel, UnitValue: in.UnitValue, Value: *in.Value,
		Comment: in.Comment, CreatedBy: actor(r)}
	saved, err := h.alerts.SaveOverride(r.Context(), o)
	if err != nil {
		h.alertingError(w, err)
		return
	}
	code := http.StatusOK
	if o.ID == "" {
		code = http.StatusCreated
	}
	writeJSON(w, code, saved)
}

func (h *Hub) deleteOverride(w http.ResponseWriter, r *http.Request) {
	if err := h.alerts.DeleteOverride(r.Context(), r.PathValue("id")); err != nil {
		h.alertingError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// effectiveWatermarks answers GET /api/v1/watermarks?client=<slug>&host=<name>.
func (h *Hub) effectiveWatermarks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client") == "" || q.Get("host") == "" {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "client (slug) and host (name) are required"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": h.alerts.EffectiveFor(q.Get("client"), q.Get("host"))})
}

func (h *Hub) listSilences(w http.ResponseWriter, r *http.Request) {
	list, err := h.alerts.ListSilences(r.Context(), r.URL.Query().Get("all") == "true")
	if err != nil {
		h.alertingError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": list})
}

type silenceInput struct {
	Kind       string          `json:"kind"`
	Matchers   []alert.Matcher `json:"matchers"`
	ClientID   string          `json:"client_id"`
	HostID     string          `json:"host_id"`
	StartsAt   time.Time       `json:"starts_at"`
	EndsAt     time.Time       `json:"ends_at"`
	Recurrence string          `json:"recurrence"`
	Duration   string          `json:"duration"`
	Timezone   string          `json:"timezone"`
	Comment    string          `json:"comment"`
}

func (h *Hub) createSilence(w http.ResponseWriter, r *http.Request) {
	var in silenceInput
	if !decodeBody(w, r, &in) {
		return
	}
	var d time.Duration
	if in.Duration != "" {
		var err error
		if d, err = time.ParseDuration(in.Duration); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "invalid input", Fields: []config.FieldError{{Field: "duration", Msg: err.Error()}}})
			return
		}
	}
	s, err := h.alerts.CreateSilence(r.Context(), alert.Silence{Kind: in.Kind, Matchers: in.Matchers, ClientID: in.ClientID, HostID: in.HostID,
		StartsAt: in.StartsAt, EndsAt: in.EndsAt, Recurrence: in.Recurrence, Duration: d, Timezone: in.Timezone, Comment: in.Comment,
		CreatedBy: actor(r)})
	if err != nil {
		h.alertingError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, s)
}

func (h *Hub) expireSilence(w http.ResponseWriter, r *http.Request) {
	if err := h.alerts.ExpireSilence(r.Context(), r.PathValue("id")); err != nil {
		h.alertingError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ruleView is a rule as the API lists it.
type ruleView struct {
	Name        string               `json:"name"`
	Group       string               `json:"group"`
	Severity    string               `json:"severity"`
	Expr        string               `json:"expr"`
	For         string               `json:"for"`
	Watermark   *alert.WatermarkSpec `json:"watermark,omitempty"`
	ActionPlan  []string             `json:"action_plan,omitempty"`
	Annotations map[string]string    `json:"annotations"`
}

func (h *Hub) listRules(w http.ResponseWriter, r *http.Request) {
	var out []ruleView
	for _, rl := range h.pack.Rules() {
		v := ruleView{Name: rl.Name, Group: rl.Group, Severity: rl.Severity, Expr: rl.Expr, For: rl.For.String(),
			ActionPlan: rl.Runbook.ActionPlan, Annotations: rl.Annotations}
		if s, ok := h.alerts.Spec(rl.Name); ok {
			v.Watermark = &s
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
}

var ackTmpl = template.Must(template.New("ack").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} - ServerSage</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}
button{font-size:1.1rem;padding:.6rem 1.4rem;background:#b42318;color:#fff;border:0;border-radius:4px}
.ok{color:#067647}.err{color:#b42318}</style></head><body>
<h1>{{.Title}}</h1>
{{if .Error}}<p class="err">{{.Error}}</p>{{else}}
<p><strong>{{.Incident.Severity}}</strong> {{.Incident.Title}}{{with .Incident.Labels.host}} on {{.}}{{end}}, since {{.Incident.StartedAt.Format "2006-01-02 15:04 MST"}}.</p>
<p>Status: <strong>{{.Incident.Status}}</strong>{{with .Incident.AckedBy}} by {{.}}{{end}}</p>
{{if eq .Incident.Status "firing"}}
<form method="post"><button type="submit">Acknowledge</button></form>
<p>Acknowledging stops the escalation: you own this incident now.</p>
{{else if .Done}}<p class="ok">Acknowledged. Follow the runbook's action plan.</p>{{end}}
{{with .ActionPlan}}<h2>L1 action plan</h2><ol>{{range .}}<li>{{.}}</li>{{end}}</ol>{{end}}
{{end}}</body></html>`))

type ackPageData struct {
	Title      string
	Error      string
	Incident   alert.Incident
	ActionPlan []string
	Done       bool
}

// ackPage shows what an acknowledgement link acknowledges. The GET changes nothing: mail scanners
// and link previews fetch links, and must not acknowledge on the engineer's behalf.
func (h *Hub) ackPage(w http.ResponseWriter, r *http.Request) {
	h.renderAck(w, r, false)
}

func (h *Hub) ackPost(w http.ResponseWriter, r *http.Request) {
	if _, err := h.alerts.AckWithToken(r.Context(), r.PathValue("token")); err != nil && !errors.Is(err, alert.ErrAckToken) {
		h.logger.Error("acknowledging by link", "err", err)
	}
	h.renderAck(w, r, true)
}

func (h *Hub) renderAck(w http.ResponseWriter, r *http.Request, done bool) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer") // the URL is the secret
	d := ackPageData{Title: "Acknowledge incident", Done: done}
	l, err := h.alerts.LookupAckToken(r.Context(), r.PathValue("token"))
	if err == nil {
		d.Incident, err = h.alerts.GetIncident(r.Context(), l.IncidentID)
	}
	if err != nil {
		d.Error = alert.ErrAckToken.Error()
		if !errors.Is(err, alert.ErrAckToken) && !errors.Is(err, alert.ErrNotFound) {
			d.Error = "the hub cannot read the incident now; retry in a moment"
		}
		w.WriteHeader(http.StatusNotFound)
	} else {
		d.ActionPlan = h.alerts.ActionPlan(d.Incident.Alertname)
	}
	_ = ackTmpl.Execute(w, d)
}

var runbookTmpl = template.Must(template.New("rb").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Name}} runbook - ServerSage</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}code,pre{background:#f2f4f7;padding:.1rem .3rem}pre{padding:.6rem;overflow:auto}</style>
</head><body><p><a href="/">ServerSage</a></p><h1>{{.Name}}</h1>
<p>Severity <strong>{{.Severity}}</strong>{{with .Watermark}}; default watermark {{.}}{{end}}</p>
<pre>{{.Expr}}</pre>{{.Body}}</body></html>`))

func (h *Hub) runbookPage(w http.ResponseWriter, r *http.Request) {
	rl, ok := h.pack.Rule(r.PathValue("alert"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	body, err := h.pack.RenderRunbookHTML(rl.Name)
	if err != nil {
		http.Error(w, "this alert has no runbook", http.StatusNotFound)
		return
	}
	wm := ""
	if rl.Watermark != nil {
		wm = rl.Watermark.Describe()
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = runbookTmpl.Execute(w, map[string]any{"Name": rl.Name, "Severity": rl.Severity, "Expr": rl.Expr, "Watermark": wm, "Body": body})
}

// manualInput is the live manual: the active rule set, and each client's overridden watermarks.
func (h *Hub) manualInput(r *http.Request) (manual.Input, error) {
	ctx := r.Context()
	in := manual.FromPack(h.pack, "", time.Now())
	ovs, err := h.alerts.ListOverrides(ctx, alert.OverrideFilter{})
	if err != nil {
		return manual.Input{}, err
	}
	clients, err := h.inv.ListClients(ctx, inventory.ClientFilter{})
	if err != nil {
		return manual.Input{}, err
	}
	sites, err := h.inv.ListSites(ctx, inventory.SiteFilter{})
	if err != nil {
		return manual.Input{}, err
	}
	siteName := map[string]string{}
	for _, s := range sites {
		siteName[s.ID] = s.Name
	}
	hostName := map[string]string{}
	byClient := map[string][]manual.Override{}
	for _, o := range ovs {
		scope := ""
		switch o.Scope {
		case alert.ScopeClient:
			scope = "client"
		case alert.ScopeSite:
			scope = "site " + siteName[o.SiteID]
		default:
			name, ok := hostName[o.HostID]
			if !ok {
				if host, err := h.inv.GetHost(ctx, o.HostID); err == nil {
					name = host.Name
				}
				hostName[o.HostID] = name
			}
			scope = "host " + name
		}
		if o.UnitLabel != "" {
			scope += " " + o.UnitLabel + " " + o.UnitValue
		}
		unit := ""
		if s, ok := h.alerts.Spec(o.Alert); ok {
			unit = s.Unit
		}
		byClient[o.ClientID] = append(byClient[o.ClientID], manual.Override{Alert: o.Alert, Scope: scope, Value: o.Value, Unit: unit})
	}
	for _, c := range clients {
		if len(byClient[c.ID]) > 0 {
			in.Clients = append(in.Clients, manual.Client{Name: c.Name, Overrides: byClient[c.ID]})
		}
	}
	return in, nil
}

// manualDownload serves the L1 training manual built from the live rules and overrides:
// GET /api/v1/manual?format=html|pdf (also linked from the UI).
func (h *Hub) manualDownload(w http.ResponseWriter, r *http.Request) {
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "html"
	}
	if format != "html" && format != "pdf" {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "format: html or pdf"})
		return
	}
	in, err := h.manualInput(r)
	if err != nil {
		h.alertingError(w, err)
		return
	}
	var buf bytes.Buffer
	render := manual.HTML
	ctype := "text/html; charset=utf-8"
	if format == "pdf" {
		render, ctype = manual.PDF, "application/pdf"
	}
	if err := render(&buf, in); err != nil {
		h.logger.Error("building the manual", "format", format, "err", err)
		writeJSON(w, http.StatusInternalServerError, apiError{Error: "could not build the manual"})
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", `attachment; filename="sage-l1-manual.`+format+`"`)
	_, _ = w.Write(buf.Bytes())
}
