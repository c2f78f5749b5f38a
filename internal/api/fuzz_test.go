package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store/storetest"
)

// FuzzParseListQuery: any query string is either refused with named fields or gives a page in
// bounds and filters that are the list's own, printable and short.
func FuzzParseListQuery(f *testing.F) {
	for _, s := range []string{
		"", "limit=10&offset=20", "limit=0", "limit=1001", "offset=-1", "limit=1e3", "status=active&tag=prod",
		"client_id=%00", "name_contains=%FF", "tag=a&tag=b", "a=%zz", "limit=&offset=", ";", "%3D=%3D",
		"name_contains=" + strings.Repeat("x", 1001), "offset=2147483647", "offset=2147483648",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, fe := parseListQuery(raw, hostFilters)
		if len(fe) > 0 {
			for _, e := range fe {
				if e.Field == "" || e.Message == "" || !utf8.ValidString(e.Field) {
					t.Errorf("field error %+v", e)
				}
			}
			return
		}
		if q.page.Limit < 1 || q.page.Limit > maxLimit || q.page.Offset < 0 || q.page.Offset > 1<<31-1 {
			t.Errorf("page %+v out of bounds", q.page)
		}
		for k, v := range q.filters {
			if !slices.Contains(hostFilters, k) {
				t.Errorf("filter %q is not a host filter", k)
			}
			if v == "" || !utf8.ValidString(v) || len(v) > maxQueryValue || strings.IndexFunc(v, unicode.IsControl) >= 0 {
				t.Errorf("filter %s=%q passed", k, v)
			}
		}
	})
}

// FuzzDecodeJSON: any body is either refused with a message (and any field named) or decodes
// into an input that encodes back to an object the decoder accepts again, unchanged.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"name":"a"}`, `{"name":"a","tags":["x"],"site_id":null}`, `{"id":"x"}`, `{"colour":1}`,
		`{"name":1}`, `{"tags":[1]}`, `null`, `[]`, ``, `{"name":"a"} {}`, `{"name":"a"`, `{"end_date":null}`,
		`{"nodes_contracted":1e99}`, `{"rate_minor":-1}`, `{"services":["x"],"start_date":"2026-01-01"}`,
		"{\"name\":\"\\u0000\"}", `{"name":"a","name":"b"}`, ` {"name":"a"} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(v any, readOnly []string, fresh func() any) {
			e := decodeJSON(body, v, readOnly)
			if e != nil {
				if e.Error == "" {
					t.Error("refused without a message")
				}
				for _, fe := range e.Fields {
					if fe.Field == "" || fe.Message == "" {
						t.Errorf("field error %+v", fe)
					}
				}
				return
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			again := fresh()
			if e := decodeJSON(b, again, readOnly); e != nil {
				t.Fatalf("re-encoded input %s refused: %+v", b, e)
			}
			b2, _ := json.Marshal(again)
			if !bytes.Equal(b, b2) {
				t.Errorf("round trip: %s then %s", b, b2)
			}
		}
		check(&hostInput{}, hostReadOnly, func() any { return &hostInput{} })
		check(&contractInput{}, contractReadOnly, func() any { return &contractInput{} })
		check(&clientInput{}, clientReadOnly, func() any { return &clientInput{} })
	})
}

// FuzzHandler sends arbitrary requests to the handler over a real SQLite store: whatever comes
// in, the answer is never a 500, and every error is a JSON object with a message.
func FuzzHandler(f *testing.F) {
	db := storetest.SQLite(f)
	inv := inventory.New(db)
	c, err := inv.CreateClient(f.Context(), inventory.Client{Name: "Acme"})
	if err != nil {
		f.Fatal(err)
	}
	h := newServer(Options{Inventory: inv, Logger: storetest.Logger(f)}, fakeHealth)
	seeds := []struct{ method, path, ctype, body string }{
		{"GET", "hosts?limit=5", "", ""},
		{"POST", "hosts", "application/json", `{"client_id":"` + c.ID + `","name":"web-01","addresses":["10.0.0.5"]}`},
		{"POST", "clients", "application/json", `{"name":"Globex"}`},
		{"PUT", "clients/" + c.ID, "application/json", `{"name":"Acme","slug":"acme"}`},
		{"POST", "contracts", "application/json", `{"client_id":"` + c.ID + `","name":"c","services":["ServerSage"],"currency":"INR","start_date":"2026-01-01"}`},
		{"DELETE", "clients/" + c.ID, "", ""},
		{"GET", "contracts?active_on=2026-01-01&service=patchit", "", ""},
		{"PATCH", "sites/x", "application/json", `{}`},
		{"GET", "services/%FF", "", ""},
		{"POST", "services", "text/plain", `x`},
		{"GET", "../../etc/passwd", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.ctype, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, method, path, ctype string, body []byte) {
		req, err := http.NewRequest(method, "http://hub"+Prefix+path, bytes.NewReader(body))
		if err != nil {
			return // not a request a server could receive
		}
		req.Header.Set("Content-Type", ctype)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch {
		case w.Code >= 500:
			t.Fatalf("%s %s: %d %s", method, path, w.Code, w.Body)
		case w.Code >= 400:
			var e apiError
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %s: %d, not a JSON error: %s", method, path, w.Code, w.Body)
			}
		}
	})
}
