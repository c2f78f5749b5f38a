package alert_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serversage/sage/internal/alert"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

// clock is a settable time for the engine.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time           { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration)      { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock                    { return &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)} }
func firing(labels ...string) alert.Alert { return alertOf(false, labels...) }
func resolved(labels ...string) alert.Alert {
	return alertOf(true, labels...)
}

func alertOf(res bool, kv ...string) alert.Alert {
	l := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return alert.Alert{Labels: l, Annotations: map[string]string{"summary": "s"}, Value: "93", Resolved: res}
}

// estates keeps one estate per database, so that a second engine over the same database (a
// restarted hub) finds the clients it needs without creating them again.
var estates sync.Map

func engineWithClock(t *testing.T, db *store.DB, c *clock) *alert.Engine {
	t.Helper()
	v, ok := estates.Load(db)
	if !ok {
		v = newEstate(t, db)
		estates.Store(db, v)
		t.Cleanup(func() { estates.Delete(db) })
	}
	es := v.(*estate)
	e, err := alert.New(alert.Options{DB: db, Engine: es.metrics.Engine(), Queryable: es.metrics.Queryable(), Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetRules(context.Background(), testRuleSet()); err != nil {
		t.Fatal(err)
	}
	return e
}

func kinds(t *testing.T, e *alert.Engine, id string) string {
	t.Helper()
	evs, err := e.Events(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var k []string
	for _, ev := range evs {
		k = append(k, ev.Kind)
	}
	return strings.Join(k, " ")
}

func openIncidents(t *testing.T, e *alert.Engine) []alert.Incident {
	t.Helper()
	in, err := e.ListIncidents(context.Background(), alert.IncidentFilter{Open: true})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestIncidentLifecycle(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		c := newClock()
		e := engineWithClock(t, db, c)
		a := []string{"alertname", "HostHot", "client", "acme", "host", "h1", "severity", "critical"}

		// Fired, then resent every minute as the rules manager does: one incident, one event.
		for range 3 {
			if err := e.Receive(ctx, alert.SourceRules, []alert.Alert{firing(a...)}); err != nil {
				t.Fatal(err)
			}
			c.Add(time.Minute)
		}
		open := openIncidents(t, e)
		if len(open) != 1 {
			t.Fatalf("open incidents = %d, want 1", len(open))
		}
		in := open[0]
		if in.ClientID == "" || in.HostID == "" || in.Severity != "critical" || in.Status != alert.StatusFiring {
			t.Errorf("incident %+v: want client and host resolved from labels, critical, firing", in)
		}
		if got := kinds(t, e, in.ID); got != "fired" {
			t.Errorf("timeline %q, want fired", got)
		}

		// A second alert of the same group joins it.
		b := append(append([]string{}, a...), "mountpoint", "/var")
		if err := e.Receive(ctx, alert.SourceRules, []alert.Alert{firing(b...)}); err != nil {
			t.Fatal(err)
		}
		if n := len(openIncidents(t, e)); n != 1 {
			t.Fatalf("open incidents = %d after a second alert of the group", n)
		}

		// Acknowledged (twice: the second records nothing).
		for range 2 {
			if _, err := e.Acknowledge(ctx, in.ID, "alice", nil); err != nil {
				t.Fatal(err)
			}
		}
		got, _ := e.GetIncident(ctx, in.ID)
		if got.Status != alert.StatusAcknowledged || got.AckedBy != "alice" || got.EscDoneAt.IsZero() {
			t.Errorf("after ack: %+v", got)
		}

		// Resolved only when both alerts have.
		if err := e.Receive(ctx, alert.SourceRules, []alert.Alert{resolved(a...)}); err != nil {
			t.Fatal(err)
		}
		if got, _ := e.GetIncident(ctx, in.ID); got.Status == alert.StatusResolved {
			t.Fatal("resolved while one alert still fires")
		}
		if err := e.Receive(ctx, alert.SourceRules, []alert.Alert{resolved(b...)}); err != nil {
			t.Fatal(err)
		}
		if got, _ := e.GetIncident(ctx, in.ID); got.Status != alert.StatusResolved || got.ResolvedAt.IsZero() {
			t.Fatalf("after all alerts resolved: %+v", got)
		}

		// Fires again within the re-fire window: the same incident, open again, fires = 2, ack gone.
		c.Add(5 * time.Minute)
		if err := e.Receive(ctx, alert.SourceRules, []alert.Alert{firing(a...)}); err != nil {
			t.Fatal(err)
		}
		got, _ = e.GetIncident(ctx, in.ID)
		if got.Status != alert.StatusFiring || got.Fires != 2 || !got.AckedAt.IsZero() {
			t.Errorf("after re-fire: %+v", got)
		}
		if got := kinds(t, e, in.ID); got != "fired alert_added acknowledged resolved refired" {
			t.Errorf("timeline %q", got)
		}

		// Resolved by hand, then firing again after the window: a new incident.
		if _, err := e.Resolve(ctx, in.ID, "bob"); err != nil {
			t.Fatal(err)
		}
		c.Add(time.Hour)
		if err := e.Receive(ctx, alert.SourceRules, []alert.Alert{firing(a...)}); err != nil {
			t.Fatal(err)
		}
		open = openIncidents(t, e)
		if len(open) != 1 || open[0].ID == in.ID {
			t.Fatalf("after the window: %+v, want one new incident", open)
		}
	})
}

func TestSilencesAndMaintenance(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		c := newClock()
		e := engineWithClock(t, db, c)
		now := c.Now()
		if _, err := e.CreateSilence(ctx, alert.Silence{
			Matchers: []alert.Matcher{{Name: "host", Op: "=~", Value: "db.*"}}, StartsAt: now, EndsAt: now.Add(time.Hour), Comment: "migration",
		}); err != nil {
			t.Fatal(err)
		}
		// Sundays 02:00-04:00 Europe/London, all of acme's hosts named web*.
		mw, err := e.CreateSilence(ctx, alert.Silence{
			Kind: alert.KindMaintenance, Matchers: []alert.Matcher{{Name: "host", Op: "=~", Value: "web.*"}},
			StartsAt: now.Add(-24 * time.Hour), EndsAt: now.Add(365 * 24 * time.Hour), Recurrence: "0 2 * * 0",
			Duration: 2 * time.Hour, Timezone: "Europe/London", Comment: "weekly patching",
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			at     time.Time
			active bool
		}{
			{time.Date(2026, 11, 22, 2, 30, 0, 0, time.UTC), true},  // Sunday 02:30 GMT
			{time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC), false},  // end is exclusive
			{time.Date(2026, 11, 21, 2, 30, 0, 0, time.UTC), false}, // Saturday
			{time.Date(2027, 6, 6, 1, 30, 0, 0, time.UTC), true},    // Sunday 02:30 BST
			{time.Date(2027, 6, 6, 2, 30, 0, 0, time.UTC), true},
			{time.Date(2027, 6, 6, 3, 30, 0, 0, time.UTC), false}, // 04:30 BST
		} {
			if got := mw.ActiveAt(tc.at); got != tc.active {
				t.Errorf("maintenance active at %v = %v, want %v", tc.at, got, tc.active)
			}
		}

		if err := e.Receive(ctx, alert.SourceRules, []alert.Alert{firing("alertname", "X", "client", "acme", "host", "db1")}); err != nil {
			t.Fatal(err)
		}
		c.t = time.Date(2026, 11, 22, 2, 30, 0, 0, time.UTC)
		if err := e.Receive(ctx, alert.SourceRules, []alert.Alert{firing("alertname", "X", "client", "acme", "host", "web1")}); err != nil {
			t.Fatal(err)
		}
		for _, in := range openIncidents(t, e) {
			switch in.Labels["host"] {
			case "db1":
				if in.SuppressedBy == "" || in.Planned {
					t.Errorf("db1: %+v, want suppressed by the silence, unplanned", in)
				}
			case "web1":
				if in.SuppressedBy != mw.ID || !in.Planned {
					t.Errorf("web1: %+v, want suppressed by the maintenance window, planned", in)
				}
			}
			if got := kinds(t, e, in.ID); got != "fired suppressed" {
				t.Errorf("%s timeline %q", in.Labels["host"], got)
			}
		}
	})
}

