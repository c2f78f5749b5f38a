package inventory

import (
	"testing"
	"time"
)

// TestListingCacheGenerations: an answer read before a write is never served after it, even
// when it is stored after the write; and no answer outlives maxCacheAge.
func TestListingCacheGenerations(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	inv := &Inventory{now: func() time.Time { return now }}

	g := inv.gen.Load()
	if _, ok := inv.cachedCount(g, "k"); ok {
		t.Fatal("an empty cache answered")
	}
	inv.keepCount(g, "k", 1)
	if n, ok := inv.cachedCount(inv.gen.Load(), "k"); !ok || n != 1 {
		t.Fatalf("cachedCount = %d, %t; want 1, true", n, ok)
	}

	// A reader that loaded the generation before a write stores its answer after it.
	g = inv.gen.Load()
	inv.changed()
	inv.keepCount(g, "k", 2)
	inv.keepPage(g, "p", []HostSummary{{Name: "stale"}})
	inv.keepClientNames(g, []ClientName{{Name: "stale"}})
	g = inv.gen.Load()
	if n, ok := inv.cachedCount(g, "k"); ok {
		t.Errorf("count read before a write served after it: %d", n)
	}
	if l, ok := inv.cachedPage(g, "p"); ok {
		t.Errorf("page read before a write served after it: %v", l)
	}
	if l, ok := inv.cachedClientNames(g); ok {
		t.Errorf("client names read before a write served after it: %v", l)
	}

	// Stored at the current generation, then aged.
	inv.keepPage(g, "p", []HostSummary{{Name: "web1"}})
	inv.keepClientNames(g, nil)
	if l, ok := inv.cachedPage(g, "p"); !ok || len(l) != 1 || l[0].Name != "web1" {
		t.Errorf("cachedPage = %v, %t", l, ok)
	} else {
		l[0].Name = "changed by the caller"
		if l2, _ := inv.cachedPage(g, "p"); l2[0].Name != "web1" {
			t.Error("a caller's change to its answer reached the cache")
		}
	}
	if l, ok := inv.cachedClientNames(g); !ok || len(l) != 0 {
		t.Errorf("no clients cached: %v, %t", l, ok)
	}
	now = now.Add(maxCacheAge)
	if _, ok := inv.cachedPage(g, "p"); ok {
		t.Error("a page older than maxCacheAge was served")
	}
}

func TestListingKey(t *testing.T) {
	a, b := HostKey{ClientID: "c1", Name: "web1"}, HostKey{ClientID: "c1", Name: "db1"}
	same := []struct {
		name string
		x, y string
	}{
		{"set order", listingKey(HostFilter{}, &HostSet{Keys: []HostKey{a, b}}, true), listingKey(HostFilter{}, &HostSet{Keys: []HostKey{b, a}}, true)},
		{"name case", listingKey(HostFilter{}, &HostSet{Keys: []HostKey{a}}, true), listingKey(HostFilter{}, &HostSet{Keys: []HostKey{{ClientID: "c1", Name: "WEB1"}}}, true)},
		{"page ignored for counts", listingKey(HostFilter{Page: Page{Limit: 50}}, nil, false), listingKey(HostFilter{Page: Page{Limit: 50, Offset: 50}}, nil, false)},
	}
	for _, tc := range same {
		if tc.x != tc.y {
			t.Errorf("%s: keys differ:\n%s\n%s", tc.name, tc.x, tc.y)
		}
	}
	differ := []struct {
		name string
		x, y string
	}{
		{"page", listingKey(HostFilter{Page: Page{Limit: 50}}, nil, true), listingKey(HostFilter{Page: Page{Limit: 50, Offset: 50}}, nil, true)},
		{"field boundary", listingKey(HostFilter{ClientID: "a", SiteID: "b c"}, nil, true), listingKey(HostFilter{ClientID: "a b", SiteID: "c"}, nil, true)},
		{"field", listingKey(HostFilter{Role: "x"}, nil, true), listingKey(HostFilter{Tag: "x"}, nil, true)},
		{"no set, empty set", listingKey(HostFilter{}, nil, true), listingKey(HostFilter{}, &HostSet{Exclude: true}, true)},
		{"exclude", listingKey(HostFilter{}, &HostSet{Keys: []HostKey{a}}, true), listingKey(HostFilter{}, &HostSet{Keys: []HostKey{a}, Exclude: true}, true)},
		{"set content", listingKey(HostFilter{}, &HostSet{Keys: []HostKey{a}}, true), listingKey(HostFilter{}, &HostSet{Keys: []HostKey{b}}, true)},
		{"key boundary", listingKey(HostFilter{}, &HostSet{Keys: []HostKey{{ClientID: "c1", Name: "x"}}}, true), listingKey(HostFilter{}, &HostSet{Keys: []HostKey{{ClientID: "c", Name: "1x"}}}, true)},
	}
	for _, tc := range differ {
		if tc.x == tc.y {
			t.Errorf("%s: same key %s", tc.name, tc.x)
		}
	}
}
