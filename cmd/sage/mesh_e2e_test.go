package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/serversage/sage/internal/enrol"
	"github.com/serversage/sage/internal/testenv"
)

// TestMeshBetweenTwoAgents enrols two real agents with a real hub, with nothing in their
// configuration naming the other: each must ping the other, connect to its agent port and pull
// bulk data from its /throughput, authenticated by the mesh token the hub handed both, bounded by
// the serving agent's cap, and refused without the token.
func TestMeshBetweenTwoAgents(t *testing.T) {
	bin := testenv.BuildSage(t)
	hubAddr := testenv.FreeAddr(t)
	_, autoTok, _ := startE2EHub(t, hubAddr)

	// The mesh settings are about timing only (so the test need not wait minutes); there is no
	// target, peer or token anywhere in them.
	const agentConfig = `probes:
  mesh:
    interval: 1s
    refresh: 1s
    icmp_count: 3
    icmp_spacing: 50ms
    throughput_interval: 2s
    throughput_size: 1048576
  throughput_server:
    max_bytes: 2097152
`
	type agentProc struct {
		name, addr, machineID string
	}
	start := func(name string) agentProc {
		dir := t.TempDir()
		mid := fmt.Sprintf("mesh%s%x", name, time.Now().UnixNano())
		midFile := filepath.Join(dir, "machine-id")
		cfg := filepath.Join(dir, "agent.yml")
		if err := os.WriteFile(midFile, []byte(mid+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg, []byte(agentConfig), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("SAGE_MACHINE_ID_FILE", midFile) // read by the agent started next
		addr := testenv.FreeAddr(t)
		testenv.Start(t, "http://"+addr+"/healthz", bin, "agent", "--config", cfg, "--listen", addr,
			"--state-dir", filepath.Join(dir, "state"), "--hub", "http://"+hubAddr, "--token-file", autoTok,
			"--hostname", name)
		return agentProc{name: name, addr: addr, machineID: mid}
	}
	a, b := start("mesh-a"), start("mesh-b")

	// value returns a sample of agent's /metrics, matching every label given.
	value := func(agent agentProc, family string, labels map[string]string) (float64, bool) {
		resp, err := http.Get("http://" + agent.addr + "/metrics")
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		tp := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := tp.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatalf("parsing %s's /metrics: %v", agent.name, err)
		}
		f, ok := fams[family]
		if !ok {
			return 0, false
		}
	next:
		for _, m := range f.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue(), true
			}
		}
		return 0, false
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s", what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	for _, pair := range [][2]agentProc{{a, b}, {b, a}} {
		from, to := pair[0], pair[1]
		for _, module := range []string{"mesh_icmp", "mesh_tcp", "mesh_throughput"} {
			waitFor(fmt.Sprintf("%s probes %s with %s", from.name, to.name, module), func() bool {
				v, ok := value(from, "sage_probe_success", map[string]string{"target": to.name, "module": module})
				return ok && v == 1
			})
		}
		if v, _ := value(from, "sage_probe_packets_received_total", map[string]string{"target": to.name, "module": "mesh_icmp"}); v < 3 {
			t.Errorf("%s received %v echo replies from %s, want a round of 3 at least", from.name, v, to.name)
		}
		labels := map[string]string{"target": to.name, "module": "mesh_throughput", "direction": "download"}
		if v, ok := value(from, "sage_probe_throughput_bytes", labels); !ok || v != 1<<20 {
			t.Errorf("%s pulled %v bytes from %s (present %v), want the configured 1 MiB", from.name, v, to.name, ok)
		}
		if v, ok := value(from, "sage_probe_throughput_bytes_per_second", labels); !ok || v <= 0 {
			t.Errorf("%s's throughput from %s: %v (present %v)", from.name, to.name, v, ok)
		}
		// Neither agent probes itself.
		if _, ok := value(from, "sage_probe_success", map[string]string{"target": from.name}); ok {
			t.Errorf("%s probes itself", from.name)
		}
	}

	// The throughput endpoint: no token, a wrong one, then the mesh token beyond and within the cap.
	tok, _, err := enrol.ReadToken(autoTok)
	if err != nil {
		t.Fatal(err)
	}
	peers, err := (&enrol.Client{}).Peers(context.Background(), "http://"+hubAddr, tok, a.machineID)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers.Peers) != 1 || peers.Peers[0].Name != "mesh-b" || peers.MeshToken == "" {
		t.Fatalf("mesh-a's peers: %+v", peers)
	}
	for _, c := range []struct {
		bearer string
		bytes  int
		want   int
	}{
		{"", 1024, http.StatusUnauthorized},
		{"not-the-mesh-token", 1024, http.StatusUnauthorized},
		{peers.MeshToken, 3 << 20, http.StatusBadRequest}, // over mesh-b's max_bytes of 2 MiB
		{peers.MeshToken, 1 << 20, http.StatusOK},
	} {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/throughput?bytes=%d", b.addr, c.bytes), nil)
		if c.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+c.bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET /throughput?bytes=%d with %q: %s, want %d", c.bytes, strings.Repeat("*", len(c.bearer)), resp.Status, c.want)
		}
		if c.want == http.StatusOK && n != int64(c.bytes) {
			t.Errorf("GET /throughput?bytes=%d sent %d bytes", c.bytes, n)
		}
	}
}
