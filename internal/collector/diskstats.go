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
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func init() { register("diskstats", true, newDiskstats) }

// DefaultDiskstatsDeviceExclude is node_exporter's default --collector.diskstats.device-exclude:
// partitions, RAM disks, loop and floppy devices, whose I/O is already counted on the whole disk or
// is not disk I/O at all.
const DefaultDiskstatsDeviceExclude = `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`

const (
	// diskSectorBytes is the unit of /proc/diskstats' sector counts: always 512 bytes, whatever the
	// device's own sector size (Documentation/admin-guide/iostats.rst).
	diskSectorBytes    = 512
	diskTicksPerSecond = 1000 // the kernel counts I/O time in milliseconds

	// diskInfoRefresh bounds how stale the cached udev and sysfs facts of a disk can be when the
	// device set does not change (a file system created on a disk, a write cache switched off).
	diskInfoRefresh = 10 * time.Minute
)

// diskstatsCollector exposes /proc/diskstats under node_exporter's names (node_disk_*), plus
// node_disk_info and the udev-derived info metrics.
//
// It parses /proc/diskstats itself: procfs's blockdevice parser runs fmt.Sscanf on every line,
// which costs more than the rest of a scrape together (see BenchmarkParseDiskstats). What rarely
// changes -- a device's udev properties, its rotational flag, its label pairs -- is read once per
// device and kept until the device set changes or diskInfoRefresh passes, where node_exporter reads
// the udev database and some twenty queue files of every disk on every scrape.
type diskstatsCollector struct {
	sysBlock string // <sys>/block
	udevDir  string
	exclude  *regexp.Regexp
	now      func() time.Time

	stats                               [diskStatFields]diskStatDesc
	info, fsInfo, dmInfo, dmBacking     *Desc
	ataWriteCache, ataWriteCacheEnabled *Desc
	ataRotationRate                     *Desc

	mu       sync.Mutex // guards everything below: the file, its buffer and the device cache
	file     rereadFile
	lines    []diskLine
	devs     map[string]*diskDev
	gen      uint64
	loadedAt time.Time
}

// diskStatFields is how many counters a line of a current kernel (5.5+) has after the device name;
// 4.18+ has 15 (no flush counters), older kernels 11 (no discard counters).
const diskStatFields = 17

type diskStatDesc struct {
	desc     *Desc
	kind     prometheus.ValueType
	mul, div float64 // dividing rather than multiplying by 0.001 keeps 698 ms at 0.698 s exactly
}

// diskDev is what the collector keeps of one device between scrapes.
type diskDev struct {
	name         string
	major, minor uint32
	excluded     bool
	gen          uint64 // the scrape that last saw the device
	loaded       bool   // udev and sysfs facts read

	labels  []*dto.LabelPair // {device}, shared by every per-device counter
	info    []*dto.LabelPair
	fsInfo  []*dto.LabelPair // nil when udev knows no file system on the device
	dmInfo  []*dto.LabelPair // nil unless a device-mapper device
	backing [][]*dto.LabelPair
	ata     []diskATAValue
}

type diskATAValue struct {
	desc  *Desc
	value float64
}

