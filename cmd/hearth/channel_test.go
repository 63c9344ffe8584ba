package main

import (
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// On the VPS, `hearth channel list` asks the relay of --config on its listen.https, as its
// domain, trusting a brought tls.cert: it asked https://DOMAIN through DNS, with the system's
// roots only, so it failed on a private CA, a listen.https off :443, or a VPS that cannot
// reach its own public address.
func TestChannelAsksTheRelayOnThisMachine(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/admin/v1/channels" || r.Header.Get("Authorization") != "Bearer admin-key-0123456789abcdef" || r.Host != "example.com" {
			http.Error(w, fmt.Sprintf("%s %s host %s", r.Method, r.URL.Path, r.Host), http.StatusForbidden)
			return
		}
		fmt.Fprint(w, `{"channels":[{"name":"home","type":"home","state":"closed"}]}`)
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	cert := filepath.Join(dir, "chain.pem")
	// httptest's certificate names example.com and is its own issuer: a brought one, privately signed.
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	cfg := filepath.Join(dir, "relay.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, `listen: { https: %q, http: "127.0.0.1:0" }
domains: ["example.com"]
tls: { cert: %q, key: %q }
tunnel: { bind: "127.0.0.1:0", token: "tunnel-token-0123456789abcdef" }
db: %q
admin_key: "admin-key-0123456789abcdef"
`, srv.Listener.Addr().String(), cert, filepath.Join(dir, "key.pem"), filepath.Join(dir, "relay.db")), 0o644)
	t.Setenv("HEARTH_ADMIN_KEY", "")

	out, err := run("channel", "list", "--config", cfg)
	if err != nil || !strings.Contains(out, "home") || !strings.Contains(out, "closed") {
		t.Errorf("channel list: %v\n%s", err, out)
	}
}
