package web

import (
	"html/template"
	"net/url"
	"strings"

	"github.com/serversage/sage/internal/inventory"
)

// hostRowsHTML writes the rows of the hosts table. It is the one part of a page written in Go
// rather than in a template, because it is the one part repeated fifty times: html/template calls
// its contextual escapers through reflection for each of a row's twenty-odd actions, and that was
// more than a third of the hosts page's CPU under load. Every value from the inventory or the
// scrape is escaped here with template.HTMLEscapeString (text and double-quoted attributes alike)
// and the id in the link is path-escaped first; TestHostRowsHTML checks the output against the
// template it replaces, with hostile names.
func hostRowsHTML(rows []hostRow) template.HTML {
	var b strings.Builder
	b.Grow(len(rows) * 1200)
	esc := func(s string) { template.HTMLEscape(&b, []byte(s)) }
	usage := func(f float64) {
		b.WriteString(`<span class="usage">`)
		b.WriteString(string(usageBar(f)))
		b.WriteString(`<span class="usage-num">`)
		esc(pct(f))
		b.WriteString(`</span></span>`)
	}
	dash := `<span class="muted">–</span>`
	for _, r := range rows {
		b.WriteString("\n<tr class=\"row-")
		esc(r.State)
		b.WriteString("\">\n<td data-label=\"Host\" class=\"host-cell\">\n<a href=\"/hosts/")
		esc(url.PathEscape(r.Host.ID))
		b.WriteString(`"><strong>`)
		esc(r.Host.Name)
		b.WriteString(`</strong></a>`)
		b.WriteString(lifecyclePill(r.Host.Status))
		if r.State == "down" && r.Health.LastError != "" {
			b.WriteString("\n<div class=\"error-text small\">")
			esc(r.Health.LastError)
			b.WriteString(`</div>`)
		}
		b.WriteString("\n</td>\n<td data-label=\"State\"><span class=\"pill pill-")
		esc(r.State)
		b.WriteString(`">`)
		esc(stateLabel(r.State))
		b.WriteString("</span></td>\n<td data-label=\"Last scrape\" class=\"nowrap\">")
		if r.Health.Scraped {
			esc(ago(r.Health.LastScrape))
		} else {
			b.WriteString("–")
		}
		b.WriteString("</td>\n<td data-label=\"CPU\">")
		usage(r.Health.CPU)
		b.WriteString("</td>\n<td data-label=\"Memory\">")
		usage(r.Health.Memory)
		b.WriteString("</td>\n<td data-label=\"Disk\">")
		usage(r.Health.Disk)
		b.WriteString("</td>\n<td data-label=\"Client\" class=\"nowrap\">")
		esc(r.ClientName)
		b.WriteString("</td>\n<td data-label=\"Site\" class=\"nowrap\">")
		if r.SiteName != "" {
			esc(r.SiteName)
		} else {
			b.WriteString(dash)
		}
		b.WriteString("</td>\n<td data-label=\"Role\">")
		if r.Host.Role != "" {
			esc(r.Host.Role)
		} else {
			b.WriteString(dash)
		}
		b.WriteString("</td>\n</tr>")
	}
	return template.HTML(b.String())
}

// lifecyclePill is the partial "lifecycle" template's output for a status.
func lifecyclePill(s inventory.Status) string {
	switch s {
	case inventory.StatusPending:
		return `<span class="pill pill-approval">Awaiting approval</span>`
	case inventory.StatusRetired:
		return `<span class="pill pill-retired">Retired</span>`
	}
	return ""
}

// optionsHTML writes a select's options, the one with value selected marked so: {{options
// .Clients .Query.Client}}. A filter's client list has an option per client, and through
// html/template its three actions each were reflective escaper calls, more than the rest of the
// hosts page's template together. Values and labels are escaped as in hostRowsHTML;
// TestOptionsHTML compares the output with the template it replaces. Option groups are not
// written: the filters have none (the forms' grouped selects keep their template).
func optionsHTML(opts []option, selected string) template.HTML {
	var b strings.Builder
	b.Grow(len(opts) * 64)
	for _, o := range opts {
		b.WriteString(`<option value="`)
		template.HTMLEscape(&b, []byte(o.Value))
		b.WriteString(`"`)
		if o.Value == selected {
			b.WriteString(` selected`)
		}
		b.WriteString(`>`)
		template.HTMLEscape(&b, []byte(o.Label))
		b.WriteString(`</option>`)
	}
	return template.HTML(b.String())
}
