package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

func printSetup(p params, jobs []job, warm int) {
	fmt.Printf("hearth cluster balancing: ollamasim nodes, GOMAXPROCS=%d, seed %d\n", runtime.GOMAXPROCS(0), p.seed)
	printNodes(p)
	c, place := p.capacity()
	if place == nil {
		fmt.Printf("capacity   %.1f req/s with every slot busy on a warm model; offered %.1f req/s (%.0f %%), Poisson\n",
			c, p.rate(), 100*p.load)
	} else {
		var where []string
		for i, m := range place {
			where = append(where, p.nodes[i].name+": "+p.sim.models[m])
		}
		fmt.Printf("capacity   %.1f req/s with every slot busy on a warm model; %.1f req/s for this mix, as no node holds both\n",
			p.rawCapacity(), c)
		fmt.Printf("           (best fixed placement %s); offered %.1f req/s (%.0f %% of %.1f), Poisson\n",
			strings.Join(where, ", "), p.rate(), 100*p.load, c)
	}
	span := jobs[len(jobs)-1].at
	fmt.Printf("requests   %d per strategy: %d warm-up (first %s: in the failures, not in percentiles or cold loads) + %d measured,\n",
		len(jobs), warm, p.warmup, len(jobs)-warm)
	fmt.Printf("           arriving over %s; a run ends %s after the last arrival at most, and what is still open then fails\n",
		span.Round(100*time.Millisecond), p.drain)
	start := "nothing loaded"
	if p.prewarm {
		start = "the best placement loaded"
	}
	fmt.Printf("start      fresh sims for every strategy, %s\n", start)
	fmt.Printf("hearth     3 agents in one gossip cluster (timings fast), ollama.parallel = slots, poll_interval %s,\n", p.poll)
	fmt.Printf("           ollama.max_loaded as the sims hold, router defaults (max_queue 512, queue_timeout 2m); the load enters at agent a\n")
	fmt.Printf("baselines  hearth's HTTP surface and forwarder with a round-robin / least-connections picker, straight to the sims\n\n")
}

func printNodes(p params) {
	var nodes []string
	for _, n := range p.nodes {
		nodes = append(nodes, fmt.Sprintf("%s: %d slots, %s/token (%.1f req/s)", n.name, n.slots, n.tokenDelay, p.nodeRate(n)))
	}
	fmt.Printf("nodes      %s\n", strings.Join(nodes, "; "))
	held := fmt.Sprintf("at most %d loaded per node (loading another evicts it)", p.sim.maxLoaded)
	if p.sim.maxLoaded <= 0 || p.sim.maxLoaded >= len(p.sim.models) {
		held = "every node can hold both at once"
	}
	fmt.Printf("models     %s, %.0f/%.0f %% of conversations, %.1f requests per conversation on average;\n",
		strings.Join(p.sim.models, " and "), 100*p.shares[0], 100*p.shares[1], p.turns)
	fmt.Printf("           on every node, cold load %s, %s, never unloaded for idleness\n", p.sim.loadDelay, held)
	fmt.Printf("responses  %d tokens, streamed /api/chat\n", p.sim.tokens)
}

func printTable(p params, rows []row) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	var names []string
	for _, n := range p.nodes {
		names = append(names, n.name)
	}
	fmt.Fprintf(tw, "strategy\trequests\tfailed\tp50\tp99\tp99 answered\tTTFT p50\tTTFT p99\tcold loads\t(warm-up)\tevictions\tanswered by %s\t\n", strings.Join(names, "/"))
	for _, r := range rows {
		var served []string
		for _, n := range names {
			served = append(served, fmt.Sprint(r.sum.byNode[n]))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t(%d)\t%d\t%s\t\n", r.name, r.sum.requests, r.sum.failed+r.sum.failedWarm,
			ms(r.sum.p50), ms(r.sum.p99), ms(r.sum.p99ok), ms(r.sum.ttft50), ms(r.sum.ttft99), r.cold, r.coldWarm, r.evictions, strings.Join(served, "/"))
	}
	tw.Flush()
	fmt.Println("(p50, p99, TTFT: measured requests, a failed one ranking after every answered one; p99 answered: answered ones only;")
	fmt.Println(" failed: warm-up included; evictions: warm-up included)")
	for _, r := range rows {
		if r.sum.firstErr != "" {
			fmt.Printf("%s, first failure: %s\n", r.name, r.sum.firstErr)
		}
		if r.notes != "" {
			fmt.Println(r.notes)
		}
	}
}

func printTargets(rows []row) {
	h, rr, lc := rows[0], rows[1], rows[2]
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tmeasured\tgoal\t\t")
	for _, t := range []struct {
		base row
		goal float64
	}{{rr, 0.5}, {lc, 0.8}} {
		measured, ok := p99Ratio(h.sum.p99, t.base.sum.p99)
		fmt.Fprintf(tw, "hearth p99 / %s p99\t%s\t≤ %.2f\t%s\t\n", t.base.name, measured, t.goal, verdict(ok(t.goal)))
	}
	fmt.Fprintf(tw, "hearth cold loads vs least-connections\t%d vs %d\t≤\t%s\t\n", h.cold, lc.cold, verdict(h.cold <= lc.cold))
	failed := h.sum.failed + h.sum.failedWarm
	fmt.Fprintf(tw, "hearth failed requests\t%d\t0\t%s\t\n", failed, verdict(failed == 0))
	tw.Flush()
}

// p99Ratio compares two p99s of which either may be a failed request; ok says whether the
// ratio meets a goal.
func p99Ratio(h, base time.Duration) (string, func(goal float64) bool) {
	switch {
	case h == failedLatency && base == failedLatency:
		return "n/a: both p99s are failed requests", func(float64) bool { return false }
	case h == failedLatency:
		return "n/a: hearth's p99 is a failed request", func(float64) bool { return false }
	case base == failedLatency:
		return "< any: the baseline's p99 is a failed request", func(float64) bool { return true }
	}
	x := h.Seconds() / base.Seconds()
	return fmt.Sprintf("%.2f", x), func(goal float64) bool { return x <= goal }
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}
