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

// cacheKey is a listing's key (listingKey).
type cacheKey = [sha256.Size]byte

type listCache struct {
	mu      sync.Mutex
	gen     uint64    // the generation the entries below were read at
	born    time.Time // when the oldest entry's read began, at the latest
	clients []ClientName
	cached  bool // clients is cached (it may be empty)
	counts  map[cacheKey]int
	pages   map[cacheKey][]HostSummary
	refs    map[cacheKey][]HostRef
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

// readCache runs fn on the cache, under its lock, if the cache serves r's generation.
func (inv *Inventory) readCache(r cacheRead, fn func(c *listCache)) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	if inv.cacheAt(r) {
		fn(&inv.cache)
	}
}

// writeCache runs fn on the cache, under its lock, if an answer read at r may be kept.
func (inv *Inventory) writeCache(r cacheRead, fn func(c *listCache)) {
	inv.cache.mu.Lock()
	defer inv.cache.mu.Unlock()
	if inv.keeps(r) {
		fn(&inv.cache)
	}
}

// put returns m with v under k, m started over when it holds maxCacheEntries.
func put[V any](m map[cacheKey]V, k cacheKey, v V) map[cacheKey]V {
	if m == nil || len(m) >= maxCacheEntries {
		m = make(map[cacheKey]V)
	}
	m[k] = v
	return m
}

// putRefs keeps l under k within maxCachedRefRows, starting the refs over when it would not fit.
func (c *listCache) putRefs(k cacheKey, l []HostRef) {
	if len(l) > maxCachedRefRows {
		return
	}
	if c.refs == nil || c.refRows+len(l) > maxCachedRefRows {
		c.refs, c.refRows = make(map[cacheKey][]HostRef), 0
	}
	c.refRows += len(l) - len(c.refs[k])
	c.refs[k] = l
}

// listingKey identifies a listing's filter, host set and page, as a hash: a filter's values
// come from the request and may be long. A host set is keyed by its content in any order (the
// health tracker's comes from a map), so a set that changes (a host going down) is another
// entry. ok is false for a set too large to be worth keying.
func listingKey(f HostFilter, set *HostSet, withPage bool) (key cacheKey, ok bool) {
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
