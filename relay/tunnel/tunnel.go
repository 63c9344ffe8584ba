// Package tunnel is the relay's end of the tunnel from home: an embedded frp server (frps)
// that agents reach over TLS with the relay's certificate, the table of what each agent
// registered (its home API and the web apps it exposes, from their frp metadatas, see
// internal/tunnelmeta), and Forward/Do to reach them. It uses nothing else of the relay; the
// relay root wires it, and the chain and the sites reach home through it.
package tunnel

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	v1 "github.com/fatedier/frp/pkg/config/v1"
	"github.com/fatedier/frp/pkg/config/v1/validation"
	plugin "github.com/fatedier/frp/pkg/plugin/server"
	"github.com/fatedier/frp/server"

	"github.com/hearthlab/hearth/internal/frplog"
	"github.com/hearthlab/hearth/internal/logging"
)

const (
	// tunnelHandshakeTimeout bounds an agent's TLS handshake and its first frp bytes.
	tunnelHandshakeTimeout = 10 * time.Second
	// tunnelKeepalive is the yamux keepalive between frps and agents: a vanished agent (no
	// FIN, e.g. its network went away) is noticed within about twice this.
	tunnelKeepalive = 10 * time.Second
	// tunnelWorkConnPool caps the idle connections an agent keeps ready per session, so that
	// a burst of requests does not wait a round trip home for each new one.
	tunnelWorkConnPool = 32
)

// Config is the relay's side of the tunnel from home.
type Config struct {
	// Bind is where agents connect, e.g. ":7000" (tunnel.bind).
	Bind string
	// Token authenticates agents (tunnel.token).
	Token string
	// TLS is the relay's certificate configuration (certmagic's). Every agent connection is
	// TLS with it; the agent verifies it.
	TLS *tls.Config
}

// Server is the frp server that home agents connect to, embedded. frps serves agents on TLS
// connections the Server accepts itself (so that certificates renew without a restart).
// Each home channel and site is an frp TCP proxy that frps listens for on a loopback port
// the Server chose; Forward speaks HTTP to that port, and frps splices the bytes through to
// the agent, which dials the home service.
//
// (frp's HTTP vhost would route by host name itself, but it adds a reverse proxy in the
// middle, rewrites X-Forwarded-Proto to "http", and counts traffic on its connections
// without synchronisation: a client that goes away mid-stream is a data race in frps.)
type Server struct {
	cfg     Config
	log     *slog.Logger
	ln      net.Listener // cfg.Bind, raw TCP
	agents  *agentConns  // handshaken agent connections, handed to frps
	hooksLn net.Listener // frps' server plugin calls, loopback
	frps    *server.Service
	table   *tunnelTable
	proxy   *http.Transport
	bufs    bufferPool
	errLog  *log.Logger // ReverseProxy's, into slog
	ran     atomic.Bool
	wg      sync.WaitGroup
}

// New binds cfg.Bind and builds the frp server; Run serves, and releases the ports
// when it returns.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	logger = logging.OrDiscard(logger)
	switch {
	case cfg.Bind == "":
		return nil, errors.New("relay: tunnel: bind is empty (tunnel.bind, e.g. \":7000\")")
	case cfg.Token == "":
		return nil, errors.New("relay: tunnel: token is empty (tunnel.token)")
	case cfg.TLS == nil:
		return nil, errors.New("relay: tunnel: no TLS configuration: agents only connect over TLS")
	}
	frplog.Install()

	t := &Server{cfg: cfg, log: logger, table: newTunnelTable(cfg.Token, logger),
		errLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	// Idle connections to a route that went away would only fail.
	t.table.onChange = func() { t.proxy.CloseIdleConnections() }
	var err error
	if t.ln, err = net.Listen("tcp", cfg.Bind); err != nil {
		return nil, fmt.Errorf("relay: tunnel: listen on %s: %w", cfg.Bind, err)
	}
	t.agents = newAgentConns(t.ln.Addr())
	if t.hooksLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.ln.Close()
		return nil, fmt.Errorf("relay: tunnel: listen on loopback: %w", err)
	}
	if err = t.startFrps(); err != nil {
		t.ln.Close()
		t.hooksLn.Close()
		return nil, fmt.Errorf("relay: tunnel: %w", err)
	}
	t.proxy = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		// Bodies pass through as they are: no gzip added (and undone) on the way.
		DisableCompression: true,
	}
	return t, nil
}

