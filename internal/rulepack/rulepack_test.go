package rulepack

import (
	"context"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"

	"github.com/serversage/sage/internal/agent"
	"github.com/serversage/sage/internal/collector"
	"github.com/serversage/sage/internal/testenv"
)

func loadPack(t *testing.T) *Pack {
	t.Helper()
	p, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestShippedPackConventions checks what every shipped alert promises the hub, the notifications
// and the manual: a severity, a real component, the annotations, a runbook with steps.
func TestShippedPackConventions(t *testing.T) {
	p := loadPack(t)
	if len(p.Rules()) < 30 {
		t.Fatalf("only %d rules in the shipped pack", len(p.Rules()))
	}
	// "probes": the agent's probe scheduler (internal/probe), which is no collector; "changes": its
	// change monitor and file integrity (internal/changes, internal/fim), nor is that.
	components := append(collector.Names(), "agent", "probes", "changes")
	for _, r := range p.Rules() {
		t.Run(r.Name, func(t *testing.T) {
			if r.Labels["component"] == "" || !slices.Contains(components, r.Component) {
				t.Errorf("component label %q: want one of %v", r.Labels["component"], components)
			}
			if !slices.Contains(Severities, r.Severity) {
				t.Errorf("severity %q", r.Severity)
			}
			for _, a := range []string{"summary", "description", "watches"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("annotation %s is missing", a)
				}
			}
			if want := "{{ $externalURL }}/runbooks/" + r.Name; r.Annotations["runbook_url"] != want {
				t.Errorf("runbook_url %q, want %q", r.Annotations["runbook_url"], want)
			}
			if len(r.Runbook.ActionPlan) < 3 {
				t.Errorf("the action plan has %d steps; an L1 engineer needs at least acknowledge, check, record", len(r.Runbook.ActionPlan))
			}
			if !strings.Contains(strings.ToLower(r.Runbook.ActionPlan[0]), "acknowledge") {
				t.Errorf("the first step does not acknowledge the alert: %q", r.Runbook.ActionPlan[0])
			}
			if !strings.Contains(r.Runbook.Escalate, "L2") {
				t.Errorf("the escalation section names no L2")
			}
			h, err := p.RenderRunbookHTML(r.Name)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(h), "raw HTML omitted") {
				t.Errorf("the runbook has text that Markdown takes for HTML (a <placeholder> outside backticks?)")
			}
			if r.Watermark != nil && r.Watermark.Direction == "" {
				t.Errorf("watermark without direction")
			}
		})
	}
	files := p.Files()
	for name, b := range files {
		if strings.Contains(string(b), "record:") {
			t.Errorf("%s has a recording rule: evaluated every second, it would write a series per host per second", name)
		}
	}
}

