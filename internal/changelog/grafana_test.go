package changelog_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/changelog"
	"github.com/serversage/sage/internal/changes"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

func TestParseAnnotationQuery(t *testing.T) {
	tests := []struct {
		q       string
		want    changelog.Filter
		wantErr string
	}{
		{q: "", want: changelog.Filter{Limit: changelog.DefaultAnnotations}},
		{q: "client=acme host=web-1 kind=packages,files", want: changelog.Filter{Limit: 1000, ClientSlugs: []string{"acme"}, HostNames: []string{"web-1"}, Kinds: []string{"packages", "files"}}},
		{q: " host={web-1,web-2}  host=db-1 nginx  upgraded ", want: changelog.Filter{Limit: 1000, HostNames: []string{"web-1", "web-2", "db-1"}, Query: "nginx upgraded"}},
		{q: "tampered=true limit=20 KIND=os", want: changelog.Filter{Limit: 20, TamperedOnly: true, Kinds: []string{"os"}}},
		{q: "kind=weather", wantErr: "not one of"},
		{q: "colour=red", wantErr: "not a query key"},
		{q: "limit=0", wantErr: "limit"},
		{q: "limit=10001", wantErr: "limit"},
		{q: "tampered=maybe", wantErr: "tampered"},
		{q: strings.Repeat("a ", 51), wantErr: "terms"},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			got, err := changelog.ParseAnnotationQuery(tt.q)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Limit != tt.want.Limit || got.Query != tt.want.Query || got.TamperedOnly != tt.want.TamperedOnly ||
				!slices.Equal(got.ClientSlugs, tt.want.ClientSlugs) || !slices.Equal(got.HostNames, tt.want.HostNames) || !slices.Equal(got.Kinds, tt.want.Kinds) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseAnnotationQuery(f *testing.F) {
	for _, s := range []string{"", "client=acme host=web-1 kind=packages,files", "host={a,b} tampered=1 limit=5 word", "=", "kind=", "a=b=c", "limit=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		fl, err := changelog.ParseAnnotationQuery(q)
		if err != nil {
			return
		}
		if fl.Limit < 1 || fl.Limit > changelog.MaxAnnotations {
			t.Errorf("limit %d out of range", fl.Limit)
		}
		for _, k := range fl.Kinds {
			if !slices.Contains(changelog.Kinds(), k) {
				t.Errorf("unknown kind %q accepted", k)
			}
		}
	})
}

func TestGrafana(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db)
		grouped := pkg(1, base, "nginx:amd64", "1.24", "1.26")
		grouped.Files = []string{"/usr/sbin/nginx"}
		grouped.After["files_changed"] = "12"
		tampered := changes.Event{Seq: 2, Time: base.Add(time.Hour), Kind: "files", Object: "/usr/bin/ls", Action: changes.Changed, Tampered: true,
			After: changes.Object{"package": "coreutils"}}
		insert(t, f.s, f.web1.ID, "j", grouped, tampered)
		tamperedTitle := "TAMPERED web-1: " + tampered.Summary()
		insert(t, f.s, f.db1.ID, "j", pkg(1, base.Add(30*time.Minute), "postgresql:amd64", "15.1", "15.2"))
		srv := httptest.NewServer(http.StripPrefix("/grafana/changes", changelog.GrafanaHandler(f.s, storetest.Logger(t))))
		defer srv.Close()

		post := func(path, body string) (int, []byte) {
			t.Helper()
			resp, err := http.Post(srv.URL+"/grafana/changes"+path, "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, b
		}
		resp, err := http.Get(srv.URL + "/grafana/changes/")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /: %v %v", resp, err)
		}
		resp.Body.Close()
		if code, b := post("/search", `{"target":""}`); code != 200 || !strings.Contains(string(b), `"packages"`) {
			t.Errorf("search: %d %s", code, b)
		}
		if code, b := post("/query", `{"targets":[]}`); code != 200 || strings.TrimSpace(string(b)) != "[]" {
			t.Errorf("query: %d %s", code, b)
		}

		const ann = `{"name":"changes","enable":true,"iconColor":"red","query":"%s"}`
		body := func(q string) string {
			return `{"range":{"from":"2026-03-10T00:00:00.000Z","to":"2026-03-11T00:00:00.000Z","raw":{"from":"now-1d","to":"now"}},"annotation":` +
				strings.Replace(ann, "%s", q, 1) + `,"rangeRaw":{"from":"now-1d","to":"now"}}`
		}
		tests := []struct {
			query  string
			titles []string
		}{
			{"", []string{tamperedTitle, "db-1: packages: postgresql:amd64 upgraded from 15.1 to 15.2", "web-1: packages: nginx:amd64 upgraded from 1.24 to 1.26"}},
			{"client=acme kind=packages", []string{"web-1: packages: nginx:amd64 upgraded from 1.24 to 1.26"}},
			{"host=DB-1", []string{"db-1: packages: postgresql:amd64 upgraded from 15.1 to 15.2"}},
			{"tampered=true", []string{tamperedTitle}},
			{"client=beta nginx", []string{}},
		}
		for _, tt := range tests {
			code, b := post("/annotations", body(tt.query))
			var got []struct {
				Annotation map[string]any
				Time       int64
				Title      string
				Text       string
				Tags       []string
			}
			if err := json.Unmarshal(b, &got); code != 200 || err != nil {
				t.Fatalf("%q: %d %s", tt.query, code, b)
			}
			var titles []string
			for _, a := range got {
				titles = append(titles, strings.TrimSpace(a.Title))
				if a.Annotation["name"] != "changes" || a.Annotation["iconColor"] != "red" {
					t.Errorf("%q: the annotation is not echoed: %v", tt.query, a.Annotation)
				}
			}
			if !slices.Equal(titles, tt.titles) && !(len(titles) == 0 && len(tt.titles) == 0) {
				t.Errorf("%q: titles %q, want %q", tt.query, titles, tt.titles)
			}
			if tt.query == "client=acme kind=packages" {
				a := got[0]
				if a.Time != base.UnixMilli() || !slices.Equal(a.Tags, []string{"packages", "web-1", "acme"}) || !strings.Contains(a.Text, "12 files changed") {
					t.Errorf("annotation %+v", a)
				}
			}
			if tt.query == "tampered=true" && !slices.Contains(got[0].Tags, "tampered") {
				t.Errorf("tampered annotation tags %v", got[0].Tags)
			}
		}
		// The range is unix milliseconds too, and its end is inclusive.
		code, b := post("/annotations", `{"range":{"from":0,"to":`+jsonInt(base.UnixMilli())+`},"annotation":{"query":"kind=packages"}}`)
		if code != 200 || strings.Count(string(b), `"time"`) != 1 {
			t.Errorf("range in milliseconds: %d %s", code, b)
		}
		resp, err = http.Get(srv.URL + "/grafana/changes/annotations?from=2026-03-10T00:00:00Z&to=2026-03-11T00:00:00Z&query=host%3Dweb-1")
		if err != nil {
			t.Fatal(err)
		}
		var got []changelog.Annotation
		_ = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(got) != 2 {
			t.Errorf("GET /annotations: %d %+v", resp.StatusCode, got)
		}
		for _, bad := range []string{
			body("colour=red"),
			`{"range":{"from":"yesterday","to":"2026-03-11T00:00:00Z"}}`,
			`{"range":{"from":"2026-03-11T00:00:00Z","to":"2026-03-10T00:00:00Z"}}`,
			`{"annotation":{}}`,
			`not json`,
		} {
			if code, b := post("/annotations", bad); code != 400 || !strings.Contains(string(b), `"error"`) {
				t.Errorf("%s: %d %s, want 400 with an error", bad, code, b)
			}
		}
	})
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }
