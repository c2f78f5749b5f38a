package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"

	"github.com/serversage/sage/internal/config"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
)

// apiError is the body of every error answer.
type apiError struct {
	Error  string       `json:"error"`
	Fields []fieldError `json:"fields,omitempty"`
}

// fieldError names one problem with the input: a JSON field of the body ("addresses[1]",
// "facts.cores") or a query parameter.
type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func fieldErrors(fe []config.FieldError) []fieldError {
	out := make([]fieldError, len(fe))
	for i, e := range fe {
		out[i] = fieldError{Field: e.Field, Message: e.Msg}
	}
	return out
}

// mergeFields returns ours followed by those of theirs about fields ours does not mention, so that
// a caller sees every problem at once without the same field twice.
func mergeFields(ours []fieldError, theirs []config.FieldError) []fieldError {
	seen := make(map[string]bool, len(ours))
	for _, f := range ours {
		seen[f.Field] = true
	}
	for _, f := range theirs {
		if !seen[f.Field] {
			ours = append(ours, fieldError{Field: f.Field, Message: f.Msg})
		}
	}
	return ours
}

// retryAfter is what a 503 suggests: database/sql reconnects by itself, and a locked SQLite
// database is free again within its busy timeout.
const retryAfter = "5"

// fail answers err from the inventory: a validation error is 400 with its fields, a missing
// record 404, a protected delete 409, an unreachable store 503, anything else 500 with nothing
// of the error in the body (it is logged instead). what names the kind of record ("host").
func (s *server) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	if fe := inventory.FieldErrors(err); fe != nil {
		writeError(w, http.StatusBadRequest, apiError{Error: "invalid " + what + "; nothing was saved", Fields: fieldErrors(fe)})
		return
	}
	switch {
	case errors.Is(err, inventory.ErrNotFound):
		writeError(w, http.StatusNotFound, apiError{Error: "no " + what + " has this id"})
	case errors.Is(err, inventory.ErrInUse):
		// The inventory's message says what is left (no internals: counts and the record's name).
		writeError(w, http.StatusConflict, apiError{Error: err.Error()})
	case store.IsUnavailable(err):
		s.logger.Warn("api: state store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, http.StatusServiceUnavailable, apiError{Error: "the state store is unavailable; try again shortly"})
	case r.Context().Err() != nil:
		// The caller went away or its deadline passed; nobody reads this answer.
		s.logger.Debug("api: request ended before its answer", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusServiceUnavailable, apiError{Error: "the request was cancelled"})
	default:
		s.logger.Error("api: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, apiError{Error: "internal error; it has been logged"})
	}
}

func writeError(w http.ResponseWriter, code int, e apiError) {
	writeJSON(w, code, e)
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// writeJSON encodes v before sending anything, so that an encoding failure is a clean 500 and
// never half a 200.
func writeJSON(w http.ResponseWriter, code int, v any) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<20 { // do not keep a huge list's buffer alive
			bufPool.Put(buf)
		}
	}()
	if err := json.NewEncoder(buf).Encode(v); err != nil {
		buf.Reset()
		code = http.StatusInternalServerError
		_ = json.NewEncoder(buf).Encode(apiError{Error: "internal error: the answer could not be encoded"})
	}
	writeJSONBytes(w, code, buf.Bytes())
}

// writeJSONBytes sends b, a whole JSON answer, with writeJSON's headers.
func writeJSONBytes(w http.ResponseWriter, code int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
