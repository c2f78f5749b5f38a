// Package metricstore is the hub's metrics storage: the real Prometheus TSDB, PromQL engine and scrape
// manager from github.com/prometheus/prometheus, used as a library and wired the way the prometheus
// binary wires them, so that what the hub stores and answers is what a Prometheus would. The hub
// drives the scrape targets at run time (from its inventory) and agents that cannot be reached push
// through the remote-write receiver.
package metricstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/compression"
)

// Defaults are Prometheus's own where Prometheus has one, so that queries behave as users expect.
const (
	DefaultRetention           = 15 * 24 * time.Hour // --storage.tsdb.retention.time
	DefaultScrapeInterval      = 15 * time.Second    // what Prometheus's example configuration ships
	DefaultScrapeTimeout       = 10 * time.Second    // global.scrape_timeout
	DefaultQueryTimeout        = 2 * time.Minute     // --query.timeout
	DefaultQueryMaxSamples     = 50_000_000          // --query.max-samples
	DefaultQueryMaxConcurrency = 20                  // --query.max-concurrency
	DefaultLookbackDelta       = 5 * time.Minute     // --query.lookback-delta
	DefaultTargetsReload       = 5 * time.Second     // scrape manager's discovery reload interval
	DefaultRemoteFlushDeadline = time.Minute         // --storage.remote.flush-deadline
	// evaluationInterval stands in for global.evaluation_interval, which PromQL uses as the step of a
	// subquery written without one (`foo[1h:]`).
	evaluationInterval = time.Minute
)

// Options configure a Store. Zero values take the defaults above.
type Options struct {
	// Dir holds the TSDB (blocks, WAL) and the active-query log. Required.
	Dir string
	// Retention is how long samples are kept; RetentionSize caps the bytes of blocks and WAL (0: no
	// cap). Whichever is hit first removes the oldest blocks, as in Prometheus.
	Retention     time.Duration
	RetentionSize int64
	// OutOfOrderWindow accepts samples this much older than a series' newest one, for agents that
	// push a backlog through remote write after an outage. 0 refuses them, as Prometheus does.
	OutOfOrderWindow time.Duration

	ScrapeInterval time.Duration
	ScrapeTimeout  time.Duration // must not exceed ScrapeInterval
	// TargetsReload bounds how long SetTargets takes to reach the scrape loops (Prometheus batches
	// target updates the same way so that a churning inventory does not restart loops per change).
	TargetsReload time.Duration

	QueryTimeout        time.Duration
	QueryMaxSamples     int
	QueryMaxConcurrency int
	LookbackDelta       time.Duration

	// ExternalLabels are added to every sample sent by remote write (e.g. which hub sent it), as
	// Prometheus's global.external_labels.
	ExternalLabels map[string]string
	RemoteWrite    []RemoteWrite
	// RemoteFlushDeadline bounds how long Close waits for queued samples to be sent.
	RemoteFlushDeadline time.Duration

	Logger *slog.Logger
	// Registerer receives the TSDB's, the engine's and the scrape manager's own metrics (the
	// prometheus_tsdb_*, prometheus_engine_*, prometheus_target_* families). Nil: a private registry.
	Registerer prometheus.Registerer
}

