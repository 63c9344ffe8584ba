package router

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hearthlab/hearth/internal/hearthtest"
)

// fakeNode is a Node whose state the test sets.
type fakeNode struct {
	mu        sync.Mutex
	st        NodeState
	refreshes int
}

func (n *fakeNode) State() NodeState { n.mu.Lock(); defer n.mu.Unlock(); return n.st }
func (n *fakeNode) Refresh(context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.refreshes++
	n.st.Checked = time.Now()
	return nil
}

func healthyNode(t testing.TB, backendURL string, models ...string) *fakeNode {
	t.Helper()
	u, err := url.Parse(backendURL)
	if err != nil {
		t.Fatal(err)
	}
	st := NodeState{Name: "node-a", URL: u, Healthy: true, Version: "0.17.4", Checked: time.Now()}
	for _, m := range models {
		st.Inventory.Models = append(st.Inventory.Models, ModelInfo{Name: m, Raw: json.RawMessage(`{"name":"` + m + `","size":1}`)})
	}
	return &fakeNode{st: st}
}

type testServer struct {
	url     string
	metrics *Metrics
	reg     *prometheus.Registry
}

func newTestServer(t *testing.T, node Node, mutate func(*ServerConfig)) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ServerConfig{MaxBody: 1 << 20, Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	if mutate != nil {
		mutate(&cfg)
	}
	fwd := NewForwarder(ForwarderConfig{ConnectTimeout: time.Second, FirstByteTimeout: 10 * time.Second}, m, nil)
	srv := httptest.NewServer(NewServer(cfg, NewSingle(node), fwd, m, nil))
	t.Cleanup(func() { srv.Close(); fwd.Close() })
	return &testServer{url: srv.URL, metrics: m, reg: reg}
}

