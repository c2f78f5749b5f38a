package web

import (
	"errors"
	"net"
	"net/http"

	"github.com/serversage/sage/internal/auth"
)

type loginData struct {
	base
	Next     string
	Username string
	Error    string
}

// loginPage shows the sign-in form, or sends a signed-in browser on to where it was going.
func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.URL.Query().Get("next"))
	if c, err := r.Cookie(auth.SessionCookie); err == nil && c.Value != "" {
		if _, err := u.auth.SessionUser(r.Context(), c.Value); err == nil {
			redirect(w, r, next)
			return
		}
	}
	u.render(w, r, http.StatusOK, "login", loginData{base: u.base(r, "Sign in", ""), Next: next})
}

// login checks the form's credentials and starts a session. Every failure shows the form again
// with the username kept and the password not.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	username, password := r.PostFormValue("username"), r.PostFormValue("password")
	data := loginData{base: u.base(r, "Sign in", ""), Next: localPath(r.PostFormValue("next")), Username: username}
	fail := func(code int, msg string) {
		data.Error = msg
		u.render(w, r, code, "login", data)
	}
	if username == "" || password == "" {
		fail(http.StatusBadRequest, "Enter your username and password.")
		return
	}
	user, err := u.auth.Authenticate(r.Context(), username, password, remoteIP(r))
	var rl *auth.RateLimitError
	switch {
	case err == nil:
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", itoa(max(int(rl.RetryAfter.Seconds()+0.5), 1)))
		fail(http.StatusTooManyRequests, "Too many failed sign-ins for this user from your address: "+rl.Error()+".")
		return
	case errors.Is(err, auth.ErrInvalidCredentials):
		fail(http.StatusUnauthorized, "Wrong username or password.")
		return
	case errors.Is(err, auth.ErrDisabled):
		fail(http.StatusForbidden, "This account is disabled. Ask an administrator to enable it.")
		return
	case unavailable(err):
		u.logger.Warn("web: sign-in: state store unavailable", "err", err)
		fail(http.StatusServiceUnavailable, "The hub cannot reach its state database just now. Try again in a few seconds.")
		return
	default:
		u.logger.Error("web: sign-in failed", "err", err)
		fail(http.StatusInternalServerError, "Signing in failed because of an internal error; it has been logged.")
		return
	}
	s, err := u.auth.NewSession(r.Context(), user.ID)
	if err != nil {
		if unavailable(err) {
			fail(http.StatusServiceUnavailable, "The hub cannot reach its state database just now. Try again in a few seconds.")
			return
		}
		u.logger.Error("web: starting session", "err", err)
		fail(http.StatusInternalServerError, "Signing in failed because of an internal error; it has been logged.")
		return
	}
	u.logger.Info("signed in", "user", user.Username, "remote", remoteIP(r))
	http.SetCookie(w, auth.NewSessionCookie(r, s))
	redirect(w, r, data.Next)
}

// logout ends the session (the middleware has checked the CSRF token).
func (u *UI) logout(w http.ResponseWriter, r *http.Request) error {
	if c, err := r.Cookie(auth.SessionCookie); err == nil {
		if err := u.auth.EndSession(r.Context(), c.Value); err != nil {
			return err
		}
	}
	http.SetCookie(w, auth.ClearSessionCookie(r))
	redirect(w, r, "/login")
	return nil
}

// remoteIP is the client's address as the connection shows it. X-Forwarded-For is not trusted:
// anyone could send it to escape the failed-login limit.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
