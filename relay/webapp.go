package relay

import (
	"context"
	"io"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/hearthlab/hearth/internal/apierror"
	"github.com/hearthlab/hearth/internal/webapp"
	"github.com/hearthlab/hearth/relay/auth"
)

// mountApp serves the web app: its static shell at / (for browsers) and /app/ without a token
// — files only, the same for everyone — while every call it makes (/app/v1/...: the model
// list, starting a generation, reading and stopping it) goes through the same token check,
// per-token and per-address limits and lockout as /v1, and then the channel chain. A
// generation belongs to the token id that started it: another token, or the same one revoked,
// cannot read or stop it. A GET / that is not a browser's keeps the Ollama answer behind the
// token.
func (rl *Relay) mountApp(r chi.Router) {
	// The app's API is only reached through Require below, which has put the token in the
	// request's context (and taken the Authorization header off); the chain reads it there.
	api := http.NewServeMux()
	api.Handle("POST /v1/chat/completions", withToken(http.HandlerFunc(rl.chain.ServeHTTP)))
	api.Handle("GET /v1/models", withToken(http.HandlerFunc(rl.chain.Models)))
	var home []string
	for _, ch := range rl.cfg.Channels {
		if ch.Type == "home" {
			home = append(home, ch.Name)
		}
	}
	rl.app = webapp.New(webapp.Options{Role: "relay", API: api, HomeChannels: home, Owner: tokenID, Carry: carryToken,
		Revoked: func(id string) bool { return !rl.store.Live(id) }},
		rl.log.With("component", "webapp"))
	r.Handle("/app/*", rl.app)
	r.Handle("/app/v1/*", rl.auth.Require(rl.app))
	r.Method(http.MethodGet, "/", webapp.ForBrowsers(rl.app, rl.auth.Require(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "Ollama is running")
	}))))
}

// tokenID is the owner of an app request: the id of the token Require found ("" without one).
func tokenID(r *http.Request) string {
	tok, _ := auth.TokenFrom(r.Context())
	return tok.ID
}

// carryToken gives a generation's upstream call the token of the request that started it.
func carryToken(ctx context.Context, r *http.Request) context.Context {
	if tok, ok := auth.TokenFrom(r.Context()); ok {
		return auth.WithToken(ctx, tok)
	}
	return ctx
}

// withToken refuses what reaches the app's API without a token in its context: the chain is
// never run for nobody, should a path ever get here around Require.
func withToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := auth.TokenFrom(r.Context()); !ok {
			apierror.Write(w, apierror.OpenAI, &apierror.Error{Status: http.StatusUnauthorized, Code: "invalid_api_key",
				Message: "no token: sign in to the app with a relay token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
