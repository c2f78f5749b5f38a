package main

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
)

// kind is how a sample's value evolves between scrapes. A real agent's payload has many constant
// samples; here every sample moves so that the TSDB compresses and appends real changes rather
// than repeats, the expensive and honest case for both scrapers.
type kind uint8

const (
	advance kind = iota // counters, histogram buckets, counts and sums: grow with time
	wiggle              // gauges, summary quantiles, untyped: oscillate around the captured value
	fixed               // _created timestamps: a counter's creation time does not move
)

// sample is one line of the template: the series text before the value, the captured value, and
// whatever follows the value (timestamp, exemplar, newline).
type sample struct {
	series  []byte
	base    float64
	integer bool // the captured value is a whole number: keep it one, as byte and packet counts are
	kind    kind
	suffix  []byte
	// plausible: move as a real host's value does (see plausible), with rate the counter's
	// average per second.
	plausible bool
	rate      float64
}

// template is a captured exposition split into literal text and samples, so that each scrape can
// be written with new values without parsing again.
type template struct {
	literals [][]byte // literals[i] precedes samples[i]; the last one follows the last sample
	samples  []sample
}

// parseTemplate reads a Prometheus text or OpenMetrics exposition (as a sage agent writes it).
// A sample's kind comes from the TYPE line of the family it follows.
func parseTemplate(payload []byte) (*template, error) {
	t := &template{}
	var lit []byte
	familyType := ""
	for len(payload) > 0 {
		line := payload
		if i := bytes.IndexByte(payload, '\n'); i >= 0 {
			line, payload = payload[:i+1], payload[i+1:]
		} else {
			payload = nil
		}
		if len(bytes.TrimSpace(line)) == 0 || line[0] == '#' {
			if f := bytes.Fields(line); len(f) >= 4 && string(f[1]) == "TYPE" {
				familyType = string(f[3])
			}
			lit = append(lit, line...)
			continue
		}
		s, err := parseSample(line, familyType)
		if err != nil {
			return nil, err
		}
		t.literals = append(t.literals, lit)
		t.samples = append(t.samples, s)
		lit = nil
	}
	if len(t.samples) == 0 {
		return nil, errors.New("no samples in payload")
	}
	t.literals = append(t.literals, lit)
	return t, nil
}

func parseSample(line []byte, familyType string) (sample, error) {
	end := seriesEnd(line)
	if end < 0 {
		return sample{}, errors.New("malformed sample line: " + strings.TrimSpace(string(line)))
	}
	rest := line[end:]
	// rest is " value[ timestamp][ # exemplar]\n"
	i := 0
	for i < len(rest) && rest[i] == ' ' {
		i++
	}
	j := i
	for j < len(rest) && rest[j] != ' ' && rest[j] != '\n' {
		j++
	}
	v, err := strconv.ParseFloat(string(rest[i:j]), 64)
	if err != nil {
		return sample{}, errors.New("malformed value in: " + strings.TrimSpace(string(line)))
	}
	name := string(line[:nameEnd(line)])
	return sample{
		series:  line[:end+i],
		base:    v,
		integer: v == math.Trunc(v) && math.Abs(v) < 1<<53,
		kind:    kindOf(name, familyType),
		suffix:  rest[j:],
	}, nil
}

// seriesEnd is the index just past the series (name and labels), or -1. Label values may hold
// spaces and escaped quotes, so the closing brace is found outside quotes.
func seriesEnd(line []byte) int {
	n := nameEnd(line)
	if n == 0 {
		return -1
	}
	if n < len(line) && line[n] == '{' {
		inQuote := false
		for i := n + 1; i < len(line); i++ {
			switch c := line[i]; {
			case inQuote && c == '\\':
				i++
			case c == '"':
				inQuote = !inQuote
			case !inQuote && c == '}':
				return i + 1
			}
		}
		return -1
	}
	if n < len(line) && line[n] == ' ' {
		return n
	}
	return -1
}

func nameEnd(line []byte) int {
	for i, c := range line {
		if c == '{' || c == ' ' || c == '\n' {
			return i
		}
	}
	return len(line)
}