func TestSilenceValidation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := engineWithClock(t, db, newClock())
		now := time.Now()
		for _, c := range []struct {
			name  string
			s     alert.Silence
			field string
		}{
			{"everything", alert.Silence{StartsAt: now, EndsAt: now.Add(time.Hour), Comment: "x"}, "matchers"},
			{"bad regexp", alert.Silence{Matchers: []alert.Matcher{{Name: "host", Op: "=~", Value: "("}}, StartsAt: now, EndsAt: now.Add(time.Hour), Comment: "x"}, "matchers[0]"},
			{"ends first", alert.Silence{Matchers: []alert.Matcher{{Name: "host", Value: "a"}}, StartsAt: now, EndsAt: now.Add(-time.Hour), Comment: "x"}, "ends_at"},
			{"no comment", alert.Silence{Matchers: []alert.Matcher{{Name: "host", Value: "a"}}, StartsAt: now, EndsAt: now.Add(time.Hour)}, "comment"},
			{"bad cron", alert.Silence{Matchers: []alert.Matcher{{Name: "host", Value: "a"}}, StartsAt: now, EndsAt: now.Add(time.Hour), Comment: "x", Recurrence: "61 * * * *", Duration: time.Hour}, "recurrence"},
			{"bad zone", alert.Silence{Matchers: []alert.Matcher{{Name: "host", Value: "a"}}, StartsAt: now, EndsAt: now.Add(time.Hour), Comment: "x", Timezone: "Mars/Base"}, "timezone"},
		} {
			t.Run(c.name, func(t *testing.T) {
				_, err := e.CreateSilence(context.Background(), c.s)
				fe := config.FieldErrors(err)
				if len(fe) == 0 || fe[0].Field != c.field {
					t.Errorf("err = %v, want a field error on %s", err, c.field)
				}
			})
		}
	})
}

