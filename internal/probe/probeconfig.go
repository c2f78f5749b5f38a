package probe

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/serversage/sage/internal/config"
)

// The scheduler's defaults. A target probes every 15 s unless it says otherwise: Prometheus's
// default scrape interval, so a probe's series are as fresh as the host's. ICMP rounds are
// typically run every 1 s to 60 s; the mesh's every 10 s (DefaultMeshInterval).
const (
	DefaultInterval    = 15 * time.Second
	MinInterval        = 100 * time.Millisecond
	DefaultConcurrency = 256
)

// The mesh's defaults: every peer gets a round of 10 echo requests 100 ms apart every 10 s (about
// one packet a second per peer, smokeping_prober's rate, in one burst that measures jitter between
// consecutive packets) and a TCP connect to its agent's port at the same interval. The peer list is
// fetched from the hub every minute.
const (
	DefaultMeshInterval    = 10 * time.Second
	DefaultMeshRefresh     = time.Minute
	DefaultMeshICMPCount   = 10
	DefaultMeshICMPSpacing = 100 * time.Millisecond
	MeshICMPModule         = "mesh_icmp"
	MeshTCPModule          = "mesh_tcp"
	MeshThroughputModule   = "mesh_throughput"
	// DefaultMeshThroughputSize is what one mesh throughput probe pulls from a peer: enough to
	// leave TCP's slow start behind on a LAN, small enough to run hourly on every pair of hosts.
	DefaultMeshThroughputSize int64 = 8 << 20
)

// Config is the agent configuration's `probes:` section.
type Config struct {
	// Modules are probe configurations by name, blackbox_exporter's shape. They add to, and
	// replace by name, the built-in ones (DefaultModules) and those of ModulesFile.
	Modules map[string]Module `yaml:"modules"`
	// ModulesFile is a blackbox_exporter configuration file whose `modules:` are loaded, relative
	// to the agent's configuration file.
	ModulesFile string `yaml:"modules_file"`
	// AuthModules are named credentials for database probes (db.auth_module).
	AuthModules map[string]AuthModule `yaml:"auth_modules"`
	// Targets are probed continuously by the agent's scheduler.
	Targets []Target `yaml:"targets"`
	// Interval is a target's interval when it sets none; default DefaultInterval.
	Interval time.Duration `yaml:"interval"`
	// Concurrency bounds the probes running at once; default DefaultConcurrency.
	Concurrency int `yaml:"concurrency"`

	Mesh             MeshConfig             `yaml:"mesh"`
	ThroughputServer ThroughputServerConfig `yaml:"throughput_server"`

	// BaseDir resolves a relative ModulesFile: the directory of the configuration file. Set it
	// before the configuration is validated.
	BaseDir string `yaml:"-"`

	modules map[string]*Module // the merged, validated modules: set by Validate
}

// MeshConfig is the east-west mesh: when the agent is enrolled with a hub, the hub's list of this
// host's peers becomes probe targets without configuration.
type MeshConfig struct {
	Enabled     *bool         `yaml:"enabled"`      // nil: on when enrolled
	Interval    time.Duration `yaml:"interval"`     // between probes of a peer; default 10 s
	Refresh     time.Duration `yaml:"refresh"`      // between fetches of the peer list; default 1 min
	ICMPCount   int           `yaml:"icmp_count"`   // echo requests per round; default 10
	ICMPSpacing time.Duration `yaml:"icmp_spacing"` // between a round's requests; default 100 ms
	TCP         *bool         `yaml:"tcp"`          // connect to the peer's agent port too; nil: true
	// ThroughputInterval, when set, pulls ThroughputSize bytes from each peer's /throughput that
	// often (module mesh_throughput, authenticated by the mesh token). Off by default: bulk
	// transfers between every pair of hosts are a choice, not something to find on the bill.
	ThroughputInterval time.Duration `yaml:"throughput_interval"`
	ThroughputSize     int64         `yaml:"throughput_size"` // bytes; default 8 MiB
}

