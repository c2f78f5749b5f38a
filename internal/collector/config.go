package collector

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/serversage/sage/internal/config"
)

// DefaultTimeout is each collector's deadline unless configured otherwise: well inside Prometheus's
// default scrape timeout of 10 s, so one slow collector never costs the whole scrape.
const DefaultTimeout = 5 * time.Second

// Config is the collectors' part of the agent configuration (the `collectors:` section).
type Config struct {
	// Enable and Disable name collectors to run or not, on top of each collector's default.
	Enable  []string `yaml:"enable"`
	Disable []string `yaml:"disable"`

	// Timeout is every collector's deadline; Timeouts overrides it per collector.
	Timeout  time.Duration            `yaml:"timeout"`
	Timeouts map[string]time.Duration `yaml:"timeouts"`

	Filesystem    FilesystemConfig `yaml:"filesystem"`
	Diskstats     DeviceFilter     `yaml:"diskstats"`
	Netdev        DeviceFilter     `yaml:"netdev"`
	ProcessGroups []ProcessGroup   `yaml:"process_groups"`
	Listeners     []Listener       `yaml:"listeners"`
	KernelLog     KernelLogConfig  `yaml:"kernel_log"`

	// Where the host's files are. Not in YAML: set by flags, and by tests to fixture trees.
	ProcPath  string `yaml:"-"` // default /proc
	SysPath   string `yaml:"-"` // default /sys
	RootPath  string `yaml:"-"` // default /, prefixed to mount points when the agent runs in a container
	KmsgPath  string `yaml:"-"` // default /dev/kmsg
	UdevPath  string `yaml:"-"` // default /run/udev/data
	StateDir  string `yaml:"-"` // where the agent keeps what must survive restarts (the last boot id)
	BootIDRef string `yaml:"-"` // default <proc>/sys/kernel/random/boot_id
}

// FilesystemConfig selects which mounts the filesystem collector reports.
type FilesystemConfig struct {
	// MountPointsExclude and FSTypesExclude are anchored regular expressions; empty means the
	// node_exporter defaults, which leave out pseudo and virtual file systems.
	MountPointsExclude string `yaml:"mount_points_exclude"`
	FSTypesExclude     string `yaml:"fs_types_exclude"`
	// StatTimeout bounds one statfs call; a mount that does not answer in time (a dead NFS server)
	// is reported as device_error and not asked again until its stuck call returns.
	StatTimeout time.Duration `yaml:"stat_timeout"`
}

// Node_exporter's defaults (collector/filesystem_linux.go), so the same file systems are reported.
const (
	DefaultMountPointsExclude = `^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`
	DefaultFSTypesExclude     = `^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$`
)

// DeviceFilter selects the devices a collector reports.
type DeviceFilter struct {
	// DeviceExclude is an anchored regular expression of device names to leave out; empty means
	// node_exporter's default (partitions and loop/ram devices for diskstats, nothing for netdev).
	DeviceExclude string `yaml:"device_exclude"`
}

// ProcessGroup is a named set of processes watched together, such as "nginx" or "postgres".
type ProcessGroup struct {
	Name  string       `yaml:"name"`
	Match ProcessMatch `yaml:"match"`
	// MinCount is how many processes must run for sage_process_group_up to be 1; 0, the default,
	// means 1: a group is up when at least one of its processes runs.
	MinCount int `yaml:"min_count"`
}

// ProcessMatch selects processes; every field given must match. At least one must be given.
type ProcessMatch struct {
	// Comm is the kernel's process name (/proc/PID/comm), exact.
	Comm string `yaml:"comm"`
	// Exe is the executable's whole path when it contains '/', else its base name; exact. The
	// " (deleted)" the kernel appends after an upgrade replaced the file is ignored.
	Exe string `yaml:"exe"`
	// Cmdline is a regular expression, unanchored, on the arguments joined by spaces.
	Cmdline string `yaml:"cmdline"`
	// User is a user name or a numeric uid: the process's effective uid (ps's USER).
	User string `yaml:"user"`
}

// Listener is a socket that must be listening.
type Listener struct {
	Port  int    `yaml:"port"`
	Proto string `yaml:"proto"` // tcp (default) or udp
	// Process, when set, is the comm name the owning process must have; a listener owned by another
	// process counts as down, because then something else holds the port.
	Process string `yaml:"process"`
}

