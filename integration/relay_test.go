package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/hearthlab/hearth/internal/acmetest"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/internal/ollamasim"
	"github.com/hearthlab/hearth/relay"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/usage"
)

const (
	adminKey     = "admin-key-0123456789abcdef"
	relayTunnel  = "tunnel-token-0123456789abcdef"
	relayDomain  = "relay.test"
	siteHost     = "chat.relay.test"
	openSiteHost = "open.relay.test"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return acmetest.Port(t, ln.Addr())
}

// world is a relay with a real ACME certificate from Pebble, an agent connected to it through
// the frp tunnel, and ollamasim behind the agent — all in this process, on 127.0.0.1.
type world struct {
	relay      *relay.Relay
	cfg        config.Relay
	ca         *acmetest.CA
	httpsPort  int
	client     *http.Client // trusts only Pebble's issuer root; relay.test → 127.0.0.1
	token      string
	gate       *gate
	relayLogs  *hearthtest.Logs
	agentLogs  *hearthtest.Logs
	stopAgent  func()
	stopRelay  func()
	agentCfg   config.Agent
	tunnelAddr string
}

// gate sits between the agent and ollamasim: it passes a stream's first chunk and holds the
// rest until the test has seen that chunk at the far end, which proves nothing on the way
// buffers.
type gate struct {
	sim     *ollamasim.Server
	mu      sync.Mutex
	release chan struct{}
}

func (g *gate) hold() chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.release = make(chan struct{})
	return g.release
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, g.sim.URL()+r.URL.RequestURI(), r.Body)
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	// Only a generation takes the hold: the agent's polls of /api/tags and /api/ps pass by.
	var release chan struct{}
	if r.Method == http.MethodPost {
		g.mu.Lock()
		release, g.release = g.release, nil
		g.mu.Unlock()
	}
	br := bufio.NewReader(resp.Body)
	for first := true; ; first = false {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			_, _ = w.Write(line)
			w.(http.Flusher).Flush()
		}
		if err != nil {
			return
		}
		if first && release != nil && strings.HasPrefix(string(line), "data:") {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
	}
}

