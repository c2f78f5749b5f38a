package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func init() { register("netdev", true, newNetdev) }

// netdevCounterNames are node_exporter's keys for the sixteen columns of /proc/net/dev, in order:
// the metric is node_network_<key>_total. They are its "legacy" names, which it still uses by
// default when it reads netlink, and which netlink's finer counters sum up to in the same way the
// kernel sums them for /proc/net/dev (e.g. frame = frame + length + over + crc errors).
var netdevCounterNames = [netdevFields]string{
	"receive_bytes", "receive_packets", "receive_errs", "receive_drop",
	"receive_fifo", "receive_frame", "receive_compressed", "receive_multicast",
	"transmit_bytes", "transmit_packets", "transmit_errs", "transmit_drop",
	"transmit_fifo", "transmit_colls", "transmit_carrier", "transmit_compressed",
}

const (
	netdevFields = 16

	// netdevInfoRefresh bounds how stale the cached sysfs attributes of an interface (address,
	// MTU, speed, alias, ...) can be while its operstate and flags, read every scrape, do not change.
	netdevInfoRefresh = time.Minute
)

// netdevCollector exposes /proc/net/dev under node_exporter's names (node_network_receive_bytes_total,
// ...), and, from /sys/class/net/<device>/, the most used metrics of node_exporter's netclass
// collector: node_network_up, node_network_info, node_network_carrier, node_network_mtu_bytes,
// node_network_speed_bytes and node_network_transmit_queue_length.
//
// It parses /proc/net/dev itself: procfs's parser allocates a map and a string per line and
// parses through strconv (see BenchmarkParseNetdev). Of sysfs it reads two small files per
// interface per scrape, operstate and flags, through descriptors kept open, and re-reads the rest
// only when one of those two changes or netdevInfoRefresh passes; node_exporter's netclass
// collector opens some twenty files per interface per scrape.
type netdevCollector struct {
	sysNet string // <sys>/class/net
	// exclude is nil unless collectors.netdev.device_exclude is set: node_exporter excludes no
	// interface by default.
	exclude *regexp.Regexp
	now     func() time.Time

	counters                      [netdevFields]*Desc
	up, info, carrier, mtu, speed *Desc
	txQueueLen                    *Desc

	mu    sync.Mutex // guards everything below
	file  rereadFile
	lines []netdevLine
	devs  map[string]*netdevDev
	gen   uint64
}

// netdevDev is what the collector keeps of one interface between scrapes.
type netdevDev struct {
	name     string
	gen      uint64
	excluded bool
	labels   []*dto.LabelPair // {device}

	// noSysfs: no /sys/class/net/<device> (a sysfs of another network namespace); tried again at
	// the refresh.
	noSysfs   bool
	operstate rereadFile
	flags     rereadFile
	lastOper  string
	lastFlags string
	loadedAt  time.Time
	loaded    bool

	info                         []*dto.LabelPair
	carrier, mtu, speed, txQueue float64
	hasCarrier, hasMTU, hasSpeed bool
	hasTxQueue                   bool
}

func newNetdev(cfg *Config, _ *slog.Logger) (Collector, error) {
	var exclude *regexp.Regexp
	if cfg.Netdev.DeviceExclude != "" {
		var err error
		if exclude, err = regexp.Compile(cfg.Netdev.DeviceExclude); err != nil {
			return nil, fmt.Errorf("device exclusion: %w", err)
		}
	}
	dev := []string{"device"}
	c := &netdevCollector{
		exclude: exclude,
		sysNet:  filepath.Join(cfg.SysPath, "class", "net"),
		now:     time.Now,
		file:    rereadFile{path: filepath.Join(cfg.ProcPath, "net", "dev")},
		devs:    map[string]*netdevDev{},
		up: newDesc("node_network_up",
			"Value is 1 if operstate is 'up', 0 otherwise.", dev),
		info: newDesc("node_network_info",
			"Non-numeric data from /sys/class/net/<iface>, value is always 1.",
			[]string{"device", "address", "broadcast", "duplex", "operstate", "adminstate", "ifalias"}),
		carrier:    newDesc("node_network_carrier", "Network device property: carrier", dev),
		mtu:        newDesc("node_network_mtu_bytes", "Network device property: mtu_bytes", dev),
		speed:      newDesc("node_network_speed_bytes", "Network device property: speed_bytes", dev),
		txQueueLen: newDesc("node_network_transmit_queue_length", "Network device property: transmit_queue_length", dev),
	}
	for i, key := range netdevCounterNames {
		c.counters[i] = newDesc("node_network_"+key+"_total", "Network device statistic "+key+".", dev)
	}
	return c, nil
}

