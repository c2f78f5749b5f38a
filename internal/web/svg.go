package web

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
)

// unit says how a chart's values read.
type unit int

const (
	unitPlain     unit = iota
	unitPercent        // 0..100
	unitBytesRate      // bytes per second
)

// point is one sample: milliseconds since the epoch, and the value.
type point struct {
	T int64
	V float64
}

type series struct {
	Name   string
	Points []point
	Dashed bool
}

// chart is a line chart over [Start, End] with points every Step.
type chart struct {
	Title      string
	Unit       unit
	Max        float64 // fixed top of the y axis unless the data exceed it; 0: from the data
	Start, End time.Time
	Step       time.Duration
	Series     []series
}

// The chart's geometry, in the SVG's own units; the SVG scales to its container's width.
const (
	chartW      = 600
	chartH      = 220
	marginLeft  = 56
	marginRight = 12
	marginTop   = 12
	marginBot   = 26
	plotW       = chartW - marginLeft - marginRight
	plotH       = chartH - marginTop - marginBot
)

// palette are the series' colours, distinguishable from each other (also by most colour-blind
// people, for the first few) and on white.
var palette = []string{"#2563eb", "#ea580c", "#16a34a", "#9333ea", "#0891b2", "#ca8a04", "#db2777", "#475569", "#65a30d", "#7c3aed"}

func colour(i int) string { return palette[i%len(palette)] }

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func (c chart) hasData() bool {
	for _, s := range c.Series {
		for _, p := range s.Points {
			if finite(p.V) {
				return true
			}
		}
	}
	return false
}

// bounds is the y axis's range and ticks.
func (c chart) bounds() (lo, hi float64, ticks []float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for _, p := range s.Points {
			if finite(p.V) {
				lo, hi = min(lo, p.V), max(hi, p.V)
			}
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0, 1
	}
	lo = min(lo, 0) // every chart here is of quantities that start at zero
	if c.Max > 0 && hi <= c.Max {
		hi = c.Max
	}
	if hi <= lo {
		hi = lo + 1
	}
	step := niceNum((hi-lo)/4, true)
	lo = math.Floor(lo/step) * step
	hi = math.Ceil(hi/step) * step
	for v := lo; v <= hi+step/2; v += step {
		ticks = append(ticks, v)
	}
	return lo, hi, ticks
}

// niceNum is a "nice" number (1, 2 or 5 times a power of ten) near x: Heckbert's algorithm from
// Graphics Gems, as chart libraries use for axis ticks.
func niceNum(x float64, round bool) float64 {
	if x <= 0 || !finite(x) {
		return 1
	}
	exp := math.Floor(math.Log10(x))
	f := x / math.Pow(10, exp)
	var nf float64
	switch {
	case round && f < 1.5:
		nf = 1
	case round && f < 3:
		nf = 2
	case round && f < 7:
		nf = 5
	case round:
		nf = 10
	case f <= 1:
		nf = 1
	case f <= 2:
		nf = 2
	case f <= 5:
		nf = 5
	default:
		nf = 10
	}
	return nf * math.Pow(10, exp)
}

// timeTick is one label of the time axis.
type timeTick struct {
	T     time.Time
	Label string
}

var tickIntervals = []time.Duration{
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 48 * time.Hour, 7 * 24 * time.Hour,
}

// timeTicks places at most about seven labels on round local times (whole hours, midnights) in
// [start, end].
func timeTicks(start, end time.Time, loc *time.Location) []timeTick {
	span := end.Sub(start)
	if span <= 0 {
		return nil
	}
	iv := tickIntervals[len(tickIntervals)-1]
	for _, d := range tickIntervals {
		if span/d <= 7 {
			iv = d
			break
		}
	}
	s := start.In(loc)
	midnight := time.Date(s.Year(), s.Month(), s.Day(), 0, 0, 0, 0, loc)
	var t time.Time
	if iv < 24*time.Hour {
		n := (s.Sub(midnight) + iv - 1) / iv
		t = midnight.Add(n * iv)
	} else {
		t = midnight
		if t.Before(s) {
			t = t.AddDate(0, 0, 1)
		}
	}
	var out []timeTick
	for !t.After(end) && len(out) < 20 {
		l := t.In(loc)
		label := l.Format("15:04")
		if iv >= 24*time.Hour || (l.Hour() == 0 && l.Minute() == 0) {
			label = l.Format("Mon 2")
		}
		out = append(out, timeTick{T: t, Label: label})
		if iv < 24*time.Hour {
			t = t.Add(iv)
		} else {
			t = t.AddDate(0, 0, int(iv/(24*time.Hour)))
		}
	}
	return out
}

// axisLabel writes a y-axis value briefly: the unit is in the chart's title, so that the labels
// stay short enough to read when the chart is scaled down to a phone's width.
func (u unit) axisLabel(v float64) string {
	if u == unitBytesRate {
		return siShort(v)
	}
	return trimFloat(v, 2)
}

// siShort writes a number with a decimal prefix letter: 1.5k, 200M.
func siShort(v float64) string {
	prefixes := []string{"", "k", "M", "G", "T", "P"}
	i := 0
	for math.Abs(v) >= 1000 && i < len(prefixes)-1 {
		v /= 1000
		i++
	}
	return trimFloat(v, 1) + prefixes[i]
}

