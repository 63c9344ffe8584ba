package chain

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/relay/auth"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/usage"
)

// vendor is a fake OpenAI-compatible API whose behaviour a test sets.
type vendor struct {
	srv   *httptest.Server
	mode  atomic.Value // string: ok, 500, 429, hang, stall, 401, nousage
	calls atomic.Int32
	last  atomic.Value // []byte: the last request body
	keys  sync.Map     // Authorization headers seen
}

func newVendor(t *testing.T) *vendor {
	v := &vendor{}
	v.mode.Store("ok")
	v.srv = httptest.NewServer(http.HandlerFunc(v.serve))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *vendor) serve(w http.ResponseWriter, r *http.Request) {
	v.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	v.last.Store(body)
	v.keys.Store(r.Header.Get("Authorization"), true)
	var req struct {
		Model         string `json:"model"`
		Stream        bool   `json:"stream"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	_ = json.Unmarshal(body, &req)
	switch v.mode.Load().(string) {
	case "500":
		// The request id holds "401": only a 401 status may disable a key, not its digits.
		http.Error(w, `{"error":{"message":"upstream exploded (request req_8f4019ac)"}}`, http.StatusInternalServerError)
		return
	case "429":
		w.Header().Set("Retry-After", "30")
		http.Error(w, `{"error":{"message":"slow down"}}`, http.StatusTooManyRequests)
		return
	case "401":
		http.Error(w, `{"error":{"message":"bad key"}}`, http.StatusUnauthorized)
		return
	case "hang":
		<-r.Context().Done()
		return
	}
	usage := `{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}`
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		u := `,"usage":` + usage
		if v.mode.Load() == "nousage" {
			u = ""
		}
		fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"hello there friend"},"finish_reason":"stop"}]%s}`, req.Model, u)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	for i, tok := range []string{"hel", "lo ", "there"} {
		fmt.Fprintf(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{\"content\":%q}}]}\n\n", req.Model, tok)
		fl.Flush()
		if i == 0 && v.mode.Load() == "stall" {
			<-r.Context().Done()
			return
		}
	}
	fmt.Fprintf(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n", req.Model)
	if req.StreamOptions.IncludeUsage && v.mode.Load() != "nousage" {
		fmt.Fprintf(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":%q,\"choices\":[],\"usage\":%s}\n\n", req.Model, usage)
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

type chainWorld struct {
	chain  *Chain
	usage  *usage.Log
	store  *tokens.Store
	url    string
	token  string
	cancel context.CancelFunc
}

func vendorChannel(name string, v *vendor, priority int, models ...string) config.Channel {
	return config.Channel{Name: name, Type: "openai", BaseURL: v.srv.URL, Keys: []string{"sk-" + name}, Models: models, Priority: priority}
}

func startChain(t *testing.T, channels []config.Channel, routes []config.Route) *chainWorld {
	t.Helper()
	cfg := config.DefaultRelay()
	cfg.Channels, cfg.Routes = channels, routes
	cfg.Limits.RequestsPerMinute = 100000
	for i := range cfg.Channels {
		if cfg.Channels[i].Timeouts.FirstByte == 0 {
			cfg.Channels[i].Timeouts = config.ChannelTimeouts{Connect: time.Second, FirstByte: 500 * time.Millisecond, Idle: 500 * time.Millisecond}
		}
	}
	cfg.Complete()
	store, err := tokens.Open(filepath.Join(t.TempDir(), "relay.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	usage, err := usage.New(store, config.UsageConfig{FlushInterval: 20 * time.Millisecond, Retention: time.Hour}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = usage.Run(ctx); close(done) }()
	auth := auth.New(store, cfg.Limits, "admin-key-0123456789abc", nil)
	chain := New(cfg, nil, auth, usage, slog.New(slog.DiscardHandler))
	mux := http.NewServeMux()
	mux.Handle("/", auth.Require(chain))
	srv := httptest.NewServer(mux)
	secret, _, err := store.Create(t.Context(), tokens.Spec{Name: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	w := &chainWorld{chain: chain, usage: usage, store: store, url: srv.URL, token: secret, cancel: cancel}
	t.Cleanup(func() { srv.Close(); cancel(); <-done; store.Close() })
	return w
}

func (w *chainWorld) post(t *testing.T, path, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, w.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+w.token)
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

// rows reads the usage table after a flush.
func (w *chainWorld) rows(t *testing.T, n int) []usage.Row {
	t.Helper()
	var rows []usage.Row
	hearthtest.Eventually(t, fmt.Sprintf("usage rows with %d requests", n), 5*time.Second, func() bool {
		rs, err := w.usage.Summary(t.Context(), "channel", time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		total := int64(0)
		for _, r := range rs {
			total += r.Requests
		}
		rows = rs
		return total >= int64(n)
	})
	return rows
}

const chatBody = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
const streamBody = `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`

// TestChainMovesOnBeforeTheFirstByte: each failure of the first channel sends the request to
// the second, which answers.
func TestChainMovesOnBeforeTheFirstByte(t *testing.T) {
	for _, mode := range []string{"500", "429", "hang", "401", "refused"} {
		t.Run(mode, func(t *testing.T) {
			a, b := newVendor(t), newVendor(t)
			a.mode.Store(mode)
			chA := vendorChannel("a", a, 0, "m")
			if mode == "hang" { // a whole answer may take minutes: the wait for it is timeouts.answer
				chA.Timeouts = config.ChannelTimeouts{Connect: time.Second, FirstByte: 500 * time.Millisecond, Idle: 500 * time.Millisecond, Answer: 500 * time.Millisecond}
			}
			if mode == "refused" {
				ln, _ := net.Listen("tcp", "127.0.0.1:0")
				chA.BaseURL = "http://" + ln.Addr().String()
				ln.Close()
			}
			w := startChain(t, []config.Channel{chA, vendorChannel("b", b, 10, "m")}, nil)
			resp, body := w.post(t, "/v1/chat/completions", chatBody)
			if resp.StatusCode != 200 || resp.Header.Get("X-Hearth-Channel") != "b" || !strings.Contains(body, "hello there friend") {
				t.Fatalf("%d via %q: %s", resp.StatusCode, resp.Header.Get("X-Hearth-Channel"), body)
			}
			var disabled string
			for _, c := range w.chain.Channels() {
				if c.Name == "a" && len(c.Keys) == 1 {
					disabled = c.Keys[0].Disabled
				}
			}
			if mode == "401" && !strings.Contains(disabled, "401") {
				t.Errorf("key a#1 not disabled after a 401: %+v", w.chain.Channels())
			}
			if mode != "401" && disabled != "" {
				t.Errorf("key a#1 disabled after %s: %q", mode, disabled)
			}
		})
	}
}

// TestChainNeverAfterTheFirstByte: a stream that stalls after its first chunk ends with an
// error event; the next channel is never called.
func TestChainNeverAfterTheFirstByte(t *testing.T) {
	a, b := newVendor(t), newVendor(t)
	a.mode.Store("stall")
	w := startChain(t, []config.Channel{vendorChannel("a", a, 0, "m"), vendorChannel("b", b, 10, "m")}, nil)
	resp, body := w.post(t, "/v1/chat/completions", streamBody)
	if resp.StatusCode != 200 || !strings.HasPrefix(body, `data: {"id":"c1"`) || !strings.Contains(body, `"code":"stream_interrupted"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if b.calls.Load() != 0 {
		t.Errorf("b was called %d times after a's first byte", b.calls.Load())
	}
}

func TestChainBreakerOpensAndCloses(t *testing.T) {
	a, b := newVendor(t), newVendor(t)
	a.mode.Store("500")
	w := startChain(t, []config.Channel{vendorChannel("a", a, 0, "m"), vendorChannel("b", b, 10, "m")}, nil)
	for _, ch := range w.chain.state.Load().channels {
		ch.brk.minCooldown = 200 * time.Millisecond
		for _, k := range ch.keys {
			k.brk.minCooldown = 200 * time.Millisecond
		}
	}
	for i := 0; i < 6; i++ {
		if resp, _ := w.post(t, "/v1/chat/completions", chatBody); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if n := a.calls.Load(); n != 3 {
		t.Fatalf("a was called %d times; its breaker should open after 3 failures", n)
	}
	if st := w.chain.Channels()[0].State; st != "open" {
		t.Fatalf("a's breaker: %s", st)
	}
	a.mode.Store("ok")
	time.Sleep(250 * time.Millisecond) // past the cooldown: one half-open call may go
	resp, _ := w.post(t, "/v1/chat/completions", chatBody)
	if resp.Header.Get("X-Hearth-Channel") != "a" || w.chain.Channels()[0].State != "closed" {
		t.Fatalf("after the cooldown: served by %q, a is %s", resp.Header.Get("X-Hearth-Channel"), w.chain.Channels()[0].State)
	}
}

// TestChainUsage: usage for streams with and without include_usage (the extra chunk is
// stripped when the client did not ask) and for non-streams; estimated when the vendor
// gives none.
func TestChainUsage(t *testing.T) {
	v := newVendor(t)
	w := startChain(t, []config.Channel{vendorChannel("v", v, 0, "m")}, nil)
	_, body := w.post(t, "/v1/chat/completions", streamBody)
	if strings.Contains(body, `"usage"`) || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Errorf("usage chunk not stripped: %s", body)
	}
	if sent := string(v.last.Load().([]byte)); !strings.Contains(sent, `"include_usage":true`) {
		t.Errorf("upstream not asked for usage: %s", sent)
	}
	_, body = w.post(t, "/v1/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}`)
	if !strings.Contains(body, `"completion_tokens":3`) {
		t.Errorf("asked-for usage chunk missing: %s", body)
	}
	_, body = w.post(t, "/v1/chat/completions", chatBody)
	if !strings.Contains(body, `"model":"m"`) {
		t.Errorf("non-stream: %s", body)
	}
	v.mode.Store("nousage")
	w.post(t, "/v1/chat/completions", chatBody)
	rows := w.rows(t, 4)
	if len(rows) != 1 || rows[0].PromptTokens < 33 || rows[0].CompletionTokens < 9 {
		t.Errorf("usage rows: %+v", rows)
	}
}

// TestChainRoutesMapModels: a model no channel serves falls back by route to the mapped
// model; the body keeps the requested name unless the client asks for the real one.
func TestChainRoutesMapModels(t *testing.T) {
	v := newVendor(t)
	w := startChain(t, []config.Channel{vendorChannel("ds", v, 10, "deepseek-chat")},
		[]config.Route{{Model: "qwen3:*", Fallback: []string{"ds/deepseek-chat"}}})
	resp, body := w.post(t, "/v1/chat/completions", `{"model":"qwen3:14b","messages":[]}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Hearth-Model") != "deepseek-chat" || !strings.Contains(body, `"model":"qwen3:14b"`) {
		t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("X-Hearth-Model"), body)
	}
	if sent := string(v.last.Load().([]byte)); !strings.Contains(sent, `"model":"deepseek-chat"`) {
		t.Errorf("upstream got %s", sent)
	}
	_, body = w.post(t, "/v1/chat/completions", `{"model":"qwen3:14b","messages":[]}`, "X-Hearth-Real-Model", "1")
	if !strings.Contains(body, `"model":"deepseek-chat"`) {
		t.Errorf("real model not shown: %s", body)
	}
	resp, body = w.post(t, "/v1/chat/completions", `{"model":"llama3","messages":[]}`)
	if resp.StatusCode != 404 || !strings.Contains(body, "model_not_found") {
		t.Errorf("unserved model: %d %s", resp.StatusCode, body)
	}
}

// TestChainOllamaDialect: an Ollama-speaking app gets NDJSON from a vendor.
func TestChainOllamaDialect(t *testing.T) {
	v := newVendor(t)
	w := startChain(t, []config.Channel{vendorChannel("v", v, 0, "m")}, nil)
	resp, body := w.post(t, "/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if resp.StatusCode != 200 || len(lines) < 2 || !strings.Contains(lines[len(lines)-1], `"done":true`) || !strings.Contains(body, `"content":"hel"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

// TestChainReloadUnderLoad: reloading the channels while requests run drops none.
func TestChainReloadUnderLoad(t *testing.T) {
	a, b := newVendor(t), newVendor(t)
	cfgA := []config.Channel{vendorChannel("a", a, 0, "m")}
	cfgB := []config.Channel{vendorChannel("b", b, 0, "m")}
	w := startChain(t, cfgA, nil)
	var failed atomic.Int32
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 40; n++ {
				req, _ := http.NewRequest(http.MethodPost, w.url+"/v1/chat/completions", strings.NewReader(streamBody))
				req.Header.Set("Authorization", "Bearer "+w.token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				sc := bufio.NewScanner(resp.Body)
				done := false
				for sc.Scan() {
					done = done || sc.Text() == "data: [DONE]"
				}
				resp.Body.Close()
				if resp.StatusCode != 200 || !done {
					if failed.Add(1) == 1 {
						t.Logf("first failure: %d %v", resp.StatusCode, resp.Header)
					}
				}
			}
		}()
	}
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cfg := config.DefaultRelay()
			cfg.Channels = cfgA
			if i%2 == 1 {
				cfg.Channels = cfgB
			}
			cfg.Complete()
			w.chain.Reload(cfg)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	wg.Wait()
	close(stop)
	if failed.Load() != 0 || a.calls.Load() == 0 || b.calls.Load() == 0 {
		t.Fatalf("failed %d (a served %d, b %d)", failed.Load(), a.calls.Load(), b.calls.Load())
	}
}

// An Ollama request that only home can serve as sent is refused only when a vendor is to
// answer it, with why; one with nothing to generate (a load) gets Ollama's own load answer
// from a vendor channel, which is never called.
func TestChainOllamaRequestsAVendorCannotTake(t *testing.T) {
	v := newVendor(t)
	w := startChain(t, []config.Channel{vendorChannel("v", v, 0, "m")}, nil)
	for _, tc := range []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"load chat", "/api/chat", `{"model":"m"}`, 200, `"done_reason":"load"`},
		{"load generate", "/api/generate", `{"model":"m","prompt":""}`, 200, `"done_reason":"load"`},
		{"suffix", "/api/generate", `{"model":"m","prompt":"def f(","suffix":"return 1"}`, 503,
			`v: ollama request: suffix (fill-in-the-middle) is not supported when a vendor answers`},
		{"not JSON", "/api/chat", `{"model":`, 400, `request body:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := w.post(t, tc.path, tc.body)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %s, want %d with %q", resp.StatusCode, body, tc.status, tc.want)
			}
			if tc.status == 200 && resp.Header.Get("X-Hearth-Channel") != "v" {
				t.Errorf("channel %q", resp.Header.Get("X-Hearth-Channel"))
			}
		})
	}
	if n := v.calls.Load(); n != 0 {
		t.Errorf("the vendor was called %d times", n)
	}
}

// TestChainHonoursRetryAfter: a vendor's 429 with Retry-After rests the key that long: the
// next requests go straight to the next channel without calling it, the views say so, and a
// client nothing else can serve is told to come back when the key may be called again (not
// the usual 10s, which would only earn another 429).
func TestChainHonoursRetryAfter(t *testing.T) {
	a, b := newVendor(t), newVendor(t)
	a.mode.Store("429") // Retry-After: 30
	w := startChain(t, []config.Channel{vendorChannel("a", a, 0, "m"), vendorChannel("b", b, 10, "m")}, nil)
	for i := 0; i < 2; i++ {
		if resp, body := w.post(t, "/v1/chat/completions", chatBody); resp.StatusCode != 200 || resp.Header.Get("X-Hearth-Channel") != "b" {
			t.Fatalf("request %d: %d via %q: %s", i, resp.StatusCode, resp.Header.Get("X-Hearth-Channel"), body)
		}
	}
	if n := a.calls.Load(); n != 1 {
		t.Fatalf("a was called %d times; after its 429 with Retry-After: 30 it should rest", n)
	}
	if st := w.chain.Channels()[0].Keys[0].State; st != "rate-limited" {
		t.Errorf("a#1 is %q, want rate-limited", st)
	}

	// The request that meets the 429 and the next one both learn the vendor's wait.
	only := startChain(t, []config.Channel{vendorChannel("a", a, 0, "m")}, nil)
	for i, want := range []string{"429 Too Many Requests", "rate-limited by the vendor"} {
		resp, body := only.post(t, "/v1/chat/completions", chatBody)
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != 503 || secs < 20 || secs > 30 || !strings.Contains(body, want) {
			t.Fatalf("request %d: %d Retry-After %q: %s", i, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"30": 30 * time.Second, "": 0, "soon": 0, "-5": 0, "86400": maxRetryAfter,
		now.Add(time.Minute).Format(http.TimeFormat): time.Minute,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", v, got, want)
		}
	}
}

// TestChainTestNeedsNoProbeModel: `hearth channel test` on a channel without probe_model
// calls the first model it serves (before, it failed "no probe_model configured" without
// calling anything), and reports the vendor's failure when there is one.
func TestChainTestNeedsNoProbeModel(t *testing.T) {
	a := newVendor(t)
	w := startChain(t, []config.Channel{vendorChannel("a", a, 0, "m")}, nil)
	if _, err := w.chain.Test(t.Context(), "a"); err != nil || a.calls.Load() != 1 {
		t.Fatalf("test of a: %v after %d calls", err, a.calls.Load())
	}
	a.mode.Store("500")
	if _, err := w.chain.Test(t.Context(), "a"); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("test of a failing vendor: %v", err)
	}
}
