package hub

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/serversage/sage/internal/enrol"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store/storetest"
)

const otherToken = "enrol-other-0123456789abcdefghijklmnopqrstuvwxyz"

// The east-west mesh on a real hub, on SQLite and PostgreSQL: two clients, sites and no site,
// pending and unknown machines, asked through the agent's own client (enrol.Client.Peers).
func TestPeers(t *testing.T) {
	storetest.EachDSN(t, func(t *testing.T, dsn string) {
		cfg := testConfig(t, dsn, true)
		otherFile := filepath.Join(t.TempDir(), "other.token")
		if err := os.WriteFile(otherFile, []byte(otherToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.Enrolment = append(cfg.Enrolment, EnrolmentConfig{TokenFile: otherFile, AutoApprove: true, Client: "other"})
		th := startHub(t, cfg)
		ctx := context.Background()
		inv := th.Inventory()

		local, err := inv.GetClientBySlug(ctx, "local")
		if err != nil {
			t.Fatal(err)
		}
		other, err := inv.GetClientBySlug(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		site := func(clientID, name string) string {
			s, err := inv.CreateSite(ctx, inventory.Site{ClientID: clientID, Name: name})
			if err != nil {
				t.Fatal(err)
			}
			return s.ID
		}
		dc1, dc2, otherDC1 := site(local.ID, "dc1"), site(local.ID, "dc2"), site(other.ID, "dc1")

		ids := map[string]string{}
		add := func(token, machine, name, agentURL, siteID string, status inventory.Status) {
			code, body := th.do(t, "POST", "/api/v1/enrol", bearer(token), enrolBody(machine, name, agentURL))
			if code != http.StatusCreated {
				t.Fatalf("enrolling %s: %d %s", name, code, body)
			}
			hs, err := inv.ListHosts(ctx, inventory.HostFilter{MachineID: machine})
			if err != nil || len(hs) != 1 {
				t.Fatalf("%s: %v %v", name, hs, err)
			}
			h := hs[0]
			h.SiteID, h.Status = siteID, status
			if _, err := inv.UpdateHost(ctx, h); err != nil {
				t.Fatal(err)
			}
			ids[name] = h.ID
		}
		add(testToken, "m-alpha", "alpha", "http://127.0.0.1:9501/metrics", dc1, inventory.StatusActive)
		add(testToken, "m-beta", "beta", "http://[::1]:9502/metrics", dc1, inventory.StatusActive)
		add(testToken, "m-zeta", "zeta", "http://127.0.0.1:9503/metrics", dc1, inventory.StatusPending)
		add(testToken, "m-nat", "behind-nat", "", dc1, inventory.StatusActive) // no agent URL: remote write only
		add(testToken, "m-gamma", "gamma", "http://127.0.0.1:9504/metrics", dc2, inventory.StatusActive)
		add(testToken, "m-delta", "delta", "http://127.0.0.1:9505/metrics", "", inventory.StatusActive)
		add(testToken, "m-epsilon", "epsilon", "http://127.0.0.1:9506/metrics", "", inventory.StatusActive)
		add(otherToken, "m-o1", "o1", "http://127.0.0.1:9601/metrics", "", inventory.StatusActive)
		add(otherToken, "m-o2", "o2", "http://127.0.0.1:9602/metrics", "", inventory.StatusActive)
		add(otherToken, "m-o3", "o3", "http://127.0.0.1:9603/metrics", otherDC1, inventory.StatusActive)

		c := &enrol.Client{}
		tokens := map[string]string{} // asking machine -> mesh token
		tests := []struct {
			token, machine string
			want           []Peer
		}{
			{testToken, "m-alpha", []Peer{{ids["beta"], "beta", "::1", "http://[::1]:9502/metrics"}}},
			{testToken, "m-beta", []Peer{{ids["alpha"], "alpha", "127.0.0.1", "http://127.0.0.1:9501/metrics"}}},
			{testToken, "m-nat", []Peer{
				{ids["alpha"], "alpha", "127.0.0.1", "http://127.0.0.1:9501/metrics"},
				{ids["beta"], "beta", "::1", "http://[::1]:9502/metrics"}}},
			{testToken, "m-gamma", nil},
			{testToken, "m-delta", []Peer{{ids["epsilon"], "epsilon", "127.0.0.1", "http://127.0.0.1:9506/metrics"}}},
			{otherToken, "m-o1", []Peer{{ids["o2"], "o2", "127.0.0.1", "http://127.0.0.1:9602/metrics"}}},
			{otherToken, "m-o3", nil},
		}
		for _, tt := range tests {
			p, err := c.Peers(ctx, th.srv.URL, tt.token, tt.machine)
			if err != nil {
				t.Errorf("%s: %v", tt.machine, err)
				continue
			}
			var got []Peer
			for _, e := range p.Peers {
				got = append(got, Peer{e.HostID, e.Name, e.Address, e.AgentURL})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("%s: peers %+v, want %+v", tt.machine, got, tt.want)
			}
			if len(p.MeshToken) != 64 {
				t.Errorf("%s: mesh token %q", tt.machine, p.MeshToken)
			}
			tokens[tt.machine] = p.MeshToken
		}
		if tokens["m-alpha"] != tokens["m-delta"] || tokens["m-alpha"] != tokens["m-gamma"] || tokens["m-o1"] != tokens["m-o3"] {
			t.Errorf("a client's agents got different mesh tokens: %v", tokens)
		}
		if tokens["m-alpha"] == tokens["m-o1"] {
			t.Error("two clients share a mesh token")
		}

		for name, tc := range map[string]struct {
			token, machine string
			code           int
		}{
			"pending host":                  {testToken, "m-zeta", http.StatusForbidden},
			"unknown machine":               {testToken, "m-nobody", http.StatusForbidden},
			"another client's machine":      {otherToken, "m-alpha", http.StatusForbidden},
			"wrong token":                   {testToken + "x", "m-alpha", http.StatusUnauthorized},
			"no token":                      {"", "m-alpha", http.StatusUnauthorized},
			"an API token is not enrolment": {th.apiToken, "m-alpha", http.StatusUnauthorized},
		} {
			_, err := c.Peers(ctx, th.srv.URL, tc.token, tc.machine)
			var he *enrol.HubError
			if !errors.As(err, &he) || he.StatusCode != tc.code {
				t.Errorf("%s: %v, want a %d", name, err, tc.code)
			}
		}
		if code, body := th.do(t, "GET", "/api/v1/peers", bearer(testToken), ""); code != http.StatusBadRequest {
			t.Errorf("no machine id: %d %s", code, body)
		}
		if code, _ := th.do(t, "POST", "/api/v1/peers", bearer(testToken), ""); code == http.StatusOK {
			t.Error("POST /api/v1/peers answered 200")
		}

		// The key is kept in the data directory: a restarted hub gives the same tokens.
		meshKeys.Delete(cfg.DataDir)
		p, err := c.Peers(ctx, th.srv.URL, testToken, "m-alpha")
		if err != nil || p.MeshToken != tokens["m-alpha"] {
			t.Errorf("after reloading the key: %q %v, want %q", p.MeshToken, err, tokens["m-alpha"])
		}
	})
}

func TestMachineIDHeaderAgrees(t *testing.T) {
	if enrol.MachineIDHeader != MachineIDHeader {
		t.Errorf("enrol.MachineIDHeader %q, hub.MachineIDHeader %q", enrol.MachineIDHeader, MachineIDHeader)
	}
}

// Concurrent first uses make one key, kept private, and a corrupt key file is an error rather
// than silently replaced (which would change every agent's token).
func TestMeshKey(t *testing.T) {
	dir := t.TempDir()
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := createMeshKey(filepath.Join(dir, meshKeyFile))
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !slices.Equal(k, keys[0]) || len(k) != 32 {
			t.Fatalf("concurrent creation made different keys: %x", keys)
		}
	}
	st, err := os.Stat(filepath.Join(dir, meshKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", st, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, meshKeyFile+".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	k, err := meshKey(dir)
	if err != nil || !slices.Equal(k, keys[0]) {
		t.Errorf("meshKey: %x %v", k, err)
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, meshKeyFile), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := meshKey(bad); err == nil {
		t.Error("a corrupt key file was accepted")
	}
	if a, b := meshToken(keys[0], "c1"), meshToken(keys[0], "c2"); a == b || a != meshToken(keys[0], "c1") {
		t.Error("mesh tokens are not per client")
	}
}

func TestPeerAddress(t *testing.T) {
	tests := []struct {
		url   string
		addrs []string
		want  string
	}{
		{"http://10.0.0.5:9500/metrics", []string{"10.0.0.9"}, "10.0.0.5"},
		{"http://[fd00::5]:9500/metrics", nil, "fd00::5"},
		{"https://web1.example:9500/metrics", nil, "web1.example"},
		{"http://0.0.0.0:9500/metrics", []string{"10.0.0.9"}, "10.0.0.9"},
		{"http://[::]:9500/metrics", nil, ""},
		{"", []string{"db1.example"}, "db1.example"},
	}
	for _, tt := range tests {
		if got := peerAddress(inventory.Host{AgentURL: tt.url, Addresses: tt.addrs}); got != tt.want {
			t.Errorf("%q %v: %q, want %q", tt.url, tt.addrs, got, tt.want)
		}
	}
}
