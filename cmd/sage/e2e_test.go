package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serversage/sage/internal/testenv"
)

type runningAgent struct {
	addr, config string
	cmd          *exec.Cmd
}

// startAgent runs `sage agent` with the given config and waits until it serves /healthz.
func startAgent(t *testing.T, bin, config string) (addr string) {
	t.Helper()
	return startAgentProc(t, bin, config).addr
}

func startAgentProc(t *testing.T, bin, config string) *runningAgent {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	cmd, _ := testenv.Start(t, "http://"+addr+"/healthz", bin, "agent", "--config", cfg, "--listen", addr, "--state-dir", filepath.Join(dir, "state"))
	return &runningAgent{addr: addr, config: cfg, cmd: cmd}
}

func fetch(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %v %s", url, err, resp.Status)
	}
	return string(b)
}

// e2eConfig watches this test process and a listener it opens, so those collectors expose series.
func e2eConfig(listenPort int) string {
	return fmt.Sprintf(`collectors:
  process_groups:
    - name: tests
      match:
        cmdline: "sage|\\.test"
      min_count: 1
  listeners:
    - port: %d
      proto: tcp
`, listenPort)
}

// TestAgentExposesEveryParameter checks section 4.1's parameters on a real agent, then lints the
// exposition with promtool.
func TestAgentExposesEveryParameter(t *testing.T) {
	bin := testenv.BuildSage(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := startAgent(t, bin, e2eConfig(ln.Addr().(*net.TCPAddr).Port))
	body := fetch(t, "http://"+addr+"/metrics")

	families := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = true
		}
	}
	for _, want := range []string{
		// CPU load, RAM, swap (node_exporter names)
		"node_cpu_seconds_total", "node_load1", "node_load5", "node_load15",
		"node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes", "node_memory_SwapFree_bytes", "node_memory_SwapTotal_bytes",
		// processes: total and specific
		"sage_processes", "sage_process_group_processes", "sage_process_group_up",
		// listeners
		"sage_listener_up",
		// disk space and free inodes
		"node_filesystem_avail_bytes", "node_filesystem_size_bytes", "node_filesystem_files_free",
		// disk I/O and network traffic
		"node_disk_read_bytes_total", "node_disk_written_bytes_total",
		"node_network_receive_bytes_total", "node_network_transmit_bytes_total",
		// reboots
		"node_boot_time_seconds", "sage_host_reboots_total",
		// CPU cores
		"sage_cpu_cores",
		// kernel log
		"sage_kernel_log_matches_total",
		// the agent's own health
		"sage_collector_success", "sage_collector_duration_seconds", "sage_build_info",
	} {
		if !families[want] {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "sage_collector_success{") && strings.HasSuffix(line, " 0") {
			t.Errorf("a collector failed on this machine: %s", line)
		}
	}
	if !strings.Contains(body, `sage_listener_up{port="`+fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)+`",proto="tcp"} 1`) {
		t.Errorf("the test's own listener is not reported up")
	}

	promtool := testenv.LookPath(t, "promtool", "prometheus")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, _ := cmd.CombinedOutput() // non-zero when it has anything to say; the lines are what count
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "sage_") {
			t.Errorf("promtool check metrics: %s", line)
		} else if strings.TrimSpace(line) != "" {
			t.Logf("promtool check metrics (not a sage_* family): %s", line)
		}
	}
}

