package enrol

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const hubToken = "enrol-0123456789abcdefghijklmnopqrstuvwxyz"

var sample = Enrolment{MachineID: "m1", Hostname: "web-1", Addresses: []string{}, OS: "linux", AgentURL: "http://127.0.0.1:1/metrics"}

// fakeHub answers enrolments as internal/hub does, with the answers given in turn (the last one
// repeats). It checks the request the way the hub does: Bearer token, strict JSON body.
type fakeHub struct {
	answers []func(w http.ResponseWriter)
	calls   atomic.Int32
	got     atomic.Pointer[Enrolment]
}

func (f *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(f.calls.Add(1)) - 1
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/enrol" {
		http.Error(w, "wrong endpoint "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+hubToken {
		jsonAnswer(w, 401, `{"error":"a valid enrolment token is required"}`)
		return
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var e Enrolment
	if err := dec.Decode(&e); err != nil {
		jsonAnswer(w, 400, `{"error":"request body is not a valid enrolment"}`)
		return
	}
	f.got.Store(&e)
	f.answers[min(n, len(f.answers)-1)](w)
}

func jsonAnswer(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body+"\n")
}

func answer(code int, body string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) { jsonAnswer(w, code, body) }
}

func fastClient() *Client {
	return &Client{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
}

func TestEnrolAnswers(t *testing.T) {
	created := answer(201, `{"host_id":"h-1","name":"web-1","status":"active","created":true}`)
	tests := []struct {
		name      string
		token     string
		answers   []func(http.ResponseWriter)
		want      Result
		wantCalls int32
		status    int      // a HubError with this status
		fields    []string // and these fields named
		msg       string
	}{
		{"created", hubToken, []func(http.ResponseWriter){created}, Result{"h-1", "web-1", "active", true}, 1, 0, nil, ""},
		{"re-enrolled pending", hubToken, []func(http.ResponseWriter){answer(200, `{"host_id":"h-1","name":"web-1","status":"pending","created":false}`)},
			Result{"h-1", "web-1", "pending", false}, 1, 0, nil, ""},
		{"field errors", hubToken, []func(http.ResponseWriter){answer(400, `{"error":"enrolment refused","fields":[{"field":"machine_id","message":"is required"},{"field":"agent_url","message":"must be an http:// or https:// URL with a host"}]}`)},
			Result{}, 1, 400, []string{"machine_id", "agent_url"}, "enrolment refused"},
		{"wrong token not retried", "wrong", []func(http.ResponseWriter){created}, Result{}, 1, 401, nil, "a valid enrolment token is required"},
		{"5xx retried", hubToken, []func(http.ResponseWriter){
			answer(503, `{"error":"enrolment could not be stored; try again"}`),
			func(w http.ResponseWriter) { http.Error(w, "bad gateway", http.StatusBadGateway) },
			created,
		}, Result{"h-1", "web-1", "active", true}, 3, 0, nil, ""},
		{"200 that is not an enrolment retried", hubToken, []func(http.ResponseWriter){
			func(w http.ResponseWriter) { _, _ = io.WriteString(w, "<html>captive portal</html>") },
			created,
		}, Result{"h-1", "web-1", "active", true}, 2, 0, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fh := &fakeHub{answers: tt.answers}
			srv := httptest.NewServer(fh)
			defer srv.Close()
			res, err := fastClient().Enrol(t.Context(), srv.URL, tt.token, sample)
			if got := fh.calls.Load(); got != tt.wantCalls {
				t.Errorf("%d requests, want %d", got, tt.wantCalls)
			}
			if tt.status != 0 {
				var he *HubError
				if !errors.As(err, &he) || he.StatusCode != tt.status || he.Message != tt.msg || len(he.Fields) != len(tt.fields) {
					t.Fatalf("err = %#v, want HubError %d %q", err, tt.status, tt.msg)
				}
				for i, f := range tt.fields {
					if he.Fields[i].Field != f || !strings.Contains(err.Error(), f+": ") {
						t.Errorf("field %d: %+v, message %q; want %s", i, he.Fields[i], err, f)
					}
				}
				return
			}
			if err != nil || res != tt.want {
				t.Fatalf("got %+v, %v; want %+v", res, err, tt.want)
			}
			if g := fh.got.Load(); g == nil || g.MachineID != "m1" || g.AgentURL != sample.AgentURL {
				t.Errorf("hub received %+v", g)
			}
		})
	}
}

func TestEnrolNetworkErrorHonoursContext(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now: every attempt is refused
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	var attempts atomic.Int32
	c := fastClient()
	c.HTTP = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		attempts.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}
	_, err := c.Enrol(ctx, url, hubToken, sample)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last error") {
		t.Errorf("err = %v, want the deadline with the last error", err)
	}
	if attempts.Load() < 2 {
		t.Errorf("%d attempts: network errors were not retried", attempts.Load())
	}
}

func TestEnrolBackoffIsCapped(t *testing.T) {
	// With a cap of 1 ms, many retries fit in a short deadline; an uncapped doubling would not.
	fh := &fakeHub{answers: []func(http.ResponseWriter){answer(503, `{"error":"later"}`)}}
	srv := httptest.NewServer(fh)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	c := &Client{MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond}
	_, err := c.Enrol(ctx, srv.URL, hubToken, sample)
	if err == nil || fh.calls.Load() < 30 {
		t.Errorf("%d attempts in 2 s with a 1 ms cap (err %v)", fh.calls.Load(), err)
	}
}

func TestEnrolBadHubURL(t *testing.T) {
	for _, u := range []string{"", "hub.example:10731", "ftp://hub", "http://user:pw@hub:1"} {
		if _, err := Enrol(t.Context(), u, hubToken, sample); err == nil || strings.Contains(err.Error(), "pw") {
			t.Errorf("%q: err = %v", u, err)
		}
	}
}

func TestEnrolHubPathPrefix(t *testing.T) {
	fh := &fakeHub{answers: []func(http.ResponseWriter){answer(201, `{"host_id":"h","name":"n","status":"active","created":true}`)}}
	mux := http.NewServeMux()
	mux.Handle("/sage/", http.StripPrefix("/sage", fh))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if _, err := fastClient().Enrol(t.Context(), srv.URL+"/sage/", hubToken, sample); err != nil {
		t.Error(err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
