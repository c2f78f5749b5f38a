package web

import (
	"fmt"
	"html/template"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/changes"
	"github.com/serversage/sage/internal/inventory"
)

// escaped is s as html/template writes it in text.
func escaped(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	if err := template.Must(template.New("").Parse("{{.}}")).Execute(&b, s); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestChangePages(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		acme, beta := e.client("Acme Corp"), e.client("Beta")
		web1 := e.host(inventory.Host{ClientID: acme.ID, Name: "web1"})
		web2 := e.host(inventory.Host{ClientID: acme.ID, Name: "web2"})
		db1 := e.host(inventory.Host{ClientID: beta.ID, Name: "db1"})
		quiet := e.host(inventory.Host{ClientID: beta.ID, Name: "quiet"})
		day1 := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
		day2 := day1.AddDate(0, 0, 1)
		store := func(hostID string, evs ...changes.Event) {
			t.Helper()
			if _, _, err := e.changes.Insert(ctx, hostID, "j1", evs); err != nil {
				t.Fatal(err)
			}
		}
		nginx := changes.Event{Seq: 1, Time: day1, Kind: "packages", Object: "nginx:amd64", Action: changes.Changed,
			Before: changes.Object{"version": "1.24.0-1"}, After: changes.Object{"version": "1.26.0-1", "files_changed": "3"},
			Files: []string{"/usr/sbin/nginx", "/usr/share/nginx/html/index.html"}}
		sshd := changes.Event{Seq: 2, Time: day1.Add(time.Hour), Kind: "config_files", Object: "/etc/ssh/sshd_config", Action: changes.Changed,
			Before: changes.Object{"sha256": "aaaa"}, After: changes.Object{"sha256": "bbbb"},
			Diff: "--- /etc/ssh/sshd_config\n+++ /etc/ssh/sshd_config\n@@ -1 +1 @@\n-PermitRootLogin yes\n+PermitRootLogin no <b>\n"}
		ls := changes.Event{Seq: 3, Time: day2, Kind: "files", Object: "/usr/bin/ls", Action: changes.Changed, Tampered: true,
			Before: changes.Object{"sha256": "cccc"}, After: changes.Object{"sha256": "dddd", "package": "coreutils"}}
		store(web1.ID, nginx, sshd, ls)
		store(web2.ID, changes.Event{Seq: 1, Time: day1, Kind: "mounts", Object: "/srv", Action: changes.Added, After: changes.Object{"fstype": "ext4"}},
			changes.Event{Seq: 2, Time: time.Now().Add(-time.Hour), Kind: "users", Object: "deploy", Action: changes.Added, After: changes.Object{"uid": "1001"}})
		store(db1.ID, changes.Event{Seq: 1, Time: day1, Kind: "packages", Object: "postgresql-15:amd64", Action: changes.Added, After: changes.Object{"version": "15.6"}})

		hostURL := "/hosts/" + web1.ID + "/changes"
		heading := func(t time.Time) string { return "<h2>" + t.Local().Format("Monday 2 January 2006") + "</h2>" }
		// The summaries as the page shows them (changes.Event.Summary, escaped).
		nginxSummary, sshdSummary, lsSummary := escaped(t, nginx.Summary()), escaped(t, sshd.Summary()), escaped(t, ls.Summary())
		tests := []struct {
			name, path string
			contains   []string
			lacks      []string
			order      []string // these appear in this order
		}{
			{"a host's timeline", hostURL, []string{
				"Changes on web1", heading(day1), heading(day2), nginxSummary, sshdSummary, lsSummary,
				// before and after, the diff escaped in <pre>, the package's files folded away
				"<code class=\"break\">1.24.0-1</code>", "<code class=\"break\">1.26.0-1</code>",
				`<pre class="diff">`, "\n-PermitRootLogin yes\n&#43;PermitRootLogin no &lt;b&gt;\n",
				`<details class="change-files">`, "3 files changed by this package (the first 2 listed)", "/usr/share/nginx/html/index.html",
				// the tampered file, loudly
				`class="change change-files change-tampered"`, "TAMPERED: /usr/bin/ls changed, and no package transaction explains it.",
				`<input type="checkbox" name="kind" value="packages">`,
			}, []string{"/srv", "postgresql"}, []string{lsSummary, sshdSummary, nginxSummary}},
			{"by kind", hostURL + "?kind=config_files&kind=files", []string{
				sshdSummary, lsSummary, `value="config_files" checked`, `value="files" checked`, `value="packages">`, ">Clear</a>",
			}, []string{nginxSummary}, nil},
			{"by text", hostURL + "?q=NGINX", []string{nginxSummary, `value="NGINX"`}, []string{sshdSummary, lsSummary}, nil},
			{"by days", hostURL + "?from=" + day2.Local().Format(time.DateOnly) + "&to=" + day2.Local().Format(time.DateOnly), []string{lsSummary},
				[]string{nginxSummary, sshdSummary}, nil},
			{"nothing matches", hostURL + "?q=nothing-like-this", []string{"No change matches these filters."}, []string{nginxSummary}, nil},
			{"a host without changes", "/hosts/" + quiet.ID + "/changes", []string{"No changes recorded on this host yet."}, nil, nil},
			{"the host page", "/hosts/" + web1.ID, []string{"Recent changes", `href="` + hostURL + `"`, lsSummary, "TAMPERED", nginxSummary}, nil, nil},
			{"a client's timeline in a period", "/clients/" + acme.ID + "/changes?from=" + day1.Local().Format(time.DateOnly) + "&to=" + day2.Local().Format(time.DateOnly),
				[]string{"Changes at Acme Corp", "<strong>web1</strong>", "<strong>web2</strong>", "mounts: /srv added", nginxSummary, lsSummary},
				[]string{"postgresql", "deploy"}, nil},
			{"a client's last week by default", "/clients/" + acme.ID + "/changes", []string{"users: deploy added", "<strong>web2</strong>"},
				[]string{nginxSummary, "/srv"}, nil},
			{"the client page", "/clients/" + acme.ID, []string{`href="/clients/` + acme.ID + `/changes"`}, nil, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.get(tt.path)
				must(t, tt.path, r, 200, tt.contains...)
				for _, s := range tt.lacks {
					if strings.Contains(r.body, s) {
						t.Errorf("the page shows %q", s)
					}
				}
				last := -1
				for _, s := range tt.order {
					i := strings.Index(r.body, s)
					if i < last {
						t.Errorf("%q is out of order (newest first: %q)", s, tt.order)
					}
					last = i
				}
			})
		}
		for _, p := range []string{"/hosts/nope/changes", "/clients/nope/changes"} {
			must(t, p, e.get(p), 404, "Not found")
		}
		must(t, "a bad day", e.get(hostURL+"?from=yesterday"), 400, "Bad request")

		// A long timeline is paged, newest first.
		busy := e.host(inventory.Host{ClientID: beta.ID, Name: "busy"})
		var evs []changes.Event
		for i := range changesPage + 5 {
			evs = append(evs, changes.Event{Seq: uint64(i + 1), Time: day1.Add(time.Duration(i) * time.Second), Kind: "listeners",
				Object: fmt.Sprintf("tcp:%d", 10000+i), Action: changes.Added})
		}
		store(busy.ID, evs...)
		busyURL := "/hosts/" + busy.ID + "/changes"
		r := e.get(busyURL + "?kind=listeners")
		must(t, "first page", r, 200, "tcp:10204", "tcp:10005", `href="`+busyURL+`?kind=listeners&amp;offset=200" rel="next">Older`)
		if strings.Contains(r.body, "tcp:10004 ") || strings.Contains(r.body, "Newer") {
			t.Error("the first page shows more than a page")
		}
		r = e.get(busyURL + "?kind=listeners&offset=200")
		must(t, "second page", r, 200, "tcp:10004", "tcp:10000", `href="`+busyURL+`?kind=listeners" rel="prev">Newer`)
	})
}
