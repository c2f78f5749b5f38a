package hosthealth

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/serversage/sage/internal/metricstore"
)

// agentPayload is what an agent with two cores, a quarter busy, would expose; the idle counter
// grows by 1.5 core-seconds per real second (two cores, 75% idle).
func agentPayload(start time.Time) string {
	idle := 1.5 * time.Since(start).Seconds()
	return `
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} ` + ftoa(idle/2) + `
node_cpu_seconds_total{cpu="1",mode="idle"} ` + ftoa(idle/2) + `
node_cpu_seconds_total{cpu="0",mode="user"} 1
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 300
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 1000
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{mountpoint="/",fstype="ext4"} 90
node_filesystem_avail_bytes{mountpoint="/data",fstype="xfs"} 20
node_filesystem_avail_bytes{mountpoint="/run",fstype="tmpfs"} 0
node_filesystem_avail_bytes{mountpoint="/snap/x",fstype="squashfs"} 0
# TYPE node_filesystem_size_bytes gauge
node_filesystem_size_bytes{mountpoint="/",fstype="ext4"} 100
node_filesystem_size_bytes{mountpoint="/data",fstype="xfs"} 100
node_filesystem_size_bytes{mountpoint="/run",fstype="tmpfs"} 100
node_filesystem_size_bytes{mountpoint="/snap/x",fstype="squashfs"} 100
# TYPE node_load1 gauge
node_load1 0.5
# TYPE sage_cpu_cores gauge
sage_cpu_cores 2
`
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func TestTracker(t *testing.T) {
	start := time.Now().Add(-time.Minute)
	var broken atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() {
			http.Error(w, "agent broken", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(agentPayload(start)))
	}))
	defer srv.Close()

	const interval = 200 * time.Millisecond
	ms, err := metricstore.Open(metricstore.Options{Dir: t.TempDir(), ScrapeInterval: interval, ScrapeTimeout: interval / 2, TargetsReload: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	ctx := context.Background()
	addr := strings.TrimPrefix(srv.URL, "http://")
	err = ms.SetTargets(ctx, map[string][]metricstore.Target{"sage-agent": {
		{Address: addr, Labels: map[string]string{"client": "acme", "host": "web1"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tr := New(ms, "sage-agent", interval, nil)
	web1 := Key{Client: "acme", Host: "web1"}

	if h := tr.Get(Key{Client: "acme", Host: "nope"}); h.State() != "unmonitored" || !math.IsNaN(h.CPU) {
		t.Errorf("unknown host: %+v, state %s", h, h.State())
	}

	// Up, with usage once a few scrapes give the rate something to work with.
	var h Health
	waitFor(t, func() bool {
		if err := tr.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		h = tr.Get(web1)
		return h.State() == "up" && !math.IsNaN(h.CPU)
	}, func() string { return "web1 never up with CPU figures" })
	checks := []struct {
		name      string
		got, want float64
		tolerance float64
	}{
		{"cpu", h.CPU, 0.25, 0.05},
		{"memory", h.Memory, 0.7, 1e-9},
		{"disk (fullest real filesystem)", h.Disk, 0.8, 1e-9},
		{"load1", h.Load1, 0.5, 1e-9},
		{"cores", h.Cores, 2, 1e-9},
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > c.tolerance {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if h.LastScrape.IsZero() || h.LastError != "" {
		t.Errorf("up host: last scrape %v, error %q", h.LastScrape, h.LastError)
	}
	checkTargetStates(t, tr, map[Key]string{web1: "up"})

	// Down, with the scrape's error, within two scrape intervals of the failure (plus the
	// index's second), without any refresh of the usage.
	broken.Store(true)
	waitFor(t, func() bool { h = tr.Get(web1); return h.State() == "down" }, func() string { return "web1 never down" })
	if !strings.Contains(h.LastError, "500") {
		t.Errorf("down host's error = %q, want the HTTP status", h.LastError)
	}
	checkTargetStates(t, tr, map[Key]string{web1: "down"})
}

// checkTargetStates: TargetStates names exactly the hosts with a target, each in the state Get
// gives it.
func checkTargetStates(t *testing.T, tr *Tracker, want map[Key]string) {
	t.Helper()
	got := map[Key]string{}
	tr.TargetStates(func(k Key, state string) { got[k] = state })
	if len(got) != len(want) {
		t.Errorf("TargetStates = %v, want %v", got, want)
	}
	for k, s := range want {
		if got[k] != s || tr.Get(k).State() != s {
			t.Errorf("%v: TargetStates %q, Get %q, want %q", k, got[k], tr.Get(k).State(), s)
		}
	}
}

func waitFor(t *testing.T, ok func() bool, msg func() string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal(msg())
}
