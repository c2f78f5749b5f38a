package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/serversage/sage/internal/alert"
	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/oncall"
)

var silenceFields = []string{"kind", "matchers", "starts_at", "ends_at", "recurrence", "duration", "timezone", "comment"}

// localTimeLayout is what <input type=datetime-local> sends.
const localTimeLayout = "2006-01-02T15:04"

type silenceRow struct {
	alert.Silence
	Active           bool
	NextFrom, NextTo time.Time
	Over             bool
	MatchersText     string
	DurationText     string
}

type silenceData struct {
	base
	Silences []silenceRow
	All      bool
	Form     *form
	Kinds    []option
}

func (u *UI) silenceData(r *http.Request, f *form) (silenceData, error) {
	all := r.URL.Query().Get("show") == "all"
	d := silenceData{base: u.base(r, "Silences", "incidents"), All: all, Form: f,
		Kinds: []option{{Value: alert.KindSilence, Label: "Silence"}, {Value: alert.KindMaintenance, Label: "Maintenance window (marks what fires as planned)"}}}
	ss, err := u.alerting.alerts.ListSilences(r.Context(), all)
	if err != nil {
		return d, err
	}
	now := time.Now()
	for _, s := range ss {
		row := silenceRow{Silence: s, Active: s.ActiveAt(now), MatchersText: formatMatchers(s.Matchers)}
		row.NextFrom, row.NextTo, _ = s.NextWindow(now)
		row.Over = !s.ExpiredAt.IsZero() || !now.Before(s.EndsAt)
		if s.Duration > 0 {
			row.DurationText = s.Duration.String()
		}
		d.Silences = append(d.Silences, row)
	}
	return d, nil
}

func (u *UI) silenceList(w http.ResponseWriter, r *http.Request) error {
	f := newForm(silenceFields...)
	now := time.Now().UTC().Truncate(time.Minute)
	f.set("kind", alert.KindSilence)
	f.set("timezone", "UTC")
	f.set("starts_at", now.Format(localTimeLayout))
	f.set("ends_at", now.Add(2*time.Hour).Format(localTimeLayout))
	if m := r.URL.Query().Get("matchers"); m != "" {
		f.set("matchers", m) // prefilled from an incident: "silence this"
	}
	d, err := u.silenceData(r, f)
	if err != nil {
		return err
	}
	u.render(w, r, http.StatusOK, "silences", d)
	return nil
}

func (u *UI) silenceCreate(w http.ResponseWriter, r *http.Request) error {
	f := newForm(silenceFields...)
	if err := f.parse(w, r); err != nil {
		return badRequest(err)
	}
	s := alert.Silence{Kind: f.Get("kind"), Recurrence: strings.TrimSpace(f.Get("recurrence")),
		Timezone: strings.TrimSpace(f.Get("timezone")), Comment: strings.TrimSpace(f.Get("comment")), CreatedBy: actorOf(r)}
	ms, errs := parseMatchers(f.Get("matchers"))
	for _, e := range errs {
		f.add("matchers", e)
	}
	s.Matchers = ms
	loc := time.UTC
	if s.Timezone != "" {
		if l, err := time.LoadLocation(s.Timezone); err == nil {
			loc = l
		}
	}
	s.StartsAt = f.parseLocalTime("starts_at", loc)
	s.EndsAt = f.parseLocalTime("ends_at", loc)
	if d := strings.TrimSpace(f.Get("duration")); d != "" {
		v, err := time.ParseDuration(d)
		if err != nil {
			f.add("duration", "must be a duration such as 2h or 90m")
		}
		s.Duration = v
	}
	// A form error (a line that is not a matcher) must not let the rest through as a wider
	// silence than meant, so the engine sees only a form that read cleanly.
	var err error
	if !f.Invalid() {
		_, err = u.alerting.alerts.CreateSilence(r.Context(), s)
		f.addFieldErrors(config.FieldErrors(err), map[string]string{"client_id": "matchers", "host_id": "matchers"})
	}
	if f.Invalid() {
		d, derr := u.silenceData(r, f)
		if derr != nil {
			return derr
		}
		u.render(w, r, http.StatusBadRequest, "silences", d)
		return nil
	}
	if err != nil {
		return err
	}
	setFlash(w, r, strings.ToUpper(s.Kind[:1])+s.Kind[1:]+" created.")
	redirect(w, r, "/silences")
	return nil
}

func (u *UI) silenceExpire(w http.ResponseWriter, r *http.Request) error {
	err := u.alerting.alerts.ExpireSilence(r.Context(), r.PathValue("id"))
	if errors.Is(err, alert.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	setFlash(w, r, "Silence expired.")
	redirect(w, r, "/silences")
	return nil
}

// parseLocalTime reads a datetime-local field in loc; empty is zero (the engine says required).
func (f *form) parseLocalTime(name string, loc *time.Location) time.Time {
	s := strings.TrimSpace(f.Get(name))
	if s == "" {
		return time.Time{}
	}
	for _, layout := range []string{localTimeLayout, "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02 15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t
		}
	}
	f.add(name, "must be a date and time, YYYY-MM-DD HH:MM")
	return time.Time{}
}

