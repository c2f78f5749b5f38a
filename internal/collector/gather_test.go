package collector

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// replay is a collector that emits the samples it was given, every scrape: the same input for
// the registry path and the fast path.
type replay struct{ samples []sample }

func (r replay) Update(_ context.Context, m *Metrics) error {
	m.list = append(m.list, r.samples...)
	return nil
}

// hostCollectors are the collectors whose series do not come and go between two scrapes.
var hostCollectors = []string{"cpu", "diskstats", "filesystem", "loadavg", "meminfo", "netdev", "stat"}

// recordedSet runs each host collector once, on this machine, and returns a set replaying what each
// emitted, plus a collector of odd values and labels that the encoders treat specially.
func recordedSet(t *testing.T) *Set {
	t.Helper()
	s := newSet(nil)
	for _, name := range hostCollectors {
		c, err := registry[name].factory(realConfig(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		m := &Metrics{}
		if err := c.Update(context.Background(), m); err != nil {
			t.Logf("%s: %v (its partial output is used)", name, err)
		}
		if cl, ok := c.(interface{ Close() error }); ok {
			cl.Close()
		}
		s.add(name, replay{slices.Clone(m.list)}, time.Minute)
	}
	s.add("odd", oddCollector(), time.Minute)
	return s
}

// oddCollector emits what the exposition formats escape or spell specially.
func oddCollector() Collector {
	gauge := newDesc("sage_test_odd", "Help with a backslash \\ and a\nnewline.", []string{"zeta", "alpha"})
	counter := newDesc("sage_test_odd_count", "A counter without the _total suffix.", []string{"k"})
	total := newDesc("sage_test_odd_total", "A counter with it.", nil)
	var m Metrics
	m.Gauge(gauge, math.NaN(), "z", "quote \" backslash \\ newline \n")
	m.Gauge(gauge, math.Inf(1), "y", "ünïcödé")
	m.Gauge(gauge, math.Inf(-1), "x", "")
	m.addShared(gauge, prometheus.GaugeValue, 1e-9, labelPairsFor(gauge, "w", "invalid \xff utf-8"))
	m.Counter(counter, 1<<53, "b")
	m.Counter(counter, 0.1, "a")
	m.Counter(total, 12345678901234)
	return replay{m.list}
}

var durationLine = regexp.MustCompile(`(?m)^(sage_collector_duration_seconds\{[^}]*\}) .*$`)

func encodeFamilies(t *testing.T, mfs []*dto.MetricFamily, format expfmt.Format) string {
	t.Helper()
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return durationLine.ReplaceAllString(b.String(), "$1 <duration>")
}

// TestGatherMatchesRegistry checks that Gather, encoded without name escaping as the agent does,
// writes exactly what a pedantic client_golang registry gathering the same samples writes through
// promhttp's escaping: same families in the same order, same series order, same bytes.
func TestGatherMatchesRegistry(t *testing.T) {
	s := recordedSet(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	for _, accept := range []string{"", "application/openmetrics-text;version=1.0.0", "text/plain;version=0.0.4;escaping=allow-utf-8"} {
		format := expfmt.NegotiateIncludingOpenMetrics(http.Header{"Accept": {accept}})
		t.Run(string(format), func(t *testing.T) {
			want, err := reg.Gather()
			if err != nil {
				t.Fatalf("registry: %v", err)
			}
			got, err := s.Gather(context.Background())
			if err != nil {
				t.Fatalf("Gather: %v", err)
			}
			w := encodeFamilies(t, want, format)
			g := encodeFamilies(t, got, format.WithEscapingScheme(model.NoEscaping))
			if g != w {
				t.Errorf("Gather's exposition differs from the registry's:\n%s", lineDiff(w, g))
			}
			if !strings.Contains(g, "node_cpu_seconds_total{") || !strings.Contains(g, `sage_test_odd{alpha="quote`) {
				t.Errorf("exposition lacks expected series:\n%s", g)
			}
		})
	}
}

// lineDiff shows the first lines where a and b differ.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return "line " + strconv.Itoa(i+1) + ":\n  want " + x + "\n  got  " + y
		}
	}
	return ""
}

