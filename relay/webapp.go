package relay

import (
	"io"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/hearthlab/hearth/internal/webapp"
)

// mountApp serves the web app: its static shell at / (for browsers) and /app/ without a token
// — files only, the same for everyone — while every call it makes (/app/v1/...) goes through
// the same token check and channel chain as /v1. A GET / that is not a browser's keeps the
// Ollama answer behind the token.
func (rl *Relay) mountApp(r chi.Router) {
	api := http.NewServeMux()
	api.Handle("POST /v1/chat/completions", rl.auth.Require(http.HandlerFunc(rl.chain.ServeHTTP)))
	api.Handle("GET /v1/models", rl.auth.Require(http.HandlerFunc(rl.chain.Models)))
	var home []string
	for _, ch := range rl.cfg.Channels {
		if ch.Type == "home" {
			home = append(home, ch.Name)
		}
	}
	rl.app = webapp.New(webapp.Options{Role: "relay", API: api, HomeChannels: home}, rl.log.With("component", "webapp"))
	r.Handle("/app/*", rl.app)
	r.Method(http.MethodGet, "/", webapp.ForBrowsers(rl.app, rl.auth.Require(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "Ollama is running")
	}))))
}
