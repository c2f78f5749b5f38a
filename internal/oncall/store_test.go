package oncall_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/oncall"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

var ctx = context.Background()

// fixture is a fresh store on one database, with users and clients made directly: users through
// SQL because auth's bcrypt would only slow the tests, clients through the inventory.
type fixture struct {
	t   *testing.T
	db  *store.DB
	s   *oncall.Store
	inv *inventory.Inventory
}

func each(t *testing.T, body func(t *testing.T, f fixture)) {
	t.Helper()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		body(t, fixture{t: t, db: db, s: oncall.New(db), inv: inventory.New(db)})
	})
}

func (f fixture) user(username, display string) string {
	f.t.Helper()
	id := store.NewID()
	now := store.Millis(time.Now())
	_, err := f.db.ExecContext(ctx, `INSERT INTO users (id, username, username_fold, display_name, role, password_hash, created_at, updated_at)
		VALUES ($1, $2, $3, $4, 'engineer', 'x', $5, $5)`, id, username, strings.ToLower(username), display, now)
	if err != nil {
		f.t.Fatalf("creating user %s: %v", username, err)
	}
	return id
}

func (f fixture) disable(id string) {
	f.t.Helper()
	if _, err := f.db.ExecContext(ctx, "UPDATE users SET disabled_at = 1 WHERE id = $1", id); err != nil {
		f.t.Fatal(err)
	}
}

func (f fixture) client(name string) string {
	f.t.Helper()
	c, err := f.inv.CreateClient(ctx, inventory.Client{Name: name})
	if err != nil {
		f.t.Fatalf("creating client %s: %v", name, err)
	}
	return c.ID
}

func (f fixture) rota(r oncall.Rota) oncall.Rota {
	f.t.Helper()
	out, err := f.s.CreateRota(ctx, r)
	if err != nil {
		f.t.Fatalf("creating rota %s: %v", r.Name, err)
	}
	return out
}

func (f fixture) count(table string) int {
	f.t.Helper()
	var n int
	if err := f.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// wantField fails unless err is a validation error with an error on field containing msg.
func wantField(t *testing.T, err error, field, msg string) {
	t.Helper()
	fes := oncall.FieldErrors(err)
	if fes == nil {
		t.Fatalf("error %v, want a validation error on %s", err, field)
	}
	wantFieldIn(t, fes, field, msg)
}

// sameJSON fails unless got and want encode to the same JSON.
func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func second[T any](_ T, err error) error { return err }

func TestContacts(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		bob := f.user("bob", "Bob Builder")
		c, err := f.s.CreateContact(ctx, oncall.Contact{UserID: bob, Email: " bob@example.com ", Phone: "+91 98765-43210",
			Channels: []string{"SMS", "email"}})
		if err != nil {
			t.Fatal(err)
		}
		if c.Email != "bob@example.com" || c.Phone != "+919876543210" || !slices.Equal(c.Channels, []string{"email", "sms"}) {
			t.Errorf("created %+v: want trimmed email, E.164 phone, channels in order", c)
		}
		got, err := f.s.GetContact(ctx, bob)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "GetContact", got, c)
		wantField(t, second(f.s.CreateContact(ctx, oncall.Contact{UserID: bob})), "user_id", "already has contact details")

		// Switching SMS off keeps when email was switched on.
		storetest.MustExec(t, f.db, "UPDATE user_contacts SET email_enabled_at = 12345")
		c.Channels = []string{"email"}
		up, err := f.s.UpdateContact(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		var emailOn int64
		var smsOn *int64
		f.db.QueryRowContext(ctx, "SELECT email_enabled_at, sms_enabled_at FROM user_contacts WHERE user_id = $1", bob).Scan(&emailOn, &smsOn)
		if !slices.Equal(up.Channels, []string{"email"}) || emailOn != 12345 || smsOn != nil {
			t.Errorf("updated %+v; email enabled at %d, sms at %v; want 12345 kept and sms off", up, emailOn, smsOn)
		}

		alice := f.user("alice", "")
		if _, err := f.s.UpdateContact(ctx, oncall.Contact{UserID: alice}); !errors.Is(err, oncall.ErrNotFound) {
			t.Errorf("UpdateContact of a user without contact: %v, want ErrNotFound", err)
		}
		if _, err := f.s.SetContact(ctx, oncall.Contact{UserID: alice, Phone: "+14155550100", Channels: []string{"sms"}}); err != nil {
			t.Fatal(err)
		}
		list, err := f.s.ListContacts(ctx)
		if err != nil || len(list) != 2 || list[0].UserID != alice || list[1].UserID != bob {
			t.Errorf("ListContacts: %+v, %v; want alice then bob", list, err)
		}

		for _, tt := range []struct {
			name  string
			c     oncall.Contact
			field string
			msg   string
		}{
			{"no user", oncall.Contact{}, "user_id", "is required"},
			{"unknown user", oncall.Contact{UserID: "nobody"}, "user_id", "no user has id"},
			{"bad email", oncall.Contact{UserID: alice, Email: "bob at example"}, "email", "not an email address"},
			{"named email", oncall.Contact{UserID: alice, Email: "Bob <bob@example.com>"}, "email", "bare address"},
			{"local phone", oncall.Contact{UserID: alice, Phone: "09876543210"}, "phone", "E.164"},
			{"short phone", oncall.Contact{UserID: alice, Phone: "+1234567"}, "phone", "E.164"},
			{"long phone", oncall.Contact{UserID: alice, Phone: "+1234567890123456"}, "phone", "E.164"},
			{"zero country", oncall.Contact{UserID: alice, Phone: "+0234567890"}, "phone", "E.164"},
			{"sms without phone", oncall.Contact{UserID: alice, Channels: []string{"sms"}}, "channels", "sms needs a phone"},
			{"email without address", oncall.Contact{UserID: alice, Channels: []string{"email"}}, "channels", "email needs an email"},
			{"unknown channel", oncall.Contact{UserID: alice, Channels: []string{"pager"}}, "channels[0]", "not a channel"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				wantField(t, second(f.s.SetContact(ctx, tt.c)), tt.field, tt.msg)
			})
		}
		if c, _ := f.s.GetContact(ctx, alice); c.Phone != "+14155550100" {
			t.Errorf("a refused write changed the contact: %+v", c)
		}

		if err := f.s.DeleteContact(ctx, alice); err != nil {
			t.Fatal(err)
		}
		if err := f.s.DeleteContact(ctx, alice); !errors.Is(err, oncall.ErrNotFound) {
			t.Errorf("second delete: %v, want ErrNotFound", err)
		}
		// Deleting the user takes the contact with it.
		f.db.ExecContext(ctx, "DELETE FROM users WHERE id = $1", bob)
		if n := f.count("user_contacts"); n != 0 {
			t.Errorf("%d contacts left after their users went", n)
		}
	})
}

