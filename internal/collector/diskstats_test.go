package collector

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/procfs/blockdevice"
)

func TestDiskstatsReal(t *testing.T) {
	data, err := os.ReadFile("/proc/diskstats")
	if err != nil {
		t.Skipf("no /proc/diskstats: %v", err)
	}
	c, err := newDiskstats(realConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.(*diskstatsCollector).Close()
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	exclude := regexp.MustCompile(DefaultDiskstatsDeviceExclude)
	reported := 0
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 14 {
			continue
		}
		dev := f[2]
		if exclude.MatchString(dev) {
			if n := fams.Count("node_disk_reads_completed_total", "device", dev); n != 0 {
				t.Errorf("excluded device %s reported", dev)
			}
			continue
		}
		reported++
		if fams.Count("node_disk_info", "device", dev, "major", f[0], "minor", f[1]) != 1 {
			t.Errorf("node_disk_info{device=%q,major=%q,minor=%q} missing", dev, f[0], f[1])
		}
		for _, name := range []string{"node_disk_reads_completed_total", "node_disk_read_bytes_total",
			"node_disk_written_bytes_total", "node_disk_io_time_seconds_total", "node_disk_io_now"} {
			if _, ok := fams.Value(name, "device", dev); !ok {
				t.Errorf("%s{device=%q} missing", name, dev)
			}
		}
		if v, _ := fams.Value("node_disk_read_bytes_total", "device", dev); v != float64(int64(v)/512*512) {
			t.Errorf("read bytes of %s = %v, not whole sectors", dev, v)
		}
		if len(f) >= 20 {
			if _, ok := fams.Value("node_disk_flush_requests_total", "device", dev); !ok {
				t.Errorf("kernel has flush counters but node_disk_flush_requests_total{device=%q} is missing", dev)
			}
		}
	}
	if reported == 0 {
		t.Log("every block device here is excluded by default; only exclusion was checked")
	}
	if got := fams.Count("node_disk_info"); got != reported {
		t.Errorf("node_disk_info has %d series, want %d", got, reported)
	}
}