// Close releases the descriptors kept open on /proc/net/dev and the interfaces' sysfs files.
func (c *netdevCollector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.devs {
		d.close()
	}
	return c.file.close()
}

func (d *netdevDev) close() {
	_ = d.operstate.close()
	_ = d.flags.close()
}

func (c *netdevCollector) Update(_ context.Context, m *Metrics) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	data, err := c.file.read()
	if err != nil {
		return fmt.Errorf("reading net/dev: %w", err)
	}
	var errs []error
	c.lines = parseNetdev(data, c.lines[:0], func(err error) { errs = append(errs, err) })

	c.gen++
	now := c.now()
	for i := range c.lines {
		l := &c.lines[i]
		d := c.devs[string(l.name)]
		if d == nil {
			d = c.newDev(string(l.name))
			c.devs[d.name] = d
		} else if d.gen == c.gen {
			errs = append(errs, fmt.Errorf("net/dev: device %q listed twice", l.name))
			continue
		}
		d.gen = c.gen
		if d.excluded {
			continue
		}
		for j, desc := range c.counters {
			m.addShared(desc, prometheus.CounterValue, float64(l.vals[j]), d.labels)
		}
		c.updateSysfs(d, now)
		if d.noSysfs {
			continue
		}
		up := 0.0
		if d.lastOper == "up" {
			up = 1
		}
		m.addShared(c.up, prometheus.GaugeValue, up, d.labels)
		m.addShared(c.info, prometheus.GaugeValue, 1, d.info)
		if d.hasCarrier {
			m.addShared(c.carrier, prometheus.GaugeValue, d.carrier, d.labels)
		}
		if d.hasMTU {
			m.addShared(c.mtu, prometheus.GaugeValue, d.mtu, d.labels)
		}
		if d.hasSpeed {
			m.addShared(c.speed, prometheus.GaugeValue, d.speed, d.labels)
		}
		if d.hasTxQueue {
			m.addShared(c.txQueueLen, prometheus.GaugeValue, d.txQueue, d.labels)
		}
	}
	if len(c.devs) != len(c.lines) {
		for name, d := range c.devs {
			if d.gen != c.gen {
				d.close()
				delete(c.devs, name)
			}
		}
	}
	return errors.Join(errs...)
}

func (c *netdevCollector) newDev(name string) *netdevDev {
	dir := filepath.Join(c.sysNet, name)
	return &netdevDev{
		name:      name,
		excluded:  c.exclude != nil && c.exclude.MatchString(name),
		labels:    labelPairsFor(c.up, name),
		operstate: rereadFile{path: filepath.Join(dir, "operstate"), whole: true},
		flags:     rereadFile{path: filepath.Join(dir, "flags"), whole: true},
	}
}

