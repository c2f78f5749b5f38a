package collector

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"
)

func TestFilesystemReal(t *testing.T) {
	mi, err := os.ReadFile("/proc/1/mountinfo")
	if err != nil {
		mi, err = os.ReadFile("/proc/self/mountinfo")
	}
	if err != nil {
		t.Skipf("no mountinfo: %v", err)
	}
	var rootType string
	parseMountinfo(mi, func(e mountinfoEntry) {
		if string(e.mountPoint) == "/" {
			rootType = string(e.fsType)
		}
	}, func(error) {})
	c, err := newFilesystem(realConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.(*filesystemCollector).Close()
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(realConfig(t).Filesystem.FSTypesExclude).MatchString(rootType) {
		t.Skipf("the root file system here is %s, which is excluded by default", rootType)
	}
	root := []string{"mountpoint", "/", "fstype", rootType, "device_error", ""}
	size, ok := fams.Value("node_filesystem_size_bytes", root...)
	if !ok || size <= 0 {
		t.Fatalf("node_filesystem_size_bytes for / = %v (%v); families %v", size, ok, fams.Names())
	}
	free, _ := fams.Value("node_filesystem_free_bytes", root...)
	avail, _ := fams.Value("node_filesystem_avail_bytes", root...)
	if free > size || avail > free {
		t.Errorf("root: size %v, free %v, avail %v: want avail <= free <= size", size, free, avail)
	}
	if v, ok := fams.Value("node_filesystem_device_error", root...); !ok || v != 0 {
		t.Errorf("root device_error = %v (%v)", v, ok)
	}
	if fams.Count("node_filesystem_mount_info", "mountpoint", "/") != 1 {
		t.Error("no node_filesystem_mount_info for /")
	}
	for _, excluded := range []string{"/proc", "/sys", "/dev"} {
		if fams.Count("node_filesystem_device_error", "mountpoint", excluded) != 0 {
			t.Errorf("%s reported, want it excluded", excluded)
		}
	}
}

// fakeStatfs answers statfs from a table keyed by path, and records the paths asked.
type fakeStatfs struct {
	mu    sync.Mutex
	table map[string]syscall.Statfs_t
	asked []string
}

func (f *fakeStatfs) statfs(path string, st *syscall.Statfs_t) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, path)
	s, ok := f.table[path]
	if !ok {
		return syscall.ENOENT
	}
	*st = s
	return nil
}

