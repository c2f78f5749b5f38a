package alert_test

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/alert"
	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/notify"
	"github.com/serversage/sage/internal/oncall"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

// staff makes alice (L1: email and SMS), bob (L2: email) and carol (L3: email), each alone on a
// daily rota of their tier, and the default policy (L1; 15 min; L2; 15 min; L3).
func staff(t *testing.T, db *store.DB) *oncall.Store {
	t.Helper()
	ctx := context.Background()
	a := auth.New(db)
	oc := oncall.New(db)
	for _, p := range []struct {
		name, email, phone string
		tier               oncall.Tier
		channels           []string
	}{
		{"alice", "alice@example.net", "+441632960001", oncall.Tier("L1"), []string{"email", "sms"}},
		{"bob", "bob@example.net", "", oncall.Tier("L2"), []string{"email"}},
		{"carol", "carol@example.net", "", oncall.Tier("L3"), []string{"email"}},
	} {
		u, err := a.CreateUser(ctx, auth.User{Username: p.name, Role: auth.RoleEngineer}, "a long enough password")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := oc.SetContact(ctx, oncall.Contact{UserID: u.ID, Email: p.email, Phone: p.phone, Channels: p.channels}); err != nil {
			t.Fatal(err)
		}
		if _, err := oc.CreateRota(ctx, oncall.Rota{Name: string(p.tier) + " rota", Tier: p.tier, TimeZone: "UTC", Handover: "08:00",
			ShiftLength: oncall.Duration(24 * time.Hour), StartDate: "2026-01-01", Members: []string{u.ID}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := oc.EnsureDefaults(ctx); err != nil {
		t.Fatal(err)
	}
	return oc
}

// outbox lists an incident's notifications as "channel:recipient:status", sorted.
func outbox(t *testing.T, db *store.DB, id string) []string {
	t.Helper()
	recs, err := notify.ListByIncident(context.Background(), db, id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Channel+":"+r.Recipient+":"+r.Status)
	}
	sort.Strings(out)
	return out
}

func TestEscalation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		c := newClock()
		oc := staff(t, db)
		newEngine := func() *alert.Engine {
			e := engineWithClock(t, db, c)
			e.SetEscalation(alert.Escalation{OnCall: oc, Webhooks: []string{"ops"}})
			return e
		}
		e := newEngine()
		pass := func(e *alert.Engine) {
			t.Helper()
			if err := e.EscalateOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Receive(ctx, alert.SourceRules, []alert.Alert{firing("alertname", "HostHot", "client", "acme", "host", "h1", "severity", "critical")}); err != nil {
			t.Fatal(err)
		}
		in := openIncidents(t, e)[0]
		want := func(step string, expected ...string) {
			t.Helper()
			sort.Strings(expected)
			if got := outbox(t, db, in.ID); strings.Join(got, " ") != strings.Join(expected, " ") {
				t.Fatalf("%s: outbox\n%v\nwant\n%v", step, got, expected)
			}
		}

		pass(e)
		want("fired", "email:alice@example.net:pending", "sms:+441632960001:pending", "webhook:ops:pending")
		pass(e) // a replay changes nothing
		c.Add(14 * time.Minute)
		pass(e)
		want("before the wait ends", "email:alice@example.net:pending", "sms:+441632960001:pending", "webhook:ops:pending")

		c.Add(time.Minute)
		pass(e)
		want("L2 after 15 min", "email:alice@example.net:pending", "sms:+441632960001:pending", "webhook:ops:pending", "email:bob@example.net:pending")

		// A restarted hub (a new engine over the same database) resumes the wait for L3: nothing
		// is sent twice.
		e = newEngine()
		pass(e)
		want("after a restart", "email:alice@example.net:pending", "sms:+441632960001:pending", "webhook:ops:pending", "email:bob@example.net:pending")

		// Acknowledged: what is still queued is withdrawn, the webhook hears of the ack, and L3 is
		// never called.
		if _, err := e.Acknowledge(ctx, in.ID, "bob", nil); err != nil {
			t.Fatal(err)
		}
		c.Add(time.Hour)
		pass(e)
		want("after ack", "email:alice@example.net:cancelled", "sms:+441632960001:cancelled", "webhook:ops:cancelled",
			"email:bob@example.net:cancelled", "webhook:ops:pending")
		if got := kinds(t, e, in.ID); got != "fired notified notified escalated notified acknowledged" {
			t.Errorf("timeline %q", got)
		}
	})
}

func TestEscalationSuppressedUntilSilenceEnds(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		c := newClock()
		oc := staff(t, db)
		e := engineWithClock(t, db, c)
		e.SetEscalation(alert.Escalation{OnCall: oc})
		if err := e.Receive(ctx, alert.SourceRules, []alert.Alert{firing("alertname", "HostHot", "client", "acme", "host", "h1", "severity", "critical")}); err != nil {
			t.Fatal(err)
		}
		in := openIncidents(t, e)[0]
		// Silenced after it fired, before its first pass: nobody is told while the silence lasts.
		if _, err := e.CreateSilence(ctx, alert.Silence{Matchers: []alert.Matcher{{Name: "host", Value: "h1"}},
			StartsAt: c.Now(), EndsAt: c.Now().Add(30 * time.Minute), Comment: "reboot"}); err != nil {
			t.Fatal(err)
		}
		if err := e.EscalateOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if got := outbox(t, db, in.ID); len(got) != 0 {
			t.Fatalf("notified while silenced: %v", got)
		}
		c.Add(31 * time.Minute)
		if err := e.EscalateOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if got := outbox(t, db, in.ID); len(got) != 2 {
			t.Fatalf("after the silence: %v, want alice by email and SMS", got)
		}
		if got := kinds(t, e, in.ID); got != "fired suppressed unsuppressed notified notified" {
			t.Errorf("timeline %q", got)
		}
	})
}
