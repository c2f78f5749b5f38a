package manual

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/johnfercher/maroto/v2"
	"github.com/johnfercher/maroto/v2/pkg/components/col"
	"github.com/johnfercher/maroto/v2/pkg/components/line"
	"github.com/johnfercher/maroto/v2/pkg/components/page"
	"github.com/johnfercher/maroto/v2/pkg/components/row"
	"github.com/johnfercher/maroto/v2/pkg/components/text"
	"github.com/johnfercher/maroto/v2/pkg/config"
	"github.com/johnfercher/maroto/v2/pkg/consts/align"
	"github.com/johnfercher/maroto/v2/pkg/consts/breakline"
	"github.com/johnfercher/maroto/v2/pkg/consts/fontstyle"
	"github.com/johnfercher/maroto/v2/pkg/consts/pagesize"
	"github.com/johnfercher/maroto/v2/pkg/core"
	"github.com/johnfercher/maroto/v2/pkg/props"
	"github.com/yuin/goldmark/ast"
	east "github.com/yuin/goldmark/extension/ast"
	"golang.org/x/text/encoding/charmap"

	"github.com/serversage/sage/internal/rulepack"
)

// PDF writes the manual as an A4 PDF with real (searchable) text, numbered pages and a table of
// contents with page numbers. It is built twice: the first build tells on which page every
// chapter and alert starts, the second prints those pages in the contents; the contents' rows
// have the same height either way, so the pages do not move.
func PDF(w io.Writer, in Input) error {
	d := build(in)
	first, err := renderPDF(d, nil, false)
	if err != nil {
		return err
	}
	pages, err := pageTexts(first)
	if err != nil {
		return fmt.Errorf("manual: reading back the first pass: %w", err)
	}
	// Every key is first printed in the contents; the body starts after the page that lists the
	// last one, and its entries come in the contents' order.
	keys := tocKeys(d)
	from := 0
	for i, p := range pages {
		if strings.Contains(p, keys[len(keys)-1]) {
			from = i + 1
			break
		}
	}
	starts := map[string]int{}
	for _, key := range keys {
		for i := from; i < len(pages); i++ {
			if containsLine(pages[i], key) {
				starts[key] = i + 1
				from = i
				break
			}
		}
	}
	out, err := renderPDF(d, starts, true)
	if err != nil {
		return err
	}
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("manual: writing PDF: %w", err)
	}
	return nil
}

// containsLine reports whether one of the lines of text is line.
func containsLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// The core fonts, named so that maroto does not recognise them: for the names it knows it builds
// gofpdf's UTF-8 to WinAnsi translator again for every piece of text it measures or draws, which
// was 90 % of the time of writing the manual (8 s of CPU). gofpdf itself lower-cases the name and
// finds its core font; the text is translated once, by winAnsi, when its component is made.
const (
	fontSans = "Helvetica"
	fontMono = "Courier"
)

// winAnsi encodes s in the core fonts' encoding (Windows-1252); a character it lacks becomes "?".
func winAnsi(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if c, ok := charmap.Windows1252.EncodeRune(r); ok {
			b = append(b, c)
		} else {
			b = append(b, '?')
		}
	}
	return string(b)
}

func textRow(s string, p props.Text) core.Row { return text.NewAutoRow(winAnsi(s), p) }

func textCol(size int, s string, p props.Text) core.Col { return text.NewCol(size, winAnsi(s), p) }

func textComp(s string, p props.Text) core.Component { return text.New(winAnsi(s), p) }

// Layout, in millimetres and points.
const (
	pageWidth = 210.0
	marginX   = 16.0
	// Courier's glyphs are 0.6 em wide, which code() uses to wrap lines to the column.
	codeFontSize = 7.5
)

var (
	grey      = &props.Color{Red: 90, Green: 98, Blue: 112}
	codeBack  = &props.Color{Red: 243, Green: 245, Blue: 248}
	sevColour = map[string]*props.Color{
		rulepack.SeverityCritical: {Red: 180, Green: 35, Blue: 24},
		rulepack.SeverityWarning:  {Red: 181, Green: 71, Blue: 8},
		rulepack.SeverityInfo:     {Red: 23, Green: 92, Blue: 211},
	}
)

// tocKeys are the texts that mark where each contents entry starts: the headings as printed.
func tocKeys(d doc) []string {
	keys := []string{howToTitle}
	for _, ch := range d.Chapters {
		keys = append(keys, chapterHeading(ch))
		for _, a := range ch.Alerts {
			keys = append(keys, alertHeading(a))
		}
	}
	for _, ap := range d.Appendices {
		keys = append(keys, appendixHeading(ap))
	}
	return keys
}

