package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func init() { register("filesystem", true, newFilesystem) }

// fsStuckError is the device_error label of a mount whose statfs did not return in time, as in
// node_exporter.
const fsStuckError = "mountpoint timeout"

// filesystemCollector exposes the size and use of every mounted file system under node_exporter's
// names (node_filesystem_avail_bytes, ...), labelled {device, mountpoint, fstype, device_error},
// and node_filesystem_mount_info{device, major, minor, mountpoint}.
//
// Each mount is statfs-ed in its own goroutine, and the scrape waits at most StatTimeout for them:
// a mount that does not answer (a dead NFS server) is reported with device_error 1 and is not
// asked again until its stuck call returns, so that stuck goroutines cannot pile up. This is
// node_exporter's approach, except that node_exporter's own scrape still waits for the first
// stuck call.
//
// The mount table is parsed here rather than by procfs, which builds two maps per mount, and only
// when it changed, which on most hosts is never.
type filesystemCollector struct {
	procPath      string
	rootPath      string
	excludeMounts *regexp.Regexp
	excludeTypes  *regexp.Regexp
	timeout       time.Duration
	// statfs is replaced by tests to simulate a hung mount.
	statfs func(path string, st *syscall.Statfs_t) error

	size, free, avail, files, filesFree *Desc
	readonly, deviceError, mountInfo    *Desc

	mu sync.Mutex // guards everything below, but inflight
	// The mount table is read from <proc>/<pid>/mountinfo, but only when <proc>/<pid>/mounts, read
	// every scrape, changed: the kernel builds mounts in half the time (12 against 25 µs for 20
	// mounts here), and mountinfo is most of what a scrape costs. pid is "1", or "self" where
	// pid 1's tables are hidden (hidepid) or denied.
	pid        string
	mountsFile rereadFile
	mountinfo  rereadFile
	prev       []byte // the mounts (or, without it, mountinfo) content last parsed
	parsed     bool
	mounts     []*fsMount // the reported mounts of the table last parsed
	parseErr   error      // its malformed lines, reported for as long as the table has them
	state      []fsState  // one per mount, for the scrape running
	timer      *time.Timer

	flightMu sync.Mutex
	inflight map[string]struct{} // statfs paths with a call still running
}

// fsMount is one reported mount, kept while the mount table does not change.
type fsMount struct {
	device, mountPoint, fsType, major, minor string
	statPath                                 string
	ro                                       float64

	labels []*dto.LabelPair // {device, mountpoint, fstype, device_error=""}
	info   []*dto.LabelPair // node_filesystem_mount_info
	// The labels of the mount's last error, kept because a failing mount usually fails again.
	errText   string
	errLabels []*dto.LabelPair
}

type fsState struct {
	status fsStatus
	st     syscall.Statfs_t
	err    error
}

type fsStatus uint8

const (
	fsPending fsStatus = iota
	fsDone
	fsStuck
)

type fsResult struct {
	i   int
	st  syscall.Statfs_t
	err error
}

