package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/hearthlab/hearth/internal/ollamasim"
)

// victim is the node killed in the failover runs: b, the middle one, so that the other two
// can still carry the offered load once it is gone.
const victim = 1

// killer kills the victim node of a running hearth cluster in one way.
type killer struct {
	name string
	what string
	kill func(c *hearthCluster)
}

// killers are the two ways a node dies in the failover runs.
func killers() []killer {
	return []killer{
		{"backend killed", "b's Ollama refuses connections (SetFault refuse); its agent stays up and reports it", func(c *hearthCluster) {
			_ = c.sims[victim].SetFault(ollamasim.Fault{Kind: ollamasim.FaultRefuse})
		}},
		{"agent stopped", "b's Ollama refuses connections and its agent's context is canceled (it leaves the cluster)", func(c *hearthCluster) {
			_ = c.sims[victim].SetFault(ollamasim.Fault{Kind: ollamasim.FaultRefuse})
			c.cancel[victim]()
		}},
	}
}

// failoverRow is what one failover run measured.
type failoverRow struct {
	name          string
	requests      int
	failed        int
	cut           int           // of failed: streams the kill broke mid-answer
	lastPick      time.Duration // kill → the entry's last pick of the victim (-1: none after the kill)
	picksAfter    int
	retries       int           // requests the entry retried elsewhere after the victim failed them
	lastServed    time.Duration // kill → arrival of the last request the victim completed
	p99After      time.Duration // p99 latency of requests arriving after the kill
	firstFailures []string
}

func runFailovers(p params) error {
	c, _ := p.capacity()
	fmt.Printf("\nfailover, hearth only: every node holds both models, loaded from the start; %.1f req/s (%.0f %% of %.1f), Poisson,\n",
		p.rate(), 100*p.load, c)
	fmt.Printf("for %s; node %s is killed after %s; the entry agent's picks are read from its /metrics every 10 ms\n",
		p.failover, p.nodes[victim].name, p.failover/2)
	var rows []failoverRow
	for _, k := range killers() {
		fmt.Printf("  %s: %s\n", k.name, k.what)
		r, err := runFailover(p, k)
		if err != nil {
			return fmt.Errorf("failover %s: %w", k.name, err)
		}
		rows = append(rows, r)
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kill\trequests\tfailed\tof which cut mid-stream\tlast pick of b after kill\tpicks of b after kill\tretried elsewhere\tlast request b completed\tp99 after kill\t")
	for _, r := range rows {
		last := "none"
		if r.lastPick >= 0 {
			last = "+" + ms(r.lastPick)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\t%d\t%s\t%s\t\n", r.name, r.requests, r.failed, r.cut, last, r.picksAfter, r.retries,
			signed(r.lastServed), ms(r.p99After))
	}
	tw.Flush()
	for _, r := range rows {
		for _, f := range r.firstFailures {
			fmt.Printf("%s: %s\n", r.name, f)
		}
	}
	return nil
}

func signed(d time.Duration) string {
	if d < 0 {
		return "-" + ms(-d) + " (arrived before the kill)"
	}
	return "+" + ms(d)
}

func runFailover(p params, k killer) (failoverRow, error) {
	r := failoverRow{name: k.name, lastPick: -1}
	sims, err := startSims(p.nodes, p.sim)
	if err != nil {
		return r, err
	}
	defer closeSims(sims)
	if p.prewarm {
		if err := prewarm(p, sims); err != nil {
			return r, err
		}
	}
	c, err := startHearth(p.nodes, sims, p.poll, p.holds(), p.prewarm)
	if err != nil {
		return r, err
	}
	defer c.stop()

	n := int(p.failover.Seconds() * p.rate())
	jobs := workload(n, p.rate(), p.sim.models, p.shares, p.turns, p.seed+1)
	tr := &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), p.limit(jobs))
	defer cancel()

	name := p.nodes[victim].name
	watch := newPickWatch(client, c.entry(), name)
	watchCtx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { watch.run(watchCtx) })

	killed := make(chan time.Time, 1)
	killTimer := time.AfterFunc(p.failover/2, func() {
		watch.mark()
		killed <- time.Now()
		k.kill(c)
	})
	defer killTimer.Stop()
	results := replay(ctx, client, c.entry(), jobs, nil)
	time.Sleep(200 * time.Millisecond) // let the last picks show in /metrics
	stopWatch()
	wg.Wait()
	var killAt time.Time
	select {
	case killAt = <-killed:
	default:
		return r, fmt.Errorf("the run ended before the kill")
	}

	r.requests = len(results)
	r.lastPick, r.picksAfter = watch.after(killAt)
	r.retries = watch.retries
	r.lastServed = -p.failover
	var after []time.Duration
	for _, res := range results {
		if res.failed() {
			r.failed++
			if strings.HasPrefix(res.err, "error in stream") || strings.HasPrefix(res.err, "stream broken") {
				r.cut++
			}
			if len(r.firstFailures) < 3 {
				r.firstFailures = append(r.firstFailures, res.err)
			}
			continue
		}
		if res.node == name {
			r.lastServed = max(r.lastServed, res.start.Sub(killAt))
		}
		if res.start.After(killAt) {
			after = append(after, res.latency)
		}
	}
	r.p99After = pct(after, 0.99)
	return r, nil
}

