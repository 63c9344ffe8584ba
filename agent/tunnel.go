package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fatedier/frp/client"
	"github.com/fatedier/frp/pkg/auth"
	frpconfig "github.com/fatedier/frp/pkg/config"
	v1 "github.com/fatedier/frp/pkg/config/v1"
	"github.com/fatedier/frp/pkg/config/v1/validation"
	"github.com/fatedier/frp/pkg/util/xlog"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/frplog"
	"github.com/hearthlab/hearth/internal/logging"
	"github.com/hearthlab/hearth/internal/tunnelmeta"
)

// How the relay recognises this agent's frp proxies (their metadatas): internal/tunnelmeta,
// which the relay's tunnel server reads.
const (
	tunnelMetaKind    = tunnelmeta.Kind    // "home" or "site"
	tunnelMetaChannel = tunnelmeta.Channel // tunnel.name
	tunnelMetaName    = tunnelmeta.Name    // tunnel.expose[].name
	tunnelMetaHost    = tunnelmeta.Host    // tunnel.expose[].host
	tunnelMetaAuth    = tunnelmeta.Auth    // tunnel.expose[].auth
)

const (
	// tunnelKeepalive is the yamux keepalive towards the relay: a relay that vanished
	// without closing the connection is noticed within about twice this.
	tunnelKeepalive = 10 * time.Second
	// tunnelPool is how many connections the agent keeps open ahead of requests.
	tunnelPool = 5
	// After a refused login the Tunnel waits tunnelLoginRetryMin, doubling up to
	// tunnelLoginRetryMax (an unreachable relay is retried faster, see relayConnector).
	tunnelLoginRetryMin = time.Second
	tunnelLoginRetryMax = 30 * time.Second
)

// TunnelState is the tunnel as /readyz and `hearth status` show it.
type TunnelState struct {
	Relay     string    `json:"relay"`
	Connected bool      `json:"connected"`            // the relay routes the home channel to this agent
	Since     time.Time `json:"since,omitzero"`       // when Connected last changed
	LastError string    `json:"last_error,omitempty"` // why it is not (or a site is not) connected
}

// Tunnel is the agent's side of the tunnel to the relay: it registers this agent's API as
// home channel tunnel.name, and one site per tunnel.expose entry. It runs frp's client
// control (proxies, work connections) on sessions it opens and logs in itself, so that it
// verifies the relay's certificate, reconnects within a moment of the relay coming back,
// and knows why a login or a proxy was refused. (frp's client.Service would open and log
// in itself, but it hides refusals in its log, backs off up to 20s, and reads its control
// without synchronisation while it stops, which the race detector reports.)
type Tunnel struct {
	cfg     config.Tunnel
	log     *slog.Logger
	dialer  *relayDialer
	common  *v1.ClientCommonConfig
	auth    *auth.ClientAuth
	proxies []v1.ProxyConfigurer // the first is the home channel
	ran     atomic.Bool

	mu      sync.Mutex
	state   TunnelState
	refused string          // why the relay refused a proxy of the current session, "" when it did not
	ctl     *client.Control // the current session's control, nil between sessions
	// withdrawn: the agent is stopping; the proxies are off the relay (see Withdraw)
	withdrawn bool
}