// TestPromtoolCheckRules runs Prometheus's own checker on the files exactly as Files gives them.
func TestPromtoolCheckRules(t *testing.T) {
	promtool := testenv.LookPath(t, "promtool", "prometheus")
	dir := t.TempDir()
	var paths []string
	for name, b := range loadPack(t).Files() {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)
	out, err := exec.Command(promtool, append([]string{"check", "rules"}, paths...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if got := strings.Count(string(out), "SUCCESS"); got != len(paths) {
		t.Errorf("promtool reported %d successes for %d files:\n%s", got, len(paths), out)
	}
}

// TestPromtoolTestRules runs the unit tests in tests/, which feed sage_watermark series as the
// hub serves them and check the override joins.
func TestPromtoolTestRules(t *testing.T) {
	promtool := testenv.LookPath(t, "promtool", "prometheus")
	tests, err := filepath.Glob("tests/*.yml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no promtool tests: %v", err)
	}
	out, err := exec.Command(promtool, append([]string{"test", "rules"}, tests...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
}

// exemptions are the families the agent exposes that no rule watches, each with why. A pattern
// is anchored; one that covers a family kind (node_memory_.+) may also match families that rules
// do watch, an exact name may not.
var exemptions = []struct{ pattern, reason string }{
	{"node_boot_time_seconds", "the same event as sage_host_reboots_total (HostRebooted), which also counts reboots while the agent was down"},
	{"node_context_switches_total", "drill-down context for CPU and load alerts; no meaningful threshold across hosts"},
	{"node_forks_total", "drill-down context (fork rate); process exhaustion is TasksNearLimit"},
	{"node_intr_total", "drill-down context for CPU alerts; interrupt load shows as CPU busy time"},
	{"node_procs_running", "runnable tasks are what the load average (LoadPerCoreHigh) averages"},
	{"node_cpu_guest_seconds_total", "guest time is also counted in node_cpu_seconds_total's user/nice, which CPUBusy watches"},
	{"node_load1", "too jumpy to alert on; LoadPerCoreHigh uses the 5-minute average"},
	{"node_load15", "reacts too late; LoadPerCoreHigh uses the 5-minute average"},
	{"node_memory_.+", "the other /proc/meminfo fields (which vary by kernel) are drill-down context: MemAvailable already accounts for caches, slab and buffers"},
	{"node_disk_info", "inventory (model, serial, rotational); the change monitor's, not an alert's"},
	{"node_disk_io_now", "an instantaneous queue depth; DiskIOSaturated uses the time-weighted queue, which is averaged"},
	{"node_disk_io_time_seconds_total", "busy time reaches 100% on SSD, NVMe and RAID long before saturation; DiskIOSaturated uses the queue"},
	{"node_disk_reads_merged_total", "scheduler merge counts: context for latency analysis by L2"},
	{"node_disk_writes_merged_total", "scheduler merge counts: context for latency analysis by L2"},
	{"node_disk_discard.*", "TRIM/discard activity: context, no fault signal"},
	{"node_disk_flush_requests.*", "cache flush activity: context for write latency, which DiskLatencyHigh watches"},
	{"node_filesystem_free_bytes", "includes root-reserved blocks; the space alerts use avail_bytes, what users can write"},
	{"node_filesystem_mount_info", "mount inventory for the change monitor"},
	{"node_network_carrier", "link carrier; NetworkInterfaceDown uses operstate (node_network_up), which includes it"},
	{"node_network_mtu_bytes", "configuration, tracked by the change monitor"},
	{"node_network_speed_bytes", "link speed: context for the throughput alerts; absent on virtual NICs, so their watermarks are absolute"},
	{"node_network_transmit_queue_length", "configuration (txqueuelen)"},
	{"node_network_(?:receive|transmit)_(?:compressed|multicast|fifo|frame|colls|carrier)_total", "breakdowns of the error counters NetworkErrors watches, or traffic kinds with no fault meaning"},
	{"sage_processes_pids", "processes alone; the kernel limits count threads, which TasksNearLimit watches"},
	{"sage_process_group_up", "the agent's own verdict against its local min_count; ProcessGroupDown compares the process count with the hub's watermark, which can be overridden per scope"},
	{"sage_process_group_threads", "thread exhaustion is watched host-wide by TasksNearLimit"},
	{"sage_process_group_resident_memory_bytes", "sums RSS over the group's processes, counting shared memory once per process (PostgreSQL's shared buffers, prefork servers), so it overstates use; host memory is MemoryUsageHigh's"},
	{"sage_listeners", "the count of listening ports: context; the change monitor records the list"},
	{"sage_listener_process_info", "which process holds a configured port: context for ListenerDown"},
	{"sage_host_boot_id_info", "context for HostRebooted (the boot id)"},
	{"sage_host_last_reboot_detected_timestamp_seconds", "context for HostRebooted (when)"},
	{"sage_kernel_log_last_match_timestamp_seconds", "context for the kernel log alerts (when the last match was read)"},
	{"sage_kernel_log_records_total", "volume of the kernel log: context"},
	{"sage_kernel_log_lost_records_total", "a diagnostic of the agent's reader; a flood of kernel messages shows in the pattern alerts"},
	{"sage_collector_duration_seconds", "a collector that misses its deadline shows as sage_collector_success 0 (CollectorFailing); durations are drill-down for AgentScrapeSlow"},
	{"sage_build_info", "version inventory"},
	{"sage_agent_config_last_reload_success_timestamp_seconds", "context for AgentConfigReloadFailed (when the last good reload was)"},
	{"process_cpu_seconds_total", "the agent's own CPU; a busy agent shows as slow scrapes (AgentScrapeSlow)"},
	{"process_open_fds", "the agent's own descriptors: its procfs readers, constant by design"},
	{"process_start_time_seconds", "agent restarts show as scrape gaps (AgentDown) and in the agent's log"},
	{"promhttp_metric_handler_requests_in_flight", "instantaneous; rejected scrapes are counted by promhttp_metric_handler_requests_total (AgentScrapeErrors)"},
	{"sage_probe_scheduler_(?:targets|concurrency)", "the probe scheduler's configuration: context for the probe alerts"},
	{"sage_probe_scheduler_probes_in_flight", "instantaneous; a scheduler that falls behind counts skipped runs (sage_probe_skipped_total)"},
	{"sage_changes_grouped_files_total", "file changes a package transaction explains: they are in its package event on the timeline, no fault"},
	{"sage_changes_journal_bytes", "the journal's size, bounded by changes.journal_max_bytes: context for ChangeJournalDropping"},
	{"sage_changes_last_ship_timestamp_seconds", "context for ChangeShippingFailing (when events last reached the hub)"},
	{"sage_fim_(?:files|watched_directories|files_hashed_total|scans_total|last_scan_duration_seconds)", "file integrity's size and work: context for FIMScanStale"},
	{"sage_fim_watch_limit_reached", "directories beyond the watch limit are still covered by the hourly scans, which FIMScanStale watches; context for L2"},
	{"sage_fim_scan_errors_total", "mostly files that vanished between listing and hashing, normal churn; the agent logs the paths"},
	{"sage_fim_events_total", "file events before package grouping; the unexplained ones are sage_changes_total{kind=\"files\"} (UnexpectedFileChange)"},
	{"go_.+", "the agent's Go runtime internals: for ServerSage's developers, not for the client's host"},
}

// exemption returns the reason a family needs no rule, and whether it is exempt by its exact name.
func exemption(name string) (reason string, exempt, exact bool) {
	for _, e := range exemptions {
		if regexp.MustCompile("^(?:" + e.pattern + ")$").MatchString(name) {
			return e.reason, true, e.pattern == regexp.QuoteMeta(e.pattern)
		}
	}
	return "", false, false
}

// referenced returns the metric names every rule of the pack selects.
func referenced(t *testing.T, p *Pack) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, r := range p.Rules() {
		expr, err := exprParser.ParseExpr(r.Expr)
		if err != nil {
			t.Fatal(err)
		}
		parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
			if vs, ok := node.(*parser.VectorSelector); ok {
				name := vs.Name
				if name == "" {
					name, _ = equalMatcher(vs, model.MetricNameLabel)
				}
				if !slices.Contains(out[name], r.Name) {
					out[name] = append(out[name], r.Name)
				}
			}
			return nil
		})
	}
	return out
}

