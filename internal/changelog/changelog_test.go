package changelog_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/changelog"
	"github.com/serversage/sage/internal/changes"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

var ctx = context.Background()

// base is a fixed day the fixtures' events happen on (well within the retention and the past).
var base = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

type fixture struct {
	s               *changelog.Store
	inv             *inventory.Inventory
	db              *store.DB
	acme, beta      inventory.Client
	web1, web2, db1 inventory.Host
}

func newFixture(t *testing.T, db *store.DB) *fixture {
	t.Helper()
	f := &fixture{s: changelog.New(db), inv: inventory.New(db), db: db}
	var err error
	if f.acme, err = f.inv.CreateClient(ctx, inventory.Client{Name: "Acme", Slug: "acme"}); err != nil {
		t.Fatal(err)
	}
	if f.beta, err = f.inv.CreateClient(ctx, inventory.Client{Name: "Beta", Slug: "beta"}); err != nil {
		t.Fatal(err)
	}
	host := func(c inventory.Client, name string) inventory.Host {
		h, err := f.inv.CreateHost(ctx, inventory.Host{ClientID: c.ID, Name: name, Status: inventory.StatusActive})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	f.web1, f.web2, f.db1 = host(f.acme, "web-1"), host(f.acme, "Web-2"), host(f.beta, "db-1")
	return f
}

func pkg(seq uint64, at time.Time, name, from, to string) changes.Event {
	return changes.Event{Seq: seq, Time: at, Kind: "packages", Object: name, Action: changes.Changed,
		Before: changes.Object{"version": from}, After: changes.Object{"version": to}}
}

func insert(t *testing.T, s *changelog.Store, hostID, journal string, evs ...changes.Event) (uint64, int) {
	t.Helper()
	acked, n, err := s.Insert(ctx, hostID, journal, evs)
	if err != nil {
		t.Fatalf("Insert: %v", err)
	}
	return acked, n
}

func objects(recs []changelog.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Object
	}
	return out
}

func TestInsertIdempotent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		cfg := changes.Event{Seq: 2, Time: base.Add(time.Minute), Kind: "config_files", Object: "/etc/ssh/sshd_config", Action: changes.Changed,
			Before: changes.Object{"sha256": "aa"}, After: changes.Object{"sha256": "bb"}, Diff: "--- a\n+++ b\n-PermitRootLogin yes\n+PermitRootLogin no\n"}
		tamper := changes.Event{Seq: 3, Time: base.Add(2 * time.Minute), Kind: "files", Object: "/usr/bin/ls", Action: changes.Changed, Tampered: true}
		grouped := pkg(4, base.Add(3*time.Minute), "nginx:amd64", "1.24", "1.26")
		grouped.Files = []string{"/usr/sbin/nginx", "/usr/share/nginx/index.html"}

		acked, n := insert(t, f.s, f.web1.ID, "j1", pkg(1, base, "openssl:amd64", "3.0.1", "3.0.2"), cfg)
		if acked != 2 || n != 2 {
			t.Fatalf("first batch: acked %d, inserted %d; want 2, 2", acked, n)
		}
		// The answer was lost: the agent resends with more.
		acked, n = insert(t, f.s, f.web1.ID, "j1", cfg, tamper, grouped, tamper)
		if acked != 4 || n != 2 {
			t.Fatalf("resent batch: acked %d, inserted %d; want 4, 2", acked, n)
		}
		// The same numbers from a new journal (the agent's state was wiped) are new events, as are
		// another host's.
		if _, n = insert(t, f.s, f.web1.ID, "j2", pkg(1, base.Add(time.Hour), "curl:amd64", "8.1", "8.2")); n != 1 {
			t.Fatalf("new journal: inserted %d, want 1", n)
		}
		if _, n = insert(t, f.s, f.web2.ID, "j1", pkg(1, base, "openssl:amd64", "3.0.1", "3.0.2")); n != 1 {
			t.Fatalf("another host: inserted %d, want 1", n)
		}
		if acked, n, err := f.s.Insert(ctx, f.web1.ID, "j1", nil); err != nil || acked != 0 || n != 0 {
			t.Fatalf("empty batch: %d, %d, %v", acked, n, err)
		}

		recs, err := f.s.ListHost(ctx, f.web1.ID, changelog.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := objects(recs), []string{"curl:amd64", "nginx:amd64", "/usr/bin/ls", "/etc/ssh/sshd_config", "openssl:amd64"}; !slices.Equal(got, want) {
			t.Fatalf("newest first: %v, want %v", got, want)
		}
		g := recs[1]
		if g.HostName != "web-1" || g.ClientSlug != "acme" || g.ClientID != f.acme.ID || g.Journal != "j1" || g.Seq != 4 ||
			!g.Time.Equal(base.Add(3*time.Minute)) || g.Before["version"] != "1.24" || g.After["version"] != "1.26" ||
			!slices.Equal(g.Files, grouped.Files) || g.Tampered || g.Summary != "packages: nginx:amd64 upgraded from 1.24 to 1.26" ||
			g.ReceivedAt.IsZero() || g.ID == "" {
			t.Errorf("grouped package event read back as %+v", g)
		}
		if !recs[2].Tampered || len(recs[2].Files) != 0 || recs[2].Before == nil {
			t.Errorf("tampered event read back as %+v", recs[2])
		}
		if recs[3].Diff != cfg.Diff {
			t.Errorf("diff read back as %q", recs[3].Diff)
		}
	})
}

