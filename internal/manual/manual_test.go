package manual

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/yuin/goldmark/ast"
	"golang.org/x/net/html"

	"github.com/serversage/sage/internal/rulepack"
	"github.com/serversage/sage/internal/testenv"
)

// input is the shipped pack, a user's rule without a runbook, and two clients.
func input(t *testing.T) Input {
	t.Helper()
	files, runbooks := rulepack.Shipped()
	files["user/extra.yml"] = []byte(`groups:
  - name: web
    rules:
      - alert: WebsiteSlow
        expr: probe_duration_seconds > 2
        for: 10m
        labels: {severity: warning}
        annotations: {summary: "slow"}
`)
	// A user's runbook with what the shipped ones lack: a step that is only a code block, a
	// sub-list, and text beyond ASCII.
	files["user/odd.yml"] = []byte("groups:\n  - name: odd\n    rules:\n      - alert: OddSteps\n        expr: up == 0\n        labels: {severity: info}\n")
	runbooks["user/OddSteps.md"] = []byte("# OddSteps\n\n## What it means\n\nThe café's naïve check – nothing more.\n\n" +
		"## How to confirm\n\nLook.\n\n## L1 action plan\n\n1. ```\n   systemctl status odd.service\n   ```\n" +
		"2. Check both:\n   - the first thing\n   - the second thing\n3. Acknowledge the alert.\n\n" +
		"## When to escalate\n\nTo L2 within a day.\n\n## Notes for L2/L3\n\n> Quoted advice.\n")
	p, err := rulepack.Parse(files, runbooks)
	if err != nil {
		t.Fatal(err)
	}
	in := FromPack(p, "Acme MSP L1 manual", time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC))
	in.Clients = []Client{
		{Name: "Acme Ltd", Overrides: []Override{
			{Alert: "FilesystemSpaceLow", Scope: "host db1 mountpoint /var", Value: 92},
			{Alert: "ProcessGroupDown", Scope: "service postgres", Value: 3},
			{Alert: "AgentMemoryHigh", Scope: "client Acme Ltd", Value: 314572800},
			{Alert: "RetiredAlert", Scope: "site London", Value: 1},
		}},
		{Name: "Globex"},
	}
	return in
}

// plain is a step's first paragraph as a reader sees it: Markdown markup gone, whitespace folded.
func plain(md string) string { return fold(plainFirst(md)) }

func fold(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\u00a0", " ")), " ")
}

func TestHTMLHasEveryRuleWithItsRunbook(t *testing.T) {
	in := input(t)
	var b bytes.Buffer
	if err := HTML(&b, in); err != nil {
		t.Fatal(err)
	}
	root, err := html.Parse(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	articles := map[string]*html.Node{}
	var headings []string
	walk(root, func(n *html.Node) {
		switch {
		case n.Type == html.ElementNode && n.Data == "script":
			t.Error("the manual has a script element")
		case n.Type == html.ElementNode && (n.Data == "link" || n.Data == "img" || n.Data == "iframe"):
			t.Errorf("the manual loads an external resource: <%s>", n.Data)
		case n.Type == html.ElementNode && n.Data == "article":
			articles[attr(n, "data-alert")] = n
		case n.Type == html.ElementNode && n.Data == "h2":
			headings = append(headings, fold(textOf(n)))
		}
		for _, a := range n.Attr {
			if strings.HasPrefix(a.Key, "on") {
				t.Errorf("event handler attribute %s", a.Key)
			}
		}
	})
	if len(articles) != len(in.Rules) {
		t.Errorf("%d alert articles for %d rules", len(articles), len(in.Rules))
	}
	for _, r := range in.Rules {
		a := articles[r.Name]
		if a == nil {
			t.Errorf("%s: no article", r.Name)
			continue
		}
		body := fold(textOf(a))
		if !strings.Contains(body, fold(r.Expr)) {
			t.Errorf("%s: the PromQL is missing", r.Name)
		}
		if !r.HasRunbook() {
			if !strings.Contains(body, "has no runbook yet") {
				t.Errorf("%s: no runbook and no advice", r.Name)
			}
			continue
		}
		var sections []string
		var plan *html.Node
		walk(a, func(n *html.Node) {
			if n.Type == html.ElementNode && n.Data == "h4" {
				sections = append(sections, fold(textOf(n)))
			}
			if n.Type == html.ElementNode && n.Data == "ol" && attr(n, "class") == "plan" {
				plan = n
			}
		})
		if strings.Join(sections, "|") != strings.Join(rulepack.Sections, "|") {
			t.Errorf("%s: sections %q, want %q", r.Name, sections, rulepack.Sections)
		}
		if plan == nil {
			t.Errorf("%s: no action plan list", r.Name)
			continue
		}
		var items []string
		for c := plan.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.ElementNode && c.Data == "li" {
				items = append(items, fold(textOf(c)))
			}
		}
		if len(items) != len(r.Runbook.ActionPlan) {
			t.Errorf("%s: %d steps in the HTML, %d in the runbook", r.Name, len(items), len(r.Runbook.ActionPlan))
			continue
		}
		for i, step := range r.Runbook.ActionPlan {
			if !strings.HasPrefix(items[i], plain(step)) {
				t.Errorf("%s step %d:\n  %q\nwant it to start with\n  %q", r.Name, i+1, items[i], plain(step))
			}
		}
		if w := r.Watermark; w != nil && !strings.Contains(body, rulepack.FormatValue(w.Default, w.Unit)) {
			t.Errorf("%s: default watermark %s not shown", r.Name, rulepack.FormatValue(w.Default, w.Unit))
		}
	}
	page := fold(textOf(root))
	for _, want := range []string{
		"Appendix A. Watermarks of Acme Ltd", "host db1 mountpoint /var 92 % 85 %", "service postgres 3 1",
		"client Acme Ltd 300 MiB 200 MiB", "RetiredAlert (not in this rule set)", "Globex uses the default watermarks everywhere",
		"Acknowledge it in ServerSage", "Golden rules",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the manual lacks %q", want)
		}
	}
	if headings[0] != "Contents" || headings[1] != "How to use this manual" {
		t.Errorf("front matter headings %q", headings[:2])
	}
	if dir := os.Getenv("SAGE_ARTEFACTS"); dir != "" || testenv.InCI() {
		_ = os.WriteFile(filepath.Join(testenv.ArtefactDir(t, "manual"), "manual.html"), b.Bytes(), 0o644)
	}
}