func TestDiskstatsFixtures(t *testing.T) {
	committed, err := os.ReadFile("testdata/diskstats/diskstats")
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		name, device string
		value        float64
	}
	tests := []struct {
		name       string
		content    string
		want       []want
		absent     []want // name and device that must not be reported
		devices    int    // node_disk_info series
		wantErr    bool
		familiesOf map[string]int // family -> series count, where it matters
	}{
		{
			name:    "kernels 5.5+, 4.18+ and older; partitions and virtual devices excluded",
			content: string(committed),
			devices: 3, // sda, nvme0n1, dm-0
			want: []want{
				{"node_disk_reads_completed_total", "sda", 40478},
				{"node_disk_reads_merged_total", "sda", 7375},
				{"node_disk_read_bytes_total", "sda", 1593370 * 512},
				{"node_disk_read_time_seconds_total", "sda", 7.892},
				{"node_disk_writes_completed_total", "sda", 29771},
				{"node_disk_writes_merged_total", "sda", 17525},
				{"node_disk_written_bytes_total", "sda", 2859960 * 512},
				{"node_disk_write_time_seconds_total", "sda", 11.846},
				{"node_disk_io_now", "sda", 2},
				{"node_disk_io_time_seconds_total", "sda", 6.976},
				{"node_disk_io_time_weighted_seconds_total", "sda", 20.696},
				{"node_disk_discards_completed_total", "sda", 11380},
				{"node_disk_discards_merged_total", "sda", 8},
				{"node_disk_discarded_sectors_total", "sda", 1096432},
				{"node_disk_discard_time_seconds_total", "sda", 0.698},
				{"node_disk_flush_requests_total", "sda", 5541},
				{"node_disk_flush_requests_time_seconds_total", "sda", 0.258},
				{"node_disk_discarded_sectors_total", "nvme0n1", 8},
				{"node_disk_written_bytes_total", "dm-0", 48 * 512},
				{"node_disk_io_time_weighted_seconds_total", "dm-0", 0.003},
			},
			absent: []want{
				{name: "node_disk_reads_completed_total", device: "sda1"},
				{name: "node_disk_reads_completed_total", device: "nvme0n1p1"},
				{name: "node_disk_reads_completed_total", device: "loop0"},
				{name: "node_disk_reads_completed_total", device: "zram0"},
				{name: "node_disk_flush_requests_total", device: "nvme0n1"}, // 4.18 format: no flush counters
				{name: "node_disk_discards_completed_total", device: "dm-0"},
			},
			familiesOf: map[string]int{"node_disk_flush_requests_total": 1, "node_disk_discards_completed_total": 2},
		},
		{
			name:    "truncated last line is reported, good lines kept",
			content: " 8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n 8 16 sdb 1 2 3",
			devices: 1,
			want:    []want{{"node_disk_reads_completed_total", "sda", 1}},
			absent:  []want{{name: "node_disk_info", device: "sdb"}},
			wantErr: true,
		},
		{
			name:    "odd lines are reported, good lines kept",
			content: "garbage\n 8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n 8 x sdb 1 2 3 4 5 6 7 8 9 10 11\n 8 32 sdc 1 2 3 4 5 -6 7 8 9 10 11\n\n",
			devices: 1,
			want:    []want{{"node_disk_io_time_weighted_seconds_total", "sda", 0.011}},
			absent:  []want{{name: "node_disk_info", device: "sdb"}, {name: "node_disk_info", device: "sdc"}},
			wantErr: true,
		},
		{
			name:    "a device listed twice is reported once",
			content: " 8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n 8 0 sda 9 2 3 4 5 6 7 8 9 10 11\n",
			devices: 1,
			want:    []want{{"node_disk_reads_completed_total", "sda", 1}},
			wantErr: true,
		},
		{
			name:    "future kernel with more fields: the known ones are read",
			content: " 8 0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19\n",
			devices: 1,
			want:    []want{{"node_disk_flush_requests_time_seconds_total", "sda", 0.017}},
		},
		{
			name:    "counters at the top of the 64-bit range",
			content: " 8 0 sda 18446744073709551615 2 3 4 5 6 7 8 9 10 11\n 8 16 sdb 18446744073709551616 2 3 4 5 6 7 8 9 10 11\n",
			devices: 1,
			want:    []want{{"node_disk_reads_completed_total", "sda", 18446744073709551615}},
			wantErr: true,
		},
		{name: "empty file", content: "", devices: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc := writeTree(t, map[string]string{"diskstats": tt.content})
			c, _ := newDiskstats(fixtureConfig(t, proc, t.TempDir()), nil)
			defer c.(*diskstatsCollector).Close()
			fams, err := scrape(t, c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got := fams.Count("node_disk_info"); got != tt.devices {
				t.Errorf("node_disk_info has %d series, want %d", got, tt.devices)
			}
			for _, w := range tt.want {
				if got, ok := fams.Value(w.name, "device", w.device); !ok || got != w.value {
					t.Errorf("%s{device=%q} = %v (%v), want %v", w.name, w.device, got, ok, w.value)
				}
			}
			for _, w := range tt.absent {
				if fams.Count(w.name, "device", w.device) != 0 {
					t.Errorf("%s{device=%q} reported", w.name, w.device)
				}
			}
			for name, n := range tt.familiesOf {
				if got := fams.Count(name); got != n {
					t.Errorf("%s has %d series, want %d", name, got, n)
				}
			}
		})
	}
}