func newFilesystem(cfg *Config, _ *slog.Logger) (Collector, error) {
	mp, ft := cfg.Filesystem.MountPointsExclude, cfg.Filesystem.FSTypesExclude
	if mp == "" {
		mp = DefaultMountPointsExclude
	}
	if ft == "" {
		ft = DefaultFSTypesExclude
	}
	excludeMounts, err := regexp.Compile(mp)
	if err != nil {
		return nil, fmt.Errorf("mount_points_exclude: %w", err)
	}
	excludeTypes, err := regexp.Compile(ft)
	if err != nil {
		return nil, fmt.Errorf("fs_types_exclude: %w", err)
	}
	timeout := cfg.Filesystem.StatTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	labels := []string{"device", "mountpoint", "fstype", "device_error"}
	d := func(name, help string) *Desc {
		return newDesc("node_filesystem_"+name, help, labels)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	return &filesystemCollector{
		procPath:      cfg.ProcPath,
		rootPath:      cfg.RootPath,
		excludeMounts: excludeMounts,
		excludeTypes:  excludeTypes,
		timeout:       timeout,
		statfs:        statfsRetry,
		pid:           "1",
		mountsFile:    rereadFile{path: filepath.Join(cfg.ProcPath, "1", "mounts")},
		mountinfo:     rereadFile{path: filepath.Join(cfg.ProcPath, "1", "mountinfo")},
		timer:         timer,
		inflight:      map[string]struct{}{},

		size:        d("size_bytes", "Filesystem size in bytes."),
		free:        d("free_bytes", "Filesystem free space in bytes."),
		avail:       d("avail_bytes", "Filesystem space available to non-root users in bytes."),
		files:       d("files", "Filesystem total file nodes."),
		filesFree:   d("files_free", "Filesystem total free file nodes."),
		readonly:    d("readonly", "Filesystem read-only status."),
		deviceError: d("device_error", "Whether an error occurred while getting statistics for the given device."),
		mountInfo: newDesc("node_filesystem_mount_info", "Filesystem mount information.",
			[]string{"device", "major", "minor", "mountpoint"}),
	}, nil
}

func statfsRetry(path string, st *syscall.Statfs_t) error {
	for {
		if err := syscall.Statfs(path, st); err != syscall.EINTR {
			return err
		}
	}
}

// Close releases the descriptors kept open on the mount tables.
func (c *filesystemCollector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return errors.Join(c.mountsFile.close(), c.mountinfo.close())
}

func (c *filesystemCollector) Update(ctx context.Context, m *Metrics) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	data, changed, err := c.table()
	if err != nil {
		return fmt.Errorf("reading the mount table: %w", err)
	}
	if changed {
		c.parseErr = c.parse(data)
		c.parsed = true
	}

	waitErr := c.statAll(ctx)

	for i, mt := range c.mounts {
		s := &c.state[i]
		switch {
		case s.status == fsStuck:
			c.addFailed(m, mt, fsStuckError)
		case s.err != nil:
			c.addFailed(m, mt, s.err.Error())
		default:
			bsize := float64(s.st.Bsize)
			m.addShared(c.deviceError, prometheus.GaugeValue, 0, mt.labels)
			m.addShared(c.readonly, prometheus.GaugeValue, mt.ro, mt.labels)
			m.addShared(c.size, prometheus.GaugeValue, float64(s.st.Blocks)*bsize, mt.labels)
			m.addShared(c.free, prometheus.GaugeValue, float64(s.st.Bfree)*bsize, mt.labels)
			m.addShared(c.avail, prometheus.GaugeValue, float64(s.st.Bavail)*bsize, mt.labels)
			m.addShared(c.files, prometheus.GaugeValue, float64(s.st.Files), mt.labels)
			m.addShared(c.filesFree, prometheus.GaugeValue, float64(s.st.Ffree), mt.labels)
			m.addShared(c.mountInfo, prometheus.GaugeValue, 1, mt.info)
		}
	}
	return errors.Join(c.parseErr, waitErr)
}

// addFailed reports a mount that could not be statfs-ed as node_exporter does: device_error 1 and
// readonly, labelled with the error.
func (c *filesystemCollector) addFailed(m *Metrics, mt *fsMount, text string) {
	if mt.errLabels == nil || mt.errText != text {
		mt.errText, mt.errLabels = text, labelPairsFor(c.deviceError, mt.device, mt.mountPoint, mt.fsType, text)
	}
	m.addShared(c.deviceError, prometheus.GaugeValue, 1, mt.errLabels)
	m.addShared(c.readonly, prometheus.GaugeValue, mt.ro, mt.errLabels)
}

