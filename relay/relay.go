package relay

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/hearthlab/hearth/internal/apierror"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/logging"
	"github.com/hearthlab/hearth/internal/webapp"
	"github.com/hearthlab/hearth/relay/auth"
	"github.com/hearthlab/hearth/relay/certs"
	"github.com/hearthlab/hearth/relay/chain"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/tunnel"
	"github.com/hearthlab/hearth/relay/usage"
)

// shutdownGrace is how long streams in flight may finish when the relay stops.
const shutdownGrace = 15 * time.Second

// Relay is one running `hearth relay`.
type Relay struct {
	cfg      config.Relay
	log      *slog.Logger
	certs    *certs.Certs
	store    *tokens.Store
	auth     *auth.Auth
	tunnel   *tunnel.Server
	home     *home
	chain    *chain.Chain
	usage    *usage.Log
	sites    *auth.Sites
	app      *webapp.App
	path     string // the config file, for Reload
	httpsLn  net.Listener
	httpLn   net.Listener // nil when listen.http is off
	httpsSrv *http.Server
	httpSrv  *http.Server
	// serving counts the HTTPS handlers running: after the servers close, the last of them
	// may still record usage, which must be written before the store closes.
	serving atomic.Int64
	grace   time.Duration // shutdownGrace; shorter in tests
}

// New builds the relay and binds its listeners, so that a port in use fails here. path is
// the config file cfg came from, re-read by Reload ("" = none).
func New(cfg config.Relay, path string, logger *slog.Logger) (*Relay, error) {
	logger = logging.OrDiscard(logger)
	cfg.Complete()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rl := &Relay{cfg: cfg, log: logger, path: path, grace: shutdownGrace}
	// What New started, undone in reverse when a later step fails (Caddy's cleanup after a
	// partial start): certmagic's cache goroutine, the database, the listeners.
	var undo []func()
	fail := func(err error) (*Relay, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, err
	}
	var err error
	if rl.certs, err = certs.New(cfg, logger.With("component", "certs")); err != nil {
		return nil, err
	}
	undo = append(undo, rl.certs.Close)
	if rl.store, err = tokens.Open(cfg.DB, logger.With("component", "tokens")); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { rl.store.Close() })
	rl.auth = auth.New(rl.store, cfg.Limits, cfg.AdminKey, logger.With("component", "auth"))
	if rl.usage, err = usage.New(rl.store, cfg.Usage, cfg.Prices, logger.With("component", "usage")); err != nil {
		return fail(err)
	}
	if rl.httpsLn, err = net.Listen("tcp", cfg.Listen.HTTPS); err != nil {
		return fail(fmt.Errorf("relay: cannot listen on listen.https %s: %w", cfg.Listen.HTTPS, err))
	}
	undo = append(undo, func() { rl.httpsLn.Close() })
	if cfg.Listen.HTTP != "" {
		if rl.httpLn, err = net.Listen("tcp", cfg.Listen.HTTP); err != nil {
			return fail(fmt.Errorf("relay: cannot listen on listen.http %s: %w", cfg.Listen.HTTP, err))
		}
		undo = append(undo, func() { rl.httpLn.Close() })
	}
	// The tunnel comes last: it binds and starts frps, and nothing after it can fail.
	if rl.tunnel, err = tunnel.New(tunnel.Config{Bind: cfg.Tunnel.Bind, Token: cfg.Tunnel.Token, TLS: rl.certs.TLSConfig()},
		logger.With("component", "tunnel")); err != nil {
		return fail(err)
	}
	rl.home = &home{name: cfg.Tunnel.Home, tunnel: rl.tunnel, auth: rl.auth, usage: rl.usage, log: logger}
	rl.chain = chain.New(cfg, rl.tunnel, rl.auth, rl.usage, logger.With("component", "chain"))
	rl.sites = auth.NewSites(rl.tunnel, rl.auth, rl.store, logger.With("component", "sites"))
	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	// ReadTimeout covers the request, not the answer: net/http clears the read deadline once
	// the body is read, so streams last as long as they need.
	rl.httpsSrv = &http.Server{Handler: rl.handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: cfg.Limits.ReadTimeout,
		IdleTimeout: 2 * time.Minute, ErrorLog: errLog}
	rl.httpSrv = &http.Server{Handler: rl.certs.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: cfg.Limits.ReadTimeout,
		IdleTimeout: time.Minute, ErrorLog: errLog}
	return rl, nil
}

// HTTPSAddr, HTTPAddr and TunnelAddr are the bound listeners (tests ask for port 0).
func (rl *Relay) HTTPSAddr() net.Addr  { return rl.httpsLn.Addr() }
func (rl *Relay) TunnelAddr() net.Addr { return rl.tunnel.Addr() }
func (rl *Relay) HTTPAddr() net.Addr {
	if rl.httpLn == nil {
		return nil
	}
	return rl.httpLn.Addr()
}

// Store is the token store, for the admin API and tests.
func (rl *Relay) Store() *tokens.Store { return rl.store }