// TestPDF reads the PDF back: its pages, that every alert and every step of every action plan is
// there as text, that the contents' page numbers point at the headings, and page numbers.
func TestPDF(t *testing.T) {
	in := input(t)
	var b bytes.Buffer
	if err := PDF(&b, in); err != nil {
		t.Fatal(err)
	}
	pdf := b.Bytes()
	if !bytes.HasPrefix(pdf, []byte("%PDF-1.")) || !bytes.HasSuffix(bytes.TrimSpace(pdf), []byte("%%EOF")) {
		t.Fatalf("not a complete PDF: %q ... %q", pdf[:8], pdf[len(pdf)-8:])
	}
	if !bytes.Contains(pdf, []byte("/FlateDecode")) {
		t.Error("the content streams are not compressed")
	}
	pages, err := pageTexts(pdf)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pages); n < len(in.Rules)/2 || n > 3*len(in.Rules) {
		t.Errorf("%d pages for %d alerts", n, len(in.Rules))
	}
	for i, p := range pages {
		if want := fmt.Sprintf("Page %d of %d", i+1, len(pages)); !strings.Contains(p, want) {
			t.Errorf("page %d lacks %q", i+1, want)
		}
	}
	all := fold(strings.Join(pages, "\n"))
	for _, r := range in.Rules {
		if !strings.Contains(all, r.Name) {
			t.Errorf("%s is not in the PDF's text", r.Name)
		}
		for i, step := range r.Runbook.ActionPlan {
			if !strings.Contains(all, plain(step)) {
				t.Errorf("%s step %d is not in the PDF's text: %q", r.Name, i+1, plain(step))
			}
		}
		rb := r.Runbook
		for i, section := range []string{rb.Meaning, rb.Confirm, rb.Escalate, rb.Notes} {
			for _, p := range paragraphs(section) {
				if !strings.Contains(all, p) {
					t.Errorf("%s: %s: a paragraph is not in the PDF's text: %q", r.Name, []string{"meaning", "confirm", "escalate", "notes"}[i], p)
				}
			}
		}
	}
	for _, want := range []string{"Appendix A. Watermarks of Acme Ltd", "host db1 mountpoint /var", "300 MiB", "This alert has no runbook yet",
		"The café's naïve check – nothing more.", "systemctl status odd.service", "the second thing", "Quoted advice."} {
		if !strings.Contains(all, want) {
			t.Errorf("the PDF lacks %q", want)
		}
	}
	// Contents: every entry has the page its heading is on.
	entry := regexp.MustCompile(`^(\d+)$`)
	toc := strings.Split(pages[1]+"\n"+pages[2], "\n")
	checked := 0
	for i := 0; i+1 < len(toc); i++ {
		m := entry.FindStringSubmatch(toc[i+1])
		if m == nil || !strings.Contains(toc[i], "  ") {
			continue
		}
		var pg int
		fmt.Sscan(m[1], &pg)
		if pg < 1 || pg > len(pages) || !containsLine(pages[pg-1], toc[i]) {
			t.Errorf("contents: %q on page %s, but it is not there", toc[i], m[1])
		}
		checked++
	}
	if checked < len(in.Rules)/2 {
		t.Errorf("only %d alert entries with page numbers in the contents", checked)
	}
	if strings.Contains(pages[1], "\n--\n") {
		t.Errorf("a contents entry has no page number:\n%s", pages[1])
	}
	if dir := os.Getenv("SAGE_ARTEFACTS"); dir != "" || testenv.InCI() {
		_ = os.WriteFile(filepath.Join(testenv.ArtefactDir(t, "manual"), "manual.pdf"), pdf, 0o644)
	}
}

