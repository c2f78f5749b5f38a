// Package promapi serves the Prometheus HTTP query API (/api/v1/query, query_range, series, labels,
// label values, metadata, targets, rules, status) over the hub's metric store, so that Grafana and
// any other Prometheus client can use the hub as a Prometheus data source.
//
// The handlers are upstream Prometheus's own (web/api/v1), not a re-implementation: parameter
// parsing, JSON shapes, error types and status codes are the real ones by construction. This package
// wires them to the store and exposes only the read-only endpoints; the admin, write, OTLP,
// notification and search endpoints answer 404 (remote write has its own authenticated handler in
// the hub).
//
// The price of the upstream handlers, measured with Prometheus v0.315.0: about 12 MiB of stripped
// binary beyond the store (mostly the OpenAPI library they use) and, in New, 0.2 s and 80 MB of
// short-lived allocations to build an OpenAPI document that is never served. A hand-written API
// over the same engine is the way out if that ever matters more than exact parity.
package promapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/grafana/regexp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
	"github.com/prometheus/common/version"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/tsdb"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/serversage/sage/internal/metricstore"
)

// Options configure the API. Only Prefix is commonly set.
type Options struct {
	// Prefix is where the API is mounted: "/prometheus" serves /prometheus/api/v1/query. Empty
	// serves /api/v1/... at the root.
	Prefix string
	// ExternalURL is the hub's address as users reach it (scheme and host), used for the global
	// URLs in /targets. Empty: the request's own host.
	ExternalURL string
	// CORSOrigin is a regular expression of browser origins allowed to call the API directly.
	// Empty allows none: Grafana calls it from its server, and the hub's own pages are same-origin.
	CORSOrigin string
	// Rules supplies the rule groups and alerting rules for /rules and /alerts (the alerting
	// rules' manager, *rules.Manager, satisfies it). Nil: no rules.
	Rules v1.RulesRetriever
	// BuildInfo answers /status/buildinfo. Nil: see DefaultBuildInfo.
	BuildInfo *v1.PrometheusVersion
	Logger    *slog.Logger
	// Registerer receives the API's own metrics. Nil: a private registry.
	Registerer prometheus.Registerer
}

// New returns the API over the store's engine, TSDB and scrape manager.
func New(store *metricstore.Store, o Options) (http.Handler, error) {
	if store == nil {
		return nil, errors.New("promapi: no metric store")
	}
	o.Prefix = strings.TrimRight(o.Prefix, "/")
	if o.Prefix != "" && !strings.HasPrefix(o.Prefix, "/") {
		return nil, fmt.Errorf("promapi: prefix %q does not start with /", o.Prefix)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.BuildInfo == nil {
		o.BuildInfo = DefaultBuildInfo()
	}
	cors := o.CORSOrigin
	if cors == "" {
		cors = "$^" // matches no origin
	}
	corsRe, err := regexp.Compile("^(?:" + cors + ")$")
	if err != nil {
		return nil, fmt.Errorf("promapi: CORS origin: %w", err)
	}
	var urlOpts v1.GlobalURLOptions
	if o.ExternalURL != "" {
		scheme, host, ok := strings.Cut(o.ExternalURL, "://")
		if !ok || host == "" {
			return nil, fmt.Errorf("promapi: external URL %q is not scheme://host", o.ExternalURL)
		}
		host, _, _ = strings.Cut(host, "/")
		urlOpts = v1.GlobalURLOptions{ListenAddress: host, Host: host, Scheme: scheme}
	}
	rulesRetriever := o.Rules
	if rulesRetriever == nil {
		rulesRetriever = noRules{}
	}

	started := time.Now()
	hostname, _ := os.Hostname()
	cwd, _ := os.Getwd()
	runtimeInfo := func() (v1.RuntimeInfo, error) {
		return v1.RuntimeInfo{
			StartTime:           started,
			CWD:                 cwd,
			Hostname:            hostname,
			ServerTime:          time.Now().UTC(),
			ReloadConfigSuccess: true,
			LastConfigTime:      started,
			GoroutineCount:      runtime.NumGoroutine(),
			GOMAXPROCS:          runtime.GOMAXPROCS(0),
			GOMEMLIMIT:          debug.SetMemoryLimit(-1),
			GOGC:                os.Getenv("GOGC"),
			GODEBUG:             os.Getenv("GODEBUG"),
			StorageRetention:    store.Retention(),
		}, nil
	}
	opts := store.Options()
	flags := map[string]string{
		"storage.tsdb.path":           store.Dir(),
		"storage.tsdb.retention.time": opts.Retention.String(),
		"storage.tsdb.retention.size": fmt.Sprintf("%dB", opts.RetentionSize),
		"query.lookback-delta":        opts.LookbackDelta.String(),
		"query.timeout":               opts.QueryTimeout.String(),
		"query.max-samples":           fmt.Sprint(opts.QueryMaxSamples),
		"query.max-concurrency":       fmt.Sprint(opts.QueryMaxConcurrency),
	}
	scrapeManager := store.Scrape()

	api := v1.NewAPI(
		store.Engine(), store.Queryable(),
		nil, nil, // appendables: remote write and OTLP are not served here
		store.DB(), // exemplars
		func(context.Context) v1.ScrapePoolsRetriever { return scrapeManager },
		func(context.Context) v1.TargetRetriever { return scrapeManager },
		nil, // alertmanagers: not served
		store.Config,
		flags,
		urlOpts,
		func(h http.HandlerFunc) http.HandlerFunc { return h }, // the store is ready once opened
		tsdbStats{store}, store.Dir(),
		false,    // admin endpoints
		false, 0, // search endpoints
		o.Logger,
		func(context.Context) v1.RulesRetriever { return rulesRetriever },
		0, 0, 0, // remote read: not served
		false, // not agent mode
		corsRe,
		runtimeInfo,
		o.BuildInfo,
		nil, nil, // notifications: not served
		prometheus.NewRegistry(), o.Registerer,
		nil,        // default stats renderer
		false, nil, // remote write receiver
		false, false, false, // OTLP
		false, // start-timestamp zero ingestion
		opts.LookbackDelta,
		false, false, // type-and-unit labels, metadata
		nil, // default error codes
		nil, // feature registry: /features is not served
		v1.OpenAPIOptions{},
		store.Parser(),
	)
	router := route.New()
	api.Register(router)
	base := o.Prefix + "/api/v1"
	inner := http.StripPrefix(base, router)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, base)
		if !ok || !served(rest) {
			http.NotFound(w, r)
			return
		}
		inner.ServeHTTP(w, r)
	}), nil
}