// startFrps builds frps. It insists on a listener of its own, which is put on a loopback
// port that nothing uses: Run hands frps the agents' TLS connections instead. frp needs a
// concrete port, so a free one is picked; another process may take it first, hence the
// retries.
func (t *Server) startFrps() error {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		port, err := freeLoopbackPort()
		if err != nil {
			return err
		}
		cfg := &v1.ServerConfig{
			BindAddr: "127.0.0.1",
			BindPort: port,
			// The proxies' ports, which tunnelTable.register chooses.
			ProxyBindAddr: "127.0.0.1",
			Auth:          v1.AuthServerConfig{Method: v1.AuthMethodToken, Token: t.cfg.Token},
			Transport: v1.ServerTransportConfig{
				TCPMuxKeepaliveInterval: int64(tunnelKeepalive / time.Second),
				MaxPoolCount:            tunnelWorkConnPool,
			},
			HTTPPlugins: []v1.HTTPPluginOptions{{
				Name: "hearth",
				Addr: t.hooksLn.Addr().String(),
				// The hooks listen on loopback; the random path keeps other local users
				// from faking proxies.
				Path: "/frp/" + hex.EncodeToString(secret),
				Ops:  []string{plugin.OpLogin, plugin.OpNewProxy, plugin.OpPing, plugin.OpCloseProxy},
			}},
		}
		if err := cfg.Complete(); err != nil {
			return fmt.Errorf("frp server config: %w", err)
		}
		if _, err := validation.NewConfigValidator(nil).ValidateServerConfig(cfg); err != nil {
			return fmt.Errorf("frp server config: %w", err)
		}
		svc, err := server.NewService(cfg)
		if err == nil {
			t.frps = svc
			return nil
		}
		if attempt == 3 || !errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("start frp server: %w", err)
		}
	}
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr is where agents connect.
func (t *Server) Addr() net.Addr { return t.ln.Addr() }

// Channel reports whether home channel name is connected now.
func (t *Server) Channel(name string) bool { return t.table.channel(name) }

// ChannelSince is when home channel name connected (its agent said its end runs), and
// whether it is connected now; the time is zero when it is not.
func (t *Server) ChannelSince(name string) (since time.Time, online bool) {
	return t.table.channelSince(name)
}

// Sites lists the home web apps agents exposed since Run started, sorted by host; Online
// says which are connected now.
func (t *Server) Sites() []Site { return t.table.list() }

// Run serves agents until ctx ends, then closes frps, every agent connection and every
// goroutine it started. A Server runs once.
func (t *Server) Run(ctx context.Context) error {
	if !t.ran.CompareAndSwap(false, true) {
		return errors.New("relay: tunnel: Run called twice")
	}
	defer frplog.Untagged(t.log)()

	hooks := &http.Server{
		Handler:           t.table,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          t.errLog,
	}
	t.wg.Go(func() { _ = hooks.Serve(t.hooksLn) })
	t.wg.Go(t.accept)
	t.wg.Go(func() { t.frps.HandleListener(t.agents, false) })
	t.log.Info("tunnel listening", "addr", t.ln.Addr().String())

	<-ctx.Done()
	t.ln.Close()
	t.agents.Close()
	_ = t.frps.Close()
	t.agents.closeAll()
	t.proxy.CloseIdleConnections()
	// frps reports the proxies it closes asynchronously; hear them out, briefly.
	t.table.waitEmpty(time.Second)
	_ = hooks.Close()
	t.wg.Wait()
	t.table.reset()
	return nil
}

