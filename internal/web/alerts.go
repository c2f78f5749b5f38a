package web

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/serversage/sage/internal/alert"
	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/notify"
	"github.com/serversage/sage/internal/oncall"
	"github.com/serversage/sage/internal/rulepack"
)

// alerting holds the parts the alerting pages read; alerts nil means the hub runs without
// alerting (tests of the inventory pages) and those pages do not exist.
type alerting struct {
	alerts *alert.Engine
	oncall *oncall.Store
	pack   *rulepack.Pack
	outbox notify.Querier
}

// incidentRefresh caps how long the incident list waits between refreshes: rules are evaluated
// every second, and this is the screen the shift watches, so it should not lag a slow scrape
// interval.
const incidentRefresh = 5

// alertRoutes adds the alerting pages to routes(). Paths avoid the hub's own /runbooks/{alert}
// and /ack/{token}.
func (u *UI) alertRoutes(h func(string, func(http.ResponseWriter, *http.Request) error)) {
	need := func(fn func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
		return func(w http.ResponseWriter, r *http.Request) error {
			if u.alerting.alerts == nil {
				return errNotFound
			}
			return fn(w, r)
		}
	}
	h("GET /incidents", need(u.incidentList))
	h("GET /incidents/_table", need(u.incidentTable))
	h("GET /incidents/{id}", need(u.incidentPage))
	h("POST /incidents/{id}/ack", need(u.incidentAck))
	h("POST /incidents/{id}/resolve", need(u.incidentResolve))

	h("GET /rules", need(u.ruleList))
	h("GET /rules/watermarks", need(u.watermarkPage))
	h("POST /rules/watermarks", need(u.overrideCreate))
	h("POST /rules/overrides/{id}/delete", need(u.overrideDelete))

	h("GET /silences", need(u.silenceList))
	h("POST /silences", need(u.silenceCreate))
	h("POST /silences/{id}/expire", need(u.silenceExpire))

	h("GET /oncall", need(u.oncallPage))
}

// actorOf is who the signed-in user is, as recorded on an incident's timeline.
func actorOf(r *http.Request) string {
	if id, ok := auth.IdentityFrom(r.Context()); ok {
		return id.User.Username
	}
	return ""
}

// names resolves client and host ids to names for lists, with one query for the clients and one
// for the hosts shown.
type names struct {
	clients map[string]inventory.Client
	hosts   map[string]inventory.Host
}

func (u *UI) namesFor(r *http.Request, hostIDs []string) (names, error) {
	n := names{clients: map[string]inventory.Client{}, hosts: map[string]inventory.Host{}}
	cs, err := u.inv.ListClients(r.Context(), inventory.ClientFilter{})
	if err != nil {
		return n, err
	}
	for _, c := range cs {
		n.clients[c.ID] = c
	}
	ids := slices.Compact(slices.Sorted(slices.Values(slices.DeleteFunc(hostIDs, func(s string) bool { return s == "" }))))
	if len(ids) > 0 {
		hs, err := u.inv.ListHostsByID(r.Context(), ids)
		if err != nil {
			return n, err
		}
		for _, h := range hs {
			n.hosts[h.ID] = h
		}
	}
	return n, nil
}

// incidentRow is one incident as the list shows it.
type incidentRow struct {
	alert.Incident
	Client, Host string // names; the labels when the inventory does not know them
	CSRF         string // for the row's Acknowledge and Resolve forms
	Next         string // where those forms return to; "" for the incident's page
}

func (n names) row(in alert.Incident) incidentRow {
	row := incidentRow{Incident: in, Client: in.Labels["client"], Host: in.Labels["host"]}
	if c, ok := n.clients[in.ClientID]; ok {
		row.Client = c.Name
	}
	if h, ok := n.hosts[in.HostID]; ok {
		row.Host = h.Name
	}
	return row
}

type incidentTable struct {
	Rows     []incidentRow
	Show     string // open or all
	TableURL string
	Refresh  int
	CSRF     string
	Next     string // where the row buttons return to
}

type incidentListData struct {
	base
	Table incidentTable
}

// maxIncidentsListed bounds the list with "all": the newest first; the API pages further.
const maxIncidentsListed = 200

