// Package agent runs `sage agent`: it builds the enabled collectors from the configuration, serves
// them on /metrics in the Prometheus text format (OpenMetrics when the scraper asks), with TLS and
// basic auth from an exporter-toolkit web configuration file, and reloads its configuration on
// SIGHUP without dropping a scrape: a reload that fails keeps the running configuration.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/serversage/sage/internal/collector"
)

// DefaultListen is the agent's default address. 10730 lies outside the exporter range 9100-9999
// that Prometheus's port-allocation list has used up, and clear of the allocations made after it.
const DefaultListen = "127.0.0.1:10730"

// Options are the agent's command-line settings; they are not reloaded.
type Options struct {
	ConfigFile    string // empty: the default configuration
	Listen        string // host:port
	WebConfigFile string // exporter-toolkit web configuration (TLS, basic auth); empty: plain HTTP
	StateDir      string
	ProcPath      string
	SysPath       string
	RootPath      string
	Logger        *slog.Logger
	// MaxProcs is GOMAXPROCS while Run runs: 0 means 1, node_exporter's default too
	// (--runtime.gomaxprocs), negative leaves the Go runtime's choice, and so does a GOMAXPROCS
	// environment variable. One processor saves the agent, whose collectors mostly wait on the
	// kernel, the cost of waking a second thread for every goroutine it hands work to and of a
	// parallel garbage collector: 0.76 against 1.08 ms CPU a scrape on 2 cores
	// (bench/agent-vs-node-exporter.sh, same families).
	MaxProcs int
	// Enrol, when set, registers this host with a hub. Run calls it in the background once the
	// agent listens (with the bound address, from which the URL to scrape can be derived) and
	// again after every reload request, so /metrics is served whatever the hub's state. It should
	// retry until it succeeds, fails for good, or ctx ends, and log the outcome itself.
	Enrol func(ctx context.Context, listening net.Addr) error
	// Peers, when set, fetches this host's mesh peers from the hub (the agent is enrolled): they
	// become ICMP and TCP probe targets, refreshed every probes.mesh.refresh.
	Peers func(ctx context.Context) (MeshPeers, error)
	// ShipChanges, when set, sends change events to the hub (the agent is enrolled).
	ShipChanges ShipFunc
}

// Agent is a running agent.
type Agent struct {
	opts   Options
	logger *slog.Logger

	set     atomic.Pointer[collector.Set]
	reload  sync.Mutex // serialises reloads
	handler http.Handler

	own     *ownMetrics
	probes  *probes
	changes *changeMonitor // nil when changes.enabled is false
	chCfg   ChangesConfig  // as started: the section takes effect at restart
}

// New loads the configuration and builds the collectors. It fails on an invalid configuration.
func New(opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir()
	}
	if opts.WebConfigFile != "" {
		if err := web.Validate(opts.WebConfigFile); err != nil {
			return nil, fmt.Errorf("web config %s: %w", opts.WebConfigFile, err)
		}
	}
	a := &Agent{opts: opts, logger: opts.Logger}
	set, cfg, err := a.build()
	if err != nil {
		return nil, err
	}
	a.set.Store(set)
	a.probes = newProbes(&cfg.Probes, opts, a.logger)

	a.own = newOwnMetrics()
	mux := http.NewServeMux()
	metrics := newMetricsHandler(a.set.Load, a.own, a.logger)
	a.chCfg = cfg.Changes
	if cfg.Changes.on() {
		a.changes = newChangeMonitor(cfg.Changes, opts, opts.ShipChanges, a.logger.With("part", "changes"))
	}
	metrics.extra = func() []*dto.MetricFamily {
		fams := a.probes.families()
		if a.changes != nil {
			fams = append(fams, a.changes.families()...)
		}
		return fams
	}
	mux.Handle("/metrics", gzipped(metrics))
	mux.Handle("/probe", a.probes.probeHandler())
	mux.Handle("/throughput", a.probes.throughputHandler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "ServerSage agent",
		Description: "Host measurements in the Prometheus exposition format",
		Version:     versionString(),
		Links: []web.LandingLinks{
			{Address: "/metrics", Text: "Metrics"},
			{Address: "/healthz", Text: "Health"},
			{Address: "/probe?target=127.0.0.1:" + listenPort(opts.Listen) + "&module=tcp_connect&debug=true", Text: "Probe (blackbox_exporter's /probe)"},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("landing page: %w", err)
	}
	mux.Handle("/", landing)
	a.handler = mux
	return a, nil
}

// build loads the configuration file and builds a collector set from it.
func (a *Agent) build() (*collector.Set, *Config, error) {
	cfg, err := LoadConfig(a.opts.ConfigFile)
	if err != nil {
		return nil, nil, err
	}
	cc := cfg.Collectors
	if a.opts.ConfigFile == "" {
		cc.ProcessGroups, cc.Listeners = a.watchSelf()
	}
	cc.StateDir = a.opts.StateDir
	cc.ProcPath = a.opts.ProcPath
	cc.SysPath = a.opts.SysPath
	cc.RootPath = a.opts.RootPath
	set, err := collector.NewSet(&cc, a.logger)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", a.configName(), err)
	}
	return set, cfg, nil
}

