package cluster

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hearthlab/hearth/router"
)

// staticPeers is a PeerSource the test edits.
type staticPeers struct {
	mu    sync.Mutex
	peers []Peer
}

func (s *staticPeers) Peers() []Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Peer(nil), s.peers...)
}

func (s *staticPeers) set(name string, f func(*Peer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.peers {
		if s.peers[i].Name == name {
			f(&s.peers[i])
		}
	}
}

// peer builds a serving node with slots, models on disk and models loaded ("warm").
func peer(name string, slots int, models, warm []string) Peer {
	p := Peer{Name: name, Meta: Meta{Role: RoleServe, API: "http://" + name + ".lan:11500", Slots: uint16(slots), BackendOK: true, StorageOK: true}}
	for _, m := range models {
		p.Inventory.Models = append(p.Inventory.Models, router.ModelInfo{Name: m})
	}
	for _, m := range warm {
		p.Inventory.Loaded = append(p.Inventory.Loaded, router.ModelInfo{Name: m})
	}
	return p
}

func newTestPicker(t *testing.T, cfg PickerConfig, peers ...Peer) (*Picker, *staticPeers) {
	t.Helper()
	src := &staticPeers{peers: peers}
	m, err := NewPickerMetrics(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return NewPicker(cfg, src, nil, m, nil), src
}

func pick(t *testing.T, p *Picker, model, session string) *router.Target {
	t.Helper()
	tg, err := p.Pick(t.Context(), router.PickRequest{Model: model, Session: session})
	if err != nil {
		t.Fatalf("Pick(%s): %v", model, err)
	}
	return tg
}

func TestPickerModelOnlyOnOneNode(t *testing.T) {
	p, _ := newTestPicker(t, PickerConfig{},
		peer("a", 4, []string{"tiny:latest"}, nil),
		peer("b", 4, []string{"tiny:latest", "tiny2:latest"}, nil),
		peer("c", 4, []string{"tiny:latest"}, nil))
	for i := 0; i < 20; i++ {
		tg := pick(t, p, "tiny2:latest", "")
		if tg.Node != "b" || tg.URL.String() != "http://b.lan:11500" {
			t.Fatalf("pick %d went to %s (%s)", i, tg.Node, tg.URL)
		}
		tg.Done(router.Outcome{})
	}
}

func TestPickerWarmBeatsCold(t *testing.T) {
	p, _ := newTestPicker(t, PickerConfig{ColdWait: 100 * time.Millisecond},
		peer("a", 4, []string{"m:latest"}, nil),
		peer("b", 4, []string{"m:latest"}, []string{"m:latest"}),
		peer("c", 4, []string{"m:latest"}, nil))
	for i := 0; i < 4; i++ {
		if tg := pick(t, p, "m:latest", ""); tg.Node != "b" || tg.Reason != "warm" {
			t.Fatalf("pick %d: %s (%s), want the warm node b", i, tg.Node, tg.Reason)
		}
	}
	// b is full now: the next waits ColdWait for it, then loads the model on a cold node.
	if tg := pick(t, p, "m:latest", ""); tg.Node == "b" || tg.Reason != "cold" || tg.Waited < 100*time.Millisecond {
		t.Fatalf("with b full: %s (%s) after %s", tg.Node, tg.Reason, tg.Waited)
	}
}

// TestPickerLoadIsNotStaleGossip: a node that finished our requests is free again at once,
// though its gossiped count still says busy; other routers' share still counts.
func TestPickerLoadIsNotStaleGossip(t *testing.T) {
	p, src := newTestPicker(t, PickerConfig{}, peer("a", 2, []string{"m:latest"}, nil))
	t1, t2 := pick(t, p, "m:latest", ""), pick(t, p, "m:latest", "")
	// Gossip catches up with our two: two in flight, both picked by us (a router named "").
	src.set("a", func(pr *Peer) { pr.Meta.InFlight, pr.Meta.Via = 2, map[uint32]uint16{RouterID(""): 2} })
	p.Kick()
	t1.Done(router.Outcome{})
	t2.Done(router.Outcome{})
	for i := 0; i < 2; i++ { // gossip still says 2: our finished requests must not block
		if _, err := p.Pick(t.Context(), router.PickRequest{Model: "m:latest"}); err != nil || p.Queued() != 0 {
			t.Fatalf("pick %d after our requests ended: %v, queued %d", i, err, p.Queued())
		}
	}
}

func TestPickerFillsByUtilisation(t *testing.T) {
	p, _ := newTestPicker(t, PickerConfig{},
		peer("big", 4, []string{"m:latest"}, []string{"m:latest"}),
		peer("small", 1, []string{"m:latest"}, []string{"m:latest"}))
	counts := map[string]int{}
	for i := 0; i < 5; i++ {
		counts[pick(t, p, "m:latest", "").Node]++
	}
	if counts["big"] != 4 || counts["small"] != 1 {
		t.Fatalf("5 picks over 4+1 slots: %v", counts)
	}
	// Another router's load, seen through gossip, counts as well as our own.
	p2, src := newTestPicker(t, PickerConfig{},
		peer("a", 2, []string{"m:latest"}, nil),
		peer("b", 2, []string{"m:latest"}, nil))
	src.set("a", func(pr *Peer) { pr.Meta.InFlight = 2 })
	for i := 0; i < 2; i++ {
		if tg := pick(t, p2, "m:latest", ""); tg.Node != "b" {
			t.Fatalf("a is full by gossip, got %s", tg.Node)
		}
	}
}

func TestPickerAffinityHoldsUntilSaturated(t *testing.T) {
	p, _ := newTestPicker(t, PickerConfig{},
		peer("a", 2, []string{"m:latest"}, []string{"m:latest"}),
		peer("b", 2, []string{"m:latest"}, []string{"m:latest"}))
	first := pick(t, p, "m:latest", "conv-1")
	first.Done(router.Outcome{})
	for i := 0; i < 2; i++ { // both held: the node's two slots fill
		tg := pick(t, p, "m:latest", "conv-1")
		if tg.Node != first.Node || (i == 0 && tg.Reason != "affinity") {
			t.Fatalf("turn %d of the conversation went to %s (%s), want %s", i, tg.Node, tg.Reason, first.Node)
		}
		_ = tg // held, not Done
	}
	// Its node is saturated now: the conversation moves on rather than wait.
	if tg := pick(t, p, "m:latest", "conv-1"); tg.Node == first.Node {
		t.Fatalf("saturated node %s still picked", tg.Node)
	}
}

func TestPickerQueueIsFIFOAndTimesOut(t *testing.T) {
	p, _ := newTestPicker(t, PickerConfig{MaxQueue: 3, QueueTimeout: 200 * time.Millisecond},
		peer("a", 1, []string{"m:latest"}, nil))
	busy := pick(t, p, "m:latest", "")

	// Three waiters, in order; the fourth finds the queue full.
	order := make(chan int, 3)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	long := NewPicker(PickerConfig{MaxQueue: 3, QueueTimeout: time.Minute}, p.src, nil, p.metrics, nil)
	busyLong := pick(t, long, "m:latest", "")
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tg, err := long.Pick(ctx, router.PickRequest{Model: "m:latest"})
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			if tg.Waited <= 0 {
				t.Errorf("waiter %d: Waited not set", i)
			}
			order <- i
			tg.Done(router.Outcome{})
		}()
		waitQueued(t, long, i+1)
	}
	if _, err := long.Pick(ctx, router.PickRequest{Model: "m:latest"}); !errors.Is(err, router.ErrBusy) {
		t.Fatalf("fourth waiter: %v, want ErrBusy (queue full)", err)
	}
	busyLong.Done(router.Outcome{})
	wg.Wait()
	close(order)
	want := 0
	for got := range order {
		if got != want {
			t.Fatalf("released waiter %d, want %d (FIFO)", got, want)
		}
		want++
	}

	// The short-timeout picker: a lone waiter gives up with ErrBusy.
	_, err := p.Pick(ctx, router.PickRequest{Model: "m:latest"})
	if !errors.Is(err, router.ErrBusy) || p.Queued() != 0 {
		t.Fatalf("after the queue timeout: %v, queued %d", err, p.Queued())
	}
	busy.Done(router.Outcome{})
}

