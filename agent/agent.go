// Package agent is the `hearth agent` role: it wires the watch of the local Ollama, the
// router and the API listener of one home machine. Only cmd/hearth and the tests that run
// agents (integration, e2e) and the benchmarks import it.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/logging"
	"github.com/hearthlab/hearth/internal/webapp"
	"github.com/hearthlab/hearth/router"
	"github.com/hearthlab/hearth/router/cluster"
)

// shutdownGrace is how long streams in flight may finish when the agent stops.
const shutdownGrace = 15 * time.Second

// Agent is one running `hearth agent`.
type Agent struct {
	cfg     config.Agent
	log     *slog.Logger
	ln      net.Listener
	backend *Backend      // nil on a router-only node
	cluster *clusterParts // nil when cluster.bind is empty
	tunnel  *Tunnel       // nil when tunnel.relay is empty
	rag     *ragParts
	node    *nodeParts // the model store, a managed Ollama
	fwd     *router.Forwarder
	srv     *http.Server
	app     *webapp.App // the web app at /app/ (agent/webapp.go)
}

// New builds the agent and binds its API listener, so that a port already in use fails here
// with a clear message rather than later.
func New(cfg config.Agent, logger *slog.Logger, version string, opts ...Option) (*Agent, error) {
	logger = logging.OrDiscard(logger)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	trusted, err := cfg.Node.TrustedPrefixes()
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "hearth_build_info", Help: "hearth's version.",
		ConstLabels: prometheus.Labels{"version": version, "node": cfg.Node.Name}})
	info.Set(1)
	reg.MustRegister(info)
	metrics, err := router.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("agent: metrics: %w", err)
	}

	a := &Agent{cfg: cfg, log: logger}
	var local router.Picker
	if cfg.Ollama.URL != "" {
		ollamaURL, err := url.Parse(cfg.Ollama.URL)
		if err != nil {
			return nil, fmt.Errorf("agent: ollama.url: %w", err)
		}
		a.backend = NewBackend(cfg.Node.Name, ollamaURL, cfg.Ollama.ConnectTimeout, cfg.Ollama.PollInterval, logger.With("component", "backend"))
		a.backend.managed = cfg.Ollama.Manage
		local = router.NewSingle(a.backend)
	}
	if a.node, err = newNodeParts(cfg, a.backend, collectOptions(opts), logger); err != nil {
		return nil, err
	}
	a.ln, err = net.Listen("tcp", cfg.Node.Listen)
	if err != nil {
		return nil, fmt.Errorf("agent: cannot listen on node.listen %s: %w (is another hearth or program using the port?)", cfg.Node.Listen, err)
	}
	picker, keys := local, cfg.Node.APIKeys
	mounts := map[string]http.Handler{}
	if cfg.Cluster.Bind != "" {
		a.cluster, err = newCluster(cfg, a.backend, a.node.store, a.ln.Addr(), reg, logger)
		if err != nil {
			a.ln.Close()
			return nil, err
		}
		picker = a.cluster.picker
		if a.cluster.credential != "" {
			keys = append(slices.Clip(keys), a.cluster.credential)
		}
		mounts[cluster.InventoryPath] = a.cluster.membership.InventoryHandler()
	}
	if picker, err = a.node.wrapPicker(picker, a.cluster, reg); err != nil {
		a.close()
		return nil, err
	}

	a.rag, err = newRAG(cfg, loopbackAddr(a.ln.Addr()), logger.With("component", "rag"))
	if err != nil {
		a.close()
		return nil, err
	}
	keys = append(slices.Clip(keys), a.rag.key)
	if a.cluster != nil {
		a.rag.joinCluster(a.cluster.membership, cfg.Node.Name, a.cluster.credential)
	}

	var tunnelView func() *router.TunnelView
	if cfg.Tunnel.Relay != "" {
		a.tunnel, err = NewTunnel(cfg.Tunnel, loopbackAddr(a.ln.Addr()), logger.With("component", "tunnel"))
		if err != nil {
			a.close()
			return nil, err
		}
		tunnelView = func() *router.TunnelView {
			st := a.tunnel.State()
			return &router.TunnelView{Relay: st.Relay, Connected: st.Connected, Since: st.Since, LastError: st.LastError}
		}
	}

	a.fwd = router.NewForwarder(router.ForwarderConfig{
		ConnectTimeout:   cfg.Ollama.ConnectTimeout,
		FirstByteTimeout: cfg.Ollama.FirstByteTimeout,
	}, metrics, logger.With("component", "forwarder"))
	loop := &appLoop{}
	a.app = webapp.New(webapp.Options{Role: "agent", API: loop}, logger.With("component", "webapp"))
	api := router.NewServer(router.ServerConfig{
		App:         a.app,
		MaxBody:     int64(cfg.Node.MaxBody),
		APIKeys:     keys,
		CORSOrigins: cfg.Node.CORSOrigins,
		Trusted:     trusted,
		Metrics:     promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Local:       local,
		Mounts:      mounts,
		Tunnel:      tunnelView,

		Virtual:   a.rag.virtual,
		APIMounts: map[string]http.Handler{"/rag/v1": a.rag.api},
		Node:      a.node.nodeAPI(),
	}, picker, a.fwd, metrics, logger.With("component", "api"))
	loop.srv = api
	a.srv = &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return a, nil
}

