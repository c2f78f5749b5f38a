package rulepack

import (
	"bytes"
	"fmt"
	"html/template"
	"regexp"
	"strings"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/text"

	"github.com/serversage/sage/internal/config"
)

// Runbook is an alert's runbook: what L1 reads when the alert fires.
type Runbook struct {
	Alert    string
	Markdown string // the whole document
	// Each section's body, in Markdown.
	Meaning, Confirm, Escalate, Notes string
	// ActionPlan is the L1 action plan's steps, in order, each in Markdown (inline text, and
	// possibly a code block or sub-list indented under it).
	ActionPlan []string
}

// Section titles, in the order a runbook has them.
const (
	SectionMeaning    = "What it means"
	SectionConfirm    = "How to confirm"
	SectionActionPlan = "L1 action plan"
	SectionEscalate   = "When to escalate"
	SectionNotes      = "Notes for L2/L3"
)

// Sections lists the required sections in order.
var Sections = []string{SectionMeaning, SectionConfirm, SectionActionPlan, SectionEscalate, SectionNotes}

// markdown renders CommonMark with GitHub's tables and strikethrough. It is goldmark's safe mode:
// raw HTML is replaced by a comment and javascript:, vbscript:, file: and data: links are dropped.
var markdown = goldmark.New(goldmark.WithExtensions(extension.Table, extension.Strikethrough))

// RenderMarkdown renders Markdown (a runbook or one of its sections) as HTML.
func RenderMarkdown(md string) (template.HTML, error) {
	var b bytes.Buffer
	if err := markdown.Convert([]byte(md), &b); err != nil {
		return "", fmt.Errorf("rendering Markdown: %w", err)
	}
	return template.HTML(b.String()), nil // #nosec G203 -- goldmark's safe mode, see markdown
}

// ParseMarkdown parses Markdown into goldmark's syntax tree, for renderers other than HTML (the
// manual's PDF). The tree's segments refer to source.
func ParseMarkdown(source []byte) ast.Node {
	return markdown.Parser().Parse(text.NewReader(source))
}

// stepMarkerRE is an ordered list item's marker: indentation, number, "." or ")", spaces.
var stepMarkerRE = regexp.MustCompile(`^( *)\d{1,9}[.)](?: +|$)`)

var listMarkersRE = regexp.MustCompile(`^(?:\s*(?:[-*+]|\d{1,9}[.)])\s+)*\s*`)

