package rulepack

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/serversage/sage/internal/config"
)

const goodRunbook = `# A

## What it means

The thing is broken.

## How to confirm

Run ` + "`check`" + `.

## L1 action plan

1. Acknowledge the alert.
2. Run ` + "`df -h /var`" + ` and paste
   the output into the ticket.
3. Look at the biggest directories:

   ` + "```" + `
   du -xh --max-depth=1 /var | sort -h
   ` + "```" + `
4. Escalate.

## When to escalate

To L2 within 30 minutes.

## Notes for L2/L3

Extend the volume.
`

func TestParseRunbook(t *testing.T) {
	rb, probs := ParseRunbook("A.md", "A", []byte(goodRunbook))
	if len(probs) > 0 {
		t.Fatalf("problems: %v", probs)
	}
	want := []string{
		"Acknowledge the alert.",
		"Run `df -h /var` and paste\nthe output into the ticket.",
		"Look at the biggest directories:\n\n```\ndu -xh --max-depth=1 /var | sort -h\n```",
		"Escalate.",
	}
	if !slices.Equal(rb.ActionPlan, want) {
		t.Errorf("steps:\n%q\nwant\n%q", rb.ActionPlan, want)
	}
	if rb.Meaning != "The thing is broken." || rb.Confirm != "Run `check`." || rb.Escalate != "To L2 within 30 minutes." || rb.Notes != "Extend the volume." {
		t.Errorf("sections: %+v", rb)
	}
}

func TestParseRunbookErrors(t *testing.T) {
	replace := func(old, new string) string {
		if !strings.Contains(goodRunbook, old) {
			panic(old)
		}
		return strings.Replace(goodRunbook, old, new, 1)
	}
	tests := []struct {
		name, md, want string
	}{
		{"wrong title", replace("# A", "# B"), `A.md:1: the title is "B"; it must be the alert's name, "A"`},
		{"no title", strings.TrimPrefix(goodRunbook, "# A\n\n"), "A.md:1: a runbook starts with a level-1 heading: # A"},
		{"missing section", replace("## Notes for L2/L3\n\nExtend the volume.\n", ""), `A.md:27: Notes for L2/L3: the section "## Notes for L2/L3" is missing`},
		{"empty section", replace("To L2 within 30 minutes.", ""), "A.md:23: When to escalate: is empty"},
		{"unknown section", replace("## How to confirm", "## How to Check"), `A.md:7: How to Check: unknown section`},
		{"duplicate section", replace("## When to escalate", "## What it means"), `A.md:23: What it means: a second "What it means" section (also at line 3)`},
		{"action plan not numbered", replace("1. Acknowledge", "- Acknowledge"), "A.md:11: L1 action plan: must be one numbered list and nothing else"},
		{"action plan without list", replace(goodRunbook[strings.Index(goodRunbook, "1. Ack"):strings.Index(goodRunbook, "## When")], "Do what seems right.\n\n"), "A.md:11: L1 action plan: needs a numbered list"},
		{"text before the sections", replace("# A\n", "# A\n\nIntro.\n"), "A.md:3: text before the first section is shown nowhere"},
		{"second title", replace("## Notes for L2/L3", "# Notes"), "A.md:27: a second level-1 heading"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, probs := ParseRunbook("A.md", "A", []byte(tt.md))
			for _, p := range probs {
				if strings.HasPrefix(p.String(), tt.want) {
					return
				}
			}
			t.Errorf("want a problem starting with %q, got %v", tt.want, probs)
		})
	}
}