const howToTitle = "How to use this manual"

func chapterHeading(ch chapter) string { return fmt.Sprintf("%d. %s", ch.Number, ch.Title) }
func alertHeading(a alert) string      { return a.Number + "  " + a.Rule.Name }
func appendixHeading(ap appendix) string {
	return "Appendix " + ap.Letter + ". Watermarks of " + ap.Name
}

// pdfDoc accumulates rows into a maroto document.
type pdfDoc struct {
	m core.Maroto
}

func (p *pdfDoc) add(rows ...core.Row) { p.m.AddRows(rows...) }

// newPage starts a page with rows.
func (p *pdfDoc) newPage(rows ...core.Row) { p.m.AddPages(page.New().Add(rows...)) }

// keep starts a new page unless height millimetres still fit on this one, so that a heading is
// not left alone at the foot of a page.
func (p *pdfDoc) keep(height float64, rows ...core.Row) {
	if p.m.FitlnCurrentPage(height) {
		p.add(rows...)
	} else {
		p.newPage(rows...)
	}
}

func renderPDF(d doc, starts map[string]int, compress bool) ([]byte, error) {
	b := config.NewBuilder()
	if !d.generated.IsZero() {
		b = b.WithCreationDate(d.generated) // the same input gives the same document
	}
	cfg := b.
		WithPageSize(pagesize.A4).
		WithLeftMargin(marginX).WithRightMargin(marginX).WithTopMargin(15).WithBottomMargin(12).
		WithDefaultFont(&props.Font{Family: fontSans, Size: 10}).
		WithPageNumber(props.PageNumber{Pattern: "Page {current} of {total}", Place: props.RightBottom, Size: 8, Color: grey}).
		WithTitle(d.Title, true).
		WithSubject("L1 training manual", false).
		WithCreator("ServerSage", false).
		WithCompression(compress).
		WithSequentialMode().
		Build()
	p := &pdfDoc{m: maroto.New(cfg)}

	// Cover.
	p.add(row.New(60))
	p.add(textRow(d.Title, props.Text{Size: 26, Style: fontstyle.Bold, Bottom: 4}))
	p.add(textRow("L1 training manual: every alert, what it means, and what to do", props.Text{Size: 14, Color: grey, Bottom: 14}))
	if d.Generated != "" {
		p.add(fact("Generated", d.Generated))
	}
	p.add(fact("Alerts", fmt.Sprintf("%d (%d critical), in %d chapters", d.Alerts, d.Critical, len(d.Chapters))))
	if len(d.Appendices) > 0 {
		p.add(fact("Clients", fmt.Sprintf("%d with their own watermarks (appendices)", len(d.Appendices))))
	}

	// Contents.
	p.newPage(heading1("Contents"))
	entry := func(label, key string, indent bool, bold bool) {
		num := "--"
		if n, ok := starts[key]; ok {
			num = fmt.Sprint(n)
		}
		style := fontstyle.Normal
		if bold {
			style = fontstyle.Bold
		}
		left := 0.0
		if indent {
			left = 6
		}
		p.add(row.New(5.2).Add(
			textCol(10, label, props.Text{Left: left, Style: style, Size: 9.5}),
			textCol(2, num, props.Text{Align: align.Right, Style: style, Size: 9.5}),
		))
	}
	entry(howToTitle, howToTitle, false, true)
	for _, ch := range d.Chapters {
		entry(chapterHeading(ch), chapterHeading(ch), false, true)
		for _, a := range ch.Alerts {
			entry(alertHeading(a), alertHeading(a), true, false)
		}
	}
	for _, ap := range d.Appendices {
		entry(appendixHeading(ap), appendixHeading(ap), false, true)
	}

	// How to use this manual.
	p.newPage(heading1(howToTitle))
	p.add(para("Every alert ServerSage can raise has an entry here: what it watches, when it fires, its default watermark, and its runbook. " +
		"The runbook is the same text you see on the alert's page and in its notification, so what you learn here is what you follow on shift."))
	p.keep(30, heading2("When an alert arrives"))
	for i, s := range []string{
		"Acknowledge it in ServerSage (the alert's page, or the acknowledge link in the email). This tells the team someone is on it and stops the automatic escalation.",
		"Open its runbook and read \"What it means\" and \"How to confirm\".",
		"Follow the L1 action plan step by step, in order, pasting each command's output into the ticket.",
		"Escalate as \"When to escalate\" says: to L2 (and L2 to L3) within the times given, counted from when the alert fired. Unacknowledged alerts escalate by themselves on the client's escalation policy.",
		"Close the loop: when the alert resolves, note the time and what fixed it in the ticket.",
	} {
		p.add(numbered(i+1, s))
	}
	p.keep(40, heading2("Severities"))
	for _, s := range severityNotes {
		p.add(row.New().Add(
			textCol(2, strings.ToUpper(s.Severity), props.Text{Style: fontstyle.Bold, Size: 9, Color: sevColour[s.Severity], Top: 1}),
			textCol(10, s.Meaning+" "+s.Response, props.Text{Size: 9.5, Bottom: 2, Top: 1}),
		))
	}
	p.keep(40, heading2("Golden rules"))
	for i, s := range goldenRules {
		p.add(numbered(i+1, s))
	}
	p.keep(30, heading2("Watermarks"))
	p.add(para("Most alerts are thresholds: they compare a measured value with a watermark. Each alert ships with a default watermark, shown in its entry. " +
		"A client, a site, a host or a service can have its own watermark, and some alerts can be set per unit (a file system's mountpoint, a process group, a port); " +
		"the most specific one applies. The appendices list every watermark that differs from the default, per client."))
	p.add(para("In the alert's labels, client, site and host say where it fired; other labels (mountpoint, device, group, port) say which part. " +
		"In the runbooks, <mountpoint>, <group> and the like stand for those values."))

	// Chapters.
	for _, ch := range d.Chapters {
		p.newPage(heading1(chapterHeading(ch)))
		if ch.Intro != "" {
			p.add(para(ch.Intro))
		}
		for _, a := range ch.Alerts {
			writeAlert(p, a)
		}
	}

	// Appendices.
	for _, ap := range d.Appendices {
		p.newPage(heading1(appendixHeading(ap)))
		if len(ap.Rows) == 0 {
			p.add(para(ap.Name + " uses the default watermarks everywhere."))
			continue
		}
		p.add(para("The watermarks that differ from the defaults for " + ap.Name + ". Where several apply to a host, the most specific wins."))
		head := props.Text{Style: fontstyle.Bold, Size: 9, Color: grey}
		p.add(row.New().Add(textCol(4, "Alert", head), textCol(4, "Applies to", head), textCol(2, "Watermark", head), textCol(2, "Default", head)))
		for _, r := range ap.Rows {
			name := r.Alert
			if !r.Known {
				name += " (not in this rule set)"
			}
			cell := props.Text{Size: 9, Top: 1, Bottom: 1}
			p.add(row.New().Add(
				textCol(4, name, cell),
				textCol(4, r.Scope, cell),
				textCol(2, r.Value, props.Text{Size: 9, Top: 1, Bottom: 1, Style: fontstyle.Bold}),
				textCol(2, r.Default, cell),
			))
		}
	}

	doc, err := p.m.Generate()
	if err != nil {
		return nil, fmt.Errorf("manual: generating PDF: %w", err)
	}
	return doc.GetBytes(), nil
}

