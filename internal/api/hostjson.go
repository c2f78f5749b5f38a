package api

import (
	"encoding/json"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
)

// The list of hosts is the API's largest answer and the one read most (a page of up to 1,000
// hosts, polled by scripts and dashboards). Decoding each host's stored JSON columns and encoding
// the page through reflection was more than half of its CPU, so the list is written here by hand
// from the stored text: addresses and tags are copied as stored when they are in the form the
// inventory writes, and facts are encoded once per distinct stored text. The bytes are those
// encoding/json writes for page[hostView] (TestHostListJSON and FuzzHostJSON compare them).

// appendHostRecord appends r as encoding/json would encode its hostView with health h (nil:
// without health).
func appendHostRecord(b []byte, r inventory.HostRecord, h *hosthealth.Health, facts *factsCache) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, r.ID)
	b = append(b, `,"client_id":`...)
	b = appendJSONString(b, r.ClientID)
	b = append(b, `,"site_id":`...)
	b = appendNullableString(b, r.SiteID)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, r.Name)
	b = append(b, `,"addresses":`...)
	b, err := appendStoredList(b, "addresses", r.AddressesJSON)
	if err != nil {
		return b, err
	}
	b = append(b, `,"os":`...)
	b = appendJSONString(b, r.OS)
	b = append(b, `,"role":`...)
	b = appendJSONString(b, r.Role)
	b = append(b, `,"tags":`...)
	if b, err = appendStoredList(b, "tags", r.TagsJSON); err != nil {
		return b, err
	}
	b = append(b, `,"facts":`...)
	f, err := facts.encoded(r.FactsJSON)
	if err != nil {
		return b, err
	}
	b = append(b, f...)
	b = append(b, `,"agent_url":`...)
	b = appendJSONString(b, r.AgentURL)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, string(r.Status))
	b = append(b, `,"machine_id":`...)
	b = appendNullableString(b, r.MachineID)
	b = append(b, `,"enrolled_at":`...)
	if r.EnrolledAt.IsZero() {
		b = append(b, "null"...)
	} else {
		b = appendJSONTime(b, r.EnrolledAt)
	}
	b = append(b, `,"created_at":`...)
	b = appendJSONTime(b, r.CreatedAt)
	b = append(b, `,"updated_at":`...)
	b = appendJSONTime(b, r.UpdatedAt)
	if h != nil {
		b = append(b, `,"health":`...)
		b = appendHealth(b, viewHealth(*h))
	}
	return append(b, '}'), nil
}

func appendHealth(b []byte, v *healthView) []byte {
	b = append(b, `{"state":`...)
	b = appendJSONString(b, v.State)
	b = append(b, `,"up":`...)
	b = strconv.AppendBool(b, v.Up)
	b = append(b, `,"last_scrape":`...)
	if v.LastScrape == nil {
		b = append(b, "null"...)
	} else {
		b = appendJSONTime(b, *v.LastScrape)
	}
	b = append(b, `,"last_error":`...)
	if v.LastError == nil {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, *v.LastError)
	}
	for _, f := range []struct {
		key string
		v   *float64
	}{
		{`,"scrape_duration_seconds":`, v.ScrapeDurationSeconds}, {`,"cpu":`, v.CPU}, {`,"memory":`, v.Memory},
		{`,"disk":`, v.Disk}, {`,"load1":`, v.Load1}, {`,"cores":`, v.Cores},
	} {
		b = append(b, f.key...)
		if f.v == nil {
			b = append(b, "null"...)
		} else {
			b = appendJSONFloat(b, *f.v)
		}
	}
	return append(b, '}')
}

func appendNullableString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendJSONString(b, s)
}

// appendJSONTime is time.Time's MarshalJSON (RFC 3339 with nanoseconds, trailing zeros cut).
func appendJSONTime(b []byte, t time.Time) []byte {
	if y := t.Year(); y < 0 || y > 9999 {
		// MarshalJSON refuses these; the inventory never stores them. Let encoding/json decide.
		out, _ := json.Marshal(t)
		return append(b, out...)
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendJSONFloat is encoding/json's float64 encoding (finite values only).
func appendJSONFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string encoding with HTML escaping (its default): quotes,
// backslashes and control characters escaped, <, > and & as \u003c, \u003e, \u0026, U+2028 and
// U+2029 escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendStoredList appends a stored JSON array of strings as the API writes the list. The
// inventory stores what encoding/json wrote, so text in that form (plainList) is copied as it is;
// anything else is decoded and encoded.
func appendStoredList(b []byte, field, stored string) ([]byte, error) {
	if plainList(stored) {
		return append(b, stored...), nil
	}
	var l []string
	if err := json.Unmarshal([]byte(stored), &l); err != nil {
		return b, &storedJSONError{field: field, err: err}
	}
	b = append(b, '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']'), nil
}

// plainList reports whether s is a JSON array of strings exactly as encoding/json writes it and
// as appendJSONString would write its strings: [], or ["a","b"] with no space and no character
// that either would escape (so none of " \ < > & or a control, and only ASCII).
func plainList(s string) bool {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return false
	}
	body := s[1 : len(s)-1]
	if body == "" {
		return true
	}
	for i := 0; ; {
		if i >= len(body) || body[i] != '"' {
			return false
		}
		i++
		for i < len(body) && body[i] != '"' {
			c := body[i]
			if c < 0x20 || c >= utf8.RuneSelf || c == '\\' || c == '<' || c == '>' || c == '&' {
				return false
			}
			i++
		}
		if i >= len(body) {
			return false // unterminated
		}
		i++ // the closing quote
		if i == len(body) {
			return true
		}
		if body[i] != ',' {
			return false
		}
		i++
	}
}

type storedJSONError struct {
	field string
	err   error
}

func (e *storedJSONError) Error() string { return "decoding stored " + e.field + ": " + e.err.Error() }
func (e *storedJSONError) Unwrap() error { return e.err }

// factsCache holds the API's encoding of stored facts texts. Hosts entered by hand all store
// "{}", and hosts enrolled from one image share most of theirs, so a page of hosts encodes few.
// It is bounded and emptied when full; its values are never modified.
type factsCache struct {
	mu sync.RWMutex
	m  map[string][]byte
}

const factsCacheMax = 4096

func (c *factsCache) encoded(stored string) ([]byte, error) {
	c.mu.RLock()
	b, ok := c.m[stored]
	c.mu.RUnlock()
	if ok {
		return b, nil
	}
	var f inventory.Facts
	if err := json.Unmarshal([]byte(stored), &f); err != nil {
		return nil, &storedJSONError{field: "facts", err: err}
	}
	b, err := json.Marshal(viewHost(inventory.Host{Facts: f}).Facts)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= factsCacheMax {
		c.m = make(map[string][]byte)
	}
	c.m[stored] = b
	c.mu.Unlock()
	return b, nil
}
