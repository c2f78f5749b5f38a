package web

import (
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

// wellFormed fails unless s parses as XML (an SVG embedded in HTML must also be valid SVG).
func wellFormed(t testing.TB, s string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, s)
		}
	}
}

func TestSeriesPath(t *testing.T) {
	x := func(t int64) float64 { return float64(t) }
	y := func(v float64) float64 { return v }
	nan := math.NaN()
	pts := func(tv ...float64) []point {
		var out []point
		for i := 0; i < len(tv); i += 2 {
			out = append(out, point{T: int64(tv[i]), V: tv[i+1]})
		}
		return out
	}
	tests := []struct {
		name string
		pts  []point
		want string
	}{
		{"empty", nil, ""},
		{"a line", pts(0, 1, 10, 2, 20, 3), "M0.0 1.0L10.0 2.0L20.0 3.0"},
		{"a missing step breaks the line", pts(0, 1, 10, 2, 40, 3, 50, 4), "M0.0 1.0L10.0 2.0M40.0 3.0L50.0 4.0"},
		{"a point alone is a dot", pts(0, 1, 40, 2), "M0.0 1.0h0M40.0 2.0h0"},
		{"NaN breaks the line", pts(0, 1, 10, nan, 20, 3, 30, 4), "M0.0 1.0h0M20.0 3.0L30.0 4.0"},
		{"infinities are gaps", pts(0, math.Inf(1), 10, 2, 20, 3), "M10.0 2.0L20.0 3.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := seriesPath(tc.pts, 15, x, y); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBounds(t *testing.T) {
	tests := []struct {
		name       string
		max        float64
		values     []float64
		lo, hi     float64
		ticksAtEnd bool
	}{
		{"percent stays 0-100", 100, []float64{3, 42}, 0, 100, true},
		{"percent above 100 extends", 100, []float64{3, 130}, 0, 150, true},
		{"no data", 0, nil, 0, 1, true},
		{"all zero", 0, []float64{0, 0}, 0, 1, true},
		{"rates round up", 0, []float64{12345, 870000}, 0, 1e6, true},
		{"load", 0, []float64{0.2, 3.7}, 0, 4, true},
		{"negative", 0, []float64{-3, 7}, -4, 8, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := series{Name: "s"}
			for i, v := range tc.values {
				s.Points = append(s.Points, point{T: int64(i), V: v})
			}
			c := chart{Max: tc.max, Series: []series{s}}
			lo, hi, ticks := c.bounds()
			if lo != tc.lo || hi != tc.hi {
				t.Errorf("bounds %v..%v, want %v..%v", lo, hi, tc.lo, tc.hi)
			}
			if len(ticks) < 2 || len(ticks) > 11 || ticks[0] != lo || math.Abs(ticks[len(ticks)-1]-hi) > 1e-9 {
				t.Errorf("ticks %v for %v..%v", ticks, lo, hi)
			}
		})
	}
}

func TestTimeTicks(t *testing.T) {
	kolkata, err := time.LoadLocation("Asia/Kolkata") // +05:30: whole hours are not whole UTC hours
	if err != nil {
		t.Skip("no time zone data:", err)
	}
	end := time.Date(2025, 3, 10, 14, 7, 0, 0, kolkata)
	tests := []struct {
		span  time.Duration
		first string
		every time.Duration
	}{
		{time.Hour, "13:10", 10 * time.Minute},
		{24 * time.Hour, "18:00", 6 * time.Hour},
		{7 * 24 * time.Hour, "Tue 4", 24 * time.Hour},
	}
	for _, tc := range tests {
		ticks := timeTicks(end.Add(-tc.span), end, kolkata)
		if len(ticks) < 3 || len(ticks) > 8 {
			t.Errorf("%s: %d ticks", tc.span, len(ticks))
			continue
		}
		if ticks[0].Label != tc.first {
			t.Errorf("%s: first tick %q, want %q", tc.span, ticks[0].Label, tc.first)
		}
		for i := 1; i < len(ticks); i++ {
			if d := ticks[i].T.Sub(ticks[i-1].T); d != tc.every {
				t.Errorf("%s: ticks %s apart, want %s", tc.span, d, tc.every)
			}
		}
		for _, tk := range ticks {
			if tk.T.Before(end.Add(-tc.span)) || tk.T.After(end) {
				t.Errorf("%s: tick %s outside the range", tc.span, tk.T)
			}
		}
	}
	// A day's ticks name the day at midnight.
	ticks := timeTicks(end.Add(-24*time.Hour), end, kolkata)
	var labels []string
	for _, tk := range ticks {
		labels = append(labels, tk.Label)
	}
	if !strings.Contains(strings.Join(labels, " "), "Mon 10") {
		t.Errorf("24h ticks %v do not name the day at midnight", labels)
	}
}

func TestUnitFormats(t *testing.T) {
	for _, tc := range []struct {
		u    unit
		v    float64
		axis string
		val  string
	}{
		{unitPercent, 42.34, "42.34", "42 %"},
		{unitPercent, 3.14159, "3.14", "3.1 %"},
		{unitBytesRate, 0, "0", "0 B/s"},
		{unitBytesRate, 999, "999", "999 B/s"},
		{unitBytesRate, 125000, "125k", "125 kB/s"},
		{unitBytesRate, 2.5e6, "2.5M", "2.5 MB/s"},
		{unitBytesRate, 12.34e9, "12.3G", "12.3 GB/s"},
		{unitPlain, 0.5, "0.5", "0.50"},
		{unitPlain, 17.25, "17.25", "17.2"},
		{unitPlain, math.NaN(), "NaN", "–"},
	} {
		if got := tc.u.axisLabel(tc.v); got != tc.axis && !math.IsNaN(tc.v) {
			t.Errorf("axisLabel(%v) = %q, want %q", tc.v, got, tc.axis)
		}
		if got := tc.u.value(tc.v); got != tc.val {
			t.Errorf("value(%v) = %q, want %q", tc.v, got, tc.val)
		}
	}
}

func TestChartSVG(t *testing.T) {
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-time.Hour)
	var pts []point
	for ts := start; !ts.After(end); ts = ts.Add(15 * time.Second) {
		pts = append(pts, point{T: ts.UnixMilli(), V: 50 + 10*math.Sin(float64(ts.Unix())/300)})
	}
	c := chart{Title: `CPU <busy> & "idle"`, Unit: unitPercent, Max: 100, Start: start, End: end, Step: 15 * time.Second,
		Series: []series{{Name: `</title><script>alert(1)</script>`, Points: pts}, {Name: "empty"}}}
	svg := string(c.SVG())
	wellFormed(t, svg)
	if strings.Contains(svg, "<script>") {
		t.Fatal("a series name is not escaped")
	}
	if n := strings.Count(svg, "L"); n < 200 {
		t.Errorf("%d segments for 241 points", n)
	}
	if !strings.Contains(svg, ">100<") || !strings.Contains(svg, ">0<") {
		t.Error("no y labels")
	}
	leg := c.Legend()
	if len(leg) != 2 || leg[1].Last != "–" || leg[0].Hi == "–" {
		t.Errorf("legend %+v", leg)
	}
	empty := chart{Title: "Nothing", Start: start, End: end, Step: time.Minute}
	s := string(empty.SVG())
	wellFormed(t, s)
	if !strings.Contains(s, "No data in this range") || strings.Contains(s, `class="line"`) {
		t.Errorf("empty chart: %s", s)
	}
}

