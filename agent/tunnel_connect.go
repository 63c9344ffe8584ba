package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/fatedier/frp/client"
	"github.com/fatedier/frp/pkg/msg"
	netpkg "github.com/fatedier/frp/pkg/util/net"
	"github.com/fatedier/frp/pkg/util/version"
	"github.com/hashicorp/yamux"

	"github.com/hearthlab/hearth/internal/config"
)

const (
	// tunnelDialTimeout bounds one TCP connect plus TLS handshake to the relay.
	tunnelDialTimeout = 10 * time.Second
	// While the relay cannot be reached, the dialer retries every tunnelRetryMin, doubling
	// up to tunnelRetryMax: a relay that restarts has its agents back within a second of
	// listening again.
	tunnelRetryMin = 100 * time.Millisecond
	tunnelRetryMax = time.Second
	// tunnelStreamWindow is frp's yamux window: 6 MiB in flight per stream.
	tunnelStreamWindow = 6 << 20
)

// relayDialer connects to the relay: TCP, then TLS verified against tunnel.ca or the
// system's roots, never skipped. (frp's own dialer skips verification when it has no CA
// file, and starts TLS lazily inside yamux, where a verification error becomes "session
// shutdown". Here the handshake is explicit and its error is worded for the user.)
type relayDialer struct {
	relay   string
	tls     *tls.Config
	trust   string // what the certificate was checked against, for messages
	log     *slog.Logger
	onError func(error)
}

func newRelayDialer(cfg config.Tunnel, logger *slog.Logger) (*relayDialer, error) {
	host, _, err := net.SplitHostPort(cfg.Relay)
	if err != nil {
		return nil, fmt.Errorf("tunnel.relay %q: %w", cfg.Relay, err)
	}
	name := cfg.ServerName
	if name == "" {
		name = host
	}
	d := &relayDialer{relay: cfg.Relay, log: logger,
		tls: &tls.Config{ServerName: name, MinVersion: tls.VersionTLS12}}
	if cfg.CA == "" {
		// nil RootCAs: the system's roots (and SSL_CERT_FILE / SSL_CERT_DIR), which trust
		// ACME certificates.
		d.trust = "the system's certificate roots (set tunnel.ca for a private CA)"
		return d, nil
	}
	pem, err := os.ReadFile(cfg.CA)
	if err != nil {
		return nil, fmt.Errorf("tunnel.ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tunnel.ca %s: no PEM certificate in it", cfg.CA)
	}
	d.tls.RootCAs = pool
	d.trust = "only the CA in tunnel.ca " + cfg.CA
	return d, nil
}

// dial connects and completes TLS, returning an error in words.
func (d *relayDialer) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, tunnelDialTimeout)
	defer cancel()
	raw, err := (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext(ctx, "tcp", d.relay)
	if err != nil {
		return nil, &dialError{retry: true, msg: fmt.Sprintf("cannot reach the relay at %s: %v", d.relay, err)}
	}
	conn := tls.Client(raw, d.tls)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, d.handshakeError(err)
	}
	return conn, nil
}

func (d *relayDialer) handshakeError(err error) error {
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &hostname):
		return &dialError{msg: fmt.Sprintf("certificate verification failed: the relay's certificate is not for %q "+
			"(set tunnel.server_name to a name it has): %v", d.tls.ServerName, err)}
	case errors.As(err, &verify), errors.As(err, &authority), errors.As(err, &invalid):
		return &dialError{msg: fmt.Sprintf("certificate verification failed for the relay %s, checked against %s: %v",
			d.relay, d.trust, err)}
	}
	// Reset or EOF mid-handshake: a relay restarting, or something that does not speak TLS.
	return &dialError{retry: true, msg: fmt.Sprintf("TLS handshake with the relay %s failed (is it the relay's tunnel port?): %v", d.relay, err)}
}

type dialError struct {
	retry bool // the relay may come back by itself
	msg   string
}

func (e *dialError) Error() string { return e.msg }

// relayConnector is one frp session: a TLS connection to the relay carrying yamux streams
// (frp's tcpMux), one per control or work connection.
type relayConnector struct {
	ctx     context.Context
	d       *relayDialer
	mu      sync.Mutex
	session *yamux.Session
	closed  bool
}

// Open connects, retrying quickly while the relay is unreachable; other failures go back
// to frp, which retries with its own backoff.
func (c *relayConnector) Open() error {
	wait := tunnelRetryMin
	for {
		conn, err := c.d.dial(c.ctx)
		if err == nil {
			return c.start(conn)
		}
		c.d.onError(err)
		var de *dialError
		if !errors.As(err, &de) || !de.retry {
			return err
		}
		select {
		case <-c.ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, tunnelRetryMax)
	}
}

