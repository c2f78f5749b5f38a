package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // substring of the error, which must start with file:line
	}{
		{
			name: "bad regex",
			yaml: "collectors:\n  process_groups:\n    - name: web\n      match:\n        cmdline: \"nginx(\"\n",
			want: ":5: collectors.process_groups[0].match.cmdline: invalid regular expression",
		},
		{
			name: "unknown collector",
			yaml: "collectors:\n  disable: [cpu, gpu]\n",
			want: `:2: collectors.disable[1]: unknown collector "gpu"`,
		},
		{
			name: "duplicate group name",
			yaml: "collectors:\n  process_groups:\n    - name: db\n      match: {comm: postgres}\n    - name: db\n      match: {comm: mysqld}\n",
			want: `:5: collectors.process_groups[1].name: duplicate process group "db"`,
		},
		{
			name: "port out of range",
			yaml: "collectors:\n  listeners:\n    - port: 22\n    - port: 70000\n",
			want: ":4: collectors.listeners[1].port: 70000 is out of range 1-65535",
		},
		{
			name: "unknown field",
			yaml: "collectors:\n  timeout: 2s\n  timout: 3s\n",
			want: ":3: collectors.timout: unknown field",
		},
		{
			name: "bad duration",
			yaml: "collectors:\n  timeout: soon\n",
			want: ":2: collectors.timeout: cannot unmarshal",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "agent.yml", tt.yaml)
			_, err := LoadConfig(path)
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.HasPrefix(err.Error(), path+":") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to start with %q and contain %q", err, path+":", tt.want)
			}
		})
	}
}

func TestReloadKeepsConfigOnError(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "agent.yml", "collectors:\n  disable: [loadavg]\n")
	a, err := New(Options{ConfigFile: path, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(a.Collectors(), "loadavg") || !slices.Contains(a.Collectors(), "cpu") {
		t.Fatalf("collectors %v: want cpu without loadavg", a.Collectors())
	}

	writeFile(t, dir, "agent.yml", "collectors:\n  disable: [loadavg, nosuch]\n")
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("reload of a bad config: err = %v, want one naming nosuch", err)
	}
	if slices.Contains(a.Collectors(), "loadavg") {
		t.Fatalf("after a failed reload collectors are %v; want the old set", a.Collectors())
	}
	body := get(t, a.Handler(), "/metrics", "")
	if !strings.Contains(body, "sage_agent_config_last_reload_successful 0") {
		t.Error("a failed reload must show as sage_agent_config_last_reload_successful 0")
	}

	writeFile(t, dir, "agent.yml", "collectors:\n  disable: [cpu]\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(a.Collectors(), "loadavg") || slices.Contains(a.Collectors(), "cpu") {
		t.Fatalf("after reload collectors are %v; want loadavg without cpu", a.Collectors())
	}
	body = get(t, a.Handler(), "/metrics", "")
	if strings.Contains(body, "node_cpu_seconds_total") || !strings.Contains(body, "node_load1") {
		t.Error("the reloaded configuration is not the one served")
	}
	if !strings.Contains(body, "sage_agent_config_last_reload_successful 1") {
		t.Error("a good reload must show as sage_agent_config_last_reload_successful 1")
	}
}

func get(t *testing.T, h http.Handler, path, accept string) string {
	t.Helper()
	srv := newServer(t, h)
	req, _ := http.NewRequest("GET", srv+path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	return string(b)
}

func newServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestExposition(t *testing.T) {
	a, err := New(Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, a.Handler())
	tests := []struct {
		path, accept, wantType, wantBody string
	}{
		{"/metrics", "", "text/plain; version=0.0.4", "# TYPE node_cpu_seconds_total counter"},
		{"/metrics", "application/openmetrics-text;version=1.0.0", "application/openmetrics-text; version=1.0.0", "# EOF"},
		{"/healthz", "", "text/plain; charset=utf-8", "ok"},
		{"/", "", "text/html", "/metrics"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", srv+tt.path, nil)
		if tt.accept != "" {
			req.Header.Set("Accept", tt.accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), tt.wantType) {
			t.Errorf("%s (Accept %q): Content-Type %q, want %q", tt.path, tt.accept, resp.Header.Get("Content-Type"), tt.wantType)
		}
		if !strings.Contains(string(body), tt.wantBody) {
			t.Errorf("%s (Accept %q): body lacks %q", tt.path, tt.accept, tt.wantBody)
		}
	}
}

// TestWebConfig runs the agent with an exporter-toolkit web configuration: TLS and basic auth.
func TestWebConfig(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	writeFile(t, dir, "tls.crt", string(certPEM))
	writeFile(t, dir, "tls.key", string(keyPEM))
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	web := writeFile(t, dir, "web.yml", "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prom: "+string(hash)+"\n")

	a, err := New(Options{Listen: "127.0.0.1:0", WebConfigFile: web, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, nil, ready) }()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	tests := []struct {
		name       string
		scheme     string
		user, pass string
		wantStatus int
	}{
		{"right password", "https", "prom", "s3cret", 200},
		{"wrong password", "https", "prom", "guess", 401},
		{"no credentials", "https", "", "", 401},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", tt.scheme+"://"+addr.String()+"/metrics", nil)
		if tt.user != "" {
			req.SetBasicAuth(tt.user, tt.pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.wantStatus)
		}
	}
	// Plain HTTP to a TLS listener must not be served.
	if resp, err := client.Get("http://" + addr.String() + "/metrics"); err == nil {
		if resp.StatusCode == 200 {
			t.Error("plain HTTP was served on the TLS listener")
		}
		resp.Body.Close()
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not shut down")
	}
}

func TestBadWebConfigRefused(t *testing.T) {
	dir := t.TempDir()
	web := writeFile(t, dir, "web.yml", "tls_server_config:\n  cert_file: missing.crt\n")
	if _, err := New(Options{WebConfigFile: web, StateDir: dir}); err == nil {
		t.Fatal("want an error for a web config naming a missing key file")
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sage-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeConfig(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

func TestExampleConfigIsValid(t *testing.T) {
	if _, err := LoadConfig("../../docs/agent.example.yml"); err != nil {
		t.Fatalf("docs/agent.example.yml: %v", err)
	}
}

// TestDefaultConfigWatchesItself: with no configuration file the agent's own process and listener
// are watched, so a first curl shows the process-group and listener metrics.
func TestDefaultConfigWatchesItself(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // stands for the agent's own listener
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	a, err := New(Options{Listen: addr, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	body := get(t, a.Handler(), "/metrics", "")
	for _, want := range []string{
		`sage_process_group_up{group="sage-agent"} 1`,
		`sage_listener_up{port="` + port + `",proto="tcp"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A configuration file replaces the default entirely.
	path := writeFile(t, t.TempDir(), "agent.yml", "collectors: {}\n")
	a, err = New(Options{ConfigFile: path, Listen: addr, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if body := get(t, a.Handler(), "/metrics", ""); strings.Contains(body, "sage-agent") {
		t.Error("with a configuration file the agent still watches itself")
	}
}
