package agent

import (
	"bufio"
	"bytes"
	"context"
	"math"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/serversage/sage/internal/collector"
)

var testFormats = []struct {
	name   string
	format expfmt.Format
	exp    exposition
}{
	{"text", expfmt.NewFormat(expfmt.TypeTextPlain), text},
	{"openmetrics 1.0.0", expfmt.FmtOpenMetrics_1_0_0, openMetrics},
	{"openmetrics 0.0.1", expfmt.FmtOpenMetrics_0_0_1, openMetrics},
}

// viaWriteFamily writes the families as the handler does: writeFamily where it can, expfmt
// otherwise. It also says how many families writeFamily wrote.
func viaWriteFamily(t testing.TB, mfs []*dto.MetricFamily, format expfmt.Format, exp exposition) (string, int) {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	enc := expfmt.NewEncoder(w, format.WithEscapingScheme(model.NoEscaping))
	var num []byte
	n := 0
	for _, mf := range mfs {
		var ok bool
		if num, ok = writeFamily(w, mf, exp, num); ok {
			n++
			continue
		}
		if err := enc.Encode(mf); err != nil {
			t.Fatalf("expfmt: %v", err)
		}
	}
	w.Flush()
	return b.String(), n
}

func expfmtOutput(t testing.TB, mfs []*dto.MetricFamily, format expfmt.Format) string {
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, format.WithEscapingScheme(model.NoEscaping))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatalf("expfmt: %v", err)
		}
	}
	return b.String()
}

func gauge(v float64) *dto.Metric   { return &dto.Metric{Gauge: &dto.Gauge{Value: &v}} }
func counter(v float64) *dto.Metric { return &dto.Metric{Counter: &dto.Counter{Value: &v}} }
func untyped(v float64) *dto.Metric { return &dto.Metric{Untyped: &dto.Untyped{Value: &v}} }
func family(name, help string, typ dto.MetricType, ms ...*dto.Metric) *dto.MetricFamily {
	mf := &dto.MetricFamily{Name: &name, Type: &typ, Metric: ms}
	if help != "" {
		mf.Help = &help
	}
	return mf
}
func labelled(m *dto.Metric, pairs ...string) *dto.Metric {
	for i := 0; i+1 < len(pairs); i += 2 {
		m.Label = append(m.Label, &dto.LabelPair{Name: &pairs[i], Value: &pairs[i+1]})
	}
	return m
}

// oddFamilies are what the formats spell specially, and what writeFamily must leave to expfmt.
func oddFamilies() (written, left []*dto.MetricFamily) {
	ts := int64(1700000000000)
	withTS := gauge(1)
	withTS.TimestampMs = &ts
	unit := "seconds"
	withUnit := family("sage_odd_seconds", "Unit.", dto.MetricType_GAUGE, gauge(1))
	withUnit.Unit = &unit
	written = []*dto.MetricFamily{
		family("sage_odd_values", `Help: backslash \ newline
 quote " end.`, dto.MetricType_GAUGE,
			gauge(0), gauge(math.Copysign(0, -1)), gauge(1), gauge(-1), gauge(math.NaN()), gauge(math.Inf(1)),
			gauge(math.Inf(-1)), gauge(0.1), gauge(1e21), gauge(1e-7), gauge(123456789012345678), gauge(-2.5e-300)),
		family("sage_odd_labels", "Labels.", dto.MetricType_GAUGE,
			labelled(gauge(1), "a", `back\slash`, "b", "new\nline", "c", `"quoted"`),
			labelled(gauge(2), "a", "", "b", "ünïcödé", "c", "plain")),
		family("sage_odd_total", "A counter.", dto.MetricType_COUNTER, counter(3), labelled(counter(0), "x", "y")),
		family("sage_odd_count", "A counter without _total.", dto.MetricType_COUNTER, counter(4.5)),
		family("sage_odd_untyped", "", dto.MetricType_UNTYPED, untyped(7)),
		family("sage:odd:colons", "Colons are legacy.", dto.MetricType_GAUGE, gauge(1)),
	}
	left = []*dto.MetricFamily{
		family("sage_odd_summary", "A summary.", dto.MetricType_SUMMARY, &dto.Metric{Summary: &dto.Summary{}}),
		family("sage_odd_timestamped", "With a timestamp.", dto.MetricType_GAUGE, withTS),
		withUnit,
		family("sage.odd.utf8", "Needs quoting.", dto.MetricType_GAUGE, gauge(1)),
		family("sage_odd_label_utf8", "Label needs quoting.", dto.MetricType_GAUGE, labelled(gauge(1), "a.b", "c")),
	}
	return written, left
}