func (c *relayConnector) start(conn net.Conn) error {
	cfg := yamux.DefaultConfig()
	cfg.KeepAliveInterval = tunnelKeepalive
	cfg.MaxStreamWindowSize = tunnelStreamWindow
	cfg.LogOutput = nil
	cfg.Logger = slog.NewLogLogger(c.d.log.Handler(), slog.LevelDebug)
	session, err := yamux.Client(conn, cfg)
	if err != nil {
		conn.Close()
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		session.Close()
		return net.ErrClosed
	}
	c.session = session
	return nil
}

// Connect opens a stream for a control or work connection.
func (c *relayConnector) Connect() (net.Conn, error) {
	c.mu.Lock()
	s := c.session
	c.mu.Unlock()
	if s == nil {
		return nil, errors.New("tunnel session is not open")
	}
	return s.OpenStream()
}

func (c *relayConnector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.session != nil {
		return c.session.Close()
	}
	return nil
}

// login opens a session to the relay and logs in as frp's client does (wire protocol v1);
// previousRunID lets frps replace the control of a session it has not yet seen die.
func (t *Tunnel) login(ctx context.Context, previousRunID string) (*client.SessionContext, error) {
	conn := &relayConnector{ctx: ctx, d: t.dialer}
	if err := conn.Open(); err != nil {
		return nil, err
	}
	stream, err := conn.Connect()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("open the tunnel's control stream: %w", err)
	}
	hostname, _ := os.Hostname()
	login := &msg.Login{
		Version:   version.Full(),
		Hostname:  hostname,
		Os:        runtime.GOOS,
		Arch:      runtime.GOARCH,
		Timestamp: time.Now().Unix(),
		RunID:     previousRunID,
		Metas:     t.common.Metadatas,
		PoolCount: t.common.Transport.PoolCount,
	}
	var resp msg.LoginResp
	rw := msg.NewV1ReadWriter(stream)
	_ = stream.SetDeadline(time.Now().Add(tunnelDialTimeout))
	if err = t.auth.Setter.SetLogin(login); err == nil {
		if err = rw.WriteMsg(login); err == nil {
			err = rw.ReadMsgInto(&resp)
		}
	}
	_ = stream.SetDeadline(time.Time{})
	if err == nil && resp.Error != "" {
		err = loginRefused(resp.Error)
	} else if err != nil {
		err = fmt.Errorf("login to the relay %s failed: %w", t.cfg.Relay, err)
	}
	var control io.ReadWriter
	if err == nil {
		control, err = netpkg.NewCryptoReadWriter(stream, t.auth.EncryptionKey())
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &client.SessionContext{
		Common:    t.common,
		RunID:     resp.RunID,
		Conn:      msg.NewConn(stream, &answerTap{ReadWriter: msg.NewReadWriter(control, "v1"), t: t}),
		Auth:      t.auth,
		Connector: &messageConnector{relayConnector: conn},
	}, nil
}

func loginRefused(reason string) error {
	if strings.Contains(reason, "token") && !strings.Contains(reason, "tunnel.token") {
		reason += " (tunnel.token must be the relay's tunnel.token)" // frps' own words
	}
	return fmt.Errorf("the relay refused the login: %s", reason)
}

// messageConnector opens frp's work connections as streams of the session.
type messageConnector struct{ *relayConnector }

func (c *messageConnector) Connect() (*msg.Conn, error) {
	stream, err := c.relayConnector.Connect()
	if err != nil {
		return nil, err
	}
	return msg.NewConn(stream, msg.NewReadWriter(stream, "v1")), nil
}

// answerTap reads and writes the control stream for frp's Control. It tells the Tunnel the
// relay's answer to each of its proxies, and tells the relay when the proxies it accepted
// run here: frps opens a proxy's port as it accepts it, but until frp's Control has taken
// in the acceptance, it turns connections for that proxy away. So after the acceptance has
// been handled (the Control reads one message at a time, and handles it before it reads
// the next) the tap sends a Ping, which the relay takes as "ready".
type answerTap struct {
	msg.ReadWriter
	t        *Tunnel
	wmu      sync.Mutex // the Control writes from its own goroutine
	accepted []string   // proxies accepted but not yet announced; used by the reading goroutine only
}

func (a *answerTap) ReadMsg() (msg.Message, error) {
	if len(a.accepted) > 0 {
		if err := a.WriteMsg(&msg.Ping{}); err != nil {
			return nil, err
		}
		for _, name := range a.accepted {
			a.t.proxyRunning(name)
		}
		a.accepted = a.accepted[:0]
	}
	m, err := a.ReadWriter.ReadMsg()
	if resp, ok := m.(*msg.NewProxyResp); ok && err == nil {
		if resp.Error == "" {
			a.accepted = append(a.accepted, resp.ProxyName)
		} else {
			a.t.proxyRefused(resp.ProxyName, resp.Error)
		}
	}
	return m, err
}

func (a *answerTap) WriteMsg(m msg.Message) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	return a.ReadWriter.WriteMsg(m)
}
