package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/serversage/sage/internal/auth"
	"github.com/serversage/sage/internal/changelog"
	"github.com/serversage/sage/internal/hosthealth"
	"github.com/serversage/sage/internal/inventory"
	"github.com/serversage/sage/internal/store"
	"github.com/serversage/sage/internal/store/storetest"
)

// testAPI is the API mounted as the hub mounts it: at Prefix, behind auth.Middleware, on a real
// loopback server over a real store.
type testAPI struct {
	srv     *httptest.Server
	inv     *inventory.Inventory
	db      *store.DB
	token   string       // an admin's API token
	session auth.Session // an admin's session
	user    string       // the admin's username
	changed atomic.Int64 // HostsChanged calls
}

type apiConfig struct {
	health healthFunc
	logger *slog.Logger
}

func newTestAPI(t testing.TB, db *store.DB, cfg apiConfig) *testAPI {
	t.Helper()
	ctx := context.Background()
	a := auth.New(db)
	// The user is inserted without a password (no hash matches "!"): the tests sign in by API
	// token and session only, and a bcrypt hash at auth's cost takes seconds under -race.
	userID := store.NewID()
	username := "tester-" + userID
	now := store.Millis(time.Now())
	if _, err := db.ExecContext(ctx, `INSERT INTO users (id, username, username_fold, display_name, role, password_hash, created_at, updated_at)
		VALUES ($1, $2, $2, '', $3, '!', $4, $4)`, userID, username, string(auth.RoleAdmin), now); err != nil {
		t.Fatal(err)
	}
	admin, err := a.GetUser(ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := a.NewAPIToken(ctx, admin.ID, "test", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := a.NewSession(ctx, admin.ID)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.logger == nil {
		cfg.logger = storetest.Logger(t)
	}
	ta := &testAPI{inv: inventory.New(db), db: db, token: secret, session: sess, user: admin.Username}
	h := newServer(Options{Inventory: ta.inv, Changes: changelog.New(db), Logger: cfg.logger, HostsChanged: func() { ta.changed.Add(1) }}, cfg.health)
	mux := http.NewServeMux()
	mux.Handle(Prefix, a.Middleware(h))
	ta.srv = httptest.NewServer(mux)
	t.Cleanup(ta.srv.Close)
	return ta
}

// authKind says how a request authenticates.
type authKind int

const (
	byBearer authKind = iota
	byBasic
	bySession     // cookie and CSRF header
	bySessionOnly // cookie without the CSRF header
	byNothing
)

// request builds a request to the test server.
func (ta *testAPI) request(t testing.TB, method, path, body string, how authKind, contentType string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ta.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType == "" && body != "" {
		contentType = "application/json"
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	switch how {
	case byBearer:
		req.Header.Set("Authorization", "Bearer "+ta.token)
	case byBasic:
		req.SetBasicAuth(ta.user, ta.token)
	case bySession, bySessionOnly:
		req.AddCookie(&http.Cookie{Name: auth.SessionCookie, Value: ta.session.Token})
		if how == bySession {
			req.Header.Set(auth.CSRFHeader, auth.CSRFToken(ta.session.Token))
		}
	}
	return req
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

func (ta *testAPI) send(t testing.TB, req *http.Request) response {
	t.Helper()
	resp, err := ta.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: b}
}

// do sends a request with the admin's API token.
func (ta *testAPI) do(t testing.TB, method, path, body string) response {
	t.Helper()
	return ta.send(t, ta.request(t, method, path, body, byBearer, ""))
}

// mustCreate posts body and returns the created record's id.
func (ta *testAPI) mustCreate(t testing.TB, kind, body string) string {
	t.Helper()
	r := ta.do(t, "POST", Prefix+kind, body)
	if r.code != http.StatusCreated {
		t.Fatalf("POST %s %s: %d %s", kind, body, r.code, r.body)
	}
	id, _ := r.json(t)["id"].(string)
	if id == "" {
		t.Fatalf("POST %s: no id in %s", kind, r.body)
	}
	return id
}

// fakeHealth gives web-01 known figures with some unknown (NaN, and an infinity that must not
// reach JSON either), and every other host the tracker's answer for a host it has never seen.
func fakeHealth(k hosthealth.Key) hosthealth.Health {
	nan := math.NaN()
	if k.Host == "web-01" && k.Client != "" {
		return hosthealth.Health{
			Scraped: true, Up: true, LastScrape: time.Now(), ScrapeDuration: 12 * time.Millisecond,
			CPU: 0.25, Memory: nan, Disk: math.Inf(1), Load1: 0.5, Cores: 8,
		}
	}
	return hosthealth.Health{CPU: nan, Memory: nan, Disk: nan, Load1: nan, Cores: nan}
}