// pickWatch follows the entry agent's count of picks of one node (hearth_picks_total).
type pickWatch struct {
	client  *http.Client
	url     string
	node    string
	mu      sync.Mutex
	samples []pickSample
	atKill  int // samples taken before the kill
	retries int // hearth_retries_total for the node, last read
}

type pickSample struct {
	at    time.Time
	picks int
}

func newPickWatch(client *http.Client, base, node string) *pickWatch {
	return &pickWatch{client: client, url: base + "/metrics", node: node}
}

func (w *pickWatch) run(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if picks, retries, err := w.read(ctx); err == nil {
			w.mu.Lock()
			w.samples = append(w.samples, pickSample{at: time.Now(), picks: picks})
			w.retries = retries
			w.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// mark notes that the kill happens now.
func (w *pickWatch) mark() {
	w.mu.Lock()
	w.atKill = len(w.samples)
	w.mu.Unlock()
}

// after is the time from the kill to the last sample whose count grew, and how many picks
// came after the kill; -1 when none did.
func (w *pickWatch) after(kill time.Time) (time.Duration, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.atKill == 0 || len(w.samples) == 0 {
		return -1, 0
	}
	base := w.samples[w.atKill-1].picks
	last := time.Duration(-1)
	prev := base
	for _, s := range w.samples[w.atKill:] {
		if s.picks > prev {
			last = s.at.Sub(kill)
		}
		prev = s.picks
	}
	return last, prev - base
}

func (w *pickWatch) read(ctx context.Context) (picks, retries int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	label := `node="` + w.node + `"`
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		var into *int
		switch {
		case strings.HasPrefix(line, "hearth_picks_total{"):
			into = &picks
		case strings.HasPrefix(line, "hearth_retries_total{"):
			into = &retries
		default:
			continue
		}
		if !strings.Contains(line, label) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			*into += int(v)
		}
	}
	return picks, retries, sc.Err()
}

// picksByReason reads the entry agent's hearth_picks_total summed by reason (warm, cold,
// affinity, retry), for the explanation of a run.
func picksByReason(base string) string {
	resp, err := control().Get(base + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	by := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "hearth_picks_total{") {
			continue
		}
		_, rest, ok := strings.Cut(line, `reason="`)
		reason, _, ok2 := strings.Cut(rest, `"`)
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if ok && ok2 && err == nil {
			by[reason] += int(v)
		}
	}
	var out []string
	for _, r := range []string{"warm", "cold", "affinity", "retry"} {
		out = append(out, fmt.Sprintf("%s %d", r, by[r]))
	}
	return strings.Join(out, ", ")
}
