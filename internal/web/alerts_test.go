package web

import (
	"net/http"

	"github.com/chromedp/chromedp"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/alert"
	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/notify"
	"github.com/serversage/sage/internal/oncall"
	"github.com/serversage/sage/internal/rulepack"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

// alertEnv is env with the alerting parts: a real engine on the shipped rule pack (not
// evaluating; incidents arrive through Receive as from Alertmanager), the on-call store, and the
// state store as the outbox.
type alertEnv struct {
	*env
	alerts *alert.Engine
	oncall *oncall.Store
	pack   *rulepack.Pack
}

func eachAlerting(t *testing.T, body func(t *testing.T, e *alertEnv)) {
	storetest.Each(t, func(t *testing.T, db *store.DB) { body(t, newAlertEnv(t, db)) })
}

func newAlertEnv(t *testing.T, db *store.DB) *alertEnv {
	t.Helper()
	e := &alertEnv{env: newEnv(t, db), oncall: oncall.New(db)}
	var err error
	if e.pack, err = rulepack.Load(); err != nil {
		t.Fatal(err)
	}
	e.alerts, err = alert.New(alert.Options{DB: db, Engine: e.metrics.Engine(), Queryable: e.metrics.Queryable(),
		Parser: e.metrics.Parser(), Logger: storetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	rs := alert.RuleSet{Files: e.pack.Files(), Specs: map[string]alert.WatermarkSpec{}, ActionPlans: map[string][]string{}, Alerts: map[string]string{}}
	for _, r := range e.pack.Rules() {
		rs.Alerts[r.Name] = r.Severity
		if w := r.Watermark; w != nil {
			rs.Specs[r.Name] = alert.WatermarkSpec{Alert: r.Name, Default: w.Default, Unit: w.Unit, Per: w.Per, Direction: w.Direction, Severity: r.Severity}
		}
		if len(r.Runbook.ActionPlan) > 0 {
			rs.ActionPlans[r.Name] = r.Runbook.ActionPlan
		}
	}
	if err := e.alerts.SetRules(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if _, err := e.oncall.EnsureDefaults(ctx); err != nil {
		t.Fatal(err)
	}
	// The same UI as env's, with alerting.
	e.ui, err = New(Options{Inventory: e.inv, Auth: e.auth, Metrics: e.metrics, Health: e.health,
		ScrapeInterval: testInterval, Logger: storetest.Logger(t),
		Alerts: e.alerts, OnCall: e.oncall, Pack: e.pack, Outbox: db})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Close()
	e.srv = httptest.NewServer(e.ui.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

// fire reports an alert as Alertmanager would and returns the open incident it made.
func (e *alertEnv) fire(alertname, severity, client, host, title string) alert.Incident {
	e.t.Helper()
	a := alert.Alert{Labels: map[string]string{"alertname": alertname, "severity": severity, "client": client, "host": host},
		Annotations: map[string]string{"summary": title}, Value: "97", StartsAt: time.Now().Add(-3 * time.Minute)}
	if err := e.alerts.Receive(ctx, alert.SourceAlertmanager, []alert.Alert{a}); err != nil {
		e.t.Fatal(err)
	}
	ins, err := e.alerts.ListIncidents(ctx, alert.IncidentFilter{Open: true})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, in := range ins {
		if in.Alertname == alertname && in.Labels["host"] == host {
			return in
		}
	}
	e.t.Fatalf("no open incident for %s on %s", alertname, host)
	return alert.Incident{}
}

func TestIncidentPages(t *testing.T) {
	eachAlerting(t, func(t *testing.T, e *alertEnv) {
		acme := e.client("Acme Corp")
		web1 := e.host(inventory.Host{ClientID: acme.ID, Name: "web1"})
		cpu := e.fire("CPUBusy", "warning", acme.Slug, web1.Name, "CPU busy on web1")
		disk := e.fire("FilesystemSpaceCritical", "critical", acme.Slug, web1.Name, "Disk full on web1")
		if cpu.HostID != web1.ID {
			t.Fatalf("the incident's host is %q, want %q", cpu.HostID, web1.ID)
		}

		// The list: critical first, names from the inventory, buttons with CSRF, a live table.
		r := e.get("/incidents")
		must(t, "incidents", r, 200, "Disk full on web1", "CPU busy on web1", "Acme Corp",
			`href="/hosts/`+web1.ID+`"`, `href="/rules/watermarks?host=`+web1.ID,
			`hx-get="/incidents/_table?show=open"`, `action="/incidents/`+cpu.ID+`/ack"`,
			`name="csrf_token" value="`+e.csrf+`"`, `aria-current="page">Incidents`)
		if strings.Index(r.body, "Disk full") > strings.Index(r.body, "CPU busy") {
			t.Error("the critical incident is not listed before the warning")
		}
		must(t, "live table", e.htmx("/incidents/_table?show=open"), 200, `id="incidents-table"`, "Disk full on web1")

		// Acknowledge from the list: back to the list, the incident acked by the signed-in user.
		r = e.post("/incidents/"+cpu.ID+"/ack", url.Values{"next": {"/incidents?show=open"}})
		if r.code != 303 || r.location() != "/incidents?show=open" {
			t.Fatalf("ack: %d to %q\n%s", r.code, r.location(), excerpt(r.body))
		}
		in, err := e.alerts.GetIncident(ctx, cpu.ID)
		if err != nil || in.Status != alert.StatusAcknowledged || in.AckedBy != "admin" {
			t.Fatalf("after ack: %+v %v", in, err)
		}
		r = e.get("/incidents")
		must(t, "after ack", r, 200, "Acknowledged", "by admin")
		if strings.Contains(r.body, `action="/incidents/`+cpu.ID+`/ack"`) {
			t.Error("an acknowledged incident still offers Acknowledge")
		}
		// Without the CSRF token nothing happens.
		if r := e.do("POST", "/incidents/"+disk.ID+"/ack", strings.NewReader(""), false, nil); r.code != http.StatusForbidden {
			t.Errorf("ack without CSRF: %d", r.code)
		}
		if in, _ := e.alerts.GetIncident(ctx, disk.ID); in.Status != alert.StatusFiring {
			t.Errorf("ack without CSRF changed the incident to %s", in.Status)
		}

		// A notification queued for the incident shows in its timeline with its delivery state.
		if _, err := notify.Enqueue(ctx, e.db, e.db.Dialect(), notify.Notification{DedupeKey: disk.ID + "/test", IncidentID: disk.ID,
			Step: 1, Channel: notify.ChannelEmail, Recipient: "l1@acme.example", Message: notify.Message{Subject: "[CRITICAL] Disk full on web1", Text: "x"}}); err != nil {
			t.Fatal(err)
		}
		// The incident's page: action plan from the runbook, runbook link, timeline, alerts.
		plan := e.alerts.ActionPlan("FilesystemSpaceCritical")
		if len(plan) == 0 {
			t.Fatal("the shipped runbook has no action plan")
		}
		r = e.get("/incidents/" + disk.ID)
		must(t, "incident", r, 200, "Disk full on web1", `<ol class="action-plan">`, `href="/runbooks/FilesystemSpaceCritical"`,
			"Fired", "l1@acme.example", "pending", "alertname=FilesystemSpaceCritical", `action="/incidents/`+disk.ID+`/resolve"`)
		if !strings.Contains(r.body, htmlText(plan[0])) {
			t.Errorf("the action plan's first step %q is not shown", plan[0])
		}

		// Resolve from the incident's page: back to it, the timeline says who.
		r = e.post("/incidents/"+disk.ID+"/resolve", nil)
		if r.code != 303 || r.location() != "/incidents/"+disk.ID {
			t.Fatalf("resolve: %d to %q", r.code, r.location())
		}
		must(t, "resolved incident", e.get("/incidents/"+disk.ID), 200, "Resolved", "by admin", "by hand")
		r = e.get("/incidents")
		if strings.Contains(r.body, "Disk full on web1") {
			t.Error("a resolved incident is listed as open")
		}
		must(t, "all incidents", e.get("/incidents?show=all"), 200, "Disk full on web1", "CPU busy on web1")

		// Unknown ids are 404, not 500.
		must(t, "unknown incident", e.get("/incidents/nope"), 404)
		must(t, "ack unknown", e.post("/incidents/nope/ack", nil), 404)
	})
}

// errorsBeside returns the error list shown beside a form field, "" if none.
func errorsBeside(body, field string) string {
	start := `<ul class="field-errors" id="e-` + field + `">`
	i := strings.Index(body, start)
	if i < 0 {
		return ""
	}
	j := strings.Index(body[i:], "</ul>")
	if j < 0 {
		return ""
	}
	return body[i : i+j]
}

// htmlText is how html/template writes s in text.
func htmlText(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;", "+", "&#43;")
	return r.Replace(s)
}

func TestWatermarkPages(t *testing.T) {
	eachAlerting(t, func(t *testing.T, e *alertEnv) {
		acme := e.client("Acme Corp")
		pune := e.site(acme.ID, "Pune DC")
		db1 := e.host(inventory.Host{ClientID: acme.ID, SiteID: pune.ID, Name: "db1"})
		if err := e.alerts.RebuildWatermarks(ctx); err != nil {
			t.Fatal(err)
		}

		must(t, "rules", e.get("/rules"), 200, "CPUBusy", "&gt; 90 %", `href="/runbooks/CPUBusy"`, "FilesystemSpaceLow", "per mountpoint", `href="/api/v1/manual?format=pdf"`)

		page := "/rules/watermarks?host=" + db1.ID
		r := e.get(page)
		must(t, "watermarks", r, 200, "Watermarks of db1", "CPUBusy", "default", `name="value"`, `value="host" selected`)

		tests := []struct {
			name   string
			form   url.Values
			code   int
			field  string // the field the error is beside
			says   string
			stored bool
		}{
			{"negative value", url.Values{"alert": {"CPUBusy"}, "scope": {"host"}, "value": {"-5"}}, 400, "value", "must not be negative", false},
			{"not a number", url.Values{"alert": {"CPUBusy"}, "scope": {"host"}, "value": {"lots"}}, 400, "value", "must be a number", false},
			{"unit on a host-level alert", url.Values{"alert": {"CPUBusy"}, "scope": {"host"}, "value": {"80"}, "unit_value": {"/var"}}, 400, "unit_value", "host-level", false},
			{"unknown alert", url.Values{"alert": {"NoSuchAlert"}, "scope": {"host"}, "value": {"80"}}, 400, "alert", "unknown alert", false},
			{"host override", url.Values{"alert": {"CPUBusy"}, "scope": {"host"}, "value": {"97"}, "comment": {"batch box"}}, 303, "", "", true},
			{"site override per mountpoint", url.Values{"alert": {"FilesystemSpaceLow"}, "scope": {"site"}, "value": {"70"}, "unit_value": {"/var"}}, 303, "", "", true},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				before := e.count("watermark_overrides")
				r := e.post(page, tc.form)
				if r.code != tc.code {
					t.Fatalf("status %d, want %d\n%s", r.code, tc.code, excerpt(r.body))
				}
				if got := e.count("watermark_overrides") - before; (got == 1) != tc.stored {
					t.Fatalf("%d overrides stored", got)
				}
				if tc.code == 303 {
					if r.location() != page {
						t.Errorf("redirect to %q", r.location())
					}
					return
				}
				// The error is in the field's error list, beside the field, and the input is kept.
				if !strings.Contains(errorsBeside(r.body, tc.field), tc.says) {
					t.Errorf("no error %q beside %s\n%s", tc.says, tc.field, excerpt(r.body))
				}
				if v := tc.form.Get("value"); !strings.Contains(r.body, `value="`+v+`"`) {
					t.Errorf("the value %q is not kept", v)
				}
			})
		}

		// The effective watermarks show where each comes from, the default beside it.
		r = e.get(page)
		must(t, "after overrides", r, 200, "97 %", "90 %", "this host", "site Pune DC", "batch box", "/var")
		ovs, err := e.alerts.ListOverrides(ctx, alert.OverrideFilter{ClientID: acme.ID, Alert: "CPUBusy"})
		if err != nil || len(ovs) != 1 {
			t.Fatalf("overrides: %v %v", ovs, err)
		}
		found := false
		for _, ef := range e.alerts.EffectiveFor(acme.Slug, "db1") {
			if ef.Alert == "CPUBusy" && ef.UnitLabel == "" {
				found = ef.Value == 97
			}
		}
		if !found {
			t.Error("the host override is not effective")
		}

		// Deleting it brings the default back.
		r = e.post("/rules/overrides/"+ovs[0].ID+"/delete", url.Values{"next": {page}})
		if r.code != 303 || r.location() != page {
			t.Fatalf("delete: %d to %q", r.code, r.location())
		}
		for _, ef := range e.alerts.EffectiveFor(acme.Slug, "db1") {
			if ef.Alert == "CPUBusy" && ef.UnitLabel == "" && ef.Value != ef.Default {
				t.Errorf("after delete CPUBusy is %v, want the default %v", ef.Value, ef.Default)
			}
		}
		must(t, "unknown host", e.get("/rules/watermarks?host=nope"), 404)
		must(t, "no host", e.get("/rules/watermarks"), 404)
	})
}

func TestSilencePages(t *testing.T) {
	eachAlerting(t, func(t *testing.T, e *alertEnv) {
		must(t, "silences", e.get("/silences"), 200, "No current or future silences", `name="matchers"`, `type="datetime-local"`)
		valid := func(over url.Values) url.Values {
			f := url.Values{"kind": {"maintenance"}, "matchers": {"alertname = CPUBusy\nhost=~\"web.*\""},
				"starts_at": {"2030-01-01T10:00"}, "ends_at": {"2030-01-01T12:00"}, "timezone": {"Europe/Berlin"}, "comment": {"patch night"}}
			for k, v := range over {
				f[k] = v
			}
			return f
		}
		tests := []struct {
			name  string
			form  url.Values
			code  int
			field string
			says  string
		}{
			{"bad matcher line", valid(url.Values{"matchers": {"alertname=CPUBusy\nhost web1"}}), 400, "matchers", "line 2: host needs an operator"},
			{"bad regexp", valid(url.Values{"matchers": {"host=~web("}}), 400, "matchers", "item 1"},
			{"nothing matched", valid(url.Values{"matchers": {""}}), 400, "matchers", "would silence everything"},
			{"ends before it starts", valid(url.Values{"ends_at": {"2030-01-01T09:00"}}), 400, "ends_at", "must be after"},
			{"not a time", valid(url.Values{"starts_at": {"tomorrow"}}), 400, "starts_at", "must be a date and time"},
			{"no comment", valid(url.Values{"comment": {" "}}), 400, "comment", "required"},
			{"unknown zone", valid(url.Values{"timezone": {"Mars/Olympus"}}), 400, "timezone", "unknown time zone"},
			{"recurrence without length", valid(url.Values{"recurrence": {"0 2 * * SUN"}}), 400, "duration", "required for a recurring window"},
			{"bad cron", valid(url.Values{"recurrence": {"every sunday"}, "duration": {"2h"}}), 400, "recurrence", "<li>"},
			{"one-off", valid(nil), 303, "", ""},
			{"recurring", valid(url.Values{"recurrence": {"0 2 * * SUN"}, "duration": {"2h"}, "ends_at": {"2031-01-01T00:00"}}), 303, "", ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				before := e.count("silences")
				r := e.post("/silences", tc.form)
				if r.code != tc.code {
					t.Fatalf("status %d, want %d\n%s", r.code, tc.code, excerpt(r.body))
				}
				stored := e.count("silences") - before
				if tc.code == 303 {
					if stored != 1 || r.location() != "/silences" {
						t.Errorf("%d stored, redirect to %q", stored, r.location())
					}
					return
				}
				if stored != 0 {
					t.Errorf("a refused form stored %d silences", stored)
				}
				if !strings.Contains(errorsBeside(r.body, tc.field), tc.says) {
					t.Errorf("no error %q beside %s\n%s", tc.says, tc.field, excerpt(r.body))
				}
			})
		}
		ss, err := e.alerts.ListSilences(ctx, false)
		if err != nil || len(ss) != 2 {
			t.Fatalf("silences: %d %v", len(ss), err)
		}
		// The one-off in Berlin time: 10:00 CET is 09:00 UTC.
		for _, s := range ss {
			if s.Recurrence == "" && !s.StartsAt.Equal(time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)) {
				t.Errorf("starts at %v, want 09:00 UTC", s.StartsAt)
			}
			if m := s.Matchers; s.Kind != alert.KindMaintenance || len(m) != 2 || m[1].Name != "host" || m[1].Op != "=~" || m[1].Value != "web.*" {
				t.Errorf("stored %+v", s)
			}
		}
		r := e.get("/silences")
		must(t, "listed", r, 200, "patch night", "Maintenance", "0 2 * * SUN", "Waiting", `action="/silences/`+ss[0].ID+`/expire"`)

		r = e.post("/silences/"+ss[0].ID+"/expire", nil)
		if r.code != 303 {
			t.Fatalf("expire: %d", r.code)
		}
		if s, _ := e.alerts.GetSilence(ctx, ss[0].ID); s.ExpiredAt.IsZero() {
			t.Error("not expired")
		}
		must(t, "all", e.get("/silences?show=all"), 200, "Over")
		must(t, "expire unknown", e.post("/silences/nope/expire", nil), 404)
	})
}

func TestOnCallPage(t *testing.T) {
	eachAlerting(t, func(t *testing.T, e *alertEnv) {
		ana := e.user("ana", auth.RoleEngineer)
		bo := e.user("bo", auth.RoleEngineer)
		start := time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly)
		if _, err := e.oncall.CreateRota(ctx, oncall.Rota{Name: "First line", Tier: oncall.L1, TimeZone: "UTC", Handover: "08:00",
			ShiftLength: oncall.Duration(24 * time.Hour), StartDate: start, Members: []string{ana.ID, bo.ID}}); err != nil {
			t.Fatal(err)
		}
		r := e.get("/oncall")
		must(t, "oncall", r, 200, "First line", "L1", "Test ana", "Test bo", "Escalation policies",
			"Notify whoever is on call for L1", oncall.DefaultPolicyName)
		if strings.Count(r.body, "<li><span class=\"nowrap\">") < 7 {
			t.Errorf("fewer than 7 daily shifts over 7 days shown")
		}
	})
}

// TestAlertingOff checks that a UI built without the alerting engine still serves its pages and
// answers the alerting pages with 404.
func TestAlertingOff(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		must(t, "overview", e.get("/"), 200, "Overview")
		for _, p := range []string{"/incidents", "/rules", "/silences", "/oncall", "/rules/watermarks?host=x"} {
			must(t, p, e.get(p), 404)
		}
	})
}

