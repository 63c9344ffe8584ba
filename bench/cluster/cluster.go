package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hearthlab/hearth/agent"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/ollamasim"
	"github.com/hearthlab/hearth/router"
)

// control is the client for everything but the load (views, metrics, model loads), with a
// deadline so that a hung agent or sim cannot hang the bench.
func control() *http.Client { return &http.Client{Timeout: 30 * time.Second} }

// nodeSpec is one simulated machine.
type nodeSpec struct {
	name       string
	slots      int           // OLLAMA_NUM_PARALLEL
	tokenDelay time.Duration // per generated token
}

// simSpec is what every node's Ollama has in common.
type simSpec struct {
	models    []string
	loadDelay time.Duration // cold load of either model
	tokens    int           // per response
	maxLoaded int           // models resident at once
}

// startSims starts one fresh ollamasim per node: nothing loaded, both models on disk.
func startSims(nodes []nodeSpec, s simSpec) ([]*ollamasim.Server, error) {
	var sims []*ollamasim.Server
	for _, n := range nodes {
		cfg := ollamasim.Config{
			Parallel:    n.slots,
			TokenDelay:  n.tokenDelay,
			Tokens:      s.tokens,
			MaxLoaded:   s.maxLoaded,
			KeepAlive:   -1, // never unloaded for idleness: only a load of the other model evicts
			RecordLimit: -1,
		}
		for _, m := range s.models {
			cfg.Models = append(cfg.Models, ollamasim.Model{Name: m, LoadDelay: s.loadDelay})
		}
		sim := ollamasim.New(cfg)
		if err := sim.Start(); err != nil {
			closeSims(sims)
			return nil, err
		}
		sims = append(sims, sim)
	}
	return sims, nil
}

func closeSims(sims []*ollamasim.Server) {
	for _, s := range sims {
		s.Close()
	}
}

func coldLoads(sims []*ollamasim.Server) int {
	n := 0
	for _, s := range sims {
		n += s.Stats().ColdLoads
	}
	return n
}

// hearthCluster is three agents in one gossip cluster, each in front of its own sim.
type hearthCluster struct {
	nodes  []nodeSpec
	sims   []*ollamasim.Server
	bases  []string // each agent's API
	stops  []func() // cancel an agent and wait for it
	cancel []context.CancelFunc
}

func (c *hearthCluster) entry() string { return c.bases[0] }

// startHearth starts one agent per node (the first is the seed the others join) and waits
// until the first sees every node with its models, and with a model loaded when warm. poll
// is ollama.poll_interval; holds is ollama.max_loaded (0: every model fits).
func startHearth(nodes []nodeSpec, sims []*ollamasim.Server, poll time.Duration, holds int, warm bool) (*hearthCluster, error) {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	c := &hearthCluster{nodes: nodes, sims: sims}
	var seed string
	for i, n := range nodes {
		cfg := config.DefaultAgent()
		cfg.Node.Name = n.name
		cfg.Node.Listen = "127.0.0.1:0"
		cfg.Ollama.URL = sims[i].URL()
		cfg.Ollama.Parallel = n.slots
		cfg.Ollama.MaxLoaded = holds
		cfg.Ollama.PollInterval = poll
		cfg.Cluster.Bind = "127.0.0.1:0"
		cfg.Cluster.Timings = "fast"
		cfg.Cluster.Secret = base64.StdEncoding.EncodeToString(secret)
		if seed != "" {
			cfg.Cluster.Join = []string{seed}
		}
		a, err := agent.New(cfg, benchLogger(i), "bench")
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("agent %s: %w", n.name, err)
		}
		if seed == "" {
			seed = a.GossipAddr()
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = a.Run(ctx)
		}()
		c.bases = append(c.bases, "http://"+a.Addr().String())
		c.cancel = append(c.cancel, cancel)
		c.stops = append(c.stops, sync.OnceFunc(func() { cancel(); <-done }))
	}
	if err := c.waitReady(30*time.Second, warm); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// waitReady waits until the entry agent sees every node serving with its models (and one
// loaded, when warm).
func (c *hearthCluster) waitReady(limit time.Duration, warm bool) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if v, err := clusterView(c.entry()); err == nil && len(v.Nodes) == len(c.nodes) {
			ready := true
			for _, n := range v.Nodes {
				ready = ready && n.Backend && len(n.Models) > 0 && (!warm || len(n.Warm) > 0)
			}
			if ready {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("hearth cluster: the entry agent did not see every node ready in time")
}

func clusterView(base string) (router.ClusterView, error) {
	var v router.ClusterView
	resp, err := control().Get(base + "/hearth/v1/cluster")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("cluster view: %s", resp.Status)
	}
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// stop stops every agent, in parallel (each waits for its streams for a while).
func (c *hearthCluster) stop() {
	var wg sync.WaitGroup
	for _, s := range c.stops {
		wg.Go(s)
	}
	wg.Wait()
}

// baselineServer is hearth's own HTTP surface and forwarder in front of a baseline picker,
// pointing straight at the sims: the same request path as an agent, another picker.
type baselineServer struct {
	srv  *http.Server
	ln   net.Listener
	fwd  *router.Forwarder
	done chan struct{} // closed when Serve returned
}

func startBaseline(p router.Picker) (*baselineServer, error) {
	metrics, err := router.NewMetrics(nil)
	if err != nil {
		return nil, err
	}
	def := config.DefaultAgent()
	fwd := router.NewForwarder(router.ForwarderConfig{
		ConnectTimeout: def.Ollama.ConnectTimeout, FirstByteTimeout: def.Ollama.FirstByteTimeout,
	}, metrics, nil)
	api := router.NewServer(router.ServerConfig{
		MaxBody: int64(def.Node.MaxBody),
		Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}, p, fwd, metrics, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &baselineServer{srv: &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}, ln: ln, fwd: fwd, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		_ = b.srv.Serve(ln)
	}()
	return b, nil
}

func (b *baselineServer) base() string { return "http://" + b.ln.Addr().String() }

func (b *baselineServer) stop() {
	_ = b.srv.Close()
	<-b.done
	b.fwd.Close()
}

func backendsOf(nodes []nodeSpec, sims []*ollamasim.Server) (backends, error) {
	var b backends
	for i, n := range nodes {
		u, err := url.Parse(sims[i].URL())
		if err != nil {
			return b, err
		}
		b.names = append(b.names, n.name)
		b.urls = append(b.urls, u)
	}
	return b, nil
}

// prewarm loads the best fixed placement's model on each node (every model, when a node
// holds them all), straight at the sims with load-only requests (no messages), so that
// every strategy starts from the same warm state.
func prewarm(p params, sims []*ollamasim.Server) error {
	_, place := p.capacity()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i, sim := range sims {
		models := p.sim.models
		if place != nil {
			models = []string{p.sim.models[place[i]]}
		}
		for _, m := range models {
			wg.Go(func() {
				if err := loadOnly(sim.URL(), m); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("prewarm %s on %s: %w", m, p.nodes[i].name, err))
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

func loadOnly(base, model string) error {
	body := fmt.Sprintf(`{"model":%q,"messages":[]}`, model)
	resp, err := control().Post(base+"/api/chat", "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// benchLogger is the log of agent i: the entry agent's (i == 0) goes to stderr at
// HEARTH_BENCH_LOG=1, for a look at its picker's decisions; the rest is discarded.
func benchLogger(i int) *slog.Logger {
	if i == 0 && os.Getenv("HEARTH_BENCH_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}
