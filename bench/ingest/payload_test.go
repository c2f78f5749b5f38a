package main

import (
	"errors"
	"io"
	"math"
	"os"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

const omFixture = `# HELP up_total A counter.
# TYPE up_total counter
up_total{path="/a b}",q="x\"}y"} 12
up_total{path="/c"} 3.5
up_created{path="/c"} 1.7e9
# TYPE mem_bytes gauge
mem_bytes 8.123e+09
# TYPE lat_seconds histogram
lat_seconds_bucket{le="0.1"} 4
lat_seconds_bucket{le="+Inf"} 9
lat_seconds_sum 1.25
lat_seconds_count 9
# TYPE req summary
req{quantile="0.5"} 0.02
req_sum 7
req_count 100
# TYPE temp gauge
temp 21.5
# EOF
`

const textFixture = `# TYPE a_total counter
a_total{x="1"} 5 1700000000000
# TYPE b gauge
b 0
`

// parse reads an exposition the way the scrape loop does and returns each series' value by its
// labels' string form.
func parse(t *testing.T, b []byte, contentType string) map[string]float64 {
	t.Helper()
	p, err := textparse.New(b, contentType, labels.NewSymbolTable(), textparse.ParserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%v in:\n%s", err, b)
		}
		if e != textparse.EntrySeries {
			continue
		}
		_, _, v := p.Series()
		var ls labels.Labels
		p.Labels(&ls)
		out[ls.String()] = v
	}
}

func TestTemplate(t *testing.T) {
	for _, tt := range []struct {
		name, payload, contentType string
		samples                    int
		advancing, wiggling, fixed []string // series by labels' string form
	}{
		{
			name: "openmetrics", payload: omFixture, contentType: omType, samples: 12,
			advancing: []string{`{__name__="up_total", path="/a b}", q="x\"}y"}`, `{__name__="up_total", path="/c"}`,
				`{__name__="lat_seconds_bucket", le="0.1"}`, `{__name__="lat_seconds_sum"}`, `{__name__="req_count"}`},
			wiggling: []string{`{__name__="mem_bytes"}`, `{__name__="req", quantile="0.5"}`, `{__name__="temp"}`},
		},
		{
			name: "text with timestamp", payload: textFixture, contentType: textType, samples: 2,
			advancing: []string{`{__name__="a_total", x="1"}`},
			wiggling:  []string{`{__name__="b"}`},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tp, err := parseTemplate([]byte(tt.payload))
			if err != nil {
				t.Fatal(err)
			}
			if len(tp.samples) != tt.samples {
				t.Fatalf("template has %d samples, want %d", len(tp.samples), tt.samples)
			}
			// Two targets, three scrapes five seconds apart: every rendering must parse as the
			// scrape loop parses it, with the same series, counters growing and gauges moving.
			for j := range 2 {
				var prev map[string]float64
				for _, at := range []float64{10, 15, 20} {
					cur := parse(t, tp.render(nil, j, at), tt.contentType)
					if len(cur) != tt.samples {
						t.Fatalf("target %d at %vs: %d series, want %d", j, at, len(cur), tt.samples)
					}
					if prev != nil {
						for _, s := range tt.advancing {
							if !(cur[s] > prev[s]) {
								t.Errorf("target %d at %vs: counter %s went from %v to %v", j, at, s, prev[s], cur[s])
							}
						}
						for _, s := range tt.wiggling {
							if cur[s] == prev[s] {
								t.Errorf("target %d at %vs: gauge %s stayed at %v", j, at, s, cur[s])
							}
						}
					}
					prev = cur
				}
			}
		})
	}
}

func TestTemplateKeepsCreatedAndBucketOrder(t *testing.T) {
	tp, err := parseTemplate([]byte(omFixture))
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []float64{0, 3, 600} {
		got := parse(t, tp.render(nil, 1, at), omType)
		if v := got[`{__name__="up_total", path="/c"}`]; v < 3.5 {
			t.Errorf("at %vs: counter below its captured value: %v", at, v)
		}
		lo, hi := got[`{__name__="lat_seconds_bucket", le="0.1"}`], got[`{__name__="lat_seconds_bucket", le="+Inf"}`]
		if lo > hi {
			t.Errorf("at %vs: bucket le=0.1 (%v) above le=+Inf (%v)", at, lo, hi)
		}
	}
	// OpenMetrics turns _created into the counter's created timestamp rather than a series, so
	// check the template directly.
	for _, s := range tp.samples {
		if string(s.series) == `up_created{path="/c"} ` && (s.kind != fixed || s.value(0, 0, 100) != 1.7e9) {
			t.Errorf("_created moves: kind %v, value %v", s.kind, s.value(0, 0, 100))
		}
	}
}

