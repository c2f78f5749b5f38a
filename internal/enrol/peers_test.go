package enrol

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPeers(t *testing.T) {
	const ok = `{"mesh_token":"abc","peers":[
		{"host_id":"h2","name":"web-2","address":"10.0.0.2","agent_url":"http://10.0.0.2:9500/metrics"},
		{"host_id":"h3","name":"web-3","address":"","agent_url":"http://x:1/metrics"},
		{"host_id":"h4","name":"web-4","address":"db.example","agent_url":"http://db.example:9500/metrics","new_field":1}]}`
	tests := []struct {
		name      string
		code      int
		body      string
		machineID string
		hubURL    string // "" the test server
		want      []string
		hubError  int // a *HubError with this status
		errSub    string
	}{
		{"peers", 200, ok, "m1", "", []string{"web-2", "web-4"}, 0, ""},
		{"no peers", 200, `{"mesh_token":"abc","peers":[]}`, "m1", "", nil, 0, ""},
		{"no token in the answer", 200, `{"peers":[]}`, "m1", "", nil, 0, "not a peer list"},
		{"a proxy's page", 200, `<html>`, "m1", "", nil, 0, "not a peer list"},
		{"pending", 403, `{"error":"this machine is not an active enrolled host of the token's client"}`, "m1", "", nil, 403, "not an active enrolled host"},
		{"wrong token", 401, `{"error":"a valid enrolment token is required"}`, "m1", "", nil, 401, "token"},
		{"hub trouble", 503, `{"error":"try again"}`, "m1", "", nil, 0, "503"},
		{"no machine id", 200, ok, " ", "", nil, 0, "no machine id"},
		{"bad hub URL", 200, ok, "m1", "ftp://hub", nil, 0, "must be an http"},
		{"credentials in the hub URL", 200, ok, "m1", "http://u:p@hub", nil, 0, "credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != "GET" || r.URL.Path != "/sage/api/v1/peers" || r.Header.Get("Authorization") != "Bearer "+hubToken ||
					r.Header.Get(MachineIDHeader) != tt.machineID {
					t.Errorf("request %s %s %v", r.Method, r.URL.Path, r.Header)
				}
				jsonAnswer(w, tt.code, tt.body)
			}))
			defer srv.Close()
			hub := tt.hubURL
			if hub == "" {
				hub = srv.URL + "/sage" // a hub behind a path prefix
			}
			p, err := (&Client{}).Peers(context.Background(), hub, hubToken, tt.machineID)
			var he *HubError
			switch {
			case tt.hubError != 0:
				if !errors.As(err, &he) || he.StatusCode != tt.hubError || !strings.Contains(err.Error(), tt.errSub) {
					t.Fatalf("error %v, want a HubError %d", err, tt.hubError)
				}
			case tt.errSub != "":
				if err == nil || errors.As(err, &he) || !strings.Contains(err.Error(), tt.errSub) {
					t.Fatalf("error %v, want one containing %q", err, tt.errSub)
				}
			case err != nil:
				t.Fatal(err)
			}
			var names []string
			for _, peer := range p.Peers {
				names = append(names, peer.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.want, ",") {
				t.Errorf("peers %v, want %v", names, tt.want)
			}
			if err == nil && p.MeshToken != "abc" {
				t.Errorf("mesh token %q", p.MeshToken)
			}
		})
	}
}