// ParseRunbook reads a runbook: a level-1 heading with the alert's name, then the five sections
// as level-2 headings, each present once, in any order, and not empty; the L1 action plan is one
// numbered list. file names the runbook in problems.
func ParseRunbook(file, alert string, md []byte) (Runbook, []config.Problem) {
	var probs []config.Problem
	bad := func(line int, field, format string, args ...any) {
		probs = append(probs, config.Problem{File: file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	rb := Runbook{Alert: alert, Markdown: string(md)}
	type section struct {
		title string
		line  int
		body  []string
	}
	var (
		sections []*section
		cur      *section
		fence    string
		title    bool
	)
	lines := strings.Split(strings.ReplaceAll(string(md), "\r\n", "\n"), "\n")
	for i, l := range lines {
		n := i + 1
		// A code fence may open after list markers ("1. ```"), and closes on a line of its own.
		trimmed := strings.TrimLeft(l, " ")
		opener := listMarkersRE.ReplaceAllString(l, "")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
		} else if strings.HasPrefix(opener, "```") || strings.HasPrefix(opener, "~~~") {
			fence = opener[:3]
		} else if h, ok := strings.CutPrefix(l, "# "); ok {
			if title || cur != nil {
				bad(n, "", "a second level-1 heading: a runbook has one, the alert's name")
			} else if strings.TrimSpace(h) != alert {
				bad(n, "", "the title is %q; it must be the alert's name, %q", strings.TrimSpace(h), alert)
			}
			title = true
			continue
		} else if h, ok := strings.CutPrefix(l, "## "); ok {
			name := canonicalSection(strings.TrimSpace(h))
			if name == "" {
				bad(n, strings.TrimSpace(h), "unknown section: a runbook has %s", quoteAll(Sections))
			}
			for _, s := range sections {
				if s.title == name && name != "" {
					bad(n, name, "a second %q section (also at line %d)", name, s.line)
				}
			}
			cur = &section{title: name, line: n}
			sections = append(sections, cur)
			continue
		}
		if cur == nil {
			if strings.TrimSpace(l) != "" {
				if !title {
					bad(n, "", "a runbook starts with a level-1 heading: # %s", alert)
					title = true
				} else {
					bad(n, "", "text before the first section is shown nowhere; put it under ## %s", SectionMeaning)
				}
			}
			continue
		}
		cur.body = append(cur.body, l)
	}
	if !title {
		bad(1, "", "a runbook starts with a level-1 heading: # %s", alert)
	}
	found := map[string]*section{}
	for _, s := range sections {
		if s.title != "" && found[s.title] == nil {
			found[s.title] = s
		}
	}
	for _, name := range Sections {
		s := found[name]
		if s == nil {
			bad(len(lines), name, "the section \"## %s\" is missing", name)
			continue
		}
		body := strings.TrimSpace(strings.Join(s.body, "\n"))
		if body == "" {
			bad(s.line, name, "is empty")
			continue
		}
		switch name {
		case SectionMeaning:
			rb.Meaning = body
		case SectionConfirm:
			rb.Confirm = body
		case SectionEscalate:
			rb.Escalate = body
		case SectionNotes:
			rb.Notes = body
		case SectionActionPlan:
			steps, msg := actionPlan(body)
			if msg != "" {
				bad(s.line, name, "%s", msg)
			}
			rb.ActionPlan = steps
		}
	}
	return rb, probs
}

func canonicalSection(h string) string {
	for _, s := range Sections {
		if strings.EqualFold(h, s) {
			return s
		}
	}
	return ""
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// actionPlan splits the action plan's numbered list into its steps' Markdown. The section must be
// that list alone, so that nothing in it is lost where only the steps are shown (a notification, a
// checklist).
func actionPlan(body string) ([]string, string) {
	src := []byte(body)
	doc := ParseMarkdown(src)
	var list *ast.List
	blocks := 0
	for c := doc.FirstChild(); c != nil; c = c.NextSibling() {
		blocks++
		if l, ok := c.(*ast.List); ok && l.IsOrdered() && list == nil {
			list = l
		}
	}
	if list == nil {
		return nil, "needs a numbered list of steps (1. ..., 2. ...)"
	}
	if blocks > 1 {
		return nil, "must be one numbered list and nothing else: put explanations in the steps"
	}
	// Each step starts on a line with a marker at the list's own indentation, outside code
	// fences; goldmark has already said how many there are.
	n := 0
	for c := list.FirstChild(); c != nil; c = c.NextSibling() {
		n++
	}
	lines := strings.Split(body, "\n")
	type item struct {
		first, indent int
	}
	var items []item
	base := len(lines[0]) - len(strings.TrimLeft(lines[0], " "))
	fence := ""
	for i, l := range lines {
		trimmed := strings.TrimLeft(l, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if m := stepMarkerRE.FindStringSubmatch(l); m != nil && len(m[1]) == base {
			items = append(items, item{first: i, indent: len(m[0])})
		}
		if opener := listMarkersRE.ReplaceAllString(l, ""); strings.HasPrefix(opener, "```") || strings.HasPrefix(opener, "~~~") {
			fence = opener[:3]
		}
	}
	if len(items) != n {
		return nil, fmt.Sprintf("could not tell the %d steps apart; start each with its number at the same indentation", n)
	}
	steps := make([]string, len(items))
	for i, it := range items {
		end := len(lines)
		if i+1 < len(items) {
			end = items[i+1].first
		}
		var b strings.Builder
		for j := it.first; j < end; j++ {
			l := lines[j]
			if j == it.first {
				l = strings.TrimLeft(l, " ")
				// Drop the marker: digits, then . or ), then spaces.
				k := 0
				for k < len(l) && l[k] >= '0' && l[k] <= '9' {
					k++
				}
				if k < len(l) && (l[k] == '.' || l[k] == ')') {
					k++
				}
				l = strings.TrimLeft(l[k:], " ")
			} else {
				l = dedent(l, it.indent)
			}
			b.WriteString(l)
			b.WriteByte('\n')
		}
		steps[i] = strings.TrimSpace(b.String())
		if steps[i] == "" {
			return nil, fmt.Sprintf("step %d is empty", i+1)
		}
	}
	return steps, ""
}

// dedent removes up to n leading spaces.
func dedent(l string, n int) string {
	i := 0
	for i < n && i < len(l) && l[i] == ' ' {
		i++
	}
	return l[i:]
}