func TestAckToken(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		c := newClock()
		e := engineWithClock(t, db, c)
		if err := e.Receive(ctx, alert.SourceRules, []alert.Alert{firing("alertname", "X", "client", "acme", "host", "h1")}); err != nil {
			t.Fatal(err)
		}
		in := openIncidents(t, e)[0]
		tok, err := e.CreateAckToken(ctx, db, in.ID, "l1@example.net", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.LookupAckToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if got, _ := e.GetIncident(ctx, in.ID); got.Status != alert.StatusFiring {
			t.Fatal("looking a link up acknowledged the incident")
		}
		if _, err := e.AckWithToken(ctx, "not-a-token"); !errors.Is(err, alert.ErrAckToken) {
			t.Errorf("bad token: %v", err)
		}
		got, err := e.AckWithToken(ctx, tok)
		if err != nil || got.Status != alert.StatusAcknowledged || got.AckedBy != "l1@example.net" {
			t.Fatalf("ack by link: %+v %v", got, err)
		}
		c.Add(alert.AckTokenTTL + time.Minute)
		if _, err := e.LookupAckToken(ctx, tok); !errors.Is(err, alert.ErrAckToken) {
			t.Errorf("expired token: %v", err)
		}
	})
}

func TestWebhookReceiver(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := engineWithClock(t, db, newClock())
		srv := httptest.NewServer(e.WebhookHandler())
		defer srv.Close()
		msg := `{"version":"4","groupKey":"{}:{alertname=\"DiskFull\"}","status":"firing","receiver":"sage",
			"groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am","truncatedAlerts":0,
			"alerts":[{"status":"firing","labels":{"alertname":"DiskFull","client":"acme","host":"h1","severity":"warning"},
			"annotations":{"summary":"disk"},"startsAt":"2026-11-21T09:59:00Z","endsAt":"0001-01-01T00:00:00Z",
			"generatorURL":"http://prom/graph","fingerprint":"abc"}]}`
		for _, c := range []struct {
			name string
			body string
			code int
		}{
			{"valid", msg, http.StatusNoContent},
			{"repeat", msg, http.StatusNoContent},
			{"not json", "{", http.StatusBadRequest},
			{"version", strings.Replace(msg, `"version":"4"`, `"version":"3"`, 1), http.StatusBadRequest},
			{"status", strings.Replace(msg, `"status":"firing","labels"`, `"status":"odd","labels"`, 1), http.StatusBadRequest},
		} {
			res, err := http.Post(srv.URL, "application/json", bytes.NewBufferString(c.body))
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != c.code {
				t.Errorf("%s: %d, want %d", c.name, res.StatusCode, c.code)
			}
		}
		open := openIncidents(t, e)
		if len(open) != 1 || open[0].Source != alert.SourceAlertmanager || open[0].Title != "disk" {
			t.Fatalf("open = %+v, want one incident from alertmanager", open)
		}
		resolvedMsg := strings.Replace(strings.Replace(msg, `"status":"firing","labels"`, `"status":"resolved","labels"`, 1),
			`"endsAt":"0001-01-01T00:00:00Z"`, `"endsAt":"2026-11-21T10:00:00Z"`, 1)
		res, err := http.Post(srv.URL, "application/json", bytes.NewBufferString(resolvedMsg))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if n := len(openIncidents(t, e)); n != 0 {
			t.Errorf("open after resolved message: %d", n)
		}
	})
}

func FuzzParseWebhook(f *testing.F) {
	f.Add([]byte(`{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A"}}]}`))
	f.Add([]byte(`{"version":"4","alerts":[{"status":"resolved","labels":{}}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := alert.ParseWebhook(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, a := range m.Alerts {
			if a.Labels["alertname"] == "" || (a.Status != "firing" && a.Status != "resolved") {
				t.Fatalf("accepted an invalid alert %+v", a)
			}
		}
	})
}
