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
// cache started over is not kept; and nothing outlives maxCacheAge.
func TestListingCacheGenerations(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	inv := &Inventory{now: func() time.Time { return now }}
	k := [32]byte{1}

	r := inv.startRead()
	if _, ok := inv.cachedCount(r, k); ok {
		t.Fatal("an empty cache answered")
	}
	inv.keepCount(r, k, 1)
	if n, ok := inv.cachedCount(inv.startRead(), k); !ok || n != 1 {
		t.Fatalf("cachedCount = %d, %t; want 1, true", n, ok)
	}

	// A slow read begins, a write happens, a newer read sees the cache at the new generation,
	// then the slow read's answers arrive.
	slow := inv.startRead()
	inv.changed()
	fresh := inv.startRead()
	if _, ok := inv.cachedCount(fresh, k); ok {
		t.Fatal("a count from before the write served after it")
	}
	inv.keepCount(slow, k, 2)
	inv.keepPage(slow, k, []HostSummary{{Name: "stale"}})
	inv.keepRefs(slow, k, []HostRef{{Name: "stale"}})
	inv.keepClientNames(slow, []ClientName{{Name: "stale"}})
	if n, ok := inv.cachedCount(fresh, k); ok {
		t.Errorf("count read before a write served after it: %d", n)
	}
	if l, ok := inv.cachedPage(fresh, k); ok {
		t.Errorf("page read before a write served after it: %v", l)
	}
	if l, ok := inv.cachedRefs(fresh, k); ok {
		t.Errorf("refs read before a write served after it: %v", l)
	}
	if l, ok := inv.cachedClientNames(fresh); ok {
		t.Errorf("client names read before a write served after it: %v", l)
	}
	// The slow read looking again neither answers from nor clears the newer cache.
	inv.keepCount(fresh, k, 3)
	if _, ok := inv.cachedCount(slow, k); ok {
		t.Error("a read of an older generation was answered")
	}
	if n, ok := inv.cachedCount(fresh, k); !ok || n != 3 {
		t.Errorf("after an older read: %d, %t; want 3, true", n, ok)
	}

	// Kept and read back as copies: neither the keeper's slice nor a reader's reaches it.
	kept := []HostSummary{{Name: "web1"}}
	inv.keepPage(fresh, k, kept)
	kept[0].Name = "changed by the keeper"
	l, ok := inv.cachedPage(fresh, k)
	if !ok || len(l) != 1 || l[0].Name != "web1" {
		t.Fatalf("cachedPage = %v, %t", l, ok)
	}
	l[0].Name = "changed by the reader"
	if l2, _ := inv.cachedPage(fresh, k); l2[0].Name != "web1" {
		t.Error("a reader's change to its answer reached the cache")
	}
	inv.keepClientNames(fresh, nil)
	if l, ok := inv.cachedClientNames(fresh); !ok || len(l) != 0 {
		t.Errorf("no clients, cached: %v, %t", l, ok)
	}

	// A read that began just before the cache aged out is not kept in the new one.
	late := inv.startRead()
	now = now.Add(maxCacheAge)
	if _, ok := inv.cachedPage(inv.startRead(), k); ok {
		t.Error("a page older than maxCacheAge was served")
	}
	inv.keepPage(late, k, []HostSummary{{Name: "old"}})
	if l, ok := inv.cachedPage(inv.startRead(), k); ok {
		t.Errorf("an answer read before the cache started over was kept: %v", l)
	}
}

func TestListingKey(t *testing.T) {
	a, b := HostKey{ClientID: "c1", Name: "web1"}, HostKey{ClientID: "c1", Name: "db1"}
	key := func(f HostFilter, set *HostSet, page bool) [32]byte {
		k, ok := listingKey(f, set, page)
		if !ok {
			t.Fatalf("not cacheable: %+v %+v", f, set)
		}
		return k
	}
	same := []struct {
		name string
		x, y [32]byte
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
		x, y [32]byte
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
