// Package rulepack is ServerSage's default alert rule pack: Prometheus rule files for every
// parameter the agent exposes, each alert with a severity, a `for`, a default watermark where it is
// a threshold, and a runbook in Markdown that tells an L1 engineer what to do.
//
// The rule files are the Prometheus rule-file format exactly, so that `promtool check rules` accepts
// them and the hub hands them to Prometheus's own rules manager unchanged. Per-scope thresholds are
// joined in PromQL rather than generated per scope: a threshold rule compares its metric with the
// hub's virtual series sage_watermark{alert, scope, client, site, host[, unit label]}, which carries
// the effective watermark of every host (and of every overridden unit: a mountpoint, a process
// group, a port). The rule's default watermark sits in its annotations (watermark, watermark_unit,
// watermark_per), where the hub reads it to fill that series.
//
// Parse accepts users' rule files and runbooks with the same checks, and reports every problem as
// file:line: field: message, with the PromQL parser's own message for a bad expression.
package rulepack

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/serversage/sage/internal/config"
)

// WatermarkMetric is the virtual series threshold rules compare with.
const WatermarkMetric = "sage_watermark"

// HostScope is the scope label value of a host's effective watermark.
const HostScope = "host"

// Severities, from the most urgent.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// Severities lists the known severities, most urgent first.
var Severities = []string{SeverityCritical, SeverityWarning, SeverityInfo}

// Directions of a watermark: the alert fires when the value is above it or below it.
const (
	Above = "above"
	Below = "below"
)

// Rule is one alerting rule of a pack.
type Rule struct {
	File        string // the rule file's name, as given to Parse
	Group       string
	Name        string // the alert name
	Expr        string
	For         time.Duration
	Labels      map[string]string
	Annotations map[string]string
	Severity    string     // critical, warning or info
	Component   string     // the component label, else the group's name
	Watermark   *Watermark // nil when the rule is not a threshold
	Runbook     Runbook    // zero when the rule has none (users' rules may not)
}

// HasRunbook reports whether a runbook was given for the rule.
func (r Rule) HasRunbook() bool { return r.Runbook.Markdown != "" }

// Watermark is a threshold rule's default and how it applies.
type Watermark struct {
	Default float64
	Unit    string // "", "%", "bytes", "bytes/s", "s", "count", "ratio"
	// Per is the unit label whose values can carry their own watermark (mountpoint, group, port);
	// "" when the watermark is per host only.
	Per string
	// Direction is Above or Below: the alert fires when the value crosses the watermark that way.
	Direction string
}

// Pack is a parsed and validated set of rule files and runbooks.
type Pack struct {
	rules    []Rule
	byName   map[string]int
	files    map[string][]byte
	runbooks map[string][]byte
}

//go:embed rules/*.yml
var ruleFS embed.FS

//go:embed runbooks/*.md
var runbookFS embed.FS

// Shipped returns the raw rule files and runbooks of the shipped pack, keyed by file name
// ("filesystem.yml", "FilesystemSpaceLow.md"), for merging with users' files before Parse.
func Shipped() (files, runbooks map[string][]byte) {
	return readDir(ruleFS, "rules"), readDir(runbookFS, "runbooks")
}

func readDir(fsys embed.FS, dir string) map[string][]byte {
	out := map[string][]byte{}
	entries, _ := fs.ReadDir(fsys, dir) // embedded: cannot fail
	for _, e := range entries {
		b, _ := fsys.ReadFile(dir + "/" + e.Name())
		out[e.Name()] = b
	}
	return out
}

// Load parses the shipped pack. Unlike Parse it also requires a runbook for every alert, which is
// what the pack promises every L1 engineer.
func Load() (*Pack, error) {
	files, runbooks := Shipped()
	p, err := Parse(files, runbooks)
	if err != nil {
		return nil, fmt.Errorf("the shipped rule pack is invalid: %w", err)
	}
	var probs []config.Problem
	for _, r := range p.rules {
		if !r.HasRunbook() {
			probs = append(probs, config.Problem{File: r.File, Field: "alert " + r.Name, Msg: "has no runbook (runbooks/" + r.Name + ".md)"})
		}
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("the shipped rule pack is invalid: %w", &config.Error{Problems: probs})
	}
	return p, nil
}

