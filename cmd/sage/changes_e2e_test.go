package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/testenv"
)

// TestChangesReachTheHub runs a real hub and an enrolled `sage agent` process with file integrity
// over a temporary tree and one watched configuration file: a file written there is on the host's
// change timeline in the hub's API within seconds, and in its Grafana annotations; a
// configuration edit found by a snapshot follows it, with its diff.
func TestChangesReachTheHub(t *testing.T) {
	bin := testenv.BuildSage(t)
	dir := t.TempDir()
	machineID := filepath.Join(dir, "machine-id")
	if err := os.WriteFile(machineID, []byte(fmt.Sprintf("chg%x\n", time.Now().UnixNano())), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SAGE_MACHINE_ID_FILE", machineID)
	tree := filepath.Join(dir, "tree")
	conf := filepath.Join(dir, "app.conf")
	for p, body := range map[string]string{filepath.Join(tree, "old"): "x", conf: "port 1\n"} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(cfg, []byte("changes:\n  kinds: [config_files]\n  config_files: ["+conf+"]\n  interval: 1m\n  ship_interval: 1s\n"+
		"  fim:\n    start_delay: 0s\n    trees:\n      - path: "+tree+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	hubAddr := testenv.FreeAddr(t)
	h, autoTok, _ := startE2EHub(t, hubAddr)
	addr := testenv.FreeAddr(t)
	_, out := testenv.Start(t, "http://"+addr+"/healthz", bin, "agent", "--config", cfg, "--listen", addr,
		"--state-dir", filepath.Join(dir, "state"), "--hub", "http://"+hubAddr, "--token-file", autoTok)
	eventuallyWithin(t, time.Minute, "the agent enrols", func() bool { return strings.Contains(out.String(), "enrolled with the hub") })
	hosts, err := h.Inventory().ListHosts(context.Background(), inventory.HostFilter{})
	if err != nil || len(hosts) != 1 {
		t.Fatalf("hosts %+v, %v", hosts, err)
	}
	hostID := hosts[0].ID
	// The agent's first FIM scan and snapshot are baselines; the file is written once the scan has run.
	eventuallyWithin(t, time.Minute, "the first FIM scan", func() bool {
		_, body := httpGet(t, "http://"+addr+"/metrics", "")
		return strings.Contains(body, "sage_fim_scans_total 1") && strings.Contains(body, "sage_changes_last_snapshot_timestamp_seconds")
	})
	written := time.Now()
	newFile := filepath.Join(tree, "new.bin")
	if err := os.WriteFile(newFile, []byte("intruder"), 0o755); err != nil {
		t.Fatal(err)
	}

	type event struct {
		Kind, Object, Action, Summary, Diff string
		Time                                time.Time
	}
	timeline := func(query string) []event {
		code, body := httpGet(t, h.url+"/api/v1/hosts/"+hostID+"/changes?"+query, h.apiToken)
		if code != http.StatusOK {
			t.Fatalf("changes API: %d %s", code, body)
		}
		var p struct{ Items []event }
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatalf("changes API: %v\n%s", err, body)
		}
		return p.Items
	}
	find := func(evs []event, kind, object string) *event {
		for i := range evs {
			if evs[i].Kind == kind && evs[i].Object == object {
				return &evs[i]
			}
		}
		return nil
	}
	eventuallyWithin(t, 30*time.Second, "the file event on the hub's timeline", func() bool {
		return find(timeline("kind=files"), "files", newFile) != nil
	})
	t.Logf("write -> hub timeline: %s (ship interval 1 s)", time.Since(written).Round(time.Millisecond))
	if e := find(timeline("kind=files"), "files", newFile); e.Action != "added" {
		t.Errorf("file event %+v, want added", e)
	}
	if evs := timeline("kind=config_files"); len(evs) != 0 {
		t.Errorf("kind filter: %+v", evs)
	}

	// Grafana's SimpleJSON annotation request, as the data source sends it.
	req := fmt.Sprintf(`{"range":{"from":%q,"to":%q},"annotation":{"name":"changes","enable":true,"query":"kind=files"}}`,
		written.Add(-time.Hour).UTC().Format(time.RFC3339), time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	code, body := httpPost(t, h.url+"/grafana/changes/annotations", h.apiToken, req)
	if code != http.StatusOK || !strings.Contains(body, newFile) || !strings.Contains(body, `"files"`) {
		t.Errorf("annotations: %d %s", code, body)
	}
	if code, _ := httpPost(t, h.url+"/grafana/changes/annotations", "", req); code != http.StatusUnauthorized {
		t.Errorf("annotations without a token: %d, want 401", code)
	}

	// A configuration edit, found by the next snapshot (a minute at most): its redacted diff too.
	if err := os.WriteFile(conf, []byte("port 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventuallyWithin(t, 2*time.Minute, "the configuration change on the hub's timeline", func() bool {
		e := find(timeline("kind=config_files"), "config_files", conf)
		return e != nil && strings.Contains(e.Diff, "+port 2")
	})
}

func httpGet(t *testing.T, u, token string) (int, string) {
	t.Helper()
	return httpDo(t, http.MethodGet, u, token, "")
}

func httpPost(t *testing.T, u, token, body string) (int, string) {
	t.Helper()
	return httpDo(t, http.MethodPost, u, token, body)
}

func httpDo(t *testing.T, method, u, token, body string) (int, string) {
	t.Helper()
	if _, err := url.Parse(u); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, u, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
