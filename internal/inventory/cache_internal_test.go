package inventory

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestListingCacheGenerations: an answer read before a write is never served after it, even
// when it is kept after another read has seen the write; an answer whose read began before the
// cache started over is not kept; and nothing outlives maxCacheAge. (That answers are copies
// is TestListingCacheCopies, through the listings.)
func TestListingCacheGenerations(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	inv := &Inventory{now: func() time.Time { return now }}
	k := cacheKey{1}

	r := inv.startRead()
	if _, ok := cachedCount(inv, r, k); ok {
		t.Fatal("an empty cache answered")
	}
	keepCount(inv, r, k, 1)
	if n, ok := cachedCount(inv, inv.startRead(), k); !ok || n != 1 {
		t.Fatalf("cachedCount = %d, %t; want 1, true", n, ok)
	}

	// A slow read begins, a write happens, a newer read sees the cache at the new generation,
	// then the slow read's answers arrive.
	slow := inv.startRead()
	inv.changed()
	fresh := inv.startRead()
	if _, ok := cachedCount(inv, fresh, k); ok {
		t.Fatal("a count from before the write served after it")
	}
	keepCount(inv, slow, k, 2)
	keepPage(inv, slow, k, []HostSummary{{Name: "stale"}})
	keepRefs(inv, slow, k, []HostRef{{Name: "stale"}})
	keepClientNames(inv, slow, []ClientName{{Name: "stale"}})
	if n, ok := cachedCount(inv, fresh, k); ok {
		t.Errorf("count read before a write served after it: %d", n)
	}
	if l, ok := cachedPage(inv, fresh, k); ok {
		t.Errorf("page read before a write served after it: %v", l)
	}
	if l, ok := cachedRefs(inv, fresh, k); ok {
		t.Errorf("refs read before a write served after it: %v", l)
	}
	if l, ok := cachedClientNames(inv, fresh); ok {
		t.Errorf("client names read before a write served after it: %v", l)
	}
	// The slow read looking again neither answers from nor clears the newer cache.
	keepCount(inv, fresh, k, 3)
	if _, ok := cachedCount(inv, slow, k); ok {
		t.Error("a read of an older generation was answered")
	}
	if n, ok := cachedCount(inv, fresh, k); !ok || n != 3 {
		t.Errorf("after an older read: %d, %t; want 3, true", n, ok)
	}

	keepPage(inv, fresh, k, []HostSummary{{Name: "web1"}})
	if l, ok := cachedPage(inv, fresh, k); !ok || len(l) != 1 || l[0].Name != "web1" {
		t.Fatalf("cachedPage = %v, %t", l, ok)
	}
	keepClientNames(inv, fresh, nil)
	if l, ok := cachedClientNames(inv, fresh); !ok || len(l) != 0 {
		t.Errorf("no clients, cached: %v, %t", l, ok)
	}

	// A read that began just before the cache aged out is not kept in the new one.
	late := inv.startRead()
	now = now.Add(maxCacheAge)
	if _, ok := cachedPage(inv, inv.startRead(), k); ok {
		t.Error("a page older than maxCacheAge was served")
	}
	keepPage(inv, late, k, []HostSummary{{Name: "old"}})
	if l, ok := cachedPage(inv, inv.startRead(), k); ok {
		t.Errorf("an answer read before the cache started over was kept: %v", l)
	}
}

func TestListingKey(t *testing.T) {
	a, b := HostKey{ClientID: "c1", Name: "web1"}, HostKey{ClientID: "c1", Name: "db1"}
	key := func(f HostFilter, set *HostSet, page bool) cacheKey {
		k, ok := listingKey(f, set, page)
		if !ok {
			t.Fatalf("not cacheable: %+v %+v", f, set)
		}
		return k
	}
	same := []struct {
		name string
		x, y cacheKey
	}{
		{"set order", key(HostFilter{}, &HostSet{Keys: []HostKey{a, b}}, true), key(HostFilter{}, &HostSet{Keys: []HostKey{b, a}}, true)},
		{"name case", key(HostFilter{}, &HostSet{Keys: []HostKey{a}}, true), key(HostFilter{}, &HostSet{Keys: []HostKey{{ClientID: "c1", Name: "WEB1"}}}, true)},
		{"page ignored for counts", key(HostFilter{Page: Page{Limit: 50}}, nil, false), key(HostFilter{Page: Page{Limit: 50, Offset: 50}}, nil, false)},
	}
	for _, tc := range same {
		if tc.x != tc.y {
			t.Errorf("%s: keys differ", tc.name)
		}
	}
	differ := []struct {
		name string
		x, y cacheKey
	}{
		{"page", key(HostFilter{Page: Page{Limit: 50}}, nil, true), key(HostFilter{Page: Page{Limit: 50, Offset: 50}}, nil, true)},
		{"field boundary", key(HostFilter{ClientID: "a", SiteID: "b c"}, nil, true), key(HostFilter{ClientID: "a b", SiteID: "c"}, nil, true)},
		{"field", key(HostFilter{Role: "x"}, nil, true), key(HostFilter{Tag: "x"}, nil, true)},
		{"no set, empty set", key(HostFilter{}, nil, true), key(HostFilter{}, &HostSet{Exclude: true}, true)},
		{"exclude", key(HostFilter{}, &HostSet{Keys: []HostKey{a}}, true), key(HostFilter{}, &HostSet{Keys: []HostKey{a}, Exclude: true}, true)},
		{"set content", key(HostFilter{}, &HostSet{Keys: []HostKey{a}}, true), key(HostFilter{}, &HostSet{Keys: []HostKey{b}}, true)},
		{"key boundary", key(HostFilter{}, &HostSet{Keys: []HostKey{{ClientID: "c1", Name: "x"}}}, true), key(HostFilter{}, &HostSet{Keys: []HostKey{{ClientID: "c", Name: "1x"}}}, true)},
		{"filter value like a set", key(HostFilter{MachineID: `" set`}, nil, true), key(HostFilter{}, &HostSet{}, true)},
	}
	for _, tc := range differ {
		if tc.x == tc.y {
			t.Errorf("%s: same key", tc.name)
		}
	}
	if _, ok := listingKey(HostFilter{}, &HostSet{Keys: make([]HostKey, maxCachedSetKeys+1)}, true); ok {
		t.Error("a set larger than maxCachedSetKeys was keyed")
	}
}