// ThroughputServerConfig is the agent's /throughput endpoint, which other agents (or `sage probe
// throughput`) pull bulk data from. It answers only bearer tokens: the hub's mesh token and those
// of TokensFile (one a line).
type ThroughputServerConfig struct {
	Enabled       *bool  `yaml:"enabled"` // nil: on when enrolled or when tokens_file is set
	TokensFile    string `yaml:"tokens_file"`
	MaxBytes      int64  `yaml:"max_bytes"`      // per request; 0: DefaultThroughputServerMaxBytes (256 MiB)
	Rate          int64  `yaml:"rate"`           // bytes per second; 0: DefaultThroughputServerRate (100 MiB/s)
	MaxConcurrent int    `yaml:"max_concurrent"` // transfers at once; 0: DefaultThroughputServerMaxConcurrent (2)
}

// MeshEnabled reports whether the mesh runs, given whether the agent is enrolled.
func (c *Config) MeshEnabled(enrolled bool) bool {
	if c.Mesh.Enabled != nil {
		return *c.Mesh.Enabled && enrolled
	}
	return enrolled
}

// ThroughputEnabled reports whether /throughput is served, given whether the agent is enrolled.
func (c *Config) ThroughputEnabled(enrolled bool) bool {
	if c.ThroughputServer.Enabled != nil {
		return *c.ThroughputServer.Enabled
	}
	return enrolled || c.ThroughputServer.TokensFile != ""
}

// DefaultModules are the modules available with no configuration: blackbox_exporter's shipped
// blackbox.yml (http_2xx, http_post_2xx, tcp_connect, ssh_banner, icmp, icmp_ttl5) and a dns module
// from its example.yml, plus the mesh's two.
func DefaultModules() map[string]Module {
	return map[string]Module{
		"http_2xx":      {Prober: "http", HTTP: HTTPModule{IPProtocol: IPProtocol{Preferred: "ip4"}}},
		"http_post_2xx": {Prober: "http", HTTP: HTTPModule{Method: "POST"}},
		"tcp_connect":   {Prober: "tcp"},
		"ssh_banner": {Prober: "tcp", TCP: TCPModule{QueryResponse: []QueryResponse{
			{Expect: "^SSH-2.0-"}, {Send: "SSH-2.0-blackbox-ssh-check"}}}},
		"icmp":      {Prober: "icmp"},
		"icmp_ttl5": {Prober: "icmp", Timeout: 5 * time.Second, ICMP: ICMPModule{TTL: 5}},
		"dns": {Prober: "dns", DNS: DNSModule{QueryName: "www.prometheus.io", QueryType: "A",
			ValidRcodes: []string{"NOERROR"}}},
		MeshICMPModule: {Prober: "icmp", ICMP: ICMPModule{Count: DefaultMeshICMPCount, Interval: DefaultMeshICMPSpacing}},
		MeshTCPModule:  {Prober: "tcp"},
		// Time-boxed: a slow link reports the rate it managed rather than only a failure.
		MeshThroughputModule: {Prober: "throughput", Timeout: 30 * time.Second, Throughput: ThroughputModule{
			SizeBytes: DefaultMeshThroughputSize, AllowPartial: true}},
	}
}

// Module returns the named module of a validated configuration (or of the defaults, for a zero
// Config).
func (c *Config) Module(name string) (*Module, bool) {
	if c.modules == nil {
		c.Validate("probes")
	}
	m, ok := c.modules[name]
	return m, ok
}

// ModuleNames lists the modules available, sorted.
func (c *Config) ModuleNames() []string {
	if c.modules == nil {
		c.Validate("probes")
	}
	return slices.Sorted(maps.Keys(c.modules))
}

// reservedLabels are the scheduler's own label names, which a target's labels must not take.
var reservedLabels = map[string]bool{"target": true, "module": true, "reason": true, "le": true, "job": true, "instance": true}

