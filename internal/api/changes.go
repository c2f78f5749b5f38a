package api

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/serversage/sage/internal/changelog"
)

// changeFilters are the query parameters of both change lists: kind is a comma-separated list,
// q a text to find in the object or summary, from (inclusive) and to (exclusive) RFC 3339 times.
var changeFilters = []string{"kind", "q", "from", "to"}

// viewChange is one change event as the API shows it: the stored record (its JSON is the API's
// ChangeEvent), with no files as an empty list rather than null.
func viewChange(r changelog.Record) changelog.Record {
	r.Files = list(r.Files)
	return r
}

// changeQuery parses a change list's query into a filter, or answers 400 and returns false.
func changeQuery(w http.ResponseWriter, r *http.Request) (listQuery, changelog.Filter, bool) {
	q, ok := query(w, r, changeFilters)
	if !ok {
		return q, changelog.Filter{}, false
	}
	page := q.fetch()
	f := changelog.Filter{Query: q.filters["q"], Limit: page.Limit, Offset: page.Offset}
	var fe []fieldError
	if k := q.filters["kind"]; k != "" {
		kinds := changelog.Kinds()
		for v := range strings.SplitSeq(k, ",") {
			v = strings.TrimSpace(v)
			if v == "" {
				continue
			}
			if !slices.Contains(kinds, v) {
				fe = append(fe, fieldError{Field: "kind", Message: "must be a comma-separated list of " + strings.Join(kinds, ", ")})
				break
			}
			f.Kinds = append(f.Kinds, v)
		}
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.filters[p.name]; v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				fe = append(fe, fieldError{Field: p.name, Message: "must be an RFC 3339 time such as 2026-03-10T00:00:00Z"})
				continue
			}
			*p.t = t
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
		fe = append(fe, fieldError{Field: "to", Message: "must be after from"})
	}
	if len(fe) > 0 {
		writeError(w, http.StatusBadRequest, apiError{Error: "invalid query parameters", Fields: fe})
		return q, f, false
	}
	return q, f, true
}

// listHostChanges lists a host's change events, newest first.
func (s *server) listHostChanges(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "host")
	if !ok {
		return
	}
	q, f, ok := changeQuery(w, r)
	if !ok {
		return
	}
	if _, err := s.inv.GetHost(r.Context(), id); err != nil {
		s.fail(w, r, "host", err)
		return
	}
	s.writeChanges(w, r, q, changelog.Filter{HostID: id}, f)
}

// listClientChanges lists the change events of every host of a client, newest first.
func (s *server) listClientChanges(w http.ResponseWriter, r *http.Request) {
	id, ok := idOr404(w, r, "client")
	if !ok {
		return
	}
	q, f, ok := changeQuery(w, r)
	if !ok {
		return
	}
	if _, err := s.inv.GetClient(r.Context(), id); err != nil {
		s.fail(w, r, "client", err)
		return
	}
	s.writeChanges(w, r, q, changelog.Filter{ClientID: id}, f)
}

func (s *server) writeChanges(w http.ResponseWriter, r *http.Request, q listQuery, scope, f changelog.Filter) {
	if s.changes == nil {
		writeError(w, http.StatusNotFound, apiError{Error: "this hub keeps no change events"})
		return
	}
	f.HostID, f.ClientID = scope.HostID, scope.ClientID
	items, err := s.changes.List(r.Context(), f)
	if err != nil {
		s.fail(w, r, "change event", err)
		return
	}
	writePage(w, q, items, viewChange)
}