// parseMatchers reads one matcher a line, as Alertmanager writes them: name, operator (= != =~
// !~), value, with spaces around the operator allowed and the value optionally in double quotes.
// Errors name the line as the user counts it.
func parseMatchers(text string) ([]alert.Matcher, []string) {
	var (
		out  []alert.Matcher
		errs []string
	)
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		m, err := parseMatcher(line)
		if err != nil {
			errs = append(errs, fmt.Sprintf("line %d: %v", i+1, err))
			continue
		}
		out = append(out, m)
	}
	return out, errs
}

func parseMatcher(line string) (alert.Matcher, error) {
	n := 0
	for n < len(line) && (line[n] == '_' || line[n] >= 'a' && line[n] <= 'z' || line[n] >= 'A' && line[n] <= 'Z' || n > 0 && line[n] >= '0' && line[n] <= '9') {
		n++
	}
	if n == 0 {
		return alert.Matcher{}, errors.New("starts with a label name, such as alertname=DiskFull")
	}
	m := alert.Matcher{Name: line[:n]}
	rest := strings.TrimLeft(line[n:], " \t")
	for _, op := range []string{"=~", "!~", "!=", "="} {
		if strings.HasPrefix(rest, op) {
			m.Op, rest = op, strings.TrimSpace(rest[len(op):])
			break
		}
	}
	if m.Op == "" {
		return alert.Matcher{}, fmt.Errorf("%s needs an operator: =, !=, =~ or !~", m.Name)
	}
	if strings.HasPrefix(rest, `"`) {
		v, err := strconv.Unquote(rest)
		if err != nil {
			return alert.Matcher{}, errors.New("the quoted value is not closed or has a bad escape")
		}
		rest = v
	}
	m.Value = rest
	return m, nil
}

// formatMatchers writes matchers as parseMatchers reads them.
func formatMatchers(ms []alert.Matcher) string {
	lines := make([]string, len(ms))
	for i, m := range ms {
		v := m.Value
		if v == "" || strings.TrimSpace(v) != v || strings.ContainsAny(v, "\"\n\\") {
			v = strconv.Quote(v)
		}
		lines[i] = m.Name + m.Op + v
	}
	return strings.Join(lines, "\n")
}

// rotaView is a rota with who is on call now and the shifts to come.
type rotaView struct {
	oncall.Rota
	Client string
	Now    string // the person on call now, "" for nobody
	Shifts []shiftView
}

type shiftView struct {
	Start, End time.Time
	Person     string
	Override   bool
}

type policyView struct {
	oncall.Policy
	Client string
	Steps  []string
}

type oncallData struct {
	base
	Rotas    []rotaView
	Policies []policyView
	Days     int
}

// oncallDays is how far ahead the on-call page shows shifts.
const oncallDays = 7

// oncallPage shows the rotas (on call now, the next shifts) and the escalation policies.
func (u *UI) oncallPage(w http.ResponseWriter, r *http.Request) error {
	d := oncallData{base: u.base(r, "On call", "oncall"), Days: oncallDays}
	st := u.alerting.oncall
	if st == nil {
		u.render(w, r, http.StatusOK, "oncall", d)
		return nil
	}
	n, err := u.namesFor(r, nil)
	if err != nil {
		return err
	}
	people := map[string]string{}
	person := func(id string) string {
		if id == "" {
			return ""
		}
		if p, ok := people[id]; ok {
			return p
		}
		name := id
		if p, err := st.Person(r.Context(), id); err == nil {
			name = p.Name
		} else {
			name = "disabled user"
		}
		people[id] = name
		return name
	}
	rotas, err := st.ListRotas(r.Context(), oncall.RotaFilter{})
	if err != nil {
		return err
	}
	now := time.Now()
	for _, rt := range rotas {
		v := rotaView{Rota: rt, Client: n.clients[rt.ClientID].Name}
		if id, ok := rt.At(now); ok {
			v.Now = person(id)
		}
		for _, s := range rt.Shifts(now, now.Add(oncallDays*24*time.Hour)) {
			v.Shifts = append(v.Shifts, shiftView{Start: s.Start, End: s.End, Person: person(s.UserID), Override: s.OverrideID != ""})
		}
		d.Rotas = append(d.Rotas, v)
	}
	pols, err := st.ListPolicies(r.Context())
	if err != nil {
		return err
	}
	for _, p := range pols {
		v := policyView{Policy: p, Client: n.clients[p.ClientID].Name}
		for _, s := range p.Steps {
			v.Steps = append(v.Steps, stepText(s, person))
		}
		d.Policies = append(d.Policies, v)
	}
	u.render(w, r, http.StatusOK, "oncall", d)
	return nil
}

// stepText says what an escalation step does, as a sentence.
func stepText(s oncall.Step, person func(string) string) string {
	by := ""
	if len(s.Channels) > 0 {
		by = " by " + strings.Join(s.Channels, " and ")
	}
	switch s.Kind {
	case oncall.KindNotifyTier:
		return "Notify whoever is on call for " + string(s.Tier) + by
	case oncall.KindNotifyUser:
		return "Notify " + person(s.UserID) + by
	case oncall.KindWait:
		return "Wait " + s.Wait.D().String() + "; stop here if acknowledged"
	case oncall.KindRepeat:
		return "Repeat from the start, " + plural(s.Times, "time", "times")
	}
	return s.Kind
}
