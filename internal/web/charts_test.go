package web

import (
	"slices"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// TestChartNeeds: each chart query names in needs exactly the metrics its expression selects, so
// that the series lookup never skips a query that would have drawn something, and never runs one
// that cannot.
func TestChartNeeds(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	for _, d := range chartDefs(hostSelector("acme", "web1"), "60s") {
		for _, q := range d.queries {
			expr, err := p.ParseExpr(q.expr)
			if err != nil {
				t.Fatalf("%s: %v", q.expr, err)
			}
			var selected []string
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok && !slices.Contains(selected, vs.Name) {
					selected = append(selected, vs.Name)
				}
				return nil
			})
			slices.Sort(selected)
			needs := slices.Sorted(slices.Values(q.needs))
			if !slices.Equal(selected, needs) {
				t.Errorf("chart %s: %s selects %v, needs says %v", d.id, q.expr, selected, needs)
			}
		}
	}
}