func (u *UI) incidentTableData(r *http.Request) (incidentTable, error) {
	show := r.URL.Query().Get("show")
	if show != "all" {
		show = "open"
	}
	f := alert.IncidentFilter{Open: show == "open", Limit: maxIncidentsListed}
	ins, err := u.alerting.alerts.ListIncidents(r.Context(), f)
	if err != nil {
		return incidentTable{}, err
	}
	ids := make([]string, len(ins))
	for i, in := range ins {
		ids[i] = in.HostID
	}
	n, err := u.namesFor(r, ids)
	if err != nil {
		return incidentTable{}, err
	}
	b := u.base(r, "", "")
	t := incidentTable{Show: show, TableURL: "/incidents/_table?show=" + show, Refresh: min(b.Refresh, incidentRefresh),
		CSRF: b.CSRF, Next: "/incidents?show=" + show}
	for _, in := range ins {
		row := n.row(in)
		row.CSRF, row.Next = t.CSRF, t.Next
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

func (u *UI) incidentList(w http.ResponseWriter, r *http.Request) error {
	t, err := u.incidentTableData(r)
	if err != nil {
		return err
	}
	u.render(w, r, http.StatusOK, "incidents", incidentListData{base: u.base(r, "Incidents", "incidents"), Table: t})
	return nil
}

func (u *UI) incidentTable(w http.ResponseWriter, r *http.Request) error {
	t, err := u.incidentTableData(r)
	if err != nil {
		return err
	}
	u.renderFragment(w, "incidents", "incidents-table", t)
	return nil
}

// timelineItem is one line of an incident's timeline: an event, with the send result of the
// notification it queued, or a notification no event explains.
type timelineItem struct {
	At     time.Time
	Kind   string // the event kind, or "notification"
	Title  string
	Actor  string
	Detail string
	Send   *notify.Record
}

type incidentPageData struct {
	base
	Incident   incidentRow
	Alerts     []alert.IncidentAlert
	ActionPlan []string
	Runbook    bool
	Timeline   []timelineItem
	Silences   []alert.Silence
}

func (u *UI) incidentPage(w http.ResponseWriter, r *http.Request) error {
	a := u.alerting.alerts
	in, err := a.GetIncident(r.Context(), r.PathValue("id"))
	if errors.Is(err, alert.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	n, err := u.namesFor(r, []string{in.HostID})
	if err != nil {
		return err
	}
	d := incidentPageData{base: u.base(r, in.Title, "incidents"), Incident: n.row(in), ActionPlan: a.ActionPlan(in.Alertname)}
	if d.Title == "" {
		d.Title = in.Alertname
	}
	d.Incident.CSRF = d.CSRF
	if p := u.alerting.pack; p != nil {
		if rule, ok := p.Rule(in.Alertname); ok && rule.HasRunbook() {
			d.Runbook = true
			if len(d.ActionPlan) == 0 {
				d.ActionPlan = rule.Runbook.ActionPlan
			}
		}
	}
	if d.Alerts, err = a.IncidentAlerts(r.Context(), in.ID); err != nil {
		return err
	}
	events, err := a.Events(r.Context(), in.ID)
	if err != nil {
		return err
	}
	var sends []notify.Record
	if u.alerting.outbox != nil {
		if sends, err = notify.ListByIncident(r.Context(), u.alerting.outbox, in.ID); err != nil {
			return err
		}
	}
	d.Timeline = timeline(events, sends)
	u.render(w, r, http.StatusOK, "incident", d)
	return nil
}

// timeline merges the incident's events with its notifications: a "notified" event gets the
// send result of the notification it queued (same step, channel and recipient); notifications
// no event names (webhooks, resolution mails) become lines of their own. Oldest first.
func timeline(events []alert.Event, sends []notify.Record) []timelineItem {
	used := make([]bool, len(sends))
	out := make([]timelineItem, 0, len(events)+len(sends))
	for _, ev := range events {
		it := timelineItem{At: ev.At, Kind: ev.Kind, Actor: ev.Actor, Title: eventTitle(ev.Kind), Detail: eventDetail(ev)}
		if ev.Kind == alert.EventNotified {
			step, channel, recipient := detailInt(ev.Detail, "step"), detailString(ev.Detail, "channel"), detailString(ev.Detail, "recipient")
			for i, s := range sends {
				if !used[i] && s.Step == step && s.Channel == channel && s.Recipient == recipient {
					used[i] = true
					it.Send = &sends[i]
					break
				}
			}
		}
		out = append(out, it)
	}
	for i := range sends {
		if used[i] {
			continue
		}
		s := &sends[i]
		title := "Notification"
		if s.Message != nil && s.Message.Subject != "" {
			title = s.Message.Subject
		}
		out = append(out, timelineItem{At: s.CreatedAt, Kind: "notification", Title: title,
			Detail: s.Channel + " to " + s.Recipient, Send: s})
	}
	slices.SortStableFunc(out, func(a, b timelineItem) int { return a.At.Compare(b.At) })
	return out
}

func eventTitle(kind string) string {
	switch kind {
	case alert.EventFired:
		return "Fired"
	case alert.EventRefired:
		return "Fired again"
	case alert.EventAlertAdded:
		return "Alert added"
	case alert.EventSuppressed:
		return "Suppressed"
	case alert.EventUnsuppressed:
		return "No longer suppressed"
	case alert.EventNotified:
		return "Notified"
	case alert.EventEscalated:
		return "Escalated"
	case alert.EventAcknowledged:
		return "Acknowledged"
	case alert.EventResolved:
		return "Resolved"
	case alert.EventNoRecipient:
		return "Nobody to notify"
	}
	return kind
}

// eventDetail says in a line what the event's detail holds that matters to the reader.
func eventDetail(ev alert.Event) string {
	d := ev.Detail
	var parts []string
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	switch ev.Kind {
	case alert.EventFired, alert.EventRefired, alert.EventAlertAdded:
		if v := detailString(d, "value"); v != "" {
			add("value %s", v)
		}
		if s := detailString(d, "source"); s != "" {
			add("from %s", s)
		}
	case alert.EventNotified:
		who := detailString(d, "user")
		if who == "" {
			who = detailString(d, "recipient")
		}
		add("%s by %s (%s)", who, detailString(d, "channel"), detailString(d, "recipient"))
		if t := detailString(d, "tier"); t != "" {
			add("tier %s, step %d", t, detailInt(d, "step"))
		}
	case alert.EventSuppressed, alert.EventUnsuppressed:
		if s := detailString(d, "silence"); s != "" {
			add("silence %s", s)
		}
	case alert.EventAcknowledged, alert.EventResolved:
		if v := detailString(d, "via"); v != "" {
			add("via %s", v)
		}
		if b, _ := d["by_hand"].(bool); b {
			add("by hand")
		}
	default:
		for _, k := range slices.Sorted(maps.Keys(d)) {
			if k == "labels" || k == "user_id" {
				continue
			}
			add("%s %v", strings.ReplaceAll(k, "_", " "), d[k])
		}
	}
	return strings.Join(parts, ", ")
}

func detailString(d map[string]any, k string) string {
	switch v := d[k].(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

// detailInt reads a number of an event's detail, which JSON decoding made a float64.
func detailInt(d map[string]any, k string) int {
	switch v := d[k].(type) {
	case float64:
		return int(v)
	case int:
		return v
	}
	return 0
}

// incidentNext is where to go after acting on an incident: the page the button was on.
func incidentNext(r *http.Request, id string) string {
	if n := localPath(r.PostFormValue("next")); n != "/" {
		return n
	}
	return "/incidents/" + url.PathEscape(id)
}

func (u *UI) incidentAck(w http.ResponseWriter, r *http.Request) error {
	return u.incidentAction(w, r, "acknowledged", func(id string) (alert.Incident, error) {
		return u.alerting.alerts.Acknowledge(r.Context(), id, actorOf(r), map[string]any{"via": "web"})
	})
}

func (u *UI) incidentResolve(w http.ResponseWriter, r *http.Request) error {
	return u.incidentAction(w, r, "resolved", func(id string) (alert.Incident, error) {
		return u.alerting.alerts.Resolve(r.Context(), id, actorOf(r))
	})
}

func (u *UI) incidentAction(w http.ResponseWriter, r *http.Request, did string, act func(string) (alert.Incident, error)) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return badRequest(err)
	}
	id := r.PathValue("id")
	if _, err := u.alerting.alerts.GetIncident(r.Context(), id); errors.Is(err, alert.ErrNotFound) {
		return errNotFound
	} else if err != nil {
		return err
	}
	in, err := act(id)
	if err != nil {
		return err
	}
	setFlash(w, r, cmp.Or(in.Title, in.Alertname)+" "+did+".")
	redirect(w, r, incidentNext(r, id))
	return nil
}
