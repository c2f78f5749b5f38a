// Package enrol is the agent's side of enrolment with a hub: it gathers what the hub's inventory
// records about this machine (machine id, host name, OS, kernel, CPU, memory, addresses, the URL
// to scrape) and posts it to the hub's /api/v1/enrol. It speaks plain HTTP and JSON and imports
// none of the hub's packages, so that `sage agent` does not link the hub (see docs/architecture.md).
package enrol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Enrolment is the body of POST /api/v1/enrol. Its JSON encoding must match
// inventory.Enrolment's exactly (the hub refuses unknown fields); a test in this package checks it
// against the real type.
type Enrolment struct {
	MachineID string   `json:"machine_id"`
	Hostname  string   `json:"hostname"`
	Addresses []string `json:"addresses"`
	OS        string   `json:"os"`
	Facts     Facts    `json:"facts"`
	AgentURL  string   `json:"agent_url"`
}

// Facts mirrors inventory.Facts.
type Facts struct {
	Hostname    string            `json:"hostname,omitempty"`
	Kernel      string            `json:"kernel,omitempty"`
	OSRelease   string            `json:"os_release,omitempty"` // PRETTY_NAME of os-release
	Arch        string            `json:"arch,omitempty"`
	CPUModel    string            `json:"cpu_model,omitempty"`
	Cores       int               `json:"cores,omitempty"`
	MemoryBytes int64             `json:"memory_bytes,omitempty"`
	Extra       map[string]string `json:"extra,omitempty"`
}

// Sources says where Gather reads from. The zero value of a field means this machine's usual
// place; tests point the files at fixtures and replace the system calls.
type Sources struct {
	// MachineIDFiles are tried in order; systemd's /etc/machine-id, then D-Bus's copy of it,
	// which older or systemd-less systems have instead.
	MachineIDFiles []string
	OSReleaseFiles []string // /etc/os-release, then /usr/lib/os-release (os-release(5))
	ProcPath       string   // cpuinfo, meminfo
	SysPath        string   // devices/system/cpu/online
	Hostname       func() (string, error)
	Uname          func() (release, machine string, err error)
	Addresses      func() ([]string, error)
}

// DefaultSources reads this machine, under rootPath, procPath and sysPath as the agent's
// --path.* flags give them (an agent in a container sees the host's files there).
func DefaultSources(rootPath, procPath, sysPath string) Sources {
	if rootPath == "" {
		rootPath = "/"
	}
	if procPath == "" {
		procPath = "/proc"
	}
	if sysPath == "" {
		sysPath = "/sys"
	}
	return Sources{
		MachineIDFiles: []string{filepath.Join(rootPath, "etc/machine-id"), filepath.Join(rootPath, "var/lib/dbus/machine-id")},
		OSReleaseFiles: []string{filepath.Join(rootPath, "etc/os-release"), filepath.Join(rootPath, "usr/lib/os-release")},
		ProcPath:       procPath,
		SysPath:        sysPath,
	}
}

// Gather collects the enrolment of this machine; AgentURL is left for the caller. Only a missing
// machine id is an error: without it the hub cannot tell this machine from another, and a new host
// would appear on every enrolment. Any other fact that cannot be read is left empty, since an
// enrolment with fewer facts is still worth more than none.
func Gather(src Sources) (Enrolment, error) {
	def := DefaultSources("", "", "")
	if src.MachineIDFiles == nil {
		src.MachineIDFiles = def.MachineIDFiles
	}
	if src.OSReleaseFiles == nil {
		src.OSReleaseFiles = def.OSReleaseFiles
	}
	if src.ProcPath == "" {
		src.ProcPath = def.ProcPath
	}
	if src.SysPath == "" {
		src.SysPath = def.SysPath
	}
	if src.Hostname == nil {
		src.Hostname = os.Hostname
	}
	if src.Uname == nil {
		src.Uname = uname
	}
	if src.Addresses == nil {
		src.Addresses = InterfaceAddresses
	}

	var e Enrolment
	id, err := machineID(src.MachineIDFiles)
	if err != nil {
		return Enrolment{}, err
	}
	e.MachineID = id
	if h, err := src.Hostname(); err == nil {
		e.Hostname = strings.TrimSpace(h)
	}
	if e.Hostname == "" {
		return Enrolment{}, errors.New("enrol: this machine has no host name")
	}
	e.Facts.Hostname = e.Hostname
	e.OS = runtime.GOOS
	if osr := readOSRelease(src.OSReleaseFiles); osr != nil {
		e.Facts.OSRelease = osr["PRETTY_NAME"]
		for _, k := range []string{"ID", "VERSION_ID"} {
			if v := osr[k]; v != "" {
				if e.Facts.Extra == nil {
					e.Facts.Extra = map[string]string{}
				}
				e.Facts.Extra["os_"+strings.ToLower(k)] = v
			}
		}
	}
	if rel, mach, err := src.Uname(); err == nil {
		e.Facts.Kernel, e.Facts.Arch = rel, mach
	}
	if e.Facts.Arch == "" {
		e.Facts.Arch = runtime.GOARCH
	}
	e.Facts.CPUModel = cpuModel(filepath.Join(src.ProcPath, "cpuinfo"))
	e.Facts.Cores = onlineCPUs(filepath.Join(src.SysPath, "devices/system/cpu/online"))
	if e.Facts.Cores == 0 {
		e.Facts.Cores = runtime.NumCPU()
	}
	e.Facts.MemoryBytes = memTotal(filepath.Join(src.ProcPath, "meminfo"))
	if addrs, err := src.Addresses(); err == nil {
		e.Addresses = addrs
	}
	if e.Addresses == nil {
		e.Addresses = []string{}
	}
	return e, nil
}