// KernelLogConfig lists the patterns matched against the kernel log as it arrives.
type KernelLogConfig struct {
	// NoDefaults drops the shipped patterns (OOM killer, I/O errors, file system errors, hung tasks,
	// segfaults), keeping only Patterns.
	NoDefaults bool               `yaml:"no_defaults"`
	Patterns   []KernelLogPattern `yaml:"patterns"`
}

// KernelLogPattern is one named regular expression.
type KernelLogPattern struct {
	Name  string `yaml:"name"`
	Regex string `yaml:"regex"`
}

// DefaultKernelLogPatterns are the classic kernel messages an operator wants to know about.
var DefaultKernelLogPatterns = []KernelLogPattern{
	{Name: "oom_killer", Regex: `Out of memory: Killed process|invoked oom-killer`},
	{Name: "io_error", Regex: `I/O error`},
	{Name: "ext4_error", Regex: `EXT4-fs error`},
	{Name: "xfs_error", Regex: `XFS \([^)]*\): .*(error|corruption|Corruption)`},
	{Name: "hung_task", Regex: `blocked for more than \d+ seconds`},
	{Name: "segfault", Regex: `segfault at`},
}

// EnabledNames resolves Enable and Disable against each collector's default, sorted.
func (c *Config) EnabledNames() []string {
	var names []string
	for _, n := range Names() {
		on := DefaultEnabled(n)
		if slices.Contains(c.Enable, n) {
			on = true
		}
		if slices.Contains(c.Disable, n) {
			on = false
		}
		if on {
			names = append(names, n)
		}
	}
	return names
}

