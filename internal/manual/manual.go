// Package manual writes the L1 training manual: every alert of a rule set with what it watches,
// its default watermark and its runbook, arranged so that a new L1 engineer can learn the job
// from it, plus an appendix per client with the watermarks overridden for that client. It writes
// the manual as self-contained printable HTML and as PDF (pure Go, so that `sage manual` works on a
// machine with nothing but the binary).
package manual

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/serversage/sage/internal/rulepack"
)

// Input is what a manual is made of.
type Input struct {
	Title     string    // default: "ServerSage L1 training manual"
	Generated time.Time // shown on the cover; zero: not shown
	Rules     []rulepack.Rule
	Clients   []Client // may be empty
}

// Client is one client's appendix: the watermarks overridden for it.
type Client struct {
	Name      string
	Overrides []Override
}

// Override is one overridden watermark, as an engineer reads it.
type Override struct {
	Alert string
	// Scope says where it applies: "client acme", "site London", "host db1", "service pg",
	// "host db1 mountpoint /var".
	Scope string
	Value float64
	Unit  string // "": the rule's unit
}

// FromPack is the manual of a rule pack without client overrides. The hub builds its Input the
// same way, adding each client's overrides.
func FromPack(p *rulepack.Pack, title string, generated time.Time) Input {
	return Input{Title: title, Generated: generated, Rules: p.Rules()}
}

const defaultTitle = "ServerSage L1 training manual"

// chapter is one component's alerts.
type chapter struct {
	Number int
	ID     string // HTML anchor
	Title  string
	Intro  string
	Alerts []alert
}

// alert is one rule as the manual presents it.
type alert struct {
	Number    string // "3.2"
	ID        string
	Rule      rulepack.Rule
	Watches   string
	FiresWhen string
	Watermark string // "85 % (above it fires), per mountpoint"; "" when not a threshold
	For       string
}

// appendix is one client's overrides, resolved against the rules.
type appendix struct {
	Letter string
	ID     string
	Name   string
	Rows   []overrideRow
}

type overrideRow struct {
	Alert, AlertID, Scope, Value, Default string
	Known                                 bool
}

// doc is the manual's content, shared by the HTML and PDF writers.
type doc struct {
	Title      string
	Generated  string
	generated  time.Time
	Chapters   []chapter
	Appendices []appendix
	Alerts     int
	Critical   int
}

// componentOrder and componentInfo arrange the chapters as an engineer meets the problems: the
// monitoring itself first, then resources, then services, then events.
var componentOrder = []string{"agent", "filesystem", "meminfo", "cpu", "loadavg", "diskstats", "netdev",
	"process_groups", "listeners", "probes", "processes", "stat", "reboot", "kernel_log", "changes"}

