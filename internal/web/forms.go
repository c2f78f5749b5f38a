package web

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/serversage/sage/internal/config"
)

// maxForm bounds a form's body; the largest real one (a contract's notes) is well under it.
const maxForm = 256 << 10

// form is a submitted (or prefilled) form: its values, kept to show again when something is
// wrong, and the errors found, by form field.
type form struct {
	values url.Values
	errs   map[string][]string
	other  []string // errors about no field of this form
	fields []string // the form's fields; errors on others go to other
}

func newForm(fields ...string) *form {
	return &form{values: url.Values{}, errs: map[string][]string{}, fields: fields}
}

// parse reads the POSTed form into f.
func (f *form) parse(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("reading form: %w", err)
	}
	f.values = r.PostForm
	return nil
}

// Get returns a field's value.
func (f *form) Get(name string) string { return f.values.Get(name) }

// Has reports whether a multi-valued field (check boxes) holds v.
func (f *form) Has(name, v string) bool { return slices.Contains(f.values[name], v) }

func (f *form) set(name, v string) { f.values.Set(name, v) }

// Errors returns the errors on a field.
func (f *form) Errors(name string) []string { return f.errs[name] }

// Other returns the errors that belong to no field shown.
func (f *form) Other() []string { return f.other }

// Invalid reports whether the form has any error.
func (f *form) Invalid() bool { return len(f.errs) > 0 || len(f.other) > 0 }

func (f *form) add(field, msg string) {
	if !slices.Contains(f.fields, field) {
		f.other = append(f.other, msg)
		return
	}
	f.errs[field] = append(f.errs[field], msg)
}

// addFieldErrors files the inventory's field errors under the form's fields. A path with an
// index ("addresses[1]") is the form field's item, counted from 1 as the user sees the list; a
// path into a sub-object ("facts.cores") keeps the rest as a prefix. rename maps inventory field
// names to the form's where they differ ("rate_minor" -> "rate").
func (f *form) addFieldErrors(fes []config.FieldError, rename map[string]string) {
	for _, fe := range fes {
		field, msg := splitFieldPath(fe.Field, fe.Msg)
		if to, ok := rename[field]; ok {
			field = to
		}
		if !slices.Contains(f.fields, field) {
			if fe.Field != "" {
				msg = fe.Field + ": " + fe.Msg
			}
			f.other = append(f.other, msg)
			continue
		}
		f.errs[field] = append(f.errs[field], msg)
	}
}

// addMissingErrors is addFieldErrors for fields that have no error yet: after a field could not
// be parsed, validation would only add a confusing second error about its zero value.
func (f *form) addMissingErrors(fes []config.FieldError, rename map[string]string) {
	var keep []config.FieldError
	for _, fe := range fes {
		field, _ := splitFieldPath(fe.Field, fe.Msg)
		if to, ok := rename[field]; ok {
			field = to
		}
		if len(f.errs[field]) == 0 {
			keep = append(keep, fe)
		}
	}
	f.addFieldErrors(keep, rename)
}

// splitFieldPath returns the top-level field of an inventory field path and the message to show
// beside that field.
func splitFieldPath(path, msg string) (field, shown string) {
	i := strings.IndexAny(path, "[.")
	if i < 0 {
		return path, msg
	}
	field, rest := path[:i], path[i:]
	if rest[0] == '[' {
		if j := strings.IndexByte(rest, ']'); j > 0 {
			if n, err := strconv.Atoi(rest[1:j]); err == nil {
				sub := strings.TrimPrefix(rest[j+1:], ".")
				if sub != "" {
					return field, fmt.Sprintf("item %d, %s: %s", n+1, sub, msg)
				}
				return field, fmt.Sprintf("item %d: %s", n+1, msg)
			}
		}
	}
	return field, strings.TrimPrefix(rest, ".") + ": " + msg
}

// parseList splits a list typed into a text box, one item per line or separated by commas (and,
// when spaces is set, by spaces), dropping empty items so that "item N" in an error counts what
// the user sees.
func parseList(s string, spaces bool) []string {
	sep := func(r rune) bool {
		return r == '\n' || r == '\r' || r == ',' || (spaces && unicode.IsSpace(r))
	}
	var out []string
	for p := range strings.FieldsFuncSeq(s, sep) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseInt reads a whole number field; empty is def.
func (f *form) parseInt(name string, def int) int {
	s := strings.TrimSpace(f.Get(name))
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		f.add(name, "must be a whole number")
		return def
	}
	return n
}

// parseDate reads a date field (YYYY-MM-DD, what <input type=date> sends); empty is zero.
func (f *form) parseDate(name string) time.Time {
	s := strings.TrimSpace(f.Get(name))
	if s == "" {
		return time.Time{}
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		f.add(name, "must be a date, YYYY-MM-DD")
		return time.Time{}
	}
	return d
}

