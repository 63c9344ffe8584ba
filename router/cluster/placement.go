package cluster

import (
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/hearthlab/hearth/router"
)

// How the picker places a request, beyond DESIGN.md's order (warm, utilisation, latency):
// every free candidate gets an expected completion time, its learnt service time for the
// model plus, when cold, its learnt load time (plus the rest of a load under way); the queue
// is an option too, worth the expected wait for a slot on the warm nodes that are full plus
// their service time. A slow free node is used only when it finishes sooner than waiting for
// a fast one. A request loads its model itself only where that unloads nothing, or when the
// model has no copy anywhere; unloading one model for a second copy of another is the
// planner's (planner.go), one deliberate load at a time.

// warmFor is how long what we last sent a node decides what is loaded there, ahead of its
// /api/ps (read every few seconds, and blind to a load in progress).
const warmFor = 30 * time.Second

// demandFor is how recently a model must have been asked for to count as in demand: its only
// loaded copy is not evicted for another model while requests can wait instead.
const demandFor = 30 * time.Second

// sent is the model last sent to a node.
type sent struct {
	model string
	at    time.Time
}

// estimates is what the picker learns from outcomes: how long a request takes on a node, and
// how long a node takes to load a model.
type estimates struct {
	service map[string]time.Duration // by node+"\x00"+model, and by node: mean request time, warm
	load    map[string]time.Duration // by node: cold load time
	loadAll time.Duration            // any node's, for nodes not seen loading yet
	holds   map[string]int           // by node: most models seen loaded at once (at least 1)
}

func newEstimates() estimates {
	return estimates{service: map[string]time.Duration{}, load: map[string]time.Duration{}, holds: map[string]int{}}
}

func ewma(prev, x time.Duration, weight int) time.Duration {
	if prev == 0 {
		return x
	}
	return (time.Duration(weight-1)*prev + x) / time.Duration(weight)
}

// learnService notes a warm request's duration on node.
func (e *estimates) learnService(node, model string, d time.Duration) {
	k := node + "\x00" + model
	e.service[k] = ewma(e.service[k], d, 5)
	e.service[node] = ewma(e.service[node], d, 5)
}

// learnLoad notes how long a cold load took on node.
func (e *estimates) learnLoad(node string, d time.Duration) {
	e.load[node] = ewma(e.load[node], d, 2)
	e.loadAll = ewma(e.loadAll, d, 2)
}

// serviceOf is the expected duration of a request for model on node; 0 when unknown.
func (e *estimates) serviceOf(node, model string) time.Duration {
	if d := e.service[node+"\x00"+model]; d > 0 {
		return d
	}
	return e.service[node]
}

// loadOf is the expected cold load time on node; guess before any load was seen.
func (e *estimates) loadOf(node string, guess time.Duration) time.Duration {
	if d := e.load[node]; d > 0 {
		return d
	}
	if e.loadAll > 0 {
		return e.loadAll
	}
	return guess
}

// holdsOf is how many models pr holds at once: what it says (ollama.max_loaded), else the
// most it has been seen to hold.
func (e *estimates) holdsOf(pr Peer) int {
	if pr.Meta.Holds > 0 {
		return int(pr.Meta.Holds)
	}
	h := max(1, e.holds[pr.Name], len(pr.Inventory.Loaded))
	e.holds[pr.Name] = h
	return h
}

