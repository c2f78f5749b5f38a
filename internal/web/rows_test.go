package web

import (
	"html/template"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
)

// rowTemplate is the hosts table's row as a template, which hostRowsHTML replaced: the reference
// its output is checked against.
const rowTemplate = `{{define "rows"}}{{range .}}
    <tr class="row-{{.State}}">
      <td data-label="Host" class="host-cell">
        <a href="/hosts/{{.Host.ID}}"><strong>{{.Host.Name}}</strong></a>{{template "lifecycle" .Host.Status}}
        {{if and (eq .State "down") .Health.LastError}}<div class="error-text small">{{.Health.LastError}}</div>{{end}}
      </td>
      <td data-label="State">{{template "state" .State}}</td>
      <td data-label="Last scrape" class="nowrap">{{if .Health.Scraped}}{{ago .Health.LastScrape}}{{else}}–{{end}}</td>
      <td data-label="CPU">{{template "usage" .Health.CPU}}</td>
      <td data-label="Memory">{{template "usage" .Health.Memory}}</td>
      <td data-label="Disk">{{template "usage" .Health.Disk}}</td>
      <td data-label="Client" class="nowrap">{{.ClientName}}</td>
      <td data-label="Site" class="nowrap">{{if .SiteName}}{{.SiteName}}{{else}}<span class="muted">–</span>{{end}}</td>
      <td data-label="Role">{{if .Host.Role}}{{.Host.Role}}{{else}}<span class="muted">–</span>{{end}}</td>
    </tr>
    {{end}}{{end}}`

var betweenTags = regexp.MustCompile(`>\s+<`)

func normalizeHTML(s string) string {
	return strings.TrimSpace(betweenTags.ReplaceAllString(s, "><"))
}

// TestHostRowsHTML: the rows written in Go are the rows the template wrote, for every state and
// lifecycle, empty and hostile values included.
func TestHostRowsHTML(t *testing.T) {
	ref, err := template.New("").Funcs((&UI{}).funcs()).ParseFS(templateFS, "templates/partials/*.html")
	if err != nil {
		t.Fatal(err)
	}
	if ref, err = ref.Parse(rowTemplate); err != nil {
		t.Fatal(err)
	}
	nan := math.NaN()
	scraped := time.Now().Add(-90 * time.Second)
	id := "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
	rows := []hostRow{
		{Host: inventory.HostSummary{ID: id, Name: "web1", Role: "web", Status: inventory.StatusActive},
			ClientName: "Acme", SiteName: "Pune", State: "up",
			Health: hosthealth.Health{Scraped: true, Up: true, LastScrape: scraped, CPU: 0.5, Memory: 0.8, Disk: 0.95}},
		{Host: inventory.HostSummary{ID: id, Name: `<script>alert("x")</script>`, Role: `a&b 'c'`, Status: inventory.StatusActive},
			ClientName: `Smith & "Sons"`, SiteName: "<b>site</b>", State: "down",
			Health: hosthealth.Health{Scraped: true, LastScrape: scraped, LastError: `dial tcp: <refused> & "closed"`, CPU: nan, Memory: nan, Disk: nan}},
		{Host: inventory.HostSummary{ID: id, Name: "new1", Status: inventory.StatusPending},
			ClientName: "Beta", State: "unmonitored", Health: hosthealth.Health{CPU: nan, Memory: nan, Disk: nan}},
		{Host: inventory.HostSummary{ID: id, Name: "old1", Status: inventory.StatusRetired},
			ClientName: "Beta", State: "unmonitored", Health: hosthealth.Health{CPU: nan, Memory: nan, Disk: nan}},
		{Host: inventory.HostSummary{ID: id, Name: "db1", Status: inventory.StatusActive},
			ClientName: "Beta", State: "pending", Health: hosthealth.Health{Scraped: true, Unknown: true, CPU: -0.1, Memory: 1.5, Disk: 0}},
		{Host: inventory.HostSummary{ID: id, Name: "up-no-error", Status: inventory.StatusActive},
			ClientName: "Beta", State: "up", Health: hosthealth.Health{Scraped: true, Up: true, LastError: "stale", CPU: nan, Memory: nan, Disk: nan}},
	}
	for i := range rows {
		t.Run(rows[i].Host.Name, func(t *testing.T) {
			var want strings.Builder
			if err := ref.ExecuteTemplate(&want, "rows", rows[i:i+1]); err != nil {
				t.Fatal(err)
			}
			got := string(hostRowsHTML(rows[i : i+1]))
			if normalizeHTML(got) != normalizeHTML(want.String()) {
				t.Errorf("got\n%s\nwant\n%s", normalizeHTML(got), normalizeHTML(want.String()))
			}
		})
	}
	if got := hostRowsHTML(nil); got != "" {
		t.Errorf("no rows: %q", got)
	}
	// An id is path-escaped, so that it cannot leave the link's path or its attribute.
	got := string(hostRowsHTML([]hostRow{{Host: inventory.HostSummary{ID: `a/b?c"d<e`, Name: "x"}, State: "unmonitored"}}))
	if !strings.Contains(got, `href="/hosts/a%2Fb%3Fc%22d%3Ce"`) {
		t.Errorf("id not escaped: %s", got)
	}
}

// TestOptionsHTML: the options written in Go are what the template wrote, the selected one
// marked, hostile values escaped. (html/template also escapes "+" in attributes, which HTML
// does not need; the reference is compared with that undone.)
func TestOptionsHTML(t *testing.T) {
	ref := template.Must(template.New("").Parse(`<select>{{range .Opts}}<option value="{{.Value}}"{{if eq .Value $.Sel}} selected{{end}}>{{.Label}}</option>{{end}}</select>`))
	got := template.Must(template.New("").Funcs(template.FuncMap{"options": optionsHTML}).Parse(`<select>{{options .Opts .Sel}}</select>`))
	opts := []option{{"", "All clients", ""}, {"c1", "Acme", ""}, {`"><script>x</script>`, `Smith & "Sons" <b>'s</b>`, ""}, {"a+b", "a+b", ""}}
	for _, sel := range []string{"", "c1", `"><script>x</script>`, "a+b", "none"} {
		t.Run(sel, func(t *testing.T) {
			data := struct {
				Opts []option
				Sel  string
			}{opts, sel}
			var want, have strings.Builder
			if err := ref.Execute(&want, data); err != nil {
				t.Fatal(err)
			}
			if err := got.Execute(&have, data); err != nil {
				t.Fatal(err)
			}
			w := strings.ReplaceAll(want.String(), "&#43;", "+")
			if have.String() != w {
				t.Errorf("got\n%s\nwant\n%s", have.String(), w)
			}
			if n := strings.Count(have.String(), " selected"); n != btoi(sel != "none") {
				t.Errorf("%d options selected", n)
			}
		})
	}
	if optionsHTML(nil, "") != "" {
		t.Error("no options wrote something")
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
