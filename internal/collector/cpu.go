package collector

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func init() { register("cpu", true, newCPU) }

// cpuCollector exposes CPU time per core and mode under node_exporter's names, so that dashboards
// and rules written for node_exporter work unchanged, and the number of online cores, so that a VM
// resized while running shows.
type cpuCollector struct {
	path  string
	time  *Desc
	guest *Desc
	cores *Desc

	mu   sync.Mutex
	stat kernelStat
	// labels[n] are the label pairs of CPU n's series, built once: {cpu, mode} for each of
	// cpuModes, then for guest "user" and "nice". A scrape of a 64-core host has 640 series.
	labels [][len(cpuModes) + 2][]*dto.LabelPair
}

var cpuModes = [...]string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}

func newCPU(cfg *Config, _ *slog.Logger) (Collector, error) {
	return &cpuCollector{
		path: filepath.Join(cfg.ProcPath, "stat"),
		time: newDesc("node_cpu_seconds_total",
			"Seconds the CPUs spent in each mode.", []string{"cpu", "mode"}),
		guest: newDesc("node_cpu_guest_seconds_total",
			"Seconds the CPUs spent in guests (VMs) for each mode.", []string{"cpu", "mode"}),
		cores: newDesc(namespace+"_cpu_cores",
			"Number of online CPU cores (logical CPUs).", nil),
	}, nil
}

func (c *cpuCollector) Update(ctx context.Context, m *Metrics) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var perr error
	if err := readShared(ctx, c.path, func(data []byte) { perr = parseKernelStat(data, &c.stat) }); err != nil {
		return fmt.Errorf("reading stat: %w", err)
	}
	for len(c.labels) < len(c.stat.cpus) {
		var l [len(cpuModes) + 2][]*dto.LabelPair
		cpu := strconv.Itoa(len(c.labels))
		for i, mode := range cpuModes {
			l[i] = labelPairsFor(c.time, cpu, mode)
		}
		l[len(cpuModes)] = labelPairsFor(c.guest, cpu, "user")
		l[len(cpuModes)+1] = labelPairsFor(c.guest, cpu, "nice")
		c.labels = append(c.labels, l)
	}
	for n, s := range c.stat.cpus {
		if !s.online {
			continue
		}
		l := &c.labels[n]
		for i, v := range [len(cpuModes)]float64{s.user, s.nice, s.system, s.idle, s.iowait, s.irq, s.softirq, s.steal} {
			m.addShared(c.time, prometheus.CounterValue, v, l[i])
		}
		m.addShared(c.guest, prometheus.CounterValue, s.guest, l[len(cpuModes)])
		m.addShared(c.guest, prometheus.CounterValue, s.guestNice, l[len(cpuModes)+1])
	}
	// /proc/stat lists online CPUs only, so its per-CPU lines are the online count.
	m.Gauge(c.cores, float64(c.stat.online))
	return perr
}
