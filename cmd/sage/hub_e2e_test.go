package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/serversage/sage/internal/store/storetest"
	"github.com/serversage/sage/internal/testenv"
)

// hubClient talks to a running hub binary over HTTP, as a script or Grafana would.
type hubClient struct {
	url      string
	apiToken string
}

func (c hubClient) do(t *testing.T, method, path string, header http.Header, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// query runs an instant query and returns its samples as "labels" -> value.
func (c hubClient) query(t *testing.T, q string) map[string]string {
	t.Helper()
	code, body := c.do(t, "GET", "/prometheus/api/v1/query?query="+url.QueryEscape(q), http.Header{"Authorization": {"Bearer " + c.apiToken}}, nil)
	if code != 200 {
		t.Fatalf("query %s: %d %s", q, code, body)
	}
	var r struct {
		Data struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	out := map[string]string{}
	for _, s := range r.Data.Result {
		out[fmt.Sprint(s.Metric)] = fmt.Sprint(s.Value[1])
	}
	return out
}

// createToken runs `sage token create` with args and returns the secret it prints.
func createToken(t *testing.T, bin string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"token", "create", "--name", "e2e"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sage token create: %v\n%s", err, stderr.String())
	}
	tok := strings.TrimSpace(stdout.String())
	if !strings.HasPrefix(tok, "sage_") {
		t.Fatalf("sage token create printed %q", tok)
	}
	return tok
}

func enrolJSON(machineID, hostname string) []byte {
	b, _ := json.Marshal(map[string]any{"machine_id": machineID, "hostname": hostname, "addresses": []string{"127.0.0.1"}, "os": "linux"})
	return b
}

func remoteWriteBody(t *testing.T, name string, v float64, ts time.Time) []byte {
	t.Helper()
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: name}},
		Samples: []prompb.Sample{{Value: v, Timestamp: ts.UnixMilli()}},
	}}}
	b, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, b)
}

