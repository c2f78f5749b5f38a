package inventory

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The hosts page is the hub's busiest page: every open browser polls its table once a scrape
// interval, with the same filter, and each poll counted and paged the hosts table again (and,
// filtered by name, ran a LIKE over every row twice). The inventory changes seldom and only
// through this Inventory (the hub is its one writer), so listCache keeps those answers until the
// next write: each write method bumps a generation, an entry is served only while its
// generation is current, and an answer read while a write was under way is never kept under
// the new generation (the generation is read before the query and the entry stored only if it
// is still the same after). maxCacheAge bounds how long an entry lives even without writes, so
// that a change made to the database behind the hub's back (an operator's SQL) shows within
// it. Health is not in here: the pages add it to each row from the scrape, live.

// maxCacheAge is how long a cached listing is served without a write in between.
const maxCacheAge = 30 * time.Second

// maxCacheEntries bounds the cached count and page answers (distinct filters and pages); the
// cache starts over when it is full.
const maxCacheEntries = 256

// maxCachedRefs bounds the cached ListHostRefs answers, each up to every host.
const maxCachedRefs = 16

type listCache struct {
	mu      sync.Mutex
	gen     uint64 // the generation the entries below were read at
	born    time.Time
	clients []ClientName // nil: not cached
	counts  map[string]int
	pages   map[string][]HostSummary
	refs    map[string][]HostRef
}

// changed is deferred by every write method: from its return, nothing read before it is served.
func (inv *Inventory) changed() { inv.gen.Add(1) }

// cacheUsable reports whether the cache holds answers of generation g, clearing it if not.
// c.mu must be held.
func (inv *Inventory) cacheUsable(g uint64) bool {
	c := &inv.cache
	if c.gen == g && inv.now().Sub(c.born) < maxCacheAge {
		return true
	}
	c.gen, c.born = g, inv.now()
	c.clients, c.counts, c.pages, c.refs = nil, nil, nil, nil
	return false
}

func (inv *Inventory) cachedClientNames(g uint64) ([]ClientName, bool) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	if !inv.cacheUsable(g) || inv.cache.clients == nil {
		return nil, false
	}
	return slices.Clone(inv.cache.clients), true
}

func (inv *Inventory) keepClientNames(g uint64, l []ClientName) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	if inv.gen.Load() != g || inv.cache.gen != g {
		return // a write happened meanwhile, or the cache moved on
	}
	inv.cache.clients = slices.Clip(slices.Clone(l))
	if inv.cache.clients == nil {
		inv.cache.clients = []ClientName{}
	}
}

func (inv *Inventory) cachedCount(g uint64, key string) (int, bool) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	if !inv.cacheUsable(g) {
		return 0, false
	}
	n, ok := inv.cache.counts[key]
	return n, ok
}

func (inv *Inventory) keepCount(g uint64, key string, n int) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	c := &inv.cache
	if inv.gen.Load() != g || c.gen != g {
		return
	}
	if c.counts == nil || len(c.counts) >= maxCacheEntries {
		c.counts = make(map[string]int)
	}
	c.counts[key] = n
}

func (inv *Inventory) cachedPage(g uint64, key string) ([]HostSummary, bool) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	if !inv.cacheUsable(g) {
		return nil, false
	}
	l, ok := inv.cache.pages[key]
	return slices.Clone(l), ok
}

func (inv *Inventory) keepPage(g uint64, key string, l []HostSummary) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	c := &inv.cache
	if inv.gen.Load() != g || c.gen != g {
		return
	}
	if c.pages == nil || len(c.pages) >= maxCacheEntries {
		c.pages = make(map[string][]HostSummary)
	}
	c.pages[key] = slices.Clone(l)
}

func (inv *Inventory) cachedRefs(g uint64, key string) ([]HostRef, bool) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	if !inv.cacheUsable(g) {
		return nil, false
	}
	l, ok := inv.cache.refs[key]
	return slices.Clone(l), ok
}

// keepRefs keeps few listings of every host: each can be the whole estate.
func (inv *Inventory) keepRefs(g uint64, key string, l []HostRef) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	c := &inv.cache
	if inv.gen.Load() != g || c.gen != g {
		return
	}
	if c.refs == nil || len(c.refs) >= maxCachedRefs {
		c.refs = make(map[string][]HostRef)
	}
	c.refs[key] = slices.Clone(l)
}

// listingKey identifies a listing's filter, host set and page. A host set is keyed by its
// content, so a set that changes (a host going down) is another entry.
func listingKey(f HostFilter, set *HostSet, withPage bool) string {
	var b strings.Builder
	for _, s := range []string{f.ClientID, f.SiteID, string(f.Status), f.Role, f.Tag, f.NameContains, f.MachineID} {
		b.WriteString(strconv.Quote(s))
		b.WriteByte(' ')
	}
	if withPage {
		b.WriteString(strconv.Itoa(f.Page.Limit))
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(f.Page.Offset))
	}
	if set != nil {
		// The set by its content in any order (the health tracker's comes from a map), hashed:
		// it may name thousands of hosts.
		keys := make([]string, len(set.Keys))
		for i, k := range set.Keys {
			keys[i] = strconv.Quote(k.ClientID) + strconv.Quote(fold(k.Name))
		}
		slices.Sort(keys)
		h := sha256.New()
		for _, k := range keys {
			h.Write([]byte(k))
		}
		fmt.Fprintf(&b, " not=%t in=%d:%x", set.Exclude, len(keys), h.Sum(nil))
	}
	return b.String()
}
