package doctor

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/internal/ollamasim"
)

func want(t *testing.T, c Check, ok bool, say string) {
	t.Helper()
	if c.OK != ok || !strings.Contains(c.Say, say) {
		t.Errorf("%s: ok %v %q, want ok %v and %q", c.Name, c.OK, c.Say, ok, say)
	}
}

func TestDNSCheck(t *testing.T) {
	addrs := func(ips ...string) func() ([]net.Addr, error) {
		return func() ([]net.Addr, error) {
			var out []net.Addr
			for _, ip := range ips {
				out = append(out, &net.IPNet{IP: net.ParseIP(ip), Mask: net.CIDRMask(24, 32)})
			}
			return out, nil
		}
	}
	resolves := func(ips ...string) func(context.Context, string) ([]string, error) {
		return func(context.Context, string) ([]string, error) { return ips, nil }
	}
	ctx := t.Context()
	want(t, Env{LookupHost: resolves("203.0.113.5"), InterfaceAddrs: addrs("127.0.0.1", "203.0.113.5")}.complete().dnsCheck(ctx, "ai.example.com"),
		true, "ai.example.com points at this machine (203.0.113.5).")
	want(t, Env{LookupHost: resolves("198.51.100.7"), InterfaceAddrs: addrs("10.0.0.4"), PublicAddr: "198.51.100.7"}.complete().dnsCheck(ctx, "ai.example.com"),
		true, "points at this machine (198.51.100.7)")
	want(t, Env{LookupHost: resolves("198.51.100.7"), InterfaceAddrs: addrs("203.0.113.5")}.complete().dnsCheck(ctx, "ai.example.com"),
		false, "ai.example.com resolves to 198.51.100.7, which is not an address of this machine (203.0.113.5): point its A/AAAA record here")
	nx := func(context.Context, string) ([]string, error) {
		return nil, &net.DNSError{Err: "no such host", Name: "ai.example.com", IsNotFound: true}
	}
	want(t, Env{LookupHost: nx, InterfaceAddrs: addrs("203.0.113.5")}.complete().dnsCheck(ctx, "ai.example.com"),
		false, "ai.example.com does not resolve (lookup ai.example.com: no such host): create an A (and AAAA) record")
}

func TestPortCheck(t *testing.T) {
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	freeAddr := free.Addr().String()
	free.Close()
	want(t, Env{}.complete().portCheck("listen.https", freeAddr), true, freeAddr+" (listen.https) is free")

	busy := func(string, string) (net.Listener, error) {
		return nil, errors.New("listen tcp :443: bind: address already in use")
	}
	holder := func(name string) func(int) string { return func(int) string { return name } }
	want(t, Env{Listen: busy, PortHolder: holder("hearth (pid 812)")}.complete().portCheck("listen.https", ":443"), true, ":443 (listen.https) is held by hearth (pid 812).")
	want(t, Env{Listen: busy, PortHolder: holder("nginx (pid 90)")}.complete().portCheck("listen.https", ":443"), false,
		":443 (listen.https) is held by nginx (pid 90), not hearth: stop that program or change listen.https.")
	want(t, Env{Listen: busy, PortHolder: holder("")}.complete().portCheck("tunnel.bind", ":7000"), false, "run `sudo hearth doctor` to name it")
	denied := func(string, string) (net.Listener, error) {
		return nil, errors.New("listen tcp :80: bind: permission denied")
	}
	want(t, Env{Listen: denied, PortHolder: holder("")}.complete().portCheck("listen.http", ":80"), false, "may not bind ports below 1024")
}

func TestProcPortHolderFindsThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp: not Linux")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	// Counted as another program when self is some other file: named by its comm.
	if got, want := portHolder(port, "/bin/sh"), fmt.Sprintf("doctor.test (pid %d)", os.Getpid()); got != want {
		t.Errorf("holder of port %d: %q, want %q", port, got, want)
	}
	notHearth := Env{PortHolder: func(p int) string { return portHolder(p, "/bin/sh") }}.complete().portCheck("node.listen", ln.Addr().String())
	if notHearth.OK || !strings.Contains(notHearth.Say, fmt.Sprintf("pid %d), not hearth", os.Getpid())) {
		t.Errorf("a port held by another program: %+v", notHearth)
	}
	// The doctor's own executable is hearth whatever it is called (here doctor.test).
	exe, _ := os.Executable()
	if got, want := procPortHolder(port), fmt.Sprintf("hearth (pid %d, %s)", os.Getpid(), exe); got != want {
		t.Errorf("holder of port %d: %q, want %q", port, got, want)
	}
	if got := (Env{}).complete().portCheck("node.listen", ln.Addr().String()); !got.OK {
		t.Errorf("a port held by this executable: %+v", got)
	}
}

