package relay_test

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/relay"
)

const (
	adminKey    = "admin-key-0123456789abcdef"
	relayTunnel = "tunnel-token-0123456789abcdef"
	relayDomain = "relay.test"
)

// TestRelayNewFailingPartwayStopsWhatItStarted: a relay.New that cannot bind one of its ports
// says which, and leaves nothing behind: certmagic's cache goroutine is stopped, and the
// ports it had bound before the failure are free again.
func TestRelayNewFailingPartwayStopsWhatItStarted(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	dir := t.TempDir()
	base := config.DefaultRelay()
	base.Domains = []string{relayDomain}
	base.ACME = config.ACME{CA: "https://127.0.0.1:1/dir", Storage: filepath.Join(dir, "certs"), Challenges: []string{"tls-alpn-01"}}
	base.Tunnel = config.RelayTunnel{Bind: "127.0.0.1:0", Token: relayTunnel, Home: "home"}
	base.DB, base.AdminKey = filepath.Join(dir, "relay.db"), adminKey

	for _, tc := range []struct {
		name      string
		https     string
		http      string
		wantErr   string
		freeAfter func(c config.Relay) string // a port New bound before it failed
	}{
		{name: "https in use", https: busy.Addr().String(), http: "",
			wantErr: "cannot listen on listen.https " + busy.Addr().String()},
		{name: "http in use", https: free(), http: busy.Addr().String(),
			wantErr:   "cannot listen on listen.http " + busy.Addr().String(),
			freeAfter: func(c config.Relay) string { return c.Listen.HTTPS }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.Listen = config.RelayListen{HTTPS: tc.https, HTTP: tc.http}
			for i := 0; i < 3; i++ {
				rl, err := relay.New(cfg, "", nil)
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					if rl != nil {
						t.Fatalf("New succeeded with a port in use")
					}
					t.Fatalf("New: %v, want %q", err, tc.wantErr)
				}
			}
			if tc.freeAfter != nil {
				ln, err := net.Listen("tcp", tc.freeAfter(cfg))
				if err != nil {
					t.Fatalf("the port New bound before failing is still taken: %v", err)
				}
				ln.Close()
			}
			// Stopping is synchronous; the bounded wait covers goroutines of earlier tests
			// still winding down in the same stacks.
			hearthtest.Eventually(t, "certmagic's cache goroutine to end after a failed New", 5*time.Second, func() bool {
				return len(hearthtest.Goroutines("certmagic.(*Cache)")) == 0
			})
		})
	}
}
