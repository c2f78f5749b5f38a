package notify

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
)

// maxAddressLen is RFC 5321's limit on a path (254 octets between the angle brackets, less the
// brackets' own allowance).
const maxAddressLen = 254

// ParseEmailAddress accepts "jane@example.com" or "Jane Doe <jane@example.com>" and returns the
// bare address, fit for SMTP's RCPT TO. Addresses whose local part needs quoting are refused:
// they are legal but rarely work, and a mistyped list ("a@x.com, b@y.com") must not pass as one.
func ParseEmailAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("email address is empty")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", fmt.Errorf("%q is not an email address: %w", s, err)
	}
	addr := a.Address
	if len(addr) > maxAddressLen {
		return "", fmt.Errorf("email address is longer than %d characters", maxAddressLen)
	}
	if strings.ContainsFunc(addr, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune(`"<>(),;:\[]`, r)
	}) {
		return "", fmt.Errorf("%q: addresses that need quoting are not supported", s)
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", fmt.Errorf("%q is not an email address: missing local part or domain", s)
	}
	return addr, nil
}

// ParsePhoneNumber accepts an international number, "+44 20 7946 0958", "+1 (555) 010-0199" or
// "+4915901234567", and returns its E.164 form "+<country code><number>", which SMS providers
// expect. A number without the leading + is refused: which country it belongs to is a guess.
func ParsePhoneNumber(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("phone number is empty")
	}
	rest, ok := strings.CutPrefix(s, "+")
	if !ok {
		return "", fmt.Errorf("%q: give the number in international form, starting with + and the country code", s)
	}
	var b strings.Builder
	b.WriteByte('+')
	for _, r := range rest {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			return "", fmt.Errorf("%q: unexpected character %q in a phone number", s, r)
		}
	}
	n := b.String()
	digits := len(n) - 1
	// E.164 allows at most 15 digits; no country code plus subscriber number is shorter than 7.
	if digits < 7 || digits > 15 {
		return "", fmt.Errorf("%q: an international number has 7 to 15 digits, not %d", s, digits)
	}
	if n[1] == '0' {
		return "", fmt.Errorf("%q: country codes do not start with 0", s)
	}
	return n, nil
}
