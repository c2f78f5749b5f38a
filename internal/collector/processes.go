package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
)

func init() { register("processes", true, newProcesses) }

// procStateNames names the state letters of /proc/PID/stat (proc(5)). W and K are from kernels
// 2.6.33 to 3.13; a letter not listed counts as "unknown", so a new kernel state still shows.
var procStateNames = [256]string{
	'R': "running",
	'S': "sleeping",
	'D': "disk_sleep",
	'Z': "zombie",
	'T': "stopped",
	't': "tracing_stop",
	'I': "idle",
	'X': "dead",
	'W': "paging",
	'P': "parked",
	'K': "wakekill",
}

// procCommonStates are always exposed, at 0 if no process is in them, so that a rule such as
// sage_processes{state="zombie"} > 10 needs no absent() companion.
var procCommonStates = []byte{'R', 'S', 'D', 'Z', 'T', 'I'}

// processesCollector counts processes by state and threads, against the kernel's limits, so that a
// fork bomb, a pile of zombies or processes stuck in D state show before the host stops forking.
type processesCollector struct {
	sysKernel string
	state     *Desc
	procs     *Desc
	threads   *Desc
	procsMax  *Desc
	thrMax    *Desc

	mu   sync.Mutex // guards the buffers below, reused across scrapes
	root string
	scan *procScanner // walks outside a scrape
	own  procSnapshot // what it walked there
	buf  []byte
}

func newProcesses(cfg *Config, _ *slog.Logger) (Collector, error) {
	return &processesCollector{
		sysKernel: filepath.Join(cfg.ProcPath, "sys", "kernel"),
		root:      cfg.ProcPath,
		scan:      newProcScanner(cfg.ProcPath),
		state: newDesc(namespace+"_processes",
			"Number of processes by state (running, sleeping, disk_sleep, zombie, stopped, idle, ...).",
			[]string{"state"}),
		procs: newDesc(namespace+"_processes_pids",
			"Number of processes.", nil),
		threads: newDesc(namespace+"_processes_threads",
			"Number of threads of all processes.", nil),
		procsMax: newDesc(namespace+"_processes_max_pids",
			"Highest process ID plus one (kernel.pid_max): the limit on processes and threads together.", nil),
		thrMax: newDesc(namespace+"_processes_max_threads",
			"Maximum number of threads the kernel allows (kernel.threads-max).", nil),
	}, nil
}

func (c *processesCollector) Update(ctx context.Context, m *Metrics) error {
	c.mu.Lock()
	defer c.mu.Unlock()

	var errs []error
	for _, lim := range []struct {
		file string
		desc *Desc
	}{{"pid_max", c.procsMax}, {"threads-max", c.thrMax}} {
		v, err := c.readLimit(lim.file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.Gauge(lim.desc, float64(v))
	}

	var byState [256]uint64
	var procs, threads uint64
	var bad error
	err := viewProcs(ctx, c.root, c.scan, &c.own, func(p *procSnapshot) {
		for i := range p.procs {
			st := &p.procs[i].stat
			byState[st.state]++
			threads += st.threads
		}
		procs = uint64(len(p.procs))
		bad = p.badErr()
	})
	if err != nil {
		// Counts from part of /proc would read as a drop in processes.
		return errors.Join(append(errs, fmt.Errorf("scanning processes: %w", err))...)
	}
	var unknown uint64
	for s, n := range byState {
		name := procStateNames[s]
		switch {
		case name == "":
			unknown += n
		case n > 0 || bytes.IndexByte(procCommonStates, byte(s)) >= 0:
			m.Gauge(c.state, float64(n), name)
		}
	}
	if unknown > 0 {
		m.Gauge(c.state, float64(unknown), "unknown")
	}
	m.Gauge(c.procs, float64(procs))
	m.Gauge(c.threads, float64(threads))
	if bad != nil {
		errs = append(errs, bad)
	}
	return errors.Join(errs...)
}

func (c *processesCollector) readLimit(file string) (uint64, error) {
	path := filepath.Join(c.sysKernel, file)
	data, err := readInto(path, c.buf)
	c.buf = data
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	v, ok := parseDecimal(bytes.TrimSpace(data))
	if !ok {
		return 0, fmt.Errorf("reading %s: not a number: %q", path, data)
	}
	return v, nil
}
