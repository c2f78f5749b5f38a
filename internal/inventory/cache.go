package inventory

import (
	"crypto/sha256"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The hosts page is the hub's busiest page: every open browser polls its table once a scrape
// interval, with the same filter, and each poll counted and paged the hosts table again (and,
// filtered by name, ran a LIKE over every row twice); the overview and the clients page read
// every host. The inventory changes seldom, so listCache keeps those answers until the next
// write through this Inventory: each write method bumps a generation, an entry is served only
// while its generation is current, and an answer read while a write was under way is never kept
// under the new generation (the generation is read before the query, and the answer kept only if
// it is still current after). Writes that reach the database another way (another hub on the
// same PostgreSQL, an operator's SQL) show within maxCacheAge, the bound the hub's scrape
// targets follow the inventory by. Health is not in here: the pages add each row's state from
// the scrape, live.

// maxCacheAge is the longest an answer is served from the cache, counted from before its query.
const maxCacheAge = 30 * time.Second

const (
	// maxCacheEntries bounds the cached counts and pages (distinct filters and pages); the
	// cache starts over when full.
	maxCacheEntries = 256
	// maxCachedRefRows bounds the rows of the cached ListHostRefs answers, each of which can be
	// the whole estate.
	maxCachedRefRows = 100_000
	// maxCachedSetKeys: a listing within a larger host set is not cached, so that a poll does
	// not sort and hash thousands of keys for a key.
	maxCachedSetKeys = 2_000
)

type listCache struct {
	mu      sync.Mutex
	gen     uint64    // the generation the entries below were read at
	born    time.Time // when the oldest entry's read began, at the latest
	clients []ClientName
	cached  bool // clients is cached (it may be empty)
	counts  map[[sha256.Size]byte]int
	pages   map[[sha256.Size]byte][]HostSummary
	refs    map[[sha256.Size]byte][]HostRef
	refRows int
}

// changed is deferred by every write method, those of contracts and services too (nothing
// cached reads them today, and a listing that later does must not be forgotten): from its
// return, nothing read before it is served.
func (inv *Inventory) changed() { inv.gen.Add(1) }

// cacheRead is when a read began: its generation and time, taken before the query.
type cacheRead struct {
	gen uint64
	at  time.Time
}

func (inv *Inventory) startRead() cacheRead {
	return cacheRead{gen: inv.gen.Load(), at: inv.now()}
}

// cacheAt reports whether the cache serves r's generation, starting it over first when it
// holds an older generation or has aged. A read of an older generation than the cache's (one
// that began before a write another read has already seen) neither reads nor clears it.
// c.mu must be held.
func (inv *Inventory) cacheAt(r cacheRead) bool {
	c := &inv.cache
	if r.gen < c.gen {
		return false
	}
	if r.gen == c.gen && r.at.Sub(c.born) < maxCacheAge {
		return true
	}
	c.gen, c.born = r.gen, r.at
	c.clients, c.cached, c.counts, c.pages, c.refs, c.refRows = nil, false, nil, nil, nil, 0
	return true
}

// keeps reports whether an answer read at r may be kept: no write since r began, and the
// cache not started over since (an answer older than the cache's birth would outlive
// maxCacheAge). c.mu must be held.
func (inv *Inventory) keeps(r cacheRead) bool {
	c := &inv.cache
	return inv.gen.Load() == r.gen && c.gen == r.gen && !r.at.Before(c.born)
}

func (inv *Inventory) cachedClientNames(r cacheRead) ([]ClientName, bool) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	if !inv.cacheAt(r) || !inv.cache.cached {
		return nil, false
	}
	return slices.Clone(inv.cache.clients), true
}

func (inv *Inventory) keepClientNames(r cacheRead, l []ClientName) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	if inv.keeps(r) {
		inv.cache.clients, inv.cache.cached = slices.Clone(l), true
	}
}

func (inv *Inventory) cachedCount(r cacheRead, key [sha256.Size]byte) (int, bool) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	if !inv.cacheAt(r) {
		return 0, false
	}
	n, ok := inv.cache.counts[key]
	return n, ok
}

func (inv *Inventory) keepCount(r cacheRead, key [sha256.Size]byte, n int) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	c := &inv.cache
	if !inv.keeps(r) {
		return
	}
	if c.counts == nil || len(c.counts) >= maxCacheEntries {
		c.counts = make(map[[sha256.Size]byte]int)
	}
	c.counts[key] = n
}

func (inv *Inventory) cachedPage(r cacheRead, key [sha256.Size]byte) ([]HostSummary, bool) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	if !inv.cacheAt(r) {
		return nil, false
	}
	l, ok := inv.cache.pages[key]
	return slices.Clone(l), ok
}

func (inv *Inventory) keepPage(r cacheRead, key [sha256.Size]byte, l []HostSummary) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	c := &inv.cache
	if !inv.keeps(r) {
		return
	}
	if c.pages == nil || len(c.pages) >= maxCacheEntries {
		c.pages = make(map[[sha256.Size]byte][]HostSummary)
	}
	c.pages[key] = slices.Clone(l)
}

func (inv *Inventory) cachedRefs(r cacheRead, key [sha256.Size]byte) ([]HostRef, bool) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	if !inv.cacheAt(r) {
		return nil, false
	}
	l, ok := inv.cache.refs[key]
	return slices.Clone(l), ok
}

func (inv *Inventory) keepRefs(r cacheRead, key [sha256.Size]byte, l []HostRef) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	c := &inv.cache
	if !inv.keeps(r) || len(l) > maxCachedRefRows {
		return
	}
	if c.refs == nil || c.refRows+len(l) > maxCachedRefRows {
		c.refs, c.refRows = make(map[[sha256.Size]byte][]HostRef), 0
	}
	if old, ok := c.refs[key]; ok {
		c.refRows -= len(old)
	}
	c.refs[key] = slices.Clone(l)
	c.refRows += len(l)
}

// listingKey identifies a listing's filter, host set and page, as a hash: a filter's values
// come from the request and may be long. A host set is keyed by its content in any order (the
// health tracker's comes from a map), so a set that changes (a host going down) is another
// entry. ok is false for a set too large to be worth keying.
func listingKey(f HostFilter, set *HostSet, withPage bool) (key [sha256.Size]byte, ok bool) {
	if set != nil && len(set.Keys) > maxCachedSetKeys {
		return key, false
	}
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
		keys := make([]string, len(set.Keys))
		for i, k := range set.Keys {
			keys[i] = strconv.Quote(k.ClientID) + strconv.Quote(fold(k.Name))
		}
		slices.Sort(keys)
		b.WriteString(" set")
		if set.Exclude {
			b.WriteString(" not")
		}
		for _, k := range keys {
			b.WriteByte(' ')
			b.WriteString(k)
		}
	}
	return sha256.Sum256([]byte(b.String())), true
}
