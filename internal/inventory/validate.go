package inventory

import (
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/serversage/sage/internal/config"
)

// Length limits. Generous, but bounded so that a form or an agent cannot store megabytes in a name.
const (
	maxName     = 100
	maxHostName = 253
	maxShort    = 100 // os, role
	maxNotes    = 10000
	maxAddress  = 500 // a site's postal address
	maxURL      = 2048
	maxList     = 64 // addresses, tags
	maxTag      = 64
	maxFact     = 256
	maxSlug     = 50
	maxNodes    = 1_000_000
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

// multiline checks free text such as notes: like text, but line breaks and tabs are allowed.
func (fe *fieldErrs) multiline(field, s string, max int) {
	switch {
	case !utf8.ValidString(s):
		fe.add(field, "is not valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		fe.add(field, "is longer than %d characters", max)
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' }) >= 0:
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
	fe.text(field, s, false, 64)
}

var slugRE = regexp.MustCompile(`^[a-z0-9]+(?:-[a-z0-9]+)*$`)

// slugify derives a slug from a name: lower-case ASCII letters and digits, runs of anything else
// becoming one hyphen.
func slugify(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			if b.Len() >= maxSlug {
				break
			}
			continue
		}
		dash = true
	}
	return b.String()
}

// isHostName reports whether s is a DNS host name (RFC 1123 labels, optionally fully qualified
// with a trailing dot). Underscores are refused: they are not valid in host names.
func isHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	allDigits := true
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= '0' && c <= '9':
			case (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-':
				allDigits = false
			default:
				return false
			}
		}
	}
	// "10.0.0.300" is a mistyped address, not a name; a top-level label of digits is never a name.
	return !allDigits
}

// checkAddress says what is wrong with an address (an IP address or a DNS host name), or "".
func checkAddress(s string) string {
	if s == "" {
		return "is empty"
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return "an IPv6 zone is only meaningful on one machine; give the address without %" + a.Zone()
		}
		return ""
	}
	if isHostName(s) {
		return ""
	}
	return "not an IP address or host name"
}

// checkTarget says what is wrong with a service target (host:port or an absolute URL), or "".
func checkTarget(s string) string {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "not a valid URL"
		}
		if u.Host == "" {
			return "URL has no host"
		}
		if msg := checkAddress(u.Hostname()); msg != "" {
			return "URL host " + strconv.Quote(u.Hostname()) + ": " + msg
		}
		if p := u.Port(); p != "" {
			if msg := checkPort(p); msg != "" {
				return "URL port: " + msg
			}
		}
		if u.User != nil {
			return "credentials do not belong in the target; use credentials_ref"
		}
		return ""
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return "not host:port or a URL"
	}
	if msg := checkAddress(host); msg != "" {
		return "host " + strconv.Quote(host) + ": " + msg
	}
	if msg := checkPort(port); msg != "" {
		return "port: " + msg
	}
	return ""
}

func splitHostPort(s string) (host, port string, err error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", errNoPort
	}
	host, port = s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	} else if strings.Contains(host, ":") {
		return "", "", errNoPort // a bare IPv6 address needs brackets
	}
	return host, port, nil
}

type simpleErr string

func (e simpleErr) Error() string { return string(e) }

const errNoPort = simpleErr("missing port")

func checkPort(p string) string {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return strconv.Quote(p) + " is not a port number (1-65535)"
	}
	return ""
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkCredentialsRef says what is wrong with a credentials reference, or "". The reference is
// resolved where the credentials are used (by the agent or the hub); the secret itself is never
// stored in the inventory.
func checkCredentialsRef(s string) string {
	const want = `must be a reference, "env:NAME" or "file:/absolute/path", never the secret itself`
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return want
	}
	switch kind {
	case "env":
		if !envNameRE.MatchString(rest) {
			return "env: needs an environment variable name (letters, digits, _)"
		}
	case "file":
		if !strings.HasPrefix(rest, "/") || path.Clean(rest) != rest {
			return "file: needs an absolute, clean path"
		}
		if strings.IndexFunc(rest, unicode.IsControl) >= 0 {
			return "file: path contains a control character"
		}
	default:
		return want
	}
	return ""
}

var (
	tagRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:=/-]*$`)
	machineIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:{}-]*$`)
	currencyRE  = regexp.MustCompile(`^[A-Z]{3}$`)
)

func checkAgentURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "must be an http:// or https:// URL with a host"
	}
	if msg := checkAddress(u.Hostname()); msg != "" {
		return "host " + strconv.Quote(u.Hostname()) + ": " + msg
	}
	if p := u.Port(); p != "" {
		if msg := checkPort(p); msg != "" {
			return "port: " + msg
		}
	}
	if u.User != nil {
		return "must not carry credentials"
	}
	return ""
}
