package router

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/hearthlab/hearth/internal/logging"
)

// ServerConfig is the HTTP surface's policy.
type ServerConfig struct {
	// MaxBody is the largest JSON body accepted, in bytes; /api/blobs uploads are streamed.
	MaxBody int64
	// APIKeys are accepted as Bearer tokens from any address.
	APIKeys []string
	// Trusted networks need no key.
	Trusted []netip.Prefix
	// Metrics serves /metrics (nil: 404).
	Metrics http.Handler
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
	r.Group(func(r chi.Router) {
		r.Use(s.auth)
		r.Get("/", running)
		r.Head("/", running)
		if s.cfg.Metrics != nil {
			r.Method(http.MethodGet, "/metrics", s.cfg.Metrics)
		}
		for path, route := range map[string]string{
			"/v1/chat/completions": "chat_completions", "/v1/completions": "completions", "/v1/embeddings": "openai_embeddings",
			"/api/chat": "chat", "/api/generate": "generate", "/api/embed": "embed", "/api/embeddings": "embeddings", "/api/show": "show",
		} {
			r.Post(path, s.modelRoute(route))
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
	return r
}

// running answers Ollama's liveness probe, which the ollama CLI sends before each command.
func running(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "Ollama is running")
}

// modelRoute serves a request that names a model: pick the node that has it, forward.
func (s *Server) modelRoute(route string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		d := DialectOf(r.URL.Path)
		s.metrics.inFlight.WithLabelValues(route).Inc()
		defer s.metrics.inFlight.WithLabelValues(route).Dec()

		body, apiErr := s.readBody(r)
		var model string
		if apiErr == nil {
			model, apiErr = requestModel(body)
		}
		if apiErr != nil {
			s.reject(w, d, route, "", apiErr)
			return
		}
		t, err := s.picker.Pick(r.Context(), PickRequest{Model: model})
		if err != nil {
			s.reject(w, d, route, "", pickError(err, model))
			return
		}
		s.proxy(w, r, d, route, model, t, body, r.URL.RawQuery, start)
	}
}

// storeRoute serves pull, create, copy and delete: they change one node's model store, the
// node named by ?node= or the default one, whose inventory is re-read afterwards.
func (s *Server) storeRoute(route string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		d := DialectOf(r.URL.Path)
		body, apiErr := s.readBody(r)
		if apiErr == nil && !json.Valid(body) {
			apiErr = jsonError(json.Unmarshal(body, new(any)))
		}
		if apiErr != nil {
			s.reject(w, d, route, "", apiErr)
			return
		}
		q := r.URL.Query()
		node := q.Get("node")
		q.Del("node")
		t, err := s.picker.PickNode(r.Context(), node)
		if err != nil {
			s.reject(w, d, route, "", pickError(err, ""))
			return
		}
		status := s.proxy(w, r, d, route, "", t, body, q.Encode(), start)
		if status == http.StatusOK {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
			s.picker.Refresh(ctx)
			cancel()
		}
	}
}

// blob forwards a model-layer upload (or its existence check) without buffering it: layers
// are gigabytes.
func (s *Server) blob(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	node := q.Get("node")
	q.Del("node")
	t, err := s.picker.PickNode(r.Context(), node)
	if err != nil {
		s.reject(w, Ollama, "blobs", "", pickError(err, ""))
		return
	}
	resp, err := s.fwd.send(r.Context(), r, t, r.Body, r.ContentLength, q.Encode())
	if err != nil {
		t.Done(err)
		if e := sendError(r.Context(), t.Node, err); e != nil {
			s.reject(w, Ollama, "blobs", "", e)
		}
		return
	}
	out := s.fwd.relay(w, resp, t.Node)
	t.Done(out.cut)
	s.observe("blobs", "", t.Node, out, start)
}

// proxy forwards body to t and returns the status the client got (0 if it went away).
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, d Dialect, route, model string, t *Target, body []byte, query string, start time.Time) int {
	resp, err := s.fwd.send(r.Context(), r, t, bytes.NewReader(body), int64(len(body)), query)
	if err != nil {
		t.Done(err)
		e := sendError(r.Context(), t.Node, err)
		if e == nil {
			s.metrics.requests.WithLabelValues(route, model, "499").Inc()
			return 0
		}
		s.log.Warn("backend call failed", "node", t.Node, "route", route, "model", model, "err", err)
		s.reject(w, d, route, model, e)
		return e.Status
	}
	out := s.fwd.relay(w, resp, t.Node)
	t.Done(out.cut)
	s.observe(route, model, t.Node, out, start)
	return out.status
}

