package api

import (
	"context"
	"sync"
	"time"

	"github.com/serversage/sage/internal/inventory"
)

// A host's health is keyed by its client's slug, which a host row does not carry. Loading the
// clients for every request (or, worse, one client per host of a page) would make each page of
// hosts cost more than the hosts themselves; the map of all clients is small and rarely changes,
// so it is cached briefly and reloaded when a page names a client it does not know.
const (
	slugTTL   = 10 * time.Second       // a slug changed by another hub shows within this
	slugRetry = 250 * time.Millisecond // a client id that stays unknown does not reload on every request
)

type slugCache struct {
	inv  *inventory.Inventory
	load chan struct{} // one loader at a time; the others wait for its result

	mu     sync.RWMutex
	m      map[string]string // client id -> slug; replaced whole, never modified
	loaded time.Time
	gen    uint64 // bumped by invalidate, so that a load started before it is not kept
}

func newSlugCache(inv *inventory.Inventory) *slugCache {
	return &slugCache{inv: inv, load: make(chan struct{}, 1)}
}

// slugs returns a map holding the slugs of the given client ids (a client deleted meanwhile is
// missing from it).
func (c *slugCache) slugs(ctx context.Context, ids []string) (map[string]string, error) {
	if m, ok := c.usable(ids); ok {
		return m, nil
	}
	select {
	case c.load <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.load }()
	if m, ok := c.usable(ids); ok { // loaded while this one waited
		return m, nil
	}
	c.mu.RLock()
	gen := c.gen
	c.mu.RUnlock()
	clients, err := c.inv.ListClients(ctx, inventory.ClientFilter{})
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(clients))
	for _, cl := range clients {
		m[cl.ID] = cl.Slug
	}
	c.mu.Lock()
	if c.gen == gen {
		c.m, c.loaded = m, time.Now()
	}
	c.mu.Unlock()
	return m, nil
}

func (c *slugCache) usable(ids []string) (map[string]string, bool) {
	c.mu.RLock()
	m, age := c.m, time.Since(c.loaded)
	c.mu.RUnlock()
	if m == nil || age > slugTTL {
		return nil, false
	}
	if age < slugRetry {
		return m, true
	}
	for _, id := range ids {
		if _, ok := m[id]; !ok {
			return nil, false
		}
	}
	return m, true
}

// invalidate forgets the map after a client is changed through this API, so that its own
// answers show the change at once.
func (c *slugCache) invalidate() {
	c.mu.Lock()
	c.m, c.gen = nil, c.gen+1
	c.mu.Unlock()
}
