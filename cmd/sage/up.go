//go:build !agentonly

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/serversage/sage/internal/agent"
	"github.com/serversage/sage/internal/changes"
	"github.com/serversage/sage/internal/enrol"
	"github.com/serversage/sage/internal/hub"
	"github.com/serversage/sage/internal/inventory"
)

func init() {
	commands["up"] = command{summary: "run a hub and an agent for this machine in one process, on embedded defaults", run: runUp}
}

// defaultDataDir is the user's data directory for ServerSage: $XDG_DATA_HOME/sage or
// ~/.local/share/sage on Linux, the platform's equivalent elsewhere.
func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "sage")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "sage")
	}
	switch runtime.GOOS {
	case "darwin":
		return filepath.Join(home, "Library", "Application Support", "ServerSage")
	case "windows":
		if d := os.Getenv("LocalAppData"); d != "" {
			return filepath.Join(d, "ServerSage")
		}
	}
	return filepath.Join(home, ".local", "share", "sage")
}

func runUp(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sage up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		dataDir   string
		listen    string
		interval  string
		logLevel  string
		logFormat string
	)
	fs.StringVar(&dataDir, "data", defaultDataDir(), "data `directory`: the state database and the metrics")
	fs.StringVar(&listen, "listen", hub.DefaultListen, "`address` of the web UI and API; port 0 picks a free one")
	fs.StringVar(&interval, "scrape-interval", "15s", "how often the hub scrapes its agents (`duration`)")
	fs.StringVar(&logLevel, "log.level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&logFormat, "log.format", "logfmt", "log `format`: logfmt or json")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sage up [flags]\n\nRuns a hub with this machine as the first host of the client \"local\", measured by an\nagent in the same process. For a hub configured from a file, run 'sage hub --config FILE'.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sage up: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	logger, err := newLogger(stderr, logLevel, logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "sage up: %v\n", err)
		return 2
	}
	dataDir, err = filepath.Abs(dataDir)
	if err != nil {
		fmt.Fprintf(stderr, "sage up: --data: %v\n", err)
		return 2
	}
	// Other machines enrol with a token kept in the data directory, made at the first start,
	// into the client "local" and active at once: whoever can read the file may add hosts.
	tokenFile := filepath.Join(dataDir, "enrol.token")
	if err := ensureEnrolToken(tokenFile); err != nil {
		fmt.Fprintf(stderr, "sage up: %v\n", err)
		return 1
	}
	cfg := hub.Config{
		Listen:    listen,
		DataDir:   dataDir,
		Metrics:   hub.MetricsConfig{ScrapeInterval: interval},
		Enrolment: []hub.EnrolmentConfig{{TokenFile: tokenFile, AutoApprove: true, Client: hub.LocalClient}},
	}
	if fe := cfg.Validate(); len(fe) > 0 {
		// The flags map onto the configuration's fields; name the flag the user typed.
		flagOf := map[string]string{"listen": "--listen", "data_dir": "--data", "metrics.scrape_interval": "--scrape-interval", "metrics.scrape_timeout": "--scrape-interval"}
		for _, e := range fe {
			fmt.Fprintf(stderr, "sage up: %s: %s\n", flagOf[e.Field], e.Msg)
		}
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Listening before the hub is built gives it its real address (port 0 resolved), which the
	// links in notifications need.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "sage up: %v\n  (another sage up may be running; --listen 127.0.0.1:0 picks a free port)\n", err)
		return 1
	}
	defer ln.Close()
	cfg.Listen = ln.Addr().String()
	h, err := hub.New(ctx, cfg, logger.With("part", "hub"))
	if err != nil {
		fmt.Fprintf(stderr, "sage up: cannot start the hub: %v\n", err)
		return 1
	}
	defer h.Close()

	// The agent shares the process, so it leaves GOMAXPROCS alone and listens on loopback
	// only: nothing but this hub scrapes it, and its port is whatever is free.
	agentLogger := logger.With("part", "agent")
	var localHost atomic.Pointer[string] // this machine's host id, once enrolled
	a, err := agent.New(agent.Options{
		Listen:   "127.0.0.1:0",
		StateDir: filepath.Join(dataDir, "agent"),
		ProcPath: "/proc", SysPath: "/sys", RootPath: "/",
		MaxProcs: -1,
		Logger:   agentLogger,
		Enrol: func(ctx context.Context, listening net.Addr) error {
			host, err := enrolHere(ctx, h, listening)
			if err == nil {
				localHost.Store(&host.ID)
			}
			return err
		},
		// The change journal goes to the hub in this process, once this machine is its host.
		ShipChanges: func(ctx context.Context, journal string, events []changes.Event) (uint64, error) {
			id := localHost.Load()
			if id == nil {
				return 0, errors.New("this machine is not enrolled with the hub yet")
			}
			return h.StoreChangesLocal(ctx, *id, journal, events)
		},
	})
	if err != nil {
		fmt.Fprintf(stderr, "sage up: cannot start the agent: %v\n", err)
		return 1
	}

	var wg sync.WaitGroup
	agentErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		agentErr <- a.Run(ctx, nil, nil)
	}()
	announce(stdout, h, ln.Addr(), dataDir,
		fmt.Sprintf("more hosts: sage agent --hub http://%s --token-file FILE --listen ADDR:10730", browsable(ln.Addr())),
		fmt.Sprintf("(FILE: a copy of %s; the agent's --listen address must be reachable from here)", tokenFile))
	serveErr := h.Serve(ctx, ln)
	stop() // the hub stopped: stop the agent too
	wg.Wait()
	code := 0
	if serveErr != nil {
		logger.Error("hub stopped", "err", serveErr)
		code = 1
	}
	if err := <-agentErr; err != nil {
		logger.Error("agent stopped", "err", err)
		code = 1
	}
	if err := h.Close(); err != nil {
		logger.Error("closing the hub's stores", "err", err)
		code = 1
	}
	return code
}

