package rulepack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/serversage/sage/internal/config"
)

// exprParser parses expressions as Prometheus's rules manager does by default.
var exprParser = parser.NewParser(parser.Options{})

// parsedRule is a rule with where it was found, for cross-file checks.
type parsedRule struct {
	rule  Rule
	field string // groups[i].rules[j]
	line  int
}

var (
	lineColRE  = regexp.MustCompile(`^(\d+):(\d+): `)
	yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	notFoundRE = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// parseFile parses one rule file with Prometheus's own rulefmt, then checks what ServerSage adds:
// severities, and watermarks that agree with the expression.
func parseFile(name string, data []byte) ([]parsedRule, []config.Problem) {
	problem := func(line int, field, msg string) config.Problem {
		return config.Problem{File: name, Line: line, Field: field, Msg: msg}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlProblems(name, err)
	}
	if docs := countDocuments(data); docs > 1 {
		return nil, []config.Problem{problem(0, "", "more than one YAML document: Prometheus reads only the first")}
	}
	groups, errs := rulefmt.Parse(data, false, model.UTF8Validation, exprParser, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		var probs []config.Problem
		for _, err := range errs {
			probs = append(probs, rulefmtProblems(name, &root, groups, err)...)
		}
		return nil, probs
	}
	if groups == nil || len(groups.Groups) == 0 {
		return nil, []config.Problem{problem(1, "groups", "no rule groups")}
	}

	var out []parsedRule
	var probs []config.Problem
	for gi, g := range groups.Groups {
		for ri, r := range g.Rules {
			if r.Alert == "" {
				continue // a recording rule: Prometheus's checks are all it needs
			}
			base := fmt.Sprintf("groups[%d].rules[%d]", gi, ri)
			bad := func(sub, format string, args ...any) {
				f := base + sub
				probs = append(probs, problem(config.LineOf(&root, f), f, fmt.Sprintf(format, args...)))
			}
			labels := map[string]string{}
			for k, v := range g.Labels {
				labels[k] = v
			}
			for k, v := range r.Labels {
				labels[k] = v
			}
			rule := Rule{
				File:        name,
				Group:       g.Name,
				Name:        r.Alert,
				Expr:        strings.TrimSpace(r.Expr),
				For:         time.Duration(r.For),
				Labels:      labels,
				Annotations: r.Annotations,
				Severity:    labels["severity"],
				Component:   labels["component"],
			}
			if rule.Annotations == nil {
				rule.Annotations = map[string]string{}
			}
			if rule.Component == "" {
				rule.Component = g.Name
			}
			switch {
			case rule.Severity == "":
				bad(".labels", "the severity label is required: one of %s", strings.Join(Severities, ", "))
			case !slices.Contains(Severities, rule.Severity):
				bad(".labels.severity", "unknown severity %q: one of %s", rule.Severity, strings.Join(Severities, ", "))
			}
			expr, err := exprParser.ParseExpr(r.Expr)
			if err != nil { // rulefmt has parsed it already; kept for safety
				bad(".expr", "could not parse expression: %v", err)
				continue
			}
			wm, wprobs := analyseWatermark(r.Alert, expr, rule.Annotations)
			for _, p := range wprobs {
				bad(p.field, "%s", p.msg)
			}
			rule.Watermark = wm
			out = append(out, parsedRule{rule: rule, field: base, line: config.LineOf(&root, base+".alert")})
		}
	}
	return out, probs
}

func countDocuments(data []byte) int {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	n := 0
	for {
		var v yaml.Node
		if err := dec.Decode(&v); err != nil {
			return n
		}
		n++
	}
}

// yamlProblems turns a YAML syntax or type error into problems with lines.
func yamlProblems(file string, err error) []config.Problem {
	var te *yaml.TypeError
	var msgs []string
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var out []config.Problem
	for _, msg := range msgs {
		msg = strings.TrimPrefix(msg, "yaml: ")
		p := config.Problem{File: file, Msg: msg}
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			p.Line, _ = strconv.Atoi(m[1])
			p.Msg = m[2]
			if u := notFoundRE.FindStringSubmatch(p.Msg); u != nil {
				p.Field, p.Msg = u[1], "unknown field"
			}
		}
		out = append(out, p)
	}
	return out
}

