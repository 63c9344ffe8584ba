// Command cluster measures how well hearth's picker balances a simulated home cluster: three
// ollamasim nodes of different speed and size, two models, and the same Poisson arrivals
// replayed through hearth's agents and through two baselines (round-robin and
// least-connections) on hearth's own forwarding path — once with nodes that hold one model at
// a time (a GPU full with one model), once with nodes that hold both. It prints
// latency, time to first token, cold loads and failures side by side with their ratios, then
// how fast hearth stops sending to a node that was killed. It is a program that prints
// figures, not a test: nothing here passes or fails on time.
package main

import (
	"flag"
	"fmt"
	"log"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hearthlab/hearth/internal/config"
)

// params is one run's set-up.
type params struct {
	nodes    []nodeSpec
	sim      simSpec
	shares   []float64 // of each model among conversations
	turns    float64   // mean requests per conversation
	load     float64   // offered load as a share of capacity
	requests int       // measured requests per strategy
	warmup   time.Duration
	maxTime  time.Duration // hard limit on one strategy's run
	drain    time.Duration // limit on a run after its last arrival
	prewarm  bool          // load the best fixed placement before each run
	poll     time.Duration // hearth's ollama.poll_interval
	seed     uint64
	trace    bool // print hearth's cluster view while it runs

	failover     time.Duration // length of each failover run; the kill is in its middle
	failoverLoad float64       // offered load of the failover runs
}

// nodeRate is requests per second a node completes with every slot busy on a warm model.
func (p params) nodeRate(n nodeSpec) float64 {
	return float64(n.slots) / (float64(p.sim.tokens) * n.tokenDelay.Seconds())
}

// rawCapacity is the sum of the nodes' rates, as if every node could serve every model warm.
func (p params) rawCapacity() float64 {
	c := 0.0
	for _, n := range p.nodes {
		c += p.nodeRate(n)
	}
	return c
}

// capacity is the highest request rate of the model mix the cluster sustains. When a node
// holds one model at a time, that is the best fixed placement of one model per node: for
// each placement, the model with the least capacity for its share limits the rate. The
// placement (model index per node) is nil when every node holds every model.
func (p params) capacity() (float64, []int) {
	models := len(p.sim.models)
	if p.sim.maxLoaded <= 0 || p.sim.maxLoaded >= models {
		return p.rawCapacity(), nil
	}
	best, bestPlace := 0.0, []int(nil)
	place := make([]int, len(p.nodes))
	var try func(i int)
	try = func(i int) {
		if i == len(p.nodes) {
			perModel := make([]float64, models)
			for j, m := range place {
				perModel[m] += p.nodeRate(p.nodes[j])
			}
			c := -1.0
			for m, share := range p.shares {
				if share > 0 && (c < 0 || perModel[m]/share < c) {
					c = perModel[m] / share
				}
			}
			if c > best {
				best, bestPlace = c, slices.Clone(place)
			}
			return
		}
		for m := range models {
			place[i] = m
			try(i + 1)
		}
	}
	try(0)
	return best, bestPlace
}

// holds is what the agents are told of their Ollama's limit (ollama.max_loaded).
func (p params) holds() int {
	if p.sim.maxLoaded <= 0 {
		return len(p.sim.models)
	}
	return p.sim.maxLoaded
}

func (p params) rate() float64 {
	c, _ := p.capacity()
	return p.load * c
}

// limit is how long a run of jobs may take before the requests still open fail.
func (p params) limit(jobs []job) time.Duration {
	return min(p.maxTime, jobs[len(jobs)-1].at+p.drain)
}

// failoverParams is the set-up of the failover runs: every node holds both models and
// starts with them loaded, so that losing a node costs no model placement, and the load is
// one the rest of the cluster carries: the runs measure rerouting, nothing else.
func (p params) failoverParams() params {
	f := p
	f.sim.maxLoaded = 0
	f.prewarm = true
	f.load = p.failoverLoad
	return f
}