// Validate checks the section, loads ModulesFile, resolves auth modules and merges the modules;
// path is the section's place in the file ("probes").
func (c *Config) Validate(path string) []config.FieldError {
	var errs []config.FieldError
	merged := map[string]*Module{}
	for name, m := range DefaultModules() {
		merged[name] = &m
	}
	if c.Mesh.ICMPCount != 0 || c.Mesh.ICMPSpacing != 0 {
		m := merged[MeshICMPModule]
		if c.Mesh.ICMPCount != 0 {
			m.ICMP.Count = c.Mesh.ICMPCount
		}
		if c.Mesh.ICMPSpacing != 0 {
			m.ICMP.Interval = c.Mesh.ICMPSpacing
		}
	}
	for name, a := range c.AuthModules {
		if a.Password.File != "" && a.Password.Env != "" {
			errs = append(errs, config.Errorf(path+".auth_modules."+name+".password", "file and env are exclusive"))
		}
	}
	if c.ModulesFile != "" {
		file := c.ModulesFile
		if !filepath.IsAbs(file) && c.BaseDir != "" {
			file = filepath.Join(c.BaseDir, file)
		}
		mods, err := LoadModulesFile(file, c.AuthModules)
		if err != nil {
			// The modules file's own errors carry its name and lines; they are indented under
			// the field that names the file.
			errs = append(errs, config.Errorf(path+".modules_file", "%s", strings.ReplaceAll(err.Error(), "\n", "\n    ")))
		}
		for name, m := range mods {
			merged[name] = m
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		m := c.Modules[name]
		p := path + ".modules." + name
		errs = append(errs, validateModule(&m, p, c.AuthModules)...)
		merged[name] = &m
	}

	if c.Interval != 0 && c.Interval < MinInterval {
		errs = append(errs, config.Errorf(path+".interval", "%v is below the minimum %v", c.Interval, MinInterval))
	}
	if c.Concurrency < 0 {
		errs = append(errs, config.Errorf(path+".concurrency", "must not be negative"))
	}
	seen := map[string]int{}
	for i, t := range c.Targets {
		p := fmt.Sprintf("%s.targets[%d]", path, i)
		if t.Target == "" {
			errs = append(errs, config.Errorf(p+".target", "missing"))
		}
		if t.Module == "" {
			errs = append(errs, config.Errorf(p+".module", "missing; one of %v", slices.Sorted(maps.Keys(merged))))
		} else if _, ok := merged[t.Module]; !ok {
			errs = append(errs, config.Errorf(p+".module", "unknown module %q; one of %v", t.Module, slices.Sorted(maps.Keys(merged))))
		}
		if t.Interval != 0 && t.Interval < MinInterval {
			errs = append(errs, config.Errorf(p+".interval", "%v is below the minimum %v", t.Interval, MinInterval))
		}
		for _, k := range slices.Sorted(maps.Keys(t.Labels)) {
			switch {
			case !model.LabelName(k).IsValidLegacy() || strings.HasPrefix(k, "__"):
				errs = append(errs, config.Errorf(p+".labels."+k, "not a valid label name"))
			case reservedLabels[k]:
				errs = append(errs, config.Errorf(p+".labels."+k, "reserved label name"))
			}
		}
		key := t.name() + "\x00" + t.Module
		if j, dup := seen[key]; dup {
			errs = append(errs, config.Errorf(p, "same name %q and module %q as targets[%d]", t.name(), t.Module, j))
		}
		seen[key] = i
	}

	m := c.Mesh
	if m.Interval != 0 && m.Interval < MinInterval {
		errs = append(errs, config.Errorf(path+".mesh.interval", "%v is below the minimum %v", m.Interval, MinInterval))
	}
	if m.Refresh != 0 && m.Refresh < time.Second {
		errs = append(errs, config.Errorf(path+".mesh.refresh", "%v is below the minimum 1s", m.Refresh))
	}
	if m.ICMPCount < 0 || m.ICMPCount > 1000 {
		errs = append(errs, config.Errorf(path+".mesh.icmp_count", "must be between 1 and 1000"))
	}
	if m.ICMPSpacing < 0 {
		errs = append(errs, config.Errorf(path+".mesh.icmp_spacing", "must not be negative"))
	}
	if m.ThroughputInterval != 0 && m.ThroughputInterval < time.Second {
		errs = append(errs, config.Errorf(path+".mesh.throughput_interval", "%v is below the minimum 1s", m.ThroughputInterval))
	}
	if m.ThroughputSize < 0 || m.ThroughputSize > MaxThroughputSize {
		errs = append(errs, config.Errorf(path+".mesh.throughput_size", "must be between 0 (the default, %d) and %d",
			DefaultMeshThroughputSize, MaxThroughputSize))
	}
	ts := c.ThroughputServer
	if ts.TokensFile != "" {
		if _, err := ts.ReadTokens(c.BaseDir); err != nil {
			errs = append(errs, config.Errorf(path+".throughput_server.tokens_file", "%v", err))
		}
	}
	if ts.MaxBytes < 0 {
		errs = append(errs, config.Errorf(path+".throughput_server.max_bytes", "must not be negative"))
	}
	if ts.Rate < 0 {
		errs = append(errs, config.Errorf(path+".throughput_server.rate", "must not be negative"))
	}
	if ts.MaxConcurrent < 0 {
		errs = append(errs, config.Errorf(path+".throughput_server.max_concurrent", "must not be negative"))
	}
	c.modules = merged
	return errs
}

// validateModule validates m and resolves its auth module.
func validateModule(m *Module, path string, auth map[string]AuthModule) []config.FieldError {
	errs := m.Validate(path)
	if name := m.DB.AuthModule; name != "" {
		if a, ok := auth[name]; ok {
			m.DB.Auth = &a
		} else {
			errs = append(errs, config.Errorf(path+".db.auth_module", "unknown auth module %q; known: %v", name, slices.Sorted(maps.Keys(auth))))
		}
	}
	return errs
}

// modulesFile is a blackbox_exporter configuration file: its `modules:`, and ServerSage's
// `auth_modules:` for database modules.
type modulesFile struct {
	Modules     map[string]Module     `yaml:"modules"`
	AuthModules map[string]AuthModule `yaml:"auth_modules"`

	auth map[string]AuthModule // of the agent's configuration
}

func (f *modulesFile) Validate() []config.FieldError {
	auth := maps.Clone(f.auth)
	if auth == nil {
		auth = map[string]AuthModule{}
	}
	maps.Copy(auth, f.AuthModules)
	var errs []config.FieldError
	for _, name := range slices.Sorted(maps.Keys(f.Modules)) {
		m := f.Modules[name]
		errs = append(errs, validateModule(&m, "modules."+name, auth)...)
		f.Modules[name] = m
	}
	return errs
}

// LoadModulesFile loads the `modules:` of a blackbox_exporter configuration file, strictly: an
// unknown field or an invalid module is an error naming the file and line. auth resolves the
// database modules' auth_module, with the file's own `auth_modules:` if it has any.
func LoadModulesFile(path string, auth map[string]AuthModule) (map[string]*Module, error) {
	f := &modulesFile{auth: auth}
	if err := config.LoadFile(path, f); err != nil {
		return nil, err
	}
	out := make(map[string]*Module, len(f.Modules))
	for name, m := range f.Modules {
		out[name] = &m
	}
	return out, nil
}

func (t *Target) name() string {
	if t.Name != "" {
		return t.Name
	}
	return t.Target
}

// Scheduled returns the configured targets ready for the scheduler, with their modules resolved
// and defaults applied. The configuration must have been validated without errors.
func (c *Config) Scheduled() []ScheduledTarget {
	out := make([]ScheduledTarget, 0, len(c.Targets))
	for _, t := range c.Targets {
		m, ok := c.Module(t.Module)
		if !ok {
			continue
		}
		iv := t.Interval
		if iv == 0 {
			iv = c.Interval
		}
		if iv == 0 {
			iv = DefaultInterval
		}
		out = append(out, ScheduledTarget{Name: t.name(), Target: t.Target, ModuleName: t.Module,
			Module: m, Interval: iv, Labels: sortedLabels(t.Labels)})
	}
	return out
}

// sortedLabels turns a label map into name/value pairs sorted by name.
func sortedLabels(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		out = append(out, k, m[k])
	}
	return out
}

// ReadTokens reads TokensFile (relative to baseDir): one bearer token a line; blank lines and
// lines starting with # are skipped. No file is no token.
func (c ThroughputServerConfig) ReadTokens(baseDir string) ([]string, error) {
	if c.TokensFile == "" {
		return nil, nil
	}
	file := c.TokensFile
	if !filepath.IsAbs(file) && baseDir != "" {
		file = filepath.Join(baseDir, file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading tokens: %w", err)
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	return out, nil
}