func TestDiskstatsUdevAndSysfs(t *testing.T) {
	proc := writeTree(t, map[string]string{"diskstats": " 8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n 253 0 dm-0 1 2 3 4 5 6 7 8 9 10 11\n 104 0 cciss/c0d0 1 2 3 4 5 6 7 8 9 10 11\n"})
	sys := writeTree(t, map[string]string{
		"block/sda/queue/rotational":        "1\n",
		"block/dm-0/queue/rotational":       "0\n",
		"block/dm-0/slaves/sdb/dev":         "8:16\n",
		"block/dm-0/slaves/sda/dev":         "8:0\n",
		"block/cciss!c0d0/queue/rotational": "1\n",
	})
	udev := writeTree(t, map[string]string{
		"b8:0": "S:disk/by-id/ata-X\nE:ID_PATH=pci-0000:00:1f.2-ata-1\nE:ID_WWN=0x5000c500a0b1c2d3\nE:ID_MODEL=ST2000DM008\n" +
			"E:ID_SERIAL=ST2000DM008_ZFL0\nE:ID_SERIAL_SHORT=ZFL0\nE:ID_REVISION=0001\nE:ID_ATA=1\nE:ID_ATA_WRITE_CACHE=1\n" +
			"E:ID_ATA_WRITE_CACHE_ENABLED=0\nE:ID_ATA_ROTATION_RATE_RPM=7200\nE:ID_FS_TYPE=ext4\nE:ID_FS_USAGE=filesystem\n" +
			"E:ID_FS_UUID=1234-abcd\nE:ID_FS_VERSION=1.0\nE:BROKEN\nE:=novalue\n",
		"b253:0": "E:DM_NAME=vg0-root\nE:DM_UUID=LVM-abc\nE:DM_VG_NAME=vg0\nE:DM_LV_NAME=root\nE:ID_SERIAL=virtio-serial\n",
	})
	cfg := fixtureConfig(t, proc, sys)
	cfg.UdevPath = udev
	c, _ := newDiskstats(cfg, nil)
	dc := c.(*diskstatsCollector)
	defer dc.Close()
	now := time.Unix(1_000_000, 0)
	dc.now = func() time.Time { return now }

	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name   string
		labels []string
		value  float64
	}{
		{"node_disk_info", []string{"device", "sda", "major", "8", "minor", "0", "path", "pci-0000:00:1f.2-ata-1",
			"wwn", "0x5000c500a0b1c2d3", "model", "ST2000DM008", "serial", "ZFL0", "revision", "0001", "rotational", "1"}, 1},
		{"node_disk_info", []string{"device", "dm-0", "major", "253", "serial", "virtio-serial", "rotational", "0"}, 1},
		{"node_disk_info", []string{"device", "cciss/c0d0", "path", "", "rotational", "1"}, 1},
		{"node_disk_filesystem_info", []string{"device", "sda", "type", "ext4", "usage", "filesystem", "uuid", "1234-abcd", "version", "1.0"}, 1},
		{"node_disk_device_mapper_info", []string{"device", "dm-0", "name", "vg0-root", "uuid", "LVM-abc", "vg_name", "vg0", "lv_name", "root", "lv_layer", ""}, 1},
		{"node_disk_device_mapper_backing_device_info", []string{"device", "dm-0", "backing_device", "sda"}, 1},
		{"node_disk_device_mapper_backing_device_info", []string{"device", "dm-0", "backing_device", "sdb"}, 1},
		{"node_disk_ata_write_cache", []string{"device", "sda"}, 1},
		{"node_disk_ata_write_cache_enabled", []string{"device", "sda"}, 0},
		{"node_disk_ata_rotation_rate_rpm", []string{"device", "sda"}, 7200},
	}
	for _, ch := range checks {
		if got, ok := fams.Value(ch.name, ch.labels...); !ok || got != ch.value {
			t.Errorf("%s%v = %v (%v), want %v", ch.name, ch.labels, got, ok, ch.value)
		}
	}
	if n := fams.Count("node_disk_filesystem_info"); n != 1 {
		t.Errorf("node_disk_filesystem_info has %d series, want 1 (dm-0 has no file system)", n)
	}

	// udev changes while the device set does not: the cached facts stay until the refresh is due.
	if err := os.WriteFile(filepath.Join(udev, "b8:0"), []byte("E:ID_MODEL=NEWMODEL\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fams, _ = scrape(t, c)
	if fams.Count("node_disk_info", "device", "sda", "model", "ST2000DM008") != 1 {
		t.Error("udev data was read again although no device changed")
	}
	now = now.Add(diskInfoRefresh)
	fams, _ = scrape(t, c)
	if fams.Count("node_disk_info", "device", "sda", "model", "NEWMODEL") != 1 {
		t.Error("udev data not read again after the refresh interval")
	}

	// A device appearing makes every device's facts be read again.
	if err := os.WriteFile(filepath.Join(udev, "b8:0"), []byte("E:ID_MODEL=THIRD\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "diskstats"),
		[]byte(" 8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n 253 0 dm-0 1 2 3 4 5 6 7 8 9 10 11\n 104 0 cciss/c0d0 1 2 3 4 5 6 7 8 9 10 11\n 8 32 sdc 1 2 3 4 5 6 7 8 9 10 11\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fams, _ = scrape(t, c)
	if fams.Count("node_disk_info", "device", "sda", "model", "THIRD") != 1 || fams.Count("node_disk_info", "device", "sdc") != 1 {
		t.Errorf("after sdc appeared: info = %v", fams["node_disk_info"])
	}
	if n := fams.Count("node_disk_ata_write_cache"); n != 0 {
		t.Errorf("ATA metrics still reported after udev dropped them: %d", n)
	}

	// A device vanishing is dropped from the cache.
	if err := os.WriteFile(filepath.Join(proc, "diskstats"), []byte(" 8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fams, _ = scrape(t, c)
	if n := fams.Count("node_disk_info"); n != 1 || len(dc.devs) != 1 {
		t.Errorf("after dm-0, cciss/c0d0 and sdc vanished: %d info series, %d cached devices; want 1, 1", n, len(dc.devs))
	}
}

func TestDiskstatsUnreadable(t *testing.T) {
	if asNobody(t) {
		return
	}
	proc := writeTree(t, map[string]string{"diskstats": " 8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n"})
	if err := os.Chmod(filepath.Join(proc, "diskstats"), 0); err != nil {
		t.Fatal(err)
	}
	c, _ := newDiskstats(fixtureConfig(t, proc, ""), nil)
	if _, err := scrape(t, c); err == nil {
		t.Fatal("want an error for an unreadable diskstats")
	}
	c, _ = newDiskstats(fixtureConfig(t, filepath.Join(proc, "absent"), ""), nil)
	if _, err := scrape(t, c); err == nil {
		t.Fatal("want an error for a missing diskstats")
	}
}

// TestRereadFile checks that a file kept open is read afresh, grows past the first buffer, and is
// opened again when the descriptor fails.
func TestRereadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	big := strings.Repeat("x", 10000)
	for _, whole := range []bool{false, true} {
		if err := os.WriteFile(p, []byte("one"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := &rereadFile{path: p, whole: whole}
		for _, content := range []string{"one", "two, longer", "", big, "short"} {
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := r.read()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != content {
				t.Errorf("whole=%v: read %d bytes %.20q, want %d bytes", whole, len(got), got, len(content))
			}
		}
		// A descriptor that fails (closed under it here) is replaced by a fresh open.
		r.f.Close()
		if got, err := r.read(); err != nil || string(got) != "short" {
			t.Errorf("after the descriptor failed: %q, %v", got, err)
		}
		r.close()
	}
	r := &rereadFile{path: filepath.Join(dir, "absent")}
	if _, err := r.read(); err == nil {
		t.Error("want an error for a missing file")
	}
}

func FuzzParseDiskstats(f *testing.F) {
	if data, err := os.ReadFile("testdata/diskstats/diskstats"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(" 8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n 8 16 sdb 1 2 3"))
	f.Add([]byte("\n\t8\t0\tsda 99999999999999999999 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := parseDiskstats(data, nil, func(error) {})
		for _, l := range lines {
			if l.n < 11 || l.n > diskStatFields || len(l.name) == 0 || bytes.ContainsAny(l.name, " \t\n") {
				t.Fatalf("bad line %+v", l)
			}
		}
	})
}

// BenchmarkParseDiskstats compares the parser with procfs's, on which the choice to parse here rests.
func BenchmarkParseDiskstats(b *testing.B) {
	var sb strings.Builder
	for i := range 16 {
		sb.WriteString(" 8 " + strconv.Itoa(i) + " sd" + string(rune('a'+i)) + " 40478 7375 1593370 7892 29771 17525 2859960 11846 0 6976 20696 11380 8 1096432 698 5541 258\n")
	}
	data := []byte(sb.String())
	b.Run("own", func(b *testing.B) {
		b.ReportAllocs()
		var lines []diskLine
		for b.Loop() {
			lines = parseDiskstats(data, lines[:0], func(error) {})
		}
	})
	b.Run("procfs", func(b *testing.B) {
		proc := writeTree(b, map[string]string{"diskstats": sb.String()})
		fs, err := blockdevice.NewFS(proc, proc)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := fs.ProcDiskstats(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDiskstats(b *testing.B) {
	c, _ := newDiskstats(realConfig(b), nil)
	defer c.(*diskstatsCollector).Close()
	b.ReportAllocs()
	for b.Loop() {
		m := &Metrics{}
		if err := c.Update(b.Context(), m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHostCollectorsWrite measures a scrape of each of the diskstats, filesystem and netdev
// collectors including the writing out of every sample (which a sample defers to Write): the
// figure to compare with node_exporter's Update, whose NewConstMetric builds the samples up front.
func BenchmarkHostCollectorsWrite(b *testing.B) {
	for _, tc := range []struct {
		name string
		new  Factory
	}{{"diskstats", newDiskstats}, {"filesystem", newFilesystem}, {"netdev", newNetdev}} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := tc.new(realConfig(b), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.(interface{ Close() error }).Close()
			b.ReportAllocs()
			for b.Loop() {
				m := &Metrics{}
				if err := c.Update(b.Context(), m); err != nil {
					b.Fatal(err)
				}
				for _, s := range m.List() {
					var out dto.Metric
					if err := s.Write(&out); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
