package agent

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"

	dto "github.com/prometheus/client_model/go"

	"github.com/serversage/sage/internal/probe"
)

// probes is the agent's probing: the continuous scheduler over the configured targets and the
// mesh's, the blackbox-compatible /probe endpoint and the /throughput endpoint other agents pull
// from. Its configuration is swapped on reload like the collectors'.
type probes struct {
	logger   *slog.Logger
	enrolled bool
	cfg      atomic.Pointer[probe.Config]
	sched    *probe.Scheduler
	mesh     *meshLoop // nil when the agent is not enrolled

	throughput      atomic.Pointer[http.Handler] // nil: /throughput is off
	throughputStats probe.ThroughputServerStats
	fileTokens      atomic.Pointer[[]string]
}

func newProbes(cfg *probe.Config, opts Options, logger *slog.Logger) *probes {
	p := &probes{
		logger:   logger,
		enrolled: opts.Enrol != nil || opts.Peers != nil,
		sched:    probe.NewScheduler(probe.SchedulerOptions{Concurrency: cfg.Concurrency, Logger: logger.With("part", "probes")}),
	}
	if opts.Peers != nil {
		p.mesh = newMeshLoop(opts.Peers, p.cfg.Load, p.sched, logger.With("part", "mesh"))
	}
	p.apply(cfg)
	return p
}

// apply makes cfg the running probe configuration.
func (p *probes) apply(cfg *probe.Config) {
	if old := p.cfg.Load(); old != nil && old.Concurrency != cfg.Concurrency {
		p.logger.Warn("probes.concurrency changes when the agent restarts", "running", old.Concurrency, "configured", cfg.Concurrency)
	}
	p.cfg.Store(cfg)
	p.sched.SetTargets("config", cfg.Scheduled())

	if !cfg.ThroughputEnabled(p.enrolled) {
		p.throughput.Store(nil)
	} else {
		tokens, err := cfg.ThroughputServer.ReadTokens(cfg.BaseDir)
		if err != nil {
			// Checked when the configuration loaded; the file went away since.
			p.logger.Error("throughput endpoint: cannot read its tokens file; only the mesh token is accepted", "err", err)
		}
		p.fileTokens.Store(&tokens)
		ts := cfg.ThroughputServer
		h := probe.NewThroughputHandler(probe.ThroughputServerOptions{
			Tokens:          p.throughputTokens,
			MaxBytes:        ts.MaxBytes,
			RateBytesPerSec: ts.Rate,
			MaxConcurrent:   ts.MaxConcurrent,
			Logger:          p.logger.With("part", "throughput"),
			Stats:           &p.throughputStats,
		})
		p.throughput.Store(&h)
	}
	if p.mesh != nil {
		p.mesh.reconfigure()
	}
}

// throughputTokens are the bearer tokens /throughput accepts: the hub's current mesh token and
// those of the tokens file.
func (p *probes) throughputTokens() []string {
	var out []string
	if p.mesh != nil {
		if t := p.mesh.token.Load(); t != nil && *t != "" {
			out = append(out, *t)
		}
	}
	if f := p.fileTokens.Load(); f != nil {
		out = append(out, *f...)
	}
	return out
}

// start runs the scheduler and the mesh loop until stop.
func (p *probes) start(ctx context.Context) {
	p.sched.Start(ctx)
	if p.mesh != nil {
		p.mesh.start(ctx)
	}
}

func (p *probes) stop() {
	if p.mesh != nil {
		p.mesh.stop()
	}
	p.sched.Stop()
}

// families are the probes' metric families for /metrics.
func (p *probes) families() []*dto.MetricFamily {
	fams := p.sched.Families()
	if p.throughput.Load() != nil {
		fams = append(fams, probe.SampleFamilies(p.throughputStats.Samples())...)
	}
	return fams
}

func (p *probes) probeHandler() http.Handler {
	return probe.NewHandler(probe.HandlerOptions{
		Module: func(name string) (*probe.Module, bool) { return p.cfg.Load().Module(name) },
		Logger: p.logger.With("part", "probe_endpoint"),
	})
}

// throughputHandler serves /throughput when the configuration has it on, else 404.
func (p *probes) throughputHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := p.throughput.Load()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		(*h).ServeHTTP(w, r)
	})
}
