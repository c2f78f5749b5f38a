package notify

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"maps"
	"net/url"
	"slices"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/common/model"
)

//go:embed templates/*.tmpl
var templateFiles embed.FS

// The templates are part of the program: a mistake in them fails every test, so parsing them at
// start with Must cannot fail in a build that passed its tests.
var (
	textTemplates = texttemplate.Must(texttemplate.New("").Funcs(texttemplate.FuncMap{"inc": func(i int) int { return i + 1 }}).
			ParseFS(templateFiles, "templates/email.txt.tmpl"))
	htmlTemplates = htmltemplate.Must(htmltemplate.New("").ParseFS(templateFiles, "templates/email.html.tmpl"))
)

// maxSubjectRunes keeps subjects readable in a mail client's list; what is cut is still in the body.
const maxSubjectRunes = 200

// timeLayout is how instants appear in messages: UTC, because the readers of one incident may sit
// in different time zones and must agree on when it started.
const timeLayout = "2006-01-02 15:04:05 MST"

type fact struct{ Name, Value string }

// emailView is what the email templates see: the incident plus what is computed once for both.
type emailView struct {
	Inc      Incident
	Subject  string
	Headline string
	Firing   bool
	Colour   string
	Facts    []fact
	Labels   []fact
	Footer   string
}

// RenderEmail renders the subject and the text and HTML bodies of inc's email. The subject reads
// "[FIRING:CRITICAL] acme/db1 HostFilesystemSpaceLow /var 93% (watermark 90%)"; the bodies carry the
// summary, the value against the watermark, the numbered action plan, an Acknowledge link while
// firing, and the runbook and incident links. Everything from the incident is escaped in the HTML.
func RenderEmail(inc Incident) (Message, error) {
	v := emailView{
		Inc:      inc,
		Subject:  Subject(inc),
		Headline: headline(inc),
		Firing:   status(inc) == StatusFiring,
		Colour:   colour(inc),
		Footer:   footer(inc),
	}
	v.Inc.Summary = oneLine(inc.Summary)
	v.Inc.ActionPlan = make([]string, 0, len(inc.ActionPlan))
	for _, s := range inc.ActionPlan {
		if s = oneLine(s); s != "" {
			v.Inc.ActionPlan = append(v.Inc.ActionPlan, s)
		}
	}
	add := func(name, value string) {
		if value = oneLine(value); value != "" {
			v.Facts = append(v.Facts, fact{name, value})
		}
	}
	add("Status", statusWord(inc))
	add("Severity", inc.Severity)
	add("Client", inc.Client)
	add("Site", inc.Site)
	add("Host", inc.Host)
	add("Alert", inc.Alert)
	add("Value", valueLine(inc, "watermark"))
	if !inc.StartsAt.IsZero() {
		add("Started", inc.StartsAt.UTC().Format(timeLayout))
	}
	if !inc.EndsAt.IsZero() && status(inc) == StatusResolved {
		add("Resolved", inc.EndsAt.UTC().Format(timeLayout))
	}
	if status(inc) == StatusAcknowledged {
		add("Acked by", inc.AckedBy)
	}
	for _, k := range slices.Sorted(maps.Keys(inc.Labels)) {
		v.Labels = append(v.Labels, fact{oneLine(k), oneLine(inc.Labels[k])})
	}
	var text, html bytes.Buffer
	if err := textTemplates.ExecuteTemplate(&text, "email.txt", v); err != nil {
		return Message{}, fmt.Errorf("notify: rendering the email text: %w", err)
	}
	if err := htmlTemplates.ExecuteTemplate(&html, "email.html", v); err != nil {
		return Message{}, fmt.Errorf("notify: rendering the email HTML: %w", err)
	}
	return Message{Subject: v.Subject, Text: text.String(), HTML: html.String()}, nil
}

func status(inc Incident) string {
	switch inc.Status {
	case StatusAcknowledged, StatusResolved:
		return inc.Status
	}
	return StatusFiring
}