// value writes a value for the legend and the tooltips.
func (u unit) value(v float64) string {
	if !finite(v) {
		return "–"
	}
	switch u {
	case unitPercent:
		if math.Abs(v) < 10 {
			return strconv.FormatFloat(v, 'f', 1, 64) + " %"
		}
		return strconv.FormatFloat(v, 'f', 0, 64) + " %"
	case unitBytesRate:
		return siBytes(v) + "/s"
	}
	switch a := math.Abs(v); {
	case a < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// siBytes writes a byte count in decimal units (kB = 1000 B), as network and disk rates are given.
func siBytes(v float64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	i := 0
	for math.Abs(v) >= 1000 && i < len(units)-1 {
		v /= 1000
		i++
	}
	switch a := math.Abs(v); {
	case a == 0:
		return "0 B"
	case a < 10 && i > 0:
		return trimFloat(v, 2) + " " + units[i]
	case a < 100 && i > 0:
		return trimFloat(v, 1) + " " + units[i]
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " " + units[i]
}

// trimFloat writes v with at most prec decimals and no trailing zeros.
func trimFloat(v float64, prec int) string {
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

// legendItem is one series in the legend under a chart.
type legendItem struct {
	Name, Colour string
	Last, Lo, Hi string
	Dashed       bool
}

// stats returns the last, smallest and largest finite values of s.
func stats(s series) (last, lo, hi float64, ok bool) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, p := range s.Points {
		if finite(p.V) {
			last, lo, hi, ok = p.V, min(lo, p.V), max(hi, p.V), true
		}
	}
	return last, lo, hi, ok
}

// Legend lists the series with their latest, lowest and highest values.
func (c chart) Legend() []legendItem {
	out := make([]legendItem, 0, len(c.Series))
	for i, s := range c.Series {
		last, lo, hi, ok := stats(s)
		it := legendItem{Name: s.Name, Colour: colour(i), Dashed: s.Dashed, Last: "–", Lo: "–", Hi: "–"}
		if ok {
			it.Last, it.Lo, it.Hi = c.Unit.value(last), c.Unit.value(lo), c.Unit.value(hi)
		}
		out = append(out, it)
	}
	return out
}

// SVG draws the chart. Every text in it is escaped here, so the result is safe to embed as it is.
// A series is broken where a point is missing (more than a step and a half since the previous
// one) or not a number, so a gap in the data shows as a gap, not as a straight line across it.
func (c chart) SVG() template.HTML {
	var b strings.Builder
	esc := template.HTMLEscapeString
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		chartW, chartH, esc(c.Title))
	b.WriteString(`<title>` + esc(c.Title) + `</title>`)

	lo, hi, ticks := c.bounds()
	t0, t1 := c.Start.UnixMilli(), c.End.UnixMilli()
	if t1 <= t0 {
		t1 = t0 + 1
	}
	x := func(t int64) float64 { return marginLeft + float64(t-t0)/float64(t1-t0)*plotW }
	y := func(v float64) float64 { return marginTop + plotH - (v-lo)/(hi-lo)*plotH }

	// Horizontal grid lines with the y labels.
	b.WriteString(`<g class="grid">`)
	for _, v := range ticks {
		yy := y(v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, marginLeft, chartW-marginRight, yy, yy)
	}
	b.WriteString(`</g><g class="ylabels">`)
	for _, v := range ticks {
		fmt.Fprintf(&b, `<text x="%d" y="%.1f">%s</text>`, marginLeft-6, y(v)+4, esc(c.Unit.axisLabel(v)))
	}
	b.WriteString(`</g><g class="xlabels">`)
	for _, tk := range timeTicks(c.Start, c.End, time.Local) {
		xx := x(tk.T.UnixMilli())
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d"/>`, xx, xx, marginTop, marginTop+plotH+4)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`, xx, chartH-8, esc(tk.Label))
	}
	b.WriteString(`</g>`)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>`, marginLeft, chartW-marginRight, marginTop+plotH, marginTop+plotH)

	if !c.hasData() {
		fmt.Fprintf(&b, `<text class="nodata" x="%d" y="%d">No data in this range</text>`, marginLeft+plotW/2, marginTop+plotH/2)
	}
	gap := int64(c.Step/time.Millisecond) * 3 / 2
	if gap <= 0 {
		gap = math.MaxInt64
	}
	for i, s := range c.Series {
		d := seriesPath(s.Points, gap, x, y)
		if d == "" {
			continue
		}
		last, lo, hi, _ := stats(s)
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="5 4"`
		}
		fmt.Fprintf(&b, `<path class="line" d="%s" stroke="%s"%s><title>%s</title></path>`, d, colour(i), dash,
			esc(fmt.Sprintf("%s: now %s, lowest %s, highest %s", s.Name, c.Unit.value(last), c.Unit.value(lo), c.Unit.value(hi))))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// seriesPath is the path data of a series: a new subpath after every gap, and a dot (a zero
// length segment, drawn by the round line cap) for a point alone between gaps.
func seriesPath(pts []point, gap int64, x func(int64) float64, y func(float64) float64) string {
	var b strings.Builder
	open := false
	var prevT int64
	num := func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }
	runLen := 0
	for _, p := range pts {
		if !finite(p.V) {
			if open && runLen == 1 {
				b.WriteString("h0")
			}
			open = false
			continue
		}
		if open && p.T-prevT > gap {
			if runLen == 1 {
				b.WriteString("h0")
			}
			open = false
		}
		if !open {
			b.WriteString("M" + num(x(p.T)) + " " + num(y(p.V)))
			open, runLen = true, 1
		} else {
			b.WriteString("L" + num(x(p.T)) + " " + num(y(p.V)))
			runLen++
		}
		prevT = p.T
	}
	if open && runLen == 1 {
		b.WriteString("h0")
	}
	return b.String()
}