func (o *Options) setDefaults() error {
	if o.Dir == "" {
		return errors.New("metricstore: no data directory")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.Retention, DefaultRetention)
	def(&o.ScrapeInterval, DefaultScrapeInterval)
	def(&o.ScrapeTimeout, min(DefaultScrapeTimeout, o.ScrapeInterval))
	def(&o.TargetsReload, DefaultTargetsReload)
	def(&o.QueryTimeout, DefaultQueryTimeout)
	def(&o.LookbackDelta, DefaultLookbackDelta)
	def(&o.RemoteFlushDeadline, DefaultRemoteFlushDeadline)
	if o.QueryMaxSamples == 0 {
		o.QueryMaxSamples = DefaultQueryMaxSamples
	}
	if o.QueryMaxConcurrency == 0 {
		o.QueryMaxConcurrency = DefaultQueryMaxConcurrency
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	switch {
	case o.Retention < 0 || o.RetentionSize < 0 || o.OutOfOrderWindow < 0:
		return errors.New("metricstore: retention and out-of-order window must not be negative")
	case o.ScrapeInterval < 0 || o.ScrapeTimeout < 0 || o.QueryTimeout < 0 || o.LookbackDelta < 0 || o.TargetsReload < 0 || o.RemoteFlushDeadline < 0:
		return errors.New("metricstore: durations must not be negative")
	case o.ScrapeTimeout > o.ScrapeInterval:
		return fmt.Errorf("metricstore: scrape timeout %s exceeds scrape interval %s", o.ScrapeTimeout, o.ScrapeInterval)
	case o.QueryMaxSamples < 0 || o.QueryMaxConcurrency < 0:
		return errors.New("metricstore: query limits must not be negative")
	}
	return nil
}

// Store owns the TSDB, the query engine and the scrape manager. It is safe for concurrent use.
type Store struct {
	opts    Options
	db      *tsdb.DB
	stats   *tsdb.DBStats
	tracker *promql.ActiveQueryTracker
	engine  *promql.Engine
	pages   *promql.Engine // untracked, for the hub's own pages
	parser  parser.Parser
	scraper *scraper
	remote  *remote.Storage // nil without remote write

	remoteWrite http.Handler
	closeOnce   sync.Once
	closeErr    error
}

// Open opens (or creates) the TSDB in opts.Dir, replaying its WAL, and starts the scrape manager
// with no targets.
func Open(opts Options) (*Store, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	// The whole configuration is checked before anything is created.
	cfg, err := renderConfig(opts, nil)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("metricstore: %w", err)
	}
	s := &Store{opts: opts}
	logger := opts.Logger

	s.stats = tsdb.NewDBStats()
	db, err := tsdb.Open(opts.Dir, logger.With("component", "tsdb"), opts.Registerer, tsdbOptions(opts), s.stats)
	if err != nil {
		return nil, fmt.Errorf("metricstore: opening TSDB in %s: %w", opts.Dir, err)
	}
	s.db = db

	// The tracker records running queries in a file, so that a query that crashed the process is
	// logged at the next start (as Prometheus does), and caps their concurrency.
	s.tracker, err = promql.NewActiveQueryTracker(opts.Dir, opts.QueryMaxConcurrency, logger.With("component", "activeQueryTracker"))
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("metricstore: %w", err)
	}
	// Duration expressions are on by default in Prometheus 3; the parser is shared with the API so
	// that both accept the same language.
	s.parser = parser.NewParser(parser.Options{ExperimentalDurationExpr: true})
	engineOpts := promql.EngineOpts{
		Logger:             logger.With("component", "query engine"),
		Reg:                opts.Registerer,
		MaxSamples:         opts.QueryMaxSamples,
		Timeout:            opts.QueryTimeout,
		ActiveQueryTracker: s.tracker,
		LookbackDelta:      opts.LookbackDelta,
		NoStepSubqueryIntervalFn: func(int64) int64 {
			return evaluationInterval.Milliseconds()
		},
		// Always on in Prometheus since 2.33.
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		Parser:               s.parser,
	}
	s.engine = promql.NewEngine(engineOpts)
	// The pages' engine has the same limits and language. Its metrics are not registered: the
	// prometheus_engine_* families are the query API's, and registering twice would fail.
	engineOpts.Reg, engineOpts.ActiveQueryTracker = nil, nil
	engineOpts.Logger = logger.With("component", "page query engine")
	s.pages = promql.NewEngine(engineOpts)

	s.scraper, err = newScraper(opts, db, func(jobs []string) (*config.Config, error) { return renderConfig(opts, jobs) })
	if err != nil {
		_ = s.tracker.Close()
		_ = db.Close()
		return nil, err
	}

	if len(opts.RemoteWrite) > 0 {
		// The queues tail the TSDB's WAL in opts.Dir (as in Prometheus, where the remote storage
		// is given the data directory), woken by every WAL write.
		s.remote = remote.NewStorage(logger.With("component", "remote"), opts.Registerer, db.StartTime, opts.Dir,
			opts.RemoteFlushDeadline, readyScrape{s.scraper.manager}, false)
		if err := s.remote.ApplyConfig(cfg); err != nil {
			_ = s.remote.Close()
			s.scraper.stop()
			_ = s.tracker.Close()
			_ = db.Close()
			return nil, fmt.Errorf("metricstore: remote write: %w", err)
		}
		db.SetWriteNotified(s.remote)
	}

	s.remoteWrite = newRemoteWriteHandler(opts, db)
	return s, nil
}