func TestInsertRefuses(t *testing.T) {
	now := time.Now()
	ok := pkg(1, now.Add(-time.Hour), "a", "1", "2")
	with := func(mod func(*changes.Event)) changes.Event {
		e := ok
		mod(&e)
		return e
	}
	many := make([]changes.Event, changelog.MaxBatch+1)
	for i := range many {
		many[i] = pkg(uint64(i+1), now, "a", "1", "2")
	}
	tests := []struct {
		name, journal string
		events        []changes.Event
		field         string
	}{
		{"no journal", "", []changes.Event{ok}, "journal"},
		{"journal with a slash", "../x", []changes.Event{ok}, "journal"},
		{"journal too long", strings.Repeat("a", 65), []changes.Event{ok}, "journal"},
		{"malformed kind", "j", []changes.Event{ok, with(func(e *changes.Event) { e.Kind = "Weather!" })}, "events[1].kind"},
		{"malformed action", "j", []changes.Event{with(func(e *changes.Event) { e.Action = "" })}, "events[0].action"},
		{"no time", "j", []changes.Event{with(func(e *changes.Event) { e.Time = time.Time{} })}, "events[0].time"},
		{"no sequence number", "j", []changes.Event{with(func(e *changes.Event) { e.Seq = 0 })}, "events[0].seq"},
		{"no object", "j", []changes.Event{with(func(e *changes.Event) { e.Object = "" })}, "events[0].object"},
		{"a NUL", "j", []changes.Event{with(func(e *changes.Event) { e.Diff = "a\x00b" })}, "events[0]"},
		{"invalid UTF-8", "j", []changes.Event{with(func(e *changes.Event) { e.After = changes.Object{"v": "\xff"} })}, "events[0]"},
		{"too many", "j", many, "events"},
	}
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, _, err := f.s.Insert(ctx, f.web1.ID, tt.journal, tt.events)
				fe := config.FieldErrors(err)
				if !slices.ContainsFunc(fe, func(e config.FieldError) bool { return e.Field == tt.field }) {
					t.Fatalf("error %v, want one on %s", err, tt.field)
				}
			})
		}
		if recs, _ := f.s.List(ctx, changelog.Filter{}); len(recs) != 0 {
			t.Errorf("a refused batch stored %d events", len(recs))
		}
		_, _, err := f.s.Insert(ctx, "0190f5d2-8c4e-7b7a-9f10-3c2d1e0a4b5c", "j", []changes.Event{ok})
		if !errors.Is(err, changelog.ErrNotFound) {
			t.Errorf("unknown host: %v, want ErrNotFound", err)
		}
	})
}

