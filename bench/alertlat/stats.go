package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// summary is the distribution of a set of durations.
type summary struct {
	n                          int
	min, median, p99, max, avg time.Duration
}

// percentile is the nearest-rank percentile of sorted: the smallest value with at least p% of
// the values at or below it (so the p99 of fewer than 100 values is the maximum).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func summarize(ds []time.Duration) summary {
	if len(ds) == 0 {
		return summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return summary{n: len(s), min: s[0], median: percentile(s, 50), p99: percentile(s, 99), max: s[len(s)-1], avg: sum / time.Duration(len(s))}
}

// secs formats a duration in seconds with millisecond precision.
func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// ratio is a/b as "12.3x", or "-" when b is zero.
func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fx", float64(a)/float64(b))
}
