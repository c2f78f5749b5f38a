package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/hub"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store/storetest"
	"github.com/serversage/sage/internal/testenv"
)

// e2eHub is a real hub (SQLite, embedded TSDB) serving on a loopback port.
type e2eHub struct {
	*hub.Hub
	url      string
	apiToken string
}

// startE2EHub runs the hub on addr with one auto-approving token (client "local") and one that is
// not (client "review"), whose token files it returns.
func startE2EHub(t *testing.T, addr string) (h *e2eHub, autoTok, reviewTok string) {
	t.Helper()
	t.Setenv("SAGE_ADMIN_PASSWORD", "correct horse battery staple")
	dir := t.TempDir()
	autoTok, reviewTok = filepath.Join(dir, "auto.token"), filepath.Join(dir, "review.token")
	for p, tok := range map[string]string{autoTok: "auto-0123456789abcdefghijklmnopqrstuvwxyz", reviewTok: "review-0123456789abcdefghijklmnopqrstuvwxyz"} {
		if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	hh, err := hub.New(ctx, hub.Config{
		DataDir: filepath.Join(dir, "data"),
		Metrics: hub.MetricsConfig{ScrapeInterval: "1s", ScrapeTimeout: "1s"},
		Enrolment: []hub.EnrolmentConfig{
			{TokenFile: autoTok, AutoApprove: true, Client: "local"},
			{TokenFile: reviewTok, Client: "review"},
		},
	}, storetest.Logger(t))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		cancel()
		hh.Close()
		t.Fatal(err)
	}
	srv := &http.Server{Handler: hh.Handler()}
	done := make(chan error, 1)
	go func() { done <- hh.Run(ctx) }()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub Run: %v", err)
		}
		if err := hh.Close(); err != nil {
			t.Errorf("hub Close: %v", err)
		}
	})
	admin, err := hh.Auth().GetUserByName(ctx, auth.AdminUsername)
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := hh.Auth().NewAPIToken(ctx, admin.ID, "e2e", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return &e2eHub{Hub: hh, url: "http://" + addr, apiToken: secret}, autoTok, reviewTok
}

// up returns up{host=name}'s samples through the hub's Prometheus API, as instance -> value.
func (h *e2eHub) up(t *testing.T, name string) map[string]string {
	t.Helper()
	q := fmt.Sprintf(`up{job=%q,host=%q}`, hub.AgentJob, name)
	req, _ := http.NewRequest("GET", h.url+"/prometheus/api/v1/query?query="+url.QueryEscape(q), nil)
	req.Header.Set("Authorization", "Bearer "+h.apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %+v", q, err, r)
	}
	out := map[string]string{}
	for _, s := range r.Data.Result {
		out[s.Metric["instance"]] = fmt.Sprint(s.Value[1])
	}
	return out
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	eventuallyWithin(t, 30*time.Second, what, ok)
}

func eventuallyWithin(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func stopProcess(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not stop on SIGINT")
	}
}