// A hearth is known by its executable, not by its process name being exactly "hearth".
func TestIsHearth(t *testing.T) {
	for _, tt := range []struct {
		comm, exe string
		same      bool
		want      bool
	}{
		{"hearth", "/usr/bin/hearth", false, true},
		{"hearth-linux-am", "/opt/hearth-linux-amd64", false, true}, // comm is cut at 15 bytes
		{"hearth-dev", "/usr/local/bin/hearth-dev", false, true},
		{"hearth", "/usr/bin/hearth (deleted)", false, true}, // replaced by an upgrade
		{"main", "/tmp/go-build1/b001/exe/main", true, true}, // `go run`: the doctor's own file
		{"nginx", "/usr/sbin/nginx", false, false},
		{"caddy", "", false, false}, // another user's process: exe unreadable
	} {
		if got := isHearth(tt.comm, tt.exe, tt.same); got != tt.want {
			t.Errorf("isHearth(%q, %q, %v) = %v, want %v", tt.comm, tt.exe, tt.same, got, tt.want)
		}
	}
}

func TestCertCheck(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	env := Env{}.complete()
	good, _ := hearthtest.WriteCert(t, dir, now.Add(-time.Hour), now.Add(60*24*time.Hour), "ai.example.com")
	byo := func(f string) config.Relay { return config.Relay{TLS: config.TLSFiles{Cert: f, Key: "k"}} }
	want(t, certCheck(byo(good), "ai.example.com", env), true, "the certificate for ai.example.com from test CA ai.example.com is valid until")
	want(t, certCheck(byo(good), "other.example.com", env), false, "does not cover other.example.com (it names ai.example.com)")
	old, _ := hearthtest.WriteCert(t, t.TempDir(), now.Add(-90*24*time.Hour), now.Add(-time.Hour), "ai.example.com")
	want(t, certCheck(byo(old), "ai.example.com", env), false, "the certificate for ai.example.com expired on")
	// A brought certificate is the user's to renew: no "renewal is overdue; see the relay's log".
	want(t, certCheck(byo(old), "ai.example.com", env), false, "put a renewed certificate in "+old+" (tls.cert)")
	soon, _ := hearthtest.WriteCert(t, t.TempDir(), now.Add(-80*24*time.Hour), now.Add(3*24*time.Hour), "ai.example.com")
	want(t, certCheck(byo(soon), "ai.example.com", env), false, "expires in 2 days")
	want(t, certCheck(byo(soon), "ai.example.com", env), false, "put a renewed certificate in "+soon+" (tls.cert)")

	// ACME: certmagic's storage layout, certificates/<issuer>/<name>/<name>.crt.
	storage := t.TempDir()
	acme := config.Relay{ACME: config.ACME{Storage: storage}}
	want(t, certCheck(acme, "ai.example.com", env), false, "no certificate for ai.example.com in "+storage+" yet")
	site := filepath.Join(storage, certmagic.StorageKeys.SiteCert("acme-v02.api.letsencrypt.org-directory", "ai.example.com"))
	os.MkdirAll(filepath.Dir(site), 0o700)
	data, _ := os.ReadFile(good)
	os.WriteFile(site, data, 0o600)
	want(t, certCheck(acme, "ai.example.com", env), true, "valid until")
	want(t, certCheck(acme, "AI.Example.com", env), true, "valid until") // certmagic keeps names lower-cased
}

// tlsServer serves h over HTTPS with a certificate for name, trusted through the returned file.
func tlsServer(t *testing.T, name string, h http.Handler) (addr, caFile string) {
	t.Helper()
	caFile, keyFile := hearthtest.WriteCert(t, t.TempDir(), time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), name)
	pair, err := tls.LoadX509KeyPair(caFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), caFile
}

