package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthlab/hearth/agent"
	"github.com/hearthlab/hearth/internal/acmetest"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/internal/ollamasim"
	"github.com/hearthlab/hearth/relay/tokens"
)

const clusterKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// runningAgent is an agent a test started (runAgent): its gossip address, and how to stop it.
type runningAgent struct {
	gossip string
	stop   func()
}

// runAgent builds an agent from cfg, logging to logs, and runs it until the test ends or its
// stop is called: the one way the integration tests start an agent.
func runAgent(t *testing.T, cfg config.Agent, logs io.Writer) runningAgent {
	t.Helper()
	a, err := agent.New(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), "test")
	if err != nil {
		t.Fatal(err)
	}
	return runningAgent{gossip: a.GossipAddr(), stop: hearthtest.Run(t, "agent "+cfg.Node.Name, a.Run)}
}

func clusterAgent(name, ollamaURL, join string) config.Agent {
	cfg := config.DefaultAgent()
	cfg.Node.Name, cfg.Node.Listen, cfg.Ollama.URL = name, "127.0.0.1:0", ollamaURL
	cfg.Ollama.Parallel, cfg.Ollama.PollInterval = 8, 100*time.Millisecond
	cfg.Cluster = config.Cluster{Bind: "127.0.0.1:0", Secret: clusterKey, Timings: "fast"}
	if join != "" {
		cfg.Cluster.Join = []string{join}
	}
	return cfg
}