// Run serves until ctx ends, then lets streams finish for a short grace period.
func (rl *Relay) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rl.log.Info("hearth relay serving", "https", rl.httpsLn.Addr().String(), "tunnel", rl.tunnel.Addr().String(),
		"domains", rl.cfg.Domains, "home", rl.cfg.Tunnel.Home)

	var wg sync.WaitGroup
	wg.Go(func() { _ = rl.certs.Run(ctx) })
	wg.Go(func() {
		if err := rl.tunnel.Run(ctx); err != nil {
			rl.log.Error("tunnel server stopped", "err", err)
		}
	})
	wg.Go(func() { rl.watchSites(ctx) })
	wg.Go(func() { rl.chain.Run(ctx) })
	wg.Go(func() { rl.app.Run(ctx) })
	wg.Go(func() {
		if err := rl.usage.Run(ctx); err != nil {
			rl.log.Error("usage log stopped", "err", err)
		}
	})
	rl.certs.Manage(ctx, rl.cfg.Domains...)

	errs := make(chan error, 2)
	go func() { errs <- rl.httpsSrv.Serve(tls.NewListener(rl.httpsLn, rl.certs.TLSConfig())) }()
	if rl.httpLn != nil {
		go func() { errs <- rl.httpSrv.Serve(rl.httpLn) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
		err = fmt.Errorf("relay: server stopped: %w", err)
	}
	cancel()
	sctx, stop := context.WithTimeout(context.WithoutCancel(ctx), rl.grace)
	defer stop()
	for _, srv := range []*http.Server{rl.httpsSrv, rl.httpSrv} {
		if serr := srv.Shutdown(sctx); serr != nil && !errors.Is(serr, context.DeadlineExceeded) {
			rl.log.Warn("shutdown", "err", serr)
		}
		_ = srv.Close()
	}
	wg.Wait()
	// Close cut the streams that outlived the grace period; their handlers end as their
	// upstream calls see it, and record what they served.
	if !drained(&rl.serving, rl.grace) {
		rl.log.Warn("requests still running after the servers closed; their usage may be lost")
	}
	// Streams that finished during the grace period were recorded after the usage log's
	// last flush. The grace period's context may be spent: the flush gets its own.
	fctx, fstop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer fstop()
	if ferr := rl.usage.Flush(fctx); ferr != nil {
		rl.log.Warn("usage records lost at shutdown", "err", ferr)
	}
	rl.store.Close()
	rl.log.Info("hearth relay stopped")
	return err
}

// drained waits for at most d until n is zero; false when d ran out first. (A WaitGroup
// would race: a connection may still start a handler while Close runs.)
func drained(n *atomic.Int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for n.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// watchSites asks for certificates for exposed hosts as agents register them.
func (rl *Relay) watchSites(ctx context.Context) {
	seen := map[string]bool{}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		var fresh []string
		for _, s := range rl.tunnel.Sites() {
			if !seen[s.Host] {
				seen[s.Host] = true
				fresh = append(fresh, s.Host)
			}
		}
		if len(fresh) > 0 {
			rl.log.Info("new exposed sites", "hosts", fresh)
			rl.certs.Manage(ctx, fresh...)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// handler routes by host: an exposed site, the relay's own domains, or nothing.
func (rl *Relay) handler() http.Handler {
	api := rl.apiRoutes()
	byHost := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := hostOnly(r.Host)
		if slices.Contains(rl.cfg.Domains, host) {
			api.ServeHTTP(w, r)
			return
		}
		for _, s := range rl.tunnel.Sites() {
			if s.Host == host {
				rl.sites.Serve(w, r, s)
				return
			}
		}
		http.Error(w, "This relay does not serve "+host+".", http.StatusMisdirectedRequest)
	})
	counted := func(w http.ResponseWriter, r *http.Request) {
		rl.serving.Add(1)
		defer rl.serving.Add(-1)
		byHost.ServeHTTP(w, r)
	}
	return logRequests(rl.log.With("component", "access"), secure(int64(rl.cfg.Limits.MaxBody), http.HandlerFunc(counted)))
}

func (rl *Relay) apiRoutes() http.Handler {
	r := chi.NewRouter()
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		apierror.Write(w, apierror.DialectOf(r.URL.Path), &apierror.Error{Status: http.StatusNotFound, Code: "not_found",
			Message: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
	})
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	// The ollama CLI's liveness probe, sent before every command: a refusal here would lose
	// its message (HEAD has no body), so it is open, and the command's own request says why.
	r.Head("/", func(http.ResponseWriter, *http.Request) {})
	r.Route("/admin/v1", func(r chi.Router) {
		r.Use(rl.auth.Admin)
		r.Get("/tokens", rl.listTokens)
		r.Post("/tokens", rl.createToken)
		r.Delete("/tokens/{name}", rl.revokeToken)
		r.Get("/agents", rl.agents)
		r.Method(http.MethodGet, "/usage", rl.usage.AdminHandler())
		rl.channelRoutes(r)
	})
	r.Group(func(r chi.Router) {
		r.Use(rl.auth.Require)
		r.Post("/v1/chat/completions", rl.chain.ServeHTTP)
		r.Post("/api/chat", rl.chain.ServeHTTP)
		r.Post("/api/generate", rl.chain.ServeHTTP)
		r.Get("/v1/models", rl.chain.Models)
		r.Handle("/v1/*", rl.home)
		r.Handle("/api/*", rl.home)
	})
	rl.mountApp(r)
	return r
}

func hostOnly(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// homeAgent is the home channel in GET /admin/v1/agents.
type homeAgent struct {
	Name   string `json:"name"`
	Online bool   `json:"online"`
	// Since is when the home agent connected (UTC), absent while it is not: `hearth doctor`
	// says "connected since".
	Since time.Time `json:"since,omitzero"`
}

// agents is GET /admin/v1/agents: the home channel and the exposed sites, online or not.
func (rl *Relay) agents(w http.ResponseWriter, _ *http.Request) {
	since, online := rl.tunnel.ChannelSince(rl.cfg.Tunnel.Home)
	writeJSON(w, http.StatusOK, map[string]any{
		"home":  homeAgent{Name: rl.cfg.Tunnel.Home, Online: online, Since: since.UTC()},
		"sites": rl.tunnel.Sites(),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