func newDiskstats(cfg *Config, _ *slog.Logger) (Collector, error) {
	exclude, err := regexp.Compile(cfg.Diskstats.DeviceExclude)
	if err != nil {
		return nil, fmt.Errorf("device exclusion: %w", err)
	}
	dev := []string{"device"}
	d := func(name, help string, labels []string) *Desc {
		return newDesc("node_disk_"+name, help, labels)
	}
	counter := func(name, help string, mul, div float64) diskStatDesc {
		return diskStatDesc{d(name, help, dev), prometheus.CounterValue, mul, div}
	}
	c := &diskstatsCollector{
		sysBlock: filepath.Join(cfg.SysPath, "block"),
		udevDir:  cfg.UdevPath,
		exclude:  exclude,
		now:      time.Now,
		file:     rereadFile{path: filepath.Join(cfg.ProcPath, "diskstats")},
		devs:     map[string]*diskDev{},
		// The order is that of the fields in /proc/diskstats.
		stats: [diskStatFields]diskStatDesc{
			counter("reads_completed_total", "The total number of reads completed successfully.", 1, 1),
			counter("reads_merged_total", "The total number of reads merged.", 1, 1),
			counter("read_bytes_total", "The total number of bytes read successfully.", diskSectorBytes, 1),
			counter("read_time_seconds_total", "The total number of seconds spent by all reads.", 1, diskTicksPerSecond),
			counter("writes_completed_total", "The total number of writes completed successfully.", 1, 1),
			counter("writes_merged_total", "The number of writes merged.", 1, 1),
			counter("written_bytes_total", "The total number of bytes written successfully.", diskSectorBytes, 1),
			counter("write_time_seconds_total", "This is the total number of seconds spent by all writes.", 1, diskTicksPerSecond),
			{d("io_now", "The number of I/Os currently in progress.", dev), prometheus.GaugeValue, 1, 1},
			counter("io_time_seconds_total", "Total seconds spent doing I/Os.", 1, diskTicksPerSecond),
			counter("io_time_weighted_seconds_total", "The weighted # of seconds spent doing I/Os.", 1, diskTicksPerSecond),
			counter("discards_completed_total", "The total number of discards completed successfully.", 1, 1),
			counter("discards_merged_total", "The total number of discards merged.", 1, 1),
			// node_exporter exposes this one in sectors, not bytes; so do we, for its dashboards.
			counter("discarded_sectors_total", "The total number of sectors discarded successfully.", 1, 1),
			counter("discard_time_seconds_total", "This is the total number of seconds spent by all discards.", 1, diskTicksPerSecond),
			counter("flush_requests_total", "The total number of flush requests completed successfully", 1, 1),
			counter("flush_requests_time_seconds_total", "This is the total number of seconds spent by all flush requests.", 1, diskTicksPerSecond),
		},
		info: d("info", "Info of /sys/block/<block_device>.",
			[]string{"device", "major", "minor", "path", "wwn", "model", "serial", "revision", "rotational"}),
		fsInfo: d("filesystem_info", "Info about disk filesystem.",
			[]string{"device", "type", "usage", "uuid", "version"}),
		dmInfo: d("device_mapper_info", "Info about disk device mapper.",
			[]string{"device", "name", "uuid", "vg_name", "lv_name", "lv_layer"}),
		dmBacking: d("device_mapper_backing_device_info",
			"Info about the underlying block devices of a device mapper device.", []string{"device", "backing_device"}),
		ataWriteCache:        d("ata_write_cache", "ATA disk has a write cache.", dev),
		ataWriteCacheEnabled: d("ata_write_cache_enabled", "ATA disk has its write cache enabled.", dev),
		ataRotationRate:      d("ata_rotation_rate_rpm", "ATA disk rotation rate in RPMs (0 for SSDs).", dev),
	}
	return c, nil
}

// Close releases the descriptor kept open on /proc/diskstats.
func (c *diskstatsCollector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.file.close()
}

