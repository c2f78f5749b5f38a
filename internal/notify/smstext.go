package notify

import (
	"strings"

	"golang.org/x/text/unicode/norm"
)

// GSM 03.38, the 7-bit alphabet every handset and SMS centre supports. A single character outside
// it turns the whole message into UCS-2, which halves what fits in a segment (70 characters instead
// of 160), so SMS text is kept inside it.
const (
	gsmBasic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
		"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
	// The extension table: each costs two septets (an escape and the character).
	gsmExtended = "^{}\\[~]|€"

	smsSegment      = 160 // septets in a single-segment message
	smsMultiSegment = 153 // septets per segment of a concatenated message (7 go to the header)
	smsMaxSegments  = 2
)

var gsmSet = func() map[rune]int {
	m := map[rune]int{}
	for _, r := range gsmBasic {
		m[r] = 1
	}
	for _, r := range gsmExtended {
		m[r] = 2
	}
	return m
}()

// gsmReplace maps common characters outside GSM-7 to what reads the same inside it.
var gsmReplace = map[rune]string{
	'‘': "'", '’': "'", '‚': "'", '′': "'", '“': "\"", '”': "\"", '„': "\"", '″': "\"",
	'–': "-", '—': "-", '‐': "-", '−': "-", '…': "...", '•': "*", '·': ".", '×': "x",
	'\t': " ", '\u00a0': " ", '→': "->", '←': "<-", '≥': ">=", '≤': "<=", '°': "deg",
	'`': "'", '«': "\"", '»': "\"",
}

// toGSM rewrites s into the GSM-7 alphabet: characters outside it become their plain equivalent
// (an accented letter its base letter, typographic quotes straight ones) or '?'.
func toGSM(s string) string {
	var b strings.Builder
	for _, r := range s {
		if _, ok := gsmSet[r]; ok {
			b.WriteRune(r)
			continue
		}
		if rep, ok := gsmReplace[r]; ok {
			b.WriteString(rep)
			continue
		}
		// The base letter of a decomposed character, when it is in the alphabet: á -> a.
		d := norm.NFD.String(string(r))
		if base := []rune(d); len(base) > 0 {
			if _, ok := gsmSet[base[0]]; ok && base[0] != r {
				b.WriteRune(base[0])
				continue
			}
		}
		b.WriteByte('?')
	}
	return b.String()
}

// septets is the length of a GSM-7 string in septets; every rune must be in gsmSet.
func septets(s string) int {
	n := 0
	for _, r := range s {
		n += max(gsmSet[r], 1)
	}
	return n
}

// smsSegments is how many segments a GSM-7 text takes.
func smsSegments(s string) int {
	n := septets(s)
	if n <= smsSegment {
		return 1
	}
	return (n + smsMultiSegment - 1) / smsMultiSegment
}

// cutSeptets returns the longest prefix of s of at most n septets, with "..." at the end when it cut.
func cutSeptets(s string, n int) string {
	if septets(s) <= n {
		return s
	}
	if n < 3 {
		return ""
	}
	used := 0
	for i, r := range s {
		c := max(gsmSet[r], 1)
		if used+c > n-3 {
			return strings.TrimRight(s[:i], " ") + "..."
		}
		used += c
	}
	return s
}

// RenderSMS renders inc as an SMS: status, severity, tier when escalated, client/host, what is
// wrong with its value and watermark, and the ack link while firing, all in GSM-7. A firing
// incident's summary is added when the message still fits one segment; otherwise the text is cut
// to fit two segments, never cutting the ack link.
func RenderSMS(inc Incident) string {
	var head []string
	switch status(inc) {
	case StatusAcknowledged:
		head = append(head, "ACKED")
		if by := oneLine(inc.AckedBy); by != "" {
			head = append(head, "by "+by+":")
		}
	case StatusResolved:
		head = append(head, "RESOLVED")
	default:
		head = append(head, "FIRING")
		if sev := oneLine(inc.Severity); sev != "" {
			head = append(head, strings.ToUpper(sev))
		}
		if inc.Escalated && inc.Tier != "" {
			head = append(head, oneLine(inc.Tier))
		}
	}
	head = appendNonEmpty(head, where(inc))
	prefix := toGSM(strings.Join(head, " ")) + " "
	what := toGSM(strings.Join(appendNonEmpty(nil, title(inc), valueLine(inc, "wm")), " "))
	var tail string
	if status(inc) == StatusFiring && inc.AckURL != "" {
		// A link is not rewritten: a character changed in it breaks it, and a link with
		// characters outside GSM-7 costs the message its encoding, which beats a broken link.
		tail = " Ack: " + oneLine(inc.AckURL)
	}
	var summary string
	if status(inc) == StatusFiring {
		// The summary describes the breach; after an ack or a resolution it is stale.
		summary = toGSM(oneLine(inc.Summary))
	}

	core := prefix + what + tail
	if summary != "" {
		if with := prefix + what + ": " + summary + tail; septets(with) <= smsSegment {
			return with
		}
		if room := smsSegment - septets(core) - 2; septets(core) <= smsSegment && room >= 20 {
			return prefix + what + ": " + cutSeptets(summary, room) + tail
		}
	}
	limit := smsMultiSegment * smsMaxSegments
	if septets(core) <= limit {
		return core
	}
	// Too long for two segments: cut what is wrong first, then the prefix; the link stays whole.
	room := limit - septets(prefix) - septets(tail)
	if room >= 10 {
		return prefix + cutSeptets(what, room) + tail
	}
	return cutSeptets(prefix+what, max(limit-septets(tail), 10)) + tail
}