func TestPickerWaiterLeavesWhenClientGoes(t *testing.T) {
	p, _ := newTestPicker(t, PickerConfig{QueueTimeout: time.Minute}, peer("a", 1, []string{"m:latest"}, nil))
	busy := pick(t, p, "m:latest", "")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() {
		_, err := p.Pick(ctx, router.PickRequest{Model: "m:latest"})
		done <- err
	}()
	waitQueued(t, p, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || p.Queued() != 0 {
		t.Fatalf("got %v, queued %d", err, p.Queued())
	}
	busy.Done(router.Outcome{})
	if tg := pick(t, p, "m:latest", ""); tg.Node != "a" {
		t.Fatal("slot not free after the waiter left")
	}
}

func TestPickerUnknownVersusUnavailable(t *testing.T) {
	p, src := newTestPicker(t, PickerConfig{},
		peer("a", 1, []string{"tiny:latest"}, nil),
		peer("b", 1, []string{"tiny:latest", "tiny2:latest"}, nil))
	_, err := p.Pick(t.Context(), router.PickRequest{Model: "llama3:latest"})
	if !errors.Is(err, router.ErrUnknownModel) || err.Error() != "model not found: no node in the cluster has llama3:latest (available: tiny2:latest, tiny:latest)" {
		t.Fatalf("unknown model: %v", err)
	}
	src.set("b", func(pr *Peer) { pr.Meta.BackendOK = false })
	_, err = p.Pick(t.Context(), router.PickRequest{Model: "tiny2:latest"})
	if !errors.Is(err, router.ErrNoCandidate) || err.Error() != "model unavailable: b's Ollama is not answering" {
		t.Fatalf("node down: %v", err)
	}
	// b leaves the cluster: the model is still one that a node had, so 503, not 404.
	src.mu.Lock()
	src.peers = src.peers[:1]
	src.mu.Unlock()
	_, err = p.Pick(t.Context(), router.PickRequest{Model: "tiny2:latest"})
	if !errors.Is(err, router.ErrNoCandidate) || err.Error() != "model unavailable: node b, which had it, has left the cluster" {
		t.Fatalf("node gone: %v", err)
	}
	if tg := pick(t, p, "tiny:latest", ""); tg.Node != "a" {
		t.Fatalf("tiny went to %s", tg.Node)
	}
}

// A model deleted from a node that is still in the cluster (`hearth models rm`) is unknown
// again, not "unavailable" because that node "has left the cluster".
func TestPickerForgetsADeletedModel(t *testing.T) {
	p, src := newTestPicker(t, PickerConfig{},
		peer("a", 1, []string{"tiny:latest"}, nil),
		peer("b", 1, []string{"tiny:latest", "tiny2:latest"}, nil))
	if tg := pick(t, p, "tiny2:latest", ""); tg.Node != "b" {
		t.Fatalf("tiny2 went to %s", tg.Node)
	}
	src.set("b", func(pr *Peer) { pr.Inventory.Models = pr.Inventory.Models[:1] })
	_, err := p.Pick(t.Context(), router.PickRequest{Model: "tiny2:latest"})
	if !errors.Is(err, router.ErrUnknownModel) || err.Error() != "model not found: no node in the cluster has tiny2:latest (available: tiny:latest)" {
		t.Fatalf("deleted model: %v", err)
	}
}

func TestPickerPassesOverUnreachableNode(t *testing.T) {
	p, _ := newTestPicker(t, PickerConfig{SuspectFor: time.Minute},
		peer("a", 4, []string{"m:latest"}, []string{"m:latest"}),
		peer("b", 8, []string{"m:latest"}, nil))
	tg := pick(t, p, "m:latest", "")
	if tg.Node != "a" {
		t.Fatalf("first pick %s", tg.Node)
	}
	tg.Done(router.Outcome{Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}})
	for i := 0; i < 5; i++ {
		if tg := pick(t, p, "m:latest", ""); tg.Node != "b" {
			t.Fatalf("after a refused connection, pick %d went to %s", i, tg.Node)
		}
	}
	// Retries exclude the node that failed.
	tg, err := p.Pick(t.Context(), router.PickRequest{Model: "m:latest", Exclude: []string{"b"}})
	if err == nil {
		t.Fatalf("with a suspect and b excluded, got %s", tg.Node)
	}
}

