package metricstore

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

func openStore(t testing.TB, o Options) *Store {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// appendSamples appends value f(i) at base+i*step for i in [0,n) to each series, in one commit.
func appendSamples(t testing.TB, s *Store, series []labels.Labels, base time.Time, step time.Duration, n int, f func(i int) float64) {
	t.Helper()
	app := s.Appender(context.Background())
	for i := range n {
		ts := base.Add(time.Duration(i) * step).UnixMilli()
		for _, ls := range series {
			if _, err := app.Append(0, ls, ts, f(i)); err != nil {
				_ = app.Rollback()
				t.Fatalf("append %s@%d: %v", ls, ts, err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

func instant(t testing.TB, s *Store, q string, at time.Time) promql.Vector {
	t.Helper()
	qry, err := s.Engine().NewInstantQuery(context.Background(), s.Queryable(), nil, q, at)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer qry.Close()
	res := qry.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", q, res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

func TestAppendAndQuery(t *testing.T) {
	s := openStore(t, Options{})
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	series := []labels.Labels{
		labels.FromStrings("__name__", "requests_total", "host", "a"),
		labels.FromStrings("__name__", "requests_total", "host", "b"),
		labels.FromStrings("__name__", "temperature", "host", "a"),
	}
	// 61 samples 10 s apart: counters rise by 1 per second.
	appendSamples(t, s, series, base, 10*time.Second, 61, func(i int) float64 { return float64(10 * i) })
	end := base.Add(600 * time.Second)

	tests := []struct {
		query string
		at    time.Time
		want  map[string]float64 // by series' labels
	}{
		{`requests_total{host="a"}`, end, map[string]float64{`{__name__="requests_total", host="a"}`: 600}},
		{`sum(requests_total)`, end, map[string]float64{`{}`: 1200}},
		{`rate(requests_total[2m])`, end, map[string]float64{`{host="a"}`: 1, `{host="b"}`: 1}},
		{`temperature offset 5m`, end, map[string]float64{`{__name__="temperature", host="a"}`: 300}},
		// The last sample is just under 5 minutes old: within the lookback delta.
		{`temperature`, end.Add(5*time.Minute - time.Second), map[string]float64{`{__name__="temperature", host="a"}`: 600}},
		// At 5 minutes the series is gone: Prometheus 3's lookback window is open on the left.
		{`temperature`, end.Add(5 * time.Minute), map[string]float64{}},
		{`absent(nothing)`, end, map[string]float64{`{}`: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got := map[string]float64{}
			for _, smpl := range instant(t, s, tt.query, tt.at) {
				got[smpl.Metric.String()] = smpl.F
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, w := range tt.want {
				if g, ok := got[k]; !ok || math.Abs(g-w) > 1e-9 {
					t.Errorf("%s = %v (present %v), want %v", k, g, ok, w)
				}
			}
		})
	}

	t.Run("range", func(t *testing.T) {
		qry, err := s.Engine().NewRangeQuery(context.Background(), s.Queryable(), nil, `requests_total{host="b"}`, base, end, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		defer qry.Close()
		m, err := qry.Exec(context.Background()).Matrix()
		if err != nil {
			t.Fatal(err)
		}
		if len(m) != 1 || len(m[0].Floats) != 11 {
			t.Fatalf("want 1 series of 11 points, got %v", m)
		}
		for i, p := range m[0].Floats {
			if p.F != float64(60*i) {
				t.Errorf("point %d = %v, want %d", i, p.F, 60*i)
			}
		}
	})

	t.Run("select", func(t *testing.T) {
		q, err := s.Queryable().Querier(base.UnixMilli(), end.UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		names, _, err := q.LabelValues(context.Background(), "__name__", nil)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(names, ",") != "requests_total,temperature" {
			t.Errorf("metric names %v", names)
		}
	})

	t.Run("bad query", func(t *testing.T) {
		if _, err := s.Engine().NewInstantQuery(context.Background(), s.Queryable(), nil, `rate(x[`, end); err == nil {
			t.Error("a malformed query was accepted")
		}
	})
}

func TestAppendRefusesOutOfOrder(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ls := labels.FromStrings("__name__", "g")
	for _, tt := range []struct {
		window time.Duration
		ok     bool
	}{{0, false}, {time.Hour, true}} {
		t.Run(fmt.Sprint(tt.window), func(t *testing.T) {
			s := openStore(t, Options{OutOfOrderWindow: tt.window})
			appendSamples(t, s, []labels.Labels{ls}, now, time.Second, 1, func(int) float64 { return 1 })
			app := s.Appender(context.Background())
			_, err := app.Append(0, ls, now.Add(-time.Minute).UnixMilli(), 2)
			if err == nil {
				err = app.Commit()
			} else {
				_ = app.Rollback()
			}
			if (err == nil) != tt.ok {
				t.Errorf("out-of-order append with window %s: err = %v, want success %v", tt.window, err, tt.ok)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no dir", Options{}, "no data directory"},
		{"timeout over interval", Options{Dir: dir, ScrapeInterval: time.Second, ScrapeTimeout: 2 * time.Second}, "exceeds scrape interval"},
		{"negative retention", Options{Dir: dir, Retention: -time.Hour}, "must not be negative"},
		{"negative size", Options{Dir: dir, RetentionSize: -1}, "must not be negative"},
		{"negative query timeout", Options{Dir: dir, QueryTimeout: -time.Second}, "must not be negative"},
		{"negative samples", Options{Dir: dir, QueryMaxSamples: -1}, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.opts)
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}

	t.Run("defaults", func(t *testing.T) {
		s := openStore(t, Options{ScrapeInterval: 5 * time.Second})
		o := s.Options()
		if o.Retention != DefaultRetention || o.LookbackDelta != 5*time.Minute || o.QueryTimeout != 2*time.Minute ||
			o.QueryMaxSamples != 50_000_000 || o.QueryMaxConcurrency != 20 {
			t.Errorf("defaults not applied: %+v", o)
		}
		if o.ScrapeTimeout != 5*time.Second {
			t.Errorf("scrape timeout %s, want the interval (5s) when that is below the 10s default", o.ScrapeTimeout)
		}
		if !strings.Contains(s.Config().String(), "scrape_interval: 5s") {
			t.Errorf("configuration lacks the scrape interval:\n%s", s.Config().String())
		}
	})

	t.Run("query limits", func(t *testing.T) {
		s := openStore(t, Options{QueryMaxSamples: 10})
		now := time.Now()
		var series []labels.Labels
		for i := range 20 {
			series = append(series, labels.FromStrings("__name__", "m", "i", fmt.Sprint(i)))
		}
		appendSamples(t, s, series, now, time.Second, 1, func(int) float64 { return 1 })
		qry, err := s.Engine().NewInstantQuery(context.Background(), s.Queryable(), nil, "m", now)
		if err != nil {
			t.Fatal(err)
		}
		defer qry.Close()
		if err := qry.Exec(context.Background()).Err; err == nil || !strings.Contains(err.Error(), "too many samples") {
			t.Errorf("a query over the sample limit: err = %v", err)
		}
	})
}

// TestRetention compacts eight hours of samples into blocks and checks what each retention keeps.
func TestRetention(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const hours = 8
	tests := []struct {
		name       string
		opts       Options
		wantBlocks func(n int) bool
		earliest   func(time.Time) bool // first sample still kept
	}{
		{"time kept", Options{Retention: 30 * 24 * time.Hour}, func(n int) bool { return n >= 2 },
			func(ts time.Time) bool { return ts.Equal(base) }},
		{"time 2h", Options{Retention: 2 * time.Hour}, func(n int) bool { return n >= 1 },
			func(ts time.Time) bool { return ts.After(base.Add(2 * time.Hour)) }},
		{"size", Options{RetentionSize: 1}, func(n int) bool { return n == 0 },
			func(ts time.Time) bool { return ts.After(base.Add(4 * time.Hour)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, tt.opts)
			series := []labels.Labels{labels.FromStrings("__name__", "m")}
			appendSamples(t, s, series, base, time.Minute, hours*60, func(i int) float64 { return float64(i) })
			if err := s.DB().Compact(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := len(s.DB().Blocks()); !tt.wantBlocks(n) {
				t.Errorf("%d blocks left", n)
			}
			q, err := s.Queryable().Querier(math.MinInt64, math.MaxInt64)
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			ss := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
			if !ss.Next() {
				t.Fatalf("no series left: %v", ss.Err())
			}
			it := ss.At().Iterator(nil)
			if it.Next() == 0 {
				t.Fatal("no samples left")
			}
			first, _ := it.At()
			if !tt.earliest(time.UnixMilli(first).UTC()) {
				t.Errorf("earliest sample kept is at %s", time.UnixMilli(first).UTC())
			}
		})
	}
}

const childEnv = "METRICSTORE_KILL_CHILD_DIR"

// TestWALReplayAfterKill appends and commits in a child process (this test binary, re-run), kills
// it with SIGKILL, and reads every committed sample back from the same directory.
func TestWALReplayAfterKill(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		runKillChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := testCommand(t, "^TestWALReplayAfterKill$", childEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	base, err := waitForLine(out, "committed ", 60*time.Second)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no Close, no flush
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child ended with %v, not by SIGKILL", err)
	}

	baseMs := mustParseInt(t, base)
	s := openStore(t, Options{Dir: dir})
	at := time.UnixMilli(baseMs + (killSamples-1)*1000)
	v := instant(t, s, `count_over_time(killed_total[1h])`, at)
	if len(v) != killSeries {
		t.Fatalf("%d series after replay, want %d: %v", len(v), killSeries, v)
	}
	for _, smpl := range v {
		if smpl.F != killSamples {
			t.Errorf("%s: %v samples after replay, want %d", smpl.Metric, smpl.F, killSamples)
		}
	}
	if v := instant(t, s, `sum(killed_total)`, at); len(v) != 1 || v[0].F != killSeries*(killSamples-1) {
		t.Errorf("sum of the last values = %v, want %d", v, killSeries*(killSamples-1))
	}
	if first, last, current := s.WALReplay(); current != last {
		t.Errorf("WAL replay at segment %d of %d..%d after Open", current, first, last)
	}
}

const (
	killSeries  = 50
	killSamples = 120
)

// runKillChild is the child's side: append, commit, say so, then wait to be killed.
func runKillChild(dir string) {
	s, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i := range killSamples {
		app := s.Appender(context.Background())
		for j := range killSeries {
			ls := labels.FromStrings("__name__", "killed_total", "series", fmt.Sprint(j))
			if _, err := app.Append(0, ls, base.Add(time.Duration(i)*time.Second).UnixMilli(), float64(i)); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
		}
		if err := app.Commit(); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
	}
	fmt.Printf("committed %d\n", base.UnixMilli())
	time.Sleep(time.Hour)
	os.Exit(1)
}
