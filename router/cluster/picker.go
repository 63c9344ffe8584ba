package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/hearthlab/hearth/internal/logging"
	"github.com/hearthlab/hearth/router"
)

// PickerConfig is the routing policy (router: in agent.yaml).
type PickerConfig struct {
	// Self is this node's name.
	Self string
	// MaxQueue bounds the requests waiting for a free slot; beyond it, 503. Default 512.
	MaxQueue int
	// QueueTimeout bounds one request's wait for a free slot; then 503. Default 2m.
	QueueTimeout time.Duration
	// Header is added to requests sent to other agents: the hop marker and the cluster
	// credential.
	Header http.Header
	// SuspectFor is how long a node that could not be reached gets no picks, unless gossip
	// says otherwise first. Default 5s.
	SuspectFor time.Duration
	// ColdWait is how long a request waits for a slot on a node that has its model loaded
	// before it loads the model on a free node: a cold load (from NFS, up to a minute) costs
	// far more than a short wait, and evicts whatever that node had loaded. Default 10s.
	ColdWait time.Duration
}

// PeerSource is the membership view the picker reads; *Membership is one.
type PeerSource interface {
	Peers() []Peer
}

// Picker routes a request for model M to the best node, as DESIGN.md "Routing" says:
// candidates with M and a healthy backend and store; session affinity while that node has a
// free slot; warm before cold; lowest utilisation; lower latency; random tie-break; a bounded
// FIFO queue when every candidate is full.
type Picker struct {
	cfg     PickerConfig
	src     PeerSource
	local   router.Node // this node's backend; nil on a router-only node
	log     *slog.Logger
	metrics *PickerMetrics

	mu       sync.Mutex
	mine     map[string]int           // requests this router has in flight on each node
	ewma     map[string]time.Duration // time to first byte per node
	suspect  map[string]time.Time     // node -> no picks until
	everHad  map[string]string        // model -> a node that once had it
	lastSent map[string]sent          // node -> the model we last sent there, and when
	arrived  map[string]*arrivals     // model -> its recent arrivals
	planned  map[string]time.Time     // model -> when its placement was last considered
	loads    map[string]loading       // node -> the load under way there
	est      estimates
	client   *http.Client    // for loads ahead of need
	bg       context.Context // cancelled by Close: ends loads ahead of need
	stop     context.CancelFunc
	preloads sync.WaitGroup // the loads ahead of need under way; Close waits for them
	queue    []*waiter
	affinity *lru.Cache[string, string]
	changed  func() // tells the membership layer that Queued changed
}

type waiter struct {
	req   router.PickRequest
	ready chan dispatch // buffered: the dispatcher never blocks
	since time.Time
}

// dispatch is how a wait ends: a target, or the reason there will be none (the model's
// last candidate left: waiting longer cannot help).
type dispatch struct {
	t   *router.Target
	err error
}

// NewPicker returns a picker over src. local is this node's backend (nil for router-only).
func NewPicker(cfg PickerConfig, src PeerSource, local router.Node, m *PickerMetrics, logger *slog.Logger) *Picker {
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 512
	}
	if cfg.QueueTimeout <= 0 {
		cfg.QueueTimeout = 2 * time.Minute
	}
	if cfg.SuspectFor <= 0 {
		cfg.SuspectFor = 5 * time.Second
	}
	if cfg.ColdWait <= 0 {
		cfg.ColdWait = 10 * time.Second
	}
	aff, _ := lru.New[string, string](16384) // only fails for a size <= 0
	bg, stop := context.WithCancel(context.Background())
	return &Picker{
		bg: bg, stop: stop,
		cfg: cfg, src: src, local: local, log: logging.OrDiscard(logger), metrics: m,
		mine: map[string]int{}, ewma: map[string]time.Duration{}, suspect: map[string]time.Time{},
		everHad: map[string]string{}, lastSent: map[string]sent{}, est: newEstimates(),
		arrived: map[string]*arrivals{}, planned: map[string]time.Time{}, loads: map[string]loading{},
		client:   &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute}},
		affinity: aff, changed: func() {},
	}
}

