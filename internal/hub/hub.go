// Package hub composes the hub's parts (the state store, the inventory, authentication, the
// metrics store and its Prometheus query API) into one HTTP handler with background loops, and
// owns what ties them together: agent enrolment, and scrape targets that follow the inventory.
//
// It is kept out of cmd/sage's agent path on purpose: the Prometheus packages it links double the
// agent's RSS (see docs/architecture.md, "The hub's storage").
package hub

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/serversage/sage/internal/alert"
	"github.com/serversage/sage/internal/api"
	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/changelog"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/metricstore"
	"github.com/serversage/sage/internal/notify"
	"github.com/serversage/sage/internal/oncall"
	"github.com/serversage/sage/internal/promapi"
	"github.com/serversage/sage/internal/rulepack"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/web"
)

// AgentJob is the scrape job of enrolled agents. The web UI charts that job's series, and web
// cannot import hub, so the name is defined there and only referred to here.
const AgentJob = web.AgentJob

// targetsRefresh is how often targets are rebuilt from the inventory even without a change made
// through this hub (another hub on the same PostgreSQL, an edit in SQL).
const targetsRefresh = 30 * time.Second

// enrolToken is one configured enrolment token, kept only as its SHA-256.
type enrolToken struct {
	hash        [sha256.Size]byte
	clientID    string
	clientSlug  string
	autoApprove bool
}

// Hub is a running hub's state. Handler serves it; Run drives its background loops.
type Hub struct {
	cfg     Config
	logger  *slog.Logger
	db      *store.DB
	inv     *inventory.Inventory
	changes *changelog.Store
	auth    *auth.Auth
	metrics *metricstore.Store
	health  *hosthealth.Tracker
	handler http.Handler
	tokens  []enrolToken

	alerts     *alert.Engine
	oncall     *oncall.Store
	dispatcher *notify.Dispatcher
	pack       *rulepack.Pack
	registry   *prometheus.Registry

	adminPassword string
	kick          chan struct{} // a non-blocking request to rebuild the targets now

	closeOnce sync.Once
	closeErr  error
}

// New opens the state store (applying migrations), makes sure an admin exists, and opens the
// metrics store in <data_dir>/metrics. The first admin's password is SAGE_ADMIN_PASSWORD, or a
// generated one that InitialAdminPassword returns so the caller can show it once.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Hub, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if fe := cfg.Validate(); len(fe) > 0 {
		msgs := make([]string, len(fe))
		for i, e := range fe {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("hub: invalid configuration: %s", strings.Join(msgs, "; "))
	}
	// Token files are read before anything is opened, so a wrong path fails fast.
	secrets := make([]string, len(cfg.Enrolment))
	for i, e := range cfg.Enrolment {
		tok, err := readToken(fmt.Sprintf("enrolment[%d].token_file", i), e.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("hub: %w", err)
		}
		secrets[i] = tok
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("hub: data directory: %w", err)
	}
	db, err := store.Open(ctx, cfg.stateDSN(), logger.With("component", "store"))
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	h := &Hub{
		cfg:     cfg,
		logger:  logger,
		db:      db,
		inv:     inventory.New(db),
		changes: changelog.New(db),
		auth:    auth.New(db),
		kick:    make(chan struct{}, 1),
		// The hub's own metrics (rule evaluation, notifications), kept apart from the TSDB's.
		registry: prometheus.NewRegistry(),
	}
	if err := h.init(ctx, secrets); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

