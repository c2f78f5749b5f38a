package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/serversage/sage/internal/store"
)

// Method says how a request was authenticated.
type Method string

const (
	BySession Method = "session" // the session cookie (a browser)
	ByBearer  Method = "bearer"  // Authorization: Bearer <API token>
	ByBasic   Method = "basic"   // HTTP basic auth, username and API token (Grafana)
)

// Identity is who made a request and how.
type Identity struct {
	User   User
	Method Method
	// CSRF is the token the session's forms must carry; empty unless Method is BySession.
	CSRF string
	// TokenID is the API token's id; empty for a session.
	TokenID string
}

type ctxKey struct{}

// WithIdentity returns ctx carrying id (the middleware does this; tests of handlers may too).
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// IdentityFrom returns the identity the middleware put in ctx.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// UserFrom returns the authenticated user of the request whose context is ctx.
func UserFrom(ctx context.Context) (User, bool) {
	id, ok := IdentityFrom(ctx)
	return id.User, ok
}

// MiddlewareOptions adjust Middleware.
type MiddlewareOptions struct {
	// LoginPath, when set, is where an unauthenticated browser asking for a page (GET or HEAD,
	// accepting text/html, no Authorization header) is redirected, with the page in ?next=.
	// Everything else unauthenticated gets 401 with a Basic challenge.
	LoginPath string
	Logger    *slog.Logger
}

// Middleware is MiddlewareWith with no login redirect: every unauthenticated request gets 401.
func (a *Auth) Middleware(next http.Handler) http.Handler {
	return a.MiddlewareWith(MiddlewareOptions{}, next)
}

// MiddlewareWith requires every request to be authenticated, by an Authorization header (Bearer
// API token, or Basic with a username and that user's API token as the password, which is what
// Grafana's Prometheus data source sends) or else by the session cookie, and passes it on with
// the Identity in its context. A request with a session cookie and an unsafe method (not GET,
// HEAD, OPTIONS, TRACE) must carry the session's CSRF token, or gets 403; header-authenticated
// requests need none, as a browser never adds those headers by itself. Which paths are public
// (/healthz, the login page) is the caller's decision: mount them outside this handler.
func (a *Auth) MiddlewareWith(opts MiddlewareOptions, next http.Handler) http.Handler {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := a.identify(r)
		switch {
		case err == nil:
		case errors.Is(err, ErrUnauthenticated):
			a.challenge(w, r, opts)
			return
		case r.Context().Err() != nil:
			// The client went away while its credentials were being looked up: nobody to answer.
			return
		case store.IsUnavailable(err):
			logger.Warn("authentication: state store unavailable", "err", err)
			http.Error(w, "the state store is unavailable; try again shortly", http.StatusServiceUnavailable)
			return
		default:
			logger.Error("authentication failed", "err", err)
			http.Error(w, "internal error while authenticating", http.StatusInternalServerError)
			return
		}
		if id.Method == BySession && !safeMethod(r.Method) {
			c, _ := r.Cookie(SessionCookie)
			if err := CheckCSRF(r, c.Value); err != nil {
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

// identify authenticates r. An Authorization header, when present, decides alone: a bad one is
// not rescued by a cookie, so a script never silently acts as whoever's browser it runs in.
func (a *Auth) identify(r *http.Request) (Identity, error) {
	ctx := r.Context()
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, cred, _ := strings.Cut(h, " ")
		cred = strings.TrimSpace(cred)
		switch {
		case strings.EqualFold(scheme, "Bearer"):
			u, t, err := a.APITokenUser(ctx, cred)
			if err != nil {
				return Identity{}, err
			}
			return Identity{User: u, Method: ByBearer, TokenID: t.ID}, nil
		case strings.EqualFold(scheme, "Basic"):
			name, secret, ok := r.BasicAuth()
			if !ok {
				return Identity{}, ErrUnauthenticated
			}
			u, t, err := a.APITokenUser(ctx, secret)
			if err != nil {
				return Identity{}, err
			}
			if fold(name) != fold(u.Username) {
				return Identity{}, ErrUnauthenticated
			}
			return Identity{User: u, Method: ByBasic, TokenID: t.ID}, nil
		}
		return Identity{}, ErrUnauthenticated
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return Identity{}, ErrUnauthenticated
	}
	u, err := a.SessionUser(ctx, c.Value)
	if err != nil {
		return Identity{}, err
	}
	return Identity{User: u, Method: BySession, CSRF: CSRFToken(c.Value)}, nil
}

func (a *Auth) challenge(w http.ResponseWriter, r *http.Request, opts MiddlewareOptions) {
	if opts.LoginPath != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		r.Header.Get("Authorization") == "" && strings.Contains(r.Header.Get("Accept"), "text/html") {
		http.Redirect(w, r, opts.LoginPath+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="sage", charset="UTF-8"`)
	http.Error(w, "authentication required: sign in, or send an API token (Bearer, or Basic with your username)", http.StatusUnauthorized)
}