func TestTimeline(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	events := []alert.Event{
		{At: at(0), Kind: alert.EventFired, Detail: map[string]any{"value": "97", "source": "rules"}},
		{At: at(1), Kind: alert.EventNotified, Detail: map[string]any{"step": 1.0, "tier": "L1", "user": "Ana", "channel": "email", "recipient": "ana@x"}},
		{At: at(1), Kind: alert.EventNotified, Detail: map[string]any{"step": 1.0, "tier": "L1", "user": "Ana", "channel": "sms", "recipient": "+100"}},
		{At: at(300), Kind: alert.EventEscalated, Detail: map[string]any{"step": 3.0}},
		{At: at(400), Kind: alert.EventAcknowledged, Actor: "bo", Detail: map[string]any{"via": "web"}},
	}
	sends := []notify.Record{
		{Step: 1, Channel: "sms", Recipient: "+100", Status: notify.OutboxFailed, LastError: "provider said no", CreatedAt: at(1)},
		{Step: 1, Channel: "email", Recipient: "ana@x", Status: notify.OutboxSent, CreatedAt: at(1), SentAt: at(2)},
		{Step: 0, Channel: "webhook", Recipient: "ops-hook", Status: notify.OutboxSent, CreatedAt: at(350)},
	}
	got := timeline(events, sends)
	want := []struct {
		kind, send, detail string
	}{
		{"fired", "", "value 97, from rules"},
		{"notified", notify.OutboxSent, "Ana by email (ana@x), tier L1, step 1"},
		{"notified", notify.OutboxFailed, "Ana by sms (+100), tier L1, step 1"},
		{"escalated", "", "step 3"},
		{"notification", notify.OutboxSent, "webhook to ops-hook"},
		{"acknowledged", "", "via web"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d items, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		send := ""
		if g.Send != nil {
			send = g.Send.Status
		}
		if g.Kind != w.kind || send != w.send || g.Detail != w.detail {
			t.Errorf("item %d: %s %q %q, want %s %q %q", i, g.Kind, send, g.Detail, w.kind, w.send, w.detail)
		}
	}
}

func TestParseMatchers(t *testing.T) {
	tests := []struct {
		in   string
		want []alert.Matcher
		errs int
	}{
		{"alertname=DiskFull", []alert.Matcher{{Name: "alertname", Op: "=", Value: "DiskFull"}}, 0},
		{" host =~ web.* \n\n client!=acme ", []alert.Matcher{{Name: "host", Op: "=~", Value: "web.*"}, {Name: "client", Op: "!=", Value: "acme"}}, 0},
		{`mountpoint!~"/run/.*"`, []alert.Matcher{{Name: "mountpoint", Op: "!~", Value: "/run/.*"}}, 0},
		{`comment="a \"quoted\" one"`, []alert.Matcher{{Name: "comment", Op: "=", Value: `a "quoted" one`}}, 0},
		{"host=", []alert.Matcher{{Name: "host", Op: "=", Value: ""}}, 0},
		{"host web1", nil, 1},
		{"=web1", nil, 1},
		{"9host=x", nil, 1},
		{`host="open`, nil, 1},
		{"a=1\nb c\nd=~2", []alert.Matcher{{Name: "a", Op: "=", Value: "1"}, {Name: "d", Op: "=~", Value: "2"}}, 1},
	}
	for _, tc := range tests {
		got, errs := parseMatchers(tc.in)
		if len(errs) != tc.errs || len(got) != len(tc.want) {
			t.Errorf("%q: %+v %v", tc.in, got, errs)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%q: matcher %d is %+v, want %+v", tc.in, i, got[i], tc.want[i])
			}
		}
	}
}