func (h *Hub) init(ctx context.Context, secrets []string) error {
	created, generated, err := h.auth.EnsureAdmin(ctx, os.Getenv("SAGE_ADMIN_PASSWORD"))
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if created {
		h.logger.Info("created the first admin", "user", auth.AdminUsername, "password_generated", generated != "")
	}
	h.adminPassword = generated

	for i, e := range h.cfg.Enrolment {
		c, err := h.ensureClient(ctx, strings.TrimSpace(e.Client))
		if err != nil {
			return fmt.Errorf("hub: enrolment[%d].client: %w", i, err)
		}
		h.tokens = append(h.tokens, enrolToken{hash: sha256.Sum256([]byte(secrets[i])), clientID: c.ID, clientSlug: c.Slug, autoApprove: e.AutoApprove})
		h.logger.Info("enrolment token loaded", "file", e.TokenFile, "client", c.Slug, "auto_approve", e.AutoApprove)
	}

	h.metrics, err = metricstore.Open(metricstore.Options{
		Dir:            filepath.Join(h.cfg.DataDir, "metrics"),
		Retention:      h.cfg.retention,
		ScrapeInterval: h.cfg.scrapeInterval,
		ScrapeTimeout:  h.cfg.scrapeTimeout,
		// A host enrolled a minute ago should not wait Prometheus's 5 s batching on a fast interval.
		TargetsReload: min(metricstore.DefaultTargetsReload, h.cfg.scrapeInterval),
		Logger:        h.logger.With("component", "metrics"),
	})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	prom, err := promapi.New(h.metrics, promapi.Options{Prefix: "/prometheus", Logger: h.logger.With("component", "promapi")})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if err := h.initAlerting(ctx); err != nil {
		return err
	}
	h.health = hosthealth.New(h.metrics, AgentJob, h.cfg.scrapeInterval, h.logger.With("component", "health"))
	rest := api.New(api.Options{
		Inventory:    h.inv,
		Health:       h.health,
		Changes:      h.changes,
		Logger:       h.logger.With("component", "api"),
		HostsChanged: h.HostsChanged,
	})
	ui, err := web.New(web.Options{
		Inventory:      h.inv,
		Auth:           h.auth,
		Metrics:        h.metrics,
		Health:         h.health,
		ScrapeInterval: h.cfg.scrapeInterval,
		Logger:         h.logger.With("component", "web"),
		HostsChanged:   h.HostsChanged,
		Alerts:         h.alerts,
		OnCall:         h.oncall,
		Pack:           h.pack,
		Outbox:         h.db,
		Changes:        h.changes,
	})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	h.handler = h.routes(prom, rest, ui.Handler())
	// Hosts enrolled before this start are scraped without waiting for the first loop tick.
	if err := h.refreshTargets(ctx); err != nil {
		return err
	}
	return nil
}

// ensureClient returns the client with the slug, creating it (named after the slug) if missing,
// so that `enrolment: {client: local}` works on a fresh hub.
func (h *Hub) ensureClient(ctx context.Context, slug string) (inventory.Client, error) {
	c, err := h.inv.GetClientBySlug(ctx, slug)
	if err == nil || !errors.Is(err, inventory.ErrNotFound) {
		return c, err
	}
	c, err = h.inv.CreateClient(ctx, inventory.Client{Name: slug, Slug: slug})
	if fe := inventory.FieldErrors(err); fe != nil {
		// Created concurrently by another hub on the same database, or the slug is invalid.
		if c2, err2 := h.inv.GetClientBySlug(ctx, slug); err2 == nil {
			return c2, nil
		}
	}
	if err == nil {
		h.logger.Info("created client for enrolment", "client", slug)
	}
	return c, err
}

// InitialAdminPassword is the generated password of the admin created by this start, or "" if
// the admin already existed or SAGE_ADMIN_PASSWORD gave it. Show it once; it is not kept.
func (h *Hub) InitialAdminPassword() string { return h.adminPassword }

// Handler serves the hub's HTTP API.
func (h *Hub) Handler() http.Handler { return h.handler }

// Inventory, Auth and Metrics give the composed parts to commands and tests.
func (h *Hub) Inventory() *inventory.Inventory { return h.inv }
func (h *Hub) Auth() *auth.Auth                { return h.auth }
func (h *Hub) Metrics() *metricstore.Store     { return h.metrics }

// Listen is the configured listen address.
func (h *Hub) Listen() string { return h.cfg.Listen }

