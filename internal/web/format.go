package web

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/serversage/sage/internal/auth"
)

//go:embed templates
var templateFS embed.FS

// parseTemplates parses each page (templates/*.html but the layout) together with the layout and
// the shared partials, so that every page defines its own "content" without clashing.
func parseTemplates(funcs template.FuncMap) (map[string]*template.Template, error) {
	shared, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	pages, err := fs.Glob(templateFS, "templates/pages/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	out := make(map[string]*template.Template, len(pages))
	for _, p := range pages {
		t, err := shared.Clone()
		if err != nil {
			return nil, fmt.Errorf("web: templates: %w", err)
		}
		if t, err = t.ParseFS(templateFS, p); err != nil {
			return nil, fmt.Errorf("web: templates: %w", err)
		}
		out[strings.TrimSuffix(path.Base(p), ".html")] = t
	}
	return out, nil
}

func (u *UI) funcs() template.FuncMap {
	return template.FuncMap{
		"field":      field,
		"ago":        ago,
		"pct":        pct,
		"bar":        usageBar,
		"bytes":      bytesIEC,
		"date":       func(t time.Time) string { return dateOrDash(t) },
		"datetime":   datetime,
		"stateLabel": stateLabel,
		"plural":     plural,
		"options":    optionsHTML,
		// The names the auth middleware reads the CSRF token from.
		"csrfField":  func() string { return auth.CSRFField },
		"csrfHeader": func() string { return auth.CSRFHeader },
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// ago says how long before now t was, coarsely, as people read it at a glance.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	default:
		return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
	}
}

// pct writes a fraction (0..1) as a percentage; "–" when unknown.
func pct(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "–"
	}
	return strconv.FormatFloat(f*100, 'f', 0, 64) + " %"
}

// usageBar is a small horizontal bar for a fraction, coloured by how full it is. It is SVG with
// presentation attributes, which the CSP allows where an inline style would be refused.
func usageBar(f float64) template.HTML {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return `<span class="bar-empty" aria-hidden="true"></span>`
	}
	v := min(max(f, 0), 1)
	level := "ok"
	switch {
	case v >= 0.9:
		level = "crit"
	case v >= 0.75:
		level = "warn"
	}
	return template.HTML(fmt.Sprintf(`<svg class="bar" viewBox="0 0 100 6" preserveAspectRatio="none" aria-hidden="true">`+
		`<rect class="bar-track" width="100" height="6" rx="3"/><rect class="bar-fill %s" width="%.1f" height="6" rx="3"/></svg>`, level, v*100))
}

// bytesIEC writes a size in binary units, as memory is sold.
func bytesIEC(n int64) string {
	if n <= 0 {
		return "–"
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if f >= 10 || i == 0 {
		return fmt.Sprintf("%.0f %s", f, units[i])
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

func dateOrDash(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.Format(time.DateOnly)
}

func datetime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.Local().Format("2006-01-02 15:04 MST")
}

// stateLabel is how a hosthealth state reads in the UI.
func stateLabel(s string) string {
	switch s {
	case "up":
		return "Up"
	case "down":
		return "Down"
	case "pending":
		return "Not yet scraped"
	case "unmonitored":
		return "Unmonitored"
	}
	return s
}

func money(minor int64, currency string) string {
	return formatAmount(minor, minorDigits(currency)) + " " + currency
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
