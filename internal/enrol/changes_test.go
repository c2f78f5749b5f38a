package enrol

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/changes"
)

func TestShipChanges(t *testing.T) {
	at := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	events := []changes.Event{
		{Seq: 7, Time: at, Kind: "packages", Object: "nginx:amd64", Action: changes.Changed,
			Before: changes.Object{"version": "1.24"}, After: changes.Object{"version": "1.26"}, Files: []string{"/usr/sbin/nginx"}},
		{Seq: 8, Time: at, Kind: "files", Object: "/usr/bin/ls", Action: changes.Changed, Tampered: true},
	}
	tests := []struct {
		name      string
		code      int
		body      string
		machineID string
		events    []changes.Event
		hubURL    string
		want      uint64
		hubError  int
		errSub    string
	}{
		{"acknowledged", 200, `{"acked":8}`, "m1", events, "", 8, 0, ""},
		{"partly acknowledged", 200, `{"acked":7}`, "m1", events, "", 7, 0, ""},
		{"beyond the batch", 200, `{"acked":9}`, "m1", events, "", 0, 0, "beyond"},
		{"no number", 200, `{}`, "m1", events, "", 0, 0, "not an acknowledgement"},
		{"a proxy's page", 200, `<html>`, "m1", events, "", 0, 0, "not an acknowledgement"},
		{"refused event", 400, `{"error":"change events refused","fields":[{"field":"events[1].kind","message":"unknown"}]}`, "m1", events, "", 0, 400, "events[1].kind"},
		{"pending", 403, `{"error":"this machine is not an active enrolled host of the token's client"}`, "m1", events, "", 0, 403, "not an active enrolled host"},
		{"too large", 413, `{"error":"send fewer"}`, "m1", events, "", 0, 413, "send fewer"},
		{"hub trouble", 503, `{"error":"try again"}`, "m1", events, "", 0, 0, "503"},
		{"no machine id", 200, `{"acked":8}`, "", events, "", 0, 0, "no machine id"},
		{"too many events", 200, `{"acked":8}`, "m1", make([]changes.Event, MaxChangesBatch+1), "", 0, 0, "at most"},
		{"bad hub URL", 200, `{"acked":8}`, "m1", events, "ftp://hub", 0, 0, "must be an http"},
		{"credentials in the hub URL", 200, `{"acked":8}`, "m1", events, "http://u:p@hub", 0, 0, "credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != "POST" || r.URL.Path != "/sage/api/v1/changes" || r.Header.Get("Authorization") != "Bearer "+hubToken ||
					r.Header.Get(MachineIDHeader) != tt.machineID || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("request %s %s %v", r.Method, r.URL.Path, r.Header)
				}
				var got struct {
					Journal string
					Events  []changes.Event
				}
				if err := json.NewDecoder(r.Body).Decode(&got); err != nil || got.Journal != "j1" || len(got.Events) != 2 ||
					got.Events[0].Files[0] != "/usr/sbin/nginx" || !got.Events[1].Tampered || !got.Events[0].Time.Equal(at) {
					t.Errorf("body %+v, %v", got, err)
				}
				jsonAnswer(w, tt.code, tt.body)
			}))
			defer srv.Close()
			hub := tt.hubURL
			if hub == "" {
				hub = srv.URL + "/sage"
			}
			acked, err := (&Client{}).ShipChanges(context.Background(), hub, hubToken, tt.machineID, "j1", tt.events)
			var he *HubError
			switch {
			case tt.hubError != 0:
				if !errors.As(err, &he) || he.StatusCode != tt.hubError || !strings.Contains(err.Error(), tt.errSub) {
					t.Fatalf("error %v, want a HubError %d containing %q", err, tt.hubError, tt.errSub)
				}
			case tt.errSub != "":
				if err == nil || errors.As(err, &he) || !strings.Contains(err.Error(), tt.errSub) {
					t.Fatalf("error %v, want one containing %q", err, tt.errSub)
				}
			case err != nil:
				t.Fatal(err)
			}
			if acked != tt.want {
				t.Errorf("acked %d, want %d", acked, tt.want)
			}
		})
	}
}