func statusWord(inc Incident) string {
	switch status(inc) {
	case StatusAcknowledged:
		return "acknowledged"
	case StatusResolved:
		return "resolved"
	}
	if inc.Escalated && inc.Tier != "" {
		return "firing, escalated to " + inc.Tier
	}
	return "firing"
}

// Subject is the email subject of inc: "[STATUS:SEVERITY] client/host title value (watermark w)".
func Subject(inc Incident) string {
	tag := strings.ToUpper(status(inc))
	if sev := oneLine(inc.Severity); sev != "" {
		tag += ":" + strings.ToUpper(sev)
	}
	parts := []string{"[" + tag + "]"}
	if inc.Escalated && inc.Tier != "" && status(inc) == StatusFiring {
		parts = append(parts, "["+oneLine(inc.Tier)+"]")
	}
	parts = appendNonEmpty(parts, where(inc), title(inc), valueLine(inc, "watermark"))
	return truncateRunes(strings.Join(parts, " "), maxSubjectRunes)
}

func headline(inc Incident) string {
	var prefix string
	switch status(inc) {
	case StatusAcknowledged:
		prefix = "Acknowledged: "
	case StatusResolved:
		prefix = "Resolved: "
	default:
		if inc.Escalated && inc.Tier != "" {
			prefix = "Escalated to " + oneLine(inc.Tier) + ": "
		}
	}
	s := prefix + title(inc)
	if w := where(inc); w != "" {
		s += " on " + w
	}
	return s
}

func footer(inc Incident) string {
	s := "ServerSage"
	if inc.ID != "" {
		s += " · incident " + oneLine(inc.ID)
	}
	if inc.Step > 0 {
		s += " · escalation step " + fmt.Sprint(inc.Step)
		if inc.Tier != "" {
			s += " (" + oneLine(inc.Tier) + ")"
		}
	}
	return s
}

func colour(inc Incident) string {
	switch status(inc) {
	case StatusResolved:
		return "#1a7f37"
	case StatusAcknowledged:
		return "#57606a"
	}
	switch strings.ToLower(inc.Severity) {
	case "critical", "page", "error":
		return "#cf222e"
	case "warning":
		return "#bc4c00"
	}
	return "#0969da"
}

func where(inc Incident) string {
	return strings.Join(appendNonEmpty(nil, oneLine(inc.Client), oneLine(inc.Host)), "/")
}

func title(inc Incident) string {
	if t := oneLine(inc.Title); t != "" {
		return t
	}
	return oneLine(inc.Alert)
}

// valueLine is "93% (watermark 90%)", or whichever half is known.
func valueLine(inc Incident, word string) string {
	v, w := oneLine(inc.Value), oneLine(inc.Watermark)
	switch {
	case v != "" && w != "":
		return v + " (" + word + " " + w + ")"
	case v != "":
		return v
	case w != "":
		return "(" + word + " " + w + ")"
	}
	return ""
}

func appendNonEmpty(dst []string, ss ...string) []string {
	for _, s := range ss {
		if s != "" {
			dst = append(dst, s)
		}
	}
	return dst
}

