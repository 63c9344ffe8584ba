package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hearthlab/hearth/internal/ollamasim"
	"github.com/hearthlab/hearth/router"
)

// strategy is one way of routing the load: it starts in front of fresh sims and gives the
// URL the load goes to.
type strategy struct {
	name  string
	start func(sims []*ollamasim.Server) (*running, error)
}

// running is a started strategy.
type running struct {
	base  string
	stop  func()
	notes func() string // read before stop: what the strategy itself counted; may be nil
}

func strategies(p params) []strategy {
	baseline := func(make func(backends) router.Picker) func([]*ollamasim.Server) (*running, error) {
		return func(sims []*ollamasim.Server) (*running, error) {
			b, err := backendsOf(p.nodes, sims)
			if err != nil {
				return nil, err
			}
			s, err := startBaseline(make(b))
			if err != nil {
				return nil, err
			}
			return &running{base: s.base(), stop: s.stop}, nil
		}
	}
	return []strategy{
		{"hearth", func(sims []*ollamasim.Server) (*running, error) {
			c, err := startHearth(p.nodes, sims, p.poll, p.holds(), p.prewarm)
			if err != nil {
				return nil, err
			}
			stop := c.stop
			if p.trace {
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				wg.Go(func() { trace(ctx, c.entry(), sims) })
				stop = func() { cancel(); wg.Wait(); c.stop() }
			}
			return &running{base: c.entry(), stop: stop, notes: func() string {
				return "hearth's picks at the entry agent (warm-up included): " + picksByReason(c.entry())
			}}, nil
		}},
		{"round-robin", baseline(func(b backends) router.Picker { return &roundRobin{backends: b} })},
		{"least-connections", baseline(func(b backends) router.Picker { return newLeastConn(b) })},
	}
}

// row is one strategy's line of the table.
type row struct {
	name           string
	sum            summary
	cold, coldWarm int // cold loads in the measured part and in the warm-up
	evictions      int
	notes          string
}

// runStrategy replays jobs through one strategy on fresh sims.
func runStrategy(p params, st strategy, jobs []job, warm int) (row, error) {
	sims, err := startSims(p.nodes, p.sim)
	if err != nil {
		return row{}, err
	}
	defer closeSims(sims)
	if p.prewarm {
		if err := prewarm(p, sims); err != nil {
			return row{}, err
		}
	}
	rs, err := st.start(sims)
	if err != nil {
		return row{}, err
	}
	tr := &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, DisableCompression: true}
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), p.limit(jobs))
	defer cancel()
	coldAtWarm := 0
	began := time.Now()
	results := replay(ctx, client, rs.base, jobs, func(i int) {
		if i == warm {
			coldAtWarm = coldLoads(sims)
		}
	})
	elapsed := time.Since(began)
	cancel()
	r := row{name: st.name, sum: summarize(results, warm), coldWarm: coldAtWarm}
	if rs.notes != nil {
		r.notes = rs.notes()
	}
	rs.stop()
	tr.CloseIdleConnections()
	r.cold = coldLoads(sims) - coldAtWarm
	for _, s := range sims {
		r.evictions += s.Stats().Evictions
	}
	fmt.Fprintf(os.Stderr, "%s: done in %s\n", st.name, elapsed.Round(100*time.Millisecond))
	return r, nil
}

// trace prints what the entry agent believes about each node next to what its sim is doing,
// every 500 ms: the view to read when hearth's figures need explaining.
func trace(ctx context.Context, base string, sims []*ollamasim.Server) {
	t0 := time.Now()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		v, err := clusterView(base)
		var b strings.Builder
		fmt.Fprintf(&b, "%6.1fs queued %3d", time.Since(t0).Seconds(), v.Queued)
		if err == nil {
			for i, n := range v.Nodes {
				if i >= len(sims) {
					break
				}
				st := sims[i].Stats()
				fmt.Fprintf(&b, " | %s warm %v mine %d in_flight %d; sim running %d queued %d cold %d", n.Name, n.Warm, n.Mine, n.InFlight, st.Running, st.Queued, st.ColdLoads)
			}
		}
		fmt.Fprintln(os.Stderr, b.String())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