// Close abandons the loads ahead of need still under way (the Ollamas carry on loading) and
// waits for their goroutines to end.
func (p *Picker) Close() {
	p.mu.Lock()
	p.stop() // under mu: no preload starts after this
	p.mu.Unlock()
	p.preloads.Wait()
	p.client.CloseIdleConnections()
}

// OnQueueChange registers fn, called (without locks) when the queue length changes.
func (p *Picker) OnQueueChange(fn func()) { p.changed = fn }

// Queued is how many requests wait for a slot now.
func (p *Picker) Queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// candidates lists the nodes for req, or the error that explains why there are none.
func (p *Picker) candidates(req router.PickRequest, now time.Time) ([]candidate, error) {
	var out []candidate
	var why []string
	known := false
	peers := p.src.Peers()
	for _, pr := range peers {
		if pr.Meta.Role != RoleServe || !pr.Inventory.Has(req.Model) {
			continue
		}
		known = true
		p.everHad[req.Model] = pr.Name
		switch {
		case slices.Contains(req.Exclude, pr.Name):
			why = append(why, pr.Name+" failed this request already")
		case !pr.Meta.BackendOK:
			why = append(why, pr.Name+"'s Ollama is not answering")
		case !pr.Meta.StorageOK && !pr.Inventory.Warm(req.Model): // loaded models serve from memory
			why = append(why, pr.Name+"'s "+storeDown(pr))
		case now.Before(p.suspect[pr.Name]):
			why = append(why, pr.Name+" could not serve moments ago (no connection, or its Ollama did not answer)")
		default:
			out = append(out, candidate{peer: pr, load: p.load(pr), slot: max(1, int(pr.Meta.Slots))})
		}
	}
	if len(out) > 0 {
		p.describe(req.Model, out, peers, now)
		return out, nil
	}
	if known {
		return nil, fmt.Errorf("%w: %s", router.ErrNoCandidate, strings.Join(why, "; "))
	}
	if stores := storedOn(peers, req.Model); len(stores) > 0 {
		return nil, storedError(req.Model, stores)
	}
	if node, ok := p.everHad[req.Model]; ok {
		if !slices.ContainsFunc(peers, func(pr Peer) bool { return pr.Name == node }) {
			return nil, fmt.Errorf("%w: node %s, which had it, has left the cluster", router.ErrNoCandidate, node)
		}
		// Still here without it: the model was deleted (`hearth models rm`), not taken away.
		delete(p.everHad, req.Model)
	}
	return nil, fmt.Errorf("%w: no node in the cluster has %s%s", router.ErrUnknownModel, req.Model, p.modelsHint())
}

// storeDown says what is wrong with a node's store whose StorageOK is false: a missing
// mount (check the share) or a store that does not answer (check the NAS).
func storeDown(pr Peer) string {
	if st := pr.Inventory.Storage; st != nil && st.Required && !st.Mounted {
		return "model store " + st.Dir + " is not mounted"
	}
	return "model storage is not answering"
}

func (p *Picker) modelsHint() string {
	seen := map[string]bool{}
	var models []string
	for _, pr := range p.src.Peers() {
		for _, m := range pr.Inventory.Models {
			if !seen[m.Name] {
				seen[m.Name] = true
				models = append(models, m.Name)
			}
		}
	}
	if len(models) == 0 {
		return " (no node has any model yet: pull one with `ollama pull NAME`)"
	}
	sort.Strings(models)
	if len(models) > 8 {
		models = append(models[:8], "...")
	}
	return " (available: " + strings.Join(models, ", ") + ")"
}

// load is how busy a node is: this node's own count is live; for another node, what this
// router has sent it now plus the others' share of its gossiped count (its count less ours,
// both of the same moment: gossip lags, our own count does not).
func (p *Picker) load(pr Peer) int {
	if pr.Self {
		if lc, ok := p.local.(interface{ InFlight() int }); ok {
			return lc.InFlight()
		}
	}
	others := int(pr.Meta.InFlight) - int(pr.Meta.Via[RouterID(p.cfg.Self)])
	return p.mine[pr.Name] + max(0, others)
}