func post(t *testing.T, url, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestNormalizeModel(t *testing.T) {
	for in, want := range map[string]string{
		"llama3": "llama3:latest", "Llama3:8B": "llama3:8b", " tiny ": "tiny:latest",
		"hf.co/user/repo:Q4_K_M": "hf.co/user/repo:q4_k_m", "registry.local:5000/m": "registry.local:5000/m:latest", "": "",
	} {
		if got := NormalizeModel(in); got != want {
			t.Errorf("NormalizeModel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestErrorsInCallersDialect(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("backend must not be called, got %s", r.URL.Path)
	}))
	t.Cleanup(backend.Close)
	ts := newTestServer(t, healthyNode(t, backend.URL, "tiny:latest"), nil)
	big := `{"model":"tiny","prompt":"` + strings.Repeat("x", 1<<20) + `"}`

	tests := []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"malformed ollama", "/api/chat", `{"model":"tiny",`, 400,
			`{"error":"request body is cut short after 16 bytes: send a complete JSON object"}`},
		{"empty", "/api/chat", ``, 400, `{"error":"request body is empty: send a JSON object such as {\"model\":\"NAME\", ...}"}`},
		{"malformed openai", "/v1/chat/completions", `{"model": tiny}`, 400,
			`{"error":{"message":"request body is not valid JSON: invalid character 'i' in literal true (expecting 'r') (at byte 12)","type":"invalid_request_error","param":null,"code":"invalid_json"}}`},
		{"not an object", "/api/generate", `["tiny"]`, 400, `{"error":"request body must be a JSON object, not array"}`},
		{"model not a string", "/api/embed", `{"model":5}`, 400, `{"error":"request body: \"model\" must be a string, not number"}`},
		{"missing model", "/api/chat", `{"messages":[]}`, 400,
			`{"error":"model is required: name it in the \"model\" field (GET /api/tags or /v1/models lists what is available)"}`},
		{"unknown model ollama", "/api/chat", `{"model":"llama3"}`, 404,
			"{\"error\":\"model \\\"llama3:latest\\\" not found: llama3:latest is not on node node-a (available: tiny:latest). Pull it with `ollama pull llama3`\"}"},
		{"unknown model openai", "/v1/chat/completions", `{"model":"gpt-4o"}`, 404,
			"{\"error\":{\"message\":\"model \\\"gpt-4o:latest\\\" not found: gpt-4o:latest is not on node node-a (available: tiny:latest). Pull it with `ollama pull gpt-4o`\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"model_not_found\"}}"},
		{"too large", "/api/generate", big, 413,
			`{"error":"request body is larger than 1048576 bytes (node.max_body): send less, or raise node.max_body in the agent config"}`},
		{"unknown endpoint", "/v1/assistants", `{}`, 404,
			`{"error":{"message":"no such endpoint: POST /v1/assistants","type":"invalid_request_error","param":null,"code":"not_found"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := post(t, ts.url+tt.path, tt.body)
			if resp.StatusCode != tt.status || strings.TrimSpace(body) != tt.want {
				t.Errorf("got %d %s\nwant %d %s", resp.StatusCode, body, tt.status, tt.want)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content type %q", ct)
			}
		})
	}
}

func TestBackendDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now

	t.Run("connect refused answers 503 with Retry-After", func(t *testing.T) {
		ts := newTestServer(t, healthyNode(t, dead, "tiny:latest"), nil)
		for _, path := range []string{"/api/chat", "/v1/chat/completions"} {
			resp, body := post(t, ts.url+path, `{"model":"tiny"}`)
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" ||
				!strings.Contains(body, "node node-a: cannot connect to Ollama") || !strings.Contains(body, "is `ollama serve` running there?") {
				t.Errorf("%s: got %d %q retry-after %q", path, resp.StatusCode, body, resp.Header.Get("Retry-After"))
			}
		}
	})
	t.Run("node known down answers model_unavailable", func(t *testing.T) {
		n := healthyNode(t, dead, "tiny:latest")
		n.st.Healthy = false
		n.st.Problem = "nothing listens at " + dead + " (connection refused)"
		ts := newTestServer(t, n, nil)
		resp, body := post(t, ts.url+"/v1/chat/completions", `{"model":"tiny"}`)
		want := `{"error":{"message":"model \"tiny:latest\" is unavailable right now: node node-a has tiny:latest but its Ollama is not answering: nothing listens at ` + dead + ` (connection refused)","type":"server_error","param":null,"code":"model_unavailable"}}`
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "10" || strings.TrimSpace(body) != want {
			t.Errorf("got %d %s\nwant %s", resp.StatusCode, body, want)
		}
		resp, body = post(t, ts.url+"/api/tags", "")
		if resp.StatusCode != 405 {
			t.Errorf("POST /api/tags: %d %s", resp.StatusCode, body)
		}
		r, err := http.Get(ts.url + "/api/tags")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != 503 || !strings.Contains(string(b), "no node's Ollama is answering: node node-a: nothing listens") {
			t.Errorf("GET /api/tags: %d %s", r.StatusCode, b)
		}
		r, err = http.Get(ts.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 503 {
			t.Errorf("/readyz = %d while the backend is down", r.StatusCode)
		}
	})
}

func TestAuth(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the LAN key reached the backend")
		}
		_, _ = io.WriteString(w, `{"models":[]}`)
	}))
	t.Cleanup(backend.Close)
	const key = "lan-key-0123456789abcdef"
	tests := []struct {
		name    string
		trusted []netip.Prefix
		auth    string
		status  int
		want    string
	}{
		{"trusted network needs no key", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, "", 200, ""},
		{"untrusted without key", nil, "", 401, `this address (127.0.0.1) is not in node.trusted_networks: send \"Authorization: Bearer KEY\" with one of node.api_keys`},
		{"untrusted wrong key", nil, "Bearer nope-nope-nope-nope", 401, "the API key is not valid here: use one of node.api_keys from the agent config"},
		{"untrusted right key", nil, "Bearer " + key, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, healthyNode(t, backend.URL, "tiny:latest"), func(c *ServerConfig) {
				c.Trusted = tt.trusted
				c.APIKeys = []string{key}
			})
			resp, body := post(t, ts.url+"/api/show", `{"model":"tiny"}`, "Authorization", tt.auth)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.want) {
				t.Errorf("got %d %s", resp.StatusCode, body)
			}
			r, err := http.Get(ts.url + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			if r.StatusCode != 200 {
				t.Errorf("/healthz needs no key, got %d", r.StatusCode)
			}
		})
	}
}