func TestRotaCRUD(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		a, b, c := f.user("a", "Ann"), f.user("b", "Ben"), f.user("c", "Cas")
		acme := f.client("Acme")
		r := f.rota(oncall.Rota{Name: " L1 Acme ", Tier: "l1", ClientID: acme, TimeZone: "Asia/Kolkata", Handover: "09:00",
			ShiftLength: hours(24), StartDate: "2026-01-05", Members: []string{a, b, a}})
		if r.Name != "L1 Acme" || r.Tier != oncall.L1 || !slices.Equal(r.Members, []string{a, b, a}) || r.ID == "" {
			t.Errorf("created %+v", r)
		}
		got, err := f.s.GetRota(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "GetRota", got, r)

		o, err := f.s.CreateOverride(ctx, oncall.Override{RotaID: r.ID, UserID: c, From: utc(t, "2026-01-06 00:00"),
			Until: utc(t, "2026-01-07 00:00"), Note: "swap"})
		if err != nil {
			t.Fatal(err)
		}
		r.Members, r.ShiftLength, r.ClientID = []string{c}, hours(12), ""
		up, err := f.s.UpdateRota(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(up.Members, []string{c}) || up.ShiftLength != hours(12) || up.ClientID != "" ||
			len(up.Overrides) != 1 || up.Overrides[0].ID != o.ID {
			t.Errorf("updated %+v: want new members, shift and scope, the override kept", up)
		}
		got, _ = f.s.GetRota(ctx, r.ID)
		sameJSON(t, "GetRota after update", got, up)

		f.rota(oncall.Rota{Name: "L2 all", Tier: oncall.L2, TimeZone: "UTC", Handover: "08:00", ShiftLength: hours(168), StartDate: "2026-01-05"})
		all, err := f.s.ListRotas(ctx, oncall.RotaFilter{})
		if err != nil || len(all) != 2 || all[0].Name != "L1 Acme" || len(all[0].Overrides) != 1 || all[1].Members != nil {
			t.Errorf("ListRotas: %+v, %v", all, err)
		}
		l2, _ := f.s.ListRotas(ctx, oncall.RotaFilter{Tier: oncall.L2})
		if len(l2) != 1 || l2[0].Name != "L2 all" {
			t.Errorf("ListRotas(L2): %+v", l2)
		}

		if err := f.s.DeleteRota(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		for name, err := range map[string]error{
			"get":             second(f.s.GetRota(ctx, r.ID)),
			"update":          second(f.s.UpdateRota(ctx, up)),
			"delete":          f.s.DeleteRota(ctx, r.ID),
			"get override":    second(f.s.GetOverride(ctx, o.ID)),
			"delete override": f.s.DeleteOverride(ctx, o.ID),
		} {
			if !errors.Is(err, oncall.ErrNotFound) {
				t.Errorf("%s after delete: %v, want ErrNotFound", name, err)
			}
		}
		if n := f.count("rota_members") + f.count("rota_overrides"); n != 0 {
			t.Errorf("%d members and overrides left after their rota went", n)
		}
	})
}

