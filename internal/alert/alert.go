// Package alert turns metrics into incidents: it runs Prometheus's own rules manager over the hub's
// embedded store, serves the per-scope watermarks those rules compare against, keeps incidents with
// their alerts and timeline, silences and maintenance windows, acknowledgement, and drives each open
// incident through its escalation policy.
//
// Rules are in the Prometheus rule-file format and evaluated by github.com/prometheus/prometheus/rules,
// so their semantics (for, keep_firing_for, templates, ALERTS series, restoring `for` state after a
// restart) are Prometheus's, not a re-implementation. Alerts also arrive from an existing
// Alertmanager through its webhook; both paths meet in Receive.
package alert

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"

	"github.com/serversage/sage/internal/store"
)

// DefaultInterval is how often rules are evaluated. Prometheus's default is 1 m; at 1 s a breach is
// seen within a second of the sample arriving, and the rule set is small and per-host by
// construction (one rule serves every host), so the cost stays small (docs/benchmarks.md).
const DefaultInterval = time.Second

// RuleSet is what the engine evaluates: Prometheus rule files by name, and what it needs to know
// of each alert beyond the files (its watermark, its runbook's action plan).
type RuleSet struct {
	Files       map[string][]byte
	Specs       map[string]WatermarkSpec // alerts that have a watermark
	ActionPlans map[string][]string      // the runbook's L1 steps, by alert
	Alerts      map[string]string        // every alert name -> severity
}

// Options configures an Engine.
type Options struct {
	DB          *store.DB
	Engine      promql.QueryEngine
	Queryable   storage.Queryable  // the TSDB
	Appendable  storage.Appendable // where ALERTS and ALERTS_FOR_STATE go (restores `for` after a restart)
	Parser      parser.Parser
	Interval    time.Duration
	ExternalURL *url.URL // the hub's public URL: runbook, incident and acknowledgement links
	// GroupBy are the labels that make one incident; default client, host, alertname.
	GroupBy []string
	// RefireWindow: an alert that fires again this soon after its incident resolved re-opens it
	// rather than open a new one (flapping stays one incident). Default 10 m.
	RefireWindow time.Duration
	Registerer   prometheus.Registerer
	Logger       *slog.Logger
	Now          func() time.Time
}

// Engine is the alerting engine of one hub.
type Engine struct {
	opts   Options
	db     *store.DB
	logger *slog.Logger
	now    func() time.Time
	wm     *Watermarks
	merged storage.Queryable // the query API's: every watermark series
	rulesQ storage.Queryable // the rules': watermarks of hosts with series only (MergeForRules)

	inventoryRefs inventoryRefs

	mu    sync.RWMutex
	rules RuleSet

	mgr  *rules.Manager
	esc  *Escalation
	wake chan struct{} // escalation: something changed, look now

	onIncident func() // called after an incident opens, changes or resolves (the UI's refresh)
}

// New builds an engine; Start loads rules and begins evaluating.
func New(o Options) (*Engine, error) {
	if o.DB == nil || o.Engine == nil || o.Queryable == nil {
		return nil, fmt.Errorf("alert: DB, Engine and Queryable are required")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if len(o.GroupBy) == 0 {
		o.GroupBy = []string{"client", "host", "alertname"}
	}
	if o.RefireWindow == 0 {
		o.RefireWindow = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ExternalURL == nil {
		o.ExternalURL = &url.URL{Scheme: "http", Host: "localhost"}
	}
	e := &Engine{
		opts:   o,
		db:     o.DB,
		logger: o.Logger,
		now:    func() time.Time { return o.Now().UTC() },
		wm:     NewWatermarks(),
		wake:   make(chan struct{}, 1),
	}
	e.merged = e.wm.Merge(o.Queryable)
	e.rulesQ = e.wm.MergeForRules(o.Queryable)
	return e, nil
}

// Queryable is the TSDB with the sage_watermark series merged in: what rules see, and what the
// query API should serve so that a chart can draw a host's watermark beside its metric.
func (e *Engine) Queryable() storage.Queryable { return e.merged }

// Watermarks is the materialised watermark set.
func (e *Engine) Watermarks() *Watermarks { return e.wm }

// Spec returns an alert's watermark specification.
func (e *Engine) Spec(alert string) (WatermarkSpec, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	s, ok := e.rules.Specs[alert]
	return s, ok
}

// Specs returns every watermark specification.
func (e *Engine) Specs() map[string]WatermarkSpec {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return maps.Clone(e.rules.Specs)
}

func (e *Engine) ruleExists(alert string) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	_, ok := e.rules.Alerts[alert]
	return ok
}

// ActionPlan returns the L1 steps of an alert's runbook.
func (e *Engine) ActionPlan(alert string) []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.rules.ActionPlans[alert]
}

// Rules returns the active rule set.
func (e *Engine) Rules() RuleSet {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.rules
}

// OnIncident sets a function called after any incident changes.
func (e *Engine) OnIncident(f func()) { e.onIncident = f }

// memLoader hands the rules manager rule files from memory, by name.
type memLoader struct {
	files  map[string][]byte
	parser parser.Parser
}

func (l memLoader) Load(identifier string, ignoreUnknownFields bool, scheme model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	content, ok := l.files[identifier]
	if !ok {
		return nil, []error{fmt.Errorf("%s: no such rule file", identifier)}
	}
	rgs, errs := rulefmt.Parse(content, ignoreUnknownFields, scheme, l.parser, slog.New(slog.DiscardHandler))
	for i, err := range errs {
		errs[i] = fmt.Errorf("%s: %w", identifier, err)
	}
	return rgs, errs
}

