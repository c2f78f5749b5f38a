// Package hosthealth answers "how is this host right now?" for the hub's pages and API: whether
// its agent answers (the scrape target's own health, last scrape and error, read live from the
// scrape manager) and its CPU, memory and disk use at a glance (PromQL over the TSDB, refreshed in
// the background so that a page listing thousands of hosts costs a map lookup per host, not a
// query).
package hosthealth

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/scrape"

	"github.com/serversage/sage/internal/metricstore"
)

// Key names a host as its series do: the client's slug and the host's name (unique within a client).
type Key struct{ Client, Host string }

// Health is one host's state. Usage fractions are NaN when unknown (no data yet, or the host's
// agent does not expose the metric).
type Health struct {
	Scraped        bool      // the hub has a scrape target for the host
	Up             bool      // the last scrape succeeded
	Unknown        bool      // a target, but not scraped yet
	LastScrape     time.Time // zero before the first scrape
	LastError      string    // the last scrape's error, "" when it succeeded
	ScrapeDuration time.Duration
	CPU            float64 // busy fraction of all cores over the last few scrapes, 0..1
	Memory         float64 // used fraction of RAM (1 - MemAvailable/MemTotal)
	Disk           float64 // used fraction of the fullest real filesystem
	Load1          float64
	Cores          float64
}

// State is a short word for the health, as the pages show it: up, down, pending (target not
// scraped yet) or unmonitored (no target: no agent URL, or the host is not active).
func (h Health) State() string {
	switch {
	case !h.Scraped:
		return "unmonitored"
	case h.Unknown:
		return "pending"
	case h.Up:
		return "up"
	default:
		return "down"
	}
}

type usage struct{ cpu, mem, disk, load1, cores float64 }

var unknownUsage = usage{math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()}

// Tracker keeps the usage figures of every scraped host fresh and reads target health live.
type Tracker struct {
	metrics *metricstore.Store
	job     string
	every   time.Duration
	window  time.Duration
	logger  *slog.Logger

	mu      sync.RWMutex
	values  map[Key]usage
	updated time.Time

	// The index of targets by host is rebuilt at most every indexTTL: building it walks every
	// target, too much for each of 50 rows on every page view with thousands of hosts. Health is
	// still read live from each target, so a scrape's result shows at once.
	idxMu    sync.Mutex
	idx      map[Key]*scrape.Target
	idxBuilt time.Time
}

const indexTTL = time.Second

// New returns a tracker of the job's targets. every is how often usage is recomputed (the scrape
// interval is right: nothing changes faster); the CPU figure looks back four intervals, at least
// a minute, for its last two samples, so that one missed scrape does not blank it.
func New(metrics *metricstore.Store, job string, every time.Duration, logger *slog.Logger) *Tracker {
	if logger == nil {
		logger = slog.Default()
	}
	if every <= 0 {
		every = 15 * time.Second
	}
	return &Tracker{
		metrics: metrics,
		job:     job,
		every:   every,
		window:  max(4*every, time.Minute),
		logger:  logger,
		values:  map[Key]usage{},
	}
}