func TestGatherSortedAndTyped(t *testing.T) {
	g := newDesc("sage_test_b_gauge", "A gauge.", []string{"dev"})
	c := newDesc("sage_test_a_total", "A counter.", []string{"dev", "mode"})
	s := newSet(nil)
	s.add("one", fakeCollector{func(_ context.Context, m *Metrics) error {
		m.Gauge(g, 3, "sdb")
		m.Counter(c, 2, "sdb", "write")
		m.Gauge(g, 1, "sda")
		m.Counter(c, 1, "sda", "read")
		return nil
	}}, time.Minute)
	s.add("two", fakeCollector{func(_ context.Context, m *Metrics) error {
		m.Counter(c, 3, "sda", "write")
		return nil
	}}, time.Minute)

	var f Gathered
	for scrape := range 3 { // the same Gathered, reused
		if err := s.GatherInto(context.Background(), &f); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, mf := range f.List {
			names = append(names, mf.GetName())
		}
		want := []string{"sage_collector_duration_seconds", "sage_collector_success", "sage_test_a_total", "sage_test_b_gauge"}
		if !slices.Equal(names, want) {
			t.Fatalf("scrape %d: families %v, want %v", scrape, names, want)
		}
		fams := Families{}
		for _, mf := range f.List {
			fams[mf.GetName()] = mf
		}
		tests := []struct {
			name   string
			typ    dto.MetricType
			series []string // label values in order, then the value
		}{
			{"sage_test_a_total", dto.MetricType_COUNTER, []string{"sda read 1", "sda write 3", "sdb write 2"}},
			{"sage_test_b_gauge", dto.MetricType_GAUGE, []string{"sda 1", "sdb 3"}},
			{"sage_collector_success", dto.MetricType_GAUGE, []string{"one 1", "two 1"}},
		}
		for _, tt := range tests {
			mf := fams[tt.name]
			if mf.GetType() != tt.typ {
				t.Errorf("%s: type %v, want %v", tt.name, mf.GetType(), tt.typ)
			}
			var series []string
			for _, m := range mf.GetMetric() {
				var parts []string
				for _, lp := range m.GetLabel() {
					parts = append(parts, lp.GetValue())
				}
				v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
				if (m.Gauge != nil) == (m.Counter != nil) {
					t.Errorf("%s: metric %v is not exactly one of gauge and counter", tt.name, m)
				}
				series = append(series, strings.Join(append(parts, strconv.Itoa(int(v))), " "))
			}
			if !slices.Equal(series, tt.series) {
				t.Errorf("scrape %d: %s series %q, want %q", scrape, tt.name, series, tt.series)
			}
		}
	}
}

// TestGatherReusedAsFamiliesChange reuses one Gathered while the families a collector emits come
// and go, as a disk or a meminfo field may: each scrape must still be sorted and complete.
func TestGatherReusedAsFamiliesChange(t *testing.T) {
	descs := map[string]*Desc{}
	for _, n := range []string{"sage_test_m", "sage_test_a", "sage_test_z", "sage_test_c"} {
		descs[n] = newDesc(n, "Help.", nil)
	}
	scrapes := [][]string{
		{"sage_test_m", "sage_test_a"},
		{"sage_test_m", "sage_test_a"},
		{"sage_test_z", "sage_test_m", "sage_test_a"},
		{"sage_test_c", "sage_test_z"},
		{"sage_test_c", "sage_test_z"},
	}
	scrape := 0
	s := newSet(nil)
	s.add("c", fakeCollector{func(_ context.Context, m *Metrics) error {
		for _, n := range scrapes[scrape] {
			m.Gauge(descs[n], 1)
		}
		return nil
	}}, time.Minute)
	var f Gathered
	for ; scrape < len(scrapes); scrape++ {
		if err := s.GatherInto(context.Background(), &f); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, mf := range f.List {
			if strings.HasPrefix(mf.GetName(), "sage_test_") {
				got = append(got, mf.GetName())
			}
		}
		want := slices.Sorted(slices.Values(scrapes[scrape]))
		if !slices.Equal(got, want) {
			t.Errorf("scrape %d: families %v, want %v", scrape, got, want)
		}
	}
}

