package collector

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"
)

func TestNetdevReal(t *testing.T) {
	c, err := newNetdev(realConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.(*netdevCollector).Close()
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range netdevCounterNames {
		if _, ok := fams.Value("node_network_"+key+"_total", "device", "lo"); !ok {
			t.Errorf("node_network_%s_total{device=\"lo\"} missing", key)
		}
	}
	oper, err := os.ReadFile("/sys/class/net/lo/operstate")
	if err != nil {
		t.Skipf("no sysfs for lo: %v", err)
	}
	want := 0.0
	if strings.TrimSpace(string(oper)) == "up" {
		want = 1
	}
	if v, ok := fams.Value("node_network_up", "device", "lo"); !ok || v != want {
		t.Errorf("node_network_up{device=lo} = %v (%v), want %v", v, ok, want)
	}
	if fams.Count("node_network_info", "device", "lo", "address", "00:00:00:00:00:00",
		"operstate", strings.TrimSpace(string(oper)), "adminstate", "up") != 1 {
		t.Errorf("node_network_info for lo missing or wrong: %v", fams["node_network_info"])
	}
	if v, ok := fams.Value("node_network_mtu_bytes", "device", "lo"); !ok || v < 1280 {
		t.Errorf("node_network_mtu_bytes{device=lo} = %v (%v)", v, ok)
	}

	// Loopback traffic shows in the next scrape.
	before, _ := fams.Value("node_network_receive_bytes_total", "device", "lo")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if conn, err := l.Accept(); err == nil {
			conn.Write(make([]byte, 64<<10))
			conn.Close()
		}
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var got int
	for buf := make([]byte, 4096); ; {
		n, err := conn.Read(buf)
		got += n
		if err != nil {
			break
		}
	}
	conn.Close()
	fams, _ = scrape(t, c)
	if after, _ := fams.Value("node_network_receive_bytes_total", "device", "lo"); after < before+float64(got) {
		t.Errorf("lo receive bytes went from %v to %v after %d bytes over loopback", before, after, got)
	}
}

const netdevHeader = "Inter-|   Receive                                                |  Transmit\n" +
	" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"

func netdevSysfs(dev string, attrs map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range attrs {
		out["class/net/"+dev+"/"+k] = v
	}
	return out
}

func TestNetdevFixtures(t *testing.T) {
	eth0 := netdevSysfs("eth0", map[string]string{"operstate": "up\n", "flags": "0x1003\n", "address": "02:fc:00:00:00:01\n",
		"broadcast": "ff:ff:ff:ff:ff:ff\n", "duplex": "full\n", "ifalias": "uplink\n", "carrier": "1\n", "mtu": "1500\n",
		"speed": "1000\n", "tx_queue_len": "1000\n"})
	tests := []struct {
		name    string
		content string
		sys     map[string]string
		want    map[string][]string // metric -> labels; value checked separately in values
		values  map[string]float64  // metric{device=eth0} -> value
		absent  []string            // metric{device=eth0} that must not be reported
		devices int
		wantErr bool
	}{
		{
			name: "one interface, every column and attribute",
			content: netdevHeader +
				"  eth0: 1 2 3 4 5 6 7 8    9 10 11 12 13 14 15 16\n",
			sys:     eth0,
			devices: 1,
			values: map[string]float64{
				"node_network_receive_bytes_total": 1, "node_network_receive_packets_total": 2,
				"node_network_receive_errs_total": 3, "node_network_receive_drop_total": 4,
				"node_network_receive_fifo_total": 5, "node_network_receive_frame_total": 6,
				"node_network_receive_compressed_total": 7, "node_network_receive_multicast_total": 8,
				"node_network_transmit_bytes_total": 9, "node_network_transmit_packets_total": 10,
				"node_network_transmit_errs_total": 11, "node_network_transmit_drop_total": 12,
				"node_network_transmit_fifo_total": 13, "node_network_transmit_colls_total": 14,
				"node_network_transmit_carrier_total": 15, "node_network_transmit_compressed_total": 16,
				"node_network_up": 1, "node_network_carrier": 1, "node_network_mtu_bytes": 1500,
				"node_network_speed_bytes": 125000000, "node_network_transmit_queue_length": 1000,
			},
			want: map[string][]string{"node_network_info": {"device", "eth0", "address", "02:fc:00:00:00:01",
				"broadcast", "ff:ff:ff:ff:ff:ff", "duplex", "full", "operstate", "up", "adminstate", "up", "ifalias", "uplink"}},
		},
		{
			name:    "link down: no carrier, speed or duplex; admin down",
			content: netdevHeader + "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
			sys: netdevSysfs("eth0", map[string]string{"operstate": "down\n", "flags": "0x1002\n", "address": "aa:bb:cc:dd:ee:ff\n",
				"speed": "-1\n", "mtu": "1500\n"}),
			devices: 1,
			values:  map[string]float64{"node_network_up": 0, "node_network_mtu_bytes": 1500},
			absent:  []string{"node_network_carrier", "node_network_speed_bytes", "node_network_transmit_queue_length"},
			want: map[string][]string{"node_network_info": {"device", "eth0", "address", "aa:bb:cc:dd:ee:ff",
				"duplex", "", "operstate", "down", "adminstate", "down", "ifalias", ""}},
		},
		{
			name:    "no sysfs for the interface: counters only",
			content: netdevHeader + "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
			devices: 1,
			values:  map[string]float64{"node_network_transmit_compressed_total": 16},
			absent:  []string{"node_network_up", "node_network_info"},
		},
		{
			name: "odd and truncated lines are reported, good lines kept",
			content: netdevHeader + "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n" +
				"garbage\n: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\nbad0: 1 2 x 4 5 6 7 8 9 10 11 12 13 14 15 16\n" +
				"eth0: 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9\ntrunc0: 1 2 3",
			sys:     eth0,
			devices: 1,
			values:  map[string]float64{"node_network_receive_bytes_total": 1},
			wantErr: true,
		},
		{
			name:    "names with odd characters and huge counters",
			content: netdevHeader + "vlan.100@x-y: 18446744073709551615 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n",
			devices: 1,
		},
		{name: "headers only", content: netdevHeader, devices: 0},
		{name: "empty file", content: "", devices: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc := writeTree(t, map[string]string{"net/dev": tt.content})
			sys := writeTree(t, tt.sys)
			c, _ := newNetdev(fixtureConfig(t, proc, sys), nil)
			defer c.(*netdevCollector).Close()
			fams, err := scrape(t, c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got := fams.Count("node_network_receive_bytes_total"); got != tt.devices {
				t.Errorf("%d devices reported, want %d", got, tt.devices)
			}
			for name, want := range tt.values {
				if got, ok := fams.Value(name, "device", "eth0"); !ok || got != want {
					t.Errorf("%s{device=eth0} = %v (%v), want %v", name, got, ok, want)
				}
			}
			for _, name := range tt.absent {
				if fams.Count(name, "device", "eth0") != 0 {
					t.Errorf("%s{device=eth0} reported", name)
				}
			}
			for name, labels := range tt.want {
				if fams.Count(name, labels...) != 1 {
					t.Errorf("no %s%v in %v", name, labels, fams[name])
				}
			}
		})
	}
}

// TestNetdevSysfsCache checks what is read again when: operstate and flags every scrape, the rest
// when one of them changes or the refresh interval passes.
func TestNetdevSysfsCache(t *testing.T) {
	proc := writeTree(t, map[string]string{"net/dev": netdevHeader + "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"})
	sys := writeTree(t, netdevSysfs("eth0", map[string]string{"operstate": "up\n", "flags": "0x1003\n",
		"address": "02:00:00:00:00:01\n", "mtu": "1500\n"}))
	c, _ := newNetdev(fixtureConfig(t, proc, sys), nil)
	nc := c.(*netdevCollector)
	defer nc.Close()
	now := time.Unix(1_000_000, 0)
	nc.now = func() time.Time { return now }
	dir := filepath.Join(sys, "class/net/eth0")
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string, up, mtu float64, infoLabels ...string) {
		t.Helper()
		fams, err := scrape(t, c)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := fams.Value("node_network_up", "device", "eth0"); v != up {
			t.Errorf("%s: up = %v, want %v", step, v, up)
		}
		if v, _ := fams.Value("node_network_mtu_bytes", "device", "eth0"); v != mtu {
			t.Errorf("%s: mtu = %v, want %v", step, v, mtu)
		}
		if fams.Count("node_network_info", infoLabels...) != 1 {
			t.Errorf("%s: no info with %v in %v", step, infoLabels, fams["node_network_info"])
		}
	}
	check("first", 1, 1500, "address", "02:00:00:00:00:01", "operstate", "up", "adminstate", "up")

	write("mtu", "9000\n")
	write("address", "02:00:00:00:00:02\n")
	check("attributes changed, state did not: cached", 1, 1500, "address", "02:00:00:00:00:01")

	write("operstate", "down\n")
	check("operstate changed: all read again", 0, 9000, "address", "02:00:00:00:00:02", "operstate", "down", "adminstate", "up")

	write("flags", "0x1002\n")
	check("flags changed: adminstate follows", 0, 9000, "operstate", "down", "adminstate", "down")

	write("mtu", "1400\n")
	check("nothing else changed", 0, 9000)
	now = now.Add(netdevInfoRefresh)
	check("refresh due", 0, 1400)

	// The interface goes away: its descriptors are closed and it is forgotten.
	if err := os.WriteFile(filepath.Join(proc, "net/dev"), []byte(netdevHeader), 0o644); err != nil {
		t.Fatal(err)
	}
	d := nc.devs["eth0"]
	if _, err := scrape(t, c); err != nil {
		t.Fatal(err)
	}
	if len(nc.devs) != 0 || d.operstate.f != nil || d.flags.f != nil {
		t.Errorf("vanished interface still cached (%d devices) or its files open", len(nc.devs))
	}
}

