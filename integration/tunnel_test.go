package integration

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/hearthlab/hearth/agent"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/relay/tunnel"
)

const testTunnelToken = "tunnel-token-0123456789abcdef"

// tunnelPKI is a test CA and the relay's certificate for "relay.test", signed by it.
type tunnelPKI struct {
	caFile    string
	serverTLS *tls.Config
}

func newTunnelPKI(t *testing.T) tunnelPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hearth test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "relay.test"},
		DNSNames:     []string{"relay.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tunnelPKI{caFile: caFile, serverTLS: &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER, caDER}, PrivateKey: key}},
	}}
}

// checkTunnelGoroutines fails the test if goroutines of the tunnel (hearth's, frp's, yamux's,
// net/http's) outlive it. Call it first, so that its check runs after every other cleanup.
func checkTunnelGoroutines(t *testing.T) {
	t.Helper()
	hearthtest.CheckGoroutines(t, hearthtest.Hearth, "github.com/fatedier/", "github.com/hashicorp/yamux", "net/http")
}

func newTunnelLog(t *testing.T, name string) (*slog.Logger, *hearthtest.Logs) {
	t.Helper()
	sink := &hearthtest.Logs{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", name, sink.String())
		}
	})
	return slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug})), sink
}

// tunnelPart is a component started by a test; stop ends it and waits for Run to return.
type tunnelPart struct {
	stop func()
}

func runTunnelPart(t *testing.T, what string, fn func(context.Context) error) tunnelPart {
	t.Helper()
	return tunnelPart{stop: hearthtest.Run(t, what, fn)}
}

func startRelayTunnel(t *testing.T, pki tunnelPKI, bind string) (*tunnel.Server, tunnelPart, *hearthtest.Logs) {
	t.Helper()
	logger, sink := newTunnelLog(t, "relay")
	tun, err := tunnel.New(tunnel.Config{Bind: bind, Token: testTunnelToken, TLS: pki.serverTLS}, logger)
	if err != nil {
		t.Fatal(err)
	}
	return tun, runTunnelPart(t, "relay tunnel", tun.Run), sink
}

func agentTunnelConfig(pki tunnelPKI, relayAddr net.Addr, name string) config.Tunnel {
	return config.Tunnel{Relay: relayAddr.String(), Token: testTunnelToken, Name: name, CA: pki.caFile, ServerName: "relay.test"}
}

func startAgentTunnel(t *testing.T, cfg config.Tunnel, apiAddr string) (*agent.Tunnel, tunnelPart, *hearthtest.Logs) {
	t.Helper()
	logger, sink := newTunnelLog(t, "agent "+cfg.Name)
	tun, err := agent.NewTunnel(cfg, apiAddr, logger)
	if err != nil {
		t.Fatal(err)
	}
	return tun, runTunnelPart(t, "agent tunnel "+cfg.Name, tun.Run), sink
}

// tunnelEventually waits as hearthtest.Eventually does and returns how long it took.
func tunnelEventually(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	hearthtest.Eventually(t, what, limit, cond)
	return time.Since(start)
}

