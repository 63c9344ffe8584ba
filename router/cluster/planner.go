package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// The planner decides where models are loaded, apart from the requests: when a model's
// demand (its arrival rate over the last seconds) comes near what its loaded copies serve,
// it searches for a better placement of the models in demand (plan.go) and moves toward it
// one load at a time, asking a node's Ollama to load a model (a generate request with no
// prompt) while the requests go on to the loaded copies. A load in progress makes the node
// warm for that model, with the rest of the load added to its expected completion.

// planBusy is the share of a model's capacity its demand may use before the planner loads it
// on another node: above it, queues grow quickly.
const planBusy = 0.75

// rateWindow is how far back a model's arrival rate is counted, in one-second buckets.
const rateWindow = 10

// planEvery bounds how often one model's placement is reconsidered.
const planEvery = 500 * time.Millisecond

// unknownPace stands for a request's duration on every node before any has been measured.
const unknownPace = time.Second

// preloadTimeout bounds a load ahead of need: a cold load from NFS can take minutes.
const preloadTimeout = 10 * time.Minute

// arrivals counts a model's requests per second over the last rateWindow seconds.
type arrivals struct {
	first   time.Time
	last    time.Time // the newest arrival
	buckets [rateWindow]int
	sec     int64 // the unix second of the newest bucket
}

func (a *arrivals) add(now time.Time) {
	if a.first.IsZero() {
		a.first = now
	}
	a.last = now
	a.roll(now)
	a.buckets[now.Unix()%rateWindow]++
}

// roll clears the buckets of the seconds that passed since the last arrival.
func (a *arrivals) roll(now time.Time) {
	s := now.Unix()
	for t := max(a.sec+1, s-rateWindow+1); t <= s; t++ {
		a.buckets[t%rateWindow] = 0
	}
	a.sec = max(a.sec, s)
}

// rate is requests per second over the window (or since the first arrival, if sooner).
func (a *arrivals) rate(now time.Time) float64 {
	if a.first.IsZero() {
		return 0
	}
	a.roll(now)
	n := 0
	for _, b := range a.buckets {
		n += b
	}
	span := min(float64(rateWindow), max(1, now.Sub(a.first).Seconds()))
	return float64(n) / span
}

// loading is a load under way on a node: which model, and when it should be done.
type loading struct {
	model string
	until time.Time
}

// remaining is how much of a load of model on node is left; 0 when none is under way.
func (p *Picker) remaining(node, model string, now time.Time) time.Duration {
	if l, ok := p.loads[node]; ok && l.model == model && l.until.After(now) {
		return l.until.Sub(now)
	}
	return 0
}

// paceOf is the expected duration of a request for model on node: learnt there, else the
// node's for any model, else (a node not used yet) the fastest known for model among nodes;
// 0 when none is known.
func (p *Picker) paceOf(node, model string, nodes []string) time.Duration {
	if s := p.est.serviceOf(node, model); s > 0 {
		return s
	}
	fastest := time.Duration(0)
	for _, n := range nodes {
		if s := p.est.serviceOf(n, model); s > 0 && (fastest == 0 || s < fastest) {
			fastest = s
		}
	}
	return fastest
}

// plan reconsiders where the models in demand are loaded (at most every planEvery per model
// asked for) and starts the next load toward a better placement, if any (plan.go).
func (p *Picker) plan(model string, now time.Time) {
	if now.Sub(p.planned[model]) < planEvery {
		return
	}
	p.planned[model] = now
	peers := p.src.Peers() // read only when planning: a copy of every inventory
	in, ok := p.planInput(peers, now)
	if !ok {
		return
	}
	// Loads that evict nothing may run on several nodes at once, one per node; a load that
	// evicts waits until no other is under way, so that a model never loses its copies to
	// loads that each counted on the other.
	in.loading = map[string]bool{}
	for node, l := range p.loads {
		if l.until.After(now) {
			in.loading[node] = true
		}
	}
	step, ok := in.nextStep()
	if !ok {
		return
	}
	for _, pr := range peers {
		if pr.Name == step.node {
			p.preload(pr, step.model, now)
		}
	}
	p.log.Info("loading a model ahead of need: demand is near what the loaded copies serve",
		"model", step.model, "node", step.node, "evicts", step.victim, "busiest_model_use_now", useString(step.before),
		"after_plan", useString(step.after))
}

