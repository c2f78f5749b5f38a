package collector

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeCollector struct {
	update func(ctx context.Context, m *Metrics) error
}

func (f fakeCollector) Update(ctx context.Context, m *Metrics) error { return f.update(ctx, m) }

var fakeDesc = newDesc("sage_test_value", "A test value.", nil)

func testSet(logger *slog.Logger, timeout time.Duration, cs map[string]Collector) *Set {
	s := newSet(logger)
	for n, c := range cs {
		s.add(n, c, timeout)
	}
	return s
}

func TestSetOutcomes(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	fail := true
	s := testSet(logger, 200*time.Millisecond, map[string]Collector{
		"good": fakeCollector{func(_ context.Context, m *Metrics) error { m.Gauge(fakeDesc, 42); return nil }},
		"erring": fakeCollector{func(_ context.Context, m *Metrics) error {
			if fail {
				return errors.New("cannot read /proc/nothing")
			}
			return nil
		}},
		// Stuck in something that ignores its context, like statfs on a dead NFS server.
		"stuck": fakeCollector{func(context.Context, *Metrics) error { <-release; return nil }},
		"panicking": fakeCollector{func(context.Context, *Metrics) error {
			var m map[string]int
			m["x"] = 1
			return nil
		}},
		"mislabelled": fakeCollector{func(_ context.Context, m *Metrics) error {
			m.Gauge(fakeDesc, 1, "unexpected-label-value")
			return nil
		}},
	})

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	want := `# HELP sage_collector_success Whether the collector read everything it needs in the last scrape (1) or not (0).
# TYPE sage_collector_success gauge
sage_collector_success{collector="erring"} 0
sage_collector_success{collector="good"} 1
sage_collector_success{collector="mislabelled"} 0
sage_collector_success{collector="panicking"} 0
sage_collector_success{collector="stuck"} 0
# HELP sage_test_value A test value.
# TYPE sage_test_value gauge
sage_test_value 42
`
	for scrape := 0; scrape < 2; scrape++ {
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sage_collector_success", "sage_test_value"); err != nil {
			t.Fatalf("scrape %d: %v", scrape, err)
		}
	}
	if n := testutil.CollectAndCount(s, "sage_collector_duration_seconds"); n != 5 {
		t.Errorf("%d duration samples, want 5", n)
	}
	if got := strings.Count(logs.String(), "collector=erring"); got != 1 {
		t.Errorf("the failure of erring was logged %d times over three scrapes, want once:\n%s", got, logs.String())
	}
	for _, want := range []string{"panic", "deadline exceeded"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}

	fail = false
	testutil.CollectAndCount(s)
	if !strings.Contains(logs.String(), `msg="collector recovered" collector=erring`) {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
}

func TestConfigEnabledNames(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    []string
		wantNot []string
	}{
		{name: "defaults", want: []string{"cpu", "meminfo", "loadavg"}},
		{name: "disable", cfg: Config{Disable: []string{"cpu"}}, want: []string{"meminfo"}, wantNot: []string{"cpu"}},
		{name: "disable wins over enable", cfg: Config{Enable: []string{"cpu"}, Disable: []string{"cpu"}}, wantNot: []string{"cpu"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(tt.cfg.EnabledNames(), ",") + ","
			for _, w := range tt.want {
				if !strings.Contains(got, w+",") {
					t.Errorf("enabled %s lacks %s", got, w)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(got, w+",") {
					t.Errorf("enabled %s has %s", got, w)
				}
			}
		})
	}
}

func TestTimeoutFor(t *testing.T) {
	c := Config{Timeout: 3 * time.Second, Timeouts: map[string]time.Duration{"cpu": time.Second}}
	if got := c.TimeoutFor("cpu"); got != time.Second {
		t.Errorf("cpu: %v", got)
	}
	if got := c.TimeoutFor("meminfo"); got != 3*time.Second {
		t.Errorf("meminfo: %v", got)
	}
	if got := (&Config{}).TimeoutFor("cpu"); got != DefaultTimeout {
		t.Errorf("default: %v", got)
	}
}

func TestKernelLogPatternsOverride(t *testing.T) {
	c := Config{KernelLog: KernelLogConfig{Patterns: []KernelLogPattern{{Name: "segfault", Regex: "custom"}, {Name: "mine", Regex: "x"}}}}
	got := map[string]string{}
	for _, p := range c.KernelLogPatterns() {
		if _, dup := got[p.Name]; dup {
			t.Fatalf("pattern %s twice", p.Name)
		}
		got[p.Name] = p.Regex
	}
	if got["segfault"] != "custom" || got["mine"] != "x" || got["oom_killer"] == "" {
		t.Errorf("patterns %v", got)
	}
	c.KernelLog.NoDefaults = true
	if n := len(c.KernelLogPatterns()); n != 2 {
		t.Errorf("with no_defaults: %d patterns, want 2", n)
	}
}