// TestPrometheusScrapesAgent runs the real Prometheus against the agent and checks that it ingests
// every scrape without errors.
func TestPrometheusScrapesAgent(t *testing.T) {
	prom := testenv.LookPath(t, "prometheus", "prometheus")
	bin := testenv.BuildSage(t)
	agentAddr := startAgent(t, bin, e2eConfig(1))

	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sage\n    static_configs:\n      - targets: ['%s']\n", agentAddr)
	promAddr := startPrometheus(t, prom, dir, cfg)

	query := func(q string) (float64, bool) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + q)
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Result) == 0 {
			return 0, false
		}
		var v float64
		fmt.Sscan(fmt.Sprint(r.Data.Result[0].Value[1]), &v)
		return v, true
	}
	// Five good scrapes in a row.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if v, ok := query("count_over_time(up[1m])"); ok && v >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Prometheus did not scrape the agent five times within a minute")
		}
		time.Sleep(500 * time.Millisecond)
	}
	if v, ok := query("min_over_time(up[1m])"); !ok || v != 1 {
		t.Errorf("min_over_time(up[1m]) = %v (%v), want 1: some scrape failed", v, ok)
	}
	if v, ok := query("scrape_samples_scraped"); !ok || v < 100 {
		t.Errorf("scrape_samples_scraped = %v, want hundreds", v)
	}
	for _, q := range []string{
		"prometheus_target_scrapes_sample_duplicate_timestamp_total",
		"prometheus_target_scrapes_sample_out_of_order_total",
		"prometheus_target_scrapes_sample_out_of_bounds_total",
		"prometheus_target_scrapes_exceeded_sample_limit_total",
		"prometheus_target_scrape_pool_exceeded_label_limits_total",
	} {
		if v, ok := query(q); ok && v != 0 {
			t.Errorf("%s = %v, want 0", q, v)
		}
	}
	resp := fetch(t, "http://"+promAddr+"/api/v1/targets")
	if !strings.Contains(resp, `"health":"up"`) || !strings.Contains(resp, `"lastError":""`) {
		t.Errorf("target not healthy: %s", resp)
	}
	// A node_exporter-named series is queryable, so dashboards built on those names work.
	if _, ok := query(`sum(rate(node_cpu_seconds_total{mode!="idle"}[10s]))`); !ok {
		t.Error("node_cpu_seconds_total is not queryable")
	}
}

// TestCheckConfig exercises `sage agent --check-config` as an operator would.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(good, []byte("collectors:\n  disable: [loadavg]\n"), 0o600)
	os.WriteFile(bad, []byte("collectors:\n  listeners:\n    - port: 0\n"), 0o600)
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"agent", "--check-config", "--config", good}, 0, "configuration OK"},
		{[]string{"agent", "--check-config", "--config", bad}, 1, bad + ":3: collectors.listeners[0].port: 0 is out of range"},
		{[]string{"agent", "--check-config", "--config", filepath.Join(dir, "absent.yml")}, 1, "no such file"},
		{[]string{"agent", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"nosuchcommand"}, 2, "unknown command"},
		{[]string{"version"}, 0, "sage, version"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(tt.args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if code != tt.wantCode || !strings.Contains(out, tt.wantOut) {
			t.Errorf("sage %s: exit %d, output %q; want exit %d and %q", strings.Join(tt.args, " "), code, out, tt.wantCode, tt.wantOut)
		}
	}
}

// TestReloadOnSIGHUP sends the real signal: a good file is applied, a bad one refused and the running
// configuration kept.
func TestReloadOnSIGHUP(t *testing.T) {
	bin := testenv.BuildSage(t)
	a := startAgentProc(t, bin, "collectors:\n  disable: [loadavg]\n")
	url := "http://" + a.addr + "/metrics"
	waitFor := func(what string, ok func(body string) bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !ok(fetch(t, url)) {
			if time.Now().After(deadline) {
				t.Fatalf("after SIGHUP: %s never held", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if strings.Contains(fetch(t, url), "node_load1 ") {
		t.Fatal("loadavg is disabled but node_load1 is served")
	}

	os.WriteFile(a.config, []byte("collectors:\n  disable: [cpu]\n"), 0o600)
	a.cmd.Process.Signal(syscall.SIGHUP)
	waitFor("node_load1 served and node_cpu_seconds_total gone", func(b string) bool {
		return strings.Contains(b, "node_load1 ") && !strings.Contains(b, "node_cpu_seconds_total{")
	})

	os.WriteFile(a.config, []byte("collectors:\n  disable: [cpu\n"), 0o600) // broken YAML
	a.cmd.Process.Signal(syscall.SIGHUP)
	waitFor("the failed reload reported", func(b string) bool {
		return strings.Contains(b, "sage_agent_config_last_reload_successful 0")
	})
	if b := fetch(t, url); !strings.Contains(b, "node_load1 ") || strings.Contains(b, "node_cpu_seconds_total{") {
		t.Error("a failed reload changed the running configuration")
	}
}

// startPrometheus runs the real Prometheus with config (its prometheus.yml, written into dir) until
// the test ends, and returns its address once it is ready.
func startPrometheus(t *testing.T, prom, dir, config string) (addr string) {
	t.Helper()
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr = testenv.FreeAddr(t)
	testenv.Start(t, "http://"+addr+"/-/ready", prom, "--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	return addr
}