// useString shows a placement's score: the busiest model's demand over its capacity.
func useString(score float64) string {
	if score >= noCopy {
		return "a model in demand has no copy"
	}
	return fmt.Sprintf("%.2f", score)
}

// planInput gathers what the placement search needs: the models asked for in the last
// seconds with their rates, and every healthy serving node with its slots, what it holds, can
// hold, and its pace per model. ok is false when there is nothing to plan or no pace known.
func (p *Picker) planInput(peers []Peer, now time.Time) (planInput, bool) {
	in := planInput{demand: map[string]float64{}, waiting: map[string]bool{}}
	for m, a := range p.arrived {
		if r := a.rate(now); r > 0 {
			in.models = append(in.models, m)
			in.demand[m] = r
			in.waiting[m] = p.waitingFor(m)
		}
	}
	if len(in.models) == 0 {
		return in, false
	}
	slices.Sort(in.models)
	var names []string
	for _, pr := range peers {
		if pr.Meta.Role != RoleServe || !pr.Meta.BackendOK || !pr.Meta.StorageOK || now.Before(p.suspect[pr.Name]) {
			continue
		}
		names = append(names, pr.Name)
		n := planNode{name: pr.Name, slots: max(1, int(pr.Meta.Slots)), holds: p.est.holdsOf(pr), res: p.resident(pr, now),
			others: p.load(pr) - p.mine[pr.Name]}
		for _, m := range in.models {
			if pr.Inventory.Has(m) {
				n.can = append(n.can, m)
			}
		}
		in.nodes = append(in.nodes, n)
	}
	for i := range in.nodes {
		n := &in.nodes[i]
		n.rate = map[string]float64{}
		for _, m := range n.can {
			pace := p.paceOf(n.name, m, names)
			if pace <= 0 {
				// No request for m has finished anywhere yet (the first loads are under
				// way): take every node as fast, so that capacity goes by slots until the
				// paces are known, rather than let a queue grow meanwhile.
				pace = unknownPace
				in.guessed = true
			}
			n.rate[m] = float64(n.slots) / pace.Seconds()
		}
	}
	return in, len(in.nodes) > 0
}

// preload asks pr's Ollama to load model (a generate request with no prompt), counting it as
// warm there from now on, with the load's expected end. Called with p.mu held; after Close it
// does nothing.
func (p *Picker) preload(pr Peer, model string, now time.Time) {
	if p.bg.Err() != nil {
		return
	}
	p.lastSent[pr.Name] = sent{model: model, at: now}
	p.loads[pr.Name] = loading{model: model, until: now.Add(p.est.loadOf(pr.Name, p.cfg.ColdWait))}
	p.metrics.picks.WithLabelValues(pr.Name, model, "preload").Inc()
	var u *url.URL
	var header http.Header
	if pr.Self && p.local != nil {
		u = p.local.State().URL
	} else {
		u, _ = url.Parse(pr.Meta.API) // checked when the peer was accepted
		header = p.cfg.Header
	}
	p.preloads.Add(1)
	go func() {
		defer p.preloads.Done()
		began := time.Now()
		err := p.sendPreload(u, header, model)
		p.mu.Lock()
		if l, ok := p.loads[pr.Name]; ok && l.model == model {
			delete(p.loads, pr.Name)
		}
		if err != nil {
			if s := p.lastSent[pr.Name]; s.model == model {
				delete(p.lastSent, pr.Name)
			}
			if p.bg.Err() == nil { // not the agent shutting down
				p.log.Warn("loading a model ahead of need failed", "model", model, "node", pr.Name, "err", err)
			}
		} else {
			p.est.learnLoad(pr.Name, time.Since(began))
		}
		n := p.dispatchLocked()
		p.mu.Unlock()
		if n > 0 {
			p.changed()
		}
	}()
}

func (p *Picker) sendPreload(u *url.URL, header http.Header, model string) error {
	if u == nil {
		return fmt.Errorf("no URL for the node")
	}
	body, _ := json.Marshal(map[string]string{"model": model}) // a string always marshals
	ctx, cancel := context.WithTimeout(p.bg, preloadTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.JoinPath("/api/generate").String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// noteArrival counts a request for model.
func (p *Picker) noteArrival(model string, now time.Time) {
	a := p.arrived[model]
	if a == nil {
		a = &arrivals{}
		p.arrived[model] = a
	}
	a.add(now)
}
