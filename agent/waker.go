package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/router"
	"github.com/hearthlab/hearth/router/cluster"
)

const (
	// wakeRepeat bounds how often one node gets a magic packet: a lost packet is sent again
	// by a later request (or the same held one), a burst of requests sends one.
	wakeRepeat = 15 * time.Second
	// wakePoll is how often a held request looks for the woken node.
	wakePoll = 200 * time.Millisecond
	// wakeForget is how long a wake waits for its node's first token to be measured.
	wakeForget = 15 * time.Minute
)

// waker wakes sleeping nodes (wake: in agent.yaml). It wraps the cluster's picker: when a
// request's model has no live node but a wake rule's node holds it (as last seen in gossip,
// or on a store a live node shares), it sends the magic packet and, by the rule's policy,
// holds the request until the node has joined with the model or answers 503
// model_unavailable with Retry-After at once.
type waker struct {
	router.Picker
	rules map[string]config.WakeRule
	peers func() []cluster.Peer
	send  func(context.Context, config.WakeRule) error
	now   func() time.Time // the rate limit's clock
	log   *slog.Logger
	dir   string // node.data_dir, where lastSeen is kept; "" = not kept

	packets    *prometheus.CounterVec
	firstToken *prometheus.HistogramVec

	mu       sync.Mutex
	lastSent map[string]time.Time // node -> last packet
	woken    map[string]time.Time // node -> first packet of a wake whose first token is not in yet
	lastSeen map[string][]string  // node -> its models when it was last alive
}

func newWaker(inner router.Picker, rules []config.WakeRule, peers func() []cluster.Peer, dataDir string, reg prometheus.Registerer, logger *slog.Logger) (*waker, error) {
	w := &waker{
		Picker: inner, rules: map[string]config.WakeRule{}, peers: peers, send: SendWake, now: time.Now, log: logger, dir: dataDir,
		lastSent: map[string]time.Time{}, woken: map[string]time.Time{}, lastSeen: map[string][]string{},
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_wake_packets_total", Help: "Wake-on-LAN magic packets sent, by node.",
		}, []string{"node"}),
		firstToken: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_wake_to_first_token_seconds", Help: "Time from a node's first magic packet to the first token it answered.",
			Buckets: []float64{5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600},
		}, []string{"node"}),
	}
	for _, r := range rules {
		w.rules[r.Node] = r
	}
	if dataDir != "" {
		seen, err := loadSeen(dataDir)
		if err != nil {
			logger.Warn("cannot read what the sleeping nodes had", "err", err)
		}
		for node, models := range seen {
			if _, ok := w.rules[node]; ok {
				w.lastSeen[node] = models
			}
		}
	}
	for _, c := range []prometheus.Collector{w.packets, w.firstToken} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("agent: wake metrics: %w", err)
		}
	}
	return w, nil
}

// ClusterView is the inner picker's view with the nodes of the wake rules that are not in
// the cluster now, so that `hearth models doctor` can say whom it did not check.
func (w *waker) ClusterView() router.ClusterView {
	var v router.ClusterView
	if cv, ok := w.Picker.(router.ClusterViewer); ok {
		v = cv.ClusterView()
	}
	alive := map[string]bool{}
	for _, pr := range w.peers() {
		alive[pr.Name] = true
	}
	for _, node := range slices.Sorted(maps.Keys(w.rules)) {
		if !alive[node] {
			v.Asleep = append(v.Asleep, node)
		}
	}
	return v
}

// observe remembers what each alive node has, in memory and in node.data_dir; call it when
// the cluster changes.
func (w *waker) observe() {
	peers := w.peers()
	w.mu.Lock()
	before := maps.Clone(w.lastSeen)
	for _, pr := range peers {
		if _, ok := w.rules[pr.Name]; !ok || pr.Meta.Role != cluster.RoleServe || !pr.Meta.BackendOK {
			continue
		}
		names := []string{}
		for _, m := range pr.Inventory.Models {
			names = append(names, router.NormalizeModel(m.Name))
		}
		slices.Sort(names)
		w.lastSeen[pr.Name] = names
	}
	changed := !sameSeen(before, w.lastSeen)
	seen := maps.Clone(w.lastSeen)
	w.mu.Unlock()
	if changed && w.dir != "" {
		if err := saveSeen(w.dir, seen); err != nil {
			w.log.Warn("cannot keep what the sleeping nodes had", "err", err)
		}
	}
}