// resident lists the models loaded on pr as this router believes: what it sent there
// moments ago (being loaded, or loaded), then what /api/ps said, up to what pr holds.
func (p *Picker) resident(pr Peer, now time.Time) []string {
	var out []string
	if s, ok := p.lastSent[pr.Name]; ok && now.Sub(s.at) < warmFor {
		out = append(out, s.model)
	}
	for _, m := range pr.Inventory.Loaded {
		if n := router.NormalizeModel(m.Name); !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out[:min(len(out), p.est.holdsOf(pr))]
}

// candidate is a node that could serve the request now or after a wait.
type candidate struct {
	peer Peer
	warm bool
	// evicts: loading the model there unloads another (the node holds as many as it can).
	evicts bool
	// harm: what it would unload is the only loaded copy of a model in demand.
	harm bool
	// loading: the model is being loaded there now; a request sent there would hold a slot
	// doing nothing until the load ends.
	loading bool
	load    int
	slot    int
	ect     time.Duration // expected completion: service time, plus the load when cold
}

func (c candidate) util() float64 { return float64(c.load) / float64(c.slot) }

func (c candidate) free() bool { return c.load < c.slot }

// describe fills in what placement needs to know of each candidate for model: warmth, what a
// load would evict and whether that hurts, and the expected completion time.
func (p *Picker) describe(model string, cands []candidate, peers []Peer, now time.Time) {
	loaded := map[string][]string{} // node -> resident models, for every serving peer
	for _, pr := range peers {
		if pr.Meta.Role == RoleServe && pr.Meta.BackendOK && !now.Before(p.suspect[pr.Name]) {
			loaded[pr.Name] = p.resident(pr, now)
		}
	}
	names := make([]string, len(cands))
	for i, c := range cands {
		names[i] = c.peer.Name
	}
	for i := range cands {
		c := &cands[i]
		res := loaded[c.peer.Name]
		c.warm = slices.Contains(res, model)
		if !c.warm && len(res) >= p.est.holdsOf(c.peer) {
			c.evicts = true
			victim := res[len(res)-1] // the oldest news: Ollama unloads the least recently used
			c.harm = p.inDemand(victim, now) && !loadedElsewhere(loaded, victim, c.peer.Name)
		}
		c.ect = p.paceOf(c.peer.Name, model, names)
		if c.warm {
			rest := p.remaining(c.peer.Name, model, now) // a load under way
			c.ect += rest
			c.loading = rest > 0
		} else {
			c.ect += p.est.loadOf(c.peer.Name, p.cfg.ColdWait)
		}
	}
}

func loadedElsewhere(loaded map[string][]string, model, except string) bool {
	for node, models := range loaded {
		if node != except && slices.Contains(models, model) {
			return true
		}
	}
	return false
}

// inDemand: model was asked for lately, or requests for it wait.
func (p *Picker) inDemand(model string, now time.Time) bool {
	if a := p.arrived[model]; a != nil && now.Sub(a.last) < demandFor {
		return true
	}
	return p.waitingFor(model)
}

// queueOption is the expected completion of a request that waits for a slot on a warm node
// that is full, with ahead requests for the same model before it; ok is false when no warm
// node is full or their pace is not known yet.
func queueOption(cands []candidate, ahead int, p *Picker, model string) (time.Duration, bool) {
	rate, fastest := 0.0, time.Duration(0)
	for _, c := range cands {
		if !c.warm || c.free() || c.loading {
			continue
		}
		s := p.est.serviceOf(c.peer.Name, model)
		if s <= 0 {
			return 0, false
		}
		rate += float64(c.slot) / s.Seconds()
		if fastest == 0 || s < fastest {
			fastest = s
		}
	}
	if rate == 0 {
		return 0, false
	}
	// A request that waits also holds back every one behind it by as long (each takes the slot
	// the next would have had): its wait counts twice, or a queue would form on the fastest
	// node while slower ones idle.
	wait := time.Duration((float64(ahead) + 0.5) / rate * float64(time.Second))
	return 2*wait + fastest, true
}

// choose takes a slot on the best candidate with one free, or returns nil when the request
// should wait: every candidate is full (or would have to unload another model while this one
// has a copy), or waiting for a warm node is expected to end sooner than the best free one
// would finish. since is when the request began to wait; after ColdWait it takes any free
// node that unloads nothing. ahead is how many requests for the same model wait before it.
func (p *Picker) choose(req router.PickRequest, cands []candidate, since time.Time, ahead int) *router.Target {
	var free []candidate
	anyWarm, anyReady := false, false
	for _, c := range cands {
		anyWarm = anyWarm || c.warm
		anyReady = anyReady || (c.warm && !c.loading)
	}
	for _, c := range cands {
		switch {
		case !c.free():
		case c.loading && anyReady:
			// While the model is loaded somewhere, requests wait for those copies rather
			// than sit in a slot of a node still loading it.
		case c.evicts && anyWarm && len(req.Exclude) == 0:
			// The model has a copy (loaded, or loading): a request does not unload another
			// model to make a second one, it waits for that copy (up to
			// router.queue_timeout). Moving models is the planner's, one deliberate load at
			// a time: requests that each evict what the next one needs make a cascade that
			// serves nobody.
		default:
			free = append(free, c)
		}
	}
	if len(free) == 0 {
		return nil
	}
	rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	sort.SliceStable(free, func(i, j int) bool { return p.better(free[i], free[j]) })
	best := free[0]
	patient := time.Since(since) < p.cfg.ColdWait && len(req.Exclude) == 0
	if patient && anyWarm {
		wait, known := queueOption(cands, ahead, p, req.Model)
		switch {
		case known && wait < best.ect:
			return nil // a warm node frees up before the best free one would finish
		case !known && !best.warm:
			return nil // a cold load costs more than a short wait, and its cost is unknown
		}
	}
	if req.Session != "" {
		if node, ok := p.affinity.Get(req.Session); ok {
			for _, c := range free {
				// The conversation stays while its node is as good a choice, near enough: a
				// reused KV cache is worth a little, not a node several times slower.
				if c.peer.Name == node && c.warm && !c.loading && c.ect <= best.ect*3/2 {
					return p.take(req, c, "affinity")
				}
			}
		}
	}
	reason := "cold"
	switch {
	case len(req.Exclude) > 0:
		reason = "retry" // another node failed this request before its first byte
	case best.warm:
		reason = "warm"
	}
	return p.take(req, best, reason)
}

// better orders free candidates: no harm before harm; clearly sooner completion first; then
// warm, a load that evicts nothing, lower utilisation, more slots for a load, lower latency.
func (p *Picker) better(a, b candidate) bool {
	if a.harm != b.harm {
		return !a.harm
	}
	if a.ect > 0 && b.ect > 0 && (a.ect*5 < b.ect*4 || b.ect*5 < a.ect*4) {
		return a.ect < b.ect
	}
	if a.warm != b.warm {
		return a.warm
	}
	if !a.warm && a.evicts != b.evicts {
		return !a.evicts
	}
	if a.util() != b.util() {
		return a.util() < b.util()
	}
	if !a.warm && a.slot != b.slot {
		return a.slot > b.slot // a model loads where it can serve most
	}
	// Latency decides only when clearly different: noise must not pin every pick.
	ea, eb := p.ewma[a.peer.Name], p.ewma[b.peer.Name]
	return ea > 0 && eb > 0 && float64(ea) < 0.8*float64(eb)
}