func (l memLoader) Parse(query string) (parser.Expr, error) { return l.parser.ParseExpr(query) }

func (e *Engine) parser() parser.Parser {
	if e.opts.Parser != nil {
		return e.opts.Parser
	}
	return parser.NewParser(parser.Options{})
}

// CheckRules validates rule files exactly as the rules manager will load them, without touching
// the running set. Errors name the file and carry Prometheus's message (with line, and the PromQL
// parser's own words for a bad expression).
func (e *Engine) CheckRules(files map[string][]byte) []error {
	l := memLoader{files: files, parser: e.parser()}
	var errs []error
	for _, name := range sortedKeys(files) {
		_, es := l.Load(name, false, model.UTF8Validation)
		errs = append(errs, es...)
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// SetRules validates and activates a rule set. An invalid set is refused with every error and the
// previous set stays active, as Prometheus does on a bad reload. Alert state of unchanged rules
// carries over (the manager copies it group by group).
func (e *Engine) SetRules(ctx context.Context, rs RuleSet) error {
	if errs := e.CheckRules(rs.Files); len(errs) > 0 {
		return &RulesError{Errs: errs}
	}
	e.mu.Lock()
	prev := e.rules
	e.rules = rs
	e.mu.Unlock()
	if e.mgr != nil {
		if err := e.mgr.Update(e.opts.Interval, sortedKeys(rs.Files), labels.EmptyLabels(), e.opts.ExternalURL.String(), nil); err != nil {
			// Checked above, so this is not the files; the manager restored its previous groups.
			e.mu.Lock()
			e.rules = prev
			e.mu.Unlock()
			return fmt.Errorf("alert: activating rules: %w", err)
		}
	}
	return e.RebuildWatermarks(ctx)
}

// RulesError lists why a rule set was refused.
type RulesError struct{ Errs []error }

func (r *RulesError) Error() string {
	s := fmt.Sprintf("%d error(s) in the rules", len(r.Errs))
	for _, err := range r.Errs {
		s += "; " + err.Error()
	}
	return s
}

// Start creates the rules manager over the current rule set and starts evaluating; it returns at
// once. The manager stops when ctx ends (or Stop is called).
func (e *Engine) Start(ctx context.Context) error {
	rs := e.Rules()
	e.mgr = e.newManager(ctx)
	if err := e.mgr.Update(e.opts.Interval, sortedKeys(rs.Files), labels.EmptyLabels(), e.opts.ExternalURL.String(), nil); err != nil {
		return fmt.Errorf("alert: loading rules: %w", err)
	}
	go e.mgr.Run()
	return nil
}

// liveLoader reads the engine's current rule files at each load, so that SetRules only has to call
// the manager's Update.
type liveLoader struct{ e *Engine }

func (l liveLoader) Load(identifier string, ignoreUnknownFields bool, scheme model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	return memLoader{files: l.e.Rules().Files, parser: l.e.parser()}.Load(identifier, ignoreUnknownFields, scheme)
}

func (l liveLoader) Parse(query string) (parser.Expr, error) { return l.e.parser().ParseExpr(query) }

func (e *Engine) newManager(ctx context.Context) *rules.Manager {
	return rules.NewManager(&rules.ManagerOptions{
		ExternalURL:            e.opts.ExternalURL,
		QueryFunc:              rules.EngineQueryFunc(e.opts.Engine, e.rulesQ),
		NotifyFunc:             e.notifyFunc,
		Context:                ctx,
		Appendable:             e.opts.Appendable,
		Queryable:              e.opts.Queryable,
		Logger:                 e.logger.With("component", "rules"),
		Registerer:             e.opts.Registerer,
		OutageTolerance:        time.Hour,
		ForGracePeriod:         10 * time.Minute,
		ResendDelay:            time.Minute,
		GroupLoader:            liveLoader{e},
		Parser:                 e.parser(),
		DefaultRuleQueryOffset: func() time.Duration { return 0 },
	})
}

// Stop stops rule evaluation.
func (e *Engine) Stop() {
	if e.mgr != nil {
		e.mgr.Stop()
	}
}

// Manager is the running rules manager (its groups and rules feed the UI and /api/v1/rules).
func (e *Engine) Manager() *rules.Manager { return e.mgr }

// notifyFunc receives the rules manager's alerts to send: new firing ones at once, firing ones
// again every ResendDelay, resolved ones once.
func (e *Engine) notifyFunc(ctx context.Context, _ string, alerts ...*rules.Alert) {
	in := make([]Alert, 0, len(alerts))
	for _, a := range alerts {
		al := Alert{
			Labels:      a.Labels.Map(),
			Annotations: a.Annotations.Map(),
			Value:       formatValue(a.Value),
			StartsAt:    a.FiredAt,
			Fingerprint: fmt.Sprintf("%016x", a.Labels.Hash()),
		}
		if !a.ResolvedAt.IsZero() {
			al.Resolved, al.EndsAt = true, a.ResolvedAt
		}
		in = append(in, al)
	}
	if err := e.Receive(context.WithoutCancel(ctx), SourceRules, in); err != nil {
		e.logger.Error("recording alerts", "alerts", len(in), "err", err)
	}
}
