package router

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

// viewRefresh bounds how long a listing waits for stale nodes to answer before it is served
// from what is known.
const viewRefresh = 2 * time.Second

// healthyNodes refreshes stale state and returns the nodes that answer, or the answer to give
// when none does.
func (s *Server) healthyNodes(ctx context.Context) ([]NodeState, *APIError) {
	ctx, cancel := context.WithTimeout(ctx, viewRefresh)
	s.picker.Refresh(ctx)
	cancel()
	var up []NodeState
	var problems []string
	for _, n := range s.picker.Nodes() {
		if n.Healthy {
			up = append(up, n)
		} else {
			problems = append(problems, fmt.Sprintf("node %s: %s", n.Name, n.Problem))
		}
	}
	if len(up) == 0 {
		return nil, &APIError{Status: http.StatusServiceUnavailable, Code: "backend_unavailable", RetryAfter: 5,
			Message: "no node's Ollama is answering: " + strings.Join(problems, "; ")}
	}
	return up, nil
}

// union lists each model once, in the order nodes report them, as the first node spelled it,
// with an extra "hearth" field naming the nodes that have it.
func union(nodes []NodeState, pick func(Inventory) []ModelInfo) []ModelInfo {
	index := map[string]int{}
	var out []ModelInfo
	var where [][]string
	for _, n := range nodes {
		for _, m := range pick(n.Inventory) {
			key := NormalizeModel(m.Name)
			i, ok := index[key]
			if !ok {
				i = len(out)
				index[key] = i
				out = append(out, m)
				where = append(where, nil)
			}
			where[i] = append(where[i], n.Name)
		}
	}
	for i := range out {
		out[i].Raw = withNodes(out[i].Raw, where[i])
	}
	return out
}

// withNodes adds "hearth":{"nodes":[...]} to a model entry; clients ignore fields they do
// not know, and people see where a model lives.
func withNodes(raw json.RawMessage, nodes []string) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '{' || raw[len(raw)-1] != '}' {
		return raw
	}
	extra, err := json.Marshal(struct {
		Nodes []string `json:"nodes"`
	}{nodes})
	if err != nil {
		return raw
	}
	out := make([]byte, 0, len(raw)+len(extra)+12)
	out = append(out, raw[:len(raw)-1]...)
	if len(bytes.TrimSpace(raw[1:len(raw)-1])) > 0 {
		out = append(out, ',')
	}
	out = append(out, `"hearth":`...)
	out = append(out, extra...)
	return append(out, '}')
}

func onDisk(inv Inventory) []ModelInfo { return inv.Models }
func loaded(inv Inventory) []ModelInfo { return inv.Loaded }

// tags is GET /api/tags: every model any answering node has.
func (s *Server) tags(w http.ResponseWriter, r *http.Request) { s.ollamaList(w, r, "tags", onDisk) }

// ps is GET /api/ps: every model loaded now on any answering node.
func (s *Server) ps(w http.ResponseWriter, r *http.Request) { s.ollamaList(w, r, "ps", loaded) }

func (s *Server) ollamaList(w http.ResponseWriter, r *http.Request, route string, pick func(Inventory) []ModelInfo) {
	nodes, apiErr := s.healthyNodes(r.Context())
	if apiErr != nil {
		s.reject(w, Ollama, route, "", apiErr)
		return
	}
	raws := make([]json.RawMessage, 0)
	models := union(nodes, pick)
	if route == "tags" {
		models = s.withVirtual(models)
	}
	for _, m := range models {
		raws = append(raws, m.Raw)
	}
	writeJSON(w, struct {
		Models []json.RawMessage `json:"models"`
	}{raws})
	s.metrics.requests.WithLabelValues(route, "", "200").Inc()
}

type openAIModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func toOpenAI(m ModelInfo) openAIModel {
	owner := "library"
	if i := strings.LastIndexByte(m.Name, '/'); i > 0 {
		owner = m.Name[:i]
	}
	return openAIModel{ID: m.Name, Object: "model", Created: m.Modified.Unix(), OwnedBy: owner}
}

// openAIModels is GET /v1/models.
func (s *Server) openAIModels(w http.ResponseWriter, r *http.Request) {
	nodes, apiErr := s.healthyNodes(r.Context())
	if apiErr != nil {
		s.reject(w, OpenAI, "models", "", apiErr)
		return
	}
	data := make([]openAIModel, 0)
	for _, m := range s.withVirtual(union(nodes, onDisk)) {
		data = append(data, toOpenAI(m))
	}
	writeJSON(w, struct {
		Object string        `json:"object"`
		Data   []openAIModel `json:"data"`
	}{"list", data})
	s.metrics.requests.WithLabelValues("models", "", "200").Inc()
}

// openAIModel is GET /v1/models/{model}; model names may contain slashes.
func (s *Server) openAIModel(w http.ResponseWriter, r *http.Request) {
	want := NormalizeModel(escapePathModel(chi.URLParam(r, "*")))
	nodes, apiErr := s.healthyNodes(r.Context())
	if apiErr != nil {
		s.reject(w, OpenAI, "models", "", apiErr)
		return
	}
	for _, m := range s.withVirtual(union(nodes, onDisk)) {
		if NormalizeModel(m.Name) == want {
			writeJSON(w, toOpenAI(m))
			s.metrics.requests.WithLabelValues("models", "", "200").Inc()
			return
		}
	}
	s.reject(w, OpenAI, "models", "", &APIError{Status: http.StatusNotFound, Code: "model_not_found",
		Message: fmt.Sprintf("model %q not found on any node: GET /v1/models lists what is available", want)})
}

// version is GET /api/version, answered by the default node's Ollama: clients compare it
// with their own to enable features.
func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	t, err := s.picker.PickNode(r.Context(), NodeRequest{})
	if err != nil {
		s.reject(w, Ollama, "version", "", pickError(err, ""))
		return
	}
	s.proxy(w, r, Ollama, "version", "", t, nil, "", start, nil)
}

// readyz answers 200 when at least one node's backend answers, 503 otherwise, with each
// node's state so that a person sees why.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	type nodeView struct {
		Name    string `json:"name"`
		Healthy bool   `json:"healthy"`
		Problem string `json:"problem,omitempty"`
		Models  int    `json:"models"`
		Loaded  int    `json:"loaded"`
	}
	var views []nodeView
	ready := false
	for _, n := range s.picker.Nodes() {
		ready = ready || n.Healthy
		views = append(views, nodeView{n.Name, n.Healthy, n.Problem, len(n.Inventory.Models), len(n.Inventory.Loaded)})
	}
	status := http.StatusOK
	if !ready {
		w.Header().Set("Retry-After", "5")
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	var tunnel *TunnelView
	if s.cfg.Tunnel != nil {
		tunnel = s.cfg.Tunnel()
	}
	_ = json.NewEncoder(w).Encode(struct {
		Ready  bool        `json:"ready"`
		Nodes  []nodeView  `json:"nodes"`
		Tunnel *TunnelView `json:"tunnel,omitempty"`
	}{ready, views, tunnel})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}