func writeAlert(p *pdfDoc, a alert) {
	r := a.Rule
	p.keep(60,
		line.NewRow(4, props.Line{Color: grey, Thickness: 0.2, SizePercent: 100}),
		row.New().Add(
			textCol(9, alertHeading(a), props.Text{Size: 13, Style: fontstyle.Bold}),
			textCol(3, strings.ToUpper(r.Severity), props.Text{Size: 10, Style: fontstyle.Bold, Align: align.Right, Color: sevColour[r.Severity], Top: 1}),
		),
		row.New(2),
	)
	p.add(fact("Watches", a.Watches))
	p.add(fact("Fires", a.FiresWhen))
	if a.Watermark != "" {
		p.add(fact("Default watermark", a.Watermark))
	}
	p.add(fact("For", a.For))
	p.add(fact("Component", fmt.Sprintf("%s (group %s, %s)", r.Component, r.Group, r.File)))
	p.add(fact("PromQL", ""))
	p.add(code(r.Expr, 0)...)
	if !r.HasRunbook() {
		p.add(para("This alert has no runbook yet. Acknowledge it, record the alert's labels and value in the ticket, and escalate to L2 within 30 minutes (at once if it is critical)."))
		return
	}
	rb := r.Runbook
	section := func(title, md string) {
		p.keep(25, heading3(title))
		p.add(markdownRows(md, 0)...)
	}
	section(rulepack.SectionMeaning, rb.Meaning)
	section(rulepack.SectionConfirm, rb.Confirm)
	p.keep(25, heading3(rulepack.SectionActionPlan))
	for i, step := range rb.ActionPlan {
		p.add(stepRows(i+1, step)...)
	}
	section(rulepack.SectionEscalate, rb.Escalate)
	section(rulepack.SectionNotes, rb.Notes)
}

