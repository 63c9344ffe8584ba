package router

import (
	"net/http"

	"github.com/go-chi/cors"
)

// ollamaOrigins are the browser origins Ollama allows without OLLAMA_ORIGINS
// (envconfig.AllowedOrigins in v0.17): pages of this machine on any port and the schemes of
// desktop apps and editors. A drop-in for Ollama must answer the same pages' preflights, or a
// chat page running in the browser gets 405 on OPTIONS where Ollama said yes.
var ollamaOrigins = []string{
	"http://localhost", "https://localhost", "http://localhost:*", "https://localhost:*",
	"http://127.0.0.1", "https://127.0.0.1", "http://127.0.0.1:*", "https://127.0.0.1:*",
	"http://0.0.0.0", "https://0.0.0.0", "http://0.0.0.0:*", "https://0.0.0.0:*",
	"app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*",
}

// corsHeaders are the request headers a page may send: Ollama's list (its own clients' and
// the openai SDK's x-stainless-* ones).
var corsHeaders = []string{
	"Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With", "OpenAI-Beta",
	"x-stainless-arch", "x-stainless-async", "x-stainless-custom-poll-interval", "x-stainless-helper-method",
	"x-stainless-lang", "x-stainless-os", "x-stainless-package-version", "x-stainless-poll-helper",
	"x-stainless-retry-count", "x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-timeout",
}

// cors answers browsers' preflights (OPTIONS, before any key is asked: a browser sends none
// there) and marks the answers to allowed origins as readable by their pages. It grants no
// access: the request itself still needs a key or a trusted network.
func (s *Server) cors() func(http.Handler) http.Handler {
	return cors.Handler(cors.Options{
		AllowedOrigins: append(append([]string{}, ollamaOrigins...), s.cfg.CORSOrigins...),
		AllowedMethods: []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodOptions},
		AllowedHeaders: corsHeaders,
		MaxAge:         300,
	})
}