// rulefmtProblems translates one of rulefmt's errors: a rule's (*rulefmt.Error: group, rule
// number and a message that may start with line:column), a group's ("line:col: message") or the
// YAML decoder's.
func rulefmtProblems(file string, root *yaml.Node, groups *rulefmt.RuleGroups, err error) []config.Problem {
	var re *rulefmt.Error
	if errors.As(err, &re) {
		gi := 0
		if groups != nil {
			for i, g := range groups.Groups {
				if g.Name == re.Group {
					gi = i
					break
				}
			}
		}
		field := fmt.Sprintf("groups[%d].rules[%d]", gi, re.Rule-1)
		msg := re.Err.Error()
		for {
			m := lineColRE.FindStringSubmatch(msg)
			if m == nil {
				break
			}
			msg = msg[len(m[0]):]
		}
		field += subfieldOf(msg)
		return []config.Problem{{File: file, Line: config.LineOf(root, field), Field: field, Msg: msg}}
	}
	msg := err.Error()
	if m := lineColRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p := config.Problem{File: file, Line: line, Msg: msg[len(m[0]):]}
		if field := groupField(groups, p.Msg); field != "" {
			p.Field, p.Line = field, config.LineOf(root, field)
		}
		return []config.Problem{p}
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return yamlProblems(file, err)
}

var repeatedRE = regexp.MustCompile(`^groupname: "(.*)" is repeated in the same file$`)

// groupField names the group a group-level message of rulefmt is about: rulefmt's own line
// numbers for groups are often missing.
func groupField(groups *rulefmt.RuleGroups, msg string) string {
	if groups == nil {
		return ""
	}
	seen := map[string]bool{}
	for i, g := range groups.Groups {
		switch {
		case msg == "Groupname must not be empty" && g.Name == "":
			return fmt.Sprintf("groups[%d].name", i)
		case repeatedRE.MatchString(msg) && seen[g.Name] && repeatedRE.FindStringSubmatch(msg)[1] == g.Name:
			return fmt.Sprintf("groups[%d].name", i)
		}
		seen[g.Name] = true
	}
	return ""
}

var annotationRE = regexp.MustCompile(`^(annotation|label) "([^"]*)"`)

// subfieldOf names the field of a rule that one of rulefmt's messages is about.
func subfieldOf(msg string) string {
	switch {
	case strings.HasPrefix(msg, "could not parse expression"), strings.HasPrefix(msg, "field 'expr'"):
		return ".expr"
	case strings.HasPrefix(msg, "invalid label"):
		return ".labels"
	case strings.HasPrefix(msg, "invalid annotation"):
		return ".annotations"
	case strings.HasPrefix(msg, "invalid recording rule name"), strings.HasPrefix(msg, "braces present"):
		return ".record"
	}
	if m := annotationRE.FindStringSubmatch(msg); m != nil {
		if m[1] == "annotation" {
			return ".annotations." + m[2]
		}
		return ".labels." + m[2]
	}
	return ""
}

// Units a watermark may be expressed in.
var Units = []string{"", "%", "bytes", "bytes/s", "s", "count", "count/s", "ratio"}

// reservedLabels cannot be a watermark's unit label: they identify the target or the watermark.
var reservedLabels = []string{"client", "site", "host", "alert", "scope", "job", "instance", "__name__"}

type fieldMsg struct{ field, msg string }

