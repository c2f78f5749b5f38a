package collector

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
)

func init() { register("stat", true, newStat) }

// statCollector exposes the kernel's activity counters from /proc/stat under node_exporter's names.
// Boot time, also in /proc/stat, belongs to the reboot collector, which pairs it with the boot id.
type statCollector struct {
	path                                    string
	intr, ctxt, forks, procsRun, procsBlock *Desc

	mu   sync.Mutex
	stat kernelStat
}

func newStat(cfg *Config, _ *slog.Logger) (Collector, error) {
	return &statCollector{
		path:       filepath.Join(cfg.ProcPath, "stat"),
		intr:       newDesc("node_intr_total", "Total number of interrupts serviced.", nil),
		ctxt:       newDesc("node_context_switches_total", "Total number of context switches.", nil),
		forks:      newDesc("node_forks_total", "Total number of forks.", nil),
		procsRun:   newDesc("node_procs_running", "Number of processes in runnable state.", nil),
		procsBlock: newDesc("node_procs_blocked", "Number of processes blocked waiting for I/O to complete.", nil),
	}, nil
}

func (c *statCollector) Update(ctx context.Context, m *Metrics) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var perr error
	if err := readShared(ctx, c.path, func(data []byte) { perr = parseKernelStat(data, &c.stat) }); err != nil {
		return fmt.Errorf("reading stat: %w", err)
	}
	m.Counter(c.intr, float64(c.stat.intr))
	m.Counter(c.ctxt, float64(c.stat.ctxt))
	m.Counter(c.forks, float64(c.stat.forks))
	m.Gauge(c.procsRun, float64(c.stat.procsRunning))
	m.Gauge(c.procsBlock, float64(c.stat.procsBlocked))
	return perr
}
