package router

import (
	"fmt"
	"net/http"
	"time"
)

// VirtualModels serves models that live in no node's Ollama: the rag:<collection> models,
// answered by the agent that holds the collection. The agent gives one to the Server
// (ServerConfig.Virtual); its models are listed beside the cluster's.
type VirtualModels interface {
	// Models lists the virtual models the cluster serves, as /api/tags entries (Raw set).
	Models() []ModelInfo
	// Claims reports whether the model belongs to the virtual family (rag:*).
	Claims(model string) bool
	// Serves reports whether some node (this one or a peer Serve forwards to) holds it; a
	// claimed model no node serves is answered as unknown in the caller's dialect.
	Serves(model string) bool
	// Serve answers a request for one of its models on route ("chat", "chat_completions",
	// "generate", "show", ...); body is the whole request.
	Serve(w http.ResponseWriter, r *http.Request, route string, body []byte)
}

// serveVirtual answers requests for virtual models: Serve when a node holds the model (the
// VirtualModels forwards to it), else 404 in the caller's dialect.
func (s *Server) serveVirtual(w http.ResponseWriter, r *http.Request, d Dialect, route, model string, body []byte) bool {
	v := s.cfg.Virtual
	if v == nil || !v.Claims(model) {
		return false
	}
	if !v.Serves(model) {
		s.reject(w, d, route, model, &APIError{Status: http.StatusNotFound, Code: "model_not_found",
			Message: fmt.Sprintf("model %q not found: no node holds that collection (GET /v1/models or `hearth rag ls` lists them)", model)})
		return true
	}
	start := time.Now()
	v.Serve(w, r, route, body)
	s.metrics.seriesFor(route, model, "virtual").duration().Observe(time.Since(start).Seconds())
	return true
}

// withVirtual adds the virtual models to a listing of the cluster's.
func (s *Server) withVirtual(models []ModelInfo) []ModelInfo {
	if s.cfg.Virtual == nil {
		return models
	}
	seen := map[string]bool{}
	for _, m := range models {
		seen[NormalizeModel(m.Name)] = true
	}
	for _, m := range s.cfg.Virtual.Models() {
		if !seen[NormalizeModel(m.Name)] {
			models = append(models, m)
		}
	}
	return models
}