// table returns the content of mountinfo when the mount table changed since it was last parsed.
// It reads the tables of pid 1, which are the host's when the agent runs in a container that shares
// the host's pid namespace; where pid 1's are hidden (hidepid) or denied, it falls back to the
// agent's own.
func (c *filesystemCollector) table() (data []byte, changed bool, err error) {
	for {
		mounts, merr := c.mountsFile.read()
		if merr == nil {
			if c.parsed && bytes.Equal(mounts, c.prev) {
				return nil, false, nil
			}
			c.prev = append(c.prev[:0], mounts...)
		}
		data, err = c.mountinfo.read()
		if err == nil {
			if merr != nil { // no mounts to watch: compare mountinfo itself
				if c.parsed && bytes.Equal(data, c.prev) {
					return nil, false, nil
				}
				c.prev = append(c.prev[:0], data...)
			}
			return data, true, nil
		}
		c.parsed = false // read both again next time
		if c.pid != "1" || !(errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission)) {
			return nil, false, err
		}
		_ = c.mountsFile.close()
		_ = c.mountinfo.close()
		c.pid = "self"
		c.mountsFile = rereadFile{path: filepath.Join(c.procPath, c.pid, "mounts")}
		c.mountinfo = rereadFile{path: filepath.Join(c.procPath, c.pid, "mountinfo")}
	}
}

// statAll statfs-es every mount, each in its own goroutine, and waits at most c.timeout for them.
// A mount still being statfs-ed by an earlier scrape is not asked again.
func (c *filesystemCollector) statAll(ctx context.Context) error {
	if cap(c.state) < len(c.mounts) {
		c.state = make([]fsState, len(c.mounts))
	}
	c.state = c.state[:len(c.mounts)]
	clear(c.state)
	results := make(chan fsResult, len(c.mounts)) // buffered: a late call must not block on a scrape gone
	statfs := c.statfs
	launched := 0
	c.flightMu.Lock()
	for i, mt := range c.mounts {
		if _, busy := c.inflight[mt.statPath]; busy {
			c.state[i].status = fsStuck
			continue
		}
		c.inflight[mt.statPath] = struct{}{}
		launched++
		go c.statOne(statfs, i, mt.statPath, results)
	}
	c.flightMu.Unlock()
	if launched == 0 {
		return nil
	}

	c.timer.Reset(c.timeout)
	defer c.timer.Stop()
	var err error
wait:
	for received := 0; received < launched; received++ {
		select {
		case r := <-results:
			c.state[r.i] = fsState{status: fsDone, st: r.st, err: r.err}
		case <-c.timer.C:
			break wait
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		}
	}
	// Whatever has not answered by now is stuck; results that arrive later are dropped with the channel.
	for i := range c.state {
		if c.state[i].status == fsPending {
			c.state[i].status = fsStuck
		}
	}
	return err
}

func (c *filesystemCollector) statOne(statfs func(string, *syscall.Statfs_t) error, i int, path string, out chan<- fsResult) {
	r := fsResult{i: i}
	r.err = statfs(path, &r.st)
	c.flightMu.Lock()
	delete(c.inflight, path)
	c.flightMu.Unlock()
	out <- r
}

// parse rebuilds the list of mounts to report from the mount table. A mount point listed more than
// once (mounted over) keeps its last entry, the one statfs sees; node_exporter deduplicates on its
// label set instead, which still lets two entries that differ only in an unexposed field emit the
// same series twice and fail the scrape (node_exporter issues 2805, 3261). Label pairs of mounts
// that did not change are kept.
func (c *filesystemCollector) parse(data []byte) error {
	old := make(map[string]*fsMount, len(c.mounts))
	for _, mt := range c.mounts {
		old[mt.mountPoint] = mt
	}
	var all []mountinfoEntry
	var errs []error
	parseMountinfo(data, func(e mountinfoEntry) { all = append(all, e) }, func(err error) { errs = append(errs, err) })

	seen := make(map[string]bool, len(all))
	mounts := make([]*fsMount, 0, len(all))
	for i := len(all) - 1; i >= 0; i-- {
		e := &all[i]
		mp := c.stripRoot(unescapeMountinfo(e.mountPoint))
		if seen[mp] {
			continue
		}
		seen[mp] = true
		fsType := string(e.fsType)
		if c.excludeMounts.MatchString(mp) || c.excludeTypes.MatchString(fsType) {
			continue
		}
		major, minor, _ := strings.Cut(string(e.majorMinor), ":")
		mt := &fsMount{
			device:     string(e.source),
			mountPoint: mp,
			fsType:     fsType,
			major:      major,
			minor:      minor,
			statPath:   filepath.Join(c.rootPath, mp),
		}
		// node_exporter 1.8.2+: read-only if either the mount or the super block says so.
		if mountinfoHasOption(e.mountOptions, "ro") || mountinfoHasOption(e.superOptions, "ro") {
			mt.ro = 1
		}
		if o := old[mp]; o != nil && o.device == mt.device && o.fsType == mt.fsType && o.major == mt.major &&
			o.minor == mt.minor && o.ro == mt.ro && o.statPath == mt.statPath {
			mt = o
		} else {
			mt.labels = labelPairsFor(c.deviceError, mt.device, mt.mountPoint, mt.fsType, "")
			mt.info = labelPairsFor(c.mountInfo, mt.device, mt.major, mt.minor, mt.mountPoint)
		}
		mounts = append(mounts, mt)
	}
	// Back to the mount table's order, which is what a reader of the exposition expects.
	for i, j := 0, len(mounts)-1; i < j; i, j = i+1, j-1 {
		mounts[i], mounts[j] = mounts[j], mounts[i]
	}
	c.mounts = mounts
	return errors.Join(errs...)
}