func TestPickNode(t *testing.T) {
	self := peer("me", 1, nil, nil)
	self.Self = true
	nas := peer("nas", 0, nil, nil)
	nas.Meta.Role = RoleRouter
	p, _ := newTestPicker(t, PickerConfig{Self: "me"}, nas, self, peer("gpu", 1, nil, nil))
	tg, err := p.PickNode(t.Context(), router.NodeRequest{Node: "gpu"})
	if err != nil || tg.Node != "gpu" || tg.URL.String() != "http://gpu.lan:11500" {
		t.Fatalf("named: %v %v", tg, err)
	}
	if _, err := p.PickNode(t.Context(), router.NodeRequest{Node: "nas"}); !errors.Is(err, router.ErrNoNode) || err.Error() != `node not found: "nas" (nodes that serve models: gpu, me)` {
		t.Fatalf("router-only node: %v", err)
	}
}

// TestPickNodeDefault: without a node named, a store operation goes to a serving node whose
// Ollama and store answer (this node first, then by name), and a delete to one whose store
// holds the model; a named node is taken as it is.
func TestPickNodeDefault(t *testing.T) {
	node := func(name string, self, backend, storage bool, stored ...string) Peer {
		pr := peer(name, 1, nil, nil)
		pr.Self, pr.Meta.BackendOK, pr.Meta.StorageOK = self, backend, storage
		for _, m := range stored {
			pr.Inventory.Stored = append(pr.Inventory.Stored, router.ModelInfo{Name: m})
		}
		return pr
	}
	unmounted := func(name string) Peer {
		pr := node(name, false, true, false)
		pr.Inventory.Storage = &router.StorageView{Dir: "/mnt/nas", Required: true, Error: "not on a network filesystem"}
		return pr
	}
	nas := peer("nas", 0, nil, nil)
	nas.Meta.Role = RoleRouter
	tests := []struct {
		name  string
		peers []Peer
		req   router.NodeRequest
		want  string // the node, or the error's message
	}{
		{"this node", []Peer{node("a", false, true, true), node("me", true, true, true)}, router.NodeRequest{}, "me"},
		{"this node's Ollama is down", []Peer{node("me", true, false, true), node("c", false, true, true), node("b", false, true, true)}, router.NodeRequest{}, "b"},
		{"this node's store hangs", []Peer{node("me", true, true, false), node("b", false, false, true), node("c", false, true, true)}, router.NodeRequest{}, "c"},
		{"a router-only node asks", []Peer{nas, node("b", false, true, false), node("c", false, true, true)}, router.NodeRequest{}, "c"},
		{"a delete goes where the store holds the model", []Peer{node("me", true, true, true), node("b", false, true, true, "m:latest")},
			router.NodeRequest{Model: "m"}, "b"},
		{"a delete of a model no fit store holds", []Peer{node("me", true, true, true), node("b", false, false, true, "m:latest")},
			router.NodeRequest{Model: "m"}, "me"},
		{"a named node is taken although it is down", []Peer{node("me", true, true, true), node("b", false, false, false)},
			router.NodeRequest{Node: "b"}, "b"},
		{"a named node whose required mount is missing gets no pull", []Peer{node("me", true, true, true), unmounted("b")},
			router.NodeRequest{Node: "b", Writes: true},
			"node b's model store /mnt/nas is not mounted (not on a network filesystem): a write there would land on its local disk under the mount point; mount the share first (`hearth models doctor`)"},
		{"but a delete", []Peer{node("me", true, true, true), unmounted("b")}, router.NodeRequest{Node: "b", Model: "m"}, "b"},
		{"none answers", []Peer{nas, node("me", true, false, true), node("b", false, true, false)}, router.NodeRequest{},
			"no node can take this now: me (its Ollama is not answering), b (its model storage is not answering); name one with ?node= (`--node`) to try it anyway"},
		{"no serving node", []Peer{nas}, router.NodeRequest{}, "node not found: no node in the cluster serves models"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newTestPicker(t, PickerConfig{Self: "me"}, tc.peers...)
			tg, err := p.PickNode(t.Context(), tc.req)
			got := ""
			if err != nil {
				got = err.Error()
			} else {
				got = tg.Node
				tg.Done(router.Outcome{})
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			var apiErr *router.APIError
			if tc.name == "none answers" && (!errors.As(err, &apiErr) || apiErr.Status != 503 || apiErr.RetryAfter == 0) {
				t.Errorf("all nodes unfit: %#v, want a 503 with Retry-After", err)
			}
		})
	}
}