func bodyText() props.Text {
	return props.Text{Size: 10, Bottom: 1.5, BreakLineStrategy: breakline.EmptySpaceStrategy}
}

func heading1(s string) core.Row {
	return textRow(s, props.Text{Size: 20, Style: fontstyle.Bold, Bottom: 5})
}

func heading2(s string) core.Row {
	return textRow(s, props.Text{Size: 13, Style: fontstyle.Bold, Top: 4, Bottom: 2})
}

func heading3(s string) core.Row {
	return textRow(strings.ToUpper(s), props.Text{Size: 9, Style: fontstyle.Bold, Color: grey, Top: 3, Bottom: 1.5})
}

func para(s string) core.Row { return textRow(s, bodyText()) }

func fact(label, value string) core.Row {
	return row.New().Add(
		textCol(3, label, props.Text{Size: 9, Style: fontstyle.Bold, Color: grey, Top: 0.6}),
		textCol(9, value, props.Text{Size: 9.5, Bottom: 1.2, BreakLineStrategy: breakline.EmptySpaceStrategy}),
	)
}

func numbered(n int, s string) core.Row {
	return row.New().Add(
		textCol(1, fmt.Sprintf("%d.", n), props.Text{Align: align.Right, Right: 2, Style: fontstyle.Bold}),
		textCol(11, s, bodyText()),
	)
}

func bullet(s string, indent int) core.Row {
	return row.New().Add(
		textCol(1+indent, "-", props.Text{Align: align.Right, Right: 2}),
		textCol(11-indent, s, bodyText()),
	)
}

// code is a block of code, one row a line, wrapped to the column by wrapCode; indentation is kept
// as no-break spaces, which the line breaker does not split on. indent is in grid columns (of 12).
func code(src string, indent int) []core.Row {
	width := (pageWidth-2*marginX)*float64(12-indent)/12 - 5
	columns := int(width / (0.6 * codeFontSize * 25.4 / 72))
	var rows []core.Row
	lines := strings.Split(strings.TrimRight(src, "\n"), "\n")
	for i, l := range lines {
		for _, part := range wrapCode(l, columns) {
			trimmed := strings.TrimLeft(part, " ")
			part = strings.Repeat("\u00a0", len(part)-len(trimmed)) + trimmed
			if part == "" {
				part = "\u00a0"
			}
			tp := props.Text{Family: fontMono, Size: codeFontSize, Left: 2, Right: 2, BreakLineStrategy: breakline.EmptySpaceStrategy}
			if i == 0 {
				tp.Top = 1
			}
			c := col.New(12 - indent).Add(textComp(part, tp)).WithStyle(&props.Cell{BackgroundColor: codeBack})
			if indent > 0 {
				rows = append(rows, row.New().Add(col.New(indent), c))
			} else {
				rows = append(rows, row.New().Add(c))
			}
		}
	}
	return append(rows, row.New(2))
}

// wrapCode splits a line of code that is longer than width at the last space outside quotes
// before the limit (PromQL and shell ignore the change), else hard; continuation lines are
// indented by four spaces more than the line.
func wrapCode(l string, width int) []string {
	if len(l) <= width {
		return []string{l}
	}
	indent := len(l) - len(strings.TrimLeft(l, " "))
	cont := strings.Repeat(" ", min(indent+4, width/2)) // continuation indent, leaving room to progress
	var out []string
	for len(l) > width {
		lead := len(l) - len(strings.TrimLeft(l, " "))
		cut, inQuote := -1, false
		for i := lead; i < width; i++ {
			switch l[i] {
			case '"', '\'', '`':
				inQuote = !inQuote
			case ' ':
				if !inQuote {
					cut = i
				}
			}
		}
		if cut <= lead {
			cut = width
			for cut > lead+1 && !utf8.RuneStart(l[cut]) { // not inside a character
				cut--
			}
		}
		out = append(out, strings.TrimRight(l[:cut], " "))
		rest := strings.TrimLeft(l[cut:], " ")
		if rest == "" {
			return out
		}
		l = cont + rest
	}
	return append(out, l)
}