func TestRelayTunnelCheck(t *testing.T) {
	online, since := false, ""
	addr, caFile := tlsServer(t, "relay.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "relay.test" || r.Header.Get("Authorization") != "Bearer admin-0123456789abcdef" || r.URL.Path != "/admin/v1/agents" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"home":{"name":"home","online":%v%s},"sites":[]}`, online, since)
	}))
	cfg := config.Relay{Domains: []string{"relay.test"}, TLS: config.TLSFiles{Cert: caFile}, Listen: config.RelayListen{HTTPS: addr},
		Tunnel: config.RelayTunnel{Bind: ":7000"}, AdminKey: "admin-0123456789abcdef"}
	now := time.Date(2026, 12, 3, 17, 2, 30, 0, time.UTC)
	env := Env{Now: func() time.Time { return now }}.complete()
	want(t, env.relayTunnelCheck(t.Context(), cfg), false, `no home agent is connected as "home": start `+"`hearth agent`"+` at home with tunnel.relay relay.test:7000`)
	online, since = true, `,"since":"2026-12-03T14:02:00Z"`
	want(t, env.relayTunnelCheck(t.Context(), cfg), true, `the home agent "home" is connected through the tunnel since 14:02, 3 h ago.`)
	since = `,"since":"2026-11-29T09:15:00Z"`
	want(t, env.relayTunnelCheck(t.Context(), cfg), true, `the home agent "home" is connected through the tunnel since 2026-11-29 09:15, 4 days ago.`)
	since = "" // a relay from before the since field
	want(t, env.relayTunnelCheck(t.Context(), cfg), true, `the home agent "home" is connected through the tunnel (this relay does not say since when`)
	cfg.AdminKey = "wrong-0123456789abcdef"
	want(t, env.relayTunnelCheck(t.Context(), cfg), false, "answered GET /admin/v1/agents with 401 Unauthorized: is admin_key the running relay's?")
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	cfg.Listen.HTTPS = closed.Addr().String()
	closed.Close()
	want(t, env.relayTunnelCheck(t.Context(), cfg), false, "the relay does not answer on "+cfg.Listen.HTTPS)
}

func TestOllamaCheck(t *testing.T) {
	sim := ollamasim.New(ollamasim.Config{Version: "0.12.3"})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	env := Env{}.complete()
	want(t, env.ollamaCheck(t.Context(), sim.URL()), true, "Ollama 0.12.3 answers at "+sim.URL()+".")
	other := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(other.Close)
	want(t, env.ollamaCheck(t.Context(), other.URL), false, "answered GET /api/version with 404 Not Found, not as Ollama does")
	other.Close()
	want(t, env.ollamaCheck(t.Context(), other.URL), false, "Ollama does not answer at "+other.URL)
	want(t, env.ollamaCheck(t.Context(), ""), true, "serves no models")
}