func TestRotaValidationInStore(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		a := f.user("a", "")
		ok := func(mod func(r *oncall.Rota)) oncall.Rota {
			r := oncall.Rota{Name: "R", Tier: oncall.L1, TimeZone: "UTC", Handover: "08:00", ShiftLength: hours(24),
				StartDate: "2026-01-05", Members: []string{a}}
			mod(&r)
			return r
		}
		f.rota(ok(func(*oncall.Rota) {}))
		for _, tt := range []struct {
			name  string
			mod   func(r *oncall.Rota)
			field string
			msg   string
		}{
			{"duplicate name", func(r *oncall.Rota) { r.Name = "r" }, "name", "already exists"},
			{"unknown member", func(r *oncall.Rota) { r.Name = "S"; r.Members = []string{a, "ghost"} }, "members[1]", "no user has id \"ghost\""},
			{"unknown client", func(r *oncall.Rota) { r.Name = "S"; r.ClientID = "ghost" }, "client_id", "no client has id"},
			{"bad zone", func(r *oncall.Rota) { r.Name = "S"; r.TimeZone = "Europe/Atlantis" }, "time_zone", "not a known IANA"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				wantField(t, second(f.s.CreateRota(ctx, ok(tt.mod))), tt.field, tt.msg)
			})
		}
		if n := f.count("rotas"); n != 1 {
			t.Errorf("%d rotas after refused writes, want 1", n)
		}
		if _, err := f.s.UpdateRota(ctx, ok(func(r *oncall.Rota) { r.ID = "ghost" })); !errors.Is(err, oncall.ErrNotFound) {
			t.Errorf("updating a missing rota: %v", err)
		}
	})
}