// servedPaths are the read-only endpoints exposed (the router under them decides the methods, GET
// and, where Prometheus accepts one, a POST form), plus /label/<name>/values.
var servedPaths = map[string]bool{
	"/query": true, "/query_range": true, "/query_exemplars": true, "/format_query": true, "/parse_query": true,
	"/labels": true, "/series": true, "/metadata": true,
	"/targets": true, "/targets/metadata": true, "/scrape_pools": true,
	"/rules": true, "/alerts": true,
	"/status/buildinfo": true, "/status/runtimeinfo": true, "/status/flags": true, "/status/config": true,
	"/status/tsdb": true, "/status/walreplay": true,
}

func served(path string) bool {
	if servedPaths[path] {
		return true
	}
	name, ok := strings.CutPrefix(path, "/label/")
	return ok && strings.HasSuffix(name, "/values")
}

// PrometheusVersion is the release of the embedded Prometheus (module v0.315.0), whose API this
// is. A test keeps it equal to go.mod's.
const PrometheusVersion = "3.15.0"

// DefaultBuildInfo reports the embedded Prometheus's version as the API version, because clients
// (Grafana's "detect" button among them) read it to decide which API features they may use, and
// this API is exactly that Prometheus version's. The revision, branch and build fields are
// ServerSage's own.
func DefaultBuildInfo() *v1.PrometheusVersion {
	return &v1.PrometheusVersion{
		Version:   PrometheusVersion,
		Revision:  version.GetRevision(),
		Branch:    version.Branch,
		BuildUser: version.BuildUser,
		BuildDate: version.BuildDate,
		GoVersion: runtime.Version(),
	}
}

type noRules struct{}

func (noRules) RuleGroups() []*rules.Group           { return nil }
func (noRules) AlertingRules() []*rules.AlertingRule { return nil }

// tsdbStats adapts the store to what the API reads for /status/tsdb and /status/walreplay, as
// Prometheus's readyStorage does; the admin methods are never called (admin endpoints are off).
type tsdbStats struct{ *metricstore.Store }

func (t tsdbStats) CleanTombstones() error { return t.DB().CleanTombstones() }
func (t tsdbStats) Delete(ctx context.Context, mint, maxt int64, ms ...*labels.Matcher) error {
	return t.DB().Delete(ctx, mint, maxt, ms...)
}
func (t tsdbStats) Snapshot(dir string, withHead bool) error { return t.DB().Snapshot(dir, withHead) }
func (t tsdbStats) Stats(statsByLabelName string, limit int) (*tsdb.Stats, error) {
	return t.DB().Head().Stats(statsByLabelName, limit), nil
}
func (t tsdbStats) WALReplayStatus() (tsdb.WALReplayStatus, error) {
	first, last, current := t.WALReplay()
	return tsdb.WALReplayStatus{Min: first, Max: last, Current: current}, nil
}
func (t tsdbStats) BlockMetas() ([]tsdb.BlockMeta, error) { return t.DB().BlockMetas(), nil }