// Run refreshes usage until ctx ends.
func (t *Tracker) Run(ctx context.Context) {
	tick := time.NewTicker(t.every)
	defer tick.Stop()
	for {
		if err := t.Refresh(ctx); err != nil && ctx.Err() == nil {
			t.logger.Warn("refreshing host usage failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Refresh recomputes the usage of every host now.
func (t *Tracker) Refresh(ctx context.Context) error {
	sel := fmt.Sprintf(`job=%q`, t.job)
	w := fmt.Sprintf("%ds", int(t.window.Seconds()))
	queries := []struct {
		q   string
		set func(*usage, float64)
	}{
		// irate: over the last two scrapes, like top. rate over the window would divide a
		// young host's short history by the whole window and show it almost 100% busy.
		{`1 - avg by (client, host) (irate(node_cpu_seconds_total{` + sel + `,mode="idle"}[` + w + `]))`, func(u *usage, v float64) { u.cpu = v }},
		{`1 - node_memory_MemAvailable_bytes{` + sel + `} / node_memory_MemTotal_bytes{` + sel + `}`, func(u *usage, v float64) { u.mem = v }},
		// Read-only images (squashfs, iso9660) are always full and pseudo filesystems say nothing.
		{`max by (client, host) (1 - node_filesystem_avail_bytes{` + sel + `,fstype!~"tmpfs|ramfs|squashfs|iso9660|overlay|nsfs|fuse.*"} / node_filesystem_size_bytes{` + sel + `,fstype!~"tmpfs|ramfs|squashfs|iso9660|overlay|nsfs|fuse.*"})`, func(u *usage, v float64) { u.disk = v }},
		{`node_load1{` + sel + `}`, func(u *usage, v float64) { u.load1 = v }},
		{`sage_cpu_cores{` + sel + `}`, func(u *usage, v float64) { u.cores = v }},
	}
	now := time.Now()
	t.mu.RLock()
	values := make(map[Key]usage, len(t.values))
	t.mu.RUnlock()
	for _, q := range queries {
		vec, err := t.instant(ctx, q.q, now)
		if err != nil {
			return fmt.Errorf("hosthealth: %s: %w", q.q, err)
		}
		for _, s := range vec {
			k := Key{Client: s.Metric.Get("client"), Host: s.Metric.Get("host")}
			u, ok := values[k]
			if !ok {
				u = unknownUsage
			}
			q.set(&u, s.F)
			values[k] = u
		}
	}
	t.mu.Lock()
	t.values = values
	t.updated = now
	t.mu.Unlock()
	return nil
}

func (t *Tracker) instant(ctx context.Context, q string, ts time.Time) (promql.Vector, error) {
	qry, err := t.metrics.Engine().NewInstantQuery(ctx, t.metrics.Queryable(), nil, q, ts)
	if err != nil {
		return nil, err
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	return res.Vector()
}

// Get returns one host's health.
func (t *Tracker) Get(k Key) Health { return t.Lookup()(k) }

// Lookup returns Get for many hosts at once: the target index and the usage figures are taken
// once (each under its lock), not once a host, for a page that reads the health of thousands.
// The figures are those of the moment Lookup was called; the usage map is replaced, never
// changed, by each update, so it is read without the lock afterwards.
func (t *Tracker) Lookup() func(Key) Health {
	idx := t.targets()
	t.mu.RLock()
	values := t.values
	t.mu.RUnlock()
	return func(k Key) Health {
		h := Health{}
		if tg, ok := idx[k]; ok {
			h = targetHealth(tg)
		}
		u, ok := values[k]
		if !ok {
			u = unknownUsage
		}
		return withUsage(h, u)
	}
}

// TargetStates calls fn with the key and state (as Health.State: up, down or pending) of every
// host the hub has a scrape target for; every other host is unmonitored. It is how a page
// filters thousands of hosts by state while reading only the few with a target.
func (t *Tracker) TargetStates(fn func(k Key, state string)) {
	for k, tg := range t.targets() {
		var state string
		switch tg.Health() {
		case scrape.HealthGood:
			state = "up"
		case scrape.HealthUnknown:
			state = "pending"
		default:
			state = "down"
		}
		fn(k, state)
	}
}

func (t *Tracker) targets() map[Key]*scrape.Target {
	t.idxMu.Lock()
	defer t.idxMu.Unlock()
	if t.idx != nil && time.Since(t.idxBuilt) < indexTTL {
		return t.idx
	}
	t.idx, t.idxBuilt = t.index(), time.Now()
	return t.idx
}

func (t *Tracker) index() map[Key]*scrape.Target {
	active := t.metrics.Scrape().TargetsActive()[t.job]
	out := make(map[Key]*scrape.Target, len(active))
	for _, tg := range active {
		var k Key
		tg.LabelsRange(func(l labels.Label) {
			switch l.Name {
			case "client":
				k.Client = l.Value
			case "host":
				k.Host = l.Value
			}
		})
		out[k] = tg
	}
	return out
}

func targetHealth(tg *scrape.Target) Health {
	h := Health{Scraped: true, LastScrape: tg.LastScrape(), ScrapeDuration: tg.LastScrapeDuration()}
	switch tg.Health() {
	case scrape.HealthGood:
		h.Up = true
	case scrape.HealthUnknown:
		h.Unknown = true
	}
	if err := tg.LastError(); err != nil {
		h.LastError = err.Error()
	}
	return h
}

func withUsage(h Health, u usage) Health {
	h.CPU, h.Memory, h.Disk, h.Load1, h.Cores = u.cpu, u.mem, u.disk, u.load1, u.cores
	return h
}
