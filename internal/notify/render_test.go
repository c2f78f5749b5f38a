package notify

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n%s", name, got)
	}
}

func TestRenderEmailGolden(t *testing.T) {
	m, err := RenderEmail(sampleIncident())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "email-firing.txt", []byte(m.Text))
	golden(t, "email-firing.html", []byte(m.HTML))
}

func TestRenderEmailStatuses(t *testing.T) {
	resolved := sampleIncident()
	resolved.Status, resolved.EndsAt = StatusResolved, resolved.StartsAt.Add(42*time.Minute)
	acked := sampleIncident()
	acked.Status, acked.AckedBy = StatusAcknowledged, "jane"
	escalated := sampleIncident()
	escalated.Step, escalated.Tier, escalated.Escalated = 2, "L2", true
	bare := Incident{ID: "i1", Alert: "HostDown", Status: StatusFiring}
	tests := []struct {
		name        string
		inc         Incident
		subject     string
		textHas     []string
		textHasNot  []string
		htmlHasNot  []string
		headlineHas string
	}{
		{name: "resolved", inc: resolved,
			subject:    "[RESOLVED:CRITICAL] acme/db1 HostFilesystemSpaceLow /var 93% (watermark 90%)",
			textHas:    []string{"Resolved:  2026-11-21 10:42:00 UTC", "Status:    resolved"},
			textHasNot: []string{"ACKNOWLEDGE", "Action plan"},
			htmlHasNot: []string{">Acknowledge</a>", "<ol"}},
		{name: "acknowledged", inc: acked,
			subject:    "[ACKNOWLEDGED:CRITICAL] acme/db1 HostFilesystemSpaceLow /var 93% (watermark 90%)",
			textHas:    []string{"Acked by:  jane"},
			textHasNot: []string{"ACKNOWLEDGE:"},
			htmlHasNot: []string{">Acknowledge</a>"}},
		{name: "escalated", inc: escalated,
			subject: "[FIRING:CRITICAL] [L2] acme/db1 HostFilesystemSpaceLow /var 93% (watermark 90%)",
			textHas: []string{"Escalated to L2: HostFilesystemSpaceLow /var on acme/db1", "Action plan (L2):", "escalation step 2 (L2)"}},
		{name: "bare", inc: bare, subject: "[FIRING] HostDown",
			textHas:    []string{"HostDown\n", "Alert:     HostDown"},
			textHasNot: []string{"Runbook:", "Action plan", "ACKNOWLEDGE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := RenderEmail(tt.inc)
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject != tt.subject {
				t.Errorf("subject %q, want %q", m.Subject, tt.subject)
			}
			for _, s := range tt.textHas {
				if !strings.Contains(m.Text, s) {
					t.Errorf("text lacks %q:\n%s", s, m.Text)
				}
			}
			for _, s := range tt.textHasNot {
				if strings.Contains(m.Text, s) {
					t.Errorf("text has %q:\n%s", s, m.Text)
				}
			}
			for _, s := range tt.htmlHasNot {
				if strings.Contains(m.HTML, s) {
					t.Errorf("HTML has %q", s)
				}
			}
		})
	}
}

func TestRenderEmailEscapes(t *testing.T) {
	inc := sampleIncident()
	inc.Summary = `<script>alert(1)</script>`
	inc.Description = `<img src=x onerror=alert(1)>`
	inc.AckURL = `javascript:alert(1)`
	inc.Labels = map[string]string{"x": `"><b>`}
	inc.ActionPlan = []string{`<a href="http://evil">click</a>`}
	m, err := RenderEmail(inc)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script>", "<img", `href="javascript:`, `"><b>`, `<a href="http://evil">`} {
		if strings.Contains(m.HTML, bad) {
			t.Errorf("HTML contains unescaped %q", bad)
		}
	}
	if !strings.Contains(m.HTML, "&lt;script&gt;") {
		t.Error("summary not shown escaped")
	}
}

func TestSubjectLimits(t *testing.T) {
	inc := sampleIncident()
	inc.Title = strings.Repeat("x", 500) + "\r\nBcc: a@b"
	s := Subject(inc)
	if n := utf8.RuneCountInString(s); n > maxSubjectRunes {
		t.Errorf("subject has %d runes, limit %d", n, maxSubjectRunes)
	}
	if strings.ContainsAny(s, "\r\n") {
		t.Errorf("subject has a line break: %q", s)
	}
}