// NewTunnel builds the tunnel for cfg; apiAddr is the agent API's host:port that the home
// channel reaches. Nothing connects before Run.
func NewTunnel(cfg config.Tunnel, apiAddr string, logger *slog.Logger) (*Tunnel, error) {
	logger = logging.OrDiscard(logger)
	host, portText, err := net.SplitHostPort(cfg.Relay)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil || host == "" {
		return nil, fmt.Errorf("agent: tunnel: tunnel.relay %q: give the relay's host:port, e.g. relay.example.com:7000", cfg.Relay)
	}
	if cfg.Token == "" {
		return nil, errors.New("agent: tunnel: tunnel.token is empty: use the relay's tunnel.token")
	}
	if cfg.Name == "" {
		return nil, errors.New("agent: tunnel: tunnel.name is empty")
	}
	dialer, err := newRelayDialer(cfg, logger)
	if err != nil {
		return nil, fmt.Errorf("agent: tunnel: %w", err)
	}
	proxies, err := tunnelProxies(cfg, apiAddr)
	if err != nil {
		return nil, fmt.Errorf("agent: tunnel: %w", err)
	}
	common := &v1.ClientCommonConfig{
		Auth:       v1.AuthClientConfig{Method: v1.AuthMethodToken, Token: cfg.Token},
		ServerAddr: host,
		ServerPort: port,
		Metadatas:  map[string]string{tunnelMetaChannel: cfg.Name},
		Transport: v1.ClientTransportConfig{
			Protocol:                "tcp",
			WireProtocol:            "v1",
			TCPMux:                  new(true),
			TCPMuxKeepaliveInterval: int64(tunnelKeepalive / time.Second),
			PoolCount:               tunnelPool,
			// Plain TLS from the first byte, done by relayDialer (frp's dialer is not used).
			TLS: v1.TLSClientConfig{Enable: new(true), DisableCustomTLSFirstByte: new(true)},
		},
	}
	if err := common.Complete(); err != nil {
		return nil, fmt.Errorf("agent: tunnel: frp client config: %w", err)
	}
	proxies = frpconfig.CompleteProxyConfigurers(proxies)
	if _, err := validation.ValidateAllClientConfig(common, proxies, nil, nil); err != nil {
		return nil, fmt.Errorf("agent: tunnel: frp client config: %w", err)
	}
	clientAuth, err := auth.BuildClientAuth(&common.Auth)
	if err != nil {
		return nil, fmt.Errorf("agent: tunnel: %w", err)
	}
	frplog.Install()
	t := &Tunnel{cfg: cfg, log: logger, dialer: dialer, common: common, auth: clientAuth, proxies: proxies,
		state: TunnelState{Relay: cfg.Relay}}
	dialer.onError = func(err error) { t.setError(err.Error()) }
	return t, nil
}

// tunnelProxies is the home channel (the agent API) and one site per expose entry: frp TCP
// proxies, for which the relay chooses a port on its loopback and speaks HTTP.
func tunnelProxies(cfg config.Tunnel, apiAddr string) ([]v1.ProxyConfigurer, error) {
	home, err := tcpProxy("home-"+cfg.Name, apiAddr, map[string]string{tunnelMetaKind: "home", tunnelMetaChannel: cfg.Name})
	if err != nil {
		return nil, fmt.Errorf("agent API address: %w", err)
	}
	out := []v1.ProxyConfigurer{home}
	for i, e := range cfg.Expose {
		auth := e.Auth
		if auth == "" {
			auth = "token"
		}
		site, err := tcpProxy("site-"+cfg.Name+"."+e.Name, e.Local, map[string]string{tunnelMetaKind: "site",
			tunnelMetaChannel: cfg.Name, tunnelMetaName: e.Name, tunnelMetaHost: strings.ToLower(e.Host), tunnelMetaAuth: auth})
		if err != nil {
			return nil, fmt.Errorf("tunnel.expose[%d].local: %w", i, err)
		}
		out = append(out, site)
	}
	return out, nil
}

func tcpProxy(name, local string, metas map[string]string) (*v1.TCPProxyConfig, error) {
	ip, portText, err := net.SplitHostPort(local)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("%q is not host:port", local)
	}
	if addr := net.ParseIP(ip); ip == "" || addr != nil && addr.IsUnspecified() {
		ip = "127.0.0.1" // a listener on every address is reached on loopback
	}
	return &v1.TCPProxyConfig{ProxyBaseConfig: v1.ProxyBaseConfig{
		Name:         name,
		Type:         string(v1.ProxyTypeTCP),
		Metadatas:    metas,
		ProxyBackend: v1.ProxyBackend{LocalIP: ip, LocalPort: port},
	}}, nil
}

// Run keeps the tunnel up until ctx ends: it connects, logs in, serves the proxies until
// the session ends, and starts again.
func (t *Tunnel) Run(ctx context.Context) error {
	if !t.ran.CompareAndSwap(false, true) {
		return errors.New("agent: tunnel: Run called twice")
	}
	tag, unlog := frplog.Tagged(t.log)
	defer unlog()
	t.mu.Lock()
	t.state.Since = time.Now()
	t.mu.Unlock()
	t.log.Info("tunnel connecting", "relay", t.cfg.Relay, "channel", t.cfg.Name, "sites", len(t.cfg.Expose))

	var runID string
	failures, short := 0, 0
	for ctx.Err() == nil {
		s, err := t.login(ctx, runID)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			t.setError(err.Error())
			failures++
			// A refused login does not fix itself quickly: back off up to tunnelLoginRetryMax.
			sleepCtx(ctx, backoff(tunnelLoginRetryMin, failures, tunnelLoginRetryMax))
			continue
		}
		failures, runID = 0, s.RunID
		started := time.Now()
		t.serve(ctx, s, tag)
		// Sessions that keep ending at once (a relay that drops the agent) must not spin.
		if time.Since(started) > tunnelLoginRetryMin {
			short = 0
		} else {
			short++
			sleepCtx(ctx, backoff(tunnelRetryMin, short, tunnelLoginRetryMax))
		}
	}
	t.mu.Lock()
	t.state.Connected, t.state.Since = false, time.Now()
	t.mu.Unlock()
	t.log.Info("tunnel stopped", "relay", t.cfg.Relay, "channel", t.cfg.Name)
	return nil
}