func TestNetdevAdminState(t *testing.T) {
	for flags, want := range map[string]string{"0x1003": "up", "0x9": "up", "0x1002": "down", "0x0": "down", "": "unknown", "zz": "unknown"} {
		if got := netdevAdminState([]byte(flags)); got != want {
			t.Errorf("netdevAdminState(%q) = %q, want %q", flags, got, want)
		}
	}
}

func TestNetdevUnreadable(t *testing.T) {
	if asNobody(t) {
		return
	}
	proc := writeTree(t, map[string]string{"net/dev": netdevHeader + "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"})
	sys := writeTree(t, netdevSysfs("eth0", map[string]string{"operstate": "up\n", "flags": "0x1003\n", "mtu": "1500\n"}))
	// Unreadable sysfs files cost their metrics, not the counters.
	for _, f := range []string{"operstate", "mtu"} {
		if err := os.Chmod(filepath.Join(sys, "class/net/eth0", f), 0); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := newNetdev(fixtureConfig(t, proc, sys), nil)
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatalf("unreadable sysfs attributes: %v", err)
	}
	if _, ok := fams.Value("node_network_receive_bytes_total", "device", "eth0"); !ok || fams.Count("node_network_up") != 0 {
		t.Errorf("with operstate unreadable: want counters and no node_network_up, got %v", fams.Names())
	}

	if err := os.Chmod(filepath.Join(proc, "net/dev"), 0); err != nil {
		t.Fatal(err)
	}
	c, _ = newNetdev(fixtureConfig(t, proc, sys), nil)
	if _, err := scrape(t, c); err == nil {
		t.Fatal("want an error for an unreadable net/dev")
	}
	c, _ = newNetdev(fixtureConfig(t, filepath.Join(proc, "absent"), sys), nil)
	if _, err := scrape(t, c); err == nil {
		t.Fatal("want an error for a missing net/dev")
	}
}

