package inventory_test

import (
	"fmt"
	"testing"

	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

const benchHosts = 5000

func benchHost(clientID string, i int) inventory.Host {
	return inventory.Host{
		ClientID:  clientID,
		Name:      fmt.Sprintf("host-%05d.acme.example", i),
		Addresses: []string{fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), fmt.Sprintf("host-%05d.acme.example", i)},
		OS:        "linux",
		Role:      "web",
		Tags:      []string{"prod", "dc=pune"},
		Facts:     inventory.Facts{Kernel: "6.1.0-18-amd64", CPUModel: "Intel(R) Xeon(R) Gold 6230", Cores: 8, MemoryBytes: 32 << 30, OSRelease: "Debian GNU/Linux 12 (bookworm)"},
		AgentURL:  fmt.Sprintf("http://10.%d.%d.%d:9500/metrics", i>>16&255, i>>8&255, i&255),
		Status:    inventory.StatusActive,
	}
}

// BenchmarkInsertHosts5000: one op creates 5,000 hosts (each its own validated transaction, as the
// API would) under a fresh client.
func BenchmarkInsertHosts5000(b *testing.B) {
	storetest.EachB(b, func(b *testing.B, db *store.DB) {
		inv := inventory.New(db)
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			c, err := inv.CreateClient(ctx, inventory.Client{Name: fmt.Sprintf("client %d", n)})
			if err != nil {
				b.Fatal(err)
			}
			n++
			for i := range benchHosts {
				if _, err := inv.CreateHost(ctx, benchHost(c.ID, i)); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchHosts), "ns/host")
	})
}

// BenchmarkListHosts5000: one op lists all 5,000 hosts of a client, decoded.
func BenchmarkListHosts5000(b *testing.B) {
	storetest.EachB(b, func(b *testing.B, db *store.DB) {
		inv := inventory.New(db)
		c, err := inv.CreateClient(ctx, inventory.Client{Name: "Acme"})
		if err != nil {
			b.Fatal(err)
		}
		for i := range benchHosts {
			if _, err := inv.CreateHost(ctx, benchHost(c.ID, i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		for b.Loop() {
			l, err := inv.ListHosts(ctx, inventory.HostFilter{ClientID: c.ID})
			if err != nil {
				b.Fatal(err)
			}
			if len(l) != benchHosts {
				b.Fatalf("listed %d hosts, want %d", len(l), benchHosts)
			}
		}
	})
}

// BenchmarkListHostsPage: one op lists one page of 50 hosts filtered by tag, among 5,000 (what the
// hosts page asks for).
func BenchmarkListHostsPage(b *testing.B) {
	storetest.EachB(b, func(b *testing.B, db *store.DB) {
		inv := inventory.New(db)
		c, err := inv.CreateClient(ctx, inventory.Client{Name: "Acme"})
		if err != nil {
			b.Fatal(err)
		}
		for i := range benchHosts {
			if _, err := inv.CreateHost(ctx, benchHost(c.ID, i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		for b.Loop() {
			l, err := inv.ListHosts(ctx, inventory.HostFilter{ClientID: c.ID, Tag: "prod", Page: inventory.Page{Limit: 50, Offset: 2500}})
			if err != nil || len(l) != 50 {
				b.Fatalf("listed %d hosts: %v", len(l), err)
			}
		}
	})
}