// ensureEnrolToken writes a new random enrolment token to path (mode 600) unless one is there.
func ensureEnrolToken(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("enrolment token: %w", err)
	}
	if _, err := fmt.Fprintf(f, "sage_enrol_%s\n", hex.EncodeToString(b)); err != nil {
		f.Close()
		return fmt.Errorf("enrolment token: %w", err)
	}
	return f.Close()
}

// enrolHere registers this machine with the in-process hub, with the facts an agent would send
// over HTTP. The wire type and the inventory's encode identically (a test checks), so the facts
// cross by JSON without a hand-written field-by-field copy that could fall behind.
func enrolHere(ctx context.Context, h *hub.Hub, listening net.Addr) (inventory.Host, error) {
	src := enrol.DefaultSources("/", "/proc", "/sys")
	if p := os.Getenv("SAGE_MACHINE_ID_FILE"); p != "" {
		src.MachineIDFiles = []string{p}
	}
	facts, err := enrol.Gather(src)
	if err != nil {
		return inventory.Host{}, err
	}
	facts.AgentURL = "http://" + listening.String() + "/metrics"
	b, err := json.Marshal(facts)
	if err != nil {
		return inventory.Host{}, err
	}
	var e inventory.Enrolment
	if err := json.Unmarshal(b, &e); err != nil {
		return inventory.Host{}, err
	}
	// The hub's store is local and up by now, but retry briefly rather than leave the machine
	// unmonitored for this whole run on one failed write.
	for attempt := 0; ; attempt++ {
		host, err := h.EnrolLocal(ctx, e)
		if err == nil || attempt == 4 || ctx.Err() != nil {
			return host, err
		}
		select {
		case <-ctx.Done():
			return inventory.Host{}, ctx.Err()
		case <-time.After(time.Second << attempt):
		}
	}
}
