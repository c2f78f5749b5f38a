package agent

import (
	"context"
	"encoding/binary"
	"io"
	"math"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/common/version"

	"github.com/serversage/sage/internal/collector"
)

// ownMetrics is what the agent exposes of itself, beside the collectors' metrics and gathered
// with them (collector.Set.GatherInto): its process's cost under the standard process_* names, a
// few Go runtime figures and its build under client_golang's names, its configuration reloads,
// and the /metrics handler's requests under promhttp's names.
//
// It replaces client_golang's process collector, which re-reads and parses /proc/stat (the whole
// file, with fmt.Sscan) on every scrape only to recompute a start time that never changes; its Go
// collector, which reads thirty-odd runtime figures (ReadGCStats among them) into as many metrics;
// and a prometheus.Registry for the rest, whose Gather alone allocated 40 kB a scrape (two
// 1000-metric channels) for a dozen metrics.
type ownMetrics struct {
	start float64

	cpu, rss, fds, started       *collector.Desc
	goInfo, buildInfo            *collector.Desc
	reloadOK, reloadTime         *collector.Desc
	requestsTotal, requestsNow   *collector.Desc
	buildLabels                  []string
	reloadOKBits, reloadTimeBits atomic.Uint64 // float64 bits
	requests                     [len(requestCodes)]atomic.Uint64
	inFlight                     atomic.Int64

	mu    sync.Mutex // guards what follows, which concurrent scrapes would otherwise share
	rm    []metrics.Sample
	fdBuf []byte
	// Descriptors kept open on /proc/self/fd and /proc/self/statm (-1 until opened): opening them
	// anew every scrape cost more than reading them.
	fdDir, statm int
}

// requestCodes are the status codes /metrics answers with, counted in
// promhttp_metric_handler_requests_total{code}.
var requestCodes = [...]string{"200", "500", "503"}

const (
	code200 = iota
	code500
	code503
)

// ownRuntimeMetrics are the runtime/metrics exposed, under client_golang's names for them.
var ownRuntimeMetrics = []struct {
	key, name, help string
	counter         bool
}{
	{"/sched/goroutines:goroutines", "go_goroutines", "Number of goroutines that currently exist.", false},
	{"/sched/threads/total:threads", "go_threads", "Number of OS threads the Go runtime has, idle or not.", false},
	{"/sched/gomaxprocs:threads", "go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting, or the number of operating system threads that can execute user-level Go code simultaneously.", false},
	{"/memory/classes/heap/objects:bytes", "go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes.", false},
	{"/memory/classes/total:bytes", "go_memstats_sys_bytes", "Number of bytes obtained from system.", false},
	{"/gc/cycles/total:gc-cycles", "go_gc_cycles_total_gc_cycles_total", "Count of all completed GC cycles.", true},
	{"/gc/gogc:percent", "go_gc_gogc_percent", "Heap size target percentage configured by the user, otherwise 100.", false},
	{"/gc/gomemlimit:bytes", "go_gc_gomemlimit_bytes", "Go runtime memory limit configured by the user, otherwise math.MaxInt64.", false},
}

var ownRuntimeDescs = func() []*collector.Desc {
	d := make([]*collector.Desc, len(ownRuntimeMetrics))
	for i, m := range ownRuntimeMetrics {
		d[i] = collector.NewDesc(m.name, m.help, nil)
	}
	return d
}()

func newOwnMetrics() *ownMetrics {
	o := &ownMetrics{
		start:   float64(time.Now().UnixNano()) / 1e9,
		cpu:     collector.NewDesc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", nil),
		rss:     collector.NewDesc("process_resident_memory_bytes", "Resident memory size in bytes.", nil),
		fds:     collector.NewDesc("process_open_fds", "Number of open file descriptors.", nil),
		started: collector.NewDesc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", nil),
		goInfo:  collector.NewDesc("go_info", "Information about the Go environment.", []string{"version"}),
		// client_golang's version collector's metric.
		buildInfo: collector.NewDesc("sage_build_info",
			"A metric with a constant '1' value labeled by version, revision, branch, goversion from which sage was built, and the goos and goarch for the build.",
			[]string{"version", "revision", "branch", "goversion", "goos", "goarch", "tags"}),
		buildLabels: []string{version.Version, version.GetRevision(), version.Branch, version.GoVersion, version.GoOS, version.GoArch, version.GetTags()},
		reloadOK: collector.NewDesc("sage_agent_config_last_reload_successful",
			"Whether the last configuration reload succeeded (1) or not (0).", nil),
		reloadTime: collector.NewDesc("sage_agent_config_last_reload_success_timestamp_seconds",
			"Time of the last successful configuration load.", nil),
		requestsTotal: collector.NewDesc("promhttp_metric_handler_requests_total",
			"Total number of scrapes by HTTP status code.", []string{"code"}),
		requestsNow: collector.NewDesc("promhttp_metric_handler_requests_in_flight",
			"Current number of scrapes being served.", nil),
		fdBuf: make([]byte, 4096),
		fdDir: -1,
		statm: -1,
	}
	for _, m := range ownRuntimeMetrics {
		o.rm = append(o.rm, metrics.Sample{Name: m.key})
	}
	o.reloaded(true)
	return o
}

