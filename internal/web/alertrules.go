package web

import (
	"cmp"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/serversage/sage/internal/alert"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/inventory"
)

// ruleRow is one alert rule as the rules page lists it.
type ruleRow struct {
	Name, Group, Severity string
	Expr                  string
	For                   time.Duration
	Watermark             *alert.WatermarkSpec
	Runbook               bool
}

type ruleListData struct {
	base
	Rules []ruleRow
}

// ruleList lists every rule: from the pack when the hub gave it (expression, for, runbook), else
// what the engine knows (name, severity, watermark).
func (u *UI) ruleList(w http.ResponseWriter, r *http.Request) error {
	specs := u.alerting.alerts.Specs()
	d := ruleListData{base: u.base(r, "Rules", "rules")}
	if p := u.alerting.pack; p != nil {
		for _, rule := range p.Rules() {
			row := ruleRow{Name: rule.Name, Group: rule.Group, Severity: rule.Severity, Expr: rule.Expr, For: rule.For, Runbook: rule.HasRunbook()}
			if s, ok := specs[rule.Name]; ok {
				row.Watermark = &s
			}
			d.Rules = append(d.Rules, row)
		}
	} else {
		for name, sev := range u.alerting.alerts.Rules().Alerts {
			row := ruleRow{Name: name, Severity: sev}
			if s, ok := specs[name]; ok {
				row.Watermark = &s
			}
			d.Rules = append(d.Rules, row)
		}
	}
	slices.SortStableFunc(d.Rules, func(a, b ruleRow) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Name, b.Name))
	})
	u.render(w, r, http.StatusOK, "rules", d)
	return nil
}

// overrideFields are the override form's fields; the engine's errors on the scope's ids are
// about the scope the user chose.
var overrideFields = []string{"alert", "scope", "service_id", "unit_value", "value", "comment"}

var overrideRename = map[string]string{
	"client_id": "scope", "site_id": "scope", "host_id": "scope", "unit_label": "unit_value",
}

// effectiveRow is one of a host's effective watermarks with where it comes from.
type effectiveRow struct {
	alert.Effective
	Source     string // "default", or the override's scope
	OverrideID string
}

type overrideRow struct {
	alert.Override
	Where string // "client Acme", "site Pune DC", "this host", "service nginx"
}

type watermarkData struct {
	base
	Host      inventory.Host
	Client    inventory.Client
	Effective []effectiveRow
	Overrides []overrideRow
	Form      *form
	Alerts    []option
	Scopes    []option
	Services  []option
	Action    string
}

// watermarkPage shows a host's effective watermarks, exactly what its rules compare against,
// with the overrides that set them and a form to add one.
func (u *UI) watermarkPage(w http.ResponseWriter, r *http.Request) error {
	f := newForm(overrideFields...)
	f.set("scope", string(alert.ScopeHostOv))
	if a := r.URL.Query().Get("alert"); a != "" {
		f.set("alert", a)
	}
	d, err := u.watermarkData(r, r.URL.Query().Get("host"), f)
	if err != nil {
		return err
	}
	u.render(w, r, http.StatusOK, "watermarks", d)
	return nil
}

