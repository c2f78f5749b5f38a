// Command ingest is the benchmark tool behind bench/hub-ingest-vs-prometheus.sh: it serves N
// synthetic agents (a captured `sage agent` payload whose values move with time) on N loopback
// ports, and it runs the hub's metric store (internal/metricstore) scraping them, so that the
// hub's CPU per ingested sample can be set beside the real prometheus binary's on the same targets.
//
//	ingest serve -om FILE -text FILE -targets N -base-port P
//	ingest hub -targets N -base-port P -interval I -dir DIR -listen ADDR [-duration D]
//
// It is a benchmark tool, not part of the sage binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/serversage/sage/internal/metricstore"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: ingest serve|hub [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(ctx, os.Args[2:])
	case "hub":
		err = hub(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	omFile := fs.String("om", "", "captured OpenMetrics payload (served to clients that accept it, as the agent does)")
	textFile := fs.String("text", "", "captured Prometheus text payload")
	n := fs.Int("targets", 100, "number of synthetic agents, one port each")
	basePort := fs.Int("base-port", 19300, "first port; agents listen on 127.0.0.1:base-port .. base-port+targets-1")
	plausible := fs.Bool("plausible", false, "serve values a healthy host would show (counters at their rate since boot, gauges within 5%, states fixed) instead of moving every sample")
	_ = fs.Parse(args)

	om, err := loadTemplate(*omFile)
	if err != nil {
		return err
	}
	text, err := loadTemplate(*textFile)
	if err != nil {
		return err
	}
	if *plausible {
		om.plausible()
		text.plausible()
	}
	h := &targets{om: om, text: text, start: time.Now()}
	var srvs []*http.Server
	for j := range *n {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(*basePort+j))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", h.handler(j))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		srvs = append(srvs, srv)
		go func() { _ = srv.Serve(ln) }()
	}
	fmt.Printf("serving %d targets on 127.0.0.1:%d-%d, %d samples each\n", *n, *basePort, *basePort+*n-1, len(om.samples))
	<-ctx.Done()
	for _, s := range srvs {
		_ = s.Close()
	}
	return nil
}

func loadTemplate(path string) (*template, error) {
	if path == "" {
		return nil, errors.New("serve: -om and -text are required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := parseTemplate(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

type targets struct {
	om, text *template
	start    time.Time
	bufs     sync.Pool // *[]byte
	gzips    sync.Pool // *gzip.Writer
}

const (
	omType   = "application/openmetrics-text; version=1.0.0; charset=utf-8"
	textType = "text/plain; version=0.0.4; charset=utf-8"
)

// handler serves target j as the agent does: OpenMetrics when the scraper prefers it, gzip at
// level 1 when accepted.
func (h *targets) handler(j int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp, ct := h.text, textType
		if strings.Contains(r.Header.Get("Accept"), "application/openmetrics-text") {
			tp, ct = h.om, omType
		}
		bp, _ := h.bufs.Get().(*[]byte)
		if bp == nil {
			bp = new([]byte)
		}
		*bp = tp.render((*bp)[:0], j, time.Since(h.start).Seconds())
		w.Header().Set("Content-Type", ct)
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			gz, _ := h.gzips.Get().(*gzip.Writer)
			if gz == nil {
				gz, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
			} else {
				gz.Reset(w)
			}
			_, _ = gz.Write(*bp)
			_ = gz.Close()
			h.gzips.Put(gz)
		} else {
			_, _ = w.Write(*bp)
		}
		h.bufs.Put(bp)
	})
}

func hub(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("hub", flag.ExitOnError)
	n := fs.Int("targets", 100, "number of targets")
	basePort := fs.Int("base-port", 19300, "first target port")
	interval := fs.Duration("interval", 5*time.Second, "scrape interval")
	dir := fs.String("dir", "", "TSDB directory (required)")
	listen := fs.String("listen", "127.0.0.1:19290", "address for the store's own /metrics and /debug/pprof/")
	duration := fs.Duration("duration", 0, "stop after this long; 0: at SIGTERM")
	_ = fs.Parse(args)
	if *dir == "" {
		return errors.New("hub: -dir is required")
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	s, err := metricstore.Open(metricstore.Options{
		Dir:            *dir,
		ScrapeInterval: *interval,
		// The first targets reach the scrape loops at once (DiscoveryReloadOnStartup); a short
		// reload only matters if they did not.
		TargetsReload: time.Second,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registerer:    reg,
	})
	if err != nil {
		return err
	}
	defer s.Close()

	ts := make([]metricstore.Target, *n)
	for j := range ts {
		ts[j] = metricstore.Target{Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(*basePort+j))}
	}
	if err := s.SetTargets(ctx, map[string][]metricstore.Target{"agents": ts}); err != nil {
		return err
	}

	// The same view of the store the script has of prometheus: its own metrics (the TSDB's
	// prometheus_tsdb_head_samples_appended_total among them) over HTTP, and pprof for profiling.
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Printf("hub: scraping %d targets every %s, TSDB in %s, metrics on %s\n", *n, *interval, *dir, *listen)

	<-ctx.Done()
	head := s.DB().Head()
	fmt.Printf("hub: head series %d, samples appended %.0f\n", head.NumSeries(), appended(reg))
	return nil
}

// appended sums prometheus_tsdb_head_samples_appended_total over its labels.
func appended(g prometheus.Gatherer) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return -1
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == "prometheus_tsdb_head_samples_appended_total" {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