// FuzzChartSVG: any values and names give well-formed SVG with every name escaped.
func FuzzChartSVG(f *testing.F) {
	f.Add("cpu", 1.0, -3.0, 1e300, int64(15), uint8(4))
	f.Add("<&>\"'", math.NaN(), math.Inf(1), 0.0, int64(0), uint8(0))
	f.Add("\x00\xff", -1e-300, 5.0, 5.0, int64(-5), uint8(200))
	f.Fuzz(func(t *testing.T, name string, a, b, c float64, stepSec int64, n uint8) {
		start := time.Unix(1700000000, 0)
		end := start.Add(time.Hour)
		var pts []point
		for i := range int(n) {
			v := []float64{a, b, c}[i%3]
			pts = append(pts, point{T: start.Add(time.Duration(i) * time.Minute).UnixMilli(), V: v * float64(i%7)})
		}
		ch := chart{Title: name, Unit: unit(int(n) % 3), Start: start, End: end, Step: time.Duration(stepSec) * time.Second,
			Series: []series{{Name: name, Points: pts}}}
		svg := string(ch.SVG())
		if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") && !strings.Contains(name, "Inf") {
			t.Fatalf("a non-finite number reached the SVG: %s", svg)
		}
		if !strings.Contains(name, "<") && strings.Count(svg, "<script") > 0 {
			t.Fatal("script in SVG")
		}
		// The XML decoder refuses some characters that are valid HTML text; check escaping
		// by the structure instead when the name has them.
		if strings.ToValidUTF8(name, "") == name && !strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0xfffe || r == 0xffff }) {
			wellFormed(t, svg)
		}
		_ = ch.Legend()
	})
}