func TestAgentEnrolsWithHub(t *testing.T) {
	bin := testenv.BuildSage(t)
	dir := t.TempDir()
	machineID := filepath.Join(dir, "machine-id")
	if err := os.WriteFile(machineID, []byte(fmt.Sprintf("e2e%x\n", time.Now().UnixNano())), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SAGE_MACHINE_ID_FILE", machineID) // inherited by the agents
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	hubAddr := testenv.FreeAddr(t)
	runAgent := func(tokenFile string) (*exec.Cmd, *testenv.Output, string) {
		addr := testenv.FreeAddr(t)
		cmd, out := testenv.Start(t, "http://"+addr+"/metrics", bin, "agent", "--listen", addr,
			"--state-dir", filepath.Join(t.TempDir(), "state"), "--hub", "http://"+hubAddr, "--token-file", tokenFile)
		return cmd, out, addr
	}

	// The hub is not there yet: the agent serves /metrics anyway (Start waited for it) and retries.
	// Its copy of the token is readable by everyone, which it warns about.
	tokFile := filepath.Join(t.TempDir(), "auto.token")
	if err := os.WriteFile(tokFile, []byte("auto-0123456789abcdefghijklmnopqrstuvwxyz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tokFile, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	agent1, out1, addr1 := runAgent(tokFile)
	eventually(t, "the agent reports the unreachable hub", func() bool { return strings.Contains(out1.String(), "enrolment failed; retrying") })
	if !strings.Contains(out1.String(), "readable by every user") {
		t.Errorf("no warning about the world-readable token file:\n%s", out1.String())
	}

	h, _, reviewTok := startE2EHub(t, hubAddr)
	ctx := context.Background()
	hostOf := func() []inventory.Host {
		hosts, err := h.Inventory().ListHosts(ctx, inventory.HostFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var mine []inventory.Host
		for _, x := range hosts {
			if x.Name == hostname || x.MachineID != "" {
				mine = append(mine, x)
			}
		}
		return mine
	}
	// The agent's retries back off towards two minutes: a hub slow to start on a loaded machine
	// meets an agent waiting out its longest pause.
	eventuallyWithin(t, 4*time.Minute, "the agent enrols once the hub is up", func() bool { return strings.Contains(out1.String(), "enrolled with the hub") })
	hosts := hostOf()
	if len(hosts) != 1 {
		t.Fatalf("hosts: %+v", hosts)
	}
	host := hosts[0]
	if host.Status != inventory.StatusActive || host.Name != hostname || host.AgentURL != "http://"+addr1+"/metrics" ||
		host.OS != "linux" || host.Facts.Kernel == "" || host.Facts.Cores < 1 || host.Facts.MemoryBytes <= 0 {
		t.Errorf("enrolled host: %+v", host)
	}
	if log := out1.String(); !strings.Contains(log, "host_id="+host.ID) || !strings.Contains(log, "status=active") {
		t.Errorf("the agent did not log the host id and status:\n%s", log)
	}
	eventually(t, "up{host} = 1 through the hub's query API", func() bool { return h.up(t, hostname)[addr1] == "1" })

	// SIGHUP enrols again: the same host, refreshed.
	_ = agent1.Process.Signal(syscall.SIGHUP)
	eventually(t, "re-enrolment on SIGHUP", func() bool { return strings.Count(out1.String(), "enrolled with the hub") == 2 })
	if !strings.Contains(out1.String(), "new=false") {
		t.Errorf("re-enrolment not reported as such:\n%s", out1.String())
	}

	// A restarted agent (same machine, another port) updates the host rather than adding one.
	stopProcess(t, agent1)
	_, out2, addr2 := runAgent(tokFile)
	eventually(t, "the restarted agent enrols", func() bool { return strings.Contains(out2.String(), "enrolled with the hub") })
	hosts = hostOf()
	if len(hosts) != 1 || hosts[0].ID != host.ID || hosts[0].AgentURL != "http://"+addr2+"/metrics" {
		t.Fatalf("after restart: %+v (first %s)", hosts, host.ID)
	}
	eventually(t, "the restarted agent scraped", func() bool { return h.up(t, hostname)[addr2] == "1" })

	// A token without auto-approval leaves another machine pending, and the agent says so.
	other := filepath.Join(dir, "other-machine-id")
	if err := os.WriteFile(other, []byte("e2e-other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SAGE_MACHINE_ID_FILE", other)
	_, out3, _ := runAgent(reviewTok)
	eventually(t, "the pending enrolment", func() bool { return strings.Contains(out3.String(), "pending approval") })

	for _, out := range []*testenv.Output{out1, out2, out3} {
		if strings.Contains(out.String(), "0123456789abcdefghijklmnopqrstuvwxyz") {
			t.Errorf("an enrolment token was logged:\n%s", out.String())
		}
	}
}

func TestAgentEnrolFlagErrors(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "tok")
	if err := os.WriteFile(tok, []byte("secret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"hub without token file", []string{"--hub", "http://127.0.0.1:1"}, 2, "--token-file"},
		{"token file without hub", []string{"--token-file", tok}, 2, "need --hub"},
		{"bad hub URL", []string{"--hub", "127.0.0.1:1", "--token-file", tok}, 2, "--hub"},
		{"missing token file", []string{"--hub", "http://127.0.0.1:1", "--token-file", filepath.Join(dir, "nope")}, 2, "no such file"},
		{"loopback agent, remote hub", []string{"--hub", "http://hub.example:10731", "--token-file", tok, "--listen", "127.0.0.1:10730"}, 2, "cannot reach"},
		{"bad advertised URL", []string{"--hub", "http://127.0.0.1:1", "--token-file", tok, "--advertise-url", "host:1"}, 2, "--advertise-url"},
		{"no --token flag", []string{"--hub", "http://127.0.0.1:1", "--token", "secret-token"}, 2, "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := runAgent(append([]string{"--listen", "127.0.0.1:0", "--state-dir", t.TempDir()}, tt.args...), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.msg) {
				t.Errorf("exit %d, stderr %q; want %d with %q", code, stderr.String(), tt.code, tt.msg)
			}
		})
	}
}
