package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/serversage/sage/internal/agent"
	"github.com/serversage/sage/internal/changes"
	"github.com/serversage/sage/internal/collector"
	"github.com/serversage/sage/internal/enrol"
)

func init() {
	commands["agent"] = command{summary: "measure this host and serve /metrics", run: runAgent}
}

func runAgent(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sage agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		opts        agent.Options
		checkConfig bool
		logLevel    string
		logFormat   string
		hubURL      string
		tokenFile   string
		advertise   string
		hostname    string
	)
	fs.StringVar(&opts.ConfigFile, "config", "", "configuration `file` (YAML); none: every default collector on")
	fs.StringVar(&opts.Listen, "listen", agent.DefaultListen, "`address` to serve /metrics on")
	fs.StringVar(&opts.WebConfigFile, "web.config.file", "", "exporter-toolkit web configuration `file` for TLS and basic auth")
	fs.StringVar(&opts.StateDir, "state-dir", agent.DefaultStateDir(), "`directory` for state kept across restarts")
	fs.StringVar(&opts.ProcPath, "path.procfs", "/proc", "procfs mount `point`")
	fs.StringVar(&opts.SysPath, "path.sysfs", "/sys", "sysfs mount `point`")
	fs.StringVar(&opts.RootPath, "path.rootfs", "/", "host root `directory`, when the agent runs in a container")
	fs.IntVar(&opts.MaxProcs, "runtime.gomaxprocs", 1, "Go `threads` for running collectors (GOMAXPROCS); 0 or less: one per CPU")
	fs.StringVar(&hubURL, "hub", "", "hub `URL` to enrol this host with (e.g. http://hub.example:10731); none: no enrolment")
	fs.StringVar(&tokenFile, "token-file", "", "`file` holding the hub's enrolment token (required with --hub; keep it mode 600)")
	fs.StringVar(&advertise, "advertise-url", "", "`URL` the hub scrapes this agent at; default: http://<listen address>/metrics")
	fs.StringVar(&hostname, "hostname", "", "`name` to enrol this host as; default: the system's host name")
	fs.BoolVar(&checkConfig, "check-config", false, "check the configuration (and web configuration) and exit")
	fs.StringVar(&logLevel, "log.level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&logFormat, "log.format", "logfmt", "log `format`: logfmt or json")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sage agent [flags]\n\nCollectors: %s\n\nFlags:\n", strings.Join(collector.Names(), ", "))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sage agent: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	logger, err := newLogger(stderr, logLevel, logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "sage agent: %v\n", err)
		return 2
	}
	opts.Logger = logger
	if opts.MaxProcs <= 0 {
		opts.MaxProcs = -1 // agent.Options: negative keeps Go's choice of one per CPU
	}

	if hubURL != "" || tokenFile != "" || advertise != "" || hostname != "" {
		enrolFn, err := enrolment(hubURL, tokenFile, advertise, hostname, opts, logger)
		if err != nil {
			fmt.Fprintf(stderr, "sage agent: %v\n", err)
			return 2
		}
		opts.Enrol = enrolFn
		opts.Peers = meshPeers(hubURL, tokenFile, opts, logger)
		opts.ShipChanges = changeShipper(hubURL, tokenFile, opts, logger)
	}

	if checkConfig {
		if _, err := agent.LoadConfig(opts.ConfigFile); err != nil {
			fmt.Fprintf(stderr, "sage agent: configuration is invalid:\n%s\n", indent(err.Error(), "  "))
			return 1
		}
		// Building the agent also checks the web configuration and each collector's setup.
		opts.Logger = slog.New(slog.DiscardHandler)
		if _, err := agent.New(opts); err != nil {
			fmt.Fprintf(stderr, "sage agent: configuration is invalid:\n%s\n", indent(err.Error(), "  "))
			return 1
		}
		fmt.Fprintf(stdout, "configuration OK: %s\n", orDefault(opts.ConfigFile))
		return 0
	}

	a, err := agent.New(opts)
	if err != nil {
		fmt.Fprintf(stderr, "sage agent: cannot start:\n%s\n", indent(err.Error(), "  "))
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{})
	go func() {
		for range hup {
			reload <- struct{}{}
		}
	}()
	if err := a.Run(ctx, reload, nil); err != nil {
		logger.Error("agent stopped", "err", err)
		return 1
	}
	return 0
}

