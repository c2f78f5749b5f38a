package changelog

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/serversage/sage/internal/store"
)

// Grafana annotations: the protocol of Grafana's SimpleJSON data source (grafana-simple-json-
// datasource) and of its maintained successor, the "JSON" data source (simpod-json-datasource),
// reduced to what annotations need. The data source's URL is the hub's /grafana/changes; Grafana
// checks it with GET /, lists metrics with POST /search (the kinds, for completeness), asks for
// time series with POST /query (there are none here) and for annotations with POST /annotations.
// GET /annotations?from=&to=&query= answers the same for data sources that only GET a URL (the
// "JSON API" plug-in, scripts).

const (
	// DefaultAnnotations and MaxAnnotations bound how many events one annotation query returns
	// (the newest in the range): Grafana draws every one as a marker.
	DefaultAnnotations = 1000
	MaxAnnotations     = 10000
	maxGrafanaBody     = 1 << 20
	// maxQueryTerms bounds an annotation query's terms and each list's values.
	maxQueryTerms = 50
)

// ParseAnnotationQuery reads an annotation's query text: whitespace-separated terms, each either
// key=value or a word to search for in the events' objects and summaries (words are joined with
// single spaces into one phrase). Keys:
//
//	client=SLUG[,SLUG...]   the clients' slugs
//	host=NAME[,NAME...]     the hosts' names (ignoring case)
//	kind=KIND[,KIND...]     event kinds (os, packages, config_files, files, ...)
//	tampered=true           only files changed with no package transaction to explain them
//	limit=N                 at most N events, the newest (default 1000, at most 10000)
//
// A key given twice adds to its list. A value may be a Grafana multi-value variable's
// "{a,b}" form. An empty query selects every event in the time range.
func ParseAnnotationQuery(q string) (Filter, error) {
	f := Filter{Limit: DefaultAnnotations}
	var words []string
	terms := strings.Fields(q)
	if len(terms) > maxQueryTerms {
		return f, fmt.Errorf("the query has %d terms; at most %d are allowed", len(terms), maxQueryTerms)
	}
	kinds := Kinds()
	for _, t := range terms {
		key, val, ok := strings.Cut(t, "=")
		if !ok {
			words = append(words, t)
			continue
		}
		list := splitValues(val)
		switch strings.ToLower(key) {
		case "client":
			f.ClientSlugs = append(f.ClientSlugs, list...)
		case "host":
			f.HostNames = append(f.HostNames, list...)
		case "kind":
			for _, k := range list {
				if !slices.Contains(kinds, k) {
					return f, fmt.Errorf("kind %q is not one of %s", truncate(k, 40), strings.Join(kinds, ", "))
				}
			}
			f.Kinds = append(f.Kinds, list...)
		case "tampered":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return f, fmt.Errorf("tampered=%s: want true or false", truncate(val, 40))
			}
			f.TamperedOnly = b
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > MaxAnnotations {
				return f, fmt.Errorf("limit=%s: want a number from 1 to %d", truncate(val, 40), MaxAnnotations)
			}
			f.Limit = n
		default:
			return f, fmt.Errorf("%q is not a query key; known: client, host, kind, tampered, limit", truncate(key, 40))
		}
		if len(f.ClientSlugs) > maxQueryTerms || len(f.HostNames) > maxQueryTerms || len(f.Kinds) > maxQueryTerms {
			return f, fmt.Errorf("at most %d values may be given for a key", maxQueryTerms)
		}
	}
	f.Query = strings.Join(words, " ")
	return f, nil
}

// splitValues splits "a,b" or Grafana's "{a,b}" into its non-empty values.
func splitValues(v string) []string {
	v = strings.TrimSuffix(strings.TrimPrefix(v, "{"), "}")
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// annotationRequest is what Grafana POSTs to /annotations. The annotation object is echoed back
// as it came, as the protocol asks.
type annotationRequest struct {
	Range struct {
		From flexTime `json:"from"`
		To   flexTime `json:"to"`
	} `json:"range"`
	Annotation json.RawMessage `json:"annotation"`
}

// flexTime is an instant as Grafana sends it: RFC 3339 text, or unix milliseconds.
type flexTime struct{ time.Time }

func (t *flexTime) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		return t.parse(s)
	}
	var ms int64
	if err := json.Unmarshal(b, &ms); err != nil {
		return errors.New("want RFC 3339 text or unix milliseconds")
	}
	t.Time = time.UnixMilli(ms).UTC()
	return nil
}

func (t *flexTime) parse(s string) error {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		t.Time = time.UnixMilli(ms).UTC()
		return nil
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("%q is not RFC 3339 time or unix milliseconds", truncate(s, 40))
	}
	t.Time = v
	return nil
}

