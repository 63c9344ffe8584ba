package main

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sync"

	"github.com/hearthlab/hearth/router"
)

// backends are the nodes a baseline picker spreads over: straight to each Ollama, with
// nothing known about slots, speed or which model is loaded, as a plain load balancer.
type backends struct {
	names []string
	urls  []*url.URL
}

func (b backends) target(i int, done func(router.Outcome)) *router.Target {
	t := router.NewTarget(b.names[i], b.urls[i], done)
	t.Reason = "baseline"
	return t
}

func (b backends) PickNode(_ context.Context, req router.NodeRequest) (*router.Target, error) {
	for i, n := range b.names {
		if req.Node == "" || req.Node == n {
			return b.target(i, nil), nil
		}
	}
	return nil, fmt.Errorf("%w: %q", router.ErrNoNode, req.Node)
}

func (b backends) Nodes() []router.NodeState {
	out := make([]router.NodeState, len(b.names))
	for i, n := range b.names {
		out[i] = router.NodeState{Name: n, URL: b.urls[i], Healthy: true}
	}
	return out
}

func (backends) Refresh(context.Context) {}

// roundRobin sends each request to the next node in turn; a node that failed this request
// before its first byte is skipped, as the forwarder asks.
type roundRobin struct {
	backends
	mu   sync.Mutex
	next int
}

func (p *roundRobin) Pick(_ context.Context, req router.PickRequest) (*router.Target, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range p.names {
		i := p.next
		p.next = (p.next + 1) % len(p.names)
		if !slices.Contains(req.Exclude, p.names[i]) {
			return p.target(i, nil), nil
		}
	}
	return nil, fmt.Errorf("%w: every node failed this request", router.ErrNoCandidate)
}

// leastConn sends each request to the node with the fewest requests it has in flight there
// (ties go round-robin); it knows neither slots nor loaded models.
type leastConn struct {
	backends
	mu       sync.Mutex
	inFlight []int
	next     int
}

func newLeastConn(b backends) *leastConn {
	return &leastConn{backends: b, inFlight: make([]int, len(b.names))}
}

func (p *leastConn) Pick(_ context.Context, req router.PickRequest) (*router.Target, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	best := -1
	n := len(p.names)
	for k := range n {
		i := (p.next + k) % n
		if slices.Contains(req.Exclude, p.names[i]) {
			continue
		}
		if best < 0 || p.inFlight[i] < p.inFlight[best] {
			best = i
		}
	}
	if best < 0 {
		return nil, fmt.Errorf("%w: every node failed this request", router.ErrNoCandidate)
	}
	p.next = (best + 1) % n
	p.inFlight[best]++
	return p.target(best, func(router.Outcome) {
		p.mu.Lock()
		p.inFlight[best]--
		p.mu.Unlock()
	}), nil
}
