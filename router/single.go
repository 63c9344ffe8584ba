package router

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// staleAfter is how old a node's state may be before a request that depends on it (an
// unknown model, a node that looked down) triggers a fresh read.
const staleAfter = time.Second

// Single is the Picker for one node: the agent in front of its own Ollama.
type Single struct {
	node Node

	mu sync.Mutex // serialises on-demand refreshes
}

// NewSingle returns a Picker that sends everything to node.
func NewSingle(node Node) *Single { return &Single{node: node} }

// Pick returns the node when it has the model and answers.
func (s *Single) Pick(ctx context.Context, req PickRequest) (*Target, error) {
	st := s.node.State()
	if slices.Contains(req.Exclude, st.Name) {
		return nil, fmt.Errorf("%w: node %s already failed this request", ErrNoCandidate, st.Name)
	}
	if !st.Healthy || !st.Inventory.Has(req.Model) {
		// The model may have been pulled behind our back, or Ollama may have just come up.
		st = s.refresh(ctx)
	}
	if !st.Healthy {
		if st.Inventory.Has(req.Model) {
			return nil, fmt.Errorf("%w: node %s has %s but its Ollama is not answering: %s", ErrNoCandidate, st.Name, req.Model, st.Problem)
		}
		return nil, fmt.Errorf("%w: no node can serve %s: node %s's Ollama is not answering: %s", ErrNoCandidate, req.Model, st.Name, st.Problem)
	}
	if !st.Inventory.Has(req.Model) {
		return nil, fmt.Errorf("%w: %s is not on node %s%s", ErrUnknownModel, req.Model, st.Name, available(st.Inventory))
	}
	return s.target(st, req.Origin), nil
}

func (s *Single) target(st NodeState, origin string) *Target {
	var end func()
	if c, ok := s.node.(LoadCounter); ok {
		end = c.Begin(origin)
	}
	t := NewTarget(st.Name, st.URL, func(o Outcome) {
		if end != nil {
			end()
		}
		if fr, ok := s.node.(FailureReporter); ok && Unreachable(o.Err) {
			fr.Unreachable(o.Err)
		}
	})
	t.Reason = "local"
	return t
}

// PickNode returns the node for store operations; it is tried even when it looked down, so
// that its own error reaches the caller.
func (s *Single) PickNode(_ context.Context, req NodeRequest) (*Target, error) {
	st := s.node.State()
	if req.Node != "" && req.Node != st.Name {
		return nil, fmt.Errorf("%w: %q (this agent serves node %q)", ErrNoNode, req.Node, st.Name)
	}
	return s.target(st, ""), nil
}

// Nodes returns the one node's state.
func (s *Single) Nodes() []NodeState { return []NodeState{s.node.State()} }

// Refresh re-reads the node now.
func (s *Single) Refresh(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.node.Refresh(ctx) // the outcome is in the state, with its problem in words
}

// refresh re-reads the node unless it was read within staleAfter: requests that miss a model
// or find the node down trigger at most one read a second.
func (s *Single) refresh(ctx context.Context) NodeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.node.State(); time.Since(st.Checked) < staleAfter {
		return st
	}
	_ = s.node.Refresh(ctx) // the outcome is in the state, with its problem in words
	return s.node.State()
}

func available(inv Inventory) string {
	if len(inv.Models) == 0 {
		return " (it has no models yet: pull one with `ollama pull NAME`)"
	}
	names := ""
	for i, m := range inv.Models {
		if i == 8 {
			names += ", ..."
			break
		}
		if i > 0 {
			names += ", "
		}
		names += m.Name
	}
	return " (available: " + names + ")"
}
