package agent

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/internal/ollamasim"
)

func startSim(t *testing.T, models ...string) *ollamasim.Server {
	t.Helper()
	var ms []ollamasim.Model
	for _, m := range models {
		ms = append(ms, ollamasim.Model{Name: m})
	}
	sim := ollamasim.New(ollamasim.Config{Models: ms, Parallel: 4})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

// startAgent runs an agent in front of ollamaURL and returns its base URL and its log.
func startAgent(t *testing.T, ollamaURL string, mutate func(*config.Agent)) (string, *hearthtest.Logs) {
	t.Helper()
	cfg := config.DefaultAgent()
	cfg.Node.Name = "test-node"
	cfg.Node.Listen = "127.0.0.1:0"
	cfg.Ollama.URL = ollamaURL
	cfg.Ollama.PollInterval = 200 * time.Millisecond
	cfg.Node.DataDir = t.TempDir()
	if mutate != nil {
		mutate(&cfg)
	}
	return startAgentWith(t, cfg)
}

func do(t *testing.T, method, url, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// waitLimit bounds the agent tests' waits for what the agent does on its own.
const waitLimit = 15 * time.Second

// TestRecoversWhenOllamaAppears: started before Ollama, the agent says so, answers 503, and
// serves as soon as Ollama is up, without a restart.
func TestRecoversWhenOllamaAppears(t *testing.T) {
	sim := startSim(t, "tiny")
	sim.SetFault(ollamasim.Fault{Kind: ollamasim.FaultRefuse})
	base, logs := startAgent(t, sim.URL(), nil)

	hearthtest.Eventually(t, "first check logged", waitLimit, func() bool { return strings.Contains(logs.String(), "Ollama is not reachable yet") })
	if !strings.Contains(logs.String(), "connection refused): start Ollama with `ollama serve`, or point ollama.url at it") {
		t.Errorf("log does not say what to do:\n%s", logs)
	}
	resp, body := do(t, http.MethodGet, base+"/readyz", "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"healthy":false`) {
		t.Errorf("/readyz while Ollama is down: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodPost, base+"/api/chat", `{"model":"tiny"}`)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Ollama is not answering") {
		t.Errorf("chat while Ollama is down: %d %s", resp.StatusCode, body)
	}

	sim.SetFault(ollamasim.Fault{})
	hearthtest.Eventually(t, "ready after Ollama appears", waitLimit, func() bool {
		resp, _ := do(t, http.MethodGet, base+"/readyz", "")
		return resp.StatusCode == http.StatusOK
	})
	resp, body = do(t, http.MethodPost, base+"/api/chat", `{"model":"tiny","stream":false,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"done":true`) || resp.Header.Get("X-Hearth-Node") != "test-node" {
		t.Errorf("chat after recovery: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), `"msg":"Ollama is answering"`) {
		t.Errorf("recovery not logged:\n%s", logs)
	}
}

// TestViewsAndStoreOperations: listings come from the backend's inventory, and a store change
// made through hearth shows in the next listing at once.
func TestViewsAndStoreOperations(t *testing.T) {
	sim := startSim(t, "tiny", "tiny2")
	base, _ := startAgent(t, sim.URL(), func(c *config.Agent) { c.Ollama.PollInterval = time.Hour })
	hearthtest.Eventually(t, "ready", waitLimit, func() bool { r, _ := do(t, http.MethodGet, base+"/readyz", ""); return r.StatusCode == 200 })

	names := func() []string {
		_, body := do(t, http.MethodGet, base+"/api/tags", "")
		var tags struct {
			Models []struct {
				Name   string `json:"name"`
				Digest string `json:"digest"`
			} `json:"models"`
		}
		if err := json.Unmarshal([]byte(body), &tags); err != nil {
			t.Fatalf("/api/tags: %v: %s", err, body)
		}
		var out []string
		for _, m := range tags.Models {
			if m.Digest == "" {
				t.Errorf("%s lost its digest in the listing", m.Name)
			}
			out = append(out, m.Name)
		}
		return out
	}
	if got := strings.Join(names(), ","); got != "tiny:latest,tiny2:latest" && got != "tiny2:latest,tiny:latest" {
		t.Fatalf("/api/tags names = %s", got)
	}

	resp, body := do(t, http.MethodPost, base+"/api/copy", `{"source":"tiny","destination":"tiny-copy"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("copy: %d %s", resp.StatusCode, body)
	}
	if got := strings.Join(names(), ","); !strings.Contains(got, "tiny-copy:latest") {
		t.Fatalf("after copy, /api/tags = %s", got)
	}
	resp, body = do(t, http.MethodPost, base+"/api/chat", `{"model":"tiny-copy","stream":false}`)
	if resp.StatusCode != 200 {
		t.Fatalf("chat with the copy: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodDelete, base+"/api/delete", `{"model":"tiny-copy"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodPost, base+"/api/chat", `{"model":"tiny-copy","stream":false}`)
	if resp.StatusCode != 404 || !strings.Contains(body, "not found") {
		t.Fatalf("chat after delete: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodPost, base+"/api/pull?node=elsewhere", `{"model":"x"}`)
	if resp.StatusCode != 404 || !strings.Contains(body, `unknown node \"elsewhere\" (this agent serves node \"test-node\")`) {
		t.Errorf("pull to an unknown node: %d %s", resp.StatusCode, body)
	}

	do(t, http.MethodPost, base+"/api/generate", `{"model":"tiny","stream":false,"prompt":"hi"}`)
	_, body = do(t, http.MethodGet, base+"/api/ps", "")
	if !strings.Contains(body, `"name":"tiny:latest"`) || !strings.Contains(body, `"expires_at"`) {
		t.Errorf("/api/ps after a generate with tiny: %s", body)
	}
	resp, body = do(t, http.MethodGet, base+"/v1/models", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"object":"list"`) || !strings.Contains(body, `"id":"tiny2:latest"`) {
		t.Errorf("/v1/models: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodGet, base+"/v1/models/tiny", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"id":"tiny:latest"`) {
		t.Errorf("/v1/models/tiny: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodGet, base+"/api/version", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"version"`) {
		t.Errorf("/api/version: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodHead, base+"/", "")
	if resp.StatusCode != 200 {
		t.Errorf("HEAD /: %d %s", resp.StatusCode, body)
	}
}

// TestMetricsAndSecrets: /metrics shows requests and tokens; no key reaches the log.
func TestMetricsAndSecrets(t *testing.T) {
	const key = "lan-key-secret-0123456789"
	sim := startSim(t, "tiny")
	base, logs := startAgent(t, sim.URL(), func(c *config.Agent) {
		c.Node.APIKeys = []string{key}
		c.Node.TrustedNetworks = nil // every caller needs the key, loopback too
	})
	hearthtest.Eventually(t, "ready", waitLimit, func() bool { r, _ := do(t, http.MethodGet, base+"/readyz", ""); return r.StatusCode == 200 })

	resp, _ := do(t, http.MethodPost, base+"/api/chat", `{"model":"tiny"}`, "Authorization", "Bearer wrong-"+key)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong key: %d", resp.StatusCode)
	}
	resp, body := do(t, http.MethodPost, base+"/api/chat", `{"model":"tiny","messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer "+key)
	if resp.StatusCode != 200 || strings.Count(body, "\n") < 2 {
		t.Fatalf("stream: %d %s", resp.StatusCode, body)
	}
	resp, metrics := do(t, http.MethodGet, base+"/metrics", "", "Authorization", "Bearer "+key)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`hearth_requests_total{model="tiny:latest",route="chat",status="200"} 1`,
		`hearth_generated_tokens_total{model="tiny:latest",node="test-node"}`,
		`hearth_time_to_first_token_seconds_count{model="tiny:latest",route="chat"} 1`,
		`hearth_requests_in_flight{route="chat"} 0`,
		`hearth_build_info{node="test-node",version="test"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(logs.String(), key) {
		t.Errorf("the API key reached the log:\n%s", logs)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := config.DefaultAgent()
	cfg.Node.Listen = "nope"
	if _, err := New(cfg, nil, "test"); err == nil || !strings.Contains(err.Error(), `node.listen "nope": not host:port`) {
		t.Errorf("got %v", err)
	}
	cfg = config.DefaultAgent()
	cfg.Node.Listen = "127.0.0.1:0"
	a, err := New(cfg, nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Node.Listen = a.Addr().String()
	if _, err := New(cfg, nil, "test"); err == nil || !strings.Contains(err.Error(), "cannot listen on node.listen") {
		t.Errorf("port in use: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_ = a.Run(ctx)
}
