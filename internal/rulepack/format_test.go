package rulepack

import (
	"math"
	"testing"
)

func TestFormatValue(t *testing.T) {
	tests := []struct {
		v    float64
		unit string
		want string
	}{
		{90, "%", "90 %"},
		{12.345, "%", "12.35 %"},
		{209715200, "bytes", "200 MiB"},
		{104857600, "bytes/s", "100 MiB/s"},
		{1536, "bytes", "1.5 KiB"},
		{512, "bytes", "512 B"},
		{0.1, "s", "100 ms"},
		{5, "s", "5s"},
		{86400, "s", "1d"},
		{5400, "s", "1h30m"},
		{2.5, "s", "2.5 s"},
		{0, "s", "0s"},
		{10000, "count", "10000"},
		{2, "ratio", "2"},
		{1, "", "1"},
		{3, "count/s", "3/s"},
		{math.Inf(1), "%", "+Inf"},
	}
	for _, tt := range tests {
		if got := FormatValue(tt.v, tt.unit); got != tt.want {
			t.Errorf("FormatValue(%g, %q) = %q, want %q", tt.v, tt.unit, got, tt.want)
		}
	}
	w := Watermark{Default: 85, Unit: "%", Per: "mountpoint", Direction: Above}
	if got := w.Describe(); got != "above 85 %, per mountpoint" {
		t.Errorf("Describe() = %q", got)
	}
}