// TestWritesMarkTheCache: every method of Inventory that writes (by its name, Create*,
// Update*, Delete*, Enrol*) defers inv.changed(), so that a write method added later cannot
// leave the listing cache serving what it changed.
func TestWritesMarkTheCache(t *testing.T) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	writer := regexp.MustCompile(`^(Create|Update|Delete|Enrol|Set|Add|Remove|Approve|Retire)`)
	found := 0
	for _, f := range files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || !fn.Name.IsExported() || !writer.MatchString(fn.Name.Name) {
				continue
			}
			if star, ok := fn.Recv.List[0].Type.(*ast.StarExpr); !ok || star.X.(*ast.Ident).Name != "Inventory" {
				continue
			}
			found++
			if !defersChanged(fn.Body) {
				t.Errorf("%s: (*Inventory).%s writes but does not defer inv.changed()", fset.Position(fn.Pos()), fn.Name.Name)
			}
		}
	}
	if found < 16 {
		t.Errorf("found %d write methods; the inventory has at least 16", found)
	}
}

func defersChanged(body *ast.BlockStmt) bool {
	for _, st := range body.List {
		d, ok := st.(*ast.DeferStmt)
		if !ok {
			continue
		}
		if sel, ok := d.Call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "changed" {
			return true
		}
	}
	return false
}

// The cache's entries as the listings read and keep them.

func cachedCount(inv *Inventory, r cacheRead, k cacheKey) (n int, ok bool) {
	inv.readCache(r, func(c *listCache) { n, ok = c.counts[k] })
	return n, ok
}

func keepCount(inv *Inventory, r cacheRead, k cacheKey, n int) {
	inv.writeCache(r, func(c *listCache) { c.counts = put(c.counts, k, n) })
}

func cachedPage(inv *Inventory, r cacheRead, k cacheKey) (l []HostSummary, ok bool) {
	inv.readCache(r, func(c *listCache) { l, ok = c.pages[k] })
	return l, ok
}

func keepPage(inv *Inventory, r cacheRead, k cacheKey, l []HostSummary) {
	inv.writeCache(r, func(c *listCache) { c.pages = put(c.pages, k, l) })
}

func cachedRefs(inv *Inventory, r cacheRead, k cacheKey) (l []HostRef, ok bool) {
	inv.readCache(r, func(c *listCache) { l, ok = c.refs[k] })
	return l, ok
}

func keepRefs(inv *Inventory, r cacheRead, k cacheKey, l []HostRef) {
	inv.writeCache(r, func(c *listCache) { c.putRefs(k, l) })
}

func cachedClientNames(inv *Inventory, r cacheRead) (l []ClientName, ok bool) {
	inv.readCache(r, func(c *listCache) { l, ok = c.clients, c.cached })
	return l, ok
}

func keepClientNames(inv *Inventory, r cacheRead, l []ClientName) {
	inv.writeCache(r, func(c *listCache) { c.clients, c.cached = l, true })
}

// TestPutRefs: the cached refs stay within maxCachedRefRows, counting a replaced entry once.
func TestPutRefs(t *testing.T) {
	var c listCache
	c.putRefs(cacheKey{1}, make([]HostRef, 10))
	c.putRefs(cacheKey{1}, make([]HostRef, 20))
	c.putRefs(cacheKey{2}, make([]HostRef, 5))
	if c.refRows != 25 || len(c.refs) != 2 {
		t.Fatalf("refRows %d, %d entries; want 25, 2", c.refRows, len(c.refs))
	}
	c.putRefs(cacheKey{3}, make([]HostRef, maxCachedRefRows-10))
	if c.refRows != maxCachedRefRows-10 || len(c.refs) != 1 {
		t.Errorf("past the bound: refRows %d, %d entries; want %d, 1", c.refRows, len(c.refs), maxCachedRefRows-10)
	}
	c.putRefs(cacheKey{4}, make([]HostRef, maxCachedRefRows+1))
	if _, ok := c.refs[cacheKey{4}]; ok {
		t.Error("a listing larger than the bound was kept")
	}
}
