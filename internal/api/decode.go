package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/serversage/sage/internal/inventory"
)

// maxBody bounds a request body. The largest valid record (a contract's or a site's notes of
// 10,000 characters, a host's 64 addresses and tags) is far smaller.
const maxBody = 1 << 20

// Paging defaults and bounds.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// maxQueryValue bounds a query parameter's value: filters are ids, names and tags, all short.
const maxQueryValue = 1000

// decodeBody reads r's JSON object into v (a pointer to a struct) strictly, or answers the
// problem and returns false: 415 for a body that is not declared JSON, 413 beyond maxBody, 400 for
// anything else (not an object, unknown or read-only fields, wrong types, trailing data).
func decodeBody(w http.ResponseWriter, r *http.Request, v any, readOnly []string) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, apiError{Error: "the request body must be JSON, sent with Content-Type: application/json"})
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, apiError{Error: fmt.Sprintf("the request body is larger than %d bytes", maxBody)})
			return false
		}
		writeError(w, http.StatusBadRequest, apiError{Error: "the request body could not be read"})
		return false
	}
	if e := decodeJSON(body, v, readOnly); e != nil {
		writeError(w, http.StatusBadRequest, *e)
		return false
	}
	return true
}

// decodeJSON is decodeBody's decoding: body must be exactly one JSON object whose fields are all
// v's. readOnly lists the fields of the record that may not be written, for a clearer message
// than "unknown field" to a caller who sent back what it read.
func decodeJSON(body []byte, v any, readOnly []string) *apiError {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return &apiError{Error: "the request body is empty; send a JSON object"}
	}
	if trimmed[0] != '{' {
		return &apiError{Error: "the request body must be a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, readOnly)
	}
	if _, err := dec.Token(); err != io.EOF {
		return &apiError{Error: "the request body must hold one JSON object and nothing after it"}
	}
	return nil
}

// jsonError turns a decoding error into an answer naming the field where there is one.
func jsonError(err error, readOnly []string) *apiError {
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && te.Field != "" {
		return &apiError{Error: "the request body has a field of the wrong type", Fields: []fieldError{{Field: te.Field, Message: "must be " + kindName(te.Type)}}}
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return &apiError{Error: fmt.Sprintf("the request body is not valid JSON: %s (at byte %d)", se.Error(), se.Offset)}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &apiError{Error: "the request body is not valid JSON: it ends too soon"}
	}
	// encoding/json reports an unknown field only in its message: json: unknown field "x".
	if rest, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, uerr := strconv.Unquote(rest)
		if uerr != nil || name == "" {
			name = rest // quoted, so that it is never empty
		}
		msg := "is not a field of this record"
		if slices.Contains(readOnly, name) {
			msg = "is read-only; leave it out"
		}
		return &apiError{Error: "the request body has a field that cannot be written", Fields: []fieldError{{Field: name, Message: msg}}}
	}
	return &apiError{Error: "the request body is not valid: " + err.Error()}
}

func kindName(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer (in range)"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return kindName(t.Elem()) + " or null"
	}
	return "of another type"
}

// listQuery is a list request's parsed query: the filters given (by parameter name) and the page.
type listQuery struct {
	filters map[string]string
	page    inventory.Page
}

// parseListQuery checks a list's query string: only the named filters and limit and offset, each
// at most once, with short, printable values. An empty value is the same as an absent parameter,
// as an HTML form sends one for an empty field.
func parseListQuery(raw string, filters []string) (listQuery, []fieldError) {
	q := listQuery{filters: map[string]string{}, page: inventory.Page{Limit: defaultLimit}}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, []fieldError{{Field: "query", Message: "is not a valid query string: " + err.Error()}}
	}
	var fe []fieldError
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	slices.Sort(keys) // errors in a stable order
	for _, k := range keys {
		vs := vals[k]
		known := k == "limit" || k == "offset" || slices.Contains(filters, k)
		field := k
		if field == "" || !utf8.ValidString(field) || len(field) > 100 || strings.IndexFunc(field, unicode.IsControl) >= 0 {
			field = strconv.QuoteToASCII(truncate(field, 100))
		}
		switch {
		case !known:
			fe = append(fe, fieldError{Field: field, Message: "is not a query parameter here; known: " + strings.Join(append(slices.Clone(filters), "limit", "offset"), ", ")})
			continue
		case len(vs) > 1:
			fe = append(fe, fieldError{Field: k, Message: "is given more than once"})
			continue
		}
		v := vs[0]
		switch {
		case v == "":
			continue
		case !utf8.ValidString(v):
			fe = append(fe, fieldError{Field: k, Message: "is not valid UTF-8"})
			continue
		case len(v) > maxQueryValue:
			fe = append(fe, fieldError{Field: k, Message: fmt.Sprintf("is longer than %d bytes", maxQueryValue)})
			continue
		case strings.IndexFunc(v, unicode.IsControl) >= 0:
			fe = append(fe, fieldError{Field: k, Message: "contains a control character"})
			continue
		}
		switch k {
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxLimit {
				fe = append(fe, fieldError{Field: k, Message: fmt.Sprintf("must be an integer from 1 to %d", maxLimit)})
				continue
			}
			q.page.Limit = n
		case "offset":
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < 0 {
				fe = append(fe, fieldError{Field: k, Message: "must be an integer from 0 to 2147483647"})
				continue
			}
			q.page.Offset = int(n)
		default:
			q.filters[k] = v
		}
	}
	return q, fe
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// pathID returns the {id} of the request's path, or false when it cannot be any record's id (not
// UTF-8, or with control characters, which PostgreSQL would refuse as a statement error rather
// than find nothing).
func pathID(r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if id == "" || len(id) > 64 || !utf8.ValidString(id) || strings.IndexFunc(id, unicode.IsControl) >= 0 {
		return "", false
	}
	return id, true
}
