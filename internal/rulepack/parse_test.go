package rulepack

import (
	"errors"
	"strings"
	"testing"

	"github.com/serversage/sage/internal/config"
)

// rule is a one-rule file; the alert is on line 4, expr on line 5, labels from line 6, and the
// annotations (given one per line, already indented) from line 9.
func rule(alert, expr, severity string, annotations ...string) string {
	var b strings.Builder
	b.WriteString("groups:\n  - name: g\n    rules:\n")
	b.WriteString("      - alert: " + alert + "\n")
	b.WriteString("        expr: '" + expr + "'\n")
	b.WriteString("        labels:\n          severity: " + severity + "\n          component: cpu\n")
	b.WriteString("        annotations:\n          summary: s\n")
	for _, a := range annotations {
		b.WriteString("          " + a + "\n")
	}
	return b.String()
}

const hostWM = `m > on(client, host) group_left() sage_watermark{alert="A", scope="host"}`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string // each must be one of the problems, exactly "file:line: field: message" or its prefix
	}{
		{
			name:  "bad PromQL carries the parser's message",
			files: map[string]string{"a.yml": rule("A", "rate(m[5m]", "warning")},
			want:  []string{"a.yml:5: groups[0].rules[0].expr: could not parse expression: 1:11: parse error: unclosed left parenthesis"},
		},
		{
			name:  "watermark annotation missing",
			files: map[string]string{"a.yml": rule("A", hostWM, "warning")},
			want:  []string{"a.yml:9: groups[0].rules[0].annotations: the watermark annotation (the default value) is required"},
		},
		{
			name:  "negative watermark",
			files: map[string]string{"a.yml": rule("A", hostWM, "warning", `watermark: "-5"`)},
			want:  []string{"a.yml:11: groups[0].rules[0].annotations.watermark: must not be negative (-5)"},
		},
		{
			name:  "non-numeric watermark",
			files: map[string]string{"a.yml": rule("A", hostWM, "warning", `watermark: "ninety"`)},
			want:  []string{`a.yml:11: groups[0].rules[0].annotations.watermark: "ninety" is not a number`},
		},
		{
			name:  "infinite watermark",
			files: map[string]string{"a.yml": rule("A", hostWM, "warning", `watermark: "+Inf"`)},
			want:  []string{`a.yml:11: groups[0].rules[0].annotations.watermark: must be a finite number, not "+Inf"`},
		},
		{
			name:  "unknown severity",
			files: map[string]string{"a.yml": rule("A", "up == 0", "page")},
			want:  []string{`a.yml:7: groups[0].rules[0].labels.severity: unknown severity "page": one of critical, warning, info`},
		},
		{
			name:  "missing severity",
			files: map[string]string{"a.yml": strings.Replace(rule("A", "up == 0", "x"), "          severity: x\n", "", 1)},
			want:  []string{`a.yml:6: groups[0].rules[0].labels: the severity label is required`},
		},
		{
			name: "duplicate alert in one file",
			files: map[string]string{"a.yml": rule("A", "up == 0", "info") +
				"      - alert: A\n        expr: up == 1\n        labels: {severity: info}\n"},
			want: []string{`a.yml:11: groups[0].rules[1].alert: duplicate alert "A" (also at a.yml:4)`},
		},
		{
			name:  "duplicate alert across files",
			files: map[string]string{"a.yml": rule("A", "up == 0", "info"), "b.yml": rule("A", "up == 1", "info")},
			want:  []string{`b.yml:4: groups[0].rules[0].alert: duplicate alert "A" (also at a.yml:4)`},
		},
		{
			name:  "watermark without sage_watermark",
			files: map[string]string{"a.yml": rule("A", "m > 90", "warning", `watermark: "90"`)},
			want:  []string{"a.yml:11: groups[0].rules[0].annotations.watermark: set, but the expression does not compare with sage_watermark"},
		},
		{
			name:  "selector names another alert",
			files: map[string]string{"a.yml": rule("A", `m > on(client, host) group_left() sage_watermark{alert="B", scope="host"}`, "warning", `watermark: "1"`)},
			want:  []string{`a.yml:5: groups[0].rules[0].expr: sage_watermark must select alert="A", this rule's name`},
		},
		{
			name:  "comparison without on()",
			files: map[string]string{"a.yml": rule("A", `m > sage_watermark{alert="A", scope="host"}`, "warning", `watermark: "1"`)},
			want:  []string{`a.yml:5: groups[0].rules[0].expr: a comparison with sage_watermark{scope="host"} must match on(client, host)`},
		},
		{
			name:  "comparison without group_left",
			files: map[string]string{"a.yml": rule("A", `m > on(client, host) sage_watermark{alert="A", scope="host"}`, "warning", `watermark: "1"`)},
			want:  []string{`a.yml:5: groups[0].rules[0].expr: a comparison with sage_watermark needs group_left()`},
		},
		{
			name:  "bool comparison",
			files: map[string]string{"a.yml": rule("A", `m > bool on(client, host) group_left() sage_watermark{alert="A", scope="host"}`, "warning", `watermark: "1"`)},
			want:  []string{`a.yml:5: groups[0].rules[0].expr: a comparison with sage_watermark must filter, not use bool`},
		},
		{
			name:  "equality comparison",
			files: map[string]string{"a.yml": rule("A", `m == on(client, host) group_left() sage_watermark{alert="A", scope="host"}`, "warning", `watermark: "1"`)},
			want:  []string{`a.yml:5: groups[0].rules[0].expr: compare with sage_watermark using >, >=, < or <=, not ==`},
		},
		{
			name: "unit scope without watermark_per",
			files: map[string]string{"a.yml": rule("A", `(m > on(client, host, mountpoint) group_left() sage_watermark{alert="A", scope="mountpoint"}) or `+hostWM,
				"warning", `watermark: "1"`)},
			want: []string{`a.yml:5: groups[0].rules[0].expr: sage_watermark scope "mountpoint" needs the annotation watermark_per: mountpoint`},
		},
		{
			name:  "watermark_per without its comparison",
			files: map[string]string{"a.yml": rule("A", hostWM, "warning", `watermark: "1"`, "watermark_per: mountpoint")},
			want:  []string{`a.yml:5: groups[0].rules[0].expr: watermark_per is "mountpoint", but no comparison with sage_watermark{scope="mountpoint"}`},
		},
		{
			name:  "watermark_per names a target label",
			files: map[string]string{"a.yml": rule("A", hostWM, "warning", `watermark: "1"`, "watermark_per: client")},
			want:  []string{`a.yml:12: groups[0].rules[0].annotations.watermark_per: "client" identifies the target or the watermark`},
		},
		{
			name:  "unknown unit",
			files: map[string]string{"a.yml": rule("A", hostWM, "warning", `watermark: "1"`, "watermark_unit: percent")},
			want:  []string{`a.yml:12: groups[0].rules[0].annotations.watermark_unit: unknown unit "percent": one of %, bytes`},
		},
		{
			name: "directions disagree",
			files: map[string]string{"a.yml": rule("A", `(m > on(client, host) group_left() sage_watermark{alert="A", scope="host"}) or (n < on(client, host) group_left() sage_watermark{alert="A", scope="host"})`,
				"warning", `watermark: "1"`)},
			want: []string{`a.yml:5: groups[0].rules[0].expr: the comparisons with sage_watermark disagree`},
		},
		{
			name:  "no host-level comparison",
			files: map[string]string{"a.yml": rule("A", `m unless on(client, host) sage_watermark{alert="A", scope="host"}`, "warning", `watermark: "1"`)},
			want:  []string{`a.yml:5: groups[0].rules[0].expr: needs a comparison with sage_watermark{alert="A", scope="host"}`},
		},
		{
			name:  "unknown field",
			files: map[string]string{"a.yml": strings.Replace(rule("A", "up == 0", "info"), "        labels:", "        label: {}\n        labels:", 1)},
			want:  []string{"a.yml:6: label: unknown field"},
		},
		{
			name:  "YAML syntax",
			files: map[string]string{"a.yml": "groups:\n  - name: g\n    rules: [\n"},
			want:  []string{"a.yml:3: did not find expected node content"},
		},
		{
			name:  "bad template in an annotation",
			files: map[string]string{"a.yml": rule("A", "up == 0", "info", `description: "{{ $value "`)},
			want:  []string{`a.yml:11: groups[0].rules[0].annotations.description: annotation "description": template:`},
		},
		{
			name:  "empty group name",
			files: map[string]string{"a.yml": strings.Replace(rule("A", "up == 0", "info"), "name: g", `name: ""`, 1)},
			want:  []string{"a.yml:2: groups[0].name: Groupname must not be empty"},
		},
		{
			name:  "repeated group name",
			files: map[string]string{"a.yml": rule("A", "up == 0", "info") + "  - name: g\n    rules: []\n"},
			want:  []string{`a.yml:11: groups[1].name: groupname: "g" is repeated in the same file`},
		},
		{
			name:  "no groups",
			files: map[string]string{"a.yml": "groups: []\n"},
			want:  []string{"a.yml:1: groups: no rule groups"},
		},
		{
			name:  "two documents",
			files: map[string]string{"a.yml": rule("A", "up == 0", "info") + "---\n" + rule("B", "up == 0", "info")},
			want:  []string{"a.yml: more than one YAML document"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string][]byte{}
			for k, v := range tt.files {
				files[k] = []byte(v)
			}
			_, err := Parse(files, nil)
			if err == nil {
				t.Fatal("no error")
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a *config.Error", err, err)
			}
			for _, w := range tt.want {
				found := false
				for _, p := range ce.Problems {
					if strings.HasPrefix(p.String(), w) {
						found = true
					}
				}
				if !found {
					t.Errorf("want a problem starting with\n  %s\ngot:\n%s", w, indentLines(err.Error()))
				}
			}
		})
	}
}

