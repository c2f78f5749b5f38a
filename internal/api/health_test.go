package api

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/metricstore"
	"github.com/serversage/sage/internal/store/storetest"
)

// TestRealTracker: with the hub's real health tracker over a real TSDB, a host's figures are
// found by its client's slug and name (as the hub labels its series), and what has no samples is
// null.
func TestRealTracker(t *testing.T) {
	ctx := context.Background()
	ms, err := metricstore.Open(metricstore.Options{Dir: t.TempDir(), Logger: storetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	const job = "sage-agent"
	app := ms.Appender(ctx)
	now := time.Now().UnixMilli()
	for name, v := range map[string]float64{"node_memory_MemAvailable_bytes": 25, "node_memory_MemTotal_bytes": 100} {
		ls := labels.FromStrings("__name__", name, "job", job, "instance", "10.0.0.5:9500", "client", "acme-corp", "host", "web-01")
		if _, err := app.Append(0, ls, now, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	tracker := hosthealth.New(ms, job, time.Minute, storetest.Logger(t))
	if err := tracker.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	inv := inventory.New(storetest.SQLite(t))
	c, err := inv.CreateClient(ctx, inventory.Client{Name: "Acme Corp"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := inv.CreateHost(ctx, inventory.Host{ClientID: c.ID, Name: "web-01", Status: inventory.StatusActive})
	if err != nil {
		t.Fatal(err)
	}
	handler := New(Options{Inventory: inv, Health: tracker, Logger: storetest.Logger(t)})
	for _, path := range []string{"/api/v1/hosts/" + h.ID, "/api/v1/hosts"} {
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		var v hostView
		if path != "/api/v1/hosts" {
			err = json.Unmarshal(w.Body.Bytes(), &v)
		} else {
			var p page[hostView]
			err = json.Unmarshal(w.Body.Bytes(), &p)
			if len(p.Items) == 1 {
				v = p.Items[0]
			}
		}
		if err != nil || v.Health == nil {
			t.Fatalf("%s: %v %s", path, err, w.Body)
		}
		hv := v.Health
		if hv.Memory == nil || *hv.Memory != 0.75 || hv.CPU != nil || hv.Disk != nil || hv.State != "unmonitored" || hv.LastScrape != nil {
			t.Errorf("%s: health %s", path, w.Body)
		}
	}
}