func TestFilesystemFixture(t *testing.T) {
	mountinfo, err := os.ReadFile("testdata/filesystem/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	proc := writeTree(t, map[string]string{"1/mountinfo": string(mountinfo) + "odd line\n40 27 8:9 / /truncated rw"})
	cfg := fixtureConfig(t, proc, "")
	cfg.RootPath = "/rootfs"
	c, _ := newFilesystem(cfg, nil)
	fc := c.(*filesystemCollector)
	st := func(blocks, bfree, bavail, files, ffree uint64) syscall.Statfs_t {
		return syscall.Statfs_t{Bsize: 4096, Blocks: blocks, Bfree: bfree, Bavail: bavail, Files: files, Ffree: ffree}
	}
	fake := &fakeStatfs{table: map[string]syscall.Statfs_t{
		"/rootfs":                 st(1000, 500, 400, 100, 50),
		"/rootfs/data with space": st(2000, 10, 5, 7, 3),
		"/rootfs/tab\tdir":        st(1, 1, 1, 1, 1),
		"/rootfs/ro":              st(1, 1, 1, 1, 1),
		"/rootfs/superro":         st(1, 1, 1, 1, 1),
		"/rootfs/run/user/1000":   st(256, 256, 256, 10, 10),
		"/rootfs/dup":             st(3, 2, 1, 1, 1),
		"/rootfs/mnt/nfs":         st(9, 9, 9, 9, 9),
		"/rootfs/back\\slash":     st(1, 1, 1, 1, 1),
	}}
	fc.statfs = fake.statfs
	fams, err := scrape(t, c)
	if err == nil || !strings.Contains(err.Error(), "odd line") || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("err = %v, want the odd and the truncated line reported", err)
	}
	ok := func(mp, fstype, device string) []string {
		return []string{"mountpoint", mp, "fstype", fstype, "device", device, "device_error", ""}
	}
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"node_filesystem_size_bytes", ok("/", "ext4", "/dev/sda1"), 1000 * 4096},
		{"node_filesystem_free_bytes", ok("/", "ext4", "/dev/sda1"), 500 * 4096},
		{"node_filesystem_avail_bytes", ok("/", "ext4", "/dev/sda1"), 400 * 4096},
		{"node_filesystem_files", ok("/", "ext4", "/dev/sda1"), 100},
		{"node_filesystem_files_free", ok("/", "ext4", "/dev/sda1"), 50},
		{"node_filesystem_readonly", ok("/", "ext4", "/dev/sda1"), 0}, // errors=remount-ro is not ro
		{"node_filesystem_device_error", ok("/", "ext4", "/dev/sda1"), 0},
		{"node_filesystem_mount_info", []string{"device", "/dev/sda1", "major", "8", "minor", "1", "mountpoint", "/"}, 1},
		{"node_filesystem_size_bytes", ok("/data with space", "xfs", "/dev/sda2"), 2000 * 4096},
		{"node_filesystem_size_bytes", ok("/tab\tdir", "ext4", "/dev/sda3"), 4096},
		{"node_filesystem_size_bytes", ok("/back\\slash", "tmpfs", "tmpfs"), 4096},
		{"node_filesystem_readonly", ok("/ro", "ext4", "/dev/sda4"), 1},
		{"node_filesystem_readonly", ok("/superro", "ext4", "/dev/sda5"), 1},
		{"node_filesystem_size_bytes", ok("/run/user/1000", "tmpfs", "tmpfs"), 256 * 4096},
		{"node_filesystem_size_bytes", ok("/dup", "ext4", "/dev/new"), 3 * 4096},
		{"node_filesystem_avail_bytes", ok("/mnt/nfs", "nfs4", "server:/export"), 9 * 4096},
		{"node_filesystem_device_error", []string{"mountpoint", "/missing", "device_error", "no such file or directory"}, 1},
		{"node_filesystem_readonly", []string{"mountpoint", "/missing", "device_error", "no such file or directory"}, 0},
	}
	for _, ch := range checks {
		if got, found := fams.Value(ch.name, ch.labels...); !found || got != ch.want {
			t.Errorf("%s%q = %v (%v), want %v", ch.name, ch.labels, got, found, ch.want)
		}
	}
	for _, absent := range []string{"/proc", "/sys", "/dev", "/var/lib/docker/overlay2/abc/merged", "/truncated"} {
		if n := fams.Count("node_filesystem_device_error", "mountpoint", absent); n != 0 {
			t.Errorf("%s reported %d times, want it left out", absent, n)
		}
	}
	if n := fams.Count("node_filesystem_device_error", "mountpoint", "/dup"); n != 1 {
		t.Errorf("/dup reported %d times, want once (the last entry)", n)
	}
	if n := fams.Count("node_filesystem_size_bytes", "mountpoint", "/missing"); n != 0 {
		t.Error("a mount whose statfs failed reports a size")
	}
	if n := fams.Count("node_filesystem_mount_info"); n != 9 {
		t.Errorf("node_filesystem_mount_info has %d series, want 9 (every mount statfs-ed without error)", n)
	}

	// An unchanged mount table is not parsed again: the cached mounts are the same objects.
	before := append([]*fsMount(nil), fc.mounts...)
	if _, err := scrape(t, c); err == nil || !strings.Contains(err.Error(), "odd line") {
		t.Errorf("second scrape: err = %v, want the malformed lines reported for as long as the table has them", err)
	}
	for i := range before {
		if fc.mounts[i] != before[i] {
			t.Fatal("unchanged mount table parsed again")
		}
	}
	// A new mount is seen; the others keep their label pairs.
	if err := os.WriteFile(filepath.Join(proc, "1/mountinfo"),
		append(append([]byte(nil), mountinfo...), "41 27 8:10 / /new rw - ext4 /dev/sdb1 rw\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	fake.table["/rootfs/new"] = st(5, 5, 5, 5, 5)
	fams, err = scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := fams.Value("node_filesystem_size_bytes", "mountpoint", "/new"); v != 5*4096 {
		t.Errorf("new mount size = %v", v)
	}
	if fc.mounts[0] != before[0] {
		t.Error("label pairs of an unchanged mount rebuilt")
	}
}

func TestFilesystemRealStatfsFixture(t *testing.T) {
	// The mount table is a fixture, statfs is real: mount points are directories under RootPath.
	root := writeTree(t, map[string]string{"data with space/x": "", "tab\tdir/x": ""})
	proc := writeTree(t, map[string]string{"1/mountinfo": "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n" +
		"2 1 8:2 / /data\\040with\\040space rw - ext4 /dev/sda2 rw\n3 1 8:3 / /tab\\011dir rw - ext4 /dev/sda3 rw\n" +
		"4 1 8:4 / /absent rw - ext4 /dev/sda4 rw\n"})
	cfg := fixtureConfig(t, proc, "")
	cfg.RootPath = root
	c, _ := newFilesystem(cfg, nil)
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, mp := range []string{"/", "/data with space", "/tab\tdir"} {
		if v, ok := fams.Value("node_filesystem_size_bytes", "mountpoint", mp, "device_error", ""); !ok || v <= 0 {
			t.Errorf("size of %q = %v (%v)", mp, v, ok)
		}
	}
	if v, _ := fams.Value("node_filesystem_device_error", "mountpoint", "/absent"); v != 1 {
		t.Errorf("device_error of /absent = %v, want 1", v)
	}
}

func TestFilesystemRootStrip(t *testing.T) {
	// Read through the agent's own mount table in a container, the host's mounts appear under
	// RootPath; they are reported under the host's paths.
	proc := writeTree(t, map[string]string{"self/mountinfo": "1 0 0:1 / / rw - overlay overlay rw\n" +
		"2 1 8:1 / /host rw - ext4 /dev/sda1 rw\n3 2 8:2 / /host/boot rw - ext4 /dev/sda2 rw\n4 1 8:3 / /hostile rw - ext4 /dev/sda3 rw\n"})
	cfg := fixtureConfig(t, proc, "")
	cfg.RootPath = "/host"
	c, _ := newFilesystem(cfg, nil)
	fake := &fakeStatfs{table: map[string]syscall.Statfs_t{
		"/host": {Bsize: 1, Blocks: 1}, "/host/boot": {Bsize: 1, Blocks: 2}, "/host/hostile": {Bsize: 1, Blocks: 3},
	}}
	c.(*filesystemCollector).statfs = fake.statfs
	fams, err := scrape(t, c)
	if err != nil {
		t.Fatal(err)
	}
	for mp, want := range map[string]float64{"/": 1, "/boot": 2, "/hostile": 3} {
		if v, ok := fams.Value("node_filesystem_size_bytes", "mountpoint", mp); !ok || v != want {
			t.Errorf("size of %s = %v (%v), want %v", mp, v, ok, want)
		}
	}
}

func TestFilesystemMountinfoFallback(t *testing.T) {
	line := "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
	tests := []struct {
		name    string
		files   map[string]string
		wantErr bool
	}{
		{"pid 1", map[string]string{"1/mountinfo": line}, false},
		{"pid 1 hidden: self", map[string]string{"self/mountinfo": line}, false},
		{"neither", map[string]string{"other": ""}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newFilesystem(fixtureConfig(t, writeTree(t, tt.files), ""), nil)
			c.(*filesystemCollector).statfs = (&fakeStatfs{table: map[string]syscall.Statfs_t{"/": {Bsize: 1, Blocks: 1}}}).statfs
			fams, err := scrape(t, c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if want := map[bool]int{false: 1, true: 0}[tt.wantErr]; fams.Count("node_filesystem_size_bytes") != want {
				t.Errorf("%d file systems, want %d", fams.Count("node_filesystem_size_bytes"), want)
			}
		})
	}
}

// TestFilesystemMountsWatch checks that mountinfo is read again only when mounts changed.
func TestFilesystemMountsWatch(t *testing.T) {
	proc := writeTree(t, map[string]string{
		"1/mounts":    "/dev/sda1 / ext4 rw 0 0\n",
		"1/mountinfo": "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n",
	})
	c, _ := newFilesystem(fixtureConfig(t, proc, ""), nil)
	c.(*filesystemCollector).statfs = (&fakeStatfs{table: map[string]syscall.Statfs_t{
		"/": {Bsize: 1, Blocks: 1}, "/data": {Bsize: 1, Blocks: 2}}}).statfs
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(proc, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		t.Helper()
		fams, err := scrape(t, c)
		if err != nil {
			t.Fatal(err)
		}
		return fams.Count("node_filesystem_size_bytes")
	}
	if n := count(); n != 1 {
		t.Fatalf("%d file systems, want 1", n)
	}
	write("1/mountinfo", "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 8:2 / /data rw - ext4 /dev/sda2 rw\n")
	if n := count(); n != 1 {
		t.Errorf("mountinfo was read again although mounts did not change: %d file systems", n)
	}
	write("1/mounts", "/dev/sda1 / ext4 rw 0 0\n/dev/sda2 /data ext4 rw 0 0\n")
	if n := count(); n != 2 {
		t.Errorf("after mounts changed: %d file systems, want 2", n)
	}
}

// TestFilesystemHungMount simulates a dead NFS server: the scrape must return, report the mount
// as device_error, not start a second call while the first hangs, and recover once it returns.
func TestFilesystemHungMount(t *testing.T) {
	proc := writeTree(t, map[string]string{"1/mountinfo": "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n" +
		"2 1 0:50 / /mnt/nfs rw - nfs4 server:/export rw\n"})
	cfg := fixtureConfig(t, proc, "")
	cfg.Filesystem.StatTimeout = 50 * time.Millisecond
	c, _ := newFilesystem(cfg, nil)
	fc := c.(*filesystemCollector)
	release := make(chan struct{})
	var hungCalls atomic.Int32
	fc.statfs = func(path string, st *syscall.Statfs_t) error {
		if path == "/mnt/nfs" {
			hungCalls.Add(1)
			<-release
		}
		*st = syscall.Statfs_t{Bsize: 1024, Blocks: 10, Bfree: 5, Bavail: 4, Files: 3, Ffree: 2}
		return nil
	}
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	stuck := []string{"mountpoint", "/mnt/nfs", "fstype", "nfs4", "device", "server:/export", "device_error", fsStuckError}

	for i := range 2 {
		done := make(chan Families)
		go func() {
			fams, err := scrape(t, c)
			if err != nil {
				t.Error(err)
			}
			done <- fams
		}()
		var fams Families
		select {
		case fams = <-done:
		case <-time.After(time.Minute): // far beyond StatTimeout: only a hang gets here
			t.Fatalf("scrape %d did not return while a mount hangs", i+1)
		}
		if v, ok := fams.Value("node_filesystem_device_error", stuck...); !ok || v != 1 {
			t.Errorf("scrape %d: hung mount device_error = %v (%v), want 1 with device_error=%q", i+1, v, ok, fsStuckError)
		}
		if fams.Count("node_filesystem_size_bytes", "mountpoint", "/mnt/nfs") != 0 || fams.Count("node_filesystem_mount_info", "mountpoint", "/mnt/nfs") != 0 {
			t.Errorf("scrape %d: hung mount reports sizes", i+1)
		}
		if v, _ := fams.Value("node_filesystem_size_bytes", "mountpoint", "/"); v != 10*1024 {
			t.Errorf("scrape %d: the healthy mount's size = %v, want %v", i+1, v, 10*1024)
		}
		if n := hungCalls.Load(); n != 1 {
			t.Fatalf("scrape %d: %d statfs calls on the hung mount, want 1 (no pile-up)", i+1, n)
		}
	}

	close(release)
	// The stuck call returns in its own time; the mount reports normally on the first scrape after.
	deadline := time.Now().Add(time.Minute)
	for {
		fams, err := scrape(t, c)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := fams.Value("node_filesystem_device_error", "mountpoint", "/mnt/nfs", "device_error", ""); ok && v == 0 {
			if size, _ := fams.Value("node_filesystem_size_bytes", "mountpoint", "/mnt/nfs"); size != 10*1024 {
				t.Errorf("recovered mount size = %v", size)
			}
			if fams.Count("node_filesystem_device_error", "mountpoint", "/mnt/nfs") != 1 {
				t.Error("recovered mount still also reported as stuck")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("mount never recovered after its statfs returned")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := hungCalls.Load(); n < 2 {
		t.Errorf("statfs calls on the recovered mount = %d, want it statfs-ed again", n)
	}
}

func TestFilesystemUnreadable(t *testing.T) {
	if asNobody(t) {
		return
	}
	line := "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
	proc := writeTree(t, map[string]string{"1/mountinfo": line, "self/mountinfo": line})
	// pid 1's table denied: the agent's own is read instead.
	if err := os.Chmod(filepath.Join(proc, "1/mountinfo"), 0); err != nil {
		t.Fatal(err)
	}
	c, _ := newFilesystem(fixtureConfig(t, proc, ""), nil)
	if fams, err := scrape(t, c); err != nil || fams.Count("node_filesystem_device_error") != 1 {
		t.Fatalf("with pid 1's mountinfo unreadable: err %v, families %v", err, fams.Names())
	}
	if err := os.Chmod(filepath.Join(proc, "self/mountinfo"), 0); err != nil {
		t.Fatal(err)
	}
	c, _ = newFilesystem(fixtureConfig(t, proc, ""), nil)
	if _, err := scrape(t, c); err == nil {
		t.Fatal("want an error when no mountinfo is readable")
	}
}

func TestFilesystemBadConfig(t *testing.T) {
	for _, fc := range []FilesystemConfig{{MountPointsExclude: "("}, {FSTypesExclude: "[z-a]"}} {
		cfg := fixtureConfig(t, t.TempDir(), "")
		cfg.Filesystem = fc
		if _, err := newFilesystem(cfg, nil); err == nil {
			t.Errorf("%+v: want an error", fc)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`: "/plain", `/a\040b`: "/a b", `/t\011`: "/t\t", `/n\012l`: "/n\nl", `/b\134s`: `/b\s`,
		`/short\04`: `/short\04`, `/bad\048`: `/bad\048`, `/big\777`: `/big\777`, `\`: `\`,
	} {
		if got := unescapeMountinfo([]byte(in)); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseMountinfo(f *testing.F) {
	if data, err := os.ReadFile("testdata/filesystem/mountinfo"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 8:2 / /x rw a b c d e f g h - ext4\n- - - - - - -\n"))
	f.Add([]byte("1 0 8:1 / /a\\040b\\ rw - ext4 /dev/sda1 rw"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseMountinfo(data, func(e mountinfoEntry) {
			if len(e.mountPoint) == 0 || bytes.IndexByte(e.majorMinor, ':') <= 0 {
				t.Fatalf("bad entry %+v", e)
			}
			if mp := unescapeMountinfo(e.mountPoint); len(mp) > len(e.mountPoint) {
				t.Fatalf("unescaping grew %q to %q", e.mountPoint, mp)
			}
			_ = mountinfoHasOption(e.mountOptions, "ro")
		}, func(error) {})
	})
}

// BenchmarkParseMountinfo compares the parser with procfs's (which reads the file too: a few
// microseconds of the difference).
func BenchmarkParseMountinfo(b *testing.B) {
	data, err := os.ReadFile("testdata/filesystem/mountinfo")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("own", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			parseMountinfo(data, func(e mountinfoEntry) { _ = unescapeMountinfo(e.mountPoint) }, func(error) {})
		}
	})
	b.Run("procfs", func(b *testing.B) {
		// procfs stops at the first malformed line; the fixture has none.
		fs, err := procfs.NewFS(writeTree(b, map[string]string{"self/mountinfo": string(data)}))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := fs.GetMounts(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkFilesystem(b *testing.B) {
	c, _ := newFilesystem(realConfig(b), nil)
	defer c.(*filesystemCollector).Close()
	b.ReportAllocs()
	for b.Loop() {
		m := &Metrics{}
		if err := c.Update(b.Context(), m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFilesystemManyMounts scrapes a fixture mount table of 30 real directories, as on a
// server with many file systems: the per-mount cost, which a host with two mounts hides.
func BenchmarkFilesystemManyMounts(b *testing.B) {
	dir := b.TempDir()
	var mounts, mountinfo strings.Builder
	for i := range 30 {
		mp := filepath.Join(dir, "m"+strconv.Itoa(i))
		if err := os.Mkdir(mp, 0o755); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&mountinfo, "%d 27 254:0 / %s rw,relatime shared:1 - ext4 /dev/vda rw,discard\n", 100+i, mp)
		fmt.Fprintf(&mounts, "/dev/vda %s ext4 rw,discard 0 0\n", mp)
	}
	proc := writeTree(b, map[string]string{"1/mounts": mounts.String(), "1/mountinfo": mountinfo.String()})
	c, _ := newFilesystem(fixtureConfig(b, proc, ""), nil)
	defer c.(*filesystemCollector).Close()
	b.ReportAllocs()
	for b.Loop() {
		m := &Metrics{}
		if err := c.Update(b.Context(), m); err != nil {
			b.Fatal(err)
		}
		if m.Len() != 30*8 {
			b.Fatalf("%d samples, want %d", m.Len(), 30*8)
		}
	}
}