func indentLines(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

func TestWatermarkAnalysis(t *testing.T) {
	tests := []struct {
		name        string
		expr        string
		annotations []string
		want        *Watermark
	}{
		{"not a threshold", "up == 0", nil, nil},
		{"above", hostWM, []string{`watermark: "90"`, `watermark_unit: "%"`}, &Watermark{Default: 90, Unit: "%", Direction: Above}},
		{"at or above", `m >= on(client, host) group_left() sage_watermark{alert="A", scope="host"}`, []string{`watermark: "0"`}, &Watermark{Direction: Above}},
		{"below", `m < on(client, host) group_left() sage_watermark{alert="A", scope="host"}`, []string{`watermark: "1"`}, &Watermark{Default: 1, Direction: Below}},
		{
			"watermark on the left: the direction turns",
			`sage_watermark{alert="A", scope="host"} < on(client, host) group_right() m`, []string{`watermark: "5"`, "watermark_unit: s"},
			&Watermark{Default: 5, Unit: "s", Direction: Above},
		},
		{
			"in parentheses, by __name__",
			`m <= on(client, host) group_left() ({__name__="sage_watermark", alert="A", scope="host"})`, []string{`watermark: "2.5"`, "watermark_unit: ratio"},
			&Watermark{Default: 2.5, Unit: "ratio", Direction: Below},
		},
		{
			"per unit",
			`(m > on(client, host, group) group_left() sage_watermark{alert="A", scope="group"}) or ((m unless on(client, host, group) sage_watermark{alert="A", scope="group"}) > on(client, host) group_left() sage_watermark{alert="A", scope="host"})`,
			[]string{`watermark: "10000"`, "watermark_unit: count", "watermark_per: group"},
			&Watermark{Default: 10000, Unit: "count", Per: "group", Direction: Above},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(map[string][]byte{"a.yml": []byte(rule("A", tt.expr, "warning", tt.annotations...))}, nil)
			if err != nil {
				t.Fatal(err)
			}
			r, ok := p.Rule("A")
			if !ok {
				t.Fatal("rule A missing")
			}
			switch {
			case tt.want == nil && r.Watermark != nil:
				t.Errorf("watermark %+v, want none", *r.Watermark)
			case tt.want != nil && (r.Watermark == nil || *r.Watermark != *tt.want):
				t.Errorf("watermark %+v, want %+v", r.Watermark, *tt.want)
			}
		})
	}
}

