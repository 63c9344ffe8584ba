package auth

import (
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hearthlab/hearth/internal/apierror"
	"github.com/hearthlab/hearth/internal/logging"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/tunnel"
)

// siteCookie holds a hearth token for one site host. The __Host- prefix makes browsers refuse
// it unless it is Secure, host-only and for the whole path.
const siteCookie = "__Host-hearth_token"

// loginPath is the relay's own page on every site host that asks for a token.
const loginPath = "/.hearth/login"

// SiteForwarder is what the sites need of the tunnel: *tunnel.Server.
type SiteForwarder interface {
	Forward(w http.ResponseWriter, r *http.Request, host string)
}

var _ SiteForwarder = (*tunnel.Server)(nil)

// Sites serves the home web apps exposed through the tunnel, each on its own host name.
type Sites struct {
	tunnel SiteForwarder
	auth   *Auth
	store  *tokens.Store
	log    *slog.Logger
}

// NewSites serves sites through tun, with a's checks and sign-in against store's tokens.
func NewSites(tun SiteForwarder, a *Auth, store *tokens.Store, logger *slog.Logger) *Sites {
	return &Sites{tunnel: tun, auth: a, store: store, log: logging.OrDiscard(logger)}
}

// Serve forwards r to site, asking for a token first when the site wants one: Bearer for
// API clients, a login page and a cookie for browsers.
func (s *Sites) Serve(w http.ResponseWriter, r *http.Request, site tunnel.Site) {
	if !site.Online {
		http.Error(w, "This app's home is offline: the agent that exposes "+site.Host+" is not connected to the relay.", http.StatusServiceUnavailable)
		return
	}
	if site.Auth == "none" {
		s.tunnel.Forward(w, r, site.Host)
		return
	}
	if r.URL.Path == loginPath {
		s.login(w, r)
		return
	}
	if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		// Require takes the Authorization header off: the app never sees the relay's token.
		s.auth.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.tunnel.Forward(w, r, site.Host)
		})).ServeHTTP(w, r)
		return
	}
	if c, err := r.Cookie(siteCookie); err == nil {
		if s.serveCookie(w, r, site, c.Value) {
			return
		}
	}
	if wantsHTML(r) {
		http.Redirect(w, r, loginPath+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="hearth"`)
	http.Error(w, "This app needs a hearth token: send Authorization: Bearer <token>, or sign in at "+loginPath, http.StatusUnauthorized)
}

// serveCookie forwards r when its cookie holds a valid token, within the address's rate
// limit, and answers a blocked address; it returns false, having answered nothing, when r
// should be asked for a token. As on the login form, the token comes before the lockout (a
// valid one passes from a blocked address) and only a guess counts as a failure, not a
// token past its time.
func (s *Sites) serveCookie(w http.ResponseWriter, r *http.Request, site tunnel.Site, secret string) (answered bool) {
	_, err := s.store.Check(secret)
	if err == nil {
		if wait := s.auth.allowAddress(r); wait > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(apierror.RetrySeconds(wait)))
			http.Error(w, fmt.Sprintf("Too many requests from your address: it is over the relay's limit of %d requests per minute "+
				"(limits.ip_requests_per_minute). Retry in %d s.", s.auth.limits.IPRequestsPerMinute, apierror.RetrySeconds(wait)), http.StatusTooManyRequests)
			return true
		}
		stripCookie(r, siteCookie)
		s.tunnel.Forward(w, r, site.Host)
		return true
	}
	// The browser would send the bad cookie with every request of the page: drop it.
	http.SetCookie(w, &http.Cookie{Name: siteCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	if left := s.auth.blockLeft(r); left > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(apierror.RetrySeconds(left)))
		if wantsHTML(r) {
			w.Header().Set("Cache-Control", "no-store")
			s.renderLogin(w, r, safeNext(r.URL.RequestURI()), tooManyFailures, http.StatusTooManyRequests)
			return true
		}
		http.Error(w, fmt.Sprintf("Too many failed attempts from your address: blocked, try again in %d s "+
			"(a valid token still gets through: Authorization: Bearer <token>).", apierror.RetrySeconds(left)), http.StatusTooManyRequests)
		return true
	}
	if !errors.Is(err, tokens.ErrRevoked) && !errors.Is(err, tokens.ErrExpired) {
		s.auth.failed(r)
	}
	return false
}

// tooManyFailures is the login page's answer to a blocked address.
const tooManyFailures = "Too many failed attempts from your address: try again later."

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in — {{.Host}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:24rem;margin:15vh auto;padding:0 1rem}
input,button{font-size:1rem;width:100%;padding:.6rem;margin:.4rem 0;box-sizing:border-box}.err{color:#b00}</style></head>
<body><h1>{{.Host}}</h1><p>This app is served from home through hearth. Paste a hearth token to continue
(create one on the relay with <code>hearth token create --name NAME</code>).</p>
{{if .Error}}<p class="err">{{.Error}}</p>{{end}}
<form method="post" action="` + loginPath + `"><input type="hidden" name="next" value="{{.Next}}">
<input type="password" name="token" placeholder="hth_..." autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button></form></body></html>`))

// login shows the token form and, on a valid token, sets the site's cookie.
func (s *Sites) login(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.FormValue("next"))
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		s.renderLogin(w, r, next, "", http.StatusOK)
		return
	}
	// The token first, then the lockout: a valid token signs in even from a blocked address
	// (a household shares one), as in Auth.Require.
	tok, err := s.store.Check(strings.TrimSpace(r.PostFormValue("token")))
	if err != nil {
		if left := s.auth.blockLeft(r); left > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(apierror.RetrySeconds(left)))
			s.renderLogin(w, r, next, tooManyFailures, http.StatusTooManyRequests)
			return
		}
		msg := "That token is not valid here."
		if errors.Is(err, tokens.ErrRevoked) || errors.Is(err, tokens.ErrExpired) {
			// A real token past its time is not a guess: it does not count toward the lockout.
			msg = "That token was revoked or has expired."
		} else {
			s.auth.failed(r)
		}
		s.renderLogin(w, r, next, msg, http.StatusUnauthorized)
		return
	}
	maxAge := 30 * 24 * time.Hour
	if tok.ExpiresAt != nil {
		maxAge = min(maxAge, time.Until(*tok.ExpiresAt))
	}
	http.SetCookie(w, &http.Cookie{Name: siteCookie, Value: r.PostFormValue("token"), Path: "/", MaxAge: int(maxAge.Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	s.log.Info("site sign-in", "host", r.Host, "auth_name", tok.Name)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Sites) renderLogin(w http.ResponseWriter, r *http.Request, next, msg string, status int) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, struct{ Host, Next, Error string }{r.Host, next, msg})
}

// safeNext keeps the redirect after sign-in on this host.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func wantsHTML(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// stripCookie removes the relay's own cookie before the request goes to the home app, which
// keeps its own cookies.
func stripCookie(r *http.Request, name string) {
	cookies := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cookies {
		if c.Name != name {
			r.AddCookie(c)
		}
	}
}
