package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/oncall"
	"github.com/serversage/sage/internal/store"
)

// Recipients: the local part tells the sink which system sent a mail.
const (
	rcptHub     = "l1"      // the hub's L1 engineer
	rcptFast    = "fast"    // Alertmanager, for the rule group evaluated every second
	rcptDefault = "default" // Alertmanager, for the rule group at Prometheus's default interval
	mailDomain  = "bench.invalid"
)

// The alerts: one in the hub's rules_dir, two in Prometheus's rule file (the same expression in
// a group evaluated every second and in one at the default interval).
const (
	alertHub     = "BenchBreach"
	alertFast    = "BenchBreachFast"
	alertDefault = "BenchBreachDefault"
)

// hubRules is the hub's rule: the watermark join every shipped rule uses, so the breach goes
// through the hub's per-host watermark series as a real one does; for: 0s.
const hubRules = `groups:
- name: bench
  rules:
  - alert: BenchBreach
    expr: bench_level > on(client, host) group_left() sage_watermark{alert="BenchBreach", scope="host"}
    for: 0s
    labels: {severity: critical, component: bench}
    annotations:
      watermark: "5"
      summary: "bench level {{ $value }} on {{ $labels.host }}"
`

const hubRunbook = `# BenchBreach

## What it means
The benchmark's synthetic level is above its watermark.

## How to confirm
Nothing to confirm: the benchmark set it.

## L1 action plan
1. Nothing; the benchmark ends the breach itself.

## When to escalate
Never.

## Notes for L2/L3
Used by bench/alert-latency.sh only.
`