func TestOverrides(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		a, b, c := f.user("a", ""), f.user("b", ""), f.user("c", "")
		r := f.rota(oncall.Rota{Name: "R", Tier: oncall.L1, TimeZone: "UTC", Handover: "08:00", ShiftLength: hours(24),
			StartDate: "2026-01-05", Members: []string{a}})
		o1, err := f.s.CreateOverride(ctx, oncall.Override{RotaID: r.ID, UserID: b, From: utc(t, "2026-01-06 00:00"), Until: utc(t, "2026-01-08 00:00")})
		if err != nil {
			t.Fatal(err)
		}
		o2, err := f.s.CreateOverride(ctx, oncall.Override{RotaID: r.ID, UserID: c, From: utc(t, "2026-01-07 00:00"), Until: utc(t, "2026-01-09 00:00")})
		if err != nil {
			t.Fatal(err)
		}
		onCall := func(at string) string {
			t.Helper()
			p, err := f.s.OnCall(ctx, oncall.L1, "", utc(t, at))
			if err != nil {
				t.Fatal(err)
			}
			if len(p) != 1 {
				t.Fatalf("OnCall at %s: %+v, want one person", at, p)
			}
			return p[0].UserID
		}
		for at, want := range map[string]string{
			"2026-01-05 12:00": a, "2026-01-06 12:00": b, "2026-01-07 12:00": c, "2026-01-08 12:00": c, "2026-01-09 00:00": a,
		} {
			if got := onCall(at); got != want {
				t.Errorf("on call at %s: %s, want %s", at, got, want)
			}
		}
		// Editing the older override does not make it the latest created.
		o1.Until, o1.Note = utc(t, "2026-01-08 12:00"), "extended"
		up, err := f.s.UpdateOverride(ctx, oncall.Override{ID: o1.ID, UserID: b, From: o1.From, Until: o1.Until, Note: o1.Note})
		if err != nil {
			t.Fatal(err)
		}
		if !up.CreatedAt.Equal(o1.CreatedAt) || up.Note != "extended" || up.RotaID != r.ID {
			t.Errorf("updated %+v", up)
		}
		if got := onCall("2026-01-08 06:00"); got != c {
			t.Errorf("after editing the older override, %s is on call; the newer (c) should still win", got)
		}
		list, err := f.s.ListOverrides(ctx, r.ID)
		if err != nil || len(list) != 2 || list[0].ID != o1.ID || list[1].ID != o2.ID {
			t.Errorf("ListOverrides: %+v, %v", list, err)
		}

		other := f.rota(oncall.Rota{Name: "S", Tier: oncall.L2, TimeZone: "UTC", Handover: "08:00", ShiftLength: hours(24), StartDate: "2026-01-05"})
		wantField(t, second(f.s.UpdateOverride(ctx, oncall.Override{ID: o1.ID, RotaID: other.ID, UserID: b, From: o1.From, Until: o1.Until})),
			"rota_id", "cannot move")
		wantField(t, second(f.s.CreateOverride(ctx, oncall.Override{RotaID: "ghost", UserID: "ghost", From: o1.From, Until: o1.Until})),
			"rota_id", "no rota has id")
		wantField(t, second(f.s.CreateOverride(ctx, oncall.Override{RotaID: r.ID, UserID: "ghost", From: o1.From, Until: o1.Until})),
			"user_id", "no user has id")
		wantField(t, second(f.s.CreateOverride(ctx, oncall.Override{RotaID: r.ID, UserID: a, From: o1.Until, Until: o1.From})),
			"until", "after from")

		// A user who is deleted leaves the rota and their overrides.
		f.db.ExecContext(ctx, "DELETE FROM users WHERE id = $1", c)
		if got := onCall("2026-01-08 06:00"); got != b {
			t.Errorf("after c was deleted, %s is on call, want b", got)
		}
		if err := f.s.DeleteOverride(ctx, o1.ID); err != nil {
			t.Fatal(err)
		}
		if got := onCall("2026-01-08 06:00"); got != a {
			t.Errorf("after deleting the overrides, %s is on call, want a", got)
		}
	})
}

func TestOnCall(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		ann, ben, cas, dee := f.user("ann", "Ann A"), f.user("ben", ""), f.user("cas", "Cas C"), f.user("dee", "")
		acme, globex := f.client("Acme"), f.client("Globex")
		if _, err := f.s.SetContact(ctx, oncall.Contact{UserID: ann, Email: "ann@example.com", Phone: "+441632960000",
			Channels: []string{"email", "sms"}}); err != nil {
			t.Fatal(err)
		}
		day := func(name string, tier oncall.Tier, client string, members ...string) {
			f.rota(oncall.Rota{Name: name, Tier: tier, ClientID: client, TimeZone: "UTC", Handover: "00:00",
				ShiftLength: hours(24), StartDate: "2026-01-01", Members: members})
		}
		day("L1 global", oncall.L1, "", ann)
		day("L1 global nights", oncall.L1, "", ben, ann) // ann on call in two rotas: listed once
		day("L1 acme", oncall.L1, acme, cas)
		day("L1 globex", oncall.L1, globex, dee)
		day("L2 acme, empty", oncall.L2, acme)
		day("L2 global", oncall.L2, "", ben)
		f.disable(dee)

		at := utc(t, "2026-01-01 12:00") // day 0: ann and ben in the global L1 rotas
		for _, tt := range []struct {
			tier   oncall.Tier
			client string
			want   []string
		}{
			{oncall.L1, "", []string{ann, ben}},
			{oncall.L1, acme, []string{cas}},
			{oncall.L1, globex, []string{ann, ben}}, // globex's only person is disabled: fall back
			{oncall.L1, "no-such-client", []string{ann, ben}},
			{oncall.L2, acme, []string{ben}}, // acme's L2 rota has nobody: fall back
			{oncall.L3, acme, nil},
		} {
			got, err := f.s.OnCall(ctx, tt.tier, tt.client, at)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, p := range got {
				ids = append(ids, p.UserID)
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("OnCall(%s, %q) = %v, want %v", tt.tier, tt.client, ids, tt.want)
			}
		}
		got, _ := f.s.OnCall(ctx, oncall.L1, "", at)
		sameJSON(t, "ann and ben", got, []oncall.Person{
			{UserID: ann, Name: "Ann A", Email: "ann@example.com", Phone: "+441632960000", Channels: []string{"email", "sms"}},
			{UserID: ben, Name: "ben"},
		})
		// Day 1: the nights rota has ann.
		got, _ = f.s.OnCall(ctx, oncall.L1, "", at.Add(24*time.Hour))
		if len(got) != 1 || got[0].UserID != ann {
			t.Errorf("day 1: %+v, want ann once", got)
		}

		p, err := f.s.Person(ctx, cas)
		if err != nil || p.Name != "Cas C" || p.Channels != nil {
			t.Errorf("Person(cas) = %+v, %v", p, err)
		}
		for _, id := range []string{dee, "ghost"} {
			if _, err := f.s.Person(ctx, id); !errors.Is(err, oncall.ErrNotFound) {
				t.Errorf("Person(%s): %v, want ErrNotFound", id, err)
			}
		}

		// A client's rotas go with the client.
		f.db.ExecContext(ctx, "DELETE FROM clients WHERE id = $1", globex)
		if rs, _ := f.s.ListRotas(ctx, oncall.RotaFilter{Tier: oncall.L1}); len(rs) != 3 {
			t.Errorf("%d L1 rotas after deleting globex, want 3", len(rs))
		}
	})
}

