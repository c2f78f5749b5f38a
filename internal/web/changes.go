package web

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/serversage/sage/internal/changelog"
	"github.com/serversage/sage/internal/inventory"
)

// changesPage is how many events a timeline page shows; older ones are a link away.
const changesPage = 200

// maxChangeQuery bounds the search text, as the API bounds its query values.
const maxChangeQuery = 1000

// changesData is a change timeline: one host's (Host set) or a client's over a period.
type changesData struct {
	base
	Client   inventory.Client
	Host     *inventory.Host
	Action   string // the filter form's target
	Kinds    []kindOption
	Query    string
	From, To string // the period's first and last day, YYYY-MM-DD, or ""
	Days     []changeDay
	Count    int
	Newer    string // URL of the newer page, or ""
	Older    string // URL of the older page, or ""
	Filtered bool
}

type kindOption struct {
	Name    string
	Checked bool
}

// changeDay is the events of one calendar day (the hub's time zone, as datetime shows).
type changeDay struct {
	Date   string
	Events []changeItem
}

type changeItem struct {
	changelog.Record
	Clock string // time of day
	Attrs []attrRow
	// FilesChanged is how many files a package event accounts for (Files may be fewer).
	FilesChanged string
	FilesPartial bool // Files lists only the first of them
}

// attrRow is one attribute before and after; "" when absent on that side.
type attrRow struct {
	Name, Before, After string
	Changed             bool
}

// recentChanges is the host page's glimpse of its timeline.
type recentChanges struct {
	URL    string
	Events []changelog.Record
}

// recentOnHostPage is how many of the latest events the host page shows.
const recentOnHostPage = 5

func (u *UI) recentChanges(ctx context.Context, h inventory.Host) (*recentChanges, error) {
	if u.changes == nil {
		return nil, nil
	}
	recs, err := u.changes.ListHost(ctx, h.ID, changelog.Filter{Limit: recentOnHostPage})
	if err != nil {
		return nil, err
	}
	return &recentChanges{URL: "/hosts/" + url.PathEscape(h.ID) + "/changes", Events: recs}, nil
}

// hostChanges shows a host's change timeline.
func (u *UI) hostChanges(w http.ResponseWriter, r *http.Request) error {
	if u.changes == nil {
		return errNotFound
	}
	h, c, err := u.hostAndClient(r)
	if err != nil {
		return err
	}
	d := changesData{base: u.base(r, "Changes on "+h.Name, "hosts"), Client: c, Host: &h,
		Action: "/hosts/" + url.PathEscape(h.ID) + "/changes"}
	return u.changesTimeline(w, r, d, changelog.Filter{HostID: h.ID})
}

// clientChanges shows the change timeline of a client's hosts over a period (the last 7 days
// unless given).
func (u *UI) clientChanges(w http.ResponseWriter, r *http.Request) error {
	if u.changes == nil {
		return errNotFound
	}
	c, err := u.inv.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	d := changesData{base: u.base(r, "Changes at "+c.Name, "clients"), Client: c,
		Action: "/clients/" + url.PathEscape(c.ID) + "/changes"}
	q := r.URL.Query()
	if q.Get("from") == "" && q.Get("to") == "" {
		q.Set("from", time.Now().AddDate(0, 0, -6).Format(time.DateOnly))
		r.URL.RawQuery = q.Encode()
	}
	return u.changesTimeline(w, r, d, changelog.Filter{ClientID: c.ID})
}

func (u *UI) changesTimeline(w http.ResponseWriter, r *http.Request, d changesData, f changelog.Filter) error {
	q := r.URL.Query()
	kinds := q["kind"]
	for _, k := range changelog.Kinds() {
		checked := slices.Contains(kinds, k)
		d.Kinds = append(d.Kinds, kindOption{Name: k, Checked: checked})
		if checked {
			f.Kinds = append(f.Kinds, k)
		}
	}
	d.Query = strings.TrimSpace(q.Get("q"))
	if len(d.Query) > maxChangeQuery {
		d.Query = strings.ToValidUTF8(d.Query[:maxChangeQuery], "")
	}
	f.Query = d.Query
	// Days are the hub's local days, as the timeline's headings; "to" includes its whole day.
	if v := q.Get("from"); v != "" {
		t, err := time.ParseInLocation(time.DateOnly, v, time.Local)
		if err != nil {
			return badRequest(err)
		}
		f.From, d.From = t, v
	}
	if v := q.Get("to"); v != "" {
		t, err := time.ParseInLocation(time.DateOnly, v, time.Local)
		if err != nil {
			return badRequest(err)
		}
		f.To, d.To = t.AddDate(0, 0, 1), v
	}
	offset, _ := strconv.Atoi(q.Get("offset"))
	offset = max(offset, 0)
	f.Limit, f.Offset = changesPage+1, offset
	d.Filtered = len(f.Kinds) > 0 || f.Query != "" || d.From != "" || d.To != ""

	recs, err := u.changes.List(r.Context(), f)
	if err != nil {
		return err
	}
	if len(recs) > changesPage {
		recs = recs[:changesPage]
		d.Older = pageURL(d.Action, q, offset+changesPage)
	}
	if offset > 0 {
		d.Newer = pageURL(d.Action, q, max(offset-changesPage, 0))
	}
	d.Count = len(recs)
	for _, rec := range recs {
		local := rec.Time.Local()
		day := local.Format("Monday 2 January 2006")
		if len(d.Days) == 0 || d.Days[len(d.Days)-1].Date != day {
			d.Days = append(d.Days, changeDay{Date: day})
		}
		it := changeItem{Record: rec, Clock: local.Format("15:04:05"), Attrs: attrRows(rec)}
		if n := rec.After["files_changed"]; n != "" {
			it.FilesChanged = n
			total, _ := strconv.Atoi(n)
			it.FilesPartial = total > len(rec.Files)
		} else if len(rec.Files) > 0 {
			it.FilesChanged = strconv.Itoa(len(rec.Files))
		}
		last := &d.Days[len(d.Days)-1]
		last.Events = append(last.Events, it)
	}
	u.render(w, r, http.StatusOK, "changes", d)
	return nil
}

// attrRows lists the attributes of an event's before and after side by side, by name; the count
// of grouped files is shown with the files instead.
func attrRows(r changelog.Record) []attrRow {
	keys := map[string]bool{}
	for k := range r.Before {
		keys[k] = true
	}
	for k := range r.After {
		keys[k] = true
	}
	delete(keys, "files_changed")
	out := make([]attrRow, 0, len(keys))
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		b, a := r.Before[k], r.After[k]
		out = append(out, attrRow{Name: k, Before: b, After: a, Changed: b != a})
	}
	return out
}

// pageURL is the timeline at another offset with the same filters.
func pageURL(action string, q url.Values, offset int) string {
	q = maps.Clone(q)
	if offset > 0 {
		q.Set("offset", strconv.Itoa(offset))
	} else {
		q.Del("offset")
	}
	if len(q) == 0 {
		return action
	}
	return action + "?" + q.Encode()
}
