package manual

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"

	"github.com/serversage/sage/internal/rulepack"
)

//go:embed manual.html
var htmlSource string

// The runbooks' Markdown is rendered by rulepack.RenderMarkdown, which drops raw HTML and
// dangerous links: the page has no script and stays safe with users' runbooks.
var htmlTemplate = template.Must(template.New("manual").Funcs(template.FuncMap{
	"md": rulepack.RenderMarkdown,
}).Parse(htmlSource))

// HTML writes the manual as one self-contained HTML page (inline CSS, no script, no external
// resources) laid out for reading on screen and for printing.
func HTML(w io.Writer, in Input) error {
	d := build(in)
	data := struct {
		doc
		Severities  any
		GoldenRules []string
	}{d, severityNotes, goldenRules}
	if err := htmlTemplate.Execute(w, data); err != nil {
		return fmt.Errorf("manual: writing HTML: %w", err)
	}
	return nil
}
