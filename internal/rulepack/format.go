package rulepack

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// FormatValue writes a watermark or measured value in its unit the way an engineer reads it:
// "90 %", "200 MiB", "100 ms", "1d", "2.5".
func FormatValue(v float64, unit string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	switch unit {
	case "%":
		return num(v) + " %"
	case "bytes":
		return bytesIEC(v)
	case "bytes/s":
		return bytesIEC(v) + "/s"
	case "count/s":
		return num(v) + "/s"
	case "s":
		switch {
		case v == 0:
			return "0s"
		case v < 1:
			return num(v*1000) + " ms"
		case v == math.Trunc(v) && v < math.MaxInt64/1e9:
			return model.Duration(time.Duration(v) * time.Second).String()
		default:
			return num(v) + " s"
		}
	}
	return num(v)
}

func num(v float64) string {
	s := strconv.FormatFloat(v, 'f', 2, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "-0" {
		return "0"
	}
	return s
}

func bytesIEC(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for math.Abs(v) >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return num(v) + " " + units[i]
}

// Describe says in words how the watermark applies: "above 90 %, per mountpoint".
func (w Watermark) Describe() string {
	s := w.Direction + " " + FormatValue(w.Default, w.Unit)
	if w.Per != "" {
		s += ", per " + w.Per
	}
	return s
}