// ruleFor is the wake rule of a node that is not up and holds model. A node that has joined
// but whose Ollama does not answer yet (booting, waiting for its store) is not up: requests
// for it are held or answered 503 as while it slept, not 404 for a model that exists.
func (w *waker) ruleFor(model string) (config.WakeRule, bool) {
	alive := map[string]bool{}
	onStore := false
	for _, pr := range w.peers() {
		alive[pr.Name] = pr.Meta.Role == cluster.RoleServe && pr.Meta.BackendOK
		onStore = onStore || pr.Inventory.OnStore(model)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, name := range sortedRuleNames(w.rules) {
		if alive[name] {
			continue
		}
		// It holds what it had when last seen, and what is on the store a live node has: the
		// usual home shares one store, and a node asleep since this agent started was never seen.
		if onStore || contains(w.lastSeen[name], model) {
			return w.rules[name], true
		}
	}
	return config.WakeRule{}, false
}

// Pick wakes a node when no live node can serve the model and a sleeping one can.
func (w *waker) Pick(ctx context.Context, req router.PickRequest) (*router.Target, error) {
	t, err := w.Picker.Pick(ctx, req)
	if err == nil || !wakeable(err) {
		return w.measured(t), err
	}
	rule, ok := w.ruleFor(req.Model)
	if !ok {
		return nil, err
	}
	w.wake(ctx, rule, "request for "+req.Model)
	retry := int(math.Ceil(rule.Wait.Seconds()))
	if rule.Policy == "fallback" {
		return nil, &router.APIError{Status: http.StatusServiceUnavailable, Code: "model_unavailable", RetryAfter: retry,
			Message: fmt.Sprintf("model %q is on node %s, which is asleep: it is being woken (Wake-on-LAN); try again in about %ds", req.Model, rule.Node, retry)}
	}
	hold, cancel := context.WithTimeout(ctx, rule.Wait)
	defer cancel()
	tick := time.NewTicker(wakePoll)
	defer tick.Stop()
	for {
		select {
		case <-hold.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &router.APIError{Status: http.StatusServiceUnavailable, Code: "model_unavailable", RetryAfter: retry,
				Message: fmt.Sprintf("model %q is on node %s, which was woken (Wake-on-LAN) but did not join within %s (wake.wait): is Wake-on-LAN enabled in its BIOS and network card?", req.Model, rule.Node, rule.Wait)}
		case <-tick.C:
		}
		t, err := w.Picker.Pick(hold, req)
		if err == nil {
			return w.measured(t), nil
		}
		if !wakeable(err) && hold.Err() == nil {
			return nil, err
		}
		w.wake(ctx, rule, "held request for "+req.Model)
	}
}

func wakeable(err error) bool {
	return errors.Is(err, router.ErrNoCandidate) || errors.Is(err, router.ErrUnknownModel)
}

// Wake sends node's magic packet now (`hearth wake`, POST /hearth/v1/node/wake).
func (w *waker) Wake(ctx context.Context, node string) error {
	rule, ok := w.rules[node]
	if !ok {
		return fmt.Errorf("%w: no wake rule for %q in this agent's wake: list", router.ErrNoNode, node)
	}
	w.mu.Lock()
	delete(w.lastSent, node) // by hand: never rate-limited
	w.mu.Unlock()
	return w.wake(ctx, rule, "asked by hand")
}

// wake sends the packet unless one went to the node within wakeRepeat.
func (w *waker) wake(ctx context.Context, rule config.WakeRule, why string) error {
	now := w.now()
	w.mu.Lock()
	if last, ok := w.lastSent[rule.Node]; ok && now.Sub(last) < wakeRepeat {
		w.mu.Unlock()
		return nil
	}
	w.lastSent[rule.Node] = now
	if at, ok := w.woken[rule.Node]; !ok || now.Sub(at) > wakeForget {
		w.woken[rule.Node] = now
	}
	w.mu.Unlock()
	sendCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := w.send(sendCtx, rule); err != nil {
		w.log.Error("cannot send the Wake-on-LAN packet", "node", rule.Node, "broadcast", rule.Broadcast, "err", err)
		return err
	}
	w.packets.WithLabelValues(rule.Node).Inc()
	w.log.Info("sent a Wake-on-LAN packet", "node", rule.Node, "mac", rule.MAC, "broadcast", rule.Broadcast, "why", why, "policy", rule.Policy)
	return nil
}

// measured wraps t so that the first answer of a woken node records the wake's time to
// first token.
func (w *waker) measured(t *router.Target) *router.Target {
	if t == nil {
		return nil
	}
	w.mu.Lock()
	at, ok := w.woken[t.Node]
	w.mu.Unlock()
	if !ok {
		return t
	}
	picked := time.Now()
	nt := router.NewTarget(t.Node, t.URL, func(o router.Outcome) {
		t.Done(o)
		if o.Err != nil || o.FirstByte <= 0 {
			return
		}
		w.mu.Lock()
		cur, still := w.woken[t.Node]
		if still && cur.Equal(at) {
			delete(w.woken, t.Node)
		}
		w.mu.Unlock()
		if !still || !cur.Equal(at) {
			return
		}
		took := picked.Add(o.FirstByte).Sub(at)
		w.firstToken.WithLabelValues(t.Node).Observe(took.Seconds())
		w.log.Info("woken node answered its first token", "node", t.Node, "wake_to_first_token", took.Round(time.Millisecond).String())
	})
	nt.Header, nt.Waited, nt.Reason = t.Header, t.Waited, t.Reason
	return nt
}

func contains(list []string, s string) bool { return slices.Contains(list, s) }

func sortedRuleNames(rules map[string]config.WakeRule) []string {
	names := make([]string, 0, len(rules))
	for n := range rules {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