// updateSysfs reads an interface's operstate and flags, and the rest of its attributes when either
// changed or the cached ones are due for a refresh. A missing sysfs directory is remembered until
// the refresh, so that a host whose /sys shows another network namespace costs no failed opens.
func (c *netdevCollector) updateSysfs(d *netdevDev, now time.Time) {
	due := !d.loaded || now.Sub(d.loadedAt) >= netdevInfoRefresh
	if d.noSysfs && !due {
		return
	}
	oper, err := d.operstate.read()
	if err != nil {
		d.close()
		d.noSysfs, d.loaded, d.loadedAt = true, true, now
		return
	}
	d.noSysfs = false
	oper = bytes.TrimSpace(oper)
	var flags []byte
	if f, err := d.flags.read(); err == nil {
		flags = bytes.TrimSpace(f)
	}
	if !due && string(oper) == d.lastOper && string(flags) == d.lastFlags {
		return
	}
	d.lastOper, d.lastFlags = string(oper), string(flags)
	d.loaded, d.loadedAt = true, now

	dir := filepath.Join(c.sysNet, d.name)
	attr := func(name string) (string, bool) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil { // EINVAL for duplex or speed of a link that is down or virtual
			return "", false
		}
		return string(bytes.TrimSpace(b)), true
	}
	num := func(name string) (float64, bool) {
		s, ok := attr(name)
		if !ok {
			return 0, false
		}
		v, err := strconv.ParseInt(s, 10, 64)
		return float64(v), err == nil
	}
	address, _ := attr("address")
	broadcast, _ := attr("broadcast")
	duplex, _ := attr("duplex")
	ifalias, _ := attr("ifalias")
	d.info = labelPairsFor(c.info, d.name, address, broadcast, duplex, d.lastOper, netdevAdminState(flags), ifalias)
	d.carrier, d.hasCarrier = num("carrier")
	d.mtu, d.hasMTU = num("mtu")
	d.txQueue, d.hasTxQueue = num("tx_queue_len")
	// The kernel reports -1 (or a huge unsigned value) for an unknown speed: node_exporter 1.x
	// exposes that as a negative rate unless --collector.netclass.ignore-invalid-speed, which
	// becomes its default in 2.x; this follows 2.x, as a negative link speed breaks dashboards.
	if mbit, ok := num("speed"); ok && mbit >= 0 && mbit < 1<<40 {
		d.speed, d.hasSpeed = mbit*1000*1000/8, true
	} else {
		d.hasSpeed = false
	}
}

// netdevAdminState reads IFF_UP from the hexadecimal flags of /sys/class/net/<device>/flags.
func netdevAdminState(flags []byte) string {
	v, err := strconv.ParseUint(string(bytes.TrimPrefix(flags, []byte("0x"))), 16, 64)
	switch {
	case len(flags) == 0 || err != nil:
		return "unknown"
	case v&1 != 0:
		return "up"
	default:
		return "down"
	}
}

// netdevLine is one interface's line of /proc/net/dev. name aliases the read buffer.
type netdevLine struct {
	name []byte
	vals [netdevFields]uint64
}

// parseNetdev appends the interface lines of /proc/net/dev to lines, skipping the two header
// lines; lines it cannot read go to bad.
func parseNetdev(data []byte, lines []netdevLine, bad func(error)) []netdevLine {
	for len(data) > 0 {
		var line []byte
		line, data = nextLine(data)
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			if len(bytes.TrimSpace(line)) != 0 && bytes.IndexByte(line, '|') < 0 { // headers have '|'
				bad(fmt.Errorf("net/dev: malformed line %q", line))
			}
			continue
		}
		// An interface name has no ':' or whitespace (dev_valid_name), so the first colon ends it.
		var l netdevLine
		l.name = bytes.TrimSpace(line[:colon])
		n, i, ok := 0, colon+1, len(l.name) > 0
		for ok {
			for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
				i++
			}
			if i == len(line) {
				break
			}
			var v uint64
			for ; i < len(line) && line[i] != ' ' && line[i] != '\t'; i++ {
				d := uint64(line[i] - '0')
				if d > 9 || v > (1<<64-1-d)/10 {
					ok = false
					break
				}
				v = v*10 + d
			}
			if n < netdevFields {
				l.vals[n] = v
			}
			n++
		}
		// More columns than sixteen would be a future kernel's addition: the known ones are read.
		if !ok || n < netdevFields {
			bad(fmt.Errorf("net/dev: malformed line %q", line))
			continue
		}
		lines = append(lines, l)
	}
	return lines
}