// TestWriteFamily checks that writeFamily writes what expfmt writes, byte for byte, for every
// family of a real scrape of every collector and the agent's own metrics, and for odd families;
// and that it leaves to expfmt what it does not handle.
func TestWriteFamily(t *testing.T) {
	set, err := collector.NewSet(&collector.Config{Enable: collector.Names(), StateDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	var g collector.Gathered
	if err := set.GatherInto(context.Background(), &g, newOwnMetrics()); err != nil {
		t.Fatal(err)
	}
	written, left := oddFamilies()
	for _, f := range testFormats {
		t.Run(f.name, func(t *testing.T) {
			for _, tc := range []struct {
				name       string
				mfs        []*dto.MetricFamily
				wantByUs   int
				wantSample string
			}{
				{"scrape", g.List, len(g.List), "\nnode_load1 "},
				{"odd", written, len(written), `sage_odd_labels{a="back\\slash",b="new\nline",c="\"quoted\""} `},
				{"left to expfmt", left, 0, "sage_odd_timestamped 1"},
			} {
				got, n := viaWriteFamily(t, tc.mfs, f.format, f.exp)
				want := expfmtOutput(t, tc.mfs, f.format)
				if got != want {
					t.Errorf("%s: writeFamily's output differs from expfmt's:\n%s", tc.name, firstDiff(want, got))
				}
				if n != tc.wantByUs {
					t.Errorf("%s: writeFamily wrote %d of %d families, want %d", tc.name, n, len(tc.mfs), tc.wantByUs)
				}
				if !strings.Contains(got, tc.wantSample) {
					t.Errorf("%s: output lacks %q:\n%s", tc.name, tc.wantSample, got)
				}
			}
		})
	}
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return "want: " + a + "\ngot:  " + b
		}
	}
	return ""
}

func FuzzWriteFamily(f *testing.F) {
	f.Add("sage_x_total", "Help \\ \n \".", uint8(0), "dev", "sda\n\"\\", math.Float64bits(0.5))
	f.Add("sage_x", "", uint8(1), "", "", math.Float64bits(math.Inf(-1)))
	f.Add("sage.x", "h", uint8(2), "a.b", "v", math.Float64bits(1e100))
	f.Add("x", "h", uint8(0), "__name__", "v", uint64(1)) // a denormal
	f.Fuzz(func(t *testing.T, name, help string, typ uint8, label, value string, bits uint64) {
		v := math.Float64frombits(bits)
		var m *dto.Metric
		mt := []dto.MetricType{dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_UNTYPED}[typ%3]
		switch mt {
		case dto.MetricType_COUNTER:
			m = counter(v)
		case dto.MetricType_GAUGE:
			m = gauge(v)
		default:
			m = untyped(v)
		}
		if label != "" {
			labelled(m, label, value)
		}
		mfs := []*dto.MetricFamily{family(name, help, mt, m, m)}
		if name == "" || !model.UTF8Validation.IsValidMetricName(name) || label != "" && !model.UTF8Validation.IsValidLabelName(label) {
			return // expfmt's own behaviour on names no collector.Desc allows is not the point
		}
		for _, f := range testFormats {
			got, _ := viaWriteFamily(t, mfs, f.format, f.exp)
			if want := expfmtOutput(t, mfs, f.format); got != want {
				t.Fatalf("%s: writeFamily differs from expfmt:\n%s", f.name, firstDiff(want, got))
			}
		}
	})
}

func BenchmarkWriteFamily(b *testing.B) {
	set, err := collector.NewSet(&collector.Config{StateDir: b.TempDir()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer set.Close()
	var g collector.Gathered
	if err := set.GatherInto(context.Background(), &g, newOwnMetrics()); err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(&bytes.Buffer{}, 16<<10)
	for _, f := range testFormats[:2] {
		b.Run("writeFamily/"+f.name, func(b *testing.B) {
			var num []byte
			b.ReportAllocs()
			for b.Loop() {
				w.Reset(discard{})
				for _, mf := range g.List {
					num, _ = writeFamily(w, mf, f.exp, num)
				}
				w.Flush()
			}
		})
		b.Run("expfmt/"+f.name, func(b *testing.B) {
			enc := expfmt.NewEncoder(w, f.format.WithEscapingScheme(model.NoEscaping))
			b.ReportAllocs()
			for b.Loop() {
				w.Reset(discard{})
				for _, mf := range g.List {
					_ = enc.Encode(mf)
				}
				w.Flush()
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