// TestStreamFlushesEachChunk: the client reads every chunk before the backend writes the next.
func TestStreamFlushesEachChunk(t *testing.T) {
	next := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		for i := 0; i < 3; i++ {
			_, _ = io.WriteString(w, `{"message":{"content":"t`+string(rune('0'+i))+`"},"done":false}`+"\n")
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
		_, _ = io.WriteString(w, `{"done":true,"eval_count":3,"eval_duration":300000000}`+"\n")
	}))
	t.Cleanup(backend.Close)
	ts := newTestServer(t, healthyNode(t, backend.URL, "tiny:latest"), nil)

	resp, err := http.Post(ts.url+"/api/chat", "application/json", strings.NewReader(`{"model":"tiny"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("X-Hearth-Node") != "node-a" {
		t.Errorf("X-Hearth-Node = %q", resp.Header.Get("X-Hearth-Node"))
	}
	sc := bufio.NewScanner(resp.Body)
	for i := 0; i < 3; i++ {
		if !sc.Scan() {
			t.Fatalf("chunk %d did not arrive before the next was written: %v", i, sc.Err())
		}
		if !strings.Contains(sc.Text(), `"t`+string(rune('0'+i))+`"`) {
			t.Fatalf("chunk %d = %s", i, sc.Text())
		}
		next <- struct{}{}
	}
	if !sc.Scan() || !strings.Contains(sc.Text(), `"done":true`) {
		t.Fatalf("final chunk missing: %q", sc.Text())
	}
	resp.Body.Close()
	hearthtest.Eventually(t, "tokens counted", 10*time.Second, func() bool {
		return testutil.ToFloat64(ts.metrics.tokens.WithLabelValues("tiny:latest", "node-a")) == 3
	})
}

// TestStreamCutEndsWithErrorEvent: a backend that dies mid-stream leaves the client a clean
// error event in the stream's own format.
func TestStreamCutEndsWithErrorEvent(t *testing.T) {
	tests := []struct {
		path, contentType, chunk, wantTail string
	}{
		{"/api/chat", "application/x-ndjson", `{"message":{"content":"a"},"done":false}` + "\n",
			`{"error":"node node-a stopped answering in the middle of the response: unexpected EOF"}`},
		{"/v1/chat/completions", "text/event-stream", "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
			`data: {"error":{"message":"node node-a stopped answering in the middle of the response: unexpected EOF","type":"server_error","param":null,"code":"stream_interrupted"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				_, _ = io.WriteString(w, tt.chunk)
				w.(http.Flusher).Flush()
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close() // die without the terminating chunk
				}
			}))
			t.Cleanup(backend.Close)
			ts := newTestServer(t, healthyNode(t, backend.URL, "tiny:latest"), nil)
			resp, body := post(t, ts.url+tt.path, `{"model":"tiny","stream":true}`)
			if resp.StatusCode != 200 || !strings.HasPrefix(body, tt.chunk) || strings.TrimSpace(strings.TrimPrefix(body, tt.chunk)) != tt.wantTail {
				t.Errorf("got %d %q", resp.StatusCode, body)
			}
		})
	}
}

// TestClientGoneCancelsBackend: closing the client connection ends the backend's request.
func TestClientGoneCancelsBackend(t *testing.T) {
	canceled := make(chan struct{})
	started := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = io.WriteString(w, "{\"done\":false}\n")
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
		close(canceled)
	}))
	t.Cleanup(backend.Close)
	ts := newTestServer(t, healthyNode(t, backend.URL, "tiny:latest"), nil)
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.url+"/api/generate", strings.NewReader(`{"model":"tiny"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	cancel()
	resp.Body.Close()
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend request was not canceled after the client left")
	}
}

// TestRawBytesForwarded: the backend receives exactly the bytes the client sent.
func TestRawBytesForwarded(t *testing.T) {
	got := make(chan []byte, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(backend.Close)
	ts := newTestServer(t, healthyNode(t, backend.URL, "tiny:latest"), nil)
	body := `{ "temperature" : 0, "model":"Tiny",  "tools":[{"type":"function","function":{"name":"f","parameters":{}}}],` +
		`"format":{"type":"object"},"options":{"temperature":0.0},"x-unknown":[1,2e3,null], "stream":false }`
	resp, _ := post(t, ts.url+"/v1/chat/completions", body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if b := <-got; string(b) != body {
		t.Fatalf("backend got\n%s\nwant\n%s", b, body)
	}
}