func TestList(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		day := func(d int) time.Time { return base.AddDate(0, 0, d) }
		insert(t, f.s, f.web1.ID, "j",
			pkg(1, day(0), "openssl:amd64", "3.0.1", "3.0.2"),
			changes.Event{Seq: 2, Time: day(1), Kind: "mounts", Object: "/srv", Action: changes.Added, After: changes.Object{"fstype": "ext4"}},
			changes.Event{Seq: 3, Time: day(2), Kind: "files", Object: "/usr/bin/ls", Action: changes.Changed, Tampered: true},
			pkg(4, day(3), "OpenSSH-server:amd64", "9.1", "9.2"),
		)
		insert(t, f.s, f.web2.ID, "j", pkg(1, day(1), "nginx:amd64", "1.24", "1.26"))
		insert(t, f.s, f.db1.ID, "j", pkg(1, day(1), "postgresql:amd64", "15.1", "15.2"))

		tests := []struct {
			name string
			f    changelog.Filter
			want []string
		}{
			{"a host", changelog.Filter{HostID: f.web1.ID}, []string{"OpenSSH-server:amd64", "/usr/bin/ls", "/srv", "openssl:amd64"}},
			{"by kind", changelog.Filter{HostID: f.web1.ID, Kinds: []string{"packages", "mounts"}}, []string{"OpenSSH-server:amd64", "/srv", "openssl:amd64"}},
			{"text in the object, ignoring case", changelog.Filter{HostID: f.web1.ID, Query: "OPENSS"}, []string{"OpenSSH-server:amd64", "openssl:amd64"}},
			{"text in the summary", changelog.Filter{HostID: f.web1.ID, Query: "upgraded from 3.0.1"}, []string{"openssl:amd64"}},
			{"LIKE characters are literal", changelog.Filter{HostID: f.web1.ID, Query: "%"}, nil},
			{"a time range, end exclusive", changelog.Filter{HostID: f.web1.ID, From: day(1), To: day(3)}, []string{"/usr/bin/ls", "/srv"}},
			{"tampered only", changelog.Filter{TamperedOnly: true}, []string{"/usr/bin/ls"}},
			{"a page", changelog.Filter{HostID: f.web1.ID, Limit: 2, Offset: 1}, []string{"/usr/bin/ls", "/srv"}},
			{"an offset alone", changelog.Filter{HostID: f.web1.ID, Offset: 3}, []string{"openssl:amd64"}},
			{"a client's hosts", changelog.Filter{ClientID: f.acme.ID, From: day(1), To: day(2)}, []string{"nginx:amd64", "/srv"}},
			{"by client slug and host name, ignoring case", changelog.Filter{ClientSlugs: []string{"ACME"}, HostNames: []string{"web-2", "nobody"}}, []string{"nginx:amd64"}},
			{"by client slugs", changelog.Filter{ClientSlugs: []string{"beta", "acme"}, Kinds: []string{"packages"}, From: day(1), To: day(2)}, []string{"postgresql:amd64", "nginx:amd64"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				recs, err := f.s.List(ctx, tt.f)
				if err != nil {
					t.Fatal(err)
				}
				got := objects(recs)
				slices.Sort(got)
				want := slices.Clone(tt.want)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("got %v, want %v", objects(recs), tt.want)
				}
				for i := 1; i < len(recs); i++ {
					if recs[i].Time.After(recs[i-1].Time) {
						t.Errorf("not newest first: %v", objects(recs))
					}
				}
			})
		}
		recs, err := f.s.ListClient(ctx, f.acme.ID, day(0), day(2), changelog.Filter{Kinds: []string{"packages"}})
		if err != nil || !slices.Equal(objects(recs), []string{"nginx:amd64", "openssl:amd64"}) {
			t.Errorf("ListClient: %v, %v", objects(recs), err)
		}

		// Events go with their host.
		if err := f.inv.DeleteHost(ctx, f.web2.ID); err != nil {
			t.Fatal(err)
		}
		if recs, _ := f.s.List(ctx, changelog.Filter{HostID: f.web2.ID}); len(recs) != 0 {
			t.Errorf("a deleted host's events remain: %v", objects(recs))
		}
	})
}

func TestPrune(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		insert(t, f.s, f.web1.ID, "j", pkg(1, base.AddDate(-2, 0, 0), "old", "1", "2"), pkg(2, base, "new", "1", "2"))
		n, err := f.s.Prune(ctx, base.Add(-changelog.DefaultRetention))
		if err != nil || n != 1 {
			t.Fatalf("Prune: %d, %v; want 1", n, err)
		}
		recs, _ := f.s.List(ctx, changelog.Filter{})
		if !slices.Equal(objects(recs), []string{"new"}) {
			t.Errorf("left %v", objects(recs))
		}
		// A pruned event sent again is stored again: the agent has long had its acknowledgement,
		// so this happens only to a journal replayed from a backup.
		if n, _ := f.s.Prune(ctx, base.Add(-changelog.DefaultRetention)); n != 0 {
			t.Errorf("second prune deleted %d", n)
		}
	})
}

// TestInsertTolerates: what a real agent can send and this hub does not expect (a newer agent's
// kind or action, a host clock that is wrong) is stored, not refused: a refused batch would hold
// up the agent's journal.
func TestInsertTolerates(t *testing.T) {
	now := time.Now()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		evs := []changes.Event{
			{Seq: 1, Time: now.Add(-time.Minute), Kind: "weather", Object: "sky", Action: "clouded"},
			{Seq: 2, Time: time.Unix(0, 0), Kind: "packages", Object: "a", Action: changes.Added, After: changes.Object{"version": "1"}},
			{Seq: 3, Time: now.Add(48 * time.Hour), Kind: "packages", Object: "b", Action: changes.Added},
		}
		if acked, n := insert(t, f.s, f.web1.ID, "j", evs...); acked != 3 || n != 3 {
			t.Fatalf("acked %d, inserted %d; want 3, 3", acked, n)
		}
		recs, err := f.s.ListHost(ctx, f.web1.ID, changelog.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		byObj := map[string]changelog.Record{}
		for _, r := range recs {
			byObj[r.Object] = r
		}
		if r := byObj["sky"]; r.Kind != "weather" || r.Action != "clouded" {
			t.Errorf("newer kind stored as %+v", r)
		}
		for _, o := range []string{"a", "b"} {
			r := byObj[o]
			if r.After["host_time"] == "" || r.Time.Before(now.Add(-time.Minute)) || r.Time.After(time.Now().Add(time.Minute)) {
				t.Errorf("%s: time %s, after %v; want dated on receipt with the host's time kept", o, r.Time, r.After)
			}
		}
		if byObj["a"].After["version"] != "1" {
			t.Errorf("the clamped event lost its attributes: %v", byObj["a"].After)
		}
	})
}
