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
	// Asleep names the nodes this node has wake rules for that are not in the cluster now
	// (asleep, or off).
	Asleep []string `json:"asleep,omitempty"`
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
	// Backend and StorageOK say whether the node's Ollama and model store answer.
	Backend   bool   `json:"backend"`
	StorageOK bool   `json:"storage_ok"`
	Problem   string `json:"problem,omitempty"`
	// Storage is the node's model store (storage.models_dir); nil without one.
	Storage *StorageView `json:"storage,omitempty"`
	// Stored is what its store holds, with sizes, from the manifests on disk.
	Stored []ModelSize `json:"stored,omitempty"`
	// Sizes are the sizes of Models, as its Ollama reports them.
	Sizes map[string]int64 `json:"sizes,omitempty"`
	// PruneOwner: its managed Ollama may prune blobs (storage.prune_owner).
	PruneOwner bool `json:"prune_owner,omitempty"`
	Slots      int  `json:"slots"`
	// InFlight is what the node reports serving; Mine is what this router sent it.
	InFlight int      `json:"in_flight"`
	Mine     int      `json:"mine"`
	Queued   int      `json:"queued"`
	Warm     []string `json:"warm"`
	Models   []string `json:"models"`
}

// StorageView is a node's model store as GET /hearth/v1/cluster shows it.
type StorageView struct {
	Dir       string    `json:"dir" msgpack:"d"`
	Required  bool      `json:"required" msgpack:"r"`
	Mounted   bool      `json:"mounted" msgpack:"m"`
	FSType    string    `json:"fs_type" msgpack:"t"`
	Healthy   bool      `json:"healthy" msgpack:"h"`
	Error     string    `json:"error" msgpack:"e"`
	CheckedAt time.Time `json:"checked_at" msgpack:"c"`
}

// ModelSize is a model's name and size in bytes.
type ModelSize struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// ClusterViewer is the optional capability of a Picker to describe the cluster.
type ClusterViewer interface {
	ClusterView() ClusterView
}

// ClusterView describes the one node.
func (s *Single) ClusterView() ClusterView {
	st := s.node.State()
	v := NodeView{Name: st.Name, Role: "serve", API: st.URL.String(), Self: true, Backend: st.Healthy, StorageOK: true,
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