func tsdbOptions(o Options) *tsdb.Options {
	t := tsdb.DefaultOptions()
	t.RetentionDuration = o.Retention.Milliseconds()
	t.MaxBytes = o.RetentionSize
	t.OutOfOrderTimeWindow = o.OutOfOrderWindow.Milliseconds()
	// Prometheus compresses the WAL by default (--storage.tsdb.wal-compression).
	t.WALCompression = compression.Snappy
	// Prometheus's rule for the largest block: 31 days, or a tenth of the retention when that is
	// shorter, so that retention removes data in steps of at most 10%.
	t.MaxBlockDuration = min(31*24*time.Hour, o.Retention/10).Milliseconds()
	if t.MaxBlockDuration < t.MinBlockDuration {
		t.MaxBlockDuration = t.MinBlockDuration
	}
	return t
}

// Engine is the PromQL engine, bound to this store's limits.
func (s *Store) Engine() *promql.Engine { return s.engine }

// PageEngine is a second PromQL engine over the same storage, with Engine's limits and language
// but without the active-query tracker, for the hub's own pages (a host page's charts run about
// ten short range queries). The tracker writes every query into its mmapped file and lets at most
// QueryMaxConcurrency run at once; for the pages' queries, whose text is fixed by the hub and not
// by a user, that bookkeeping cost about as much as the queries. Callers bound their own
// concurrency.
func (s *Store) PageEngine() *promql.Engine { return s.pages }

// Parser is the PromQL parser the engine uses.
func (s *Store) Parser() parser.Parser { return s.parser }

// Queryable is the storage the engine and the API read: the TSDB itself.
func (s *Store) Queryable() storage.SampleAndChunkQueryable { return s.db }

// DB is the TSDB, for its statistics (the API's /status/tsdb) and for tests.
func (s *Store) DB() *tsdb.DB { return s.db }

// Appender appends samples directly; nothing is visible or durable before Commit.
func (s *Store) Appender(ctx context.Context) storage.Appender { return s.db.Appender(ctx) }

// RemoteWriteHandler receives Prometheus remote write (1.0 and 2.0) into the TSDB. It does no
// authentication: the hub puts it behind the agents' credentials and marks each request with the
// sender's labels (WithTargetLabels).
func (s *Store) RemoteWriteHandler() http.Handler { return s.remoteWrite }

// Scrape is the scrape manager, for the API's /targets and /metadata (which reads metadata from
// the scrape caches, as Prometheus does).
func (s *Store) Scrape() *scrape.Manager { return s.scraper.manager }

// Config is the Prometheus configuration equivalent to this store's scrape settings, for the API's
// /status/config and the remote-read handler.
func (s *Store) Config() config.Config { return s.scraper.currentConfig() }

// Retention reports the retention in Prometheus's flag form, for the API's /status/runtimeinfo.
func (s *Store) Retention() string {
	r := s.opts.Retention.String()
	if s.opts.RetentionSize > 0 {
		r += fmt.Sprintf(" or %dB", s.opts.RetentionSize)
	}
	return r
}

// Dir is the data directory.
func (s *Store) Dir() string { return filepath.Clean(s.opts.Dir) }

// Close stops scraping (writing staleness markers for the scraped series, as Prometheus does at
// shutdown), flushes the remote-write queues, then closes the query tracker and the TSDB, which
// syncs and closes the WAL. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.scraper.stop()
		var remoteErr error
		if s.remote != nil {
			remoteErr = s.remote.Close() // sends what is queued, within RemoteFlushDeadline
		}
		s.closeErr = errors.Join(remoteErr, s.tracker.Close(), s.db.Close())
	})
	return s.closeErr
}

// Options are the options the store runs with, defaults filled in.
func (s *Store) Options() Options { return s.opts }

// WALReplay reports the WAL segments the replay at Open went through: the first and last segment
// and the one reached (equal to last once Open has returned).
func (s *Store) WALReplay() (first, last, current int) {
	st := s.stats.Head.WALReplayStatus
	st.RLock()
	defer st.RUnlock()
	return st.Min, st.Max, st.Current
}

// readyScrape hands the remote-write queues the scrape manager, from whose caches they send
// metric metadata.
type readyScrape struct{ m *scrape.Manager }

func (r readyScrape) Get() (*scrape.Manager, error) { return r.m, nil }