func TestParseTemplateErrors(t *testing.T) {
	for _, payload := range []string{
		"",
		"# TYPE a counter\n",
		"a{x=\"1\" 3\n",
		"a nope\n",
		"{} 1\n",
	} {
		if _, err := parseTemplate([]byte(payload)); err == nil {
			t.Errorf("parseTemplate(%q): no error", payload)
		}
	}
}

// TestRealPayload renders a payload captured from a sage agent, when the script left one (it
// passes INGEST_PAYLOAD); skipped otherwise.
func TestRealPayload(t *testing.T) {
	path := os.Getenv("INGEST_PAYLOAD")
	if path == "" {
		t.Skip("INGEST_PAYLOAD not set")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := parseTemplate(b)
	if err != nil {
		t.Fatal(err)
	}
	a, c := parse(t, tp.render(nil, 0, 10), omType), parse(t, tp.render(nil, 0, 15), omType)
	if len(a) != len(tp.samples) {
		t.Errorf("%d series of %d samples", len(a), len(tp.samples))
	}
	// A whole-number gauge rounds to the same value near the top or bottom of its wave now and
	// then, as real gauges do; more than one in a hundred would mean the template is not moving.
	same := 0
	for k, v := range a {
		if c[k] == v {
			same++
			t.Logf("%s unchanged after 5s: %v", k, v)
		}
	}
	if same*100 > len(a) {
		t.Errorf("%d of %d series unchanged after 5s", same, len(a))
	}
}

// A host up 1,000 s: its counters advance at value / 1,000 a second, scaled 0.8-1.2 by target.
const plausibleFixture = `# TYPE node_boot_time_seconds gauge
node_boot_time_seconds 1.7e9
# TYPE node_time_seconds gauge
node_time_seconds 1.700001e9
# TYPE node_network_receive_errs_total counter
node_network_receive_errs_total{device="eth0"} 0
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{device="eth0"} 1e6
# TYPE sage_listener_up gauge
sage_listener_up{port="22"} 1
# TYPE node_filesystem_readonly gauge
node_filesystem_readonly{mountpoint="/"} 0
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 4e9
# TYPE node_load1 gauge
node_load1 0.25
# TYPE sage_process_group_oldest_start_time_seconds gauge
sage_process_group_oldest_start_time_seconds{group="sshd"} 1.6999e9
`

func TestPlausible(t *testing.T) {
	tp, err := parseTemplate([]byte(plausibleFixture))
	if err != nil {
		t.Fatal(err)
	}
	tp.plausible()
	for _, tt := range []struct {
		series       string
		minPerSecond float64 // change per second between two scrapes, bounds included
		maxPerSecond float64
		within       float64 // |value - captured| <= within * |captured| at every scrape
	}{
		{series: `{__name__="node_network_receive_errs_total", device="eth0"}`},
		{series: `{__name__="node_network_receive_bytes_total", device="eth0"}`, minPerSecond: 800, maxPerSecond: 1200, within: 1},
		{series: `{__name__="sage_listener_up", port="22"}`},
		{series: `{__name__="node_filesystem_readonly", mountpoint="/"}`},
		{series: `{__name__="node_memory_MemAvailable_bytes"}`, minPerSecond: -1e9, maxPerSecond: 1e9, within: 0.05},
		{series: `{__name__="node_load1"}`, minPerSecond: -1, maxPerSecond: 1, within: 0.05},
		{series: `{__name__="sage_process_group_oldest_start_time_seconds", group="sshd"}`},
		{series: `{__name__="node_boot_time_seconds"}`},
	} {
		t.Run(tt.series, func(t *testing.T) {
			base := parse(t, []byte(plausibleFixture), textType)[tt.series]
			for j := range 11 {
				a := parse(t, tp.render(nil, j, 100), textType)[tt.series]
				b := parse(t, tp.render(nil, j, 110), textType)[tt.series]
				if d := (b - a) / 10; d < tt.minPerSecond || d > tt.maxPerSecond {
					t.Errorf("target %d: %v a second (from %v to %v), want %v to %v", j, d, a, b, tt.minPerSecond, tt.maxPerSecond)
				}
				for _, v := range []float64{a, b} {
					if math.Abs(v-base) > tt.within*math.Abs(base)+1e-9 {
						t.Errorf("target %d: %v, more than %v of the captured %v", j, v, tt.within, base)
					}
				}
			}
		})
	}
}
