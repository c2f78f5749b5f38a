package oncall

import (
	"testing"
	"time"
)

func TestParseClock(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"00:00", 0, true}, {"08:00", 480, true}, {"23:59", 1439, true},
		{"24:00", 0, false}, {"12:60", 0, false}, {"8:00", 0, false}, {"08:00:00", 0, false},
		{"08-00", 0, false}, {"0a:00", 0, false}, {"", 0, false}, {"+8:00", 0, false},
	} {
		got, ok := parseClock(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseClock(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzParseClock checks parseClock against time.Parse with the same layout: both accept exactly
// the same strings and read the same time of day.
func FuzzParseClock(f *testing.F) {
	for _, s := range []string{"08:00", "23:59", "24:00", "7:05", "07:5", "١٢:٠٠", "00:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mins, ok := parseClock(s)
		ref, err := time.Parse("15:04", s)
		// time.Parse also takes a one-digit hour ("8:00"); the stored form is always two digits.
		refOK := err == nil && len(s) == 5
		if ok != refOK {
			t.Fatalf("parseClock(%q) ok=%v, time.Parse ok=%v (%v)", s, ok, refOK, err)
		}
		if ok && mins != ref.Hour()*60+ref.Minute() {
			t.Fatalf("parseClock(%q) = %d, time.Parse reads %v", s, mins, ref)
		}
	})
}
