package router

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/hearthlab/hearth/internal/logging"
)

// ServerConfig is the HTTP surface's policy.
type ServerConfig struct {
	// MaxBody is the largest JSON body accepted, in bytes; /api/blobs uploads are streamed.
	MaxBody int64
	// APIKeys are accepted as Bearer tokens from any address.
	APIKeys []string
	// CORSOrigins are the browser origins allowed besides Ollama's defaults (corsOrigins).
	CORSOrigins []string
	// Trusted networks need no key.
	Trusted []netip.Prefix
	// Metrics serves /metrics (nil: 404).
	Metrics http.Handler
	// Local serves requests another agent forwarded (ForwardedHeader): this node only. Nil:
	// the main picker serves them.
	Local Picker
	// Tunnel reports the tunnel to the relay for /readyz and the cluster view (nil: none).
	Tunnel func() *TunnelView
	// Mounts are extra GET handlers by path that do their own authentication (the cluster's
	// inventory exchange).
	Mounts map[string]http.Handler
	// Virtual serves the rag:<collection> models (nil: none).
	Virtual VirtualModels
	// APIMounts are handlers for every method under a path prefix, behind the API key check
	// (the RAG API on /rag/v1).
	APIMounts map[string]http.Handler
	// Node serves the agent's node operations under /hearth/v1/node/ behind the API key
	// (nil: 404).
	Node http.Handler
	// App is the web app, served at /app/ and to browsers at / (nil: none; router/app.go).
	App http.Handler
}

// Server is the Ollama- and OpenAI-compatible API in front of a Picker.
type Server struct {
	cfg     ServerConfig
	picker  Picker
	fwd     *Forwarder
	metrics *Metrics
	log     *slog.Logger
	keys    [][32]byte
	handler http.Handler
}

// NewServer builds the HTTP surface.
func NewServer(cfg ServerConfig, p Picker, f *Forwarder, m *Metrics, logger *slog.Logger) *Server {
	s := &Server{cfg: cfg, picker: p, fwd: f, metrics: m, log: logging.OrDiscard(logger)}
	for _, k := range cfg.APIKeys {
		s.keys = append(s.keys, sha256.Sum256([]byte(k)))
	}
	s.handler = s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.cors())
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, DialectOf(r.URL.Path), &APIError{Status: http.StatusNotFound, Code: "not_found",
			Message: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, DialectOf(r.URL.Path), &APIError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
			Message: fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)})
	})
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	r.Get("/readyz", s.readyz)
	// The ollama CLI sends HEAD / before each command and, on a 401 without a body, prints only
	// "something went wrong": answered without a key, the command's own request then gets the
	// 401 that says what to fix. It tells nothing /healthz does not.
	r.Head("/", running)
	for path, h := range s.cfg.Mounts {
		r.Method(http.MethodGet, path, h)
	}
	r.Group(func(r chi.Router) {
		r.Use(s.auth)
		r.Get("/", running)
		if s.cfg.Metrics != nil {
			r.Method(http.MethodGet, "/metrics", s.cfg.Metrics)
		}
		for path, route := range map[string]string{
			"/v1/chat/completions": "chat_completions", "/v1/completions": "completions", "/v1/embeddings": "openai_embeddings",
			"/api/chat": "chat", "/api/generate": "generate", "/api/embed": "embed", "/api/embeddings": "embeddings", "/api/show": "show",
		} {
			r.Post(path, s.modelRoute(route))
		}
		r.Get("/hearth/v1/cluster", s.cluster)
		for prefix, h := range s.cfg.APIMounts {
			r.Mount(prefix, h)
		}
		if s.cfg.Node != nil {
			r.Mount("/hearth/v1/node", s.cfg.Node)
		}
		r.Get("/v1/models", s.openAIModels)
		r.Get("/v1/models/*", s.openAIModel)
		r.Get("/api/tags", s.tags)
		r.Head("/api/tags", s.tags)
		r.Get("/api/ps", s.ps)
		r.Get("/api/version", s.version)
		r.Post("/api/pull", s.storeRoute("pull"))
		r.Post("/api/create", s.storeRoute("create"))
		r.Post("/api/copy", s.storeRoute("copy"))
		r.Delete("/api/delete", s.storeRoute("delete"))
		r.Head("/api/blobs/{digest}", s.blob)
		r.Post("/api/blobs/{digest}", s.blob)
	})
	s.mountApp(r)
	return r
}

// running answers Ollama's liveness probe, which the ollama CLI sends before each command.
func running(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "Ollama is running")
}

// auth lets trusted networks through and asks everyone else for one of node.api_keys.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.trusted(r.RemoteAddr) {
			next.ServeHTTP(w, r)
			return
		}
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		switch {
		case !ok || key == "":
			s.log.Warn("request without API key refused", "remote", r.RemoteAddr, "path", r.URL.Path)
			WriteError(w, DialectOf(r.URL.Path), &APIError{Status: http.StatusUnauthorized, Code: "missing_api_key",
				Message: fmt.Sprintf("this address (%s) is not in node.trusted_networks: send \"Authorization: Bearer KEY\" with one of node.api_keys", hostOf(r.RemoteAddr))})
		case !s.validKey(key):
			s.log.Warn("request with a wrong API key refused", "remote", r.RemoteAddr, "path", r.URL.Path)
			WriteError(w, DialectOf(r.URL.Path), &APIError{Status: http.StatusUnauthorized, Code: "invalid_api_key",
				Message: "the API key is not valid here: use one of node.api_keys from the agent config"})
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func (s *Server) trusted(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, p := range s.cfg.Trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// validKey compares hashes in constant time, so neither a key's content nor its length leaks.
func (s *Server) validKey(key string) bool {
	sum := sha256.Sum256([]byte(key))
	found := 0
	for _, k := range s.keys {
		found |= subtle.ConstantTimeCompare(sum[:], k[:])
	}
	return found == 1
}

func hostOf(remote string) string {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap().String()
	}
	return remote
}

// escapePathModel undoes the URL escaping of a model name taken from a path.
func escapePathModel(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}
