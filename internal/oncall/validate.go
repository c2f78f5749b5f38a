package oncall

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/serversage/sage/internal/config"
)

// Length limits: generous, but bounded so that a form cannot store megabytes in a name.
const (
	maxName     = 100
	maxNote     = 1000
	maxEmail    = 254 // RFC 5321's limit on a forward path
	maxID       = 64
	maxMembers  = 100
	maxSteps    = 50
	maxRepeat   = 10 // Grafana OnCall allows 5; a few more cost nothing and a bound keeps runs finite
	maxWait     = 7 * 24 * time.Hour
	minShift    = time.Hour
	maxShift    = 90 * 24 * time.Hour
	maxOverride = 366 * 24 * time.Hour
)

// fieldErrs collects field errors.
type fieldErrs []config.FieldError

func (fe *fieldErrs) add(field, format string, args ...any) {
	*fe = append(*fe, config.Errorf(field, format, args...))
}

// text checks a single-line text field: valid UTF-8, no control characters, at most max characters.
func (fe *fieldErrs) text(field, s string, required bool, max int) {
	switch {
	case s == "" && required:
		fe.add(field, "is required")
	case !utf8.ValidString(s):
		fe.add(field, "is not valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		fe.add(field, "is longer than %d characters", max)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		fe.add(field, "contains a control character")
	}
}

func (fe *fieldErrs) id(field, s string, required bool) {
	if s == "" {
		if required {
			fe.add(field, "is required")
		}
		return
	}
	fe.text(field, s, false, maxID)
}

// channels checks a list of channel names: known, each at most once.
func (fe *fieldErrs) channels(field string, l []string) {
	seen := map[string]bool{}
	for i, c := range l {
		f := field + "[" + strconv.Itoa(i) + "]"
		switch {
		case c != ChannelEmail && c != ChannelSMS:
			fe.add(f, "%q is not a channel; use email or sms", c)
		case seen[c]:
			fe.add(f, "%q is listed twice", c)
		}
		seen[c] = true
	}
}

// Duration is a time.Duration that JSON carries as a Go duration string ("15m", "24h") or as a
// number of seconds, and writes as a Go duration string.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case string:
		p, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 15m or 24h", v)
		}
		*d = Duration(p)
	case float64:
		// 9e9 s (285 years) is within time.Duration's range with room for rounding.
		if math.IsNaN(v) || math.Abs(v) >= 9e9 {
			return fmt.Errorf("%v seconds is out of range", v)
		}
		*d = Duration(v * float64(time.Second))
	default:
		return errors.New("a duration is a string like 15m or a number of seconds")
	}
	return nil
}

// parseClock parses a time of day "HH:MM" (24-hour, both digits) into minutes after midnight.
func parseClock(s string) (int, bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if h > 23 || m > 59 {
		return 0, false
	}
	return h*60 + m, true
}

// dateLayout is how calendar dates are written: as text, which sorts and compares like the dates.
const dateLayout = "2006-01-02"

// parseDate parses "YYYY-MM-DD" into its parts, refusing years outside 2000-2999 (a typo there
// would put a rota's start in another millennium).
func parseDate(s string) (y int, m time.Month, d int, ok bool) {
	t, err := time.Parse(dateLayout, s)
	if err != nil || t.Year() < 2000 || t.Year() > 2999 {
		return 0, 0, 0, false
	}
	return t.Year(), t.Month(), t.Day(), true
}