// take records the pick and builds the Target whose Done releases the slot.
func (p *Picker) take(req router.PickRequest, c candidate, reason string) *router.Target {
	name := c.peer.Name
	p.mine[name]++
	p.lastSent[name] = sent{model: req.Model, at: time.Now()}
	if !c.warm {
		p.loads[name] = loading{model: req.Model, until: time.Now().Add(p.est.loadOf(name, p.cfg.ColdWait))}
		p.log.Info("a request loads its model on a node", "model", req.Model, "node", name, "evicts", c.evicts, "reason", reason)
	}
	if req.Session != "" {
		p.affinity.Add(req.Session, name)
	}
	p.metrics.picks.WithLabelValues(name, req.Model, reason).Inc()

	var u *url.URL
	var header http.Header
	var end func()
	if c.peer.Self && p.local != nil {
		u = p.local.State().URL
		if lc, ok := p.local.(router.LoadCounter); ok {
			end = lc.Begin(p.cfg.Self)
		}
	} else {
		u, _ = url.Parse(c.peer.Meta.API) // checked when the peer was accepted
		header = p.cfg.Header
	}
	start, model := time.Now(), req.Model
	kind := pickWarm
	switch {
	case !c.warm:
		kind = pickCold
	case p.remaining(name, model, start) > 0:
		kind = pickLoading // warm soon: a load is under way there
	}
	t := router.NewTarget(name, u, func(o router.Outcome) {
		if end != nil {
			end()
		}
		p.release(name, o, model, kind, time.Since(start))
	})
	t.Header = header
	t.Reason = reason
	return t
}

// pickKind is what a pick found on its node: its model loaded, being loaded, or not.
type pickKind uint8

const (
	pickWarm pickKind = iota
	pickLoading
	pickCold
)

// release frees the slot, learns from the outcome (time to first byte; how long a request
// for model takes there, or how long its load took when it was cold), and hands free slots to
// waiters.
func (p *Picker) release(node string, o router.Outcome, model string, kind pickKind, took time.Duration) {
	p.mu.Lock()
	p.mine[node]--
	if o.FirstByte > 0 && o.Err == nil {
		ttfb := p.ewma[node]
		switch {
		case kind == pickWarm:
			p.est.learnService(node, model, took)
			p.ewma[node] = ewma(ttfb, o.FirstByte, 5)
		case kind == pickCold && ttfb > 0 && o.FirstByte > 3*ttfb:
			p.est.learnLoad(node, o.FirstByte-ttfb) // a cold pick that did load
		}
	}
	if l, ok := p.loads[node]; ok && kind != pickWarm && l.model == model {
		delete(p.loads, node) // the load is over, one way or the other
	}
	if unreachable(o.Err) {
		if fr, ok := p.local.(router.FailureReporter); ok && node == p.cfg.Self {
			fr.Unreachable(o.Err)
		}
		p.suspect[node] = time.Now().Add(p.cfg.SuspectFor)
		p.metrics.failovers.WithLabelValues(node).Inc()
		p.log.Warn("node could not be reached; no picks for it for a while", "node", node, "for", p.cfg.SuspectFor.String(), "err", o.Err)
	}
	n := p.dispatchLocked()
	p.mu.Unlock()
	if n > 0 {
		p.changed()
	}
}

func unreachable(err error) bool { return router.Unreachable(err) }

// Kick re-examines the queue; call it when the cluster changed (a node freed slots, joined).
// It also remembers which node had which model, so that a model whose nodes all left is
// "unavailable" (503), not "unknown" (404).
func (p *Picker) Kick() {
	peers := p.src.Peers()
	p.mu.Lock()
	for _, pr := range peers {
		if pr.Meta.Role == RoleServe {
			for _, m := range pr.Inventory.Models {
				p.everHad[router.NormalizeModel(m.Name)] = pr.Name
			}
		}
	}
	n := p.dispatchLocked()
	p.mu.Unlock()
	if n > 0 {
		p.changed()
	}
}

