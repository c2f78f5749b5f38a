package enrol

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/serversage/sage/internal/inventory"
)

// writeFiles creates files (relative path -> content) under a new temporary directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func fixtureSources(dir string) Sources {
	src := DefaultSources(dir, filepath.Join(dir, "proc"), filepath.Join(dir, "sys"))
	src.Hostname = func() (string, error) { return "web-1\n", nil }
	src.Uname = func() (string, string, error) { return "6.1.0-13-amd64", "x86_64", nil }
	src.Addresses = func() ([]string, error) { return []string{"192.0.2.10", "2001:db8::10"}, nil }
	return src
}

const (
	debianOSRelease = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
# a comment
ID=debian
odd line without equals
`
	cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\n"
	meminfo = "MemTotal:       16318420 kB\nMemFree:         1234 kB\n"
)

func TestGatherFixtures(t *testing.T) {
	full := map[string]string{
		"etc/machine-id":                "3d1219c7c4c5404aaa1f6d2a48adfda4\n",
		"etc/os-release":                debianOSRelease,
		"proc/cpuinfo":                  cpuinfo,
		"proc/meminfo":                  meminfo,
		"sys/devices/system/cpu/online": "0-3,6,8-9\n",
	}
	with := func(over map[string]string, drop ...string) map[string]string {
		m := map[string]string{}
		for k, v := range full {
			m[k] = v
		}
		for k, v := range over {
			m[k] = v
		}
		for _, k := range drop {
			delete(m, k)
		}
		return m
	}
	want := Enrolment{
		MachineID: "3d1219c7c4c5404aaa1f6d2a48adfda4",
		Hostname:  "web-1",
		Addresses: []string{"192.0.2.10", "2001:db8::10"},
		OS:        "linux",
		Facts: Facts{
			Hostname: "web-1", Kernel: "6.1.0-13-amd64", OSRelease: "Debian GNU/Linux 12 (bookworm)", Arch: "x86_64",
			CPUModel: "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz", Cores: 7, MemoryBytes: 16318420 * 1024,
			Extra: map[string]string{"os_id": "debian", "os_version_id": "12"},
		},
	}
	tests := []struct {
		name   string
		files  map[string]string
		change func(*Enrolment)
	}{
		{"complete", full, func(*Enrolment) {}},
		{"dbus machine id", with(map[string]string{"var/lib/dbus/machine-id": "dbus-id-1\n"}, "etc/machine-id"),
			func(e *Enrolment) { e.MachineID = "dbus-id-1" }},
		{"uninitialized machine id falls back", with(map[string]string{"etc/machine-id": "uninitialized\n", "var/lib/dbus/machine-id": "dbus-id-2"}),
			func(e *Enrolment) { e.MachineID = "dbus-id-2" }},
		{"os-release in /usr/lib, single quotes", with(map[string]string{"usr/lib/os-release": "PRETTY_NAME='Alpine Linux v3.20'\nID=alpine\n"}, "etc/os-release"),
			func(e *Enrolment) {
				e.Facts.OSRelease = "Alpine Linux v3.20"
				e.Facts.Extra = map[string]string{"os_id": "alpine"}
			}},
		{"no os-release", with(nil, "etc/os-release"), func(e *Enrolment) { e.Facts.OSRelease, e.Facts.Extra = "", nil }},
		{"arm cpuinfo without model name", with(map[string]string{"proc/cpuinfo": "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n"}),
			func(e *Enrolment) { e.Facts.CPUModel = "" }},
		{"truncated meminfo", with(map[string]string{"proc/meminfo": "MemTotal:"}), func(e *Enrolment) { e.Facts.MemoryBytes = 0 }},
		{"garbage meminfo", with(map[string]string{"proc/meminfo": "MemTotal: lots kB\n"}), func(e *Enrolment) { e.Facts.MemoryBytes = 0 }},
		{"bad cpu list falls back to NumCPU", with(map[string]string{"sys/devices/system/cpu/online": "3-1\n"}),
			func(e *Enrolment) { e.Facts.Cores = runtime.NumCPU() }},
		{"no sysfs", with(nil, "sys/devices/system/cpu/online"), func(e *Enrolment) { e.Facts.Cores = runtime.NumCPU() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Gather(fixtureSources(writeFiles(t, tt.files)))
			if err != nil {
				t.Fatal(err)
			}
			w := want
			w.Facts.Extra = map[string]string{"os_id": "debian", "os_version_id": "12"}
			tt.change(&w)
			if !reflect.DeepEqual(got, w) {
				t.Errorf("got  %+v\nwant %+v", got, w)
			}
		})
	}
}

func TestGatherErrors(t *testing.T) {
	t.Run("no machine id", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"etc/os-release": debianOSRelease})
		_, err := Gather(fixtureSources(dir))
		if err == nil || !strings.Contains(err.Error(), "no machine id") || !strings.Contains(err.Error(), "etc/machine-id") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("empty machine id", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"etc/machine-id": "\n"})
		if _, err := Gather(fixtureSources(dir)); err == nil {
			t.Error("an empty machine id was accepted")
		}
	})
	t.Run("no host name", func(t *testing.T) {
		src := fixtureSources(writeFiles(t, map[string]string{"etc/machine-id": "x1"}))
		src.Hostname = func() (string, error) { return "", errors.New("none") }
		if _, err := Gather(src); err == nil {
			t.Error("no error without a host name")
		}
	})
	t.Run("failed uname and addresses leave facts empty", func(t *testing.T) {
		src := fixtureSources(writeFiles(t, map[string]string{"etc/machine-id": "x1"}))
		src.Uname = func() (string, string, error) { return "", "", errors.New("no") }
		src.Addresses = func() ([]string, error) { return nil, errors.New("no") }
		e, err := Gather(src)
		if err != nil {
			t.Fatal(err)
		}
		if e.Facts.Kernel != "" || e.Facts.Arch != runtime.GOARCH || e.Addresses == nil || len(e.Addresses) != 0 {
			t.Errorf("got %+v", e)
		}
	})
}

// TestGatherReal reads this machine and checks the hub would accept what it reads.
func TestGatherReal(t *testing.T) {
	src := DefaultSources("/", "/proc", "/sys")
	if _, err := os.Stat("/etc/machine-id"); err != nil {
		if _, err := os.Stat("/var/lib/dbus/machine-id"); err != nil {
			src.MachineIDFiles = []string{filepath.Join(writeFiles(t, map[string]string{"machine-id": "fixture-id"}), "machine-id")}
		}
	}
	e, err := Gather(src)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if e.Hostname != host || e.OS != "linux" || e.Facts.Kernel == "" || e.Facts.Cores < 1 || e.Facts.MemoryBytes < 64<<20 {
		t.Errorf("implausible facts: %+v", e)
	}
	if e.Facts.Cores > runtime.NumCPU() && runtime.NumCPU() > 0 {
		// NumCPU is the affinity mask, which may be smaller, never larger than the online set.
		t.Logf("online cores %d > NumCPU %d", e.Facts.Cores, runtime.NumCPU())
	}
	for _, a := range e.Addresses {
		ip := net.ParseIP(a)
		if ip == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
			t.Errorf("address %q should not be listed", a)
		}
	}
	e.AgentURL = "http://192.0.2.1:10730/metrics"
	if fe := toInventory(t, e).Validate(); len(fe) != 0 {
		t.Errorf("the hub would refuse this machine's facts: %v", fe)
	}
}

// toInventory decodes e's JSON as the hub does: strictly, into inventory.Enrolment.
func toInventory(t *testing.T, e Enrolment) inventory.Enrolment {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var out inventory.Enrolment
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("the hub would refuse %s: %v", b, err)
	}
	return out
}

// TestWireMatchesInventory keeps this package's copy of the enrolment in step with the hub's:
// every field survives the trip both ways, and each side's encoding is identical.
func TestWireMatchesInventory(t *testing.T) {
	e := Enrolment{
		MachineID: "m1", Hostname: "h", Addresses: []string{"192.0.2.1"}, OS: "linux", AgentURL: "http://192.0.2.1:1/metrics",
		Facts: Facts{Hostname: "h", Kernel: "k", OSRelease: "o", Arch: "a", CPUModel: "c", Cores: 2, MemoryBytes: 3,
			Extra: map[string]string{"x": "y"}},
	}
	inv := toInventory(t, e)
	ib, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	eb, _ := json.Marshal(e)
	if string(ib) != string(eb) {
		t.Errorf("encodings differ:\nenrol     %s\ninventory %s", eb, ib)
	}
	dec := json.NewDecoder(strings.NewReader(string(ib)))
	dec.DisallowUnknownFields()
	var back Enrolment
	if err := dec.Decode(&back); err != nil {
		t.Fatalf("inventory.Enrolment has a field this package lacks: %v", err)
	}
	if !reflect.DeepEqual(back, e) {
		t.Errorf("round trip: %+v, want %+v", back, e)
	}
	// Every field set, so that a field added to inventory.Enrolment later is noticed here.
	if n, m := reflect.TypeFor[inventory.Facts]().NumField(), reflect.TypeFor[Facts]().NumField(); n != m {
		t.Errorf("inventory.Facts has %d fields, Facts %d", n, m)
	}
	if n, m := reflect.TypeFor[inventory.Enrolment]().NumField(), reflect.TypeFor[Enrolment]().NumField()+1; n != m {
		t.Errorf("inventory.Enrolment has %d fields, Enrolment %d (+AutoApprove)", n, m)
	}
}

func TestAgentURL(t *testing.T) {
	tcp := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	addrs := []string{"2001:db8::5", "192.0.2.5"}
	tests := []struct {
		name, advertise, listen, hub string
		addrs                        []string
		want, err                    string
	}{
		{"advertised", "https://agent.example:443/metrics", "127.0.0.1:10730", "http://hub.example:10731", addrs, "https://agent.example:443/metrics", ""},
		{"bad advertised", "agent.example:10730", "0.0.0.0:10730", "http://hub:1", addrs, "", "--advertise-url"},
		{"specific address", "", "192.0.2.7:10730", "http://hub.example:10731", addrs, "http://192.0.2.7:10730/metrics", ""},
		{"wildcard prefers IPv4", "", "0.0.0.0:10730", "http://hub.example:10731", addrs, "http://192.0.2.5:10730/metrics", ""},
		{"IPv6 wildcard", "", "[::]:10730", "http://hub.example:10731", []string{"2001:db8::5"}, "http://[2001:db8::5]:10730/metrics", ""},
		{"wildcard without addresses", "", "0.0.0.0:10730", "http://hub.example:10731", nil, "", "no address"},
		{"loopback to remote hub", "", "127.0.0.1:10730", "http://hub.example:10731", addrs, "", "cannot reach"},
		{"loopback to loopback hub", "", "127.0.0.1:10730", "http://127.0.0.1:10731", addrs, "http://127.0.0.1:10730/metrics", ""},
		{"loopback to localhost hub", "", "[::1]:10730", "http://localhost:10731", addrs, "http://[::1]:10730/metrics", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AgentURL(tt.advertise, tcp(tt.listen), tt.addrs, tt.hub)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("got %q, %v; want error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, want string
		warn             bool
		err              string
	}{
		{"private", write("a", "tok123\n", 0o600), "tok123", false, ""},
		{"world readable", write("b", "tok123", 0o644), "tok123", true, ""},
		{"empty", write("c", " \n", 0o600), "", false, "is empty"},
		{"two words", write("d", "a b\n", 0o600), "", false, "more than one word"},
		{"missing", filepath.Join(dir, "nope"), "", false, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, warn, err := ReadToken(tt.path)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || tok != tt.want || (warn != "") != tt.warn {
				t.Errorf("got %q, %q, %v", tok, warn, err)
			}
		})
	}
}

func FuzzOSRelease(f *testing.F) {
	f.Add(debianOSRelease)
	f.Add("PRETTY_NAME='x\nID=\"\n=\n")
	f.Fuzz(func(t *testing.T, s string) {
		p := filepath.Join(t.TempDir(), "os-release")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		_ = readOSRelease([]string{p})
	})
}