// currencyDigits is the number of minor-unit digits of the ISO 4217 currencies that do not use
// two; every other currency uses two.
var currencyDigits = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
	"RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	"CLF": 4, "UYW": 4,
}

func minorDigits(currency string) int {
	if d, ok := currencyDigits[strings.ToUpper(strings.TrimSpace(currency))]; ok {
		return d
	}
	return 2
}

// parseAmount reads a decimal amount ("1500", "1,500.50") as a whole number of minor units with
// digits decimals, refusing more decimals than the currency has rather than rounding money.
func parseAmount(s string, digits int) (int64, error) {
	s = strings.ReplaceAll(strings.TrimSpace(s), ",", "")
	s = strings.ReplaceAll(s, "_", "")
	if s == "" {
		return 0, nil
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" && (!dot || frac == "") {
		return 0, fmt.Errorf("is not an amount")
	}
	for _, part := range []string{whole, frac} {
		for _, c := range part {
			if c < '0' || c > '9' {
				return 0, fmt.Errorf("is not an amount")
			}
		}
	}
	if len(frac) > digits {
		if digits == 0 {
			return 0, fmt.Errorf("takes no decimals in this currency")
		}
		return 0, fmt.Errorf("takes at most %d decimals in this currency", digits)
	}
	var n int64
	digitsOf := whole + frac + strings.Repeat("0", digits-len(frac))
	for _, c := range digitsOf {
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, fmt.Errorf("is too large")
		}
		n = n*10 + d
	}
	if neg {
		n = -n
	}
	return n, nil
}

// formatAmount writes minor units as a decimal amount with digits decimals: the inverse of
// parseAmount.
func formatAmount(minor int64, digits int) string {
	neg := minor < 0
	u := uint64(minor)
	if neg {
		u = -u
	}
	s := strconv.FormatUint(u, 10)
	if digits > 0 {
		if len(s) <= digits {
			s = strings.Repeat("0", digits-len(s)+1) + s
		}
		s = s[:len(s)-digits] + "." + s[len(s)-digits:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// option is one choice of a select; options with the same Group are shown together.
type option struct {
	Value, Label, Group string
}

// fieldView is what the field templates need about one form field.
type fieldView struct {
	Form        *form
	Name        string
	Label       string
	Type        string // text, textarea, select, checkboxes, date, number, url, password
	Required    bool
	Hint        string
	Placeholder string
	Rows        int
	Options     []option
	Readonly    bool
	Autofocus   bool
}

// Value is the field's current value.
func (v fieldView) Value() string { return v.Form.Get(v.Name) }

// Errors are the field's errors.
func (v fieldView) Errors() []string { return v.Form.Errors(v.Name) }

// Groups returns the options in groups, in order of first appearance.
func (v fieldView) Groups() []optionGroup {
	var out []optionGroup
	for _, o := range v.Options {
		if len(out) == 0 || out[len(out)-1].Label != o.Group {
			out = append(out, optionGroup{Label: o.Group})
		}
		out[len(out)-1].Options = append(out[len(out)-1].Options, o)
	}
	return out
}

type optionGroup struct {
	Label   string
	Options []option
}

// field builds a fieldView for the templates: {{template "field" (field .Form "name" "Name"
// "required" "hint=Shown in lists")}}. Arguments are flags ("required", "readonly",
// "autofocus"), key=value settings (type, hint, placeholder, rows) or a []option.
func field(f *form, name, label string, args ...any) (fieldView, error) {
	v := fieldView{Form: f, Name: name, Label: label, Type: "text"}
	for _, a := range args {
		switch a := a.(type) {
		case []option:
			v.Options = a
			if v.Type == "text" {
				v.Type = "select"
			}
		case string:
			key, val, _ := strings.Cut(a, "=")
			switch key {
			case "required":
				v.Required = true
			case "readonly":
				v.Readonly = true
			case "autofocus":
				v.Autofocus = true
			case "type":
				v.Type = val
			case "hint":
				v.Hint = val
			case "placeholder":
				v.Placeholder = val
			case "rows":
				n, err := strconv.Atoi(val)
				if err != nil {
					return v, fmt.Errorf("field %s: rows=%q", name, val)
				}
				v.Rows = n
			default:
				return v, fmt.Errorf("field %s: unknown setting %q", name, a)
			}
		default:
			return v, fmt.Errorf("field %s: unexpected argument %T", name, a)
		}
	}
	if len(f.errs) > 0 {
		// Shown again with errors: the cursor goes to the first field to correct.
		v.Autofocus = f.firstInvalid() == name
	}
	return v, nil
}

// firstInvalid is the first of the form's fields, in order, that has an error.
func (f *form) firstInvalid() string {
	for _, n := range f.fields {
		if len(f.errs[n]) > 0 {
			return n
		}
	}
	return ""
}