// accept takes agents' TCP connections and hands each to its own handshake, so that a
// slow or silent client never holds up the others.
func (t *Server) accept() {
	var delay time.Duration
	for {
		raw, err := t.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors and the like: wait, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("tunnel accept", "err", err)
			select {
			case <-t.agents.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		c := t.agents.track(raw)
		t.wg.Go(func() { t.handshake(c) })
	}
}

// handshake completes TLS and reads the first frp byte before frps sees the connection:
// frps reads that byte in its accept loop, one connection at a time.
func (t *Server) handshake(c net.Conn) {
	tc := tls.Server(c, t.cfg.TLS)
	_ = c.SetDeadline(time.Now().Add(tunnelHandshakeTimeout))
	first := make([]byte, 1)
	if err := tc.Handshake(); err != nil {
		t.log.Debug("tunnel TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	if _, err := io.ReadFull(tc, first); err != nil {
		t.log.Debug("tunnel client sent nothing", "remote", c.RemoteAddr().String(), "err", err)
		tc.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	conn := &peekedConn{Conn: tc, first: first}
	select {
	case t.agents.ready <- conn:
	case <-t.agents.done:
		conn.Close()
	}
}

// Forward sends r through the tunnel to the home service registered for host (HomeHost of
// a channel, or a site's host) and streams the answer back as it comes: every chunk is
// flushed at once, and WebSocket upgrades pass through. A host that is not connected gets
// 503; a home service that does not answer, 502.
func (t *Server) Forward(w http.ResponseWriter, r *http.Request, host string) {
	host = strings.ToLower(host)
	addr := t.table.addr(host)
	if addr == "" {
		http.Error(w, "tunnel: "+host+" is not connected", http.StatusServiceUnavailable)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: addr})
			pr.Out.Host = host
			pr.SetXForwarded()
		},
		Transport:     t.proxy,
		FlushInterval: -1,
		BufferPool:    &t.bufs,
		ErrorLog:      t.errLog,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away
			}
			t.log.Warn("tunnel forward failed", "host", host, "err", err)
			http.Error(w, "tunnel: "+host+" did not answer", http.StatusBadGateway)
		},
	}
	rp.ServeHTTP(w, r)
}

// ErrNotConnected: no agent holds the tunnel for the host asked for.
var ErrNotConnected = errors.New("tunnel: not connected")

// Do sends req through the tunnel to the home service registered for host and returns its
// answer unread, so that the caller can decide what to do before anything reaches its own
// client (the channel chain moves on when home cannot serve). req's URL path and query are
// kept; its scheme and host are the tunnel's.
func (t *Server) Do(req *http.Request, host string) (*http.Response, error) {
	host = strings.ToLower(host)
	addr := t.table.addr(host)
	if addr == "" {
		return nil, fmt.Errorf("%w: %s", ErrNotConnected, host)
	}
	req.URL.Scheme = "http"
	req.URL.Host = addr
	req.Host = host
	req.RequestURI = ""
	return t.proxy.RoundTrip(req)
}

// bufferPool lends ReverseProxy its copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// agentConns is the net.Listener frps accepts agents from: connections that finished
// their TLS handshake. It also tracks every connection accepted on the public port, to
// close them all on shutdown (frps does not).
type agentConns struct {
	addr      net.Addr
	ready     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool // by closeAll: later connections are closed at once
}

func newAgentConns(addr net.Addr) *agentConns {
	return &agentConns{addr: addr, ready: make(chan net.Conn), done: make(chan struct{}),
		conns: map[*trackedConn]struct{}{}}
}

func (l *agentConns) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *agentConns) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *agentConns) Addr() net.Addr { return l.addr }

func (l *agentConns) track(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, owner: l}
	l.mu.Lock()
	closed := l.closed
	if !closed {
		l.conns[tc] = struct{}{}
	}
	l.mu.Unlock()
	if closed {
		c.Close()
	}
	return tc
}

func (l *agentConns) closeAll() {
	l.mu.Lock()
	l.closed = true
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

type trackedConn struct {
	net.Conn
	owner *agentConns
	once  sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.owner.mu.Lock()
		delete(c.owner.conns, c)
		c.owner.mu.Unlock()
	})
	return c.Conn.Close()
}

// peekedConn gives back the byte handshake read.
type peekedConn struct {
	net.Conn
	first []byte
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