func TestViewChecks(t *testing.T) {
	view := func(js string) clusterView {
		var v clusterView
		if err := json.Unmarshal([]byte(js), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	self := func(storage string) clusterView {
		s := ""
		if storage != "" {
			s = `,"storage":` + storage
		}
		return view(`{"self":"gpu","nodes":[{"name":"gpu","self":true` + s + `}]}`)
	}
	want(t, storageCheck(self("")), true, "no shared models directory is configured")
	want(t, storageCheck(self(`{"dir":"/mnt/nas/models","required":true,"mounted":true,"fs_type":"nfs4","healthy":true,"checked_at":"2026-12-03T07:00:00Z"}`)),
		true, "/mnt/nas/models is mounted (nfs4) and answers.")
	want(t, storageCheck(self(`{"dir":"/mnt/nas/models","required":true,"mounted":false,"healthy":false}`)), false, "/mnt/nas/models is not mounted yet")
	want(t, storageCheck(self(`{"dir":"/mnt/nas/models","required":true,"mounted":true,"fs_type":"nfs4","healthy":false,"error":"stat took longer than 5s"}`)),
		false, "/mnt/nas/models (nfs4) is not healthy: stat took longer than 5s.")
	want(t, storageCheck(self(`false`)), false, "unhealthy")

	on := config.Agent{Cluster: config.Cluster{Bind: "0.0.0.0:7946"}}
	joined := config.Agent{Cluster: config.Cluster{Bind: "0.0.0.0:7946", Join: []string{"nas.lan:7946"}}}
	two := view(`{"self":"gpu","nodes":[{"name":"gpu","self":true},{"name":"nas"}]}`)
	want(t, peersCheck(joined, two), true, "1 peer(s) seen: nas.")
	want(t, peersCheck(joined, self("")), false, "no peer seen though cluster.join names nas.lan:7946")
	want(t, peersCheck(on, self("")), true, "no other node has joined yet")
	want(t, peersCheck(config.Agent{}, self("")), true, "the cluster is off")

	now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	tun := config.Agent{Tunnel: config.Tunnel{Relay: "ai.example.com:7000"}}
	want(t, tunnelCheck(tun, view(`{"self":"gpu","tunnel":{"relay":"ai.example.com:7000","connected":true,"since":"2026-12-03T07:30:00Z"}}`), now),
		true, "connected to the relay ai.example.com:7000 since 07:30, 30 min ago.")
	want(t, tunnelCheck(tun, view(`{"self":"gpu","tunnel":{"relay":"ai.example.com:7000","connected":false,"last_error":"the relay refused the tunnel token"}}`), now),
		false, "not connected to the relay ai.example.com:7000: the relay refused the tunnel token.")
	want(t, tunnelCheck(tun, view(`{"self":"gpu"}`), now), false, "holds no tunnel")
}

func TestConnectedSince(t *testing.T) {
	now := time.Date(2026, 12, 3, 17, 2, 30, 0, time.UTC)
	cet := now.In(time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		since, now time.Time
		want       string
	}{
		{now.Add(-20 * time.Second), now, "since 17:02, 20 s ago"},
		{now.Add(-25 * time.Minute), now, "since 16:37, 25 min ago"},
		{time.Date(2026, 12, 2, 23, 0, 0, 0, time.UTC), now, "since 2026-12-02 23:00, 18 h ago"},
		{now.Add(-3 * 24 * time.Hour), now, "since 2026-11-30 17:02, 3 days ago"},
		// In this machine's time zone, though the relay answers in UTC.
		{time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC), cet, "since 16:00, 2 h ago"},
	} {
		if got := connectedSince(tc.since, tc.now); got != tc.want {
			t.Errorf("connectedSince(%v, %v) = %q, want %q", tc.since, tc.now, got, tc.want)
		}
	}
}

func TestReportWrite(t *testing.T) {
	r := Report{Role: "agent", Checks: []Check{{Name: "ollama", OK: true, Say: "Ollama 0.12.3 answers."}, {Name: "tunnel", Say: "not connected."}}}
	var b bytes.Buffer
	r.Write(&b)
	if want := "ok   ollama       Ollama 0.12.3 answers.\nFAIL tunnel       not connected.\nagent: 1 of 2 checks failed.\n"; b.String() != want || r.OK() {
		t.Errorf("report %q (OK %v), want %q", b.String(), r.OK(), want)
	}
	// A check that could not be made is shown, and does not fail the report by itself.
	r.Checks[1] = Check{Name: "clock", Warn: true, Say: "cannot check: no reference."}
	b.Reset()
	r.Write(&b)
	if want := "ok   ollama       Ollama 0.12.3 answers.\nwarn clock        cannot check: no reference.\nagent: 1 of 2 checks passed. 1 could not be made (warn).\n"; b.String() != want || !r.OK() {
		t.Errorf("report %q (OK %v), want %q", b.String(), r.OK(), want)
	}
	r.Checks = append(r.Checks, Check{Name: "tunnel", Say: "not connected."})
	b.Reset()
	r.Write(&b)
	if !strings.HasSuffix(b.String(), "agent: 1 of 3 checks failed. 1 could not be made (warn).\n") || r.OK() {
		t.Errorf("report %q (OK %v): a failure fails it, warning or not", b.String(), r.OK())
	}
}
