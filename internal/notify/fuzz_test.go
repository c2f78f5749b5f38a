package notify

import (
	"bytes"
	"mime"
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzParseEmailAddress(f *testing.F) {
	for _, s := range []string{"jane@example.com", "Jane Doe <jane@example.com>", "a@b", `"a b"@c.d`,
		"a@x.com, b@y.com", "<@>", "=?utf-8?q?J=C3=A9?= <j@e.com>", "jane@exa\r\nmple.com", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, err := ParseEmailAddress(s)
		if err != nil {
			return
		}
		if strings.ContainsAny(addr, " \r\n<>\"") || strings.Count(addr, "@") < 1 || len(addr) > maxAddressLen {
			t.Fatalf("ParseEmailAddress(%q) = %q", s, addr)
		}
		if again, err := ParseEmailAddress(addr); err != nil || again != addr {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", s, addr, again, err)
		}
	})
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

func FuzzParsePhoneNumber(f *testing.F) {
	for _, s := range []string{"+44 20 7946 0958", "+1 (555) 010-0199", "+4915901234567", "07700900123", "+0123456789",
		"+12", "+1234567890123456", "+44\u00a020", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParsePhoneNumber(s)
		if err != nil {
			return
		}
		if !e164.MatchString(n) {
			t.Fatalf("ParsePhoneNumber(%q) = %q, not E.164", s, n)
		}
		if again, err := ParsePhoneNumber(n); err != nil || again != n {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", s, n, again, err)
		}
	})
}

func FuzzParseStatusSet(f *testing.F) {
	for _, s := range []string{"", "200-299", "200,202", "2xx", "2xx,304", "200-", "-", "99", "600", "299-200", " 201 , 204 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := ParseStatusSet(s)
		if err != nil {
			return
		}
		if len(set) == 0 {
			t.Fatalf("ParseStatusSet(%q) is empty without an error", s)
		}
		for _, r := range set {
			if r[0] < 100 || r[1] > 599 || r[0] > r[1] {
				t.Fatalf("ParseStatusSet(%q) has range %v", s, r)
			}
			if !set.has(r[0]) || !set.has(r[1]) {
				t.Fatalf("set %v does not hold its own bounds", set)
			}
		}
	})
}

func FuzzParseGatewayTemplate(f *testing.F) {
	for _, s := range []string{defaultGatewayBody, `to={{urlquery .To}}&text={{urlquery .Body}}`,
		`{{if .Secret}}{{.Secret}}{{else}}none{{end}}`, `{{with .To}}{{json .}}{{end}}`, `{{.Nope}}`, `{{range 10}}x{{end}}`,
		`{{define "x"}}{{end}}`, `{{printf "%0999999999d" 1}}`, `{{template "x"}}`, `{{(printf "%d" 1)}}`, `{{`, ``} {
		f.Add(s)
	}
	data := GatewayData{To: "+447700900123", Body: strings.Repeat("body ", 60), Incident: "i", Key: "k", Secret: "s"}
	f.Fuzz(func(t *testing.T, s string) {
		tmpl, err := ParseGatewayTemplate("body", s)
		if err != nil {
			return
		}
		var b bytes.Buffer
		start := time.Now()
		err = tmpl.Execute(&limitedWriter{w: &b, n: maxTemplateLen * 4}, data)
		if err == nil && b.Len() > maxTemplateLen*4 {
			t.Fatalf("output of %d bytes", b.Len())
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("template %q ran for %s", s, d)
		}
	})
}

func FuzzRenderSMS(f *testing.F) {
	f.Add("HostFilesystemSpaceLow /var", "Filesystem /var is 93% full", "acme", "93%", "https://sage.example.com/a/Xk3d9Qe7")
	f.Add(strings.Repeat("Ω€{", 200), "“quoted” – dash…", "Ångström", "€5", "")
	f.Add("", "", "", "", "https://s/a/\u00e9")
	f.Fuzz(func(t *testing.T, title, summary, client, value, ack string) {
		inc := sampleIncident()
		inc.Title, inc.Summary, inc.Client, inc.Value, inc.AckURL = title, summary, client, value, ack
		s := RenderSMS(inc)
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8: %q", s)
		}
		link := oneLine(ack)
		body := s
		if link != "" {
			var ok bool
			if body, ok = strings.CutSuffix(s, " Ack: "+link); !ok {
				t.Fatalf("the ack link is not kept whole at the end: %q", s)
			}
		}
		if !isGSM(body) {
			t.Fatalf("characters outside GSM-7 in %q", body)
		}
		if len(link) < 100 && isGSM(link) && smsSegments(s) > smsMaxSegments {
			t.Fatalf("%d segments: %q", smsSegments(s), s)
		}
	})
}

func FuzzComposeEmail(f *testing.F) {
	f.Add("[FIRING:CRITICAL] acme/db1 disk", "inc-1", "body\n", "<p>x</p>", "Sage")
	f.Add("évil\r\nBcc: x@y.z", "id\nX-Evil: 1", "line\r\n.\r\nQUIT\r\n", "", "Nämé \"quoted\"")
	f.Fuzz(func(t *testing.T, subject, incident, text, html, name string) {
		from := &mail.Address{Name: name, Address: "sage@example.com"}
		d := Delivery{DedupeKey: incident + "/1/l1@acme.example/email", IncidentID: incident, Step: 1,
			Message: Message{Subject: subject, Text: text, HTML: html}, CreatedAt: time.Unix(1_800_000_000, 0)}
		raw, id, err := composeEmail(from, "l1@acme.example", d)
		if err != nil {
			return
		}
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("composed message does not parse: %v\n%q", err, raw)
		}
		for k := range msg.Header {
			switch k {
			case "Date", "From", "To", "Subject", "Message-Id", "References", "In-Reply-To", "X-Sage-Incident", "X-Sage-Step",
				"Auto-Submitted", "X-Auto-Response-Suppress", "Mime-Version", "Content-Type":
			default:
				t.Fatalf("unexpected header %q in\n%q", k, raw)
			}
		}
		if msg.Header.Get("Message-Id") != id {
			t.Fatalf("Message-ID %q, want %q", msg.Header.Get("Message-Id"), id)
		}
		got, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		want := oneLine(subject)
		if want == "" {
			want = "ServerSage notification"
		}
		if err == nil && utf8.ValidString(subject) && got != want {
			t.Fatalf("subject %q decodes to %q", want, got)
		}
	})
}