// scrapeAgent runs a real agent in the test process, with every default collector on this
// machine's /proc and /sys, and parses one scrape of its /metrics.
func scrapeAgent(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	a, err := agent.New(agent.Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	tp := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := tp.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// TestEveryFamilyHasARule fails when the agent exposes a family that no rule selects and that is
// not exempt with a reason, so that every new collector brings its alerts.
func TestEveryFamilyHasARule(t *testing.T) {
	p := loadPack(t)
	refs := referenced(t, p)
	fams := scrapeAgent(t)
	if len(fams) < 50 {
		t.Fatalf("only %d families scraped", len(fams))
	}
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		reason, exempt, exact := exemption(name)
		switch {
		case len(refs[name]) > 0 && exact:
			t.Errorf("%s is exempt (%s) but rules %v watch it: drop the exemption", name, reason, refs[name])
		case len(refs[name]) == 0 && !exempt:
			t.Errorf("no rule watches %s, and it is not in the exemption list", name)
		}
	}
	// Every family a rule selects must be one the agent can expose (or the hub's own series).
	hub := []string{"up", "scrape_duration_seconds", WatermarkMetric}
	for name, rules := range refs {
		if _, ok := fams[name]; !ok && !slices.Contains(hub, name) && !mayBeAbsent(name) {
			t.Errorf("rules %v select %s, which the agent did not expose on this machine", rules, name)
		}
	}
}

// mayBeAbsent lists families that depend on the host or the configuration: absent here proves
// nothing.
func mayBeAbsent(name string) bool {
	return strings.HasPrefix(name, "sage_kernel_log_") || // needs /dev/kmsg (root)
		strings.HasPrefix(name, "sage_listener_") || strings.HasPrefix(name, "sage_process_group_") ||
		strings.HasPrefix(name, "node_disk_") || strings.HasPrefix(name, "node_network_") ||
		// per-target probe families exist only for configured targets or a mesh; the default
		// agent has neither (only sage_probe_scheduler_*, which are always there)
		strings.HasPrefix(name, "sage_probe_") ||
		// the change monitor's: the journal must be open (the agent opens it when it runs), a
		// snapshot or a scan have run, the agent be enrolled (ship), a source have failed, or file
		// integrity be on (grouping, sage_fim_*)
		name == "sage_changes_journal_pending_events" || name == "sage_changes_journal_dropped_events_total" ||
		name == "sage_changes_last_snapshot_timestamp_seconds" || name == "sage_changes_source_errors_total" ||
		name == "sage_changes_tampered_files_total" || name == "sage_changes_ship_errors_total" ||
		strings.HasPrefix(name, "sage_fim_")
}

// Target labels the hub puts on every scraped series.
var target = labels.FromStrings("client", "acme", "site", "london", "host", "h1", "job", "sage-agent", "instance", "h1:10730")

// TestEveryWatermarkGatesItsRule evaluates every threshold rule's expression with Prometheus's
// engine against this machine's real series (a counter rising 1/s, gauges steady, free space
// falling) and the sage_watermark series the hub serves: with the host watermark on the firing
// side of every value the rule returns series, with it on the other side none; and for per-unit
// rules, a unit override beats the host's watermark in both directions.
func TestEveryWatermarkGatesItsRule(t *testing.T) {
	p := loadPack(t)
	fams := scrapeAgent(t)
	// Series: name{labels + target} values, in promqltest's load syntax. 31 samples a minute apart.
	var data strings.Builder
	add := func(name string, ls labels.Labels, values string) {
		b := labels.NewBuilder(ls)
		b.Set(model.MetricNameLabel, name)
		target.Range(func(l labels.Label) { b.Set(l.Name, l.Value) })
		fmt.Fprintf(&data, "  %s %s\n", b.Labels().String(), values)
	}
	for name, f := range fams {
		for _, m := range f.Metric {
			lb := labels.NewScratchBuilder(len(m.Label))
			for _, lp := range m.Label {
				lb.Add(lp.GetName(), lp.GetValue())
			}
			lb.Sort()
			var v float64
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			default:
				v = m.GetUntyped().GetValue()
			}
			// A host without swap would leave SwapUsageHigh nothing to evaluate: give it 1 GB, half used.
			if v == 0 && name == "node_memory_SwapTotal_bytes" {
				v = 1e9
			} else if v == 0 && name == "node_memory_SwapFree_bytes" {
				v = 5e8
			}
			vs := fmt.Sprintf("%gx30", v)
			switch {
			case f.GetType() == dto.MetricType_COUNTER:
				vs = fmt.Sprintf("%g+60x30", v)
			case name == "node_filesystem_avail_bytes":
				vs = fmt.Sprintf("%g-1000000x30", v+1e9)
			}
			add(name, lb.Labels(), vs)
		}
	}
	add("up", labels.EmptyLabels(), "1x30")
	add("scrape_duration_seconds", labels.EmptyLabels(), "0.01x30")

	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1e7)
	evalAt := time.Unix(0, 0).Add(30 * time.Minute)
	for _, r := range p.Rules() {
		if r.Watermark == nil {
			continue
		}
		r := r
		t.Run(r.Name, func(t *testing.T) {
			// fire: a watermark every value crosses; hold: one no value crosses.
			fire, hold := -1e15, 1e15
			if r.Watermark.Direction == Below {
				fire, hold = hold, fire
			}
			wm := func(scope string, v float64, unit ...string) string {
				ls := []string{"alert", r.Name, "scope", scope, "client", "acme", "site", "london", "host", "h1"}
				ls = append(ls, unit...)
				return fmt.Sprintf("  %s %gx30\n", labels.FromStrings(append(ls, model.MetricNameLabel, WatermarkMetric)...).String(), v)
			}
			run := func(t *testing.T, watermarks string) promql.Vector {
				t.Helper()
				st := promqltest.LoadedStorage(t, "load 1m\n"+data.String()+watermarks)
				q, err := engine.NewInstantQuery(context.Background(), st, nil, r.Expr, evalAt)
				if err != nil {
					t.Fatal(err)
				}
				res := q.Exec(context.Background())
				if res.Err != nil {
					t.Fatalf("evaluating: %v", res.Err)
				}
				v, err := res.Vector()
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			fired := run(t, wm(HostScope, fire))
			if len(fired) == 0 {
				if mayBeAbsent(firstMetric(t, r.Expr)) {
					t.Skipf("this machine may have no series %s selects", firstMetric(t, r.Expr))
				}
				t.Fatalf("with the host watermark at %g nothing fires", fire)
			}
			for _, s := range fired {
				if s.F == fire || math.IsNaN(s.F) {
					t.Errorf("%s: value %g is the watermark's, not the metric's", s.Metric, s.F)
				}
				for _, l := range []string{"client", "host"} {
					if s.Metric.Get(l) == "" {
						t.Errorf("%s lost the %s label", s.Metric, l)
					}
				}
			}
			if held := run(t, wm(HostScope, hold)); len(held) != 0 {
				t.Fatalf("with the host watermark at %g it still fires: %v", hold, held)
			}
			if none := run(t, ""); len(none) != 0 {
				t.Errorf("without any sage_watermark series it fires: %v", none)
			}
			if r.Watermark.Per == "" {
				return
			}
			// A unit override wins over the host's watermark, both ways.
			unit := fired[0].Metric.Get(r.Watermark.Per)
			if unit == "" {
				t.Fatalf("fired series lack the unit label %s: %v", r.Watermark.Per, fired[0].Metric)
			}
			for _, s := range run(t, wm(HostScope, fire)+wm(r.Watermark.Per, hold, r.Watermark.Per, unit)) {
				if s.Metric.Get(r.Watermark.Per) == unit {
					t.Errorf("the %s=%q override at %g did not hold it back: %s", r.Watermark.Per, unit, hold, s.Metric)
				}
			}
			only := run(t, wm(HostScope, hold)+wm(r.Watermark.Per, fire, r.Watermark.Per, unit))
			if len(only) == 0 {
				t.Errorf("the %s=%q override at %g did not fire it", r.Watermark.Per, unit, fire)
			}
			for _, s := range only {
				if s.Metric.Get(r.Watermark.Per) != unit {
					t.Errorf("fired for %s although only %s=%q has a firing watermark", s.Metric, r.Watermark.Per, unit)
				}
			}
		})
	}
}

func firstMetric(t *testing.T, expr string) string {
	t.Helper()
	e, err := exprParser.ParseExpr(expr)
	if err != nil {
		t.Fatal(err)
	}
	for _, sel := range parser.ExtractSelectors(e) {
		for _, m := range sel {
			if m.Name == model.MetricNameLabel && m.Value != WatermarkMetric {
				return m.Value
			}
		}
	}
	return ""
}
