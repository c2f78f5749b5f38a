package collector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/serversage/sage/internal/sockdiag"
)

// listenerSelfComm is this test process's name as the kernel keeps it.
func listenerSelfComm(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

func listenerCollector(t testing.TB, cfg *Config, ls ...Listener) *listenersCollector {
	t.Helper()
	cfg.Listeners = ls
	c, err := newListeners(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.(*listenersCollector).Close() })
	return c.(*listenersCollector)
}

// listenerOpen opens a TCP listener or a bound UDP socket on a loopback address and returns its
// port and a function closing it; ok is false when the address family is unavailable here.
func listenerOpen(t testing.TB, network, addr string) (port int, closeIt func(), ok bool) {
	t.Helper()
	var c interface{ Close() error }
	switch network {
	case "tcp4", "tcp6":
		l, err := net.Listen(network, addr)
		if err != nil {
			return 0, nil, false
		}
		c, port = l, l.Addr().(*net.TCPAddr).Port
	default:
		pc, err := net.ListenPacket(network, addr)
		if err != nil {
			return 0, nil, false
		}
		c, port = pc, pc.LocalAddr().(*net.UDPAddr).Port
	}
	t.Cleanup(func() { c.Close() })
	return port, func() { c.Close() }, true
}

// listenerFreePort is a port nothing listens on for proto: one the kernel just handed out and took back.
func listenerFreePort(t testing.TB, network, addr string) int {
	t.Helper()
	port, closeIt, ok := listenerOpen(t, network, addr)
	if !ok {
		t.Fatalf("cannot bind %s %s", network, addr)
	}
	closeIt()
	return port
}

// listenerCheckLive opens, for each protocol and family, a real socket, and checks what the
// collector reports of it, of a wrong process name, of a free port, and of it once closed.
func listenerCheckLive(t *testing.T) {
	comm := listenerSelfComm(t)
	pid := strconv.Itoa(os.Getpid())
	for _, tt := range []struct {
		network, addr, proto string
	}{
		{"tcp4", "127.0.0.1:0", "tcp"},
		{"tcp6", "[::1]:0", "tcp"},
		{"udp4", "127.0.0.1:0", "udp"},
		{"udp6", "[::1]:0", "udp"},
	} {
		t.Run(tt.network, func(t *testing.T) {
			port, closeIt, ok := listenerOpen(t, tt.network, tt.addr)
			if !ok {
				t.Skipf("cannot bind %s %s: no IPv6 loopback on this host, skipping", tt.network, tt.addr)
			}
			free := listenerFreePort(t, tt.network, tt.addr)
			p, fp := strconv.Itoa(port), strconv.Itoa(free)
			owned := listenerCollector(t, realConfig(t), Listener{Port: port, Proto: tt.proto, Process: comm})
			wrong := listenerCollector(t, realConfig(t), Listener{Port: port, Proto: tt.proto, Process: "no-such-proc"})
			anyOwner := listenerCollector(t, realConfig(t), Listener{Port: port, Proto: tt.proto}, Listener{Port: free, Proto: tt.proto})

			fams, err := scrape(t, owned)
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := fams.Value("sage_listener_up", "port", p, "proto", tt.proto); !ok || v != 1 {
				t.Errorf("owned by %s: up = %v, %v; want 1", comm, v, ok)
			}
			if n := fams.Count("sage_listener_process_info", "port", p, "proto", tt.proto); n != 1 {
				t.Errorf("owned: %d info samples, want 1", n)
			}
			if v, ok := fams.Value("sage_listener_process_info", "port", p, "proto", tt.proto, "process", comm, "pid", pid); !ok || v != 1 {
				t.Errorf("owned: no info naming %s/%s", comm, pid)
			}
			if v, _ := fams.Value("sage_listeners", "proto", tt.proto); v < 1 {
				t.Errorf("sage_listeners{proto=%q} = %v, want at least our own", tt.proto, v)
			}

			fams, err = scrape(t, wrong)
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := fams.Value("sage_listener_up", "port", p, "proto", tt.proto); !ok || v != 0 {
				t.Errorf("held by %s, not the configured process: up = %v, %v; want 0", comm, v, ok)
			}
			if _, ok := fams.Value("sage_listener_process_info", "port", p, "process", comm, "pid", pid); !ok {
				t.Errorf("wrong owner: info should name the process that holds the port")
			}

			fams, err = scrape(t, anyOwner)
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := fams.Value("sage_listener_up", "port", p, "proto", tt.proto); !ok || v != 1 {
				t.Errorf("any owner: up = %v, %v; want 1", v, ok)
			}
			if v, ok := fams.Value("sage_listener_up", "port", fp, "proto", tt.proto); !ok || v != 0 {
				t.Errorf("free port %s: up = %v, %v; want 0", fp, v, ok)
			}
			if n := fams.Count("sage_listener_process_info", "port", fp); n != 0 {
				t.Errorf("free port: %d info samples, want none", n)
			}

			closeIt()
			fams, err = scrape(t, owned)
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := fams.Value("sage_listener_up", "port", p, "proto", tt.proto); !ok || v != 0 {
				t.Errorf("after close: up = %v, %v; want 0", v, ok)
			}
			if n := fams.Count("sage_listener_process_info", "port", p); n != 0 {
				t.Errorf("after close: %d info samples, want none", n)
			}
		})
	}
}