// watchSelf is the default configuration's process group and listener: the agent itself. A host's
// own services differ too much for any other default, and watching itself shows a first-time user
// what those metrics look like (sage_process_group_up, sage_listener_up) on the first curl.
func (a *Agent) watchSelf() ([]collector.ProcessGroup, []collector.Listener) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil
	}
	// comm as well as exe: the matcher compares comm (already read) first, so only processes named like
	// the agent cost the readlink of /proc/PID/exe, not every process on every scrape.
	match := collector.ProcessMatch{Exe: exe}
	if comm, err := os.ReadFile("/proc/self/comm"); err == nil {
		match.Comm = strings.TrimSpace(string(comm))
	}
	groups := []collector.ProcessGroup{{Name: "sage-agent", Match: match, MinCount: 1}}
	_, port, err := net.SplitHostPort(a.opts.Listen)
	if err != nil {
		return groups, nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		return groups, nil // port 0: chosen at listen time, unknown here
	}
	return groups, []collector.Listener{{Port: n, Proto: "tcp"}}
}

func (a *Agent) configName() string {
	if a.opts.ConfigFile == "" {
		return "default configuration"
	}
	return a.opts.ConfigFile
}

// Collectors lists the collectors running now.
func (a *Agent) Collectors() []string { return a.set.Load().Names() }

// Handler is the agent's HTTP handler: /metrics, /healthz, /probe, /throughput and a landing page.
func (a *Agent) Handler() http.Handler { return a.handler }

// Reload re-reads the configuration file. On error the running configuration stays and the error
// says why.
func (a *Agent) Reload() error {
	a.reload.Lock()
	defer a.reload.Unlock()
	set, cfg, err := a.build()
	if err != nil {
		a.own.reloaded(false)
		a.logger.Error("configuration reload failed; keeping the running configuration", "err", err)
		return err
	}
	old := a.set.Swap(set)
	a.probes.apply(&cfg.Probes)
	if !reflect.DeepEqual(cfg.Changes, a.chCfg) {
		a.logger.Warn("the changes section takes effect when the agent restarts")
	}
	// A scrape that already holds the old set may still be running its collectors; give it the
	// collector deadline to finish before releasing what the old collectors hold.
	go func() {
		time.Sleep(collector.DefaultTimeout)
		old.Close()
	}()
	a.own.reloaded(true)
	a.logger.Info("configuration reloaded", "collectors", set.Names(), "probe_targets", len(cfg.Probes.Targets))
	return nil
}

// Run serves until ctx is done, then shuts down gracefully. reload delivers reload requests
// (SIGHUP in the command). ready, when not nil, receives the bound address once listening.
func (a *Agent) Run(ctx context.Context, reload <-chan struct{}, ready chan<- net.Addr) error {
	if n := a.opts.MaxProcs; n >= 0 && os.Getenv("GOMAXPROCS") == "" {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(n, 1)))
	}
	ln, err := net.Listen("tcp", a.opts.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.opts.Listen, err)
	}
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	a.logger.Info("agent started", "address", ln.Addr().String(), "collectors", a.Collectors(),
		"config", a.configName(), "state_dir", a.opts.StateDir, "gomaxprocs", runtime.GOMAXPROCS(0))
	if ready != nil {
		ready <- ln.Addr()
	}

	enrolNow, enrolDone := a.startEnrolment(ctx, ln.Addr())
	defer enrolDone()
	a.probes.start(ctx)
	defer a.probes.stop()
	if a.changes != nil {
		a.changes.start(ctx)
		defer a.changes.stop()
	}

	errc := make(chan error, 1)
	go func() {
		webCfg := a.opts.WebConfigFile
		flags := &web.FlagConfig{WebListenAddresses: &[]string{a.opts.Listen}, WebConfigFile: &webCfg}
		errc <- web.Serve(ln, srv, flags, a.logger)
	}()

	for {
		select {
		case <-reload:
			_ = a.Reload()
			enrolNow()
		case err := <-errc:
			a.set.Load().Close()
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("serving: %w", err)
		case <-ctx.Done():
			a.logger.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := srv.Shutdown(sctx)
			cancel()
			a.set.Load().Close()
			if err != nil {
				return fmt.Errorf("shutdown: %w", err)
			}
			return nil
		}
	}
}

// startEnrolment runs Options.Enrol in a goroutine, once now and once more per call of the
// returned now (requests made while one runs collapse into one more run). done cancels a run in
// progress and waits for the goroutine.
func (a *Agent) startEnrolment(ctx context.Context, addr net.Addr) (now, done func()) {
	if a.opts.Enrol == nil {
		return func() {}, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	kick := make(chan struct{}, 1)
	kick <- struct{}{}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			}
			if err := a.opts.Enrol(ctx, addr); err != nil && ctx.Err() == nil {
				a.logger.Error("enrolment with the hub failed; still serving /metrics, send SIGHUP to try again", "err", err)
			}
		}
	}()
	now = func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	return now, func() { cancel(); <-finished }
}

// DefaultStateDir is where the agent keeps what must survive a restart: /var/lib/sage for root
// (as a packaged service runs), otherwise the user's state directory.
func DefaultStateDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/sage"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "sage")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "sage")
	}
	return filepath.Join(os.TempDir(), "sage-state")
}

// listenPort is the port of a listen address, for the landing page's example link.
func listenPort(listen string) string {
	_, port, err := net.SplitHostPort(listen)
	if err != nil || port == "0" {
		return "22"
	}
	return port
}