// Parse reads rule files (name -> content, in the Prometheus rule-file format) and runbooks
// (name -> Markdown; the name without its directory and ".md" is the alert's) into a pack. Rules
// may lack a runbook, but a runbook must belong to an alert. Every problem is reported, each as
// file:line: field: message, in one *config.Error.
func Parse(files, runbooks map[string][]byte) (*Pack, error) {
	p := &Pack{byName: map[string]int{}, files: maps.Clone(files), runbooks: maps.Clone(runbooks)}
	if p.files == nil {
		p.files = map[string][]byte{}
	}
	if p.runbooks == nil {
		p.runbooks = map[string][]byte{}
	}
	var probs []config.Problem
	type where struct {
		file string
		line int
	}
	seen := map[string]where{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		rules, fprobs := parseFile(name, files[name])
		probs = append(probs, fprobs...)
		for _, pr := range rules {
			if w, dup := seen[pr.rule.Name]; dup {
				probs = append(probs, config.Problem{File: name, Line: pr.line, Field: pr.field + ".alert",
					Msg: fmt.Sprintf("duplicate alert %q (also at %s:%d)", pr.rule.Name, w.file, w.line)})
				continue
			}
			seen[pr.rule.Name] = where{name, pr.line}
			p.byName[pr.rule.Name] = len(p.rules)
			p.rules = append(p.rules, pr.rule)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(runbooks)) {
		alert, ok := strings.CutSuffix(name[strings.LastIndexAny(name, `/\`)+1:], ".md")
		if !ok {
			probs = append(probs, config.Problem{File: name, Msg: "a runbook is a Markdown file named <AlertName>.md"})
			continue
		}
		rb, rprobs := ParseRunbook(name, alert, runbooks[name])
		probs = append(probs, rprobs...)
		i, ok := p.byName[alert]
		if !ok {
			if _, dup := seen[alert]; !dup {
				probs = append(probs, config.Problem{File: name, Line: 1, Msg: fmt.Sprintf("no alert named %q: a runbook needs its rule", alert)})
			}
			continue
		}
		if p.rules[i].HasRunbook() {
			probs = append(probs, config.Problem{File: name, Line: 1, Msg: fmt.Sprintf("a second runbook for %q", alert)})
			continue
		}
		if len(rprobs) == 0 {
			p.rules[i].Runbook = rb
		}
	}
	if len(probs) > 0 {
		return nil, &config.Error{Problems: probs}
	}
	return p, nil
}

// Rules returns the pack's alerts in file-name, group and file order.
func (p *Pack) Rules() []Rule { return slices.Clone(p.rules) }

// Rule returns the named alert.
func (p *Pack) Rule(name string) (Rule, bool) {
	i, ok := p.byName[name]
	if !ok {
		return Rule{}, false
	}
	return p.rules[i], true
}

// Files returns the rule files as given to Parse: what Prometheus's rules manager loads.
func (p *Pack) Files() map[string][]byte { return cloneFiles(p.files) }

// Runbooks returns the runbooks as given to Parse.
func (p *Pack) Runbooks() map[string][]byte { return cloneFiles(p.runbooks) }

func cloneFiles(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = bytes.Clone(v)
	}
	return out
}

// RenderRunbookHTML renders the named alert's runbook as HTML. Raw HTML in the Markdown is left
// out and dangerous link schemes are dropped, so a user's runbook cannot inject script.
func (p *Pack) RenderRunbookHTML(name string) (template.HTML, error) {
	r, ok := p.Rule(name)
	if !ok {
		return "", fmt.Errorf("rulepack: no alert named %q", name)
	}
	if !r.HasRunbook() {
		return "", fmt.Errorf("rulepack: alert %q has no runbook", name)
	}
	return RenderMarkdown(r.Runbook.Markdown)
}

// ReadDir adds the rule files (*.yml, *.yaml) and runbooks (*.md) under dir, recursively, to files
// and runbooks, keyed by their paths so that errors name the operator's own files. It returns how
// many it added.
func ReadDir(dir string, files, runbooks map[string][]byte) (int, error) {
	found := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		into := files
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yml", ".yaml":
		case ".md":
			into = runbooks
		default:
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		into[path] = b
		found++
		return nil
	})
	return found, err
}