// Addr is the API's bound address (useful when node.listen asked for port 0).
func (a *Agent) Addr() net.Addr { return a.ln.Addr() }

// Run serves until ctx ends, then lets streams in flight finish for a short grace period.
func (a *Agent) Run(ctx context.Context) error {
	ollama := a.cfg.Ollama.URL
	if ollama == "" {
		ollama = "none (router only)"
	}
	a.log.Info("hearth agent serving the Ollama and OpenAI APIs", "node", a.cfg.Node.Name, "listen", a.ln.Addr().String(),
		"ollama", ollama, "data_dir", a.cfg.Node.DataDir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	wg.Go(func() { a.app.Run(ctx) })
	if a.backend != nil {
		wg.Go(func() { _ = a.backend.Run(ctx) })
	}
	wg.Go(func() { a.rag.run(ctx) })
	// The tunnel stops after the API too: the relay's streams in flight (a phone's answers)
	// travel on its session, and closing it first cut them at once, grace or not.
	tunnelCtx, tunnelStop := context.WithCancel(context.WithoutCancel(ctx))
	defer tunnelStop()
	if a.tunnel != nil {
		wg.Go(func() {
			if err := a.tunnel.Run(tunnelCtx); err != nil {
				a.log.Error("tunnel to the relay stopped", "err", err)
			}
		})
	}
	if a.cluster != nil {
		wg.Go(func() {
			if err := a.cluster.membership.Run(ctx); err != nil {
				a.log.Error("cluster gossip stopped", "err", err)
			}
		})
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- a.srv.Serve(a.ln) }()
	// The managed Ollama stops after the API, so that answers in flight finish.
	nodeCtx, nodeStop := context.WithCancel(context.WithoutCancel(ctx))
	defer nodeStop()
	nodeErr := make(chan error, 1)
	wg.Go(func() { nodeErr <- a.node.run(nodeCtx) })

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("agent: API server stopped: %w", err)
	case err = <-nodeErr:
	}
	cancel()
	a.log.Info("stopping: answers in flight may finish", "grace", shutdownGrace.String())
	if a.tunnel != nil {
		a.tunnel.Withdraw()
	}
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer stop()
	if serr := a.srv.Shutdown(shutdownCtx); serr != nil && !errors.Is(serr, context.DeadlineExceeded) {
		a.log.Warn("API shutdown", "err", serr)
	}
	_ = a.srv.Close()
	tunnelStop()
	nodeStop()
	wg.Wait()
	if a.cluster != nil {
		a.cluster.picker.Close()
	}
	a.fwd.Close()
	a.rag.close()
	a.log.Info("hearth agent stopped")
	return err
}

// GossipAddr is the cluster gossip address others join through ("" when the cluster is off).
func (a *Agent) GossipAddr() string {
	if a.cluster == nil {
		return ""
	}
	return a.cluster.membership.Addr()
}

// loopbackAddr is where this machine reaches the API: an API on every interface is dialed on
// loopback.
func loopbackAddr(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// close releases what New bound when New fails after binding.
func (a *Agent) close() {
	a.ln.Close()
	if a.rag != nil {
		a.rag.close()
	}
	if a.cluster != nil {
		_ = a.cluster.membership.Close()
	}
}