func TestRunbooksBelongToRules(t *testing.T) {
	files := map[string][]byte{"a.yml": []byte(rule("A", "up == 0", "info"))}
	tests := []struct {
		name     string
		runbooks map[string][]byte
		want     string
	}{
		{"orphan", map[string][]byte{"A.md": []byte(goodRunbook), "B.md": []byte(strings.Replace(goodRunbook, "# A", "# B", 1))}, `B.md:1: no alert named "B"`},
		{"not Markdown", map[string][]byte{"A.txt": []byte(goodRunbook)}, "A.txt: a runbook is a Markdown file named <AlertName>.md"},
		{"two for one alert", map[string][]byte{"A.md": []byte(goodRunbook), "user/A.md": []byte(goodRunbook)}, `user/A.md:1: a second runbook for "A"`},
		{"invalid", map[string][]byte{"A.md": []byte("# A\n")}, `A.md:2: What it means: the section "## What it means" is missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(files, tt.runbooks)
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%s\nwant %q", err, tt.want)
			}
		})
	}
	p, err := Parse(files, map[string][]byte{"runbooks/A.md": []byte(goodRunbook)})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := p.Rule("A"); !r.HasRunbook() || len(r.Runbook.ActionPlan) != 4 {
		t.Errorf("runbook not attached: %+v", r.Runbook)
	}
}

func TestRenderRunbookHTMLIsSafe(t *testing.T) {
	md := strings.Replace(goodRunbook, "The thing is broken.",
		"The thing is <script>alert(1)</script> broken, see [here](javascript:alert(2)) and <img src=x onerror=alert(3)>.", 1)
	p, err := Parse(map[string][]byte{"a.yml": []byte(rule("A", "up == 0", "info"))}, map[string][]byte{"A.md": []byte(md)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := p.RenderRunbookHTML("A")
	if err != nil {
		t.Fatal(err)
	}
	s := string(h)
	for _, bad := range []string{"<script", "javascript:", "onerror", "<img"} {
		if strings.Contains(s, bad) {
			t.Errorf("rendered runbook contains %q:\n%s", bad, s)
		}
	}
	for _, want := range []string{"<h2>L1 action plan</h2>", "<ol>", "<code>df -h /var</code>", "<pre><code>du -xh"} {
		if !strings.Contains(s, want) {
			t.Errorf("rendered runbook lacks %q:\n%s", want, s)
		}
	}
	if _, err := p.RenderRunbookHTML("Nope"); err == nil {
		t.Error("no error for an unknown alert")
	}
}

func FuzzParseRunbook(f *testing.F) {
	_, runbooks := Shipped()
	f.Add(string(runbooks["ListenerDown.md"]))
	f.Add(goodRunbook)
	f.Add("# A\n## L1 action plan\n1.\n2. x\n")
	f.Add("# A\n```\n## What it means\n")
	f.Fuzz(func(t *testing.T, md string) {
		rb, probs := ParseRunbook("A.md", "A", []byte(md))
		for _, p := range probs {
			if p.File != "A.md" || p.Msg == "" {
				t.Fatalf("problem without file or message: %+v", p)
			}
		}
		if len(probs) > 0 {
			return
		}
		if rb.Meaning == "" || rb.Confirm == "" || rb.Escalate == "" || rb.Notes == "" || len(rb.ActionPlan) == 0 {
			t.Fatalf("accepted a runbook with an empty part: %+v", rb)
		}
		for i, s := range rb.ActionPlan {
			if strings.TrimSpace(s) == "" {
				t.Fatalf("step %d is empty", i+1)
			}
		}
		if _, err := RenderMarkdown(md); err != nil {
			t.Fatal(err)
		}
	})
}

// TestParseRunbookFenceInStep: a code block opened on a step's own line is code to its end, even
// when it holds something that looks like a section.
func TestParseRunbookFenceInStep(t *testing.T) {
	md := strings.Replace(goodRunbook, "4. Escalate.", "4. ```\n   ## What it means\n   ```\n5. Escalate.", 1)
	rb, probs := ParseRunbook("A.md", "A", []byte(md))
	if len(probs) > 0 {
		t.Fatalf("problems: %v", probs)
	}
	if len(rb.ActionPlan) != 5 || rb.ActionPlan[3] != "```\n## What it means\n```" || rb.Meaning != "The thing is broken." {
		t.Errorf("steps %q, meaning %q", rb.ActionPlan, rb.Meaning)
	}
}