// dispatchLocked hands free slots to waiters in arrival order; a waiter whose nodes are all
// full does not block one behind it that wants another model. A waiter whose model has no
// candidate any more (its last node left, or its Ollama stopped answering) leaves at once with
// that error, as a new request would: DESIGN.md promises model_unavailable without a wait, which
// is what lets the relay fall back. It returns how many left.
func (p *Picker) dispatchLocked() int {
	if len(p.queue) == 0 {
		return 0
	}
	now := time.Now()
	kept := p.queue[:0]
	ahead := map[string]int{} // per model, the waiters before this one that stay
	for _, w := range p.queue {
		cands, err := p.candidates(w.req, now)
		if err != nil {
			w.ready <- dispatch{err: err}
			continue
		}
		t := p.choose(w.req, cands, w.since, ahead[w.req.Model])
		if t == nil {
			ahead[w.req.Model]++
			kept = append(kept, w)
			continue
		}
		w.ready <- dispatch{t: t}
	}
	n := len(p.queue) - len(kept)
	clear(p.queue[len(kept):])
	p.queue = kept
	return n
}

// Pick chooses the node for a model request, waiting in the queue while every candidate is
// full.
func (p *Picker) Pick(ctx context.Context, req router.PickRequest) (*router.Target, error) {
	p.mu.Lock()
	cands, err := p.candidates(req, time.Now())
	if errors.Is(err, router.ErrUnknownModel) && p.local != nil {
		// The model may have been pulled on this node a moment ago.
		p.mu.Unlock()
		_ = p.local.Refresh(ctx)
		p.mu.Lock()
		cands, err = p.candidates(req, time.Now())
	}
	if err != nil {
		p.mu.Unlock()
		return nil, err
	}
	p.noteArrival(req.Model, time.Now()) // only models the cluster has: names from clients are unbounded
	p.plan(req.Model, time.Now())
	if !p.waitingFor(req.Model) {
		if t := p.choose(req, cands, time.Now(), 0); t != nil {
			p.mu.Unlock()
			return t, nil
		}
	}
	if len(p.queue) >= p.cfg.MaxQueue {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: %d requests are already waiting (router.max_queue)", router.ErrBusy, p.cfg.MaxQueue)
	}
	w := &waiter{req: req, ready: make(chan dispatch, 1), since: time.Now()}
	p.queue = append(p.queue, w)
	p.metrics.queued.Set(float64(len(p.queue)))
	p.mu.Unlock()
	p.changed()
	return p.wait(ctx, w)
}

func (p *Picker) waitingFor(model string) bool {
	for _, w := range p.queue {
		if w.req.Model == model {
			return true
		}
	}
	return false
}

// wait blocks until w is dispatched (or failed), its client leaves, or the queue timeout passes. Gossip
// brings other routers' releases without a local event, so it also re-examines the queue
// every poll.
func (p *Picker) wait(ctx context.Context, w *waiter) (*router.Target, error) {
	timeout := time.NewTimer(p.cfg.QueueTimeout)
	defer timeout.Stop()
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
wait:
	for {
		select {
		case d := <-w.ready:
			return p.dispatched(d, w)
		case <-poll.C:
			p.Kick()
		case <-ctx.Done():
			break wait
		case <-timeout.C:
			break wait
		}
	}
	p.mu.Lock()
	i := slices.Index(p.queue, w)
	if i >= 0 {
		p.queue = slices.Delete(p.queue, i, i+1)
		p.metrics.queued.Set(float64(len(p.queue)))
	}
	p.mu.Unlock()
	if i < 0 { // dispatched (or failed) at the same moment
		d := <-w.ready
		if ctx.Err() != nil {
			if d.t != nil {
				d.t.Done(router.Outcome{Err: ctx.Err()})
			}
			return nil, ctx.Err()
		}
		return p.dispatched(d, w)
	}
	p.changed()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	p.metrics.queueTimeouts.WithLabelValues(w.req.Model).Inc()
	return nil, fmt.Errorf("%w: waited %s for a free slot (router.queue_timeout)", router.ErrBusy, p.cfg.QueueTimeout)
}

func (p *Picker) dispatched(d dispatch, w *waiter) (*router.Target, error) {
	p.mu.Lock()
	p.metrics.queued.Set(float64(len(p.queue)))
	p.mu.Unlock()
	if d.err != nil {
		return nil, d.err
	}
	d.t.Waited = time.Since(w.since)
	p.metrics.queueWait.WithLabelValues(w.req.Model).Observe(d.t.Waited.Seconds())
	return d.t, nil
}
