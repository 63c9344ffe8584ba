package router

import (
	"net/http"
	"time"
)

// ClusterView is what GET /hearth/v1/cluster answers and `hearth status` prints.
type ClusterView struct {
	// Self is the name of the node that answered.
	Self  string     `json:"self"`
	Nodes []NodeView `json:"nodes"`
	// Queued is how many requests wait in this node's router for a free slot.
	Queued int `json:"queued"`
	// Tunnel is this node's tunnel to the relay, when it holds one.
	Tunnel *TunnelView `json:"tunnel,omitempty"`
}

// TunnelView is an agent's tunnel to the relay, for /readyz and `hearth status`.
type TunnelView struct {
	Relay     string    `json:"relay"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// NodeView is one node in a ClusterView.
type NodeView struct {
	Name string `json:"name"`
	// Role is "serve" (has an Ollama) or "router" (routes only).
	Role string `json:"role"`
	API  string `json:"api,omitempty"`
	Self bool   `json:"self,omitempty"`
	// Backend and Storage say whether the node's Ollama and model store answer.
	Backend bool   `json:"backend"`
	Storage bool   `json:"storage"`
	Problem string `json:"problem,omitempty"`
	Slots   int    `json:"slots"`
	// InFlight is what the node reports serving; Mine is what this router sent it.
	InFlight int      `json:"in_flight"`
	Mine     int      `json:"mine"`
	Queued   int      `json:"queued"`
	Warm     []string `json:"warm"`
	Models   []string `json:"models"`
}

// ClusterViewer is the optional capability of a Picker to describe the cluster.
type ClusterViewer interface {
	ClusterView() ClusterView
}

// ClusterView describes the one node.
func (s *Single) ClusterView() ClusterView {
	st := s.node.State()
	v := NodeView{Name: st.Name, Role: "serve", API: st.URL.String(), Self: true, Backend: st.Healthy, Storage: true,
		Problem: st.Problem, Slots: 0, Warm: names(st.Inventory.Loaded), Models: names(st.Inventory.Models)}
	return ClusterView{Self: st.Name, Nodes: []NodeView{v}}
}

func names(models []ModelInfo) []string {
	out := make([]string, 0, len(models))
	for _, m := range models {
		out = append(out, m.Name)
	}
	return out
}

// cluster is GET /hearth/v1/cluster.
func (s *Server) cluster(w http.ResponseWriter, _ *http.Request) {
	cv, ok := s.picker.(ClusterViewer)
	if !ok {
		WriteError(w, Ollama, &APIError{Status: http.StatusNotFound, Code: "not_found", Message: "this agent has no cluster view"})
		return
	}
	v := cv.ClusterView()
	if s.cfg.Tunnel != nil {
		v.Tunnel = s.cfg.Tunnel()
	}
	writeJSON(w, v)
}
