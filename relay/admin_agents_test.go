package relay_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearthlab/hearth/agent"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/relay"
)

type agentsAnswer struct {
	Home struct {
		Name   string     `json:"name"`
		Online bool       `json:"online"`
		Since  *time.Time `json:"since"`
	} `json:"home"`
}

// TestAdminAgentsSaysSinceWhen: GET /admin/v1/agents says whether the home agent is connected
// through the tunnel and since when, and drops the time once it has gone.
func TestAdminAgentsSaysSinceWhen(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := hearthtest.WriteCert(t, dir, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), relayDomain)
	cfg := config.DefaultRelay()
	cfg.Domains = []string{relayDomain}
	cfg.TLS = config.TLSFiles{Cert: certFile, Key: keyFile}
	cfg.Listen = config.RelayListen{HTTPS: "127.0.0.1:0"}
	cfg.Tunnel = config.RelayTunnel{Bind: "127.0.0.1:0", Token: relayTunnel, Home: "home"}
	cfg.DB, cfg.AdminKey = filepath.Join(dir, "relay.db"), adminKey
	var logs hearthtest.Logs
	rl, err := relay.New(cfg, "", logs.Logger())
	if err != nil {
		t.Fatal(err)
	}
	hearthtest.Run(t, "relay", rl.Run)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})

	pool := x509.NewCertPool()
	pemBytes, _ := os.ReadFile(certFile)
	pool.AppendCertsFromPEM(pemBytes)
	admin := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, rl.HTTPSAddr().String())
		},
	}}
	t.Cleanup(admin.CloseIdleConnections)
	agents := func() agentsAnswer {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+relayDomain+"/admin/v1/agents", nil)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := admin.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var a agentsAnswer
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &a) != nil {
			t.Fatalf("GET /admin/v1/agents: %s %s", resp.Status, body)
		}
		return a
	}
	if a := agents(); a.Home.Name != "home" || a.Home.Online || a.Home.Since != nil {
		t.Errorf("before home connects: %+v", a.Home)
	}

	api := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(api.Close)
	before := time.Now()
	tun, err := agent.NewTunnel(config.Tunnel{Relay: rl.TunnelAddr().String(), Token: relayTunnel, Name: "home", CA: certFile, ServerName: relayDomain},
		api.Listener.Addr().String(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	stop := hearthtest.Run(t, "agent tunnel", tun.Run)
	var a agentsAnswer
	hearthtest.Eventually(t, "the home channel online", 30*time.Second, func() bool { a = agents(); return a.Home.Online })
	if a.Home.Since == nil || a.Home.Since.Before(before) || a.Home.Since.After(time.Now()) || a.Home.Since.Location() != time.UTC {
		t.Errorf("connected since %v: want a UTC time after %v, when the agent started, and not in the future", a.Home.Since, before)
	}
	stop()
	hearthtest.Eventually(t, "the home channel offline", 30*time.Second, func() bool { a = agents(); return !a.Home.Online })
	if a.Home.Since != nil {
		t.Errorf("offline, yet connected since %v", a.Home.Since)
	}
}