func TestListenersLive(t *testing.T) {
	listenerCheckLive(t)
}

const listenerRootPortEnv = "SAGE_TEST_ROOT_LISTENER"

// TestListenersNobody runs as uid 65534: sock_diag still lists every socket, the agent's own sockets
// still have an owner, and a socket held by root has none that it can see, which costs the listener
// without a process nothing and makes the one with a process down, without failing the collector.
func TestListenersNobody(t *testing.T) {
	if os.Getuid() == 0 && os.Getenv(nobodyEnv) != "1" {
		port, _, ok := listenerOpen(t, "tcp4", "127.0.0.1:0")
		if !ok {
			t.Fatal("cannot listen on 127.0.0.1")
		}
		t.Setenv(listenerRootPortEnv, strconv.Itoa(port)) // inherited by the unprivileged run
	}
	if asNobody(t) {
		return
	}
	if os.Getuid() == 0 {
		t.Fatal("want an unprivileged run")
	}
	listenerCheckLive(t)

	env := os.Getenv(listenerRootPortEnv)
	if env == "" {
		t.Skip("not started as root: no socket of another user to look at")
	}
	port, err := strconv.Atoi(env)
	if err != nil {
		t.Fatal(err)
	}
	anyOwner := listenerCollector(t, realConfig(t), Listener{Port: port})
	fams, err := scrape(t, anyOwner)
	if err != nil {
		t.Fatalf("an owner that cannot be seen must not fail the collector: %v", err)
	}
	if v, ok := fams.Value("sage_listener_up", "port", env); !ok || v != 1 {
		t.Errorf("root's listener, no process required: up = %v, %v; want 1", v, ok)
	}
	if n := fams.Count("sage_listener_process_info", "port", env); n != 0 {
		t.Errorf("root's listener: %d info samples, want none (its holder cannot be seen)", n)
	}
	owned := listenerCollector(t, realConfig(t), Listener{Port: port, Process: listenerSelfComm(t)})
	fams, err = scrape(t, owned)
	if err != nil {
		t.Fatalf("an owner that cannot be seen must not fail the collector: %v", err)
	}
	if v, ok := fams.Value("sage_listener_up", "port", env); !ok || v != 0 {
		t.Errorf("root's listener, process required: up = %v, %v; want 0 (the owner is unknown)", v, ok)
	}
}

// listenerFakeSockets answers the collector's queries from a fixed list, honouring family, protocol and
// states as the kernel does.
func listenerFakeSockets(socks []sockdiag.Socket, err error) func(context.Context, []sockdiag.Socket, uint8, uint8, uint32) ([]sockdiag.Socket, error) {
	return func(_ context.Context, dst []sockdiag.Socket, family, proto uint8, states uint32) ([]sockdiag.Socket, error) {
		if err != nil {
			return dst, err
		}
		for _, s := range socks {
			if s.Family == family && s.Proto == proto && states&(1<<s.State) != 0 {
				dst = append(dst, s)
			}
		}
		return dst, nil
	}
}

func listenerTCP(addr string, port uint16, inode uint32) sockdiag.Socket {
	a := netip.MustParseAddr(addr)
	fam := uint8(unix.AF_INET)
	if a.Is6() {
		fam = unix.AF_INET6
	}
	return sockdiag.Socket{Family: fam, Proto: unix.IPPROTO_TCP, State: sockdiag.StateListen, Addr: a, Port: port, Inode: inode}
}