// analyseWatermark checks that a rule's watermark annotations and its comparisons with
// sage_watermark agree, and derives the watermark's direction from the comparison.
func analyseWatermark(alert string, expr parser.Expr, ann map[string]string) (*Watermark, []fieldMsg) {
	var probs []fieldMsg
	bad := func(field, format string, args ...any) {
		probs = append(probs, fieldMsg{field, fmt.Sprintf(format, args...)})
	}
	per := strings.TrimSpace(ann["watermark_per"])
	raw, hasWM := ann["watermark"]

	// Every sage_watermark selector must name this alert and a scope it has.
	selectors := 0
	scopes := map[string]bool{}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok || !isWatermark(vs) {
			return nil
		}
		selectors++
		if v, ok := equalMatcher(vs, "alert"); !ok || v != alert {
			bad(".expr", "%s must select alert=%q, this rule's name (in %s)", WatermarkMetric, alert, vs.String())
		}
		scope, ok := equalMatcher(vs, "scope")
		switch {
		case !ok:
			bad(".expr", "%s must select a scope: scope=\"host\" or scope=\"<watermark_per>\" (in %s)", WatermarkMetric, vs.String())
		case scope != HostScope && scope != per:
			if per == "" {
				bad(".expr", "%s scope %q needs the annotation watermark_per: %s", WatermarkMetric, scope, scope)
			} else {
				bad(".expr", "%s scope %q: only \"host\" or the watermark_per label %q", WatermarkMetric, scope, per)
			}
		default:
			if _, seen := scopes[scope]; !seen {
				scopes[scope] = false // selected; true once compared with
			}
		}
		return nil
	})

	// Comparisons with sage_watermark give the direction and must match on the target.
	dirs := map[string]bool{}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		be, ok := node.(*parser.BinaryExpr)
		if !ok || !be.Op.IsComparisonOperator() {
			return nil
		}
		lw, rw := watermarkOperand(be.LHS), watermarkOperand(be.RHS)
		if lw == nil && rw == nil {
			return nil
		}
		wm, onRight := rw, true
		if wm == nil {
			wm, onRight = lw, false
		}
		scope, _ := equalMatcher(wm, "scope")
		var dir string
		switch be.Op {
		case parser.GTR, parser.GTE:
			dir = Above
		case parser.LSS, parser.LTE:
			dir = Below
		default:
			bad(".expr", "compare with %s using >, >=, < or <=, not %s", WatermarkMetric, be.Op)
			return nil
		}
		if !onRight {
			dir = map[string]string{Above: Below, Below: Above}[dir]
		}
		dirs[dir] = true
		if be.ReturnBool {
			bad(".expr", "a comparison with %s must filter, not use bool: the alert would always fire", WatermarkMetric)
		}
		vm := be.VectorMatching
		need := []string{"client", "host"}
		if scope != HostScope && scope != "" {
			need = append(need, scope)
		}
		if vm == nil || !vm.On || !containsAll(vm.MatchingLabels, need) {
			bad(".expr", "a comparison with %s{scope=%q} must match on(%s): other target labels differ", WatermarkMetric, scope, strings.Join(need, ", "))
		} else if want := map[bool]parser.VectorMatchCardinality{true: parser.CardManyToOne, false: parser.CardOneToMany}[onRight]; vm.Card != want {
			side := map[bool]string{true: "group_left()", false: "group_right()"}[onRight]
			bad(".expr", "a comparison with %s needs %s: several series of a host share its watermark", WatermarkMetric, side)
		}
		if _, ok := scopes[scope]; ok {
			scopes[scope] = true
		}
		return nil
	})

	if selectors == 0 {
		if hasWM {
			bad(".annotations.watermark", "set, but the expression does not compare with %s", WatermarkMetric)
		}
		if per != "" {
			bad(".annotations.watermark_per", "set, but the expression does not compare with %s", WatermarkMetric)
		}
		return nil, probs
	}
	if !hasWM {
		bad(".annotations", "the watermark annotation (the default value) is required: the expression compares with %s", WatermarkMetric)
	}
	wm := &Watermark{Unit: strings.TrimSpace(ann["watermark_unit"]), Per: per}
	if hasWM {
		v, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		switch {
		case err != nil:
			bad(".annotations.watermark", "%q is not a number", raw)
		case math.IsNaN(v) || math.IsInf(v, 0):
			bad(".annotations.watermark", "must be a finite number, not %q", raw)
		case v < 0:
			bad(".annotations.watermark", "must not be negative (%s)", raw)
		}
		wm.Default = v
	}
	if !slices.Contains(Units, wm.Unit) {
		bad(".annotations.watermark_unit", "unknown unit %q: one of %s", wm.Unit, strings.Join(Units[1:], ", "))
	}
	if per != "" {
		switch {
		case !model.UTF8Validation.IsValidLabelName(per) || !model.LegacyValidation.IsValidLabelName(per):
			bad(".annotations.watermark_per", "%q is not a label name", per)
		case slices.Contains(reservedLabels, per):
			bad(".annotations.watermark_per", "%q identifies the target or the watermark; name the unit's own label (mountpoint, group, port, ...)", per)
		}
	}
	if !scopes[HostScope] {
		bad(".expr", "needs a comparison with %s{alert=%q, scope=\"host\"}: the host-level watermark every host has", WatermarkMetric, alert)
	}
	if per != "" && !scopes[per] {
		bad(".expr", "watermark_per is %q, but no comparison with %s{scope=%q}", per, WatermarkMetric, per)
	}
	switch {
	case len(dirs) > 1:
		bad(".expr", "the comparisons with %s disagree: some fire above the watermark, some below", WatermarkMetric)
	case dirs[Above]:
		wm.Direction = Above
	case dirs[Below]:
		wm.Direction = Below
	}
	return wm, probs
}

func isWatermark(vs *parser.VectorSelector) bool {
	if vs.Name == WatermarkMetric {
		return true
	}
	v, ok := equalMatcher(vs, model.MetricNameLabel)
	return ok && v == WatermarkMetric
}

// watermarkOperand returns e when it is a sage_watermark selector, through parentheses.
func watermarkOperand(e parser.Expr) *parser.VectorSelector {
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			break
		}
		e = p.Expr
	}
	vs, ok := e.(*parser.VectorSelector)
	if !ok || !isWatermark(vs) {
		return nil
	}
	return vs
}

func equalMatcher(vs *parser.VectorSelector, name string) (string, bool) {
	for _, m := range vs.LabelMatchers {
		if m.Name == name && m.Type == labels.MatchEqual {
			return m.Value, true
		}
	}
	return "", false
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
