package api

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

const (
	benchHosts       = 5000
	benchClients     = 50 // hosts spread over clients and sites, so that a page names several
	benchConcurrency = 50 // concurrent clients of the API
)

// seedHosts fills the inventory with benchHosts hosts carrying realistic facts, and returns
// their ids.
func seedHosts(b *testing.B, inv *inventory.Inventory) []string {
	b.Helper()
	ctx := context.Background()
	var clients, sites []string
	for i := range benchClients {
		c, err := inv.CreateClient(ctx, inventory.Client{Name: fmt.Sprintf("Client %02d", i)})
		if err != nil {
			b.Fatal(err)
		}
		s, err := inv.CreateSite(ctx, inventory.Site{ClientID: c.ID, Name: "DC1"})
		if err != nil {
			b.Fatal(err)
		}
		clients, sites = append(clients, c.ID), append(sites, s.ID)
	}
	ids := make([]string, 0, benchHosts)
	for i := range benchHosts {
		ci := i % benchClients
		h, err := inv.CreateHost(ctx, inventory.Host{
			ClientID: clients[ci], SiteID: sites[ci],
			Name:      fmt.Sprintf("host-%05d.example", i),
			Addresses: []string{fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)},
			OS:        "linux", Role: "web", Tags: []string{"prod", "dc=pune"},
			Facts:    inventory.Facts{Kernel: "6.1.0-18-amd64", CPUModel: "Intel(R) Xeon(R) Gold 6230", Cores: 8, MemoryBytes: 32 << 30, OSRelease: "Debian GNU/Linux 12 (bookworm)"},
			AgentURL: fmt.Sprintf("http://10.%d.%d.%d:9500/metrics", i>>16&255, i>>8&255, i&255),
			Status:   inventory.StatusActive,
		})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, h.ID)
	}
	return ids
}

// BenchmarkHosts5000 answers GET /api/v1/hosts?limit=100 and GET /api/v1/hosts/{id} over
// loopback HTTP, behind the real authentication (an API token looked up per request), with
// health, from 50 concurrent clients, and reports latency percentiles. Measured, not asserted.
//
//	go test ./internal/api -run '^$' -bench Hosts5000 -benchtime 3000x
func BenchmarkHosts5000(b *testing.B) {
	storetest.EachB(b, func(b *testing.B, db *store.DB) {
		inv := inventory.New(db)
		ids := seedHosts(b, inv)
		ta := newTestAPI(b, db, apiConfig{health: fakeHealth})
		tr := &http.Transport{MaxIdleConns: 2 * benchConcurrency, MaxIdleConnsPerHost: 2 * benchConcurrency}
		b.Cleanup(tr.CloseIdleConnections)
		client := &http.Client{Transport: tr}

		for _, bc := range []struct {
			name string
			path func(r *rand.Rand) string
		}{
			{"list", func(*rand.Rand) string { return Prefix + "hosts?limit=100" }},
			{"list-last-page", func(*rand.Rand) string { return Prefix + "hosts?limit=100&offset=4900" }},
			{"list-of-client", func(*rand.Rand) string { return Prefix + "hosts?limit=100&status=active&tag=prod&name_contains=host" }},
			{"get", func(r *rand.Rand) string { return Prefix + "hosts/" + ids[r.IntN(len(ids))] }},
		} {
			b.Run(bc.name, func(b *testing.B) {
				var (
					mu   sync.Mutex
					lats []time.Duration
				)
				b.SetParallelism((benchConcurrency + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					r := rand.New(rand.NewPCG(rand.Uint64(), 1))
					var mine []time.Duration
					for pb.Next() {
						req := ta.request(b, "GET", bc.path(r), "", byBearer, "")
						start := time.Now()
						resp, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						mine = append(mine, time.Since(start))
						if resp.StatusCode != http.StatusOK {
							b.Errorf("%s: %d", req.URL.Path, resp.StatusCode)
							return
						}
					}
					mu.Lock()
					lats = append(lats, mine...)
					mu.Unlock()
				})
				if len(lats) == 0 {
					return
				}
				slices.Sort(lats)
				pct := func(p float64) float64 {
					return float64(lats[min(len(lats)-1, int(p*float64(len(lats))))].Microseconds()) / 1000
				}
				b.ReportMetric(pct(0.50), "p50-ms")
				b.ReportMetric(pct(0.95), "p95-ms")
				b.ReportMetric(pct(0.99), "p99-ms")
			})
		}
	})
}