func listenerUDP(addr string, port uint16, inode uint32) sockdiag.Socket {
	s := listenerTCP(addr, port, inode)
	s.Proto, s.State = unix.IPPROTO_UDP, sockdiag.StateClose
	return s
}

// listenerProc is a process of a fixture /proc: its comm and its descriptors' link targets.
type listenerProc struct {
	comm string
	fds  map[int]string
}

func listenerProcTree(t testing.TB, procs map[int]listenerProc, files map[string]string) string {
	t.Helper()
	all := map[string]string{}
	for k, v := range files {
		all[k] = v
	}
	for pid, p := range procs {
		all[fmt.Sprintf("%d/comm", pid)] = p.comm + "\n"
	}
	proc := writeTree(t, all)
	for pid, p := range procs {
		listenerAddFDs(t, proc, pid, p.fds)
	}
	return proc
}

func listenerAddFDs(t testing.TB, proc string, pid int, fds map[int]string) {
	t.Helper()
	dir := filepath.Join(proc, strconv.Itoa(pid), "fd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for fd, target := range fds {
		if err := os.Symlink(target, filepath.Join(dir, strconv.Itoa(fd))); err != nil {
			t.Fatal(err)
		}
	}
}

type listenerSample struct {
	name   string
	labels []string
	value  float64
}