// reloaded records the outcome of a configuration load.
func (o *ownMetrics) reloaded(ok bool) {
	if !ok {
		o.reloadOKBits.Store(math.Float64bits(0))
		return
	}
	o.reloadOKBits.Store(math.Float64bits(1))
	o.reloadTimeBits.Store(math.Float64bits(float64(time.Now().UnixNano()) / 1e9))
}

// Update is a collector.Collector's: the agent's metrics are gathered with the collectors'.
func (o *ownMetrics) Update(_ context.Context, m *collector.Metrics) error {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		m.Counter(o.cpu, time.Duration(ru.Utime.Nano()+ru.Stime.Nano()).Seconds())
	}
	m.Gauge(o.started, o.start)
	m.Gauge(o.goInfo, 1, runtime.Version())
	m.Gauge(o.buildInfo, 1, o.buildLabels...)
	m.Gauge(o.reloadOK, math.Float64frombits(o.reloadOKBits.Load()))
	m.Gauge(o.reloadTime, math.Float64frombits(o.reloadTimeBits.Load()))
	for i, code := range requestCodes {
		m.Counter(o.requestsTotal, float64(o.requests[i].Load()), code)
	}
	m.Gauge(o.requestsNow, float64(o.inFlight.Load()))

	o.mu.Lock()
	defer o.mu.Unlock()
	if rss, ok := o.residentBytes(); ok {
		m.Gauge(o.rss, rss)
	}
	if n, ok := o.openFDs(); ok {
		m.Gauge(o.fds, n)
	}
	metrics.Read(o.rm)
	for i, s := range o.rm {
		var v float64
		switch s.Value.Kind() {
		case metrics.KindUint64:
			v = float64(s.Value.Uint64())
		case metrics.KindFloat64:
			v = s.Value.Float64()
		default:
			continue // a runtime without this metric
		}
		if ownRuntimeMetrics[i].counter {
			m.Counter(ownRuntimeDescs[i], v)
		} else {
			m.Gauge(ownRuntimeDescs[i], v)
		}
	}
	return nil
}

// openFDs counts the entries of /proc/self/fd, less the descriptor it keeps open to read it, with
// getdents into a kept buffer: os.File.Readdirnames makes a string of every descriptor's number.
func (o *ownMetrics) openFDs() (float64, bool) {
	if o.fdDir < 0 {
		fd, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return 0, false
		}
		o.fdDir = fd
	}
	if _, err := syscall.Seek(o.fdDir, 0, io.SeekStart); err != nil {
		return 0, false
	}
	n := 0
	for {
		got, err := syscall.Getdents(o.fdDir, o.fdBuf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, false
		}
		if got <= 0 {
			break
		}
		// struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name.
		for off := 0; off+19 < got; {
			reclen := int(binary.NativeEndian.Uint16(o.fdBuf[off+16:]))
			if reclen == 0 {
				return 0, false
			}
			if o.fdBuf[off+19] != '.' { // "." and ".."; the others are numbers
				n++
			}
			off += reclen
		}
	}
	return float64(n - 1), true
}

// residentBytes reads the second field of /proc/self/statm (resident pages): one short read.
func (o *ownMetrics) residentBytes() (float64, bool) {
	if o.statm < 0 {
		fd, err := syscall.Open("/proc/self/statm", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return 0, false
		}
		o.statm = fd
	}
	var buf [128]byte
	n, err := syscall.Pread(o.statm, buf[:], 0)
	if err != nil || n <= 0 {
		return 0, false
	}
	fields := 0
	var v uint64
	inField := false
	for _, b := range buf[:n] {
		switch {
		case b >= '0' && b <= '9':
			if !inField {
				fields++
				inField = true
				v = 0
			}
			if fields == 2 {
				v = v*10 + uint64(b-'0')
			}
		default:
			if inField && fields == 2 {
				return float64(v) * float64(syscall.Getpagesize()), true
			}
			inField = false
		}
	}
	return 0, false
}