// enrolment checks the enrolment flags and returns the agent's Enrol hook. The token is read
// from its file at start (to fail at once on a missing file) and again at every enrolment, so a
// rotated token takes effect on SIGHUP; it is never logged.
func enrolment(hubURL, tokenFile, advertise, hostname string, opts agent.Options, logger *slog.Logger) (func(context.Context, net.Addr) error, error) {
	if hubURL == "" {
		return nil, errors.New("--token-file, --advertise-url and --hostname need --hub")
	}
	if tokenFile == "" {
		return nil, errors.New("--hub needs --token-file: the enrolment token is read from a file, never given on the command line")
	}
	if u, err := url.Parse(hubURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("--hub %q: must be an http:// or https:// URL with a host and no credentials", hubURL)
	}
	// Refused now rather than at the first enrolment: an advertised URL the hub would refuse, or a
	// loopback listener (the default) that a hub on another machine could never scrape.
	if advertise != "" {
		if _, err := enrol.AgentURL(advertise, nil, nil, hubURL); err != nil {
			return nil, err
		}
	} else if ap, err := netip.ParseAddrPort(opts.Listen); err == nil && ap.Addr().IsLoopback() {
		if _, err := enrol.AgentURL("", net.TCPAddrFromAddrPort(ap), nil, hubURL); err != nil {
			return nil, err
		}
	}
	if _, warning, err := enrol.ReadToken(tokenFile); err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	} else if warning != "" {
		logger.Warn(warning)
	}
	src := enrol.DefaultSources(opts.RootPath, opts.ProcPath, opts.SysPath)
	if p := os.Getenv("SAGE_MACHINE_ID_FILE"); p != "" {
		// For tests and for containers that mount the host's machine id elsewhere.
		src.MachineIDFiles = []string{p}
	}
	if hostname != "" {
		src.Hostname = func() (string, error) { return hostname, nil }
	}
	client := &enrol.Client{Logger: logger}
	return func(ctx context.Context, listening net.Addr) error {
		token, _, err := enrol.ReadToken(tokenFile)
		if err != nil {
			return err
		}
		// Gathered afresh each time: addresses and the kernel change under a running agent.
		e, err := enrol.Gather(src)
		if err != nil {
			return err
		}
		if e.AgentURL, err = enrol.AgentURL(advertise, listening, e.Addresses, hubURL); err != nil {
			return err
		}
		res, err := client.Enrol(ctx, hubURL, token, e)
		if err != nil {
			return err
		}
		msg := "enrolled with the hub; active, the hub scrapes this host"
		if res.Status == "pending" {
			msg = "enrolled with the hub; pending approval by an operator"
		}
		logger.Info(msg, "hub", hubURL, "host_id", res.HostID, "host", res.Name, "status", res.Status,
			"new", res.Created, "agent_url", e.AgentURL, "machine_id", e.MachineID)
		return nil
	}, nil
}

// hubCredentials returns what authenticates the agent's requests to the hub after enrolment: the
// enrolment token, read afresh each time (a rotated token takes effect without a restart), and
// this machine's id.
func hubCredentials(tokenFile string, opts agent.Options) func() (token, machineID string, err error) {
	src := enrol.DefaultSources(opts.RootPath, opts.ProcPath, opts.SysPath)
	if p := os.Getenv("SAGE_MACHINE_ID_FILE"); p != "" {
		src.MachineIDFiles = []string{p}
	}
	return func() (string, string, error) {
		token, _, err := enrol.ReadToken(tokenFile)
		if err != nil {
			return "", "", err
		}
		e, err := enrol.Gather(src)
		if err != nil {
			return "", "", err
		}
		return token, e.MachineID, nil
	}
}

// meshPeers is the agent's Peers hook: the hub's list of this host's east-west peers.
func meshPeers(hubURL, tokenFile string, opts agent.Options, logger *slog.Logger) func(context.Context) (agent.MeshPeers, error) {
	creds := hubCredentials(tokenFile, opts)
	client := &enrol.Client{Logger: logger}
	return func(ctx context.Context) (agent.MeshPeers, error) {
		token, machineID, err := creds()
		if err != nil {
			return agent.MeshPeers{}, err
		}
		res, err := client.Peers(ctx, hubURL, token, machineID)
		if err != nil {
			return agent.MeshPeers{}, err
		}
		out := agent.MeshPeers{MeshToken: res.MeshToken, Peers: make([]agent.MeshPeer, len(res.Peers))}
		for i, p := range res.Peers {
			out.Peers[i] = agent.MeshPeer{HostID: p.HostID, Name: p.Name, Address: p.Address, AgentURL: p.AgentURL}
		}
		return out, nil
	}
}

// changeShipper is the agent's ShipChanges hook: journaled change events go to the hub.
func changeShipper(hubURL, tokenFile string, opts agent.Options, logger *slog.Logger) agent.ShipFunc {
	creds := hubCredentials(tokenFile, opts)
	client := &enrol.Client{Logger: logger}
	return func(ctx context.Context, journal string, events []changes.Event) (uint64, error) {
		token, machineID, err := creds()
		if err != nil {
			return 0, err
		}
		return client.ShipChanges(ctx, hubURL, token, machineID, journal, events)
	}
}

func orDefault(path string) string {
	if path == "" {
		return "(default configuration)"
	}
	return path
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log.level: %w", err)
	}
	o := &slog.HandlerOptions{Level: l}
	switch format {
	case "logfmt", "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log.format: %q is not logfmt or json", format)
}