// Annotation is one event as a Grafana annotation.
type Annotation struct {
	Annotation json.RawMessage `json:"annotation,omitempty"`
	Time       int64           `json:"time"` // unix milliseconds
	Title      string          `json:"title"`
	Text       string          `json:"text"`
	Tags       []string        `json:"tags"`
}

// ToAnnotation describes r for Grafana: the host and summary as the title, tagged with its kind,
// host and client (and "tampered"), so that a dashboard can filter markers by tag too.
func ToAnnotation(r Record) Annotation {
	a := Annotation{
		Time:  store.Millis(r.Time),
		Title: r.HostName + ": " + r.Summary,
		Text:  r.Summary,
		Tags:  []string{r.Kind, r.HostName, r.ClientSlug},
	}
	if r.Tampered {
		// Said first, whatever the summary says: a marker's title is cut short in Grafana.
		if !strings.HasPrefix(r.Summary, "TAMPERED") {
			a.Title = "TAMPERED " + a.Title
		}
		if !strings.Contains(r.Summary, "TAMPERED") {
			a.Text = "TAMPERED: the file changed and no package transaction explains it. " + a.Text
		}
		a.Tags = append(a.Tags, "tampered")
	}
	if n := r.After["files_changed"]; n != "" {
		a.Text += " (" + n + " files changed)"
	} else if len(r.Files) > 0 {
		a.Text += " (" + strconv.Itoa(len(r.Files)) + " files changed)"
	}
	return a
}

// GrafanaHandler serves the annotation data source. Paths are relative to where it is mounted
// (the hub strips /grafana/changes); authentication is the caller's.
func GrafanaHandler(s *Store, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.Default()
	}
	g := &grafana{s: s, logger: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ServerSage change events: a Grafana annotation data source\n"))
	})
	mux.HandleFunc("POST /search", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, Kinds()) })
	mux.HandleFunc("POST /metrics", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, []any{}) })
	mux.HandleFunc("POST /query", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, []any{}) })
	mux.HandleFunc("POST /annotations", g.postAnnotations)
	mux.HandleFunc("GET /annotations", g.getAnnotations)
	return mux
}

type grafana struct {
	s      *Store
	logger *slog.Logger
}

type grafanaError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"the answer could not be encoded"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func (g *grafana) postAnnotations(w http.ResponseWriter, r *http.Request) {
	var req annotationRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxGrafanaBody))
	if err := dec.Decode(&req); err != nil {
		code := http.StatusBadRequest
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			code = http.StatusRequestEntityTooLarge
		}
		writeJSON(w, code, grafanaError{"the body is not an annotation request: " + err.Error()})
		return
	}
	var ann struct {
		Query string `json:"query"`
	}
	if len(req.Annotation) > 0 {
		if err := json.Unmarshal(req.Annotation, &ann); err != nil {
			writeJSON(w, http.StatusBadRequest, grafanaError{"annotation: " + err.Error()})
			return
		}
	}
	g.answer(w, r, req.Range.From.Time, req.Range.To.Time, ann.Query, req.Annotation)
}

func (g *grafana) getAnnotations(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	var from, to flexTime
	for _, p := range []struct {
		name string
		t    *flexTime
	}{{"from", &from}, {"to", &to}} {
		if v := qs.Get(p.name); v != "" {
			if err := p.t.parse(v); err != nil {
				writeJSON(w, http.StatusBadRequest, grafanaError{p.name + ": " + err.Error()})
				return
			}
		}
	}
	g.answer(w, r, from.Time, to.Time, qs.Get("query"), nil)
}

func (g *grafana) answer(w http.ResponseWriter, r *http.Request, from, to time.Time, query string, echo json.RawMessage) {
	if from.IsZero() || to.IsZero() {
		writeJSON(w, http.StatusBadRequest, grafanaError{"range.from and range.to are required"})
		return
	}
	if !to.After(from) {
		writeJSON(w, http.StatusBadRequest, grafanaError{"range.to must be after range.from"})
		return
	}
	f, err := ParseAnnotationQuery(query)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, grafanaError{"annotation query: " + err.Error()})
		return
	}
	// Grafana's range end is inclusive.
	f.From, f.To = from, to.Add(time.Millisecond)
	recs, err := g.s.List(r.Context(), f)
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		code := http.StatusInternalServerError
		if store.IsUnavailable(err) {
			code = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "5")
		}
		g.logger.Error("grafana annotations: listing change events failed", "err", err)
		writeJSON(w, code, grafanaError{"change events could not be read; try again"})
		return
	}
	out := make([]Annotation, len(recs))
	for i, rec := range recs {
		out[i] = ToAnnotation(rec)
		out[i].Annotation = echo
	}
	writeJSON(w, http.StatusOK, out)
}