// TimeoutFor is the deadline of the named collector.
func (c *Config) TimeoutFor(name string) time.Duration {
	if d, ok := c.Timeouts[name]; ok && d > 0 {
		return d
	}
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// KernelLogPatterns is the effective pattern list: the defaults unless switched off, then the
// configured ones; a configured pattern with a default's name replaces it.
func (c *Config) KernelLogPatterns() []KernelLogPattern {
	var out []KernelLogPattern
	if !c.KernelLog.NoDefaults {
		for _, d := range DefaultKernelLogPatterns {
			if !slices.ContainsFunc(c.KernelLog.Patterns, func(p KernelLogPattern) bool { return p.Name == d.Name }) {
				out = append(out, d)
			}
		}
	}
	return append(out, c.KernelLog.Patterns...)
}

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_.-]*$`)

// Validate checks the meaning of the collectors' configuration; prefix is the path of the section.
func (c *Config) Validate(prefix string) []config.FieldError {
	var errs []config.FieldError
	f := func(field string) string { return prefix + "." + field }
	for i, n := range c.Enable {
		if !Known(n) {
			errs = append(errs, config.Errorf(f(fmt.Sprintf("enable[%d]", i)), "unknown collector %q (known: %s)", n, strings.Join(Names(), ", ")))
		}
	}
	for i, n := range c.Disable {
		if !Known(n) {
			errs = append(errs, config.Errorf(f(fmt.Sprintf("disable[%d]", i)), "unknown collector %q (known: %s)", n, strings.Join(Names(), ", ")))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, config.Errorf(f("timeout"), "must not be negative"))
	}
	for n, d := range c.Timeouts {
		if !Known(n) {
			errs = append(errs, config.Errorf(f("timeouts."+n), "unknown collector %q", n))
		} else if d <= 0 {
			errs = append(errs, config.Errorf(f("timeouts."+n), "must be positive"))
		}
	}
	for _, re := range []struct{ field, expr string }{
		{"filesystem.mount_points_exclude", c.Filesystem.MountPointsExclude},
		{"filesystem.fs_types_exclude", c.Filesystem.FSTypesExclude},
		{"diskstats.device_exclude", c.Diskstats.DeviceExclude},
		{"netdev.device_exclude", c.Netdev.DeviceExclude},
	} {
		if _, err := regexp.Compile(re.expr); err != nil {
			errs = append(errs, config.Errorf(f(re.field), "invalid regular expression: %v", err))
		}
	}
	if c.Filesystem.StatTimeout < 0 {
		errs = append(errs, config.Errorf(f("filesystem.stat_timeout"), "must not be negative"))
	}

	groups := map[string]int{}
	for i, g := range c.ProcessGroups {
		p := f(fmt.Sprintf("process_groups[%d]", i))
		switch {
		case g.Name == "":
			errs = append(errs, config.Errorf(p+".name", "is required"))
		case !labelNameRE.MatchString(g.Name):
			errs = append(errs, config.Errorf(p+".name", "%q: use letters, digits, '_', '-' and '.'", g.Name))
		default:
			if j, dup := groups[g.Name]; dup {
				errs = append(errs, config.Errorf(p+".name", "duplicate process group %q (also process_groups[%d])", g.Name, j))
			}
			groups[g.Name] = i
		}
		m := g.Match
		if m.Comm == "" && m.Exe == "" && m.Cmdline == "" && m.User == "" {
			errs = append(errs, config.Errorf(p+".match", "give at least one of comm, exe, cmdline, user"))
		}
		if m.Cmdline != "" {
			if _, err := regexp.Compile(m.Cmdline); err != nil {
				errs = append(errs, config.Errorf(p+".match.cmdline", "invalid regular expression: %v", err))
			}
		}
		if len(m.Comm) > 15 {
			errs = append(errs, config.Errorf(p+".match.comm", "%q is longer than the kernel's 15-character comm; match on exe or cmdline instead", m.Comm))
		}
		if g.MinCount < 0 {
			errs = append(errs, config.Errorf(p+".min_count", "must not be negative"))
		}
	}

	type key struct {
		port  int
		proto string
	}
	seen := map[key]int{}
	for i, l := range c.Listeners {
		p := f(fmt.Sprintf("listeners[%d]", i))
		if l.Port < 1 || l.Port > 65535 {
			errs = append(errs, config.Errorf(p+".port", "%d is out of range 1-65535", l.Port))
		}
		proto := l.Proto
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			errs = append(errs, config.Errorf(p+".proto", "%q: must be tcp or udp", l.Proto))
		}
		if len(l.Process) > 15 {
			errs = append(errs, config.Errorf(p+".process", "%q is longer than the kernel's 15-character comm", l.Process))
		}
		k := key{l.Port, proto}
		if j, dup := seen[k]; dup {
			errs = append(errs, config.Errorf(p+".port", "duplicate listener %d/%s (also listeners[%d])", l.Port, proto, j))
		}
		seen[k] = i
	}

	names := map[string]int{}
	for i, kp := range c.KernelLog.Patterns {
		p := f(fmt.Sprintf("kernel_log.patterns[%d]", i))
		if kp.Name == "" {
			errs = append(errs, config.Errorf(p+".name", "is required"))
		} else if j, dup := names[kp.Name]; dup {
			errs = append(errs, config.Errorf(p+".name", "duplicate pattern %q (also patterns[%d])", kp.Name, j))
		}
		names[kp.Name] = i
		if kp.Regex == "" {
			errs = append(errs, config.Errorf(p+".regex", "is required"))
		} else if _, err := regexp.Compile(kp.Regex); err != nil {
			errs = append(errs, config.Errorf(p+".regex", "invalid regular expression: %v", err))
		}
	}
	return errs
}

// withDefaults fills in the paths and values a zero Config leaves empty.
func (c *Config) withDefaults() {
	if c.ProcPath == "" {
		c.ProcPath = "/proc"
	}
	if c.SysPath == "" {
		c.SysPath = "/sys"
	}
	if c.RootPath == "" {
		c.RootPath = "/"
	}
	if c.KmsgPath == "" {
		c.KmsgPath = "/dev/kmsg"
	}
	if c.UdevPath == "" {
		c.UdevPath = "/run/udev/data"
	}
	if c.BootIDRef == "" {
		c.BootIDRef = c.ProcPath + "/sys/kernel/random/boot_id"
	}
	if c.Filesystem.MountPointsExclude == "" {
		c.Filesystem.MountPointsExclude = DefaultMountPointsExclude
	}
	if c.Filesystem.FSTypesExclude == "" {
		c.Filesystem.FSTypesExclude = DefaultFSTypesExclude
	}
	if c.Diskstats.DeviceExclude == "" {
		c.Diskstats.DeviceExclude = DefaultDiskstatsDeviceExclude
	}
	if c.Filesystem.StatTimeout == 0 {
		c.Filesystem.StatTimeout = 2 * time.Second
	}
}