func (s *Server) observe(route, model, node string, out outcome, start time.Time) {
	end := time.Now()
	s.metrics.requests.WithLabelValues(route, model, strconv.Itoa(out.status)).Inc()
	s.metrics.duration.WithLabelValues(route, model).Observe(end.Sub(start).Seconds())
	if out.firstByte.IsZero() || out.status != http.StatusOK || model == "" {
		return
	}
	s.metrics.ttft.WithLabelValues(route, model).Observe(out.firstByte.Sub(start).Seconds())
	tokens, evalTime, ok := usage(out.tail)
	if !ok || tokens == 0 {
		return
	}
	s.metrics.tokens.WithLabelValues(model, node).Add(float64(tokens))
	if evalTime <= 0 {
		evalTime = end.Sub(out.firstByte)
	}
	if evalTime > 0 {
		s.metrics.tokensRate.WithLabelValues(model, node).Observe(float64(tokens) / evalTime.Seconds())
	}
}

func (s *Server) reject(w http.ResponseWriter, d Dialect, route, model string, e *APIError) {
	s.metrics.requests.WithLabelValues(route, model, strconv.Itoa(e.Status)).Inc()
	WriteError(w, d, e)
}

// readBody reads a JSON request body within node.max_body.
func (s *Server) readBody(r *http.Request) ([]byte, *APIError) {
	tooLarge := &APIError{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large",
		Message: fmt.Sprintf("request body is larger than %d bytes (node.max_body): send less, or raise node.max_body in the agent config", s.cfg.MaxBody)}
	if r.ContentLength > s.cfg.MaxBody {
		return nil, tooLarge
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(io.LimitReader(r.Body, s.cfg.MaxBody+1))
	if err != nil {
		return nil, &APIError{Status: http.StatusBadRequest, Code: "bad_body", Message: fmt.Sprintf("could not read the request body: %v", err)}
	}
	if int64(buf.Len()) > s.cfg.MaxBody {
		return nil, tooLarge
	}
	return buf.Bytes(), nil
}

// requestModel reads the one field the router needs. The body must be valid JSON as a whole:
// forwarding a broken body would only return a worse error from the backend.
func requestModel(body []byte) (string, *APIError) {
	var meta struct {
		Model string `json:"model"`
		Name  string `json:"name"` // older Ollama clients send "name" to /api/show
	}
	if err := json.Unmarshal(body, &meta); err != nil {
		return "", jsonError(err)
	}
	if meta.Model == "" {
		meta.Model = meta.Name
	}
	if strings.TrimSpace(meta.Model) == "" {
		return "", &APIError{Status: http.StatusBadRequest, Code: "missing_model",
			Message: `model is required: name it in the "model" field (GET /api/tags or /v1/models lists what is available)`}
	}
	return NormalizeModel(meta.Model), nil
}

func jsonError(err error) *APIError {
	e := &APIError{Status: http.StatusBadRequest, Code: "invalid_json"}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn) && syn.Offset == 0:
		e.Message = `request body is empty: send a JSON object such as {"model":"NAME", ...}`
	case errors.As(err, &syn) && strings.HasPrefix(syn.Error(), "unexpected end"):
		e.Message = fmt.Sprintf("request body is cut short after %d bytes: send a complete JSON object", syn.Offset)
	case errors.As(err, &syn):
		e.Message = fmt.Sprintf("request body is not valid JSON: %v (at byte %d)", syn, syn.Offset)
	case errors.As(err, &typ) && typ.Field == "":
		e.Message = fmt.Sprintf("request body must be a JSON object, not %s", typ.Value)
	case errors.As(err, &typ):
		e.Message = fmt.Sprintf("request body: %q must be a %s, not %s", typ.Field, typ.Type, typ.Value)
	default:
		e.Message = fmt.Sprintf("request body is not valid JSON: %v", err)
	}
	return e
}

// pickError chooses the answer for a Picker error.
func pickError(err error, model string) *APIError {
	switch {
	case errors.Is(err, ErrUnknownModel):
		return &APIError{Status: http.StatusNotFound, Code: "model_not_found",
			Message: fmt.Sprintf("model %q not found: %v. Pull it with `ollama pull %s`", model, trimSentinel(err, ErrUnknownModel), strings.TrimSuffix(model, ":latest"))}
	case errors.Is(err, ErrNoCandidate):
		return &APIError{Status: http.StatusServiceUnavailable, Code: "model_unavailable", RetryAfter: 10,
			Message: fmt.Sprintf("model %q is unavailable right now: %v", model, trimSentinel(err, ErrNoCandidate))}
	case errors.Is(err, ErrNoNode):
		return &APIError{Status: http.StatusNotFound, Code: "node_not_found", Message: fmt.Sprintf("unknown node %v", trimSentinel(err, ErrNoNode))}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &APIError{Status: http.StatusServiceUnavailable, Code: "timeout", RetryAfter: 5, Message: "gave up waiting for a node: try again"}
	default:
		return &APIError{Status: http.StatusInternalServerError, Code: "internal", Message: "hearth could not choose a node: " + err.Error()}
	}
}

// trimSentinel drops the sentinel's own words from a wrapped message ("model not found: x"
// becomes "x"), since the answer already says them.
func trimSentinel(err, sentinel error) string {
	return strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
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
