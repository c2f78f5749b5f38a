package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

// BenchmarkPages5000 serves pages of an estate of 5,000 hosts (ten clients) through the whole
// handler, authentication included: one op is one page.
func BenchmarkPages5000(b *testing.B) {
	storetest.EachB(b, func(b *testing.B, db *store.DB) {
		e := newEnv(b, db)
		var clients []inventory.Client
		for i := range 10 {
			clients = append(clients, e.client(fmt.Sprintf("Client %02d", i)))
		}
		var first inventory.Host
		for i := range 5000 {
			h := e.host(inventory.Host{ClientID: clients[i%10].ID, Name: fmt.Sprintf("host-%05d.example", i), Role: "web",
				AgentURL: fmt.Sprintf("http://10.0.%d.%d:10730/metrics", i/250, i%250), Tags: []string{"prod"},
				Facts: inventory.Facts{OSRelease: "Debian GNU/Linux 12 (bookworm)", Kernel: "6.1.0", Cores: 8, MemoryBytes: 32 << 30}})
			if i == 0 {
				first = h
			}
		}
		for _, p := range []string{"/", "/hosts", "/hosts/_table?page=100", "/hosts?health=unmonitored&page=50", "/hosts?q=host-0499", "/clients", "/hosts/" + first.ID} {
			b.Run(p, func(b *testing.B) {
				h := e.ui.Handler()
				b.ReportAllocs()
				for b.Loop() {
					req := httptest.NewRequest("GET", p, nil)
					req.AddCookie(&http.Cookie{Name: auth.SessionCookie, Value: e.session})
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != 200 {
						b.Fatalf("%s: %d", p, w.Code)
					}
				}
			})
		}
	})
}