func (c *diskstatsCollector) Update(_ context.Context, m *Metrics) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	data, err := c.file.read()
	if err != nil {
		return fmt.Errorf("reading diskstats: %w", err)
	}
	var errs []error
	c.lines = parseDiskstats(data, c.lines[:0], func(err error) { errs = append(errs, err) })

	// Reconcile the device set first, so that a change reloads every device's facts before any is
	// emitted: a new device-mapper volume, say, can change what udev says of the disks under it.
	c.gen++
	changed := false
	for i := range c.lines {
		l := &c.lines[i]
		d := c.devs[string(l.name)]
		if d != nil && d.gen == c.gen {
			errs = append(errs, fmt.Errorf("diskstats: device %q listed twice", l.name))
			l.skip = true
			continue
		}
		if d == nil || d.major != l.major || d.minor != l.minor {
			d = c.newDev(l)
			c.devs[d.name] = d
			changed = true
		}
		d.gen = c.gen
		l.dev = d
	}
	if len(c.devs) != len(c.lines) {
		for name, d := range c.devs {
			if d.gen != c.gen {
				delete(c.devs, name)
				changed = true
			}
		}
	}
	if now := c.now(); changed || now.Sub(c.loadedAt) >= diskInfoRefresh {
		for _, d := range c.devs {
			d.loaded = false
		}
		c.loadedAt = now
	}

	for i := range c.lines {
		l := &c.lines[i]
		d := l.dev
		if l.skip || d.excluded {
			continue
		}
		if !d.loaded {
			c.load(d)
		}
		m.addShared(c.info, prometheus.GaugeValue, 1, d.info)
		for j := 0; j < l.n; j++ {
			s := &c.stats[j]
			m.addShared(s.desc, s.kind, float64(l.stats[j])*s.mul/s.div, d.labels)
		}
		if d.fsInfo != nil {
			m.addShared(c.fsInfo, prometheus.GaugeValue, 1, d.fsInfo)
		}
		if d.dmInfo != nil {
			m.addShared(c.dmInfo, prometheus.GaugeValue, 1, d.dmInfo)
		}
		for _, lp := range d.backing {
			m.addShared(c.dmBacking, prometheus.GaugeValue, 1, lp)
		}
		for _, a := range d.ata {
			m.addShared(a.desc, prometheus.GaugeValue, a.value, d.labels)
		}
	}
	return errors.Join(errs...)
}

func (c *diskstatsCollector) newDev(l *diskLine) *diskDev {
	name := string(l.name)
	return &diskDev{
		name:     name,
		major:    l.major,
		minor:    l.minor,
		excluded: c.exclude.MatchString(name),
		labels:   labelPairsFor(c.stats[0].desc, name),
	}
}

// load reads what udev and sysfs say of a device. None of it is required: a host without udev (a
// container, a minimal VM) still gets every counter, with empty info labels, as from node_exporter.
func (c *diskstatsCollector) load(d *diskDev) {
	d.loaded = true
	u := readUdevProps(filepath.Join(c.udevDir, "b"+strconv.FormatUint(uint64(d.major), 10)+":"+strconv.FormatUint(uint64(d.minor), 10)))
	// sysfs names a device with '/' in its name (cciss/c0d0) with '!' instead.
	sysDir := filepath.Join(c.sysBlock, strings.ReplaceAll(d.name, "/", "!"))
	rotational := "0" // what node_exporter reports when the queue directory is missing
	if b, err := os.ReadFile(filepath.Join(sysDir, "queue", "rotational")); err == nil {
		if v := string(bytes.TrimSpace(b)); v == "1" {
			rotational = v
		}
	}
	// The serial printed on the disk's label, else what the driver reports (virtio has only ID_SERIAL).
	serial := u.get("SCSI_IDENT_SERIAL")
	if serial == "" {
		serial = u.get("ID_SERIAL_SHORT")
	}
	if serial == "" {
		serial = u.get("ID_SERIAL")
	}
	d.info = labelPairsFor(c.info, d.name, strconv.FormatUint(uint64(d.major), 10), strconv.FormatUint(uint64(d.minor), 10),
		u.get("ID_PATH"), u.get("ID_WWN"), u.get("ID_MODEL"), serial, u.get("ID_REVISION"), rotational)

	d.fsInfo, d.dmInfo, d.backing, d.ata = nil, nil, nil, nil
	if t := u.get("ID_FS_TYPE"); t != "" {
		d.fsInfo = labelPairsFor(c.fsInfo, d.name, t, u.get("ID_FS_USAGE"), u.get("ID_FS_UUID"), u.get("ID_FS_VERSION"))
	}
	if n := u.get("DM_NAME"); n != "" {
		d.dmInfo = labelPairsFor(c.dmInfo, d.name, n, u.get("DM_UUID"), u.get("DM_VG_NAME"), u.get("DM_LV_NAME"), u.get("DM_LV_LAYER"))
		if ents, err := os.ReadDir(filepath.Join(sysDir, "slaves")); err == nil {
			for _, e := range ents { // ReadDir sorts by name, as node_exporter does
				d.backing = append(d.backing, labelPairsFor(c.dmBacking, d.name, e.Name()))
			}
		}
	}
	if u.has("ID_ATA") {
		for _, a := range []struct {
			key  string
			desc *Desc
		}{
			{"ID_ATA_WRITE_CACHE", c.ataWriteCache},
			{"ID_ATA_WRITE_CACHE_ENABLED", c.ataWriteCacheEnabled},
			{"ID_ATA_ROTATION_RATE_RPM", c.ataRotationRate},
		} {
			if v, err := strconv.ParseFloat(u.get(a.key), 64); err == nil {
				d.ata = append(d.ata, diskATAValue{a.desc, v})
			}
		}
	}
}