func machineID(files []string) (string, error) {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("enrol: reading machine id: %w", err)
		}
		if id := strings.TrimSpace(string(b)); id != "" && id != "uninitialized" {
			return id, nil
		}
	}
	return "", fmt.Errorf("enrol: this machine has no machine id (looked in %s); create one with `systemd-machine-id-setup` or `dbus-uuidgen --ensure=/etc/machine-id`",
		strings.Join(files, ", "))
}

// readOSRelease parses os-release(5): KEY=value lines, values optionally quoted.
func readOSRelease(files []string) map[string]string {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		out := map[string]string{}
		for line := range strings.Lines(string(b)) {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			} else if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
				v = v[1 : len(v)-1]
			}
			out[k] = v
		}
		return out
	}
	return nil
}

func cpuModel(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		// x86 says "model name"; arm64 kernels usually give no model name at all, and some
		// architectures say "cpu model" or "Processor".
		switch strings.TrimSpace(k) {
		case "model name", "cpu model", "Processor":
			if v = strings.TrimSpace(v); v != "" {
				return v
			}
		}
	}
	return ""
}

// onlineCPUs counts the CPUs in a kernel CPU list such as "0-3,5,7-8".
func onlineCPUs(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n := 0
	for part := range strings.SplitSeq(strings.TrimSpace(string(b)), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0
		}
		z := a
		if isRange {
			if z, err = strconv.Atoi(hi); err != nil || z < a {
				return 0
			}
		}
		n += z - a + 1
	}
	return n
}

func memTotal(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("MemTotal:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) == 0 {
			return 0
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return 0
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		return n
	}
	return 0
}

func uname() (string, string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", "", err
	}
	return unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:]), nil
}

// InterfaceAddresses lists the addresses of the interfaces that are up, except loopback and
// IPv6 link-local ones: a link-local address needs its zone, which means nothing to the hub.
func InterfaceAddresses() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			ip := p.Addr()
			if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() {
				continue
			}
			out = append(out, ip.Unmap().String())
		}
	}
	return out, nil
}

// AgentURL is the URL the hub should scrape. advertise, when set, is used as given (behind NAT or
// a proxy only the operator knows it). Otherwise it is derived from the address the agent listens
// on: a wildcard address is replaced by the first of addresses (IPv4 first), and a loopback address
// is refused unless the hub is on loopback too, since a hub elsewhere could never scrape it.
func AgentURL(advertise string, listening net.Addr, addresses []string, hubURL string) (string, error) {
	if advertise != "" {
		u, err := url.Parse(advertise)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", fmt.Errorf("--advertise-url %q: must be an http:// or https:// URL with a host", advertise)
		}
		return advertise, nil
	}
	ap, err := netip.ParseAddrPort(listening.String())
	if err != nil {
		return "", fmt.Errorf("the agent's address %s: %w", listening, err)
	}
	host := ap.Addr().Unmap()
	switch {
	case host.IsUnspecified():
		pick := ""
		for _, a := range addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				continue
			}
			if pick == "" || (ip.Is4() && strings.Contains(pick, ":")) {
				pick = a
			}
		}
		if pick == "" {
			return "", fmt.Errorf("the agent listens on %s but this machine has no address the hub could reach it on; set --advertise-url", listening)
		}
		host, _ = netip.ParseAddr(pick)
	case host.IsLoopback() && !hubIsLoopback(hubURL):
		return "", fmt.Errorf("the agent listens on %s, which the hub at %s cannot reach; listen on a reachable address (--listen 0.0.0.0:%d) or set --advertise-url",
			listening, hubURL, ap.Port())
	}
	u := url.URL{Scheme: "http", Host: netip.AddrPortFrom(host, ap.Port()).String(), Path: "/metrics"}
	return u.String(), nil
}

func hubIsLoopback(hubURL string) bool {
	u, err := url.Parse(hubURL)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(u.Hostname())
	return err == nil && ip.IsLoopback()
}