// Run keeps the scrape targets in step with the inventory, the hosts' health figures fresh, and
// purges expired sessions until ctx ends. It returns nil when ctx is cancelled.
func (h *Hub) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); h.health.Run(ctx) }()
	defer wg.Wait()
	stopAlerting := h.runAlerting(ctx)
	defer stopAlerting()
	tick := time.NewTicker(targetsRefresh)
	defer tick.Stop()
	purge := time.NewTicker(time.Hour)
	defer purge.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-h.kick:
		case <-purge.C:
			if _, err := h.auth.PurgeSessions(ctx); err != nil && ctx.Err() == nil {
				h.logger.Warn("purging expired sessions failed", "err", err)
			}
			h.pruneChanges(ctx)
			continue
		}
		// Watermarks follow the inventory (a new host needs its series) and overrides written by
		// another hub on the same database.
		if err := h.alerts.RebuildWatermarks(ctx); err != nil && ctx.Err() == nil {
			h.logger.Warn("rebuilding watermarks failed", "err", err)
		}
		if err := h.refreshTargets(ctx); err != nil && ctx.Err() == nil {
			// The next tick or change retries; the scrape manager keeps the previous targets.
			h.logger.Warn("updating scrape targets from the inventory failed", "err", err)
		}
	}
}

// HostsChanged asks Run to rebuild the scrape targets now, after a change to hosts made outside
// the hub's own handlers (a command, the future REST API).
func (h *Hub) HostsChanged() {
	select {
	case h.kick <- struct{}{}:
	default: // a refresh is already due
	}
}

// Close stops scraping and closes the stores.
func (h *Hub) Close() error {
	h.closeOnce.Do(func() {
		var errs []error
		if h.metrics != nil {
			errs = append(errs, h.metrics.Close())
		}
		errs = append(errs, h.db.Close())
		h.closeErr = errors.Join(errs...)
	})
	return h.closeErr
}

var _ config.Validator = (*Config)(nil)

// LocalClient is the slug of the client `sage up` puts the machine it runs on in.
const LocalClient = "local"

// EnrolLocal registers the machine the hub runs on as an active host of the "local" client
// (created if missing), as `sage up` does at every start: re-enrolling refreshes the facts and
// the agent URL (its port may change between starts) of the same host, by machine id.
func (h *Hub) EnrolLocal(ctx context.Context, e inventory.Enrolment) (inventory.Host, error) {
	c, err := h.ensureClient(ctx, LocalClient)
	if err != nil {
		return inventory.Host{}, fmt.Errorf("hub: local client: %w", err)
	}
	e.AutoApprove = true
	host, created, err := h.inv.EnrolHost(ctx, c.ID, e)
	if err != nil {
		return inventory.Host{}, fmt.Errorf("hub: enrolling this machine: %w", err)
	}
	h.logger.Info("this machine is a host of the local client", "host", host.Name, "host_id", host.ID, "created", created, "agent_url", host.AgentURL)
	h.HostsChanged()
	return host, nil
}

// Serve serves the hub on ln and runs its background loops until ctx ends, then shuts the HTTP
// server down gracefully (10 s for requests in flight). It does not Close the hub.
func (h *Hub) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           h.handler,
		ReadHeaderTimeout: 10 * time.Second,
		// Query and page handlers have their own limits; this bounds a slow client's hold.
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(h.logger.Handler(), slog.LevelWarn),
	}
	loops, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = h.Run(loops) }()
	defer wg.Wait()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	h.logger.Info("hub started", "address", ln.Addr().String(), "data_dir", h.cfg.DataDir, "state", store.Redact(h.cfg.stateDSN()))
	select {
	case err := <-errc:
		return fmt.Errorf("hub: serving: %w", err)
	case <-ctx.Done():
	}
	h.logger.Info("hub shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("hub: shutdown: %w", err)
	}
	return nil
}

// CreateAPIToken makes an API token for a user directly in the state store named by cfg,
// without a running hub (SQLite in WAL mode and PostgreSQL both allow a running hub beside it):
// for provisioning Grafana or scripts, and for the first token before anyone has logged in.
// The secret is returned once; only its hash is stored.
func CreateAPIToken(ctx context.Context, cfg Config, username, name string, expiresAt time.Time, logger *slog.Logger) (string, auth.APIToken, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if fe := cfg.Validate(); len(fe) > 0 {
		return "", auth.APIToken{}, config.Invalid(fe...)
	}
	db, err := store.Open(ctx, cfg.stateDSN(), logger)
	if err != nil {
		return "", auth.APIToken{}, err
	}
	defer db.Close()
	a := auth.New(db)
	u, err := a.GetUserByName(ctx, username)
	if err != nil {
		return "", auth.APIToken{}, fmt.Errorf("user %q: %w", username, err)
	}
	return a.NewAPIToken(ctx, u.ID, name, expiresAt)
}
