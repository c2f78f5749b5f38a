package probe

import (
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/testenv"
)

// startTinyproxy runs Debian's tinyproxy on a free loopback port, allowing 127.0.0.1, with
// CONNECT allowed only to connectPort (0: to any port), and returns its URL.
func startTinyproxy(t *testing.T, connectPort int) string {
	t.Helper()
	bin := testenv.LookPath(t, "tinyproxy", "tinyproxy")
	addr := testenv.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := fmt.Sprintf("Port %s\nListen 127.0.0.1\nTimeout 10\nAllow 127.0.0.1\nMaxClients 50\nLogLevel Info\nDisableViaHeader Yes\n", port)
	if connectPort != 0 {
		conf += fmt.Sprintf("ConnectPort %d\n", connectPort)
	}
	if os.Geteuid() == 0 {
		// tinyproxy drops root for this user; nobody exists on Debian.
		conf += "User nobody\nGroup nogroup\n"
	}
	path := filepath.Join(dir, "tinyproxy.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-d", "-c", path)
	out := &testenv.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("tinyproxy output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tinyproxy did not listen on %s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "http://" + addr
}

func TestHTTPThroughTinyproxy(t *testing.T) {
	plain := httptest.NewServer(testMux())
	t.Cleanup(plain.Close)
	tlsSrv := httptest.NewTLSServer(testMux())
	t.Cleanup(tlsSrv.Close)
	ca := writeCA(t, tlsSrv)
	_, tlsPort, _ := net.SplitHostPort(strings.TrimPrefix(tlsSrv.URL, "https://"))

	open := startTinyproxy(t, 0)
	var otherPort int
	fmt.Sscan(tlsPort, &otherPort)
	denying := startTinyproxy(t, otherPort+1) // CONNECT allowed to a port that is not the target's

	tests := []struct {
		name   string
		target string
		proxy  string
		extra  HTTPModule
		ok     bool
		reason Reason
	}{
		{name: "http", target: plain.URL + "/ok", proxy: open, ok: true},
		{name: "http regex through proxy", target: plain.URL + "/ok", proxy: open, extra: HTTPModule{FailIfBodyNotMatchesRegexp: []string{"hello"}}, ok: true},
		{name: "https via CONNECT", target: tlsSrv.URL + "/ok", proxy: open, ok: true},
		{name: "https via CONNECT, skip resolve", target: tlsSrv.URL + "/ok", proxy: open, extra: HTTPModule{SkipResolvePhaseWithProxy: true}, ok: true},
		{name: "CONNECT port denied", target: tlsSrv.URL + "/ok", proxy: denying, reason: ReasonProxy},
		{name: "proxy cannot reach target", target: "http://" + closedAddr(t) + "/", proxy: open, reason: ReasonStatus},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.extra
			h.ProxyURL = tc.proxy
			h.TLSConfig = TLSConfig{CAFile: ca}
			r := runModule(t, tc.target, Module{Prober: "http", HTTP: h}, 5*time.Second)
			if r.Success != tc.ok || r.Reason != tc.reason {
				t.Fatalf("success %v reason %q (%s), want %v %q", r.Success, r.Reason, r.Detail, tc.ok, tc.reason)
			}
			if tc.ok && strings.HasPrefix(tc.target, "https") {
				if mustSample(t, r, "probe_http_ssl") != 1 || mustSample(t, r, "probe_ssl_earliest_cert_expiry") != float64(tlsSrv.Certificate().NotAfter.Unix()) {
					t.Error("TLS through the tunnel not recorded")
				}
			}
		})
	}
}