func TestPolicyCRUD(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		boss := f.user("boss", "")
		acme := f.client("Acme")
		in := oncall.Policy{Name: "Acme critical", ClientID: acme, Severity: "Critical", Steps: []oncall.Step{
			notifyTier(oncall.L1, "sms"), wait(90 * time.Second), notifyUser(boss), repeat(2)}}
		p, err := f.s.CreatePolicy(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if p.Severity != "critical" || len(p.Steps) != 4 || p.Steps[1].Wait.D() != 90*time.Second || p.ID == "" {
			t.Errorf("created %+v", p)
		}
		got, err := f.s.GetPolicy(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "GetPolicy", got, p)
		var stored string
		f.db.QueryRowContext(ctx, "SELECT steps FROM escalation_policies WHERE id = $1", p.ID).Scan(&stored)
		if !strings.Contains(stored, `"wait_seconds":90`) {
			t.Errorf("stored steps %s: want the wait in seconds", stored)
		}

		p.Steps = p.Steps[:1]
		p.Severity = ""
		up, err := f.s.UpdatePolicy(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(up.Steps) != 1 || up.Severity != "" {
			t.Errorf("updated %+v", up)
		}

		for _, tt := range []struct {
			name  string
			p     oncall.Policy
			field string
			msg   string
		}{
			{"same scope", oncall.Policy{Name: "Other", ClientID: acme}, "severity", "already exists"},
			{"same name", oncall.Policy{Name: "ACME CRITICAL", Severity: "warning"}, "name", "already exists"},
			{"unknown client", oncall.Policy{Name: "X", ClientID: "ghost"}, "client_id", "no client has id"},
			{"unknown user", oncall.Policy{Name: "X", Steps: []oncall.Step{notifyUser("ghost")}}, "steps[0].user_id", "no user has id"},
			{"zero wait", oncall.Policy{Name: "X", Steps: []oncall.Step{notifyTier(oncall.L1), notifyTier(oncall.L2), {Kind: "wait"}}}, "steps[2].wait", "must be > 0"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				wantField(t, second(f.s.CreatePolicy(ctx, tt.p)), tt.field, tt.msg)
			})
		}
		if n := f.count("escalation_policies"); n != 1 {
			t.Errorf("%d policies after refused writes, want 1", n)
		}

		list, err := f.s.ListPolicies(ctx)
		if err != nil || len(list) != 1 {
			t.Errorf("ListPolicies: %+v, %v", list, err)
		}
		if err := f.s.DeletePolicy(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		for name, err := range map[string]error{
			"get":    second(f.s.GetPolicy(ctx, p.ID)),
			"update": second(f.s.UpdatePolicy(ctx, p)),
			"delete": f.s.DeletePolicy(ctx, p.ID),
		} {
			if !errors.Is(err, oncall.ErrNotFound) {
				t.Errorf("%s after delete: %v, want ErrNotFound", name, err)
			}
		}
	})
}