func startWorld(t *testing.T, challenge string, tweaks ...func(*config.Relay)) *world {
	t.Helper()
	hearthtest.CheckGoroutines(t, hearthtest.Hearth) // first: its check runs after every other cleanup
	w := &world{relayLogs: &hearthtest.Logs{}, agentLogs: &hearthtest.Logs{}}
	httpPort := freePort(t)
	w.httpsPort = freePort(t)
	w.ca = acmetest.Start(t, acmetest.Options{HTTPPort: httpPort, TLSPort: w.httpsPort})

	dir := t.TempDir()
	cfg := config.DefaultRelay()
	cfg.Listen = config.RelayListen{HTTPS: fmt.Sprintf("127.0.0.1:%d", w.httpsPort), HTTP: fmt.Sprintf("127.0.0.1:%d", httpPort)}
	cfg.Domains = []string{relayDomain}
	cfg.ACME = config.ACME{CA: w.ca.DirectoryURL, CARoot: w.ca.ServerRootFile, Storage: filepath.Join(dir, "certs"), Challenges: []string{challenge}}
	cfg.Tunnel = config.RelayTunnel{Bind: "127.0.0.1:0", Token: relayTunnel, Home: "home"}
	cfg.DB = filepath.Join(dir, "relay.db")
	cfg.AdminKey = adminKey
	for _, tweak := range tweaks {
		tweak(&cfg)
	}
	rl, stop := runRelay(t, cfg, w.relayLogs)
	w.relay, w.cfg, w.stopRelay = rl, cfg, stop
	w.tunnelAddr = rl.TunnelAddr().String()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("relay log:\n%s\nagent log:\n%s", w.relayLogs, w.agentLogs)
		}
	})

	w.client = &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: w.ca.RootPool()},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", w.httpsPort))
		},
	}}
	t.Cleanup(w.client.CloseIdleConnections)
	hearthtest.Eventually(t, "a certificate for relay.test from Pebble", 60*time.Second, func() bool {
		resp, err := w.client.Get("https://" + relayDomain + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	secret, _, err := rl.Store().Create(t.Context(), tokens.Spec{Name: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	w.token = secret

	sim := ollamasim.New(ollamasim.Config{Models: []ollamasim.Model{{Name: "tiny"}}, Parallel: 4, Tokens: 6})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	w.gate = &gate{sim: sim}
	gateSrv := httptest.NewServer(w.gate)
	t.Cleanup(gateSrv.Close)

	caFile := filepath.Join(dir, "pebble-issuer.pem")
	if err := os.WriteFile(caFile, w.ca.IssuerRootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	acfg := config.DefaultAgent()
	acfg.Node.Name = "home-node"
	acfg.Node.Listen = "127.0.0.1:0"
	acfg.Ollama.URL = gateSrv.URL
	acfg.Tunnel = config.Tunnel{Relay: w.tunnelAddr, Token: relayTunnel, Name: "home", CA: caFile, ServerName: relayDomain}
	w.agentCfg = acfg
	w.startAgent(t)
	hearthtest.Eventually(t, "the home channel online", 30*time.Second, func() bool { return w.homeOnline(t) })
	return w
}

func (w *world) startAgent(t *testing.T) {
	t.Helper()
	w.stopAgent = runAgent(t, w.agentCfg, w.agentLogs).stop
}

// runRelay builds a relay from cfg, logging to logs, and runs it until the test ends or stop
// is called: the one way the integration tests start a relay.
func runRelay(t *testing.T, cfg config.Relay, logs io.Writer) (*relay.Relay, func()) {
	t.Helper()
	rl, err := relay.New(cfg, "", slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	return rl, hearthtest.Run(t, "relay", rl.Run)
}

func (w *world) homeOnline(t *testing.T) bool {
	resp, body := w.do(t, http.MethodGet, "/admin/v1/agents", "", "Bearer "+adminKey)
	return resp.StatusCode == 200 && strings.Contains(body, `"online":true`)
}

func (w *world) do(t *testing.T, method, path, body, auth string) (*http.Response, string) {
	t.Helper()
	resp := w.open(t, method, path, body, auth)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// open sends a request and returns the answer with its body unread (a stream, say); the
// caller closes it.
func (w *world) open(t *testing.T, method, path, body, auth string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+relayDomain+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// TestRelayEndToEnd: a phone's HTTPS client, trusting only Pebble's root, streams a chat from
// https://relay.test through the frp tunnel, the agent and its backend, chunk by chunk.
func TestRelayEndToEnd(t *testing.T) {
	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) {
			w := startWorld(t, challenge)

			release := w.gate.hold()
			resp := w.open(t, http.MethodPost, "/v1/chat/completions", `{"model":"tiny","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "Bearer "+w.token)
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("X-Hearth-Node") != "home-node" {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d node %q: %s", resp.StatusCode, resp.Header.Get("X-Hearth-Node"), b)
			}
			for _, h := range []string{"Strict-Transport-Security", "X-Content-Type-Options", "Content-Security-Policy", "Referrer-Policy"} {
				if resp.Header.Get(h) == "" {
					t.Errorf("response lacks %s", h)
				}
			}
			if resp.TLS == nil || resp.TLS.PeerCertificates[0].Issuer.CommonName == "" || !strings.Contains(resp.TLS.PeerCertificates[0].DNSNames[0], relayDomain) {
				t.Errorf("certificate: %+v", resp.TLS.PeerCertificates[0].DNSNames)
			}
			lines := make(chan string)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			select {
			case first := <-lines:
				if !strings.HasPrefix(first, "data: ") {
					t.Fatalf("first line %q", first)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the first chunk did not reach the phone while the backend held the rest: something buffers")
			}
			close(release)
			events, done := 1, false
			for l := range lines {
				if strings.HasPrefix(l, "data: ") {
					events++
					done = done || l == "data: [DONE]"
				}
			}
			if events < 4 || !done {
				t.Errorf("stream: %d events, [DONE] %v", events, done)
			}
		})
	}
}

// TestRelayAgentStopLetsAStreamFinish: an agent told to stop (systemctl restart, an upgrade)
// while a phone's answer streams through the tunnel lets that answer finish. The tunnel used
// to close with the agent's context, before the API's grace period, so the phone got
// "stream_interrupted" at once.
func TestRelayAgentStopLetsAStreamFinish(t *testing.T) {
	w := startWorld(t, "http-01")

	release := w.gate.hold()
	resp := w.open(t, http.MethodPost, "/v1/chat/completions", `{"model":"tiny","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "Bearer "+w.token)
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if first, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(first, "data: ") {
		t.Fatalf("status %d, first line %q: %v", resp.StatusCode, first, err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		w.stopAgent()
	}()
	hearthtest.Eventually(t, "the agent stopping", 10*time.Second, func() bool {
		return strings.Contains(w.agentLogs.String(), "stopping: answers in flight may finish")
	})
	// The API takes no new connections once it drains; the tunnel, which carries this
	// stream, must still be up.
	api := agentListen(t, w.agentLogs.String())
	hearthtest.Eventually(t, "the agent's API refusing new connections", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", api)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	// The relay sends nothing new home (the home channel is withdrawn: home_offline at once,
	// or a vendor), while the stream in flight goes on over the session.
	hearthtest.Eventually(t, "the relay to see home withdrawn", 10*time.Second, func() bool { return !w.homeOnline(t) })
	if resp, body := w.do(t, http.MethodPost, "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"hi"}]}`, "Bearer "+w.token); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "home_offline") {
		t.Errorf("a new request while home drains: %d %s, want 503 home_offline", resp.StatusCode, body)
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || !strings.Contains(string(rest), "data: [DONE]") || strings.Contains(string(rest), "stream_interrupted") {
		t.Errorf("the rest of the stream after the agent began to stop (%v):\n%s", err, rest)
	}
	<-stopped
}

// agentListen is the API address the agent logged when it started.
func agentListen(t *testing.T, log string) string {
	t.Helper()
	m := regexp.MustCompile(`"msg":"hearth agent serving[^\n]*"listen":"([^"]+)"`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no \"hearth agent serving\" line with its listen address in the agent log:\n%s", log)
	}
	return m[1]
}

func TestRelayAuthAndHomeOffline(t *testing.T) {
	w := startWorld(t, "http-01")

	tests := []struct {
		name, path, body, auth string
		status                 int
		want                   string
	}{
		{"no token", "/v1/models", "", "", 401, "create one with `hearth token create --name NAME`"},
		{"wrong token", "/api/tags", "", "Bearer hth_wrong", 401, ""},
		{"admin route with a token", "/admin/v1/tokens", "", "Bearer " + w.token, 403, "this route needs the admin key"},
		{"tags through the tunnel", "/api/tags", "", "Bearer " + w.token, 200, `"name":"tiny:latest"`},
		{"unknown model from home", "/api/chat", `{"model":"nope"}`, "Bearer " + w.token, 404, "not found"},
	}
	for _, tt := range tests {
		resp, body := w.do(t, http.MethodGet, tt.path, tt.body, tt.auth)
		if tt.body != "" {
			resp, body = w.do(t, http.MethodPost, tt.path, tt.body, tt.auth)
		}
		if resp.StatusCode != tt.status || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d %s", tt.name, resp.StatusCode, body)
		}
	}

	// A token limited to other models is refused before anything goes home.
	limited, _, err := w.relay.Store().Create(t.Context(), tokens.Spec{Name: "kid", Models: []string{"qwen3:*"}})
	if err != nil {
		t.Fatal(err)
	}
	resp, body := w.do(t, http.MethodPost, "/api/chat", `{"model":"tiny"}`, "Bearer "+limited)
	if resp.StatusCode != 403 || !strings.Contains(body, "tiny") {
		t.Errorf("model not allowed: %d %s", resp.StatusCode, body)
	}

	// Admin API: create, list (no secret), revoke.
	resp, body = w.do(t, http.MethodPost, "/admin/v1/tokens", `{"name":"laptop","expires":"30d"}`, "Bearer "+adminKey)
	var created struct {
		Secret string `json:"secret"`
	}
	if resp.StatusCode != 201 || json.Unmarshal([]byte(body), &created) != nil || !strings.HasPrefix(created.Secret, "hth_") {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	if _, list := w.do(t, http.MethodGet, "/admin/v1/tokens", "", "Bearer "+adminKey); !strings.Contains(list, `"laptop"`) || strings.Contains(list, created.Secret) {
		t.Errorf("list: %s", list)
	}
	if resp, _ := w.do(t, http.MethodDelete, "/admin/v1/tokens/laptop", "", "Bearer "+adminKey); resp.StatusCode != 204 {
		t.Errorf("revoke: %d", resp.StatusCode)
	}
	if resp, body := w.do(t, http.MethodGet, "/api/tags", "", "Bearer "+created.Secret); resp.StatusCode != 401 || !strings.Contains(body, "revoked") {
		t.Errorf("revoked token: %d %s", resp.StatusCode, body)
	}

	// The agent goes away: the relay answers 503 in the caller's dialect, at once.
	w.stopAgent()
	hearthtest.Eventually(t, "home offline", 10*time.Second, func() bool { return !w.homeOnline(t) })
	for _, tc := range []struct{ path, want string }{
		{"/v1/chat/completions", `"code":"home_offline"`},
		{"/api/chat", `{"error":"home is offline`},
	} {
		start := time.Now()
		resp, body := w.do(t, http.MethodPost, tc.path, `{"model":"tiny"}`, "Bearer "+w.token)
		t.Logf("%s answered %d in %s with home offline", tc.path, resp.StatusCode, time.Since(start))
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, tc.want) {
			t.Errorf("%s with home offline: %d %s", tc.path, resp.StatusCode, body)
		}
	}
	if strings.Contains(w.relayLogs.String(), w.token) || strings.Contains(w.relayLogs.String(), adminKey) {
		t.Error("a secret reached the relay's log")
	}
}

// TestRelaySites: an exposed home app with WebSocket, behind a token, on its own host and
// certificate; and one without auth.
func TestRelaySites(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			websocket.Handler(func(c *websocket.Conn) { _, _ = io.Copy(c, c) }).ServeHTTP(rw, r)
			return
		}
		if _, err := r.Cookie("__Host-hearth_token"); err == nil {
			http.Error(rw, "the relay's cookie reached the app", 500)
			return
		}
		fmt.Fprintf(rw, "home app: %s %s auth=%q", r.Method, r.URL.Path, r.Header.Get("Authorization"))
	}))
	t.Cleanup(echo.Close)

	w := startWorld(t, "tls-alpn-01")
	w.stopAgent()
	app := strings.TrimPrefix(echo.URL, "http://")
	w.agentCfg.Tunnel.Expose = []config.Expose{
		{Name: "webui", Local: app, Host: siteHost, Auth: "token"},
		{Name: "open", Local: app, Host: openSiteHost, Auth: "none"},
	}
	w.startAgent(t)
	site := func(host, path, auth string, accept string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+host+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		c := *w.client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := c.Do(req)
		if err != nil {
			return nil, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	hearthtest.Eventually(t, "site certificates and routes", 60*time.Second, func() bool {
		resp, _ := site(openSiteHost, "/", "", "")
		resp2, _ := site(siteHost, "/", "Bearer "+w.token, "")
		return resp != nil && resp.StatusCode == 200 && resp2 != nil && resp2.StatusCode == 200
	})
	if resp, body := site(openSiteHost, "/hello", "", ""); resp.StatusCode != 200 || !strings.Contains(body, "home app: GET /hello") {
		t.Errorf("open site: %d %s", resp.StatusCode, body)
	}
	if resp, body := site(siteHost, "/x", "Bearer "+w.token, ""); resp.StatusCode != 200 || !strings.Contains(body, `auth=""`) {
		t.Errorf("site with a token: %d %s (the relay token must not reach the app)", resp.StatusCode, body)
	}
	if resp, _ := site(siteHost, "/x", "", "text/html"); resp.StatusCode != 303 || !strings.HasPrefix(resp.Header.Get("Location"), "/.hearth/login?next=") {
		t.Errorf("browser without a token: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := site(siteHost, "/x", "", ""); resp.StatusCode != 401 {
		t.Errorf("API client without a token: %d", resp.StatusCode)
	}

	// Sign in with the form: the cookie then opens the app.
	form := strings.NewReader("token=" + w.token + "&next=/after")
	req, _ := http.NewRequest(http.MethodPost, "https://"+siteHost+"/.hearth/login", form)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	c := *w.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/after" || len(cookies) != 1 || !cookies[0].Secure || !cookies[0].HttpOnly {
		t.Fatalf("sign-in: %d %q %+v", resp.StatusCode, resp.Header.Get("Location"), cookies)
	}
	req, _ = http.NewRequest(http.MethodGet, "https://"+siteHost+"/after", nil)
	req.AddCookie(cookies[0])
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "home app: GET /after") {
		t.Errorf("with the cookie: %d %s", resp.StatusCode, b)
	}

	// WebSocket through relay and tunnel, with the token.
	wsCfg, _ := websocket.NewConfig("wss://"+siteHost+"/ws", "https://"+siteHost)
	wsCfg.TlsConfig = &tls.Config{RootCAs: w.ca.RootPool(), ServerName: siteHost}
	wsCfg.Header = http.Header{"Authorization": {"Bearer " + w.token}}
	raw, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", w.httpsPort), wsCfg.TlsConfig)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(wsCfg, raw)
	if err != nil {
		t.Fatalf("websocket through the relay: %v", err)
	}
	defer ws.Close()
	for _, msg := range []string{"hello", "from the phone"} {
		var got string
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		if err := websocket.Message.Receive(ws, &got); err != nil || got != msg {
			t.Fatalf("echo: %q %v", got, err)
		}
	}
}

// A stream still running when the relay stops is cut after the grace period; what it served
// is still written to the usage log before the store closes (the grace period's context is
// spent by then, and the handler records only once the cut reaches it). The stream comes
// from a vendor, which, unlike the tunnel home, the relay's stop does not cut by itself.
func TestRelayStopRecordsAStreamCutAtShutdown(t *testing.T) {
	held := make(chan struct{})
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, `data: {"id":"1","object":"chat.completion.chunk","model":"vendor-model","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		select { // the rest never comes: the relay must cut it
		case <-r.Context().Done():
		case <-held:
		}
	}))
	t.Cleanup(vendor.Close)
	t.Cleanup(func() { close(held) })
	w := startWorld(t, "http-01", func(cfg *config.Relay) {
		cfg.Channels = append(cfg.Channels, config.Channel{Name: "vendor", Type: "openai", BaseURL: vendor.URL, Key: "sk-vendor", Models: []string{"vendor-model"}})
	})
	w.relay.SetShutdownGrace(300 * time.Millisecond)

	resp := w.open(t, http.MethodPost, "/v1/chat/completions", `{"model":"vendor-model","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "Bearer "+w.token)
	defer resp.Body.Close()
	if first, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || !strings.HasPrefix(first, "data: ") {
		t.Fatalf("status %d, first line %q: %v", resp.StatusCode, first, err)
	}
	w.stopRelay()

	store, err := tokens.Open(w.cfg.DB, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	usage, err := usage.New(store, w.cfg.Usage, w.cfg.Prices, nil)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := usage.Summary(t.Context(), "channel", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Key != "vendor" || rows[0].Requests != 1 {
		t.Fatalf("usage after the stop: %+v, want the cut stream's record", rows)
	}
	if strings.Contains(w.relayLogs.String(), "usage records lost") {
		t.Errorf("relay log:\n%s", w.relayLogs)
	}
}

// What a vendor could not take (fill-in-the-middle's suffix) goes home untouched when home
// is on: only the vendor path refuses it.
func TestRelayHomeTakesWhatAVendorCannot(t *testing.T) {
	w := startWorld(t, "http-01")
	resp, body := w.do(t, http.MethodPost, "/api/generate", `{"model":"tiny","prompt":"def f(","suffix":"return 1","stream":false}`, "Bearer "+w.token)
	if resp.StatusCode != 200 || resp.Header.Get("X-Hearth-Node") != "home-node" || !strings.Contains(body, `"done":true`) {
		t.Fatalf("%d from %q: %s", resp.StatusCode, resp.Header.Get("X-Hearth-Node"), body)
	}
}

// A client that sends headers and then stalls in the body (Slowloris) is cut after
// limits.read_timeout instead of holding a connection, with or without a token; a stream
// that answers for longer than that is not.
func TestRelayCutsAStalledSender(t *testing.T) {
	w := startWorld(t, "http-01", func(cfg *config.Relay) { cfg.Limits.ReadTimeout = time.Second })
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", w.httpsPort), &tls.Config{RootCAs: w.ca.RootPool(), ServerName: relayDomain})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"model\":", relayDomain, w.token)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(conn) // whatever the relay says, it must end the connection
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the relay still held the stalled connection after %s", time.Since(start).Round(time.Second))
	}

	// A stream held longer than read_timeout still arrives whole.
	release := w.gate.hold()
	resp := w.open(t, http.MethodPost, "/v1/chat/completions", `{"model":"tiny","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "Bearer "+w.token)
	defer resp.Body.Close()
	time.AfterFunc(2*time.Second, func() { close(release) })
	body, err := io.ReadAll(resp.Body)
	if err != nil || !strings.Contains(string(body), "data: [DONE]") {
		t.Fatalf("stream held past read_timeout: %v\n%s", err, body)
	}
}
