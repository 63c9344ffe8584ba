package agent

import (
	"maps"
	"testing"
	"time"

	v1 "github.com/fatedier/frp/pkg/config/v1"

	"github.com/hearthlab/hearth/internal/config"
)

func TestTunnelProxiesFromConfig(t *testing.T) {
	cfg := config.Tunnel{Name: "nas", Expose: []config.Expose{
		{Name: "webui", Local: "0.0.0.0:3000", Host: "Chat.Example.com", Auth: "none"},
		{Name: "photos", Local: "192.168.1.20:2342", Host: "photos.example.com"},
	}}
	got, err := tunnelProxies(cfg, ":11500")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name, ip string
		port     int
		metas    map[string]string
	}{
		{"home-nas", "127.0.0.1", 11500, map[string]string{"hearth_kind": "home", "hearth_channel": "nas"}},
		{"site-nas.webui", "127.0.0.1", 3000, map[string]string{"hearth_kind": "site", "hearth_channel": "nas",
			"hearth_name": "webui", "hearth_host": "chat.example.com", "hearth_auth": "none"}},
		{"site-nas.photos", "192.168.1.20", 2342, map[string]string{"hearth_kind": "site", "hearth_channel": "nas",
			"hearth_name": "photos", "hearth_host": "photos.example.com", "hearth_auth": "token"}},
	}
	if len(got) != len(want) {
		t.Fatalf("%d proxies, want %d", len(got), len(want))
	}
	for i, w := range want {
		p, ok := got[i].(*v1.TCPProxyConfig)
		if !ok {
			t.Fatalf("proxy %d is %T, want a TCP proxy", i, got[i])
		}
		if p.Name != w.name || p.Type != "tcp" || p.LocalIP != w.ip || p.LocalPort != w.port || p.RemotePort != 0 ||
			!maps.Equal(p.Metadatas, w.metas) {
			t.Errorf("proxy %d = %+v, want %+v", i, p.ProxyBaseConfig, w)
		}
	}
}

func TestTunnelBackoff(t *testing.T) {
	for failures, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 5: 16 * time.Second, 6: 30 * time.Second, 100: 30 * time.Second} {
		if got := backoff(time.Second, failures, 30*time.Second); got != want {
			t.Errorf("backoff after %d failures = %s, want %s", failures, got, want)
		}
	}
}