func TestGatherFailures(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	d := newDesc("sage_test_value", "A test value.", []string{"c"})
	s := newSet(nil)
	for name, update := range map[string]func(context.Context, *Metrics) error{
		"good": func(_ context.Context, m *Metrics) error { m.Gauge(d, 1, "good"); return nil },
		"partial": func(_ context.Context, m *Metrics) error {
			m.Gauge(d, 2, "partial")
			return errors.New("half read")
		},
		"stuck":       func(context.Context, *Metrics) error { <-release; return nil },
		"panicking":   func(context.Context, *Metrics) error { panic("boom") },
		"mislabelled": func(_ context.Context, m *Metrics) error { m.Gauge(d, 1); return nil },
	} {
		s.add(name, fakeCollector{update}, 100*time.Millisecond)
	}
	// Twice: the second scrape finds the stuck collector's worker still busy.
	for scrape := range 2 {
		mfs, err := s.Gather(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		fams := Families{}
		for _, mf := range mfs {
			fams[mf.GetName()] = mf
		}
		for c, want := range map[string]float64{"good": 1, "partial": 0, "stuck": 0, "panicking": 0, "mislabelled": 0} {
			if got, ok := fams.Value("sage_collector_success", "collector", c); !ok || got != want {
				t.Errorf("scrape %d: sage_collector_success{collector=%q} = %v (present %v), want %v", scrape, c, got, ok, want)
			}
		}
		if got, _ := fams.Value("sage_collector_duration_seconds", "collector", "stuck"); got < 0.1 {
			t.Errorf("scrape %d: the stuck collector's duration is %v, want its timeout", scrape, got)
		}
		if n := fams.Count("sage_test_value"); n != 2 {
			t.Errorf("scrape %d: %d sage_test_value series, want good's and partial's", scrape, n)
		}
	}
}

func TestGatherDropsInconsistent(t *testing.T) {
	a := newDesc("sage_test_dup", "Help.", []string{"k"})
	sameName := newDesc("sage_test_dup", "Other help.", []string{"k"})
	tests := []struct {
		name    string
		update  func(m *Metrics)
		wantErr string
		want    int // series of sage_test_dup left
	}{
		{"series twice", func(m *Metrics) { m.Gauge(a, 1, "x"); m.Gauge(a, 2, "x"); m.Gauge(a, 3, "y") }, "series collected twice", 2},
		{"type changes", func(m *Metrics) { m.Gauge(a, 1, "x"); m.Counter(a, 2, "y") }, "counter sample in a gauge family", 1},
		{"help differs", func(m *Metrics) { m.Gauge(a, 1, "x"); m.Gauge(sameName, 2, "y") }, "help or label names differ", 1},
		{"merged", func(m *Metrics) {
			m.Gauge(a, 1, "y")
			m.Gauge(newDesc("sage_test_dup", "Help.", []string{"k"}), 2, "x")
		}, "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSet(nil)
			s.add("c", fakeCollector{func(_ context.Context, m *Metrics) error { tt.update(m); return nil }}, time.Minute)
			mfs, err := s.Gather(context.Background())
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			n := 0
			for _, mf := range mfs {
				if mf.GetName() == "sage_test_dup" {
					n += len(mf.Metric)
					if !slices.IsSortedFunc(mf.Metric, func(x, y *dto.Metric) int { return strings.Compare(x.Label[0].GetValue(), y.Label[0].GetValue()) }) {
						t.Errorf("series not sorted: %v", mf.Metric)
					}
				}
			}
			if n != tt.want {
				t.Errorf("%d series of sage_test_dup, want %d", n, tt.want)
			}
		})
	}
}

// TestGatherConcurrentScrapes runs two scrapes at once, repeatedly, over the real collectors that
// share label pairs between scrapes, and checks (with -race) that nothing is written while read
// and that the shared label pairs are not changed by a scrape.
func TestGatherConcurrentScrapes(t *testing.T) {
	s, err := NewSet(hostConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first, err := s.Gather(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	snapshot := labelsOf(first)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			var f Gathered
			for range 20 {
				if err := s.GatherInto(context.Background(), &f); err != nil {
					t.Error(err)
					return
				}
				encodeFamilies(t, f.List, expfmt.NewFormat(expfmt.TypeOpenMetrics))
			}
		})
	}
	wg.Wait()
	if after := labelsOf(first); !slices.Equal(after, snapshot) {
		t.Errorf("the first scrape's label pairs changed under later scrapes")
	}
}

// hostConfig is the real machine's configuration with the host collectors alone.
func hostConfig(t testing.TB) *Config {
	cfg := realConfig(t)
	for _, n := range Names() {
		if !slices.Contains(hostCollectors, n) {
			cfg.Disable = append(cfg.Disable, n)
		}
	}
	return cfg
}

func labelsOf(mfs []*dto.MetricFamily) []string {
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				out = append(out, mf.GetName()+" "+lp.GetName()+"="+lp.GetValue())
			}
		}
	}
	return out
}

func TestNewDescRefusesBadNames(t *testing.T) {
	tests := []struct {
		name   string
		labels []string
	}{
		{"node.cpu", nil},
		{"", nil},
		{"sage_x", []string{"a-b"}},
		{"sage_x", []string{"__reserved"}},
		{"sage_x", []string{"a", "a"}},
	}
	for _, tt := range tests {
		d := newDesc(tt.name, "Help.", tt.labels)
		var m Metrics
		m.Gauge(d, 1, make([]string, len(tt.labels))...)
		if d.err == nil || m.err == nil || m.Len() != 0 {
			t.Errorf("newDesc(%q, %q): err %v, sample refused with %v: want both", tt.name, tt.labels, d.err, m.err)
		}
	}
	if d := newDesc("sage_ok_total", "Help.", []string{"b", "a"}); d.err != nil {
		t.Errorf("a valid descriptor refused: %v", d.err)
	}
}

func BenchmarkGather(b *testing.B) {
	s, err := NewSet(hostConfig(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var f Gathered
	b.ReportAllocs()
	for b.Loop() {
		if err := s.GatherInto(b.Context(), &f); err != nil {
			b.Fatal(err)
		}
	}
}
