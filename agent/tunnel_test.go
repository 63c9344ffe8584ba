package agent_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/agent"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
)

const testTunnelToken = "tunnel-token-0123456789abcdef"

// writeTunnelPEM writes certificates as a PEM file and returns its path.
func writeTunnelPEM(t *testing.T, ders ...[]byte) string {
	t.Helper()
	var out []byte
	for _, der := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// otherTunnelCA is a CA that signed nothing the tests serve.
func otherTunnelCA(t *testing.T) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return writeTunnelPEM(t, der)
}

// checkTunnelGoroutines fails the test if the tunnel's goroutines outlive it; call it
// first, so that it runs after every other cleanup.
func checkTunnelGoroutines(t *testing.T) {
	t.Helper()
	hearthtest.CheckGoroutines(t, "hearth/agent.(*Tunnel)", "fatedier/frp/client", "hashicorp/yamux")
}

func runAgentTunnel(t *testing.T, cfg config.Tunnel) *agent.Tunnel {
	t.Helper()
	tun, err := agent.NewTunnel(cfg, "127.0.0.1:11500", nil)
	if err != nil {
		t.Fatal(err)
	}
	hearthtest.Run(t, "tunnel", tun.Run)
	return tun
}

func TestTunnelConfigErrors(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	good := config.Tunnel{Relay: "relay.example.com:7000", Token: testTunnelToken, Name: "home"}
	tests := []struct {
		name   string
		mutate func(*config.Tunnel)
		api    string
		want   string
	}{
		{"no port", func(c *config.Tunnel) { c.Relay = "relay.example.com" }, "", `tunnel.relay "relay.example.com": give the relay's host:port`},
		{"no token", func(c *config.Tunnel) { c.Token = "" }, "", "tunnel.token is empty"},
		{"no name", func(c *config.Tunnel) { c.Name = "" }, "", "tunnel.name is empty"},
		{"CA missing", func(c *config.Tunnel) { c.CA = "/nonexistent/ca.pem" }, "", "tunnel.ca: open /nonexistent/ca.pem"},
		{"CA not PEM", func(c *config.Tunnel) { c.CA = notPEM }, "", "no PEM certificate in it"},
		{"bad API address", nil, "localhost", `agent API address: "localhost" is not host:port`},
		{"bad expose", func(c *config.Tunnel) {
			c.Expose = []config.Expose{{Name: "webui", Local: "127.0.0.1:http", Host: "chat.example.com"}}
		}, "", `tunnel.expose[0].local: "127.0.0.1:http" is not host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			if tt.mutate != nil {
				tt.mutate(&cfg)
			}
			api := tt.api
			if api == "" {
				api = "0.0.0.0:11500"
			}
			_, err := agent.NewTunnel(cfg, api, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestTunnelSaysWhyItCannotConnect covers what the agent reports before any frp exchange:
// the relay is unreachable, does not speak TLS, or has a certificate the agent cannot
// verify. It never connects without verifying.
func TestTunnelSaysWhyItCannotConnect(t *testing.T) {
	checkTunnelGoroutines(t)
	tlsRelay := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsRelay.Close)
	selfSigned := writeTunnelPEM(t, tlsRelay.Certificate().Raw) // httptest's certificate is its own CA
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	plain, _ := net.Listen("tcp", "127.0.0.1:0")
	t.Cleanup(func() { plain.Close() })
	go func() {
		for {
			c, err := plain.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()

	tests := []struct {
		name, relay, ca, serverName, want string
	}{
		{"unreachable", closedAddr, "", "", "cannot reach the relay at " + closedAddr},
		{"not TLS", plain.Addr().String(), "", "relay.test", "TLS handshake with the relay " + plain.Addr().String() + " failed"},
		{"unknown CA", tlsRelay.Listener.Addr().String(), otherTunnelCA(t), "example.com", "certificate verification failed for the relay"},
		{"system roots", tlsRelay.Listener.Addr().String(), "", "example.com", "checked against the system's certificate roots"},
		{"other name", tlsRelay.Listener.Addr().String(), selfSigned, "relay.test",
			`certificate verification failed: the relay's certificate is not for "relay.test" (set tunnel.server_name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tun := runAgentTunnel(t, config.Tunnel{Relay: tt.relay, Token: testTunnelToken, Name: "home", CA: tt.ca, ServerName: tt.serverName})
			hearthtest.Eventually(t, fmt.Sprintf("LastError containing %q", tt.want), 10*time.Second, func() bool {
				return strings.Contains(tun.State().LastError, tt.want)
			})
			if st := tun.State(); st.Connected || st.Relay != tt.relay {
				t.Errorf("state %+v", st)
			}
		})
	}
}

func TestTunnelStateBeforeRun(t *testing.T) {
	tun, err := agent.NewTunnel(config.Tunnel{Relay: "relay.example.com:7000", Token: testTunnelToken, Name: "home"}, "127.0.0.1:11500", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := tun.State(); st != (agent.TunnelState{Relay: "relay.example.com:7000"}) {
		t.Errorf("state before Run: %+v", st)
	}
}
