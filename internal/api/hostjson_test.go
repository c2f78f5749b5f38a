package api

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

// TestHostListJSON: the list written by hand is byte for byte what encoding/json writes for the
// same page of hostViews, for hosts with and without sites, facts, machine ids and health, with
// text that JSON and HTML escaping apply to, on both stores.
func TestHostListJSON(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		inv := inventory.New(db)
		ctx := context.Background()
		c, err := inv.CreateClient(ctx, inventory.Client{Name: "Acme & <Co>"})
		if err != nil {
			t.Fatal(err)
		}
		site, err := inv.CreateSite(ctx, inventory.Site{ClientID: c.ID, Name: "Pune"})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range []inventory.Host{
			{ClientID: c.ID, Name: "web-01", SiteID: site.ID, Addresses: []string{"10.0.0.1", "web-01.example"}, OS: "linux", Role: "web <front> & \"edge\"",
				Tags: []string{"prod", "dc=pune"}, AgentURL: "http://10.0.0.1:9500/metrics?a=1&b=2", Status: inventory.StatusActive},
			{ClientID: c.ID, Name: "db-01", Tags: []string{"a/b"}, Facts: inventory.Facts{Hostname: "db-01", Kernel: "6.1 <x>", Cores: 8, MemoryBytes: 1 << 40,
				Extra: map[string]string{"z": "é\u2028", "a": "x>y &z"}}},
			{ClientID: c.ID, Name: "ünïcode-ホスト"},
		} {
			if _, err := inv.CreateHost(ctx, h); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := inv.EnrolHost(ctx, c.ID, inventory.Enrolment{Hostname: "enrolled", MachineID: "m-1",
			Facts: inventory.Facts{OSRelease: "Debian 12", Arch: "amd64"}, AgentURL: "http://10.0.0.9:9500/metrics"}); err != nil {
			t.Fatal(err)
		}
		records, err := inv.ListHostRecords(ctx, inventory.HostFilter{})
		if err != nil {
			t.Fatal(err)
		}
		hosts, err := inv.ListHosts(ctx, inventory.HostFilter{})
		if err != nil {
			t.Fatal(err)
		}
		slugs := map[string]string{c.ID: c.Slug}
		fixed := func(k hosthealth.Key) hosthealth.Health { // fakeHealth at a fixed time
			h := fakeHealth(k)
			if !h.LastScrape.IsZero() {
				h.LastScrape = time.Unix(1700000000, 5)
			}
			return h
		}
		for _, tc := range []struct {
			name   string
			health healthFunc
			page   listQuery
		}{
			{"without health", nil, listQuery{page: inventory.Page{Limit: 100}}},
			{"with health", fixed, listQuery{page: inventory.Page{Limit: 100, Offset: 7}}},
			{"with a next page", fixed, listQuery{page: inventory.Page{Limit: 2}}},
			{"every figure known", func(hosthealth.Key) hosthealth.Health {
				return hosthealth.Health{Scraped: true, LastScrape: time.Unix(1700000000, 123456789), LastError: "dial <tcp>: \"refused\"",
					ScrapeDuration: 1500 * time.Microsecond, CPU: 1e-7, Memory: 0.5, Disk: 1, Load1: 1e21, Cores: 64}
			}, listQuery{page: inventory.Page{Limit: 10}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := &server{health: tc.health}
				got, err := s.appendHostPage(nil, tc.page, records, slugs)
				if err != nil {
					t.Fatal(err)
				}
				view := viewHost
				if tc.health != nil {
					view = func(h inventory.Host) hostView {
						v := viewHost(h)
						v.Health = viewHealth(tc.health(hosthealth.Key{Client: slugs[h.ClientID], Host: h.Name}))
						return v
					}
				}
				p := page[hostView]{Limit: tc.page.page.Limit, Offset: tc.page.page.Offset}
				items := hosts
				if len(items) > tc.page.page.Limit {
					items = items[:tc.page.page.Limit]
					next := tc.page.page.Offset + tc.page.page.Limit
					p.NextOffset = &next
				}
				p.Items = make([]hostView, len(items))
				for i, h := range items {
					p.Items[i] = view(h)
				}
				var want bytes.Buffer
				if err := json.NewEncoder(&want).Encode(p); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want.Bytes()) {
					t.Errorf("got\n%s\nwant\n%s", got, want.Bytes())
				}
			})
		}
	})
}

// FuzzHostJSON: strings, floats and stored lists are written as encoding/json writes them, and a
// stored list is copied only when that is so.
func FuzzHostJSON(f *testing.F) {
	for _, s := range []string{"", "plain", `"quoted"`, `back\slash`, "<b>&amp;</b>", "tab\tnew\nline\r\b\f\x00\x1f\x7f",
		"é ホスト", "\u2028\u2029", "\xff\xfe bad", `[]`, `["a","b"]`, `["a", "b"]`, `["a\"b"]`, `["<"]`, `[""]`, `["a",]`, `[`, `"a"`, `["é"]`, `null`} {
		f.Add(s, 0.5)
	}
	f.Add("x", 1e-7)
	f.Add("x", 1e21)
	f.Add("x", -0.0)
	f.Add("x", 123456789.125)
	f.Fuzz(func(t *testing.T, s string, v float64) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("string %q: got %s, want %s", s, got, want)
		}
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			want, _ := json.Marshal(v)
			if got := appendJSONFloat(nil, v); !bytes.Equal(got, want) {
				t.Errorf("float %v: got %s, want %s", v, got, want)
			}
		}
		var l []string
		err := json.Unmarshal([]byte(s), &l)
		got, gotErr := appendStoredList(nil, "tags", s)
		if (err != nil) != (gotErr != nil) {
			t.Fatalf("list %q: error %v, encoding/json's %v", s, gotErr, err)
		}
		if err != nil {
			return
		}
		if l == nil {
			l = []string{}
		}
		want, _ = json.Marshal(l)
		if plainList(s) && s != string(want) {
			t.Errorf("list %q taken as written by encoding/json, which writes %s", s, want)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("list %q: got %s, want %s", s, got, want)
		}
	})
}
