package router

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/hearthlab/hearth/internal/webapp"
)

// mountApp serves the web app (ServerConfig.App) at /app/ and, to browsers, at /. Its shell
// is static files and needs no key; the calls it makes (/app/v1/...) run through this server
// with the same trusted-network and key check as any client. It is registered after the
// authenticated routes and replaces their GET / with one that still answers the ollama CLI's
// and scripts' GET / with "Ollama is running" behind that check.
func (s *Server) mountApp(r chi.Router) {
	if s.cfg.App == nil {
		return
	}
	r.Handle("/app/*", s.cfg.App)
	r.Method(http.MethodGet, "/", webapp.ForBrowsers(s.cfg.App, s.auth(http.HandlerFunc(running))))
}
