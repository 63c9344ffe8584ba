package cluster

// The placement search behind the planner: which models each node should hold for the
// demand now. A placement's score is the busiest model's use of its capacity (its arrival rate
// over what its copies serve, a node's rate shared among the models it holds); the search
// tries every placement of the models in demand (a home cluster has a few nodes and models;
// past maxPlacements it keeps to the nodes as they are), and the planner moves toward the best
// one a load at a time, never evicting a model in demand that has no other copy unless the
// cluster is overloaded as it is.

import "slices"

// noCopy is the score of a placement that leaves a model in demand without a copy.
const noCopy = 1e9

// maxPlacements bounds the search.
const maxPlacements = 200_000

// planNode is one serving node as the search sees it.
type planNode struct {
	name  string
	slots int
	holds int
	res   []string           // loaded now (or being loaded), newest first
	can   []string           // the models in demand it has on disk
	rate  map[string]float64 // requests/s it serves of each model it can, holding only that
	// others is what other routers have in flight there: this router does not see their
	// demand, so it never unloads a model they are using.
	others int
}

type planInput struct {
	nodes   []planNode
	models  []string
	demand  map[string]float64
	loading map[string]bool // nodes with a load under way: no second one there
	waiting map[string]bool // models with requests waiting for a slot
	guessed bool            // some pace is a guess: only loads that evict nothing
}

// planStep is one load toward a better placement.
type planStep struct {
	node, model, victim string
	before, after       float64 // the score now and once the whole plan is in place
}

// score is the busiest model's use of its capacity under placement (models per node, in the
// order of in.nodes); +Inf-like when a model in demand has no copy.
func (in planInput) score(placement [][]string) float64 {
	worst := 0.0
	for _, m := range in.models {
		c := 0.0
		for i, held := range placement {
			if slices.Contains(held, m) {
				c += in.nodes[i].rate[m] / float64(len(held))
			}
		}
		if c == 0 {
			return noCopy + in.demand[m] // no copy: worse the more it is asked for
		}
		worst = max(worst, in.demand[m]/c)
	}
	return worst
}

// current is the placement as it is: each node's loaded models that are in demand.
func (in planInput) current() [][]string {
	out := make([][]string, len(in.nodes))
	for i, n := range in.nodes {
		for _, m := range n.res {
			if in.demand[m] > 0 {
				out[i] = append(out[i], m)
			}
		}
	}
	return out
}

// options lists what node n may hold: every non-empty set of the models in demand it has,
// up to what it can hold at once.
func (n planNode) options() [][]string {
	var out [][]string
	k := len(n.can)
	for mask := 1; mask < 1<<k; mask++ {
		var set []string
		for j := range k {
			if mask&(1<<j) != 0 {
				set = append(set, n.can[j])
			}
		}
		if len(set) <= n.holds {
			out = append(out, set)
		}
	}
	return out
}

// best searches every placement; ok is false when there are too many to try.
func (in planInput) best() ([][]string, float64, bool) {
	opts := make([][][]string, len(in.nodes))
	total := 1
	for i, n := range in.nodes {
		opts[i] = n.options()
		if len(opts[i]) == 0 {
			opts[i] = [][]string{nil}
		}
		total *= len(opts[i])
		if total > maxPlacements {
			return nil, 0, false
		}
	}
	cur := make([][]string, len(in.nodes))
	var best [][]string
	bestScore := 0.0
	var try func(i int)
	try = func(i int) {
		if i == len(in.nodes) {
			if s := in.score(cur); best == nil || s < bestScore {
				best, bestScore = slices.Clone(cur), s
			}
			return
		}
		for _, o := range opts[i] {
			cur[i] = o
			try(i + 1)
		}
	}
	try(0)
	return best, bestScore, true
}

// nextStep is the load to make now, if any: the current placement uses some model's
// capacity beyond planBusy and a clearly better placement exists. Of the loads that lead
// there it takes the one that helps most at once among those that evict no model in demand
// without another copy; an eviction like that only when the cluster is overloaded as it is.
func (in planInput) nextStep() (planStep, bool) {
	cur := in.current()
	now := in.score(cur)
	if now <= planBusy {
		return planStep{}, false
	}
	target, goal, ok := in.best()
	if !ok || goal > now*0.85 {
		return planStep{}, false
	}
	var best planStep
	bestScore, found, bestSafe := 0.0, false, false
	for i, n := range in.nodes {
		if in.loading[n.name] {
			continue
		}
		for _, m := range target[i] {
			if slices.Contains(cur[i], m) || !in.heldElsewhere(cur, -1, m) || (in.guessed && !in.waiting[m]) {
				// There already; or no copy anywhere (a request for it loads the first); or
				// with paces still guessed, nobody waits for it: its copy keeps up so far.
				continue
			}
			next := slices.Clone(cur)
			held := slices.Clone(cur[i])
			victim := ""
			if len(n.res) >= n.holds {
				// A model it holds that the target does not keep there goes: the least asked for.
				for _, v := range n.res {
					if !slices.Contains(target[i], v) && (victim == "" || in.demand[v] < in.demand[victim]) {
						victim = v
					}
				}
				if victim == "" || len(in.loading) > 0 || in.guessed || n.others > 0 {
					// A load that evicts waits until no other is under way, paces are known,
					// and no other router is using the node.
					continue
				}
				held = slices.DeleteFunc(held, func(x string) bool { return x == victim })
			}
			next[i] = append(held, m)
			safe := victim == "" || in.demand[victim] == 0 || in.heldElsewhere(cur, i, victim)
			s := in.score(next)
			better := !found || (safe && !bestSafe) || (safe == bestSafe && s < bestScore)
			if better {
				best, bestScore, found, bestSafe = planStep{node: n.name, model: m, victim: victim, before: now, after: goal}, s, true, safe
			}
		}
	}
	if !found || (!bestSafe && now <= 1) {
		return planStep{}, false
	}
	return best, true
}

func (in planInput) heldElsewhere(placement [][]string, except int, model string) bool {
	for i, held := range placement {
		if i != except && slices.Contains(held, model) {
			return true
		}
	}
	return false
}
