package probe

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serversage/sage/internal/config"
)

// agentFile is the agent configuration's shape as far as probes go, for loading a `probes:`
// section through internal/config as the agent does.
type agentFile struct {
	Probes Config `yaml:"probes"`
}

func (f *agentFile) Validate() []config.FieldError { return f.Probes.Validate("probes") }

func loadProbes(t *testing.T, dir, yml string) (*Config, error) {
	t.Helper()
	path := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &agentFile{}
	f.Probes.BaseDir = dir
	err := config.LoadFile(path, f)
	return &f.Probes, err
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, yml string
		want      []string // substrings of the error, file:line: field
	}{
		{"unknown prober", `
probes:
  modules:
    web:
      prober: gopher
`, []string{"agent.yml:5: probes.modules.web.prober: unknown prober \"gopher\""}},
		{"unknown field", `
probes:
  modules:
    web:
      prober: http
      htp: {}
`, []string{"agent.yml:6: probes.modules.web.htp: unknown field"}},
		{"target without module, unknown module, bad label, short interval", `
probes:
  targets:
    - target: 127.0.0.1
    - target: 127.0.0.1
      module: nope
    - target: example.com
      module: icmp
      interval: 10ms
      labels:
        module: x
        "bad-name": y
`, []string{
			"agent.yml:4: probes.targets[0].module: missing",
			"agent.yml:6: probes.targets[1].module: unknown module \"nope\"",
			"agent.yml:9: probes.targets[2].interval: 10ms is below the minimum",
			"agent.yml:11: probes.targets[2].labels.module: reserved label name",
			"agent.yml:12: probes.targets[2].labels.bad-name: not a valid label name",
		}},
		{"duplicate target", `
probes:
  targets:
    - {target: a, module: icmp}
    - {target: a, module: icmp}
`, []string{"agent.yml:5: probes.targets[1]: same name \"a\" and module \"icmp\" as targets[0]"}},
		{"unknown auth module", `
probes:
  auth_modules:
    main: {username: probe, password: {env: PGPASS}}
  modules:
    pg:
      prober: postgres
      db: {auth_module: mian}
`, []string{"agent.yml:8: probes.modules.pg.db.auth_module: unknown auth module \"mian\"; known: [main]"}},
		{"missing modules file", `
probes:
  modules_file: nowhere.yml
`, []string{"agent.yml:3: probes.modules_file: reading config"}},
		{"mesh and throughput", `
probes:
  concurrency: -1
  mesh: {interval: 1ms, icmp_count: -2}
  throughput_server: {max_bytes: -1, tokens_file: /nonexistent/tokens}
`, []string{
			"agent.yml:3: probes.concurrency: must not be negative",
			"agent.yml:4: probes.mesh.interval",
			"agent.yml:4: probes.mesh.icmp_count",
			"agent.yml:5: probes.throughput_server.tokens_file: reading tokens",
			"agent.yml:5: probes.throughput_server.max_bytes",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadProbes(t, t.TempDir(), tc.yml)
			if err == nil {
				t.Fatal("loaded; want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// A blackbox.yml's modules load beside the agent's; the agent's own modules win by name; the
// targets and defaults resolve.
func TestConfigModulesFile(t *testing.T) {
	dir := t.TempDir()
	blackbox := `modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      valid_http_versions: ["HTTP/1.1", "HTTP/2.0"]
      valid_status_codes: []  # Defaults to 2xx
      method: GET
      headers:
        Host: vhost.example.com
      follow_redirects: true
      fail_if_ssl: false
      fail_if_body_matches_regexp:
        - "Could not connect to database"
      fail_if_header_matches:
        - header: Set-Cookie
          allow_missing: true
          regexp: '.*'
      tls_config:
        insecure_skip_verify: false
      preferred_ip_protocol: "ip4"
      ip_protocol_fallback: false
  http_with_proxy:
    prober: http
    http:
      proxy_url: "http://127.0.0.1:3128"
      skip_resolve_phase_with_proxy: true
  tcp_connect:
    prober: tcp
    timeout: 7s
  ssh_banner:
    prober: tcp
    tcp:
      query_response:
      - expect: "^SSH-2.0-"
      - send: "SSH-2.0-blackbox-ssh-check"
  icmp:
    prober: icmp
    timeout: 5s
    icmp:
      preferred_ip_protocol: "ip4"
      source_ip_address: "127.0.0.1"
  dns_tcp:
    prober: dns
    dns:
      transport_protocol: "tcp"
      preferred_ip_protocol: "ip4"
      query_name: "www.prometheus.io"
  pg:
    prober: postgres
    db: {auth_module: main, database: test}
`
	if err := os.WriteFile(filepath.Join(dir, "blackbox.yml"), []byte(blackbox), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadProbes(t, dir, `
probes:
  modules_file: blackbox.yml
  auth_modules:
    main: {username: postgres, password: {env: PGPASSWORD}}
  modules:
    tcp_connect: {prober: tcp, timeout: 2s}
  interval: 30s
  targets:
    - {target: "http://127.0.0.1/", module: http_with_proxy, labels: {site: dc1}}
    - {name: gw, target: 10.0.0.1, module: icmp, interval: 1s}
`)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		module string
		check  func(*Module) bool
	}{
		{"http_2xx", func(m *Module) bool {
			return m.HTTP.Headers["Host"] == "vhost.example.com" && m.HTTP.Fallback != nil && !*m.HTTP.Fallback
		}},
		{"http_with_proxy", func(m *Module) bool { return m.HTTP.ProxyURL == "http://127.0.0.1:3128" }},
		{"tcp_connect", func(m *Module) bool { return m.Timeout == 2*time.Second }}, // the agent's own wins
		{"ssh_banner", func(m *Module) bool { return len(m.TCP.QueryResponse) == 2 }},
		{"pg", func(m *Module) bool {
			return m.DB.Auth != nil && m.DB.Auth.Username == "postgres" && m.DB.Auth.Password.Env == "PGPASSWORD"
		}},
		{"dns", func(m *Module) bool { return m.Prober == "dns" }},     // built in
		{"icmp_ttl5", func(m *Module) bool { return m.ICMP.TTL == 5 }}, // built in
		{MeshICMPModule, func(m *Module) bool { return m.ICMP.Count == DefaultMeshICMPCount }},
	}
	for _, tc := range tests {
		m, ok := cfg.Module(tc.module)
		if !ok || !tc.check(m) {
			t.Errorf("module %s = %+v (found %v)", tc.module, m, ok)
		}
	}
	st := cfg.Scheduled()
	if len(st) != 2 {
		t.Fatalf("scheduled %d targets, want 2", len(st))
	}
	if st[0].Name != "http://127.0.0.1/" || st[0].Interval != 30*time.Second || strings.Join(st[0].Labels, "=") != "site=dc1" {
		t.Errorf("first target = %+v", st[0])
	}
	if st[1].Name != "gw" || st[1].Interval != time.Second || st[1].Module.ICMP.SourceIPAddress != "127.0.0.1" {
		t.Errorf("second target = %+v", st[1])
	}
}

// An error in the modules file names that file and its line.
func TestConfigModulesFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := "modules:\n  ok:\n    prober: tcp\n  broken:\n    prober: http\n    http:\n      metod: GET\n"
	path := filepath.Join(dir, "bb.yml")
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadModulesFile(path, nil)
	if err == nil || !strings.Contains(err.Error(), path+":7: modules.broken.http.metod: unknown field") {
		t.Fatalf("error = %v", err)
	}
	_, err = loadProbes(t, dir, "probes:\n  modules_file: bb.yml\n")
	if err == nil || !strings.Contains(err.Error(), "agent.yml:2: probes.modules_file") || !strings.Contains(err.Error(), "bb.yml:7:") {
		t.Fatalf("error = %v", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	for _, name := range []string{"http_2xx", "http_post_2xx", "tcp_connect", "icmp", "dns", MeshTCPModule} {
		if _, ok := c.Module(name); !ok {
			t.Errorf("default module %s missing", name)
		}
	}
	if c.MeshEnabled(false) || !c.MeshEnabled(true) {
		t.Error("the mesh is on exactly when enrolled by default")
	}
	off := false
	c.Mesh.Enabled = &off
	if c.MeshEnabled(true) {
		t.Error("mesh.enabled: false is ignored")
	}
	if c.ThroughputEnabled(false) || !c.ThroughputEnabled(true) {
		t.Error("the throughput endpoint is on exactly when enrolled by default")
	}
}

func TestReadTokens(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokens"), []byte("# peers\nalpha\n\n  beta  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ThroughputServerConfig{TokensFile: "tokens"}.ReadTokens(dir)
	if err != nil || strings.Join(got, ",") != "alpha,beta" {
		t.Fatalf("tokens = %q, %v", got, err)
	}
}

// FuzzConfig feeds arbitrary documents to the probes section's loader: it must never panic, and
// a document it accepts must schedule only targets whose module resolved.
func FuzzConfig(f *testing.F) {
	f.Add("probes:\n  targets:\n    - {target: a, module: icmp}\n")
	f.Add("probes:\n  modules:\n    x: {prober: http, http: {method: POST}}\n  targets: [{target: b, module: x, interval: 1s}]\n")
	f.Add("probes:\n  auth_modules: {m: {username: u}}\n  modules: {p: {prober: redis, db: {auth_module: m}}}\n")
	f.Add("probes: {mesh: {enabled: true, icmp_count: 3}, throughput_server: {rate: 5}}\n")
	f.Fuzz(func(t *testing.T, doc string) {
		fl := &agentFile{}
		if err := config.Load("fuzz.yml", []byte(doc), fl); err != nil {
			return
		}
		for _, st := range fl.Probes.Scheduled() {
			if st.Module == nil || st.Interval < MinInterval {
				t.Fatalf("scheduled %+v", st)
			}
		}
	})
}
