package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// breachValue and calmValue are what a host's bench_level reads while it breaches and while it
// does not; the rules compare against 5.
const (
	breachValue = 9
	calmValue   = 0
)

// exporter serves one gauge, bench_level, for every synthetic host, on a path per scraper and
// host (/SCRAPER/HOST/metrics), so that the hub and Prometheus scrape the same values and the
// exporter can tell their scrapes apart. It notes, per scraper, when a breach was first served:
// that scrape is the breaching sample's ingestion, the instant latency is measured from.
type exporter struct {
	mu    sync.Mutex
	hosts map[string]*hostState
}

type hostState struct {
	breaching bool
	// ingested holds, for the current breach, when each scraper was first served the breaching
	// value. Cleared when the breach starts.
	ingested map[string]time.Time
	scrapes  map[string]int
}

func newExporter(hosts []string) *exporter {
	x := &exporter{hosts: make(map[string]*hostState, len(hosts))}
	for _, h := range hosts {
		x.hosts[h] = &hostState{ingested: map[string]time.Time{}, scrapes: map[string]int{}}
	}
	return x
}

// splitPath returns the scraper and host of /SCRAPER/HOST/metrics.
func splitPath(p string) (scraper, host string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] != "metrics" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

func (x *exporter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	scraper, host, ok := splitPath(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	x.mu.Lock()
	h := x.hosts[host]
	if h == nil {
		x.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	h.scrapes[scraper]++
	v := calmValue
	if h.breaching {
		v = breachValue
		// Noted under the lock that read the value, so a flip cannot fall between the two; the
		// response is written microseconds later, and the scraper's sample carries its own
		// (earlier) scrape start time anyway.
		if _, seen := h.ingested[scraper]; !seen {
			h.ingested[scraper] = time.Now()
		}
	}
	x.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	fmt.Fprintf(w, "# HELP bench_level A level that breaches its watermark (5) while the benchmark says so.\n# TYPE bench_level gauge\nbench_level %d\n", v)
}

// set starts (true) or ends (false) a host's breach.
func (x *exporter) set(host string, breaching bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	h := x.hosts[host]
	if breaching && !h.breaching {
		clear(h.ingested)
	}
	h.breaching = breaching
}

// ingestedAt is when scraper was first served host's current breach.
func (x *exporter) ingestedAt(host, scraper string) (time.Time, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	t, ok := x.hosts[host].ingested[scraper]
	return t, ok
}

// minScrapes is the fewest scrapes any host has had from scraper.
func (x *exporter) minScrapes(scraper string) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	least := -1
	for _, h := range x.hosts {
		if n := h.scrapes[scraper]; least < 0 || n < least {
			least = n
		}
	}
	return max(least, 0)
}
