package router

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/hearthlab/hearth/internal/webapp"
)

// mountApp serves the web app (ServerConfig.App) at /app/ and, to browsers, at /. Its shell
// is static files and needs no key; its own API (/app/v1/...: models, and the generations,
// which a caller that is neither trusted nor keyed must not read or stop) is behind the same
// trusted-network and key check as any client, and the calls it makes run through this server
// again, with that check too. It is registered after the
// authenticated routes and replaces their GET / with one that still answers the ollama CLI's
// and scripts' GET / with "Ollama is running" behind that check.
func (s *Server) mountApp(r chi.Router) {
	if s.cfg.App == nil {
		return
	}
	r.Handle("/app/*", s.cfg.App)
	r.Handle("/app/v1/*", s.auth(s.cfg.App))
	r.Method(http.MethodGet, "/", webapp.ForBrowsers(s.cfg.App, s.auth(http.HandlerFunc(running))))
}
