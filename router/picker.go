// Package router is hearth's request path: it chooses the node that serves a model (the
// Picker), forwards raw request bytes to it with every stream chunk flushed (the Forwarder),
// and serves the Ollama- and OpenAI-compatible HTTP surface (the Server). Role packages
// (agent) import router; router never imports them, and the relay does not need it.
package router

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/hearthlab/hearth/internal/modelname"
)

// Errors a Picker returns; the Server turns each into a status and a message in the caller's
// dialect. Wrap them with the details a person needs.
var (
	// ErrUnknownModel: no node has the model at all (404).
	ErrUnknownModel = errors.New("model not found")
	// ErrNoCandidate: nodes know the model but none can serve it now (503 model_unavailable).
	ErrNoCandidate = errors.New("model unavailable")
	// ErrBusy: every node that could serve is full and the wait queue is full or timed out
	// (503 with Retry-After).
	ErrBusy = errors.New("all nodes busy")
	// ErrNoNode: the node asked for by name is not known (404).
	ErrNoNode = errors.New("node not found")
)

// ModelInfo is one model as a node's Ollama reported it.
type ModelInfo struct {
	// Name as Ollama spells it ("tiny:latest"); compare with NormalizeModel.
	Name string
	// Size in bytes.
	Size int64
	// Modified is when the model was last changed on disk.
	Modified time.Time
	// Raw is the entry exactly as Ollama sent it in /api/tags or /api/ps, so that views
	// re-serve every field (digest, details, expires_at, ...) without knowing them.
	Raw json.RawMessage
}

// Inventory is what a node can serve: models on disk and models loaded now.
type Inventory struct {
	Models []ModelInfo
	Loaded []ModelInfo
	// Stored is what the node's model store (storage.models_dir) holds, read from Ollama's
	// manifests on disk: known even while its Ollama is stopped or the machine sleeps.
	Stored []ModelInfo
	// Storage is the store's health; nil without storage.models_dir.
	Storage *StorageView
}

// OnStore reports whether the normalised model name is on the node's model store.
func (inv Inventory) OnStore(model string) bool { return find(inv.Stored, model) }

// Has reports whether the normalised model name is on disk.
func (inv Inventory) Has(model string) bool { return find(inv.Models, model) }

// Warm reports whether the normalised model name is loaded now.
func (inv Inventory) Warm(model string) bool { return find(inv.Loaded, model) }

func find(models []ModelInfo, name string) bool {
	for _, m := range models {
		if NormalizeModel(m.Name) == name {
			return true
		}
	}
	return false
}

// NodeState is a node's health and inventory at one moment.
type NodeState struct {
	Name string
	// URL is where the node's Ollama API answers.
	URL *url.URL
	// Healthy: the backend answered its last check.
	Healthy bool
	// Problem says in words why the node is not healthy ("" when healthy).
	Problem string
	// Version is the backend's Ollama version.
	Version   string
	Inventory Inventory
	// Checked is when the state was last read from the backend.
	Checked time.Time
}

// Node is one model server as the router sees it. The agent's watch of its local Ollama is
// one implementation; the cluster's view of a remote agent is another.
type Node interface {
	State() NodeState
	// Refresh re-reads health and inventory now, e.g. after a pull or before answering 404.
	Refresh(ctx context.Context) error
}

// PickRequest describes what a request needs from a node.
type PickRequest struct {
	// Model is normalised.
	Model string
	// Session keeps a conversation on one node (KV-cache reuse): the X-Hearth-Session header,
	// else a hash of the conversation's first messages; "" for none.
	Session string
	// Exclude names nodes already tried for this request.
	Exclude []string
	// Origin is the agent that forwarded this request here (its router picked this node);
	// "" when a client sent it straight to this agent.
	Origin string
}

// Target is the node chosen for one request. Call Done exactly once when the request ends.
type Target struct {
	Node string
	URL  *url.URL
	// Header is added to the request sent to the node (cluster hop marker and credentials).
	Header http.Header
	// Waited is how long the request queued for a free slot.
	Waited time.Duration
	// Reason says why this node was picked ("warm", "cold", "affinity", "retry", "local").
	Reason string
	done   func(Outcome)
}

// Outcome is how a request to a Target went.
type Outcome struct {
	// Err is nil when the node answered.
	Err error
	// FirstByte is the time from sending to the node's first response byte (0 if none).
	FirstByte time.Duration
}

// Done tells the picker how the request went, releasing what it held.
func (t *Target) Done(o Outcome) {
	if t.done != nil {
		t.done(o)
		t.done = nil
	}
}

// NewTarget returns a Target whose Done calls done (nil: nothing to release).
func NewTarget(node string, u *url.URL, done func(Outcome)) *Target {
	return &Target{Node: node, URL: u, done: done}
}

// FailureReporter is implemented by nodes that want to hear at once that a request could not
// reach them, rather than at their next health check.
type FailureReporter interface {
	Unreachable(err error)
}

// errNodeUnavailable: the node answered 502/503 before any byte reached the client (its
// Ollama is down or full).
var errNodeUnavailable = errors.New("node unavailable")

// Unreachable reports whether err means the node could not serve at all — no connection, or
// a 502/503 before the first byte — which another node may not share (as opposed to the
// client leaving, or a failure mid-answer).
func Unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, errNodeUnavailable) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// LoadCounter is implemented by nodes that count the requests their backend serves now;
// pickers call Begin for each request they send to such a node, and the returned end when it
// finishes.
type LoadCounter interface {
	// Begin counts one request; origin is the router that picked the node for it (its
	// name), so that each router can tell its own share of the node's load from the others'.
	Begin(origin string) (end func())
}

// NodeRequest is what a store operation asks of its node.
type NodeRequest struct {
	// Node is the node named by ?node=; "" leaves the choice to the picker.
	Node string
	// Model is the model a delete removes ("" for other operations): a node whose store
	// holds it is preferred.
	Model string
	// Writes is set for operations that write to the store (pull, create, copy, a blob
	// upload): a named node whose required mount is missing refuses them.
	Writes bool
}

// Picker chooses nodes. A single local backend is one implementation; the cluster picker of
// the gossip layer is another.
type Picker interface {
	// Pick chooses the node for a model request: ErrUnknownModel when no node has the model,
	// ErrNoCandidate when some do but none can serve now.
	Pick(ctx context.Context, req PickRequest) (*Target, error)
	// PickNode chooses the node for store operations (pull, delete, create, copy, blobs) and
	// version: req.Node "" means the default node; an unknown name is ErrNoNode.
	PickNode(ctx context.Context, req NodeRequest) (*Target, error)
	// Nodes is every node's current state, for views, /readyz and status.
	Nodes() []NodeState
	// Refresh re-reads the state of the nodes this agent can read directly (its own), bounded
	// by ctx: listings and store changes made through hearth show at once.
	Refresh(ctx context.Context)
}

// NormalizeModel gives a model name its canonical form: lower case with an explicit tag, so
// that "llama3", "Llama3" and "llama3:latest" are one model, as Ollama treats them (see
// internal/modelname, which the relay shares).
func NormalizeModel(name string) string { return modelname.Normalize(name) }