// TestGPUPCOff: the only node with qwen3:14b goes away during 200 chats from 20 clients.
// Every request that had not started streaming is served, by the vendor with the mapped
// model when home cannot; usage says so; when the node is back, traffic returns home.
func TestGPUPCOff(t *testing.T) {
	hearthtest.CheckGoroutines(t, hearthtest.Hearth)
	logs := &hearthtest.Logs{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	})
	httpPort, httpsPort := freePort(t), freePort(t)
	ca := acmetest.Start(t, acmetest.Options{HTTPPort: httpPort, TLSPort: httpsPort})
	vendor := hearthtest.NewVendor(t, hearthtest.VendorConfig{Model: "deepseek-chat"})

	dir := t.TempDir()
	cfg := config.DefaultRelay()
	cfg.Listen = config.RelayListen{HTTPS: fmt.Sprintf("127.0.0.1:%d", httpsPort), HTTP: fmt.Sprintf("127.0.0.1:%d", httpPort)}
	cfg.Domains = []string{relayDomain}
	cfg.ACME = config.ACME{CA: ca.DirectoryURL, CARoot: ca.ServerRootFile, Storage: filepath.Join(dir, "certs"), Challenges: []string{"http-01"}}
	cfg.Tunnel = config.RelayTunnel{Bind: "127.0.0.1:0", Token: relayTunnel, Home: "home"}
	cfg.DB, cfg.AdminKey = filepath.Join(dir, "relay.db"), adminKey
	cfg.Limits.RequestsPerMinute = 100000
	const probe = 500 * time.Millisecond
	cfg.Channels = []config.Channel{
		{Name: "home", Type: "home", ProbeInterval: probe},
		{Name: "deepseek", Type: "openai", BaseURL: vendor.URL, Keys: []string{"sk-test"}, Models: []string{"deepseek-chat"}, Priority: 10},
	}
	cfg.Routes = []config.Route{{Model: "qwen3:*", Fallback: []string{"deepseek/deepseek-chat"}}}
	cfg.Usage.FlushInterval = 50 * time.Millisecond
	rl, _ := runRelay(t, cfg, logs)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: ca.RootPool()},
		MaxIdleConnsPerHost: 32,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", httpsPort))
		},
	}}
	t.Cleanup(client.CloseIdleConnections)
	token, _, err := rl.Store().Create(t.Context(), tokens.Spec{Name: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "issuer.pem")
	if err := os.WriteFile(caFile, ca.IssuerRootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}

	// Home: a NAS (routes only, holds the tunnel) and the GPU PC with the model.
	nasCfg := clusterAgent("nas", "", "")
	nasCfg.Tunnel = config.Tunnel{Relay: rl.TunnelAddr().String(), Token: relayTunnel, Name: "home", CA: caFile, ServerName: relayDomain}
	nas := runAgent(t, nasCfg, logs)
	startGPU := func() (runningAgent, *ollamasim.Server) {
		sim := ollamasim.New(ollamasim.Config{Models: []ollamasim.Model{{Name: "qwen3:14b"}}, Parallel: 8, Tokens: 6, TokenDelay: 5 * time.Millisecond})
		if err := sim.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sim.Close)
		return runAgent(t, clusterAgent("gpu-pc", sim.URL(), nas.gossip), logs), sim
	}
	gpu, sim := startGPU()

	chat := func(i int) (channel string, started, ok bool, detail string) {
		req, _ := http.NewRequest(http.MethodPost, "https://"+relayDomain+"/v1/chat/completions",
			strings.NewReader(fmt.Sprintf(`{"model":"qwen3:14b","stream":true,"messages":[{"role":"user","content":"q%d"}]}`, i)))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return "", false, false, err.Error()
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			return "", false, false, fmt.Sprintf("%d %s", resp.StatusCode, b)
		}
		sc := bufio.NewScanner(resp.Body)
		lines, done := 0, false
		for sc.Scan() {
			lines++
			done = done || sc.Text() == "data: [DONE]"
		}
		return resp.Header.Get("X-Hearth-Channel") + "/" + resp.Header.Get("X-Hearth-Model"), lines > 0, done, ""
	}
	hearthtest.Eventually(t, "home serves qwen3:14b", 30*time.Second, func() bool {
		ch, _, ok, _ := chat(-1)
		return ok && ch == "home/qwen3:14b"
	})

	const total, clients = 200, 20
	var failedBeforeStart, cutAfterStart, fromHome, fromVendor, n atomic.Int32
	jobs := make(chan int, total)
	for i := 0; i < total; i++ {
		jobs <- i
	}
	close(jobs)
	var wg sync.WaitGroup
	var firstFailure sync.Once
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if n.Add(1) == total/3 {
					go func() { gpu.stop(); sim.Close() }() // the GPU PC goes to sleep
				}
				ch, started, ok, detail := chat(i)
				switch {
				case !started:
					failedBeforeStart.Add(1)
					firstFailure.Do(func() { t.Logf("first failure: %s", detail) })
				case !ok:
					cutAfterStart.Add(1)
				case ch == "home/qwen3:14b":
					fromHome.Add(1)
				case ch == "deepseek/deepseek-chat":
					fromVendor.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("home %d, vendor %d, cut after the first byte %d, failed before it %d", fromHome.Load(), fromVendor.Load(), cutAfterStart.Load(), failedBeforeStart.Load())
	if failedBeforeStart.Load() != 0 {
		t.Errorf("%d requests failed before streaming; want 0", failedBeforeStart.Load())
	}
	if fromVendor.Load() == 0 || fromHome.Load() == 0 || fromHome.Load()+fromVendor.Load()+cutAfterStart.Load() != total {
		t.Errorf("home %d + vendor %d + cut %d != %d", fromHome.Load(), fromVendor.Load(), cutAfterStart.Load(), total)
	}

	// Usage says which channel and model served, and what fell back.
	hearthtest.Eventually(t, "usage rows", 10*time.Second, func() bool {
		resp, err := client.Do(adminGet(t, "/admin/v1/usage?by=channel&since=1h"))
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(b), `"deepseek"`) && strings.Contains(string(b), `"home"`)
	})

	// The GPU PC wakes up: traffic returns home within a probe interval or so.
	_, _ = startGPU()
	back := time.Now()
	hearthtest.Eventually(t, "traffic back home", 30*time.Second, func() bool {
		ch, _, ok, _ := chat(-2)
		return ok && ch == "home/qwen3:14b"
	})
	t.Logf("traffic returned home %s after the GPU node started (home probe interval %s)", time.Since(back).Round(time.Millisecond), probe)
}

func adminGet(t *testing.T, path string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, "https://"+relayDomain+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	return req
}