// FuzzParseMatchers checks that any text parses without panicking and that what it reads writes
// back (formatMatchers) to text that reads the same.
func FuzzParseMatchers(f *testing.F) {
	for _, s := range []string{"alertname=DiskFull", "host=~\"web.*\"\nclient!=acme", `x="a\"b"`, "a !~ b", "", "=", "a=\"\\"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, _ := parseMatchers(s)
		again, errs := parseMatchers(formatMatchers(ms))
		if len(errs) > 0 || len(again) != len(ms) {
			t.Fatalf("%q: %+v wrote %q, read back %+v %v", s, ms, formatMatchers(ms), again, errs)
		}
		for i := range ms {
			if again[i] != ms[i] {
				t.Fatalf("%q: matcher %d %+v read back as %+v", s, i, ms[i], again[i])
			}
		}
	})
}

// TestBrowserAlerting drives the alerting pages in Chromium at both viewports: the incident list
// refreshes in place, Acknowledge works from it, and no page scrolls sideways on a phone.
func TestBrowserAlerting(t *testing.T) {
	browser := newBrowser(t)
	e := newAlertEnv(t, storetest.SQLite(t))
	acme := e.client("Acme Corp")
	pune := e.site(acme.ID, "Pune DC")
	for _, vp := range viewports {
		t.Run(vp.name, func(t *testing.T) {
			// A host per viewport: each run acknowledges its own incident.
			web1 := e.host(inventory.Host{ClientID: acme.ID, SiteID: pune.ID, Name: "web1-" + vp.name + ".acme.example"})
			if err := e.alerts.RebuildWatermarks(ctx); err != nil {
				t.Fatal(err)
			}
			ctx := tab(t, browser, vp)
			shot := func(name string) { screenshot(t, ctx, vp.name+"-alerting-"+name) }
			host := web1.Name
			cpu := e.fire("CPUBusy", "warning", acme.Slug, host, "CPU busy on "+host+" ("+vp.name+")")
			e.fire("FilesystemSpaceCritical", "critical", acme.Slug, host, "Disk full on "+host)
			noSideways := func(page string) {
				if over := eval[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth + 1`); over {
					t.Errorf("%s scrolls sideways at %d px", page, vp.width)
				}
			}

			step(t, ctx, "sign in", chromedp.Navigate(e.srv.URL+"/incidents"), chromedp.WaitVisible(chromedp.CSS("#username")),
				chromedp.SendKeys(chromedp.CSS("#username"), "admin"), chromedp.SendKeys(chromedp.CSS("#password"), testPassword))
			if resp := submit(t, ctx, "sign in", "form button[type=submit]"); resp.Status != 200 || !strings.HasSuffix(resp.URL, "/incidents") {
				t.Fatalf("after signing in: %d %s", resp.Status, resp.URL)
			}
			step(t, ctx, "incidents", chromedp.WaitVisible(chromedp.CSS("#incidents-table tbody tr")))
			eval[chromedp.Void](t, ctx, `document.querySelector("#incidents-table").dataset.marker = "old"`)
			step(t, ctx, "live refresh", chromedp.WaitReady(chromedp.CSS(`#incidents-table:not([data-marker])`)))
			noSideways("the incident list")
			shot("01-incidents")

			if resp := submit(t, ctx, "acknowledge", `form[action="/incidents/`+cpu.ID+`/ack"] button`); resp.Status != 200 {
				t.Fatalf("acknowledge: %d %s", resp.Status, resp.URL)
			}
			if in, _ := e.alerts.GetIncident(ctx, cpu.ID); in.Status != alert.StatusAcknowledged {
				t.Errorf("after the click the incident is %s", in.Status)
			}
			if f := eval[string](t, ctx, `document.querySelector(".flash").innerText`); !strings.Contains(f, "acknowledged") {
				t.Errorf("flash %q", f)
			}

			step(t, ctx, "incident page", chromedp.Navigate(e.srv.URL+"/incidents/"+cpu.ID), chromedp.WaitVisible(chromedp.CSS(".action-plan")))
			noSideways("the incident page")
			shot("02-incident")

			step(t, ctx, "watermarks", chromedp.Navigate(e.srv.URL+"/rules/watermarks?host="+web1.ID), chromedp.WaitVisible(chromedp.CSS("#f-value")),
				chromedp.SetValue(chromedp.CSS("#f-value"), "-1"))
			if resp := submit(t, ctx, "negative override", "form[action^='/rules/watermarks'] button[type=submit]"); resp.Status != 400 {
				t.Errorf("negative override: %d", resp.Status)
			}
			if s := eval[string](t, ctx, `document.querySelector("#e-value").innerText`); !strings.Contains(s, "negative") {
				t.Errorf("the value's error reads %q", s)
			}
			noSideways("the watermarks page")
			shot("03-watermarks")

			for _, p := range []string{"/rules", "/silences", "/oncall"} {
				step(t, ctx, p, chromedp.Navigate(e.srv.URL+p), chromedp.WaitVisible(chromedp.CSS("main h1")))
				noSideways(p)
				shot("04" + strings.ReplaceAll(p, "/", "-"))
			}
		})
	}
}