func TestWrapCode(t *testing.T) {
	long := `node_filesystem_avail_bytes{fstype!~"tmpfs|ramfs|overlay|squashfs|iso9660|erofs|nsfs", mountpoint!="", device_error=""} / node_filesystem_size_bytes`
	tests := []struct {
		line  string
		width int
	}{
		{long, 60},
		{"  " + long, 50},
		{strings.Repeat("x", 130), 50},
		{"short", 50},
		{`a "quoted string with spaces that is long" b`, 20},
		{strings.Repeat(" ", 70) + "abc def", 50},
		{strings.Repeat("x y ", 100), 7},
	}
	for _, tt := range tests {
		parts := wrapCode(tt.line, tt.width)
		for i, p := range parts {
			if len(p) > tt.width {
				t.Errorf("%q: part %d is %d wide", tt.line, i, len(p))
			}
		}
		if strings.Join(strings.Fields(strings.Join(parts, " ")), "") != strings.Join(strings.Fields(tt.line), "") {
			t.Errorf("%q: wrapping lost text: %q", tt.line, parts)
		}
		for _, p := range parts[:len(parts)-1] {
			if strings.Count(p, `"`)%2 == 1 && !strings.Contains(tt.line, strings.Repeat("x", 50)) && len(p) < tt.width {
				t.Errorf("%q: broke inside a string: %q", tt.line, p)
			}
		}
	}
}

func TestWords(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "at once", time.Minute: "1 minute", 15 * time.Minute: "15 minutes", 90 * time.Minute: "1 hour 30 minutes",
		24 * time.Hour: "1 day", 30 * time.Second: "30 seconds",
	} {
		if got := forWords(d); got != want {
			t.Errorf("forWords(%s) = %q, want %q", d, got, want)
		}
	}
	r := rulepack.Rule{For: 5 * time.Minute, Watermark: &rulepack.Watermark{Direction: rulepack.Below}}
	if got := firesWhen(r); got != "When the value is below its watermark without interruption for 5 minutes." {
		t.Errorf("firesWhen: %q", got)
	}
	if got := firesWhen(rulepack.Rule{}); got != "When the condition is true, at once." {
		t.Errorf("firesWhen: %q", got)
	}
}

func TestEmptyInput(t *testing.T) {
	var h, p bytes.Buffer
	if err := HTML(&h, Input{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h.String(), defaultTitle) {
		t.Error("no default title")
	}
	if err := PDF(&p, Input{}); err != nil {
		t.Fatal(err)
	}
	if pages, err := pageTexts(p.Bytes()); err != nil || len(pages) < 2 {
		t.Errorf("empty manual: %d pages, %v", len(pages), err)
	}
}

func FuzzPageTexts(f *testing.F) {
	var b bytes.Buffer
	if err := PDF(&b, Input{Title: "t"}); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add([]byte("%PDF-1.3\n1 0 obj\n<</Type /Pages /Kids [3 0 R]>>\nendobj\n3 0 obj\n<</Type /Page /Contents 4 0 R>>\nendobj\n4 0 obj\n<</Length 20>>\nstream\nBT (a\\(b\\)) Tj ET\nendstream\n"))
	f.Add([]byte("%PDF-"))
	f.Fuzz(func(t *testing.T, pdf []byte) {
		pages, err := pageTexts(pdf)
		if err == nil && len(pages) == 0 {
			t.Fatal("no error and no pages")
		}
	})
}

// plainFirst is the text of the first block of md.
func plainFirst(md string) string {
	src := []byte(md)
	first := rulepack.ParseMarkdown(src).FirstChild()
	if first == nil {
		return ""
	}
	return inlineText(first, src)
}

// paragraphs are the texts of md's paragraphs and list items, as a reader sees them.
func paragraphs(md string) []string {
	src := []byte(md)
	var out []string
	var rec func(n ast.Node)
	rec = func(n ast.Node) {
		switch n.(type) {
		case *ast.Paragraph, *ast.TextBlock:
			out = append(out, fold(inlineText(n, src)))
			return
		}
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			rec(c)
		}
	}
	rec(rulepack.ParseMarkdown(src))
	return out
}

func walk(n *html.Node, f func(*html.Node)) {
	f(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

// textOf is the text of n as a browser lays it out: inline elements run together, block elements
// and table cells are separated.
func textOf(n *html.Node) string {
	var b strings.Builder
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			rec(c)
		}
		if n.Type == html.ElementNode {
			switch n.Data {
			case "p", "li", "td", "th", "tr", "h1", "h2", "h3", "h4", "pre", "div", "section", "article", "dd", "dt", "ol", "ul", "table":
				b.WriteByte(' ')
			}
		}
	}
	rec(n)
	return b.String()
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}