func (u *UI) watermarkData(r *http.Request, hostID string, f *form) (watermarkData, error) {
	if hostID == "" {
		return watermarkData{}, errNotFound
	}
	h, err := u.inv.GetHost(r.Context(), hostID)
	if err != nil {
		return watermarkData{}, err
	}
	c, err := u.inv.GetClient(r.Context(), h.ClientID)
	if err != nil {
		return watermarkData{}, err
	}
	d := watermarkData{base: u.base(r, "Watermarks of "+h.Name, "rules"), Host: h, Client: c, Form: f,
		Action: "/rules/watermarks?host=" + url.QueryEscape(h.ID)}
	a := u.alerting.alerts
	specs := a.Specs()
	for _, name := range slices.Sorted(maps.Keys(specs)) {
		s := specs[name]
		label := name
		if s.Per != "" {
			label += " (per " + s.Per + ")"
		}
		d.Alerts = append(d.Alerts, option{Value: name, Label: label})
	}
	d.Scopes = []option{
		{Value: string(alert.ScopeHostOv), Label: "This host"},
		{Value: string(alert.ScopeClient), Label: "Every host of " + c.Name},
	}
	if h.SiteID != "" {
		d.Scopes = slices.Insert(d.Scopes, 1, option{Value: string(alert.ScopeSite), Label: "Every host of its site"})
	}
	svcs, err := u.inv.ListServices(r.Context(), inventory.ServiceFilter{HostID: h.ID})
	if err != nil {
		return d, err
	}
	svcNames := map[string]string{}
	if len(svcs) > 0 {
		d.Scopes = append(d.Scopes, option{Value: string(alert.ScopeService), Label: "One service of this host"})
		d.Services = []option{{Value: "", Label: "–"}}
		for _, s := range svcs {
			d.Services = append(d.Services, option{Value: s.ID, Label: s.Name})
			svcNames[s.ID] = s.Name
		}
	}

	ovs, err := a.ListOverrides(r.Context(), alert.OverrideFilter{ClientID: h.ClientID})
	if err != nil {
		return d, err
	}
	siteName := ""
	if h.SiteID != "" {
		if s, err := u.inv.GetSite(r.Context(), h.SiteID); err == nil {
			siteName = s.Name
		}
	}
	for _, o := range ovs {
		row := overrideRow{Override: o}
		switch {
		case o.Scope == alert.ScopeClient:
			row.Where = "client " + c.Name
		case o.Scope == alert.ScopeSite && o.SiteID == h.SiteID:
			row.Where = "site " + siteName
		case o.Scope == alert.ScopeService && o.HostID == h.ID:
			row.Where = "service " + cmp.Or(svcNames[o.ServiceID], o.ServiceID)
		case o.Scope == alert.ScopeHostOv && o.HostID == h.ID:
			row.Where = "this host"
		default:
			continue // another site's or host's
		}
		d.Overrides = append(d.Overrides, row)
	}
	for _, ef := range a.EffectiveFor(c.Slug, h.Name) {
		row := effectiveRow{Effective: ef, Source: "default"}
		if o, ok := deciding(ef, d.Overrides); ok {
			row.Source, row.OverrideID = o.Where, o.ID
		}
		d.Effective = append(d.Effective, row)
	}
	return d, nil
}

// deciding returns the override that sets an effective watermark, in the engine's order: host
// and unit, host, site and unit, site, client and unit, client (a service override is a host
// override with a unit).
func deciding(ef alert.Effective, ovs []overrideRow) (overrideRow, bool) {
	rank := func(o overrideRow) int {
		if o.Alert != ef.Alert {
			return -1
		}
		unit := 0
		switch {
		case o.UnitLabel == "":
		case o.UnitLabel == ef.UnitLabel && o.UnitValue == ef.UnitValue:
			unit = 1
		default:
			return -1
		}
		switch o.Scope {
		case alert.ScopeHostOv, alert.ScopeService:
			return 4 + unit
		case alert.ScopeSite:
			return 2 + unit
		}
		return unit
	}
	best, bestRank := overrideRow{}, -1
	for _, o := range ovs {
		if k := rank(o); k > bestRank {
			best, bestRank = o, k
		}
	}
	return best, bestRank >= 0
}