// serve runs frp's client control on session s until it ends or ctx does.
func (t *Tunnel) serve(ctx context.Context, s *client.SessionContext, tag string) {
	// A fresh xlog per session: frp changes an xlog's prefixes without locking.
	xl := xlog.New().AddPrefix(xlog.LogPrefix{Name: "hearth", Value: tag, Priority: 1}).AppendPrefix(s.RunID)
	ctl, err := client.NewControl(xlog.NewContext(ctx, xl), s)
	if err != nil {
		s.Conn.Close()
		s.Connector.Close()
		t.setError("start the tunnel control: " + err.Error())
		return
	}
	t.mu.Lock()
	t.refused = ""
	t.ctl = ctl
	proxies := t.proxies
	if t.withdrawn {
		proxies = nil
	}
	t.mu.Unlock()
	ctl.Run(proxies, nil)
	select {
	case <-ctl.Done():
	case <-ctx.Done():
		_ = ctl.GracefulClose(0)
		<-ctl.Done()
	}
	t.mu.Lock()
	t.ctl = nil
	t.mu.Unlock()
	if ctx.Err() == nil {
		t.setConnected(false)
	}
}

// Withdraw takes the home channel and the sites off the relay while the session stays up:
// the agent is stopping, so the relay must send it nothing new (it answers home_offline or
// goes to a vendor at once, where a request that still went home met a closed API and came
// back "home: EOF"), while the streams in flight, whose connections the session carries,
// finish. Run's end closes the session.
func (t *Tunnel) Withdraw() {
	t.mu.Lock()
	t.withdrawn = true
	ctl := t.ctl
	t.mu.Unlock()
	if ctl != nil {
		_ = ctl.UpdateAllConfigurer(nil, nil)
		t.log.Info("tunnel: home channel withdrawn from the relay while answers in flight finish", "channel", t.cfg.Name)
	}
}

// State is the tunnel now.
func (t *Tunnel) State() TunnelState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

// proxyRunning is told that a proxy the relay accepted runs; the home channel's makes the
// tunnel connected.
func (t *Tunnel) proxyRunning(name string) {
	if name == t.proxies[0].GetBaseConfig().Name {
		t.setConnected(true)
	}
}

// proxyRefused is told why the relay refused a proxy.
func (t *Tunnel) proxyRefused(name, reason string) {
	what := "home channel " + strconv.Quote(t.cfg.Name)
	for i, p := range t.proxies[1:] {
		if p.GetBaseConfig().Name == name {
			what = "site " + strconv.Quote(t.cfg.Expose[i].Name)
		}
	}
	msg := fmt.Sprintf("the relay refused the %s: %s", what, reason)
	t.mu.Lock()
	t.refused = msg
	t.mu.Unlock()
	t.setError(msg)
}

func (t *Tunnel) setConnected(connected bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if connected == t.state.Connected {
		return
	}
	t.state.Connected, t.state.Since = connected, time.Now()
	if connected {
		t.state.LastError = t.refused // a site the relay refused, if any
		t.log.Info("tunnel connected", "relay", t.cfg.Relay, "channel", t.cfg.Name)
	} else {
		t.log.Warn("tunnel disconnected", "relay", t.cfg.Relay, "channel", t.cfg.Name)
	}
}

func (t *Tunnel) setError(msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if msg != t.state.LastError {
		t.log.Warn("tunnel problem", "relay", t.cfg.Relay, "err", msg)
	}
	t.state.LastError = msg
}

// backoff is base doubled for each failure after the first, up to limit.
func backoff(base time.Duration, failures int, limit time.Duration) time.Duration {
	return min(base<<min(failures-1, 16), limit)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
