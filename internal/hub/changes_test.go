package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/changelog"
	"github.com/serversage/sage/internal/changes"
	"github.com/serversage/sage/internal/enrol"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store/storetest"
)

// Change events end to end on a real hub: shipped by the agent's client (enrol.ShipChanges),
// refused for machines that are not active hosts of the token's client, read back through the
// API and as Grafana annotations.
func TestChanges(t *testing.T) {
	storetest.EachDSN(t, func(t *testing.T, dsn string) {
		th := startHub(t, testConfig(t, dsn, true))
		ctx := context.Background()
		th.enrol(t, enrolBody("m-web", "web-1", ""), http.StatusCreated)
		th.enrol(t, enrolBody("m-pending", "new-1", ""), http.StatusCreated)
		hs, err := th.Inventory().ListHosts(ctx, inventory.HostFilter{MachineID: "m-pending"})
		if err != nil || len(hs) != 1 {
			t.Fatal(hs, err)
		}
		hs[0].Status = inventory.StatusPending
		if _, err := th.Inventory().UpdateHost(ctx, hs[0]); err != nil {
			t.Fatal(err)
		}

		at := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
		events := []changes.Event{
			{Seq: 1, Host: "ignored", Time: at, Kind: "packages", Object: "nginx:amd64", Action: changes.Changed,
				Before: changes.Object{"version": "1.24"}, After: changes.Object{"version": "1.26"}, Files: []string{"/usr/sbin/nginx"}},
			{Seq: 2, Time: at.Add(time.Minute), Kind: "files", Object: "/usr/bin/ls", Action: changes.Changed, Tampered: true,
				After: changes.Object{"package": "coreutils"}},
		}
		c := &enrol.Client{}
		acked, err := c.ShipChanges(ctx, th.srv.URL, testToken, "m-web", "journal-1", events)
		if err != nil || acked != 2 {
			t.Fatalf("ShipChanges: %d, %v", acked, err)
		}
		// Sent again (the answer was lost), with one more: stored once each.
		events = append(events, changes.Event{Seq: 3, Time: at.Add(2 * time.Minute), Kind: "users", Object: "deploy", Action: changes.Added})
		if acked, err = c.ShipChanges(ctx, th.srv.URL, testToken, "m-web", "journal-1", events); err != nil || acked != 3 {
			t.Fatalf("ShipChanges again: %d, %v", acked, err)
		}
		if acked, err = c.ShipChanges(ctx, th.srv.URL, testToken, "m-web", "journal-1", nil); err != nil || acked != 0 {
			t.Fatalf("empty batch: %d, %v", acked, err)
		}

		refused := []struct {
			name, token, machine string
			events               []changes.Event
			code                 int
			says                 string
		}{
			{"pending host", testToken, "m-pending", events, 403, "not an active enrolled host"},
			{"unknown machine", testToken, "m-nobody", events, 403, "not an active enrolled host"},
			{"wrong token", strings.Repeat("x", 40), "m-web", events, 401, "enrolment token"},
			{"invalid event", testToken, "m-web", []changes.Event{{Seq: 4, Time: at, Kind: "Weather!", Object: "x", Action: "added"}}, 400, "events[0].kind"},
		}
		for _, tt := range refused {
			_, err := c.ShipChanges(ctx, th.srv.URL, tt.token, tt.machine, "journal-1", tt.events)
			var he *enrol.HubError
			if !errors.As(err, &he) || he.StatusCode != tt.code || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("%s: %v, want a %d saying %q", tt.name, err, tt.code, tt.says)
			}
		}

		// What ShipChanges cannot send: no machine id, too many events, too large, not JSON.
		hdr := bearer(testToken)
		if code, body := th.do(t, "POST", "/api/v1/changes", hdr, `{"journal":"j","events":[]}`); code != 400 || !strings.Contains(body, MachineIDHeader) {
			t.Errorf("no machine id: %d %s", code, body)
		}
		hdr.Set(MachineIDHeader, "m-web")
		many, _ := json.Marshal(ChangesRequest{Journal: "j", Events: make([]changes.Event, changelog.MaxBatch+1)})
		if code, body := th.do(t, "POST", "/api/v1/changes", hdr, string(many)); code != 413 || !strings.Contains(body, "at most 1000") {
			t.Errorf("too many events: %d %.200s", code, body)
		}
		huge := `{"journal":"j","events":[{"seq":1,"kind":"config_files","action":"changed","object":"/etc/x","diff":"` + strings.Repeat("x", maxChangesBody) + `"}]}`
		if code, body := th.do(t, "POST", "/api/v1/changes", hdr, huge); code != 413 || !strings.Contains(body, "8 MiB") {
			t.Errorf("too large: %d %.200s", code, body)
		}
		for _, bad := range []string{`not json`, `{"journal":"j","events":[]} {}`, `{"journal":"j","events":{}}`} {
			if code, body := th.do(t, "POST", "/api/v1/changes", hdr, bad); code != 400 || !strings.Contains(body, `"error"`) {
				t.Errorf("%s: %d %s", bad, code, body)
			}
		}

		// Read back through the API.
		web, err := th.Inventory().ListHosts(ctx, inventory.HostFilter{MachineID: "m-web"})
		if err != nil || len(web) != 1 {
			t.Fatal(web, err)
		}
		code, body := th.do(t, "GET", "/api/v1/hosts/"+web[0].ID+"/changes?kind=packages,files", bearer(th.apiToken), "")
		var page struct {
			Items []struct {
				Host, Kind, Object, Summary string
				Tampered                    bool
			}
		}
		if err := json.Unmarshal([]byte(body), &page); code != 200 || err != nil || len(page.Items) != 2 ||
			page.Items[0].Object != "/usr/bin/ls" || !page.Items[0].Tampered || page.Items[1].Host != "web-1" ||
			page.Items[1].Summary != "packages: nginx:amd64 upgraded from 1.24 to 1.26" {
			t.Errorf("host changes: %d %s", code, body)
		}
		if code, _ := th.do(t, "GET", "/api/v1/clients/"+web[0].ClientID+"/changes", nil, ""); code != 401 {
			t.Errorf("client changes without credentials: %d", code)
		}

		// Grafana: an API token by basic auth, as Grafana sends it.
		grafana := http.Header{"Authorization": {"Basic " + basic("admin", th.apiToken)}, "Content-Type": {"application/json"}}
		if code, _ := th.do(t, "GET", "/grafana/changes/", grafana, ""); code != 200 {
			t.Errorf("grafana test: %d", code)
		}
		if code, _ := th.do(t, "GET", "/grafana/changes/", nil, ""); code != 401 {
			t.Errorf("grafana without credentials: %d", code)
		}
		req := fmt.Sprintf(`{"range":{"from":%q,"to":%q},"annotation":{"name":"changes","enable":true,"query":"client=local host=web-1 kind=files"}}`,
			at.Add(-time.Hour).Format(time.RFC3339), at.Add(time.Hour).Format(time.RFC3339))
		code, body = th.do(t, "POST", "/grafana/changes/annotations", grafana, req)
		var anns []changelog.Annotation
		if err := json.Unmarshal([]byte(body), &anns); code != 200 || err != nil || len(anns) != 1 ||
			anns[0].Time != at.Add(time.Minute).UnixMilli() || !strings.Contains(anns[0].Title, "TAMPERED web-1") ||
			strings.Join(anns[0].Tags, ",") != "files,web-1,local,tampered" || !strings.Contains(string(anns[0].Annotation), `"name":"changes"`) {
			t.Errorf("annotations: %d %s", code, body)
		}

		// Housekeeping drops events older than the retention (400 days by default).
		old := []changes.Event{{Seq: 10, Time: time.Now().AddDate(0, 0, -401), Kind: "os", Object: "kernel", Action: changes.Changed}}
		if _, err := c.ShipChanges(ctx, th.srv.URL, testToken, "m-web", "journal-1", old); err != nil {
			t.Fatal(err)
		}
		th.pruneChanges(ctx)
		if recs, err := th.changes.List(ctx, changelog.Filter{}); err != nil || len(recs) != 3 {
			t.Errorf("after pruning: %d events, %v; want the 3 recent ones", len(recs), err)
		}

		// Events go when their host does.
		if err := th.Inventory().DeleteHost(ctx, web[0].ID); err != nil {
			t.Fatal(err)
		}
		if recs, err := th.changes.List(ctx, changelog.Filter{}); err != nil || len(recs) != 0 {
			t.Errorf("after deleting the host: %d events, %v", len(recs), err)
		}
	})
}

func TestChangesRetentionConfig(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{{"", changelog.DefaultRetention, true}, {"90d", 90 * 24 * time.Hour, true}, {"forever", 0, false}} {
		cfg := Config{DataDir: t.TempDir(), Changes: ChangesConfig{Retention: tt.in}}
		fe := cfg.Validate()
		if ok := len(fe) == 0; ok != tt.ok || (ok && cfg.changesRetention != tt.want) {
			t.Errorf("retention %q: %v, %s", tt.in, fe, cfg.changesRetention)
		}
	}
}
