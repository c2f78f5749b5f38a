//go:build !agentonly

// The hub and `sage up` link the Prometheus server packages, which double an agent's resident
// memory; `-tags agentonly` builds the binary that monitored hosts run, without them
// (docs/architecture.md, "One binary, two builds").

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/serversage/sage/internal/hub"
)

func init() {
	commands["hub"] = command{summary: "run the hub: inventory, metrics store, query API and web UI", run: runHub}
}

func runHub(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sage hub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configFile  string
		checkConfig bool
		logLevel    string
		logFormat   string
	)
	fs.StringVar(&configFile, "config", "", "configuration `file` (YAML), required; see docs/hub.example.yml")
	fs.BoolVar(&checkConfig, "check-config", false, "check the configuration and exit")
	fs.StringVar(&logLevel, "log.level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&logFormat, "log.format", "logfmt", "log `format`: logfmt or json")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sage hub --config FILE [flags]\n\nFor a hub with this machine as its first host and no configuration, run 'sage up'.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sage hub: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if configFile == "" {
		fmt.Fprintln(stderr, "sage hub: --config is required (for a quick start on embedded defaults, run 'sage up')")
		return 2
	}
	logger, err := newLogger(stderr, logLevel, logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "sage hub: %v\n", err)
		return 2
	}
	cfg, err := hub.LoadConfig(configFile)
	if err != nil {
		fmt.Fprintf(stderr, "sage hub: configuration is invalid:\n%s\n", indent(err.Error(), "  "))
		return 1
	}
	if checkConfig {
		fmt.Fprintf(stdout, "configuration OK: %s\n", configFile)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h, err := hub.New(ctx, cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "sage hub: cannot start: %v\n", err)
		return 1
	}
	defer h.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "sage hub: %v\n", err)
		return 1
	}
	announce(stdout, h, ln.Addr(), cfg.DataDir)
	if err := h.Serve(ctx, ln); err != nil {
		logger.Error("hub stopped", "err", err)
		return 1
	}
	if err := h.Close(); err != nil {
		logger.Error("closing the hub's stores", "err", err)
		return 1
	}
	return 0
}

// announce tells the person who started the hub where it is and how to log in: the generated
// admin password is shown here once, on standard output, and never logged.
func announce(w io.Writer, h *hub.Hub, addr net.Addr, dataDir string, extra ...string) {
	url := "http://" + browsable(addr) + "/"
	var b strings.Builder
	fmt.Fprintf(&b, "\nServerSage is running at %s\n", url)
	switch pw := h.InitialAdminPassword(); {
	case pw != "":
		fmt.Fprintf(&b, "  log in as admin with password %s\n  (shown this once: keep it, or start with SAGE_ADMIN_PASSWORD set)\n", pw)
	case os.Getenv("SAGE_ADMIN_PASSWORD") != "":
		fmt.Fprintln(&b, "  log in as admin with the password in SAGE_ADMIN_PASSWORD")
	default:
		fmt.Fprintln(&b, "  log in as admin with the password shown at the first start")
	}
	fmt.Fprintf(&b, "  Grafana: add a Prometheus data source at %sprometheus with an API token\n", url)
	fmt.Fprintf(&b, "  data: %s\n", dataDir)
	for _, line := range extra {
		fmt.Fprintf(&b, "  %s\n", line)
	}
	b.WriteString("\n")
	// One write, so that log lines from the hub's goroutines cannot land in the middle of it.
	_, _ = io.WriteString(w, b.String())
}

// browsable turns a listening address into one a browser can open: an unspecified address
// (0.0.0.0, ::) becomes loopback.
func browsable(addr net.Addr) string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	if ta.IP == nil || ta.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port))
	}
	return ta.String()
}
