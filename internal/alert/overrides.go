package alert

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/store"
)

// Scope is where an override applies.
type Scope string

// The scopes, from the widest to the narrowest.
const (
	ScopeClient  Scope = "client"
	ScopeSite    Scope = "site"
	ScopeHostOv  Scope = "host"
	ScopeService Scope = "service"
)

// WatermarkSpec is what the rule set says about an alert's watermark.
type WatermarkSpec struct {
	Alert     string  `json:"alert"`
	Default   float64 `json:"default"`
	Unit      string  `json:"unit,omitempty"`
	Per       string  `json:"per,omitempty"`       // the unit label ("mountpoint"), "" for host level
	Direction string  `json:"direction,omitempty"` // above or below
	Severity  string  `json:"severity,omitempty"`
}

// Override is one watermark set for a scope. A service override is stored as a host override on
// the service's host with the service's unit (its name, or its port for per-port alerts), so that
// resolution has one notion of unit.
type Override struct {
	ID        string    `json:"id"`
	Alert     string    `json:"alert"`
	Scope     Scope     `json:"scope"`
	ClientID  string    `json:"client_id"`
	SiteID    string    `json:"site_id,omitempty"`
	HostID    string    `json:"host_id,omitempty"`
	ServiceID string    `json:"service_id,omitempty"`
	UnitLabel string    `json:"unit_label,omitempty"`
	UnitValue string    `json:"unit_value,omitempty"`
	Value     float64   `json:"value"`
	Comment   string    `json:"comment,omitempty"`
	CreatedBy string    `json:"created_by,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ErrNotFound is returned for an id that does not exist.
var ErrNotFound = errors.New("not found")

const overrideCols = "id, alert, scope, client_id, site_id, host_id, service_id, unit_label, unit_value, value, comment, created_by, created_at, updated_at"

func scanOverride(r store.Row) (Override, error) {
	var (
		o                   Override
		site, host, service sql.NullString
		created, updated    int64
	)
	if err := r.Scan(&o.ID, &o.Alert, &o.Scope, &o.ClientID, &site, &host, &service, &o.UnitLabel, &o.UnitValue,
		&o.Value, &o.Comment, &o.CreatedBy, &created, &updated); err != nil {
		return Override{}, err
	}
	o.SiteID, o.HostID, o.ServiceID = site.String, host.String, service.String
	o.CreatedAt, o.UpdatedAt = store.FromMillis(created), store.FromMillis(updated)
	return o, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// scopeKey is the override's scope as one string, unique per alert.
func (o Override) scopeKey() string {
	var b strings.Builder
	switch o.Scope {
	case ScopeClient:
		b.WriteString("client:" + o.ClientID)
	case ScopeSite:
		b.WriteString("site:" + o.SiteID)
	case ScopeHostOv, ScopeService:
		b.WriteString("host:" + o.HostID)
	}
	if o.UnitLabel != "" {
		b.WriteString("|" + o.UnitLabel + "=" + o.UnitValue)
	}
	return b.String()
}

// OverrideFilter narrows ListOverrides; empty fields match everything.
type OverrideFilter struct {
	Alert    string
	ClientID string
	HostID   string
}

// ListOverrides returns overrides ordered by alert and scope.
func (e *Engine) ListOverrides(ctx context.Context, f OverrideFilter) ([]Override, error) {
	q := "SELECT " + overrideCols + " FROM watermark_overrides WHERE 1=1"
	var args []any
	add := func(col, v string) {
		if v != "" {
			args = append(args, v)
			q += fmt.Sprintf(" AND %s = $%d", col, len(args))
		}
	}
	add("alert", f.Alert)
	add("client_id", f.ClientID)
	add("host_id", f.HostID)
	q += " ORDER BY alert, scope_key"
	rows, err := e.db.QueryContext(ctx, q, args...)
	out, err := store.ScanAll(rows, err, scanOverride)
	if err != nil {
		return nil, fmt.Errorf("alert: listing overrides: %w", err)
	}
	return out, nil
}

// GetOverride returns one override.
func (e *Engine) GetOverride(ctx context.Context, id string) (Override, error) {
	o, err := scanOverride(e.db.QueryRowContext(ctx, "SELECT "+overrideCols+" FROM watermark_overrides WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Override{}, ErrNotFound
	}
	if err != nil {
		return Override{}, fmt.Errorf("alert: reading override %s: %w", id, err)
	}
	return o, nil
}

// SaveOverride creates (empty ID) or replaces an override after validating it against the live rule
// set and the inventory, and rebuilds the watermark series so it applies at the next evaluation.
// Invalid input returns field errors (config.FieldErrors) and writes nothing.
func (e *Engine) SaveOverride(ctx context.Context, o Override) (Override, error) {
	if err := e.completeOverride(ctx, &o); err != nil {
		return Override{}, err
	}
	now := e.now()
	o.UpdatedAt = now
	if o.ID == "" {
		o.ID, o.CreatedAt = store.NewID(), now
		_, err := e.db.ExecContext(ctx, "INSERT INTO watermark_overrides ("+overrideCols+", scope_key) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
			o.ID, o.Alert, o.Scope, o.ClientID, nullable(o.SiteID), nullable(o.HostID), nullable(o.ServiceID), o.UnitLabel, o.UnitValue,
			o.Value, o.Comment, o.CreatedBy, store.Millis(o.CreatedAt), store.Millis(now), o.scopeKey())
		if err != nil {
			return Override{}, overrideWriteError(err)
		}
	} else {
		old, err := e.GetOverride(ctx, o.ID)
		if err != nil {
			return Override{}, err
		}
		o.CreatedAt, o.CreatedBy = old.CreatedAt, old.CreatedBy
		res, err := e.db.ExecContext(ctx, `UPDATE watermark_overrides SET alert=$2, scope=$3, client_id=$4, site_id=$5, host_id=$6,
			service_id=$7, unit_label=$8, unit_value=$9, value=$10, comment=$11, updated_at=$12, scope_key=$13 WHERE id=$1`,
			o.ID, o.Alert, o.Scope, o.ClientID, nullable(o.SiteID), nullable(o.HostID), nullable(o.ServiceID), o.UnitLabel, o.UnitValue,
			o.Value, o.Comment, store.Millis(now), o.scopeKey())
		if err != nil {
			return Override{}, overrideWriteError(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return Override{}, ErrNotFound
		}
	}
	if err := e.RebuildWatermarks(ctx); err != nil {
		return o, err
	}
	return o, nil
}

func overrideWriteError(err error) error {
	if ce, ok := store.AsConstraint(err); ok && ce.Kind == store.Unique {
		return config.Invalid(config.FieldError{Field: "scope", Msg: "this alert already has an override for this scope"})
	}
	if ce, ok := store.AsConstraint(err); ok && ce.Kind == store.ForeignKey {
		return config.Invalid(config.FieldError{Field: "scope", Msg: "the client, site, host or service no longer exists"})
	}
	return fmt.Errorf("alert: saving override: %w", err)
}

// DeleteOverride removes an override; the default (or a wider override) applies again at the next
// evaluation.
func (e *Engine) DeleteOverride(ctx context.Context, id string) error {
	res, err := e.db.ExecContext(ctx, "DELETE FROM watermark_overrides WHERE id = $1", id)
	if err != nil {
		return fmt.Errorf("alert: deleting override %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return e.RebuildWatermarks(ctx)
}

// completeOverride validates o and fills in what follows from its scope (a site's client, a
// host's site, a service's host and unit).
func (e *Engine) completeOverride(ctx context.Context, o *Override) error {
	var fe []config.FieldError
	bad := func(field, msg string, args ...any) {
		fe = append(fe, config.FieldError{Field: field, Msg: fmt.Sprintf(msg, args...)})
	}
	o.Alert = strings.TrimSpace(o.Alert)
	o.UnitLabel, o.UnitValue = strings.TrimSpace(o.UnitLabel), strings.TrimSpace(o.UnitValue)
	spec, ok := e.Spec(o.Alert)
	switch {
	case o.Alert == "":
		bad("alert", "required")
	case !ok && e.ruleExists(o.Alert):
		bad("alert", "%s has no watermark to override", o.Alert)
	case !ok:
		bad("alert", "unknown alert %q", o.Alert)
	}
	if math.IsNaN(o.Value) || math.IsInf(o.Value, 0) {
		bad("value", "must be a finite number")
	} else if o.Value < 0 {
		bad("value", "must not be negative")
	}
	inv := e.inventoryRefs
	switch o.Scope {
	case ScopeClient:
		o.SiteID, o.HostID, o.ServiceID = "", "", ""
		if o.ClientID == "" {
			bad("client_id", "required for a client override")
		} else if _, err := inv.client(ctx, e.db, o.ClientID); err != nil {
			bad("client_id", "%v", err)
		}
	case ScopeSite:
		o.HostID, o.ServiceID = "", ""
		if o.SiteID == "" {
			bad("site_id", "required for a site override")
		} else if client, err := inv.site(ctx, e.db, o.SiteID); err != nil {
			bad("site_id", "%v", err)
		} else {
			o.ClientID = client
		}
	case ScopeHostOv:
		o.ServiceID = ""
		if o.HostID == "" {
			bad("host_id", "required for a host override")
		} else if client, site, err := inv.host(ctx, e.db, o.HostID); err != nil {
			bad("host_id", "%v", err)
		} else {
			o.ClientID, o.SiteID = client, site
		}
	case ScopeService:
		if o.ServiceID == "" {
			bad("service_id", "required for a service override")
		} else if svc, err := inv.service(ctx, e.db, o.ServiceID); err != nil {
			bad("service_id", "%v", err)
		} else {
			o.HostID, o.ClientID, o.SiteID = svc.hostID, svc.clientID, svc.siteID
			if ok {
				unit, uok := serviceUnit(spec.Per, svc.name, svc.target)
				switch {
				case spec.Per == "":
					bad("service_id", "%s is a host-level alert; a service cannot override it", o.Alert)
				case !uok:
					bad("service_id", "service %q has no %s for %s (set its target)", svc.name, spec.Per, o.Alert)
				default:
					o.UnitLabel, o.UnitValue = spec.Per, unit
				}
			}
		}
	case "":
		bad("scope", "required: client, site, host or service")
	default:
		bad("scope", "unknown scope %q: client, site, host or service", o.Scope)
	}
	if o.Scope != ScopeService && ok {
		switch {
		case o.UnitLabel == "" && o.UnitValue != "":
			bad("unit_label", "required with unit_value")
		case o.UnitLabel != "" && spec.Per == "":
			bad("unit_label", "%s is a host-level alert; it has no %s", o.Alert, o.UnitLabel)
		case o.UnitLabel != "" && o.UnitLabel != spec.Per:
			bad("unit_label", "%s is per %s, not per %s", o.Alert, spec.Per, o.UnitLabel)
		case o.UnitLabel != "" && o.UnitValue == "":
			bad("unit_value", "required with unit_label")
		}
	}
	if len(fe) > 0 {
		return config.Invalid(fe...)
	}
	return nil
}

// serviceUnit is the unit value a service stands for in an alert that is per the given label:
// its name for process groups and services, its port for listeners.
func serviceUnit(per, name, target string) (string, bool) {
	switch per {
	case "service", "group":
		return name, name != ""
	case "target":
		// A probe target is named by what it probes (probes.targets[].name defaults to the
		// target), so a service whose target is the probed URL or address maps to its series.
		return target, target != ""
	case "port":
		host := target
		if u, err := url.Parse(target); err == nil && u.Host != "" {
			host = u.Host
			if u.Port() == "" {
				switch u.Scheme {
				case "https":
					return "443", true
				case "http":
					return "80", true
				}
			}
		}
		_, port, err := net.SplitHostPort(host)
		return port, err == nil && port != ""
	}
	return "", false
}

// inventoryRefs reads the few inventory facts overrides need, straight from the state store: the
// alert package must not depend on the inventory package's richer types to resolve an id.
type inventoryRefs struct{}

func (inventoryRefs) client(ctx context.Context, db *store.DB, id string) (string, error) {
	var slug string
	err := db.QueryRowContext(ctx, "SELECT slug FROM clients WHERE id = $1", id).Scan(&slug)
	return slug, refErr("client", id, err)
}

func (inventoryRefs) site(ctx context.Context, db *store.DB, id string) (clientID string, err error) {
	err = db.QueryRowContext(ctx, "SELECT client_id FROM sites WHERE id = $1", id).Scan(&clientID)
	return clientID, refErr("site", id, err)
}

func (inventoryRefs) host(ctx context.Context, db *store.DB, id string) (clientID, siteID string, err error) {
	var site sql.NullString
	err = db.QueryRowContext(ctx, "SELECT client_id, site_id FROM hosts WHERE id = $1", id).Scan(&clientID, &site)
	return clientID, site.String, refErr("host", id, err)
}

type serviceRef struct{ hostID, clientID, siteID, name, target string }

func (inventoryRefs) service(ctx context.Context, db *store.DB, id string) (serviceRef, error) {
	var (
		s    serviceRef
		site sql.NullString
	)
	err := db.QueryRowContext(ctx, `SELECT s.host_id, h.client_id, h.site_id, s.name, s.target
		FROM services s JOIN hosts h ON h.id = s.host_id WHERE s.id = $1`, id).Scan(&s.hostID, &s.clientID, &site, &s.name, &s.target)
	s.siteID = site.String
	return s, refErr("service", id, err)
}

func refErr(what, id string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("no %s with id %q", what, id)
	}
	if err != nil {
		return fmt.Errorf("reading %s %s: %w", what, id, err)
	}
	return nil
}

// hostRow is one active host with the labels its series carry.
type hostRow struct {
	id, clientID, siteID string
	client, site, name   string
}

// RebuildWatermarks materialises every effective watermark from the rule set, the overrides and
// the inventory, and swaps the new set in. It runs after every override change, when the rules or
// the inventory change, and periodically (another hub sharing the database may have written).
//
// Resolution is most specific first, one total order: the host's unit override, the host's
// override, the site's unit override, the site's, the client's unit override, the client's, the
// rule's default. Per-host series exist for every active host; per-unit series only where some
// unit override applies, so their number grows with overrides, not with filesystems.
func (e *Engine) RebuildWatermarks(ctx context.Context) error {
	e.wm.mu.Lock()
	defer e.wm.mu.Unlock()
	specs := e.Specs()
	rows, err := e.db.QueryContext(ctx, `SELECT h.id, h.client_id, COALESCE(h.site_id, ''), c.slug, COALESCE(s.name, ''), h.name
		FROM hosts h JOIN clients c ON c.id = h.client_id LEFT JOIN sites s ON s.id = h.site_id
		WHERE h.status = 'active'`)
	hosts, err := store.ScanAll(rows, err, func(r store.Row) (hostRow, error) {
		var h hostRow
		err := r.Scan(&h.id, &h.clientID, &h.siteID, &h.client, &h.site, &h.name)
		return h, err
	})
	if err != nil {
		return fmt.Errorf("alert: listing hosts for watermarks: %w", err)
	}
	ovs, err := e.ListOverrides(ctx, OverrideFilter{})
	if err != nil {
		return err
	}
	idx := map[string]byScope{}
	units := map[string]map[unitKey]bool{} // alert -> every unit some override names
	for _, o := range ovs {
		if _, ok := specs[o.Alert]; !ok {
			continue // an override left behind by a rule that is gone: kept, unused
		}
		var key string
		switch o.Scope {
		case ScopeClient:
			key = "c:" + o.ClientID
		case ScopeSite:
			key = "s:" + o.SiteID
		default:
			key = "h:" + o.HostID
		}
		if idx[o.Alert] == nil {
			idx[o.Alert] = byScope{}
			units[o.Alert] = map[unitKey]bool{}
		}
		if idx[o.Alert][key] == nil {
			idx[o.Alert][key] = map[unitKey]float64{}
		}
		u := unitKey{o.UnitLabel, o.UnitValue}
		// A service override and a host unit override for the same unit: the service one wins, as
		// the narrower statement.
		if _, dup := idx[o.Alert][key][u]; !dup || o.Scope == ScopeService {
			idx[o.Alert][key][u] = o.Value
		}
		if u.label != "" {
			units[o.Alert][u] = true
		}
	}
	byAlert := make(map[string][]wmSeries, len(specs))
	b := labels.NewScratchBuilder(8)
	for alert, spec := range specs {
		ai := idx[alert]
		list := make([]wmSeries, 0, len(hosts))
		for _, h := range hosts {
			scopes := []string{"h:" + h.id}
			if h.siteID != "" {
				scopes = append(scopes, "s:"+h.siteID)
			}
			scopes = append(scopes, "c:"+h.clientID)
			list = append(list, wmSeries{lset: wmLabels(&b, alert, ScopeHost, h, "", ""), value: ai.resolve(scopes, unitKey{}, spec.Default)})
			for u := range units[alert] {
				if ai.applies(scopes, u) {
					list = append(list, wmSeries{lset: wmLabels(&b, alert, u.label, h, u.label, u.value), value: ai.resolve(scopes, u, spec.Default)})
				}
			}
		}
		byAlert[alert] = list
	}
	e.wm.replace(byAlert)
	return nil
}

// unitKey is a unit an override names (mountpoint=/var), or the zero value for "the whole host".
type unitKey struct{ label, value string }

// byScope holds one alert's overrides by scope ("c:<client id>", "s:<site id>", "h:<host id>"),
// then by unit.
type byScope map[string]map[unitKey]float64

// resolve walks the host's scopes from the narrowest and returns the first override for the unit
// or, at the same scope, for the whole host; else the default.
func (ai byScope) resolve(scopes []string, u unitKey, def float64) float64 {
	for _, sk := range scopes {
		m := ai[sk]
		if u.label != "" {
			if v, ok := m[u]; ok {
				return v
			}
		}
		if v, ok := m[unitKey{}]; ok {
			return v
		}
	}
	return def
}

// applies says whether some override of unit u lies on one of the host's scopes: a unit series is
// made only for the hosts such an override concerns. Its value may still come from a narrower
// whole-host override (a host's own watermark beats its client's /var watermark).
func (ai byScope) applies(scopes []string, u unitKey) bool {
	for _, sk := range scopes {
		if _, ok := ai[sk][u]; ok {
			return true
		}
	}
	return false
}

func wmLabels(b *labels.ScratchBuilder, alert, scope string, h hostRow, unitLabel, unitValue string) labels.Labels {
	b.Reset()
	b.Add(labels.MetricName, WatermarkMetric)
	b.Add("alert", alert)
	b.Add("scope", scope)
	b.Add("client", h.client)
	if h.site != "" {
		b.Add("site", h.site)
	}
	b.Add("host", h.name)
	if unitLabel != "" {
		b.Add(unitLabel, unitValue)
	}
	b.Sort()
	return b.Labels()
}

// Effective is one resolved watermark of a host, for the UI and the API.
type Effective struct {
	Alert     string  `json:"alert"`
	UnitLabel string  `json:"unit_label,omitempty"`
	UnitValue string  `json:"unit_value,omitempty"`
	Value     float64 `json:"value"`
	Default   float64 `json:"default"`
	Unit      string  `json:"unit,omitempty"`
	Direction string  `json:"direction,omitempty"`
	Severity  string  `json:"severity,omitempty"`
}

// EffectiveFor returns a host's effective watermarks, by alert and unit, from the current
// materialised set: exactly what the rules compare against.
func (e *Engine) EffectiveFor(clientSlug, hostName string) []Effective {
	set := e.wm.set.Load()
	specs := e.Specs()
	var out []Effective
	for _, alert := range set.alerts {
		spec := specs[alert]
		for _, s := range set.byAlert[alert] {
			if s.lset.Get("client") != clientSlug || s.lset.Get("host") != hostName {
				continue
			}
			ef := Effective{Alert: alert, Value: s.value, Default: spec.Default, Unit: spec.Unit, Direction: spec.Direction, Severity: spec.Severity}
			if sc := s.lset.Get("scope"); sc != ScopeHost {
				ef.UnitLabel, ef.UnitValue = sc, s.lset.Get(sc)
			}
			out = append(out, ef)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Alert != out[j].Alert {
			return out[i].Alert < out[j].Alert
		}
		return out[i].UnitValue < out[j].UnitValue
	})
	return out
}