func TestParseKeepsFilesAndOrder(t *testing.T) {
	files := map[string][]byte{
		"b.yml": []byte(rule("B", "up == 0", "info")),
		"a.yml": []byte(rule("A", "up == 0", "critical") + "      - alert: C\n        expr: up == 2\n        labels: {severity: warning}\n      - record: r\n        expr: up\n"),
	}
	p, err := Parse(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range p.Rules() {
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != "A,C,B" {
		t.Errorf("order %v, want A,C,B (file name, then file order; recording rules are not alerts)", names)
	}
	if c, _ := p.Rule("C"); c.Component != "g" || c.HasRunbook() {
		t.Errorf("rule C: component %q (want the group's name), runbook %v", c.Component, c.HasRunbook())
	}
	got := p.Files()
	if len(got) != 2 || string(got["a.yml"]) != string(files["a.yml"]) {
		t.Errorf("Files() does not return the files as given")
	}
	got["a.yml"][0] = 'X'
	if p.Files()["a.yml"][0] == 'X' {
		t.Errorf("Files() shares its storage with the caller")
	}
}

func FuzzParse(f *testing.F) {
	files, _ := Shipped()
	for _, b := range files {
		if len(b) < 2000 { // large seeds make every minimisation slow
			f.Add(string(b))
		}
	}
	f.Add(rule("A", hostWM, "warning", `watermark: "1"`))
	f.Add(rule("A", "rate(m[5m]", "page"))
	f.Add("groups:\n  - name: g\n    rules: [\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, content string) {
		p, err := Parse(map[string][]byte{"f.yml": []byte(content)}, nil)
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error %v is not a *config.Error with problems", err)
			}
			for _, pr := range ce.Problems {
				if pr.File != "f.yml" || pr.Msg == "" {
					t.Fatalf("problem without file or message: %+v", pr)
				}
			}
			return
		}
		for _, r := range p.Rules() {
			if r.Name == "" || !strings.Contains(content, r.Name) {
				t.Fatalf("rule %q not from the input", r.Name)
			}
			if r.Watermark != nil && (r.Watermark.Default < 0 || (r.Watermark.Direction != Above && r.Watermark.Direction != Below)) {
				t.Fatalf("invalid watermark accepted: %+v", *r.Watermark)
			}
		}
		// What parsed once parses again, to the same rules.
		again, err := Parse(p.Files(), nil)
		if err != nil || len(again.Rules()) != len(p.Rules()) {
			t.Fatalf("reparsing Files(): %v", err)
		}
	})
}