// overrideCreate saves an override for the host's client, site, host or one of its services.
func (u *UI) overrideCreate(w http.ResponseWriter, r *http.Request) error {
	f := newForm(overrideFields...)
	if err := f.parse(w, r); err != nil {
		return badRequest(err)
	}
	hostID := r.URL.Query().Get("host")
	d, err := u.watermarkData(r, hostID, f)
	if err != nil {
		return err
	}
	o := alert.Override{Alert: strings.TrimSpace(f.Get("alert")), Scope: alert.Scope(f.Get("scope")),
		Comment: strings.TrimSpace(f.Get("comment")), CreatedBy: actorOf(r)}
	switch o.Scope {
	case alert.ScopeClient:
		o.ClientID = d.Host.ClientID
	case alert.ScopeSite:
		o.SiteID = d.Host.SiteID
	case alert.ScopeHostOv:
		o.HostID = d.Host.ID
	case alert.ScopeService:
		o.ServiceID = f.Get("service_id")
		if o.ServiceID == "" {
			f.add("service_id", "choose the service")
		}
	}
	if uv := strings.TrimSpace(f.Get("unit_value")); uv != "" && o.Scope != alert.ScopeService {
		o.UnitValue = uv
		if s, ok := u.alerting.alerts.Spec(o.Alert); ok && s.Per != "" {
			o.UnitLabel = s.Per
		} else {
			f.add("unit_value", o.Alert+" is a host-level alert: leave this empty")
		}
	}
	if v := strings.TrimSpace(f.Get("value")); v == "" {
		f.add("value", "required")
	} else if o.Value, err = strconv.ParseFloat(v, 64); err != nil {
		f.add("value", "must be a number")
	}
	if f.Invalid() {
		u.render(w, r, http.StatusBadRequest, "watermarks", d)
		return nil
	}
	saved, err := u.alerting.alerts.SaveOverride(r.Context(), o)
	if fe := config.FieldErrors(err); fe != nil {
		f.addFieldErrors(fe, overrideRename)
		u.render(w, r, http.StatusBadRequest, "watermarks", d)
		return nil
	}
	if err != nil {
		return err
	}
	setFlash(w, r, "Watermark of "+saved.Alert+" set to "+strconv.FormatFloat(saved.Value, 'g', -1, 64)+".")
	redirect(w, r, d.Action)
	return nil
}

func (u *UI) overrideDelete(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return badRequest(err)
	}
	a := u.alerting.alerts
	o, err := a.GetOverride(r.Context(), r.PathValue("id"))
	if errors.Is(err, alert.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	if err := a.DeleteOverride(r.Context(), o.ID); err != nil && !errors.Is(err, alert.ErrNotFound) {
		return err
	}
	setFlash(w, r, "Override of "+o.Alert+" deleted: the wider setting applies again.")
	next := localPath(r.PostFormValue("next"))
	if next == "/" {
		next = "/rules"
	}
	redirect(w, r, next)
	return nil
}

// watermarkText writes a watermark with its unit as people read it.
func watermarkText(v float64, unit string) string {
	n := strconv.FormatFloat(v, 'f', -1, 64)
	switch unit {
	case "":
		return n
	case "bytes":
		if v >= 1024 {
			return bytesIEC(int64(v))
		}
		return n + " B"
	case "bytes/s":
		if v >= 1024 {
			return bytesIEC(int64(v)) + "/s"
		}
		return n + " B/s"
	case "%":
		return n + " %"
	case "count":
		return n
	}
	return n + " " + unit
}

// ValueText and DefaultText are the effective and default watermarks with their unit.
func (e effectiveRow) ValueText() string   { return watermarkText(e.Value, e.Unit) }
func (e effectiveRow) DefaultText() string { return watermarkText(e.Default, e.Unit) }

// Overridden reports whether the effective watermark differs from the rule's default or is set
// by an override (which may equal the default).
func (e effectiveRow) Overridden() bool { return e.OverrideID != "" || e.Value != e.Default }

// DefaultText is the rule's default watermark with its unit and direction.
func (r ruleRow) DefaultText() string {
	if r.Watermark == nil {
		return ""
	}
	s := watermarkText(r.Watermark.Default, r.Watermark.Unit)
	switch r.Watermark.Direction {
	case "above":
		s = "> " + s
	case "below":
		s = "< " + s
	}
	if r.Watermark.Per != "" {
		s += " per " + r.Watermark.Per
	}
	return s
}

// ForText is the rule's for, "–" when it fires at once.
func (r ruleRow) ForText() string {
	if r.For == 0 {
		return "–"
	}
	return r.For.String()
}

// ValueText is the override's value; the unit is the alert's, which the row does not carry.
func (o overrideRow) ValueText() string { return strconv.FormatFloat(o.Value, 'f', -1, 64) }