func TestListenersFixtures(t *testing.T) {
	nginx := listenerProc{"nginx", map[int]string{0: "/dev/null", 1: "pipe:[100]", 3: "socket:[100]", 4: "socket:[101]", 5: "socket:[abc]"}}
	tests := []struct {
		name      string
		socks     []sockdiag.Socket
		procs     map[int]listenerProc
		listeners []Listener
		noProc    bool // ProcPath does not exist
		want      []listenerSample
		infos     int // sage_listener_process_info samples in all
		wantErr   bool
	}{
		{
			name:      "owner found, other port down",
			socks:     []sockdiag.Socket{listenerTCP("0.0.0.0", 80, 100)},
			procs:     map[int]listenerProc{50: nginx, 7: {"cron", map[int]string{3: "socket:[999]"}}},
			listeners: []Listener{{Port: 80, Process: "nginx"}, {Port: 81}},
			want: []listenerSample{
				{"sage_listener_up", []string{"port", "80", "proto", "tcp"}, 1},
				{"sage_listener_process_info", []string{"port", "80", "proto", "tcp", "process", "nginx", "pid", "50"}, 1},
				{"sage_listener_up", []string{"port", "81", "proto", "tcp"}, 0},
				{"sage_listeners", []string{"proto", "tcp"}, 1},
				{"sage_listeners", []string{"proto", "udp"}, 0},
			},
			infos: 1,
		},
		{
			name:      "IPv4 and IPv6 sockets of one process count once",
			socks:     []sockdiag.Socket{listenerTCP("0.0.0.0", 80, 100), listenerTCP("::", 80, 101)},
			procs:     map[int]listenerProc{50: nginx},
			listeners: []Listener{{Port: 80, Proto: "tcp"}},
			want: []listenerSample{
				{"sage_listener_up", []string{"port", "80"}, 1},
				{"sage_listeners", []string{"proto", "tcp"}, 1},
			},
			infos: 1,
		},
		{
			name:  "socket activation: the service holds it besides systemd",
			socks: []sockdiag.Socket{listenerTCP("::", 22, 300)},
			procs: map[int]listenerProc{
				1:  {"systemd", map[int]string{40: "socket:[300]"}},
				60: {"sshd", map[int]string{3: "socket:[300]"}},
			},
			listeners: []Listener{{Port: 22, Process: "sshd"}},
			want: []listenerSample{
				{"sage_listener_up", []string{"port", "22"}, 1},
				{"sage_listener_process_info", []string{"process", "sshd", "pid", "60"}, 1},
			},
			infos: 1,
		},
		{
			name:      "held by another process",
			socks:     []sockdiag.Socket{listenerTCP("127.0.0.1", 8080, 100)},
			procs:     map[int]listenerProc{50: {"apache2", map[int]string{3: "socket:[100]"}}},
			listeners: []Listener{{Port: 8080, Process: "nginx"}},
			want: []listenerSample{
				{"sage_listener_up", []string{"port", "8080"}, 0},
				{"sage_listener_process_info", []string{"process", "apache2", "pid", "50"}, 1},
			},
			infos: 1,
		},
		{
			name:      "kernel socket: no holder",
			socks:     []sockdiag.Socket{listenerTCP("0.0.0.0", 2049, 500), listenerUDP("0.0.0.0", 2049, 501)},
			procs:     map[int]listenerProc{50: nginx},
			listeners: []Listener{{Port: 2049}, {Port: 2049, Proto: "udp", Process: "nfsd"}},
			want: []listenerSample{
				{"sage_listener_up", []string{"port", "2049", "proto", "tcp"}, 1},
				{"sage_listener_up", []string{"port", "2049", "proto", "udp"}, 0},
			},
		},
		{
			name:      "protocols are told apart",
			socks:     []sockdiag.Socket{listenerUDP("127.0.0.53", 53, 100), listenerTCP("0.0.0.0", 5353, 101)},
			procs:     map[int]listenerProc{50: {"resolved", map[int]string{3: "socket:[100]", 4: "socket:[101]"}}},
			listeners: []Listener{{Port: 53, Proto: "tcp"}, {Port: 53, Proto: "udp", Process: "resolved"}, {Port: 5353, Proto: "udp"}},
			want: []listenerSample{
				{"sage_listener_up", []string{"port", "53", "proto", "tcp"}, 0},
				{"sage_listener_up", []string{"port", "53", "proto", "udp"}, 1},
				{"sage_listener_up", []string{"port", "5353", "proto", "udp"}, 0},
				{"sage_listeners", []string{"proto", "tcp"}, 1},
				{"sage_listeners", []string{"proto", "udp"}, 1},
			},
			infos: 1,
		},
		{
			name:  "summary without listeners configured",
			socks: []sockdiag.Socket{listenerTCP("0.0.0.0", 22, 1), listenerTCP("::", 22, 2), listenerTCP("127.0.0.1", 25, 3), listenerUDP("0.0.0.0", 0, 4), listenerUDP("::", 123, 5)},
			want: []listenerSample{
				{"sage_listeners", []string{"proto", "tcp"}, 2},
				{"sage_listeners", []string{"proto", "udp"}, 1},
			},
		},
		{
			name:      "no /proc: owners unknown, listening still known",
			socks:     []sockdiag.Socket{listenerTCP("0.0.0.0", 80, 100)},
			noProc:    true,
			listeners: []Listener{{Port: 80}},
			want:      []listenerSample{{"sage_listener_up", []string{"port", "80"}, 1}},
			wantErr:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc := listenerProcTree(t, tt.procs, nil)
			if tt.noProc {
				proc = filepath.Join(proc, "absent")
			}
			c := listenerCollector(t, fixtureConfig(t, proc, ""), tt.listeners...)
			c.query = listenerFakeSockets(tt.socks, nil)
			for range 2 { // the second scrape answers from the cache, and must agree
				fams, err := scrape(t, c)
				if (err != nil) != tt.wantErr {
					t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
				}
				for _, w := range tt.want {
					if v, ok := fams.Value(w.name, w.labels...); !ok || v != w.value {
						t.Errorf("%s%v = %v, %v; want %v", w.name, w.labels, v, ok, w.value)
					}
				}
				if n := fams.Count("sage_listener_process_info"); n != tt.infos {
					t.Errorf("%d info samples, want %d", n, tt.infos)
				}
				if n := fams.Count("sage_listener_up"); n != len(tt.listeners) {
					t.Errorf("%d up samples, want one per listener (%d)", n, len(tt.listeners))
				}
			}
		})
	}
}