// freeAddr returns a loopback address nothing listens on now. The port is closed again before
// the program that will use it starts; on a loopback-only machine the race is harmless.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// setupHub writes the hub's state (client, hosts scraped from the exporter, one L1 engineer with
// an email contact, an L1 rota, and a policy that mails L1 at once) straight into a fresh SQLite
// database, and the configuration and rules the hub starts with. It returns the config file.
func setupHub(ctx context.Context, dir, listen, exporterAddr, smtpAddr string, hosts []string, scrape time.Duration) (string, error) {
	rules := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rules, 0o750); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(rules, "bench.yml"), []byte(hubRules), 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(rules, alertHub+".md"), []byte(hubRunbook), 0o600); err != nil {
		return "", err
	}

	db, err := store.Open(ctx, filepath.Join(dir, "sage.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		return "", fmt.Errorf("hub state: %w", err)
	}
	defer db.Close()
	inv := inventory.New(db)
	client, err := inv.CreateClient(ctx, inventory.Client{Name: "Bench", Slug: "bench"})
	if err != nil {
		return "", fmt.Errorf("hub state: client: %w", err)
	}
	for _, h := range hosts {
		if _, err := inv.CreateHost(ctx, inventory.Host{ClientID: client.ID, Name: h, Status: inventory.StatusActive,
			AgentURL: "http://" + exporterAddr + "/hub/" + h + "/metrics"}); err != nil {
			return "", fmt.Errorf("hub state: host %s: %w", h, err)
		}
	}
	user, err := auth.New(db).CreateUser(ctx, auth.User{Username: "l1", Role: auth.RoleEngineer}, randomSecret())
	if err != nil {
		return "", fmt.Errorf("hub state: user: %w", err)
	}
	oc := oncall.New(db)
	if _, err := oc.SetContact(ctx, oncall.Contact{UserID: user.ID, Email: rcptHub + "@" + mailDomain, Channels: []string{"email"}}); err != nil {
		return "", fmt.Errorf("hub state: contact: %w", err)
	}
	if _, err := oc.CreateRota(ctx, oncall.Rota{Name: "L1", Tier: oncall.Tier("L1"), TimeZone: "UTC", Handover: "00:00",
		ShiftLength: oncall.Duration(24 * time.Hour), StartDate: time.Now().UTC().AddDate(0, 0, -7).Format(time.DateOnly),
		Members: []string{user.ID}}); err != nil {
		return "", fmt.Errorf("hub state: rota: %w", err)
	}
	// Being the only policy, it also keeps the hub from creating its default one at start.
	if _, err := oc.CreatePolicy(ctx, oncall.Policy{Name: "bench critical", ClientID: client.ID, Severity: "critical",
		Steps: []oncall.Step{{Kind: oncall.KindNotifyTier, Tier: "L1", Channels: []string{"email"}}}}); err != nil {
		return "", fmt.Errorf("hub state: policy: %w", err)
	}

	smtpHost, smtpPort, _ := net.SplitHostPort(smtpAddr)
	port, _ := strconv.Atoi(smtpPort)
	// evaluation_interval is left out on purpose: the hub's default (1s) is what is measured.
	cfg := fmt.Sprintf(`listen: %s
data_dir: %s
metrics:
  scrape_interval: %s
alerting:
  rules_dir: %s
  notify:
    smtp: {host: %s, port: %d, mode: none, from: sage@%s}
`, listen, dir, promDuration(scrape), rules, smtpHost, port, mailDomain)
	path := filepath.Join(dir, "hub.yml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// promDuration writes d in Prometheus's duration syntax (whole milliseconds).
func promDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// writePrometheus writes Prometheus's configuration and rules: the global section is left at
// Prometheus's defaults (evaluation_interval 1m), the scrape job sets the benchmark's interval,
// the fast group sets interval 1s, and the default group (when wanted) sets nothing.
func writePrometheus(dir, amAddr, exporterAddr string, hosts []string, scrape time.Duration, withDefault bool) (string, error) {
	var rules strings.Builder
	fmt.Fprintf(&rules, `groups:
- name: fast
  interval: 1s
  rules:
  - alert: %s
    expr: bench_level > 5
    for: 0s
    labels: {severity: critical}
`, alertFast)
	if withDefault {
		fmt.Fprintf(&rules, `- name: default
  rules:
  - alert: %s
    expr: bench_level > 5
    for: 0s
    labels: {severity: critical}
`, alertDefault)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), []byte(rules.String()), 0o600); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# global: Prometheus's defaults (scrape_interval 1m, evaluation_interval 1m)
rule_files: [rules.yml]
alerting:
  alertmanagers:
  - static_configs:
    - targets: ["%s"]
scrape_configs:
- job_name: bench
  scrape_interval: %s
  scrape_timeout: %s
  static_configs:
`, amAddr, promDuration(scrape), promDuration(scrape))
	for _, h := range hosts {
		fmt.Fprintf(&b, "  - targets: [\"%s\"]\n    labels: {client: bench, host: %s, __metrics_path__: /prom/%s/metrics}\n", exporterAddr, h, h)
	}
	path := filepath.Join(dir, "prometheus.yml")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

// writeAlertmanager writes Alertmanager's configuration: grouping as the hub groups incidents
// (client, host, alertname) with Alertmanager's default timers (group_wait 30s, group_interval 5m,
// repeat_interval 4h, none of them set here), one email receiver per rule group, all to the sink.
func writeAlertmanager(dir, smtpAddr string) (string, error) {
	recv := func(name, to string) string {
		return fmt.Sprintf(`- name: %s
  email_configs:
  - to: %s@%s
    from: alertmanager@%s
    smarthost: %s
    require_tls: false
    headers: {Subject: '{{ .Status }} {{ .CommonLabels.host }} {{ .CommonLabels.alertname }}'}
`, name, to, mailDomain, mailDomain, smtpAddr)
	}
	cfg := fmt.Sprintf(`route:
  receiver: fast
  group_by: [client, host, alertname]
  routes:
  - matchers: ['alertname="%s"']
    receiver: default
receivers:
%s%s`, alertDefault, recv("fast", rcptFast), recv("default", rcptDefault))
	path := filepath.Join(dir, "alertmanager.yml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}