var componentInfo = map[string]struct{ title, intro string }{
	"agent": {"The ServerSage agent", "Every monitored host runs the ServerSage agent, which the hub scrapes every few seconds. " +
		"These alerts say that monitoring itself is impaired: while one of them is active, the other alerts of that host may not fire, so they come first."},
	"filesystem": {"File systems", "Space and inodes on every mounted disk-backed file system, and file systems that turned read-only or stopped answering. " +
		"A full file system is the most common cause of outages in managed hosting; these alerts warn early, and the warning and critical watermarks can be set per mountpoint."},
	"meminfo":   {"Memory and swap", "RAM that cannot be reclaimed, and swap. When both run out, the kernel's out-of-memory killer ends processes, usually the biggest: a database or an application server."},
	"cpu":       {"CPU", "How busy the CPUs are, how long they wait for disks (iowait), and on virtual machines how much CPU the hypervisor withholds (steal)."},
	"loadavg":   {"Load average", "The load average per CPU core: how many tasks want to run or wait for disks, compared with the cores available."},
	"diskstats": {"Disks", "Queue depth, latency and volume of every disk. Slow disks slow down everything above them, databases first."},
	"netdev":    {"Network interfaces", "Link state, errors, drops and traffic volume of every network interface except loopback."},
	"process_groups": {"Services (process groups)", "The services the client asked us to watch, each a group of processes named in the agent's configuration (nginx, postgres, tomcat, ...). " +
		"ProcessGroupDown is the alert L1 meets most: the first response is always the same, and it is in its runbook."},
	"probes":     {"Probes (targets and mesh)", "What each host sees of the targets it probes (websites, databases, DNS, and the other hosts of its site): failures, packet loss, latency, jitter, certificates about to expire, and a probe scheduler that cannot keep up. A probe failure may be the target's or the path's: sage probe on the host tells which."},
	"listeners":  {"Listening ports", "The ports the client's services must listen on. A service can run and still not accept connections; these alerts catch that."},
	"processes":  {"Processes", "All processes on the host: the kernel's limits on processes and threads, and zombie processes."},
	"stat":       {"Processes blocked on I/O", "Processes stuck waiting for disks or network file systems (state D), from the kernel's statistics."},
	"reboot":     {"Reboots", "A host that booted again: planned or not, its services must be checked."},
	"kernel_log": {"Kernel log", "Messages in the kernel log that the agent matches against patterns: out-of-memory kills, storage errors, hung tasks, crashes, and patterns added for a client."},
	"changes": {"Changes and file integrity", "What changed on the host (packages, configuration files, users, mounts, firewall, listening ports) and whether its important files were modified outside the package manager. " +
		"PackageFileTampered is a possible intrusion and pages at once; UnexpectedFileChange is off unless turned on per client, site or host; the others say the change record has a hole."},
}

// build arranges the input into chapters and appendices.
func build(in Input) doc {
	d := doc{Title: in.Title}
	if d.Title == "" {
		d.Title = defaultTitle
	}
	if !in.Generated.IsZero() {
		d.Generated = in.Generated.UTC().Format("2 January 2006, 15:04 MST")
		d.generated = in.Generated
	}
	byComponent := map[string][]rulepack.Rule{}
	for _, r := range in.Rules {
		c := r.Component
		if c == "" {
			c = r.Group
		}
		byComponent[c] = append(byComponent[c], r)
	}
	var components []string
	for _, c := range componentOrder {
		if len(byComponent[c]) > 0 {
			components = append(components, c)
		}
	}
	var others []string
	for c := range byComponent {
		if !slices.Contains(componentOrder, c) {
			others = append(others, c)
		}
	}
	slices.Sort(others)
	components = append(components, others...)

	rules := map[string]rulepack.Rule{}
	ids := map[string]string{}
	for i, c := range components {
		ch := chapter{Number: i + 1, ID: "ch-" + anchor(c), Title: c}
		if info, ok := componentInfo[c]; ok {
			ch.Title, ch.Intro = info.title, info.intro
		}
		for j, r := range byComponent[c] {
			a := alert{
				Number:  fmt.Sprintf("%d.%d", i+1, j+1),
				ID:      "alert-" + anchor(r.Name),
				Rule:    r,
				Watches: r.Annotations["watches"],
				For:     forWords(r.For),
			}
			if a.Watches == "" {
				a.Watches = r.Annotations["summary"]
			}
			if a.Watches == "" {
				a.Watches = "Not described: the rule has no watches or summary annotation; see its PromQL."
			}
			a.FiresWhen = firesWhen(r)
			if w := r.Watermark; w != nil {
				a.Watermark = rulepack.FormatValue(w.Default, w.Unit) + " (it fires " + w.Direction + ")"
				if w.Per != "" {
					a.Watermark += "; can be set per " + w.Per
				}
			}
			rules[r.Name] = r
			ids[r.Name] = a.ID
			ch.Alerts = append(ch.Alerts, a)
			d.Alerts++
			if r.Severity == rulepack.SeverityCritical {
				d.Critical++
			}
		}
		d.Chapters = append(d.Chapters, ch)
	}

	for i, c := range in.Clients {
		ap := appendix{Letter: string(rune('A' + i%26)), ID: fmt.Sprintf("client-%d", i+1), Name: c.Name}
		if i >= 26 {
			ap.Letter = fmt.Sprintf("%c%d", 'A'+i%26, i/26)
		}
		for _, o := range c.Overrides {
			row := overrideRow{Alert: o.Alert, AlertID: ids[o.Alert], Scope: o.Scope}
			r, ok := rules[o.Alert]
			row.Known = ok
			unit := o.Unit
			if ok && r.Watermark != nil {
				if unit == "" {
					unit = r.Watermark.Unit
				}
				row.Default = rulepack.FormatValue(r.Watermark.Default, r.Watermark.Unit)
			}
			row.Value = rulepack.FormatValue(o.Value, unit)
			ap.Rows = append(ap.Rows, row)
		}
		slices.SortStableFunc(ap.Rows, func(a, b overrideRow) int {
			if c := strings.Compare(a.Alert, b.Alert); c != 0 {
				return c
			}
			return strings.Compare(a.Scope, b.Scope)
		})
		d.Appendices = append(d.Appendices, ap)
	}
	return d
}