// oneLine collapses white space and drops control characters, so that a label value cannot add a
// header line to an email or a line to an SMS.
func oneLine(s string) string {
	if s == "" {
		return ""
	}
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.IsSpace(r) ||
			unicode.Is(unicode.Zl, r) || unicode.Is(unicode.Zp, r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// WebhookPayload is Alertmanager's webhook message, version 4
// (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config): what an
// Alertmanager webhook receiver already understands.
type WebhookPayload struct {
	Receiver          string            `json:"receiver"`
	Status            string            `json:"status"`
	Alerts            []WebhookAlert    `json:"alerts"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   uint64            `json:"truncatedAlerts"`
}

// WebhookAlert is one alert of a WebhookPayload.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// RenderWebhook builds the Alertmanager webhook payload of inc for the receiver named receiver.
// An acknowledged incident is still "firing" here: Alertmanager's format knows only firing and
// resolved.
func RenderWebhook(inc Incident, receiver string) WebhookPayload {
	st := "firing"
	if status(inc) == StatusResolved {
		st = "resolved"
	}
	var alerts []WebhookAlert
	for _, a := range inc.Alerts {
		alerts = append(alerts, webhookAlert(a, st))
	}
	if len(alerts) == 0 {
		alerts = []WebhookAlert{webhookAlert(incidentAlert(inc, st), st)}
	}
	group := inc.GroupLabels
	if len(group) == 0 {
		group = map[string]string{}
		for k, v := range map[string]string{"alertname": inc.Alert, "client": inc.Client, "host": inc.Host} {
			if v != "" {
				group[k] = v
			}
		}
	}
	p := WebhookPayload{
		Receiver:          receiver,
		Status:            st,
		Alerts:            alerts,
		GroupLabels:       maps.Clone(group),
		CommonLabels:      common(alerts, func(a WebhookAlert) map[string]string { return a.Labels }),
		CommonAnnotations: common(alerts, func(a WebhookAlert) map[string]string { return a.Annotations }),
		ExternalURL:       origin(inc.IncidentURL),
		Version:           "4",
		GroupKey:          groupKey(group),
	}
	if p.GroupLabels == nil {
		p.GroupLabels = map[string]string{}
	}
	return p
}

// incidentAlert is the one alert an incident without Alerts stands for.
func incidentAlert(inc Incident, st string) Alert {
	labels := maps.Clone(inc.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	for k, v := range map[string]string{"alertname": inc.Alert, "client": inc.Client, "site": inc.Site,
		"host": inc.Host, "severity": inc.Severity} {
		if _, ok := labels[k]; !ok && v != "" {
			labels[k] = v
		}
	}
	ann := maps.Clone(inc.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	for k, v := range map[string]string{"summary": inc.Summary, "description": inc.Description,
		"runbook_url": inc.RunbookURL, "value": inc.Value, "watermark": inc.Watermark} {
		if _, ok := ann[k]; !ok && v != "" {
			ann[k] = v
		}
	}
	a := Alert{Status: st, Labels: labels, Annotations: ann, StartsAt: inc.StartsAt, GeneratorURL: inc.IncidentURL}
	if st == "resolved" {
		a.EndsAt = inc.EndsAt
	}
	return a
}

func webhookAlert(a Alert, st string) WebhookAlert {
	w := WebhookAlert{
		Status:       a.Status,
		Labels:       maps.Clone(a.Labels),
		Annotations:  maps.Clone(a.Annotations),
		StartsAt:     a.StartsAt.UTC(),
		EndsAt:       a.EndsAt.UTC(),
		GeneratorURL: a.GeneratorURL,
		Fingerprint:  a.Fingerprint,
	}
	if w.Status == "" {
		w.Status = st
	}
	if w.Labels == nil {
		w.Labels = map[string]string{}
	}
	if w.Annotations == nil {
		w.Annotations = map[string]string{}
	}
	if w.Fingerprint == "" {
		w.Fingerprint = labelSet(w.Labels).Fingerprint().String()
	}
	return w
}

func labelSet(m map[string]string) model.LabelSet {
	ls := make(model.LabelSet, len(m))
	for k, v := range m {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls
}

// common returns the pairs every alert has, as Alertmanager's commonLabels and commonAnnotations.
func common(alerts []WebhookAlert, get func(WebhookAlert) map[string]string) map[string]string {
	out := map[string]string{}
	if len(alerts) == 0 {
		return out
	}
	for k, v := range get(alerts[0]) {
		all := true
		for _, a := range alerts[1:] {
			if w, ok := get(a)[k]; !ok || w != v {
				all = false
				break
			}
		}
		if all {
			out[k] = v
		}
	}
	return out
}

// groupKey mimics Alertmanager's "{route}:{group labels}" key; the route part is empty.
func groupKey(group map[string]string) string {
	return "{}:" + labelSet(group).String()
}

// origin is the scheme and host of u: the hub's external URL, as far as a link to it tells.
func origin(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Scheme == "" || p.Host == "" {
		return ""
	}
	return p.Scheme + "://" + p.Host
}