// tunnelFront is the relay's public side in these tests: every request goes to host.
func tunnelFront(t *testing.T, tun *tunnel.Server, host string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tun.Forward(w, r, host)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func tunnelHostOf(srv *httptest.Server) string { return srv.Listener.Addr().String() }

// tunnelNDJSONBackend streams lines, writing each only after the test has read the one before:
// a reader that gets line n before line n+1 exists proves nothing on the way buffers.
func tunnelNDJSONBackend(t *testing.T, lines []string, next <-chan struct{}, seen chan<- *http.Request) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Clone(t.Context())
		w.Header().Set("Content-Type", "application/x-ndjson")
		for i, l := range lines {
			if i > 0 {
				select {
				case <-next:
				case <-time.After(10 * time.Second):
					return
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintln(w, l)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestTunnelHomeChannelStreamsChunkByChunk(t *testing.T) {
	checkTunnelGoroutines(t)
	pki := newTunnelPKI(t)
	rt, _, _ := startRelayTunnel(t, pki, "127.0.0.1:0")
	lines := []string{`{"message":{"content":"Hel"},"done":false}`, `{"message":{"content":"lo"},"done":false}`, `{"done":true}`}
	next, seen := make(chan struct{}), make(chan *http.Request, 1)
	api := tunnelNDJSONBackend(t, lines, next, seen)
	at, _, _ := startAgentTunnel(t, agentTunnelConfig(pki, rt.Addr(), "home"), tunnelHostOf(api))

	took := tunnelEventually(t, 10*time.Second, "home channel registered", func() bool { return rt.Channel("home") })
	t.Logf("home channel registered %s after the agent started", took.Round(time.Millisecond))
	tunnelEventually(t, 2*time.Second, "agent reports connected", func() bool { return at.State().Connected })
	if st := at.State(); st.Relay != rt.Addr().String() || st.LastError != "" || st.Since.IsZero() {
		t.Errorf("agent state %+v", st)
	}

	// The relay's public side is HTTPS.
	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt.Forward(w, r, tunnel.HomeHost("home"))
	}))
	t.Cleanup(front.Close)
	resp, err := front.Client().Post(front.URL+"/api/chat", "application/json", strings.NewReader(`{"model":"tiny"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := <-seen
	if r.Host != tunnel.HomeHost("home") || r.URL.Path != "/api/chat" || r.Header.Get("X-Forwarded-Proto") != "https" ||
		r.Header.Get("X-Forwarded-Host") != tunnelHostOf(front) || r.Header.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("home saw host %q, path %q, headers %v", r.Host, r.URL.Path, r.Header)
	}
	body := bufio.NewReader(resp.Body)
	for i, want := range lines {
		got := make(chan string, 1)
		go func() { l, _ := body.ReadString('\n'); got <- l }()
		select {
		case l := <-got:
			if strings.TrimSpace(l) != want {
				t.Fatalf("line %d = %q, want %q", i, l, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("line %d did not arrive before the backend wrote the next one: the stream is buffered", i)
		}
		if i < len(lines)-1 {
			next <- struct{}{}
		}
	}
	if rest, _ := io.ReadAll(body); len(rest) != 0 {
		t.Errorf("unexpected trailing bytes %q", rest)
	}
}

func TestTunnelRelayRestartReconnects(t *testing.T) {
	checkTunnelGoroutines(t)
	pki := newTunnelPKI(t)
	rt, relayRun, _ := startRelayTunnel(t, pki, "127.0.0.1:0")
	addr := rt.Addr()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "home ok") }))
	t.Cleanup(api.Close)
	at, _, _ := startAgentTunnel(t, agentTunnelConfig(pki, addr, "home"), tunnelHostOf(api))
	tunnelEventually(t, 10*time.Second, "home channel registered", func() bool { return rt.Channel("home") })

	relayRun.stop()
	if rt.Channel("home") {
		t.Error("a stopped relay still reports the home channel")
	}
	tunnelEventually(t, 10*time.Second, "agent notices the relay is gone", func() bool { return !at.State().Connected })
	// A real restart takes a moment; meanwhile the agent keeps dialing.
	time.Sleep(1500 * time.Millisecond)
	if e := at.State().LastError; !strings.Contains(e, "cannot reach the relay") {
		t.Errorf("while the relay is down, LastError = %q", e)
	}

	start := time.Now()
	rt2, _, _ := startRelayTunnel(t, pki, addr.String())
	took := tunnelEventually(t, 10*time.Second, "home channel back after the relay restarted", func() bool { return rt2.Channel("home") })
	t.Logf("relay restart: home channel registered again %s after the new relay started (%s including its construction)",
		took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("reconnection took %s, want under 5s", took)
	}
	resp, err := http.Get(tunnelFront(t, rt2, tunnel.HomeHost("home")).URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "home ok" {
		t.Errorf("through the restarted relay: %d %q", resp.StatusCode, b)
	}
	tunnelEventually(t, 2*time.Second, "agent reports connected again", func() bool { return at.State().Connected })
}

func TestTunnelAgentStoppedChannelGoesOffline(t *testing.T) {
	checkTunnelGoroutines(t)
	pki := newTunnelPKI(t)
	rt, _, _ := startRelayTunnel(t, pki, "127.0.0.1:0")
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(api.Close)
	_, agentRun, _ := startAgentTunnel(t, agentTunnelConfig(pki, rt.Addr(), "home"), tunnelHostOf(api))
	tunnelEventually(t, 10*time.Second, "home channel registered", func() bool { return rt.Channel("home") })

	start := time.Now()
	agentRun.stop()
	took := tunnelEventually(t, 10*time.Second, "home channel offline after the agent stopped", func() bool { return !rt.Channel("home") })
	t.Logf("agent stopped: relay saw the home channel go %s after Run was cancelled (%s after Run returned)",
		time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the relay took %s to notice, want under 2s", took)
	}
	rec := httptest.NewRecorder()
	rt.Forward(rec, httptest.NewRequest("GET", "/v1/models", nil), tunnel.HomeHost("home"))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("Forward to an offline channel: %d, want 503", rec.Code)
	}
}

func TestTunnelWrongTokenIsRefusedAndLogged(t *testing.T) {
	checkTunnelGoroutines(t)
	pki := newTunnelPKI(t)
	rt, _, relayLog := startRelayTunnel(t, pki, "127.0.0.1:0")
	cfg := agentTunnelConfig(pki, rt.Addr(), "home")
	cfg.Token = "not-the-tunnel-token-at-all"
	at, _, agentLog := startAgentTunnel(t, cfg, "127.0.0.1:9")

	tunnelEventually(t, 10*time.Second, "agent reports the refusal", func() bool {
		e := at.State().LastError
		return strings.Contains(e, "the relay refused the login: wrong tunnel token") && strings.Contains(e, "tunnel.token")
	})
	t.Logf("agent: %s", at.State().LastError)
	tunnelEventually(t, 2*time.Second, "relay logs the refusal", func() bool {
		return strings.Contains(relayLog.String(), "tunnel login refused: wrong tunnel token")
	})
	// frps logs the refusal too, through the bridge from frp's global logger, on the
	// relay's logger and not on the agent's.
	tunnelEventually(t, 2*time.Second, "frps' own line on the relay's log", func() bool {
		return strings.Contains(relayLog.String(), `level=WARN msg="register control error: wrong tunnel token`) &&
			strings.Contains(relayLog.String(), "frp=server/service.go:")
	})
	if strings.Contains(agentLog.String(), "register control error") {
		t.Error("frps' line reached the agent's log")
	}
	if rt.Channel("home") || at.State().Connected {
		t.Error("an agent with a wrong token got connected")
	}
	if strings.Contains(relayLog.String(), cfg.Token) || strings.Contains(agentLog.String(), cfg.Token) {
		t.Error("the wrong token reached a log")
	}
}

func TestTunnelRefusesRelayWithUnverifiableCertificate(t *testing.T) {
	checkTunnelGoroutines(t)
	pki := newTunnelPKI(t)
	rt, _, _ := startRelayTunnel(t, pki, "127.0.0.1:0")
	cfg := agentTunnelConfig(newTunnelPKI(t), rt.Addr(), "home") // trusts another CA
	at, _, _ := startAgentTunnel(t, cfg, "127.0.0.1:9")

	tunnelEventually(t, 10*time.Second, "agent reports the certificate", func() bool {
		return strings.Contains(at.State().LastError, "certificate verification failed")
	})
	t.Logf("agent: %s", at.State().LastError)
	time.Sleep(500 * time.Millisecond)
	if rt.Channel("home") || at.State().Connected {
		t.Error("the agent connected to a relay it cannot verify")
	}
}

func TestTunnelSiteWebSocketEcho(t *testing.T) {
	checkTunnelGoroutines(t)
	pki := newTunnelPKI(t)
	rt, _, _ := startRelayTunnel(t, pki, "127.0.0.1:0")
	echo := httptest.NewServer(websocket.Handler(func(c *websocket.Conn) { io.Copy(c, c) }))
	t.Cleanup(echo.Close)
	api := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(api.Close)
	cfg := agentTunnelConfig(pki, rt.Addr(), "home")
	cfg.Expose = []config.Expose{{Name: "echo", Local: tunnelHostOf(echo), Host: "Echo.Example.test", Auth: "none"}}
	startAgentTunnel(t, cfg, tunnelHostOf(api))

	want := tunnel.Site{Host: "echo.example.test", Name: "echo", Channel: "home", Auth: "none", Online: true}
	tunnelEventually(t, 10*time.Second, "site registered", func() bool {
		return slices.Equal(rt.Sites(), []tunnel.Site{want})
	})
	front := tunnelFront(t, rt, "echo.example.test")
	ws, err := websocket.Dial("ws://"+tunnelHostOf(front)+"/echo", "", front.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for _, msg := range []string{"hello", "through the tunnel"} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := websocket.Message.Receive(ws, &got); err != nil || got != msg {
			t.Fatalf("echo = %q, %v; want %q", got, err, msg)
		}
	}
}

func TestTunnelSeveralAgents(t *testing.T) {
	checkTunnelGoroutines(t)
	pki := newTunnelPKI(t)
	rt, _, _ := startRelayTunnel(t, pki, "127.0.0.1:0")
	serve := func(body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
		t.Cleanup(srv.Close)
		return tunnelHostOf(srv)
	}
	startAgentTunnel(t, agentTunnelConfig(pki, rt.Addr(), "home"), serve("from home"))
	startAgentTunnel(t, agentTunnelConfig(pki, rt.Addr(), "cabin"), serve("from cabin"))
	tunnelEventually(t, 10*time.Second, "both channels registered", func() bool { return rt.Channel("home") && rt.Channel("cabin") })
	for name, want := range map[string]string{"home": "from home", "cabin": "from cabin"} {
		resp, err := http.Get(tunnelFront(t, rt, tunnel.HomeHost(name)).URL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Errorf("channel %s answered %q, want %q", name, b, want)
		}
	}

	// A third agent that claims a channel already connected is refused, in words.
	dup, _, _ := startAgentTunnel(t, agentTunnelConfig(pki, rt.Addr(), "cabin"), serve("impostor"))
	tunnelEventually(t, 10*time.Second, "duplicate channel refused", func() bool {
		return strings.Contains(dup.State().LastError, `channel "cabin" is already connected from another agent`)
	})
	if dup.State().Connected {
		t.Error("the duplicate agent reports connected")
	}
	rec := httptest.NewRecorder()
	rt.Forward(rec, httptest.NewRequest("GET", "/", nil), tunnel.HomeHost("nobody"))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("Forward to an unknown channel: %d, want 503", rec.Code)
	}
}
