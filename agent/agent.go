// Package agent is the `hearth agent` role: it wires the watch of the local Ollama, the
// router and the API listener of one home machine. Only cmd/hearth imports it.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/logging"
	"github.com/hearthlab/hearth/router"
)

// shutdownGrace is how long streams in flight may finish when the agent stops.
const shutdownGrace = 15 * time.Second

// Agent is one running `hearth agent`.
type Agent struct {
	cfg     config.Agent
	log     *slog.Logger
	ln      net.Listener
	backend *Backend
	fwd     *router.Forwarder
	srv     *http.Server
}

// New builds the agent and binds its API listener, so that a port already in use fails here
// with a clear message rather than later.
func New(cfg config.Agent, logger *slog.Logger, version string) (*Agent, error) {
	logger = logging.OrDiscard(logger)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ollamaURL, err := url.Parse(cfg.Ollama.URL)
	if err != nil {
		return nil, fmt.Errorf("agent: ollama.url: %w", err)
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

	backend := NewBackend(cfg.Node.Name, ollamaURL, cfg.Ollama.ConnectTimeout, cfg.Ollama.PollInterval, logger.With("component", "backend"))
	fwd := router.NewForwarder(router.ForwarderConfig{
		ConnectTimeout:   cfg.Ollama.ConnectTimeout,
		FirstByteTimeout: cfg.Ollama.FirstByteTimeout,
	}, metrics, logger.With("component", "forwarder"))
	api := router.NewServer(router.ServerConfig{
		MaxBody: int64(cfg.Node.MaxBody),
		APIKeys: cfg.Node.APIKeys,
		Trusted: trusted,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}, router.NewSingle(backend), fwd, metrics, logger.With("component", "api"))

	ln, err := net.Listen("tcp", cfg.Node.Listen)
	if err != nil {
		return nil, fmt.Errorf("agent: cannot listen on node.listen %s: %w (is another hearth or program using the port?)", cfg.Node.Listen, err)
	}
	return &Agent{
		cfg:     cfg,
		log:     logger,
		ln:      ln,
		backend: backend,
		fwd:     fwd,
		srv: &http.Server{
			Handler:           api,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		},
	}, nil
}

// Addr is the API's bound address (useful when node.listen asked for port 0).
func (a *Agent) Addr() net.Addr { return a.ln.Addr() }

// Run serves until ctx ends, then lets streams in flight finish for a short grace period.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("hearth agent serving the Ollama and OpenAI APIs", "node", a.cfg.Node.Name, "listen", a.ln.Addr().String(),
		"ollama", a.cfg.Ollama.URL, "data_dir", a.cfg.Node.DataDir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = a.backend.Run(ctx)
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- a.srv.Serve(a.ln) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("agent: API server stopped: %w", err)
	}
	cancel()
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer stop()
	if serr := a.srv.Shutdown(shutdownCtx); serr != nil && !errors.Is(serr, context.DeadlineExceeded) {
		a.log.Warn("API shutdown", "err", serr)
	}
	_ = a.srv.Close()
	wg.Wait()
	a.fwd.Close()
	a.log.Info("hearth agent stopped")
	return err
}
