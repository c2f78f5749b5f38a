package metricstore

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/promql"
)

// exporter serves a gauge and a counter on /metrics the way an agent does.
func exporter(t *testing.T) *httptest.Server {
	t.Helper()
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_temperature_celsius", Help: "A gauge."})
	g.Set(42)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_events_total", Help: "A counter."})
	c.Add(7)
	reg.MustRegister(g, c)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return srv
}

// eventually polls an instant query until check accepts its result.
func eventually(t *testing.T, s *Store, query string, check func(promql.Vector) bool) promql.Vector {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := instant(t, s, query, time.Now())
		if check(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v", query, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestScrapeTargets(t *testing.T) {
	s := openStore(t, Options{ScrapeInterval: 200 * time.Millisecond, TargetsReload: 100 * time.Millisecond})
	ctx := context.Background()
	srv := exporter(t)
	addr := strings.TrimPrefix(srv.URL, "http://")
	down := closedAddr(t)

	err := s.SetTargets(ctx, map[string][]Target{
		"sage": {{Address: addr, Labels: map[string]string{"client": "acme", "site": "paris", "host": "web1"}}},
		"down": {{Address: down, Labels: map[string]string{"instance": "db1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}

	v := eventually(t, s, `test_temperature_celsius`, func(v promql.Vector) bool { return len(v) == 1 })
	want := `{__name__="test_temperature_celsius", client="acme", host="web1", instance="` + addr + `", job="sage", site="paris"}`
	if got := v[0].Metric.String(); got != want || v[0].F != 42 {
		t.Errorf("scraped %s = %v, want %s = 42", got, v[0].F, want)
	}
	eventually(t, s, `up{job="sage"} == 1`, func(v promql.Vector) bool { return len(v) == 1 })
	// The instance label set on the target replaces the address.
	eventually(t, s, `up{job="down", instance="db1"} == 0`, func(v promql.Vector) bool { return len(v) == 1 })

	var sawUp, sawDown bool
	for _, ts := range s.Targets() {
		switch ts.Job {
		case "sage":
			sawUp = ts.Health == "up" && ts.LastError == "" && ts.Labels["host"] == "web1" && !ts.LastScrape.IsZero()
		case "down":
			sawDown = ts.Health == "down" && strings.Contains(ts.LastError, "connection refused") && ts.Labels["instance"] == "db1"
		}
	}
	if !sawUp || !sawDown {
		t.Errorf("target status: %+v", s.Targets())
	}
	if cfg := s.Config().String(); !strings.Contains(cfg, "job_name: sage") || !strings.Contains(cfg, "job_name: down") {
		t.Errorf("configuration lacks the jobs:\n%s", cfg)
	}

	// Removing the targets stops their scrapes and marks their series stale at once, as Prometheus
	// does when a target disappears.
	if err := s.SetTargets(ctx, map[string][]Target{"sage": nil}); err != nil {
		t.Fatal(err)
	}
	eventually(t, s, `test_temperature_celsius`, func(v promql.Vector) bool { return len(v) == 0 })
	if n := len(s.Targets()); n != 0 {
		t.Errorf("%d targets left", n)
	}
	if err := s.SetTargets(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if cfg := s.Config().String(); strings.Contains(cfg, "job_name") {
		t.Errorf("a job is left in the configuration:\n%s", cfg)
	}
}

func TestSetTargetsRefusesBadInput(t *testing.T) {
	s := openStore(t, Options{})
	good := Target{Address: "127.0.0.1:9100"}
	tests := []struct {
		name    string
		jobs    map[string][]Target
		wantErr string
	}{
		{"empty job", map[string][]Target{"": {good}}, "invalid job name"},
		{"no port", map[string][]Target{"j": {{Address: "localhost"}}}, "host:port"},
		{"scheme", map[string][]Target{"j": {{Address: "a:1", Scheme: "ftp"}}}, "neither http nor https"},
		{"path", map[string][]Target{"j": {{Address: "a:1", MetricsPath: "metrics"}}}, "does not start with /"},
		{"reserved label", map[string][]Target{"j": {{Address: "a:1", Labels: map[string]string{"__address__": "x"}}}}, "invalid target label name"},
		{"job label", map[string][]Target{"j": {{Address: "a:1", Labels: map[string]string{"job": "x"}}}}, "invalid target label name"},
		{"bad name", map[string][]Target{"j": {{Address: "a:1", Labels: map[string]string{"a-b": "x"}}}}, "invalid target label name"},
		{"bad value", map[string][]Target{"j": {{Address: "a:1", Labels: map[string]string{"host": "\xff"}}}}, "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.SetTargets(context.Background(), tt.jobs)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if cfg := s.Config().String(); strings.Contains(cfg, "job_name") {
				t.Errorf("a refused call changed the configuration:\n%s", cfg)
			}
		})
	}
}

func TestSetTargetsAfterClose(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.SetTargets(ctx, map[string][]Target{"j": {{Address: "127.0.0.1:1"}}}); err == nil || ctx.Err() != nil {
		t.Errorf("SetTargets on a closed store: err = %v (context %v)", err, ctx.Err())
	}
}