// udevProps holds the E: (property) lines of a udev database entry.
type udevProps []string // KEY=VALUE

func readUdevProps(path string) udevProps {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var p udevProps
	for line := range bytes.Lines(data) {
		if kv, ok := bytes.CutPrefix(bytes.TrimRight(line, "\n"), []byte("E:")); ok && bytes.IndexByte(kv, '=') > 0 {
			p = append(p, string(kv))
		}
	}
	return p
}

func (p udevProps) lookup(key string) (string, bool) {
	for _, kv := range p {
		if len(kv) > len(key) && kv[len(key)] == '=' && kv[:len(key)] == key {
			return kv[len(key)+1:], true
		}
	}
	return "", false
}

func (p udevProps) get(key string) string { v, _ := p.lookup(key); return v }
func (p udevProps) has(key string) bool   { v, ok := p.lookup(key); return ok && v != "" }

// diskLine is one parsed line of /proc/diskstats. name aliases the read buffer.
type diskLine struct {
	major, minor uint32
	name         []byte
	stats        [diskStatFields]uint64
	n            int // counters present: 11, 15 or 17 (more on a future kernel are ignored)

	dev  *diskDev // set by Update
	skip bool
}

// parseDiskstats appends the lines of /proc/diskstats to lines; lines it cannot read go to bad.
// It parses each number while scanning over it, in one pass: on a host with a hundred loop and
// device-mapper devices this loop is most of the collector's cost.
func parseDiskstats(data []byte, lines []diskLine, bad func(error)) []diskLine {
	for len(data) > 0 {
		var line []byte
		line, data = nextLine(data)
		var l diskLine
		var majmin [2]uint64
		fields, i, ok := 0, 0, true
		for ok {
			for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
				i++
			}
			if i == len(line) {
				break
			}
			if fields == 2 { // the device name
				start := i
				for i < len(line) && line[i] != ' ' && line[i] != '\t' {
					i++
				}
				l.name = line[start:i]
				fields++
				continue
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
			switch {
			case fields < 2:
				majmin[fields] = v
			case fields-3 < diskStatFields:
				l.stats[fields-3] = v
			}
			fields++
		}
		switch {
		case fields == 0:
			continue
		// 14 fields is the oldest format with per-device I/O times; kernels older than 2.6.25
		// printed shorter partition lines, which nobody runs any more.
		case !ok || fields < 14 || majmin[0] > 1<<32-1 || majmin[1] > 1<<32-1:
			bad(fmt.Errorf("diskstats: malformed line %q", line))
			continue
		}
		l.major, l.minor, l.n = uint32(majmin[0]), uint32(majmin[1]), min(fields-3, diskStatFields)
		lines = append(lines, l)
	}
	return lines
}