func TestRenderSMS(t *testing.T) {
	inc := sampleIncident()
	long := sampleIncident()
	long.Title = strings.Repeat("VeryLongAlertName ", 30)
	long.Summary = strings.Repeat("word ", 100)
	unicode := sampleIncident()
	unicode.Client, unicode.Summary = "Ångström – Café", "Disk “full” at 93 % → act now…"
	resolved := sampleIncident()
	resolved.Status = StatusResolved
	acked := sampleIncident()
	acked.Status, acked.AckedBy = StatusAcknowledged, "jane"
	esc := sampleIncident()
	esc.Escalated, esc.Tier = true, "L3"
	tests := []struct {
		name     string
		inc      Incident
		want     string // exact, when given
		has      []string
		segments int
	}{
		{name: "firing", inc: inc, segments: 1,
			want: "FIRING CRITICAL acme/db1 HostFilesystemSpaceLow /var 93% (wm 90%): Filesystem /var on db1 is 93% full Ack: https://sage.example.com/a/Xk3d9Qe7"},
		{name: "resolved", inc: resolved, segments: 1, want: "RESOLVED acme/db1 HostFilesystemSpaceLow /var 93% (wm 90%)"},
		{name: "acknowledged", inc: acked, segments: 1, want: "ACKED by jane: acme/db1 HostFilesystemSpaceLow /var 93% (wm 90%)"},
		{name: "escalated", inc: esc, segments: 1, has: []string{"FIRING CRITICAL L3 acme/db1"}},
		{name: "long text is cut, the link is kept", inc: long, segments: 2,
			has: []string{"FIRING CRITICAL acme/db1 VeryLongAlertName", "... Ack: https://sage.example.com/a/Xk3d9Qe7"}},
		{name: "outside GSM-7", inc: unicode, segments: 1,
			has: []string{"Ångström - Café/db1", `Disk "full" at 93 % -> act now...`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RenderSMS(tt.inc)
			if tt.want != "" && got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			for _, s := range tt.has {
				if !strings.Contains(got, s) {
					t.Errorf("%q lacks %q", got, s)
				}
			}
			if !isGSM(got) {
				t.Errorf("%q has characters outside GSM-7", got)
			}
			if n := smsSegments(got); n != tt.segments {
				t.Errorf("%d segments (%d septets), want %d: %q", n, septets(got), tt.segments, got)
			}
		})
	}
}

func isGSM(s string) bool {
	for _, r := range s {
		if _, ok := gsmSet[r]; !ok {
			return false
		}
	}
	return true
}

func TestRenderWebhookGolden(t *testing.T) {
	p := RenderWebhook(sampleIncident(), "chat")
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "webhook-firing.json", append(b, '\n'))

	inc := sampleIncident()
	inc.Status, inc.EndsAt = StatusResolved, inc.StartsAt.Add(time.Hour)
	inc.Alerts = []Alert{
		{Labels: map[string]string{"alertname": "A", "host": "db1", "mountpoint": "/var"}, StartsAt: inc.StartsAt, EndsAt: inc.EndsAt},
		{Status: "firing", Labels: map[string]string{"alertname": "A", "host": "db1", "mountpoint": "/srv"}, StartsAt: inc.StartsAt, Fingerprint: "given"},
	}
	p = RenderWebhook(inc, "chat")
	if p.Status != "resolved" || len(p.Alerts) != 2 {
		t.Fatalf("status %q with %d alerts", p.Status, len(p.Alerts))
	}
	if p.Alerts[0].Status != "resolved" || p.Alerts[1].Status != "firing" || p.Alerts[1].Fingerprint != "given" {
		t.Errorf("alert statuses/fingerprints: %+v", p.Alerts)
	}
	if want := map[string]string{"alertname": "A", "host": "db1"}; !equalMaps(p.CommonLabels, want) {
		t.Errorf("commonLabels %v, want %v", p.CommonLabels, want)
	}
	if p.Alerts[0].Fingerprint == "" || p.Alerts[0].Fingerprint == p.Alerts[1].Fingerprint {
		t.Errorf("fingerprint %q", p.Alerts[0].Fingerprint)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