func FuzzParseNetdev(f *testing.F) {
	f.Add([]byte(netdevHeader + "    lo:   43730     535    0    0    0     0          0         0    43730     535    0    0    0     0       0          0\n"))
	f.Add([]byte("eth0: 1 2 3\n: 1\nx:y: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, l := range parseNetdev(data, nil, func(error) {}) {
			if len(l.name) == 0 || bytes.IndexByte(l.name, ':') >= 0 || bytes.IndexByte(l.name, '\n') >= 0 {
				t.Fatalf("bad name %q", l.name)
			}
		}
	})
}

// BenchmarkParseNetdev compares the parser with procfs's, on which the choice to parse here rests.
func BenchmarkParseNetdev(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(netdevHeader)
	for i := range 16 {
		sb.WriteString("  veth" + string(rune('a'+i)) + ": 206004797    7135    0    0    0     0          0         0   462709    4437    0    0    0     0       0          0\n")
	}
	data := []byte(sb.String())
	b.Run("own", func(b *testing.B) {
		b.ReportAllocs()
		var lines []netdevLine
		for b.Loop() {
			lines = parseNetdev(data, lines[:0], func(error) {})
		}
	})
	b.Run("procfs", func(b *testing.B) {
		proc := writeTree(b, map[string]string{"net/dev": sb.String()})
		fs, err := procfs.NewFS(proc)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := fs.NetDev(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkNetdev(b *testing.B) {
	c, _ := newNetdev(realConfig(b), nil)
	defer c.(*netdevCollector).Close()
	b.ReportAllocs()
	for b.Loop() {
		m := &Metrics{}
		if err := c.Update(b.Context(), m); err != nil {
			b.Fatal(err)
		}
	}
}