// stripRoot turns a mount point seen through the host's root mounted at RootPath (when the agent
// reads its own mount table in a container) into the host's path, as node_exporter does.
func (c *filesystemCollector) stripRoot(mp string) string {
	root := strings.TrimSuffix(c.rootPath, "/")
	if root == "" {
		return mp
	}
	if rest, ok := strings.CutPrefix(mp, root); ok && (rest == "" || rest[0] == '/') {
		if rest == "" {
			return "/"
		}
		return rest
	}
	return mp
}

// mountinfoEntry is one line of /proc/PID/mountinfo (proc_pid_mountinfo(5)); its fields alias the
// read buffer.
type mountinfoEntry struct {
	majorMinor, mountPoint, mountOptions []byte
	fsType, source, superOptions         []byte
}

// parseMountinfo calls emit for each line of a mount table; lines it cannot read go to bad.
func parseMountinfo(data []byte, emit func(mountinfoEntry), bad func(error)) {
	var f [32][]byte // the optional fields are few; a line with more is malformed
	for len(data) > 0 {
		var line []byte
		line, data = nextLine(data)
		if len(line) == 0 {
			continue
		}
		// Fields are separated by single spaces; the kernel escapes spaces in paths as \040.
		n := 0
		for rest := line; n < len(f); n++ {
			var field []byte
			field, rest, _ = bytes.Cut(rest, []byte{' '})
			f[n] = field
			if rest == nil {
				n++
				break
			}
		}
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		sep := -1
		for i := 6; i < n; i++ {
			if len(f[i]) == 1 && f[i][0] == '-' {
				sep = i
				break
			}
		}
		if sep < 0 || n < sep+4 || len(f[4]) == 0 || bytes.IndexByte(f[2], ':') <= 0 {
			bad(fmt.Errorf("mountinfo: malformed line %q", line))
			continue
		}
		emit(mountinfoEntry{
			majorMinor: f[2], mountPoint: f[4], mountOptions: f[5],
			fsType: f[sep+1], source: f[sep+2], superOptions: f[sep+3],
		})
	}
}

// unescapeMountinfo undoes the kernel's octal escapes of space, tab, newline and backslash in a
// path (\040, \011, \012, \134). node_exporter undoes only the first two; the others are rare
// enough in mount points for the difference not to matter, and statfs needs the real path.
func unescapeMountinfo(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+3 < len(b) && isOctal(b[i+1]) && isOctal(b[i+2]) && isOctal(b[i+3]) && b[i+1] <= '3' {
			out = append(out, (b[i+1]-'0')<<6|(b[i+2]-'0')<<3|(b[i+3]-'0'))
			i += 3
			continue
		}
		out = append(out, b[i])
	}
	return string(out)
}

func isOctal(b byte) bool { return b >= '0' && b <= '7' }

func mountinfoHasOption(opts []byte, opt string) bool {
	for len(opts) > 0 {
		var o []byte
		o, opts, _ = bytes.Cut(opts, []byte{','})
		if string(o) == opt {
			return true
		}
	}
	return false
}