// TestListenersOwnerCache checks that /proc is searched only when the remembered owner no longer
// holds the socket, or for a new socket, and that an unsettled socket is searched again only after
// listenerRescanEvery.
func TestListenersOwnerCache(t *testing.T) {
	proc := listenerProcTree(t, map[int]listenerProc{
		50: {"nginx", map[int]string{3: "socket:[100]"}},
		1:  {"systemd", map[int]string{9: "socket:[200]"}},
	}, nil)
	socks := []sockdiag.Socket{listenerTCP("0.0.0.0", 80, 100), listenerTCP("0.0.0.0", 22, 200)}
	c := listenerCollector(t, fixtureConfig(t, proc, ""), Listener{Port: 80, Process: "nginx"}, Listener{Port: 22, Process: "sshd"})
	c.query = listenerFakeSockets(socks, nil)
	now := time.Unix(1e9, 0)
	c.now = func() time.Time { return now }

	step := func(what string, searches int, want ...listenerSample) {
		t.Helper()
		before := c.searches
		fams, err := scrape(t, c)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := c.searches - before; got != searches {
			t.Errorf("%s: %d searches of /proc, want %d", what, got, searches)
		}
		for _, w := range want {
			if v, ok := fams.Value(w.name, w.labels...); !ok || v != w.value {
				t.Errorf("%s: %s%v = %v, %v; want %v", what, w.name, w.labels, v, ok, w.value)
			}
		}
	}
	up := func(port string, v float64) listenerSample {
		return listenerSample{"sage_listener_up", []string{"port", port}, v}
	}
	info := func(port, process, pid string) listenerSample {
		return listenerSample{"sage_listener_process_info", []string{"port", port, "process", process, "pid", pid}, 1}
	}

	step("first scrape", 1, up("80", 1), info("80", "nginx", "50"), up("22", 0), info("22", "systemd", "1"))
	step("nothing changed", 0, up("80", 1), info("80", "nginx", "50"), up("22", 0))

	// Another holder appears; the remembered one still holds, so no search.
	listenerAddFDs(t, proc, 20, map[int]string{4: "socket:[100]"})
	os.WriteFile(filepath.Join(proc, "20", "comm"), []byte("nginx\n"), 0o644)
	step("second holder", 0, info("80", "nginx", "50"))

	// The remembered holder lets go: search at once, find the other.
	os.Remove(filepath.Join(proc, "50", "fd", "3"))
	step("holder gone", 1, up("80", 1), info("80", "nginx", "20"))

	// sshd starts with systemd's socket; port 22 was searched already, so not before the interval.
	listenerAddFDs(t, proc, 60, map[int]string{3: "socket:[200]"})
	os.WriteFile(filepath.Join(proc, "60", "comm"), []byte("sshd\n"), 0o644)
	step("within the interval", 0, up("22", 0))
	now = now.Add(listenerRescanEvery)
	step("after the interval", 1, up("22", 1), info("22", "sshd", "60"))
	step("settled", 0, up("22", 1))

	// The process renames itself (exec): the same descriptor no longer satisfies port 22.
	os.WriteFile(filepath.Join(proc, "60", "comm"), []byte("bash\n"), 0o644)
	step("renamed", 1, up("22", 0), info("22", "bash", "60"))

	// A new socket on the port (the service restarted) is searched for at once.
	socks[0].Inode = 101
	c.query = listenerFakeSockets(socks, nil)
	listenerAddFDs(t, proc, 70, map[int]string{5: "socket:[101]"})
	os.WriteFile(filepath.Join(proc, "70", "comm"), []byte("nginx\n"), 0o644)
	step("new socket", 1, up("80", 1), info("80", "nginx", "70"))
	if len(c.owners) != 2 {
		t.Errorf("%d owners remembered, want 2: sockets gone must be forgotten", len(c.owners))
	}
}

// TestListenersUnreadableFDs runs as an unprivileged user, for whom another process's fd directory
// is unreadable: the owner is unknown, the collector does not fail.
func TestListenersUnreadableFDs(t *testing.T) {
	if asNobody(t) {
		return
	}
	proc := listenerProcTree(t, map[int]listenerProc{50: {"nginx", map[int]string{3: "socket:[100]", 4: "socket:[101]"}}}, nil)
	if err := os.Chmod(filepath.Join(proc, "50", "fd"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(proc, "50", "fd"), 0o755) })
	c := listenerCollector(t, fixtureConfig(t, proc, ""), Listener{Port: 80}, Listener{Port: 81, Process: "nginx"})
	c.query = listenerFakeSockets([]sockdiag.Socket{listenerTCP("0.0.0.0", 80, 100), listenerTCP("0.0.0.0", 81, 101)}, nil)
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatalf("unreadable fds must not fail the collector: %v", err)
	}
	if v, _ := fams.Value("sage_listener_up", "port", "80"); v != 1 {
		t.Errorf("port 80, no process required: up = %v, want 1", v)
	}
	if v, ok := fams.Value("sage_listener_up", "port", "81"); !ok || v != 0 {
		t.Errorf("port 81, owner unknown: up = %v, %v; want 0", v, ok)
	}
	if n := fams.Count("sage_listener_process_info"); n != 0 {
		t.Errorf("%d info samples, want none", n)
	}
}