// TestPickerQueuedFailWhenLastNodeLeaves: requests waiting for a model's nodes get
// model_unavailable as soon as the last of those nodes leaves, not "all nodes busy" after
// router.queue_timeout (an hour here); while one node that has the model stays, they wait
// for it and get its freed slot.
func TestPickerQueuedFailWhenLastNodeLeaves(t *testing.T) {
	p, src := newTestPicker(t, PickerConfig{QueueTimeout: time.Hour},
		peer("a", 1, []string{"m:latest"}, []string{"m:latest"}),
		peer("b", 1, []string{"m:latest"}, []string{"m:latest"}))
	defer p.Close()
	busyA, busyB := pick(t, p, "m:latest", ""), pick(t, p, "m:latest", "")
	if busyA.Node == busyB.Node {
		t.Fatalf("both picks went to %s", busyA.Node)
	}
	type result struct {
		tg  *router.Target
		err error
	}
	results := make(chan result, 3)
	for i := 0; i < 3; i++ {
		go func() {
			tg, err := p.Pick(t.Context(), router.PickRequest{Model: "m:latest"})
			results <- result{tg, err}
		}()
		waitQueued(t, p, i+1)
	}
	leave := func(name string) {
		src.mu.Lock()
		src.peers = slices.DeleteFunc(src.peers, func(pr Peer) bool { return pr.Name == name })
		src.mu.Unlock()
	}
	next := func() result {
		t.Helper()
		select {
		case r := <-results:
			return r
		case <-time.After(time.Second): // the queue's own poll notices a leave within 100ms
			t.Fatalf("no answer within a second; queued %d", p.Queued())
			return result{}
		}
	}

	// a leaves; b still has the model: the waiters stay, and the first gets b's freed slot.
	leave(busyA.Node)
	p.Kick()
	if p.Queued() != 3 {
		t.Fatalf("queued %d after one of two nodes left, want 3", p.Queued())
	}
	busyB.Done(router.Outcome{})
	r := next()
	if r.err != nil || r.tg.Node != busyB.Node {
		t.Fatalf("after %s's slot freed: %v, %v", busyB.Node, r.tg, r.err)
	}

	// b, the model's last node, leaves (the test does not Kick: the queue's poll must see it).
	leave(busyB.Node)
	for i := 0; i < 2; i++ {
		r := next()
		if !errors.Is(r.err, router.ErrNoCandidate) || r.tg != nil {
			t.Fatalf("waiter %d after the last node left: %v, %v; want ErrNoCandidate", i, r.tg, r.err)
		}
	}
	if p.Queued() != 0 {
		t.Fatalf("queued %d, want 0", p.Queued())
	}
	r.tg.Done(router.Outcome{})
}