// firesWhen says in words when the alert fires.
func firesWhen(r rulepack.Rule) string {
	var s string
	if w := r.Watermark; w != nil {
		s = "When the value is " + w.Direction + " its watermark"
	} else {
		s = "When the condition is true"
	}
	if r.For > 0 {
		s += " without interruption for " + forWords(r.For)
	} else {
		s += ", at once"
	}
	return s + "."
}

// forWords writes a duration as "15 minutes", "1 hour 30 minutes", "at once".
func forWords(d time.Duration) string {
	if d <= 0 {
		return "at once"
	}
	var parts []string
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{24 * time.Hour, "day"}, {time.Hour, "hour"}, {time.Minute, "minute"}, {time.Second, "second"}} {
		if n := d / u.d; n > 0 {
			p := fmt.Sprintf("%d %s", n, u.name)
			if n > 1 {
				p += "s"
			}
			parts = append(parts, p)
			d -= n * u.d
		}
	}
	if len(parts) == 0 {
		return d.String()
	}
	return strings.Join(parts, " ")
}

// anchor makes an HTML id from a name.
func anchor(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

// severityNotes is the response expected for each severity, as the manual teaches it.
var severityNotes = []struct{ Severity, Meaning, Response string }{
	{rulepack.SeverityCritical, "Something is down, or will fail within minutes: a service, a file system, data.",
		"Acknowledge within 5 minutes and start the action plan at once. Phone L2 as soon as the runbook says so; do not wait for the automatic escalation."},
	{rulepack.SeverityWarning, "Something will become a problem if nobody acts: a resource running out, a degraded part.",
		"Acknowledge within 15 minutes, work through the action plan, and escalate within the time the runbook gives."},
	{rulepack.SeverityInfo, "Worth knowing, no immediate risk: a restart, unusual volume, a crash of a non-service program.",
		"Acknowledge, record what you found in the ticket, and hand over to L2 in business hours when the runbook says so."},
}

// goldenRules are the rules of conduct every runbook assumes.
var goldenRules = []string{
	"Acknowledge first. An acknowledged alert tells the team someone is on it and stops the automatic escalation; an unacknowledged one escalates to L2, then L3, on the client's escalation policy.",
	"Follow the action plan in order, and paste every command's output into the ticket. L2 should never have to run a command you already ran.",
	"Check the maintenance calendar and the host's change timeline early: most alerts during planned work are explained by it.",
	"Never run a destructive command (delete, kill, reboot, fsck, firewall or network changes, configuration edits) unless the runbook says so or L2 tells you to.",
	"Restart a service at most once. If it fails again, collect its log and escalate; a restart loop destroys the evidence.",
	"Escalate by the clock, not by your progress: the times in \"When to escalate\" count from when the alert fired.",
	"When in doubt, escalate. Nobody is blamed for an early call to L2; a late one can cost the client an outage.",
}
