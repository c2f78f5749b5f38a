package hub

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/serversage/sage/internal/alert"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/notify"
	"github.com/serversage/sage/internal/oncall"
	"github.com/serversage/sage/internal/rulepack"
)

// AlertingConfig is the alerting section of the hub's configuration.
type AlertingConfig struct {
	// ExternalURL is the hub's address as people reach it: the base of runbook, incident and
	// acknowledgement links in notifications. Default http://<listen>.
	ExternalURL string `yaml:"external_url"`
	// EvaluationInterval is how often rules are evaluated; default 1s.
	EvaluationInterval string `yaml:"evaluation_interval"`
	// RulesDir holds the operator's own Prometheus rule files (*.yml, *.yaml) and runbooks
	// (<Alert>.md), loaded beside the shipped pack.
	RulesDir string `yaml:"rules_dir"`
	// Notify configures the channels: smtp, sms, webhooks.
	Notify notify.Config `yaml:"notify"`
	// GroupBy are the labels whose values make one incident; default client, host, alertname
	// (one incident per alert and host). [client, alertname] makes one incident per alert and
	// client, as an Alertmanager route's group_by would.
	GroupBy []string `yaml:"group_by"`
	// RetryMin and RetryMax bound the backoff of failed sends (defaults 5s, 5m).
	RetryMin string `yaml:"retry_min"`
	RetryMax string `yaml:"retry_max"`

	interval, retryMin, retryMax time.Duration
	externalURL                  *url.URL
}

func (a *AlertingConfig) validate(listen string) []config.FieldError {
	var fe []config.FieldError
	a.interval = parseDuration(&fe, "alerting.evaluation_interval", a.EvaluationInterval, alert.DefaultInterval)
	a.retryMin = parseDuration(&fe, "alerting.retry_min", a.RetryMin, 5*time.Second)
	a.retryMax = parseDuration(&fe, "alerting.retry_max", a.RetryMax, 5*time.Minute)
	raw := strings.TrimSpace(a.ExternalURL)
	if raw == "" {
		raw = "http://" + listen
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fe = append(fe, config.Errorf("alerting.external_url", "%q is not an http(s) URL", a.ExternalURL))
	} else {
		a.externalURL = u
	}
	for i, l := range a.GroupBy {
		if !model.LegacyValidation.IsValidLabelName(l) {
			fe = append(fe, config.Errorf(fmt.Sprintf("alerting.group_by[%d]", i), "%q is not a label name", l))
		}
	}
	for _, f := range a.Notify.Validate() {
		f.Field = "alerting.notify." + f.Field
		fe = append(fe, f)
	}
	return fe
}

// loadRules reads the shipped pack plus the operator's rule files and runbooks, validated
// together (a duplicate alert name across them is an error, not a silent replacement).
func loadRules(dir string) (*rulepack.Pack, error) {
	files, runbooks := rulepack.Shipped()
	if dir != "" {
		if _, err := rulepack.ReadDir(dir, files, runbooks); err != nil {
			return nil, fmt.Errorf("alerting.rules_dir: %w", err)
		}
	}
	return rulepack.Parse(files, runbooks)
}

// ruleSet converts a pack for the engine.
func ruleSet(p *rulepack.Pack) alert.RuleSet {
	rs := alert.RuleSet{
		Files:       p.Files(),
		Specs:       map[string]alert.WatermarkSpec{},
		ActionPlans: map[string][]string{},
		Alerts:      map[string]string{},
	}
	for _, r := range p.Rules() {
		rs.Alerts[r.Name] = r.Severity
		if r.Watermark != nil {
			rs.Specs[r.Name] = alert.WatermarkSpec{Alert: r.Name, Default: r.Watermark.Default, Unit: r.Watermark.Unit,
				Per: r.Watermark.Per, Direction: r.Watermark.Direction, Severity: r.Severity}
		}
		if len(r.Runbook.ActionPlan) > 0 {
			rs.ActionPlans[r.Name] = r.Runbook.ActionPlan
		}
	}
	return rs
}

// initAlerting builds the alerting engine, the on-call store and the notification dispatcher.
func (h *Hub) initAlerting(ctx context.Context) error {
	a := &h.cfg.Alerting
	pack, err := loadRules(a.RulesDir)
	if err != nil {
		return fmt.Errorf("hub: rules: %w", err)
	}
	h.pack = pack
	h.alerts, err = alert.New(alert.Options{
		DB:          h.db,
		Engine:      h.metrics.Engine(),
		Queryable:   h.metrics.Queryable(),
		Appendable:  h.metrics.DB(),
		Parser:      h.metrics.Parser(),
		Interval:    a.interval,
		GroupBy:     a.GroupBy,
		ExternalURL: a.externalURL,
		Registerer:  h.registry,
		Logger:      h.logger.With("component", "alert"),
	})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if err := h.alerts.SetRules(ctx, ruleSet(pack)); err != nil {
		return fmt.Errorf("hub: rules: %w", err)
	}
	h.oncall = oncall.New(h.db)
	if created, err := h.oncall.EnsureDefaults(ctx); err != nil {
		return fmt.Errorf("hub: default escalation policy: %w", err)
	} else if created {
		h.logger.Info("created the default escalation policy", "policy", oncall.DefaultPolicyName)
	}
	senders, err := notify.NewSenders(a.Notify)
	if err != nil {
		return fmt.Errorf("hub: alerting.notify: %w", err)
	}
	h.dispatcher = notify.NewDispatcher(h.db, senders, notify.Options{MinBackoff: a.retryMin, MaxBackoff: a.retryMax}, h.logger.With("component", "notify"))
	if h.registry != nil {
		_ = h.registry.Register(h.dispatcher)
	}
	var hooks []string
	for _, w := range a.Notify.Webhooks {
		hooks = append(hooks, w.Name)
	}
	h.alerts.SetEscalation(alert.Escalation{OnCall: h.oncall, Dispatcher: h.dispatcher, Webhooks: hooks})
	return nil
}

// runAlerting evaluates rules, escalates and delivers until ctx ends.
func (h *Hub) runAlerting(ctx context.Context) func() {
	if err := h.alerts.Start(ctx); err != nil {
		h.logger.Error("starting rule evaluation", "err", err)
	}
	done := make(chan struct{}, 2)
	go func() { h.alerts.RunEscalation(ctx); done <- struct{}{} }()
	go func() { _ = h.dispatcher.Run(ctx); done <- struct{}{} }()
	return func() {
		h.alerts.Stop()
		<-done
		<-done
	}
}

// Alerts is the alerting engine, for commands and tests.
func (h *Hub) Alerts() *alert.Engine { return h.alerts }

// OnCall is the on-call store, for commands and tests.
func (h *Hub) OnCall() *oncall.Store { return h.oncall }

// Pack is the active rule pack.
func (h *Hub) Pack() *rulepack.Pack { return h.pack }

var _ prometheus.Collector = (*notify.Dispatcher)(nil)