// `sage up` on a fresh data directory: this machine is a host of "local" and is scraped; a
// second agent process, with another host name, enrols with the token sage up made and is scraped
// too; an API token from `sage token create` reads it all through /prometheus.
func TestUpEndToEnd(t *testing.T) {
	bin := testenv.BuildSage(t)
	t.Setenv("SAGE_ADMIN_PASSWORD", "correct horse battery staple")
	data := filepath.Join(t.TempDir(), "data")
	addr := testenv.FreeAddr(t)
	_, out := testenv.Start(t, "http://"+addr+"/readyz", bin, "up", "--data", data, "--listen", addr, "--scrape-interval", "1s")
	if !out.WaitFor("ServerSage is running at http://"+addr+"/", 10*time.Second) {
		t.Errorf("sage up did not print its address:\n%s", out.String())
	}
	c := hubClient{url: "http://" + addr, apiToken: createToken(t, bin, "--data", data)}
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	upOf := func(host string) string {
		for labels, v := range c.query(t, fmt.Sprintf(`up{job="sage-agent",client="local",host=%q}`, host)) {
			_ = labels
			return v
		}
		return ""
	}
	eventually(t, "this machine scraped by sage up", func() bool { return upOf(hostname) == "1" })
	eventually(t, "this machine's CPU in the store", func() bool {
		return len(c.query(t, fmt.Sprintf(`node_cpu_seconds_total{client="local",host=%q,mode="idle"}`, hostname))) > 0
	})

	machineID := filepath.Join(t.TempDir(), "machine-id")
	if err := os.WriteFile(machineID, []byte(fmt.Sprintf("second%x\n", time.Now().UnixNano())), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SAGE_MACHINE_ID_FILE", machineID)
	agentAddr := testenv.FreeAddr(t)
	_, agentOut := testenv.Start(t, "http://"+agentAddr+"/metrics", bin, "agent", "--listen", agentAddr,
		"--state-dir", filepath.Join(t.TempDir(), "state"), "--hub", "http://"+addr,
		"--token-file", filepath.Join(data, "enrol.token"), "--hostname", "e2e-second")
	eventually(t, "the second agent enrolled", func() bool { return strings.Contains(agentOut.String(), "enrolled with the hub") })
	eventually(t, "the second agent scraped", func() bool { return upOf("e2e-second") == "1" })
	if upOf(hostname) != "1" {
		t.Error("the first host is no longer up after the second enrolled")
	}
}

// kill -9 of the hub while it ingests samples and writes the inventory: after a restart every
// acknowledged enrolment is there (re-enrolling answers 200, not 201) and every acknowledged
// sample was replayed from the TSDB's WAL.
func TestHubKill9(t *testing.T) {
	bin := testenv.BuildSage(t)
	storetest.EachDSN(t, func(t *testing.T, dsn string) {
		dir := t.TempDir()
		tokFile := filepath.Join(dir, "enrol.token")
		const enrolToken = "kill9-0123456789abcdefghijklmnopqrstuvwxyz"
		if err := os.WriteFile(tokFile, []byte(enrolToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		addr := testenv.FreeAddr(t)
		cfgFile := filepath.Join(dir, "hub.yml")
		cfg := fmt.Sprintf("listen: %s\ndata_dir: data\nstate:\n  dsn: %q\nmetrics:\n  scrape_interval: 1s\nenrolment:\n  - token_file: enrol.token\n    auto_approve: true\n    client: local\n", addr, dsn)
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		start := func() (*exec.Cmd, *testenv.Output) {
			return testenv.Start(t, "http://"+addr+"/readyz", bin, "hub", "--config", cfgFile)
		}
		hubCmd, _ := start()
		c := hubClient{url: "http://" + addr}
		auth := http.Header{"Authorization": {"Bearer " + enrolToken}}
		if code, body := c.do(t, "POST", "/api/v1/enrol", auth, enrolJSON("k-writer", "writer")); code != http.StatusCreated {
			t.Fatalf("enrol the writer: %d %s", code, body)
		}

		var (
			mu        sync.Mutex
			enrolled  []string
			lastValue = -1
			stop      = make(chan struct{})
			wg        sync.WaitGroup
		)
		wg.Add(2)
		go func() { // inventory writes
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("k-%d", i)
				if code, _ := c.do(t, "POST", "/api/v1/enrol", auth, enrolJSON(id, fmt.Sprintf("host-%d", i))); code == http.StatusCreated {
					mu.Lock()
					enrolled = append(enrolled, id)
					mu.Unlock()
				}
			}
		}()
		go func() { // ingest
			defer wg.Done()
			h := http.Header{
				"Authorization": {"Bearer " + enrolToken}, "Sage-Machine-Id": {"k-writer"},
				"Content-Type": {"application/x-protobuf"}, "Content-Encoding": {"snappy"},
				"X-Prometheus-Remote-Write-Version": {"0.1.0"},
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if code, _ := c.do(t, "POST", "/api/v1/write", h, remoteWriteBody(t, "kill9_sequence", float64(i), time.Now())); code/100 == 2 {
					mu.Lock()
					lastValue = i
					mu.Unlock()
				}
			}
		}()
		time.Sleep(2 * time.Second)
		if err := hubCmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = hubCmd.Wait()
		close(stop)
		wg.Wait()
		mu.Lock()
		acked, last := append([]string(nil), enrolled...), lastValue
		mu.Unlock()
		if len(acked) == 0 || last < 1 {
			t.Fatalf("nothing was acknowledged before the kill: %d enrolments, last sample %d", len(acked), last)
		}
		t.Logf("acknowledged before kill -9: %d enrolments, samples 0..%d", len(acked), last)

		start()
		for _, id := range acked {
			code, body := c.do(t, "POST", "/api/v1/enrol", auth, enrolJSON(id, "host-"+strings.TrimPrefix(id, "k-")))
			if code != http.StatusOK {
				t.Errorf("acknowledged host %s after restart: re-enrolment answered %d %s, want 200 (already there)", id, code, body)
			}
		}
		c.apiToken = createToken(t, bin, "--config", cfgFile)
		res := c.query(t, `max_over_time(kill9_sequence[1h])`)
		var got string
		for _, v := range res {
			got = v
		}
		if got == "" || atoi(got) < last {
			t.Errorf("after replay the highest sample is %q, but %d was acknowledged", got, last)
		}
	})
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}