const (
	listenerNetTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0050 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 0 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 102 1 0000000000000000 100 0 0 10 0
`
	listenerNetTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 103 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 104 1 0000000000000000 100 0 0 10 0
`
	listenerNetUDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 105 2 0000000000000000 0
  101: 0100007F:0036 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 106 2 0000000000000000 0
`
)

func TestListenersFallback(t *testing.T) {
	unsupported := fmt.Errorf("sock_diag socket: %w", errors.ErrUnsupported)
	files := map[string]string{"net/tcp": listenerNetTCP, "net/tcp6": listenerNetTCP6, "net/udp": listenerNetUDP}
	tests := []struct {
		name     string
		queryErr error
		files    map[string]string // replaces files' entries; "" removes one
		want     []listenerSample
		wantErr  bool
	}{
		{
			name:     "sock_diag unavailable: /proc/net read instead",
			queryErr: unsupported,
			want: []listenerSample{
				{"sage_listeners", []string{"proto", "tcp"}, 3}, // 80, 22 and 443; 22 twice
				{"sage_listeners", []string{"proto", "udp"}, 1}, // 53; the connected 54 is not listening
				{"sage_listener_up", []string{"port", "80", "proto", "tcp"}, 1},
				{"sage_listener_up", []string{"port", "443", "proto", "tcp"}, 1},
				{"sage_listener_up", []string{"port", "53", "proto", "udp"}, 1},
				{"sage_listener_up", []string{"port", "54", "proto", "udp"}, 0},
				{"sage_listener_process_info", []string{"port", "80", "process", "nginx", "pid", "50"}, 1},
				{"sage_listener_process_info", []string{"port", "53", "process", "resolved", "pid", "51"}, 1},
			},
		},
		{name: "no IPv6 files", queryErr: unsupported, files: map[string]string{"net/tcp6": ""},
			want: []listenerSample{{"sage_listener_up", []string{"port", "443"}, 0}, {"sage_listener_up", []string{"port", "80"}, 1}}},
		{name: "no IPv4 file", queryErr: unsupported, files: map[string]string{"net/tcp": ""}, wantErr: true},
		{name: "malformed file", queryErr: unsupported, files: map[string]string{"net/udp": listenerNetUDP + "  102: 0100007F:0036\n"}, wantErr: true},
		{name: "another sock_diag error is no reason to fall back", queryErr: unix.ENOMEM, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := map[string]string{}
			for k, v := range files {
				fs[k] = v
			}
			for k, v := range tt.files {
				if v == "" {
					delete(fs, k)
				} else {
					fs[k] = v
				}
			}
			proc := listenerProcTree(t, map[int]listenerProc{
				50: {"nginx", map[int]string{3: "socket:[100]"}},
				51: {"resolved", map[int]string{7: "socket:[105]"}},
			}, fs)
			c := listenerCollector(t, fixtureConfig(t, proc, ""),
				Listener{Port: 80, Process: "nginx"}, Listener{Port: 443}, Listener{Port: 53, Proto: "udp"}, Listener{Port: 54, Proto: "udp"})
			c.query = listenerFakeSockets(nil, tt.queryErr)
			fams, err := scrape(t, c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			for _, w := range tt.want {
				if v, ok := fams.Value(w.name, w.labels...); !ok || v != w.value {
					t.Errorf("%s%v = %v, %v; want %v", w.name, w.labels, v, ok, w.value)
				}
			}
		})
	}
}

// TestParseProcNetReal checks the fallback parser against this kernel's files, on sockets whose
// address, port and inode are known.
func TestParseProcNetReal(t *testing.T) {
	for _, tt := range []struct {
		network, addr, file string
		family, proto       uint8
		state               uint8
	}{
		{"tcp4", "127.0.0.1:0", "tcp", unix.AF_INET, unix.IPPROTO_TCP, sockdiag.StateListen},
		{"tcp6", "[::1]:0", "tcp6", unix.AF_INET6, unix.IPPROTO_TCP, sockdiag.StateListen},
		{"udp4", "127.0.0.1:0", "udp", unix.AF_INET, unix.IPPROTO_UDP, sockdiag.StateClose},
		{"udp6", "[::1]:0", "udp6", unix.AF_INET6, unix.IPPROTO_UDP, sockdiag.StateClose},
	} {
		t.Run(tt.network, func(t *testing.T) {
			port, _, ok := listenerOpen(t, tt.network, tt.addr)
			if !ok {
				t.Skipf("cannot bind %s %s: no IPv6 loopback on this host, skipping", tt.network, tt.addr)
			}
			data, err := os.ReadFile(filepath.Join("/proc/net", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			socks, err := parseProcNet(data, tt.family, tt.proto, tt.state, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := netip.MustParseAddrPort(strings.Replace(tt.addr, ":0", ":"+strconv.Itoa(port), 1))
			found := false
			for _, s := range socks {
				if s.Port == uint16(port) && s.Addr == want.Addr() && s.UID == uint32(os.Getuid()) && s.Inode != 0 {
					found = true
				}
			}
			if !found {
				t.Errorf("%v not among %d sockets parsed from /proc/net/%s", want, len(socks), tt.file)
			}
		})
	}
}

func TestListenersConfig(t *testing.T) {
	for _, tt := range []struct {
		name      string
		listeners []Listener
		wantErr   bool
	}{
		{"defaults", []Listener{{Port: 22}, {Port: 22, Proto: "udp"}, {Port: 65535, Proto: "tcp", Process: "sshd"}}, false},
		{"unknown proto", []Listener{{Port: 22, Proto: "sctp"}}, true},
		{"port 0", []Listener{{Port: 0}}, true},
		{"port too high", []Listener{{Port: 65536}}, true},
		{"process longer than comm", []Listener{{Port: 22, Process: "systemd-resolved"}}, true},
		{"duplicate", []Listener{{Port: 22}, {Port: 22, Proto: "tcp"}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := realConfig(t)
			cfg.Listeners = tt.listeners
			c, err := newListeners(cfg, nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if c != nil {
				c.(*listenersCollector).Close()
			}
		})
	}
}

func FuzzParseProcNet(f *testing.F) {
	f.Add([]byte(listenerNetTCP), false)
	f.Add([]byte(listenerNetTCP6), true)
	f.Add([]byte(listenerNetUDP), false)
	f.Add([]byte("h\n 0: 0100007F:0050 0 0A 0 0 0 0 0 1\n 1: zz"), false)
	f.Fuzz(func(t *testing.T, data []byte, v6 bool) {
		family := uint8(unix.AF_INET)
		if v6 {
			family = unix.AF_INET6
		}
		socks, _ := parseProcNet(data, family, unix.IPPROTO_TCP, sockdiag.StateListen, nil)
		for _, s := range socks {
			if s.Family != family || s.State != sockdiag.StateListen || s.Addr.Is4() == v6 {
				t.Fatalf("bad socket %+v", s)
			}
		}
	})
}

func FuzzParseSocketLink(f *testing.F) {
	for _, s := range []string{"socket:[12345]", "socket:[]", "pipe:[1]", "socket:[99999999999999999999]", "socket:[1x]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, link []byte) {
		v, ok := parseSocketLink(link)
		if !ok {
			return
		}
		digits := strings.TrimLeft(string(link[len("socket:["):len(link)-1]), "0")
		if digits == "" {
			digits = "0"
		}
		if strconv.FormatUint(v, 10) != digits {
			t.Fatalf("%q parsed as %d", link, v)
		}
	})
}

func BenchmarkListeners(b *testing.B) {
	comm := listenerSelfComm(b)
	tcp, _, _ := listenerOpen(b, "tcp4", "127.0.0.1:0")
	udp, _, _ := listenerOpen(b, "udp4", "127.0.0.1:0")
	listeners := []Listener{{Port: tcp, Process: comm}, {Port: udp, Proto: "udp", Process: comm}, {Port: listenerFreePort(b, "tcp4", "127.0.0.1:0")}}
	if tcp6, _, ok := listenerOpen(b, "tcp6", "[::1]:0"); ok {
		listeners = append(listeners, Listener{Port: tcp6})
	}
	run := func(b *testing.B, c *listenersCollector) {
		b.ReportAllocs()
		for b.Loop() {
			m := &Metrics{}
			if err := c.Update(b.Context(), m); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("default", func(b *testing.B) { run(b, listenerCollector(b, realConfig(b))) })
	b.Run("configured", func(b *testing.B) { run(b, listenerCollector(b, realConfig(b), listeners...)) })
	// The worst case: a port held by the wrong process, searched for on every scrape.
	b.Run("search", func(b *testing.B) {
		c := listenerCollector(b, realConfig(b), Listener{Port: tcp, Process: "no-such-proc"})
		now := time.Now()
		c.now = func() time.Time { now = now.Add(listenerRescanEvery); return now }
		run(b, c)
	})
}