// markdownRows turns Markdown (a runbook section) into rows: paragraphs, bullet and numbered
// lists, code blocks. Inline formatting is flattened to its text.
func markdownRows(md string, indent int) []core.Row {
	src := []byte(md)
	var rows []core.Row
	for n := rulepack.ParseMarkdown(src).FirstChild(); n != nil; n = n.NextSibling() {
		rows = append(rows, blockRows(n, src, indent)...)
	}
	return rows
}

// stepRows is a numbered step: its first paragraph carries the number, what follows (a code
// block, a sub-list) is indented under it.
func stepRows(n int, md string) []core.Row {
	src := []byte(md)
	first := rulepack.ParseMarkdown(src).FirstChild()
	rest := first
	label := ""
	switch first.(type) {
	case *ast.Paragraph, *ast.TextBlock:
		label, rest = inlineText(first, src), first.NextSibling()
	}
	rows := []core.Row{numbered(n, label)}
	for c := rest; c != nil; c = c.NextSibling() {
		rows = append(rows, blockRows(c, src, 1)...)
	}
	return rows
}

func blockRows(n ast.Node, src []byte, indent int) []core.Row {
	switch n := n.(type) {
	case *ast.Paragraph, *ast.TextBlock:
		s := inlineText(n, src)
		if indent > 0 {
			return []core.Row{row.New().Add(col.New(indent), textCol(12-indent, s, bodyText()))}
		}
		return []core.Row{para(s)}
	case *ast.Heading:
		return []core.Row{textRow(inlineText(n, src), props.Text{Size: 10, Style: fontstyle.Bold, Top: 2, Bottom: 1})}
	case *ast.FencedCodeBlock, *ast.CodeBlock:
		var b bytes.Buffer
		lines := n.Lines()
		for i := 0; i < lines.Len(); i++ {
			seg := lines.At(i)
			b.Write(seg.Value(src))
		}
		return code(b.String(), indent)
	case *ast.List:
		var rows []core.Row
		i := n.Start
		if i == 0 {
			i = 1
		}
		for item := n.FirstChild(); item != nil; item = item.NextSibling() {
			first := item.FirstChild()
			label := ""
			if first != nil {
				label = inlineText(first, src)
			}
			if n.IsOrdered() {
				rows = append(rows, row.New().Add(
					textCol(1+indent, fmt.Sprintf("%d.", i), props.Text{Align: align.Right, Right: 2}),
					textCol(11-indent, label, bodyText()),
				))
				i++
			} else {
				rows = append(rows, bullet(label, indent))
			}
			if first != nil {
				for c := first.NextSibling(); c != nil; c = c.NextSibling() {
					rows = append(rows, blockRows(c, src, min(indent+1, 4))...)
				}
			}
		}
		return rows
	case *ast.Blockquote:
		var rows []core.Row
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			rows = append(rows, blockRows(c, src, min(indent+1, 4))...)
		}
		return rows
	case *east.Table:
		var rows []core.Row
		for r := n.FirstChild(); r != nil; r = r.NextSibling() {
			var cells []string
			for c := r.FirstChild(); c != nil; c = c.NextSibling() {
				cells = append(cells, inlineText(c, src))
			}
			rows = append(rows, para(strings.Join(cells, "  |  ")))
		}
		return rows
	}
	return nil
}

// inlineText flattens a block's inline content: text, code spans and emphasis to their text,
// links to "text (url)", soft and hard line breaks to spaces.
func inlineText(n ast.Node, src []byte) string {
	var b strings.Builder
	var walk func(n ast.Node)
	walk = func(n ast.Node) {
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			switch c := c.(type) {
			case *ast.Text:
				b.Write(c.Segment.Value(src))
				if c.SoftLineBreak() || c.HardLineBreak() {
					b.WriteByte(' ')
				}
			case *ast.String:
				b.Write(c.Value)
			case *ast.CodeSpan:
				for t := c.FirstChild(); t != nil; t = t.NextSibling() {
					if tx, ok := t.(*ast.Text); ok {
						b.Write(tx.Segment.Value(src))
					}
				}
			case *ast.Link:
				before := b.Len()
				walk(c)
				if dest := string(c.Destination); dest != "" && b.Len() > before && !strings.Contains(b.String()[before:], dest) {
					b.WriteString(" (" + dest + ")")
				}
			case *ast.AutoLink:
				b.Write(c.URL(src))
			case *ast.RawHTML:
				// dropped, as the HTML renderer drops it
			default:
				walk(c)
			}
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}