func main() {
	requests := flag.Int("requests", 2000, "measured requests per strategy (after the warm-up)")
	seed := flag.Uint64("seed", 1, "seed of the arrival and model sequence")
	quick := flag.Bool("quick", false, "a short smoke run (CI): 150 requests, token delays halved, cold loads a quarter")
	load := flag.Float64("load", 0.7, "offered load as a share of the cluster's capacity")
	turns := flag.Float64("turns", 2, "mean requests per conversation (1: every request opens one)")
	poll := flag.Duration("poll", config.DefaultAgent().Ollama.PollInterval, "hearth agents' ollama.poll_interval")
	maxLoaded := flag.String("max-loaded", "1,0", "models each node holds at once (ollamasim MaxLoaded; 0: no limit), one balancing comparison per value")
	prewarm := flag.Bool("prewarm", false, "start every strategy with the best fixed placement loaded on the nodes")
	maxTime := flag.Duration("max-time", 3*time.Minute, "hard limit on one strategy's run; requests still open then fail")
	drain := flag.Duration("drain", 20*time.Second, "how long a run may go on after its last arrival; requests still open then fail")
	failoverLoad := flag.Float64("failover-load", 0.6, "offered load of the failover runs, as a share of capacity (high enough that the slower nodes serve too: at 30 % the fastest takes it all)")
	only := flag.String("only", "", "run only these parts, comma-separated: hearth, round-robin, least-connections, failover")
	trace := flag.Bool("trace", false, "print hearth's cluster view (warm models, in flight, queue) every 500 ms to stderr")
	flag.Parse()

	p := params{
		nodes: []nodeSpec{
			{name: "a", slots: 4, tokenDelay: 10 * time.Millisecond},
			{name: "b", slots: 2, tokenDelay: 20 * time.Millisecond},
			{name: "c", slots: 1, tokenDelay: 40 * time.Millisecond},
		},
		sim:          simSpec{models: []string{"llama3.2:3b", "qwen3:4b"}, loadDelay: 2 * time.Second, tokens: 10},
		shares:       []float64{0.7, 0.3},
		turns:        *turns,
		load:         *load,
		requests:     *requests,
		warmup:       10 * time.Second,
		maxTime:      *maxTime,
		drain:        *drain,
		prewarm:      *prewarm,
		poll:         *poll,
		seed:         *seed,
		trace:        *trace,
		failover:     20 * time.Second,
		failoverLoad: *failoverLoad,
	}
	if *quick {
		for i := range p.nodes {
			p.nodes[i].tokenDelay /= 2
		}
		p.sim.loadDelay /= 4
		p.warmup = time.Second
		p.failover = 5 * time.Second
		p.drain = min(p.drain, 3*time.Second)
		p.maxTime = min(p.maxTime, 20*time.Second)
		if !flagSet("requests") {
			p.requests = 150
		}
	}
	if p.turns < 1 || p.load <= 0 || p.failoverLoad <= 0 || p.requests <= 0 {
		log.Fatal("-turns must be at least 1; -load, -failover-load and -requests above 0")
	}
	parts := []string{"hearth", "round-robin", "least-connections", "failover"}
	if *only != "" {
		parts = strings.Split(*only, ",")
	}
	var holds []int
	for _, v := range strings.Split(*maxLoaded, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			log.Fatalf("-max-loaded %q: give numbers of models, 0 or more, separated by commas", *maxLoaded)
		}
		holds = append(holds, n)
	}
	began := time.Now()
	for i, h := range holds {
		q := p
		q.sim.maxLoaded = h
		run := parts
		if i < len(holds)-1 { // the failover runs do not depend on it: once, at the end
			run = slices.DeleteFunc(slices.Clone(parts), func(s string) bool { return s == "failover" })
		}
		if i > 0 {
			fmt.Println()
		}
		if err := runParts(q, run); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("\ntotal time %s\n", time.Since(began).Round(time.Second))
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func runParts(p params, parts []string) error {
	warm := int(p.warmup.Seconds() * p.rate())
	jobs := workload(warm+p.requests, p.rate(), p.sim.models, p.shares, p.turns, p.seed)
	var rows []row
	for _, st := range strategies(p) {
		if !slices.Contains(parts, st.name) {
			continue
		}
		if len(rows) == 0 {
			printSetup(p, jobs, warm)
		}
		r, err := runStrategy(p, st, jobs, warm)
		if err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
		rows = append(rows, r)
	}
	if len(rows) > 0 {
		printTable(p, rows)
	}
	if len(rows) == 3 {
		printTargets(rows)
	}
	if slices.Contains(parts, "failover") {
		if err := runFailovers(p.failoverParams()); err != nil {
			return err
		}
	}
	return nil
}