func TestPolicyFor(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		acme, globex := f.client("Acme"), f.client("Globex")
		if _, err := f.s.PolicyFor(ctx, acme, "critical"); !errors.Is(err, oncall.ErrNotFound) {
			t.Errorf("PolicyFor with no policies: %v, want ErrNotFound", err)
		}
		mk := func(name, client, severity string) {
			if _, err := f.s.CreatePolicy(ctx, oncall.Policy{Name: name, ClientID: client, Severity: severity,
				Steps: []oncall.Step{notifyTier(oncall.L1)}}); err != nil {
				t.Fatal(err)
			}
		}
		mk("acme critical", acme, "critical")
		mk("acme any", acme, "")
		mk("all critical", "", "critical")
		mk("all any", "", "")
		mk("globex warning", globex, "warning")
		for _, tt := range []struct {
			client, severity, want string
		}{
			{acme, "critical", "acme critical"},
			{acme, " CRITICAL ", "acme critical"},
			{acme, "warning", "acme any"},
			{globex, "critical", "all critical"},
			{globex, "warning", "globex warning"},
			{globex, "info", "all any"},
			{"", "critical", "all critical"},
			{"", "", "all any"},
			{"ghost", "info", "all any"},
		} {
			p, err := f.s.PolicyFor(ctx, tt.client, tt.severity)
			if err != nil || p.Name != tt.want {
				t.Errorf("PolicyFor(%q, %q) = %q, %v; want %q", tt.client, tt.severity, p.Name, err, tt.want)
			}
		}

		// The catch-all is every incident's fallback: it stays, and keeps its scope.
		all, _ := f.s.PolicyFor(ctx, "", "")
		if err := f.s.DeletePolicy(ctx, all.ID); !errors.Is(err, oncall.ErrInUse) {
			t.Errorf("deleting the catch-all: %v, want ErrInUse", err)
		}
		narrowed := all
		narrowed.Severity = "info"
		if _, err := f.s.UpdatePolicy(ctx, narrowed); !errors.Is(err, oncall.ErrInUse) {
			t.Errorf("narrowing the catch-all: %v, want ErrInUse", err)
		}
		all.Steps = nil
		if _, err := f.s.UpdatePolicy(ctx, all); err != nil {
			t.Errorf("editing the catch-all's steps: %v", err)
		}

		// A client's policies go with the client.
		f.db.ExecContext(ctx, "DELETE FROM clients WHERE id = $1", acme)
		if p, _ := f.s.PolicyFor(ctx, acme, "critical"); p.Name != "all critical" {
			t.Errorf("after deleting acme: %q", p.Name)
		}
	})
}

func TestEnsureDefaults(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		created, err := f.s.EnsureDefaults(ctx)
		if err != nil || !created {
			t.Fatalf("EnsureDefaults on a fresh hub: %v, %v", created, err)
		}
		p, err := f.s.PolicyFor(ctx, "", "critical")
		if err != nil {
			t.Fatal(err)
		}
		want := oncall.DefaultPolicy()
		want.ID, want.CreatedAt, want.UpdatedAt = p.ID, p.CreatedAt, p.UpdatedAt
		sameJSON(t, "the default policy", p, want)

		// Running it again, or with the default edited, changes nothing.
		p.Steps = p.Steps[:1]
		if _, err := f.s.UpdatePolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
		created, err = f.s.EnsureDefaults(ctx)
		if err != nil || created {
			t.Errorf("second EnsureDefaults: %v, %v; want nothing created", created, err)
		}
		if got, _ := f.s.GetPolicy(ctx, p.ID); len(got.Steps) != 1 || f.count("escalation_policies") != 1 {
			t.Errorf("the edited default was changed: %+v", got)
		}
	})
}

// TestEnsureDefaultsConcurrent starts several hubs at once on one database: one default policy.
func TestEnsureDefaultsConcurrent(t *testing.T) {
	each(t, func(t *testing.T, f fixture) {
		errs := make(chan error, 4)
		created := make(chan bool, 4)
		for range 4 {
			go func() {
				c, err := oncall.New(f.db).EnsureDefaults(ctx)
				created <- c
				errs <- err
			}()
		}
		n := 0
		for range 4 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
			if <-created {
				n++
			}
		}
		if n != 1 || f.count("escalation_policies") != 1 {
			t.Errorf("%d hubs say they created it; %d policies; want 1 and 1", n, f.count("escalation_policies"))
		}
	})
}