func kindOf(name, familyType string) kind {
	if strings.HasSuffix(name, "_created") {
		return fixed
	}
	switch familyType {
	case "counter":
		return advance
	case "histogram", "summary":
		if strings.HasSuffix(name, "_bucket") || strings.HasSuffix(name, "_count") || strings.HasSuffix(name, "_sum") {
			return advance
		}
	}
	return wiggle
}

// value is sample k's value for target j at t seconds into the run. Counters advance at a rate
// between 1 and 7 per second; gauges oscillate by 5% of their value (at least 100) with a period
// of 50 to 110 seconds. Target and sample shift the phase so that no two series move in lockstep.
func (s *sample) value(j, k int, t float64) float64 {
	if s.plausible {
		return s.plausibleValue(j, k, t)
	}
	switch s.kind {
	case advance:
		rate := float64(1 + (j+k)%7)
		if s.integer {
			return s.base + math.Floor(rate*t)
		}
		return s.base + rate*t*1.000123
	case wiggle:
		amp := math.Max(100, math.Abs(s.base)*0.05)
		period := float64(50 + (j*31+k*17)%61)
		v := s.base + amp*math.Sin(2*math.Pi*t/period+float64(j)+float64(k)*0.7)
		if s.integer {
			return math.Round(v)
		}
		return v
	}
	return s.base
}

// plausibleValue is sample k's value for target j in a plausible template: counters advance at
// their own rate, scaled by 0.8-1.2 per target (the same for every series of a target, so that a
// histogram's buckets stay ordered); gauges oscillate by 5% of their value.
func (s *sample) plausibleValue(j, k int, t float64) float64 {
	switch s.kind {
	case advance:
		v := s.base + s.rate*t*(0.8+0.4*float64(j%11)/10)
		if s.integer {
			return math.Floor(v)
		}
		return v
	case wiggle:
		period := float64(50 + (j*31+k*17)%61)
		v := s.base + 0.05*s.base*math.Sin(2*math.Pi*t/period+float64(j)+float64(k)*0.7)
		if s.integer {
			return math.Round(v)
		}
		return v
	}
	return s.base
}

// render appends target j's exposition at t seconds into the run to buf.
func (tp *template) render(buf []byte, j int, t float64) []byte {
	for k := range tp.samples {
		s := &tp.samples[k]
		buf = append(buf, tp.literals[k]...)
		buf = append(buf, s.series...)
		buf = strconv.AppendFloat(buf, s.value(j, k, t), 'g', -1, 64)
		buf = append(buf, s.suffix...)
	}
	return append(buf, tp.literals[len(tp.samples)]...)
}

// plausible makes the template a host's own values rather than the every-sample-moves load of the
// ingest comparison: a rule pack evaluated over it (bench/hub-ui-load.sh) then holds the alerts a
// healthy estate holds, not thousands no real host could raise (error counters climbing several a
// second, a listener's 0/1 state at -80, reboots every second, CPU modes summing to far more than
// a second per second).
//
// Counters advance at their average rate since the captured host booted (value / uptime, from
// node_boot_time_seconds and node_time_seconds; a day when the payload has neither), so a counter
// that was zero stays zero and CPU modes keep their shares. Gauges move by up to 5% of their own
// value, so zero stays zero and nothing changes sign; gauges at 0 or 1 (states, booleans, _info),
// Unix timestamps and file system sizes stay put.
func (tp *template) plausible() {
	uptime := 86400.0
	var boot, now float64
	for _, s := range tp.samples {
		switch name := string(s.series[:nameEnd(s.series)]); name {
		case "node_boot_time_seconds":
			boot = s.base
		case "node_time_seconds":
			now = s.base
		}
	}
	if boot > 0 && now > boot {
		uptime = now - boot
	}
	for k := range tp.samples {
		s := &tp.samples[k]
		s.plausible = true
		switch s.kind {
		case advance:
			s.rate = math.Max(s.base, 0) / uptime
		case wiggle:
			name := string(s.series[:nameEnd(s.series)])
			// File system sizes and free space move far less than 5% in a benchmark's minutes; a
			// wave there reads as a disk filling at gigabytes a minute (FilesystemFillingUp).
			if s.base == 0 || s.base == 1 || (s.base > 1e9 && strings.HasSuffix(name, "_seconds")) ||
				strings.HasPrefix(name, "node_filesystem_") {
				s.kind = fixed
			}
		}
	}
}
