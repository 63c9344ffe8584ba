//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hearthlab/hearth/internal/ollamasim"
	"github.com/hearthlab/hearth/rag/ragtest"
)

// appWorld is the web app's world: `hearth relay` with a home channel and a vendor, `hearth
// agent` at home in front of appUpstream (ollamasim plus scripted answers), a phone token, and
// a TCP hop in front of the relay's HTTPS port that the test can cut or take down, as a
// phone's network does.
type appWorld struct {
	rl     *relayProc
	home   *agentProc
	up     *appUpstream
	vendor *httptest.Server
	hop    *tcpHop
	token  string
	origin string // https://relay.test:HOP
	spki   string // the relay certificate's key hash, which the browser accepts
}

// simTokens and simDelay make the sim's answers: "tok0 tok1 … tok39 ", one every 40 ms.
const (
	simTokens = 40
	simDelay  = 40 * time.Millisecond
)

func simAnswer() string {
	var b strings.Builder
	for i := range simTokens {
		fmt.Fprintf(&b, "tok%d ", i)
	}
	return b.String()
}

func startAppWorld(t *testing.T, s *stack) *appWorld {
	t.Helper()
	w := &appWorld{up: newAppUpstream(t)}
	w.vendor = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer vendor-key" {
			http.Error(rw, `{"error":{"message":"bad key"}}`, http.StatusUnauthorized)
			return
		}
		streamScript(rw, r, "vendor-chat", "The vendor answers while **home** is away.", nil, 8, 5*time.Millisecond)
	}))
	t.Cleanup(w.vendor.Close)
	w.rl = startRelay(t, s, fmt.Sprintf(`channels:
  - { name: home, type: home }
  - { name: vendor, type: openai, base_url: "%s/v1", key: vendor-key, models: [vendor-chat], priority: 10 }
routes:
  - { model: "*", fallback: [vendor/vendor-chat] }
`, w.vendor.URL))
	w.home = w.startHome(t, s)
	out := runHearth(t, s, "token", "create", "--name", "phone", "--db", w.rl.db)
	w.token = regexp.MustCompile(`(?m)^\s{4}(\S+)\s*$`).FindStringSubmatch(out)[1]
	w.rl.waitFor(t, "the phone token accepted and home's models listed", 30*time.Second, func() string {
		code, body, err := w.rl.get("/v1/models", "Bearer "+w.token)
		if err != nil {
			return err.Error()
		}
		if code != 200 || !strings.Contains(body, `"sim:latest"`) || !strings.Contains(body, `"rag:docs"`) {
			return fmt.Sprintf("/v1/models: %d %s", code, body)
		}
		return ""
	})
	resp, err := w.rl.client.Get("https://" + relayDomain + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	sum := sha256.Sum256(resp.TLS.PeerCertificates[0].RawSubjectPublicKeyInfo)
	w.spki = base64.StdEncoding.EncodeToString(sum[:])
	w.hop = newTCPHop(t, fmt.Sprintf("127.0.0.1:%d", w.rl.httpsPort))
	w.origin = fmt.Sprintf("https://%s:%d", relayDomain, w.hop.port)
	return w
}

// startHome is the home agent in front of the world's upstream, with its tunnel to the relay.
func (w *appWorld) startHome(t *testing.T, s *stack) *agentProc {
	t.Helper()
	spec := agentSpec{Name: "home", OllamaURL: w.up.srv.URL, Parallel: 4, Tunnel: &agentTunnel{
		Relay: w.rl.tunnel, Token: relayTunnelToken, Name: "home", CA: w.rl.issuerFile, ServerName: relayDomain},
		YAML: fmt.Sprintf("rag:\n  embed_model: embed\n  chat_model: ragchat\n  pdf_engine: go\n  rescan_interval: 0s\n"+
			"  collections:\n    - { name: docs, paths: [%q] }\n", appDocs(t))}
	a, err := s.startAgent(spec, filepath.Join(t.TempDir(), "home"))
	if a != nil {
		t.Cleanup(a.stop)
		printLogOnFailure(t, a)
	}
	if err != nil {
		t.Fatal(err)
	}
	w.rl.waitFor(t, "the home channel online", 30*time.Second, func() string {
		code, body, err := w.rl.get("/admin/v1/agents", "Bearer "+relayAdminKey)
		if err != nil || code != 200 || !strings.Contains(body, `"online":true`) {
			return fmt.Sprintf("/admin/v1/agents: %d %s %v", code, body, err)
		}
		return ""
	})
	return a
}

// appUpstream is the home Ollama: ollamasim for sim (tokens at a steady pace) and embed (the
// RAG collection's vectors), scripted answers for the prompts that name one ("script:xss"),
// and for ragchat, the model that writes the home agent's rag:docs answers.
type appUpstream struct {
	sim      *ollamasim.Server
	srv      *httptest.Server
	calls    atomic.Int64 // chat requests for sim
	canceled atomic.Int64 // of those, the ones whose caller went away before the end
	mu       sync.Mutex
	last     []byte // the last chat request's body
}

func (u *appUpstream) lastBody() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return string(u.last)
}

var scripts = map[string]string{
	"xss": "Here is a harmless answer with traps:\n\n<img src=x onerror=\"window.__xss='img'\">\n\n" +
		"<script>window.__xss='script'</script>\n\n[click me](javascript:window.__xss='link')\n\n" +
		"<a href=\"javascript:window.__xss='a'\" onclick=\"window.__xss='click'\">raw link</a> <svg onload=\"window.__xss='svg'\"></svg>\n\nend of traps.",
	"rag": "The warranty lasts **two years** [1], and the filter is changed yearly [2].",
}

func newAppUpstream(t *testing.T) *appUpstream {
	t.Helper()
	u := &appUpstream{sim: ollamasim.New(ollamasim.Config{Models: []ollamasim.Model{{Name: "sim"}, {Name: "llava"}, {Name: "embed"}, {Name: "ragchat"}},
		Parallel: 4, Tokens: simTokens, TokenDelay: simDelay})}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(func() { u.srv.Close(); u.sim.Close() })
	return u
}

func (u *appUpstream) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || (r.URL.Path != "/v1/chat/completions" && r.URL.Path != "/api/chat") {
		u.sim.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.last = body
	u.mu.Unlock()
	var req struct {
		Model    string
		Messages []struct{ Content any }
	}
	_ = json.Unmarshal(body, &req)
	last := ""
	if n := len(req.Messages); n > 0 {
		last = fmt.Sprint(req.Messages[n-1].Content)
	}
	if r.URL.Path == "/api/chat" && strings.HasPrefix(req.Model, "ragchat") {
		streamNDJSON(w, r, req.Model, scripts["rag"], 6, 10*time.Millisecond)
		return
	}
	if r.URL.Path == "/v1/chat/completions" {
		switch {
		case strings.Contains(last, "script:long"):
			streamScript(w, r, req.Model, longMarkdown(48<<10), nil, 160, 4*time.Millisecond)
			return
		case strings.Contains(last, "script:"):
			name := strings.Fields(last[strings.Index(last, "script:")+7:])[0]
			streamScript(w, r, req.Model, scripts[name], nil, 6, 10*time.Millisecond)
			return
		}
	}
	u.calls.Add(1)
	r.Body = io.NopCloser(bytes.NewReader(body))
	u.sim.ServeHTTP(w, r)
	if r.Context().Err() != nil {
		u.canceled.Add(1)
	}
}

// streamScript streams text as OpenAI chat chunks of size bytes, one every delay; sources,
// when given, ride on the first chunk as a RAG answer's do.
func streamScript(w http.ResponseWriter, r *http.Request, model, text string, sources []map[string]any, size int, delay time.Duration) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	send := func(v map[string]any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(bw, "data: %s\n\n", b)
		bw.Flush()
		w.(http.Flusher).Flush()
	}
	first := map[string]any{"object": "chat.completion.chunk", "model": model, "choices": []any{map[string]any{"index": 0, "delta": map[string]string{"role": "assistant", "content": ""}}}}
	if sources != nil {
		first["sources"] = sources
	}
	send(first)
	for i := 0; i < len(text); i += size {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(delay):
		}
		send(map[string]any{"object": "chat.completion.chunk", "model": model, "choices": []any{map[string]any{"index": 0, "delta": map[string]string{"content": text[i:min(i+size, len(text))]}}}})
	}
	send(map[string]any{"object": "chat.completion.chunk", "model": model, "choices": []any{map[string]any{"index": 0, "delta": map[string]string{}, "finish_reason": "stop"}},
		"usage": map[string]int{"prompt_tokens": 5, "completion_tokens": len(text) / 4}})
	io.WriteString(bw, "data: [DONE]\n\n")
	bw.Flush()
}

// streamNDJSON streams text as Ollama's /api/chat does, size bytes a chunk.
func streamNDJSON(w http.ResponseWriter, r *http.Request, model, text string, size int, delay time.Duration) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	for i := 0; i < len(text); i += size {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(delay):
		}
		_ = enc.Encode(map[string]any{"model": model, "message": map[string]string{"role": "assistant", "content": text[i:min(i+size, len(text))]}, "done": false})
		w.(http.Flusher).Flush()
	}
	_ = enc.Encode(map[string]any{"model": model, "message": map[string]string{"role": "assistant", "content": ""}, "done": true,
		"done_reason": "stop", "prompt_eval_count": 5, "eval_count": len(text) / 4})
}

// appDocs writes the home collection's folder: a dishwasher manual (PDF) whose warranty
// answers the test's question, and a note on filters.
func appDocs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{
		"manuals/dishwasher.pdf": ragtest.PDF("Dishwasher manual", [][]string{{"Warranty", "The warranty is two years from purchase."}}, ""),
		"notes/filters.md":       []byte("# Filters\n\nChange the filter every year.\n"),
	}
	for name, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// longMarkdown is about n bytes of the markdown models write: headings, paragraphs, lists,
// code blocks and tables.
func longMarkdown(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "## Part %d\n\nThis part explains step %d with *emphasis*, `inline code` and a [link](https://example.org/%d). ", i, i, i)
		b.WriteString("It goes on for a while, as answers do, so that the paragraph wraps on a phone screen.\n\n")
		fmt.Fprintf(&b, "- first point of %d\n- second point, **bold**\n- third point\n\n", i)
		fmt.Fprintf(&b, "```go\nfunc part%d() int {\n\treturn %d * 2\n}\n```\n\n", i, i)
		if i%3 == 0 {
			fmt.Fprintf(&b, "| key | value |\n| --- | --- |\n| a%d | %d |\n| b%d | %d |\n\n", i, i, i, i*i)
		}
	}
	return b.String()
}

// tcpHop forwards connections to target; cut closes the open ones, down refuses new ones
// and keeps when they came.
type tcpHop struct {
	ln      net.Listener
	port    int
	target  string
	mu      sync.Mutex
	conns   map[net.Conn]bool
	down    bool
	refused []time.Time // when the connections refused since the last setDown(true) came
	wg      sync.WaitGroup
}

func newTCPHop(t *testing.T, target string) *tcpHop {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &tcpHop{ln: ln, port: ln.Addr().(*net.TCPAddr).Port, target: target, conns: map[net.Conn]bool{}}
	h.wg.Go(h.accept)
	t.Cleanup(func() { ln.Close(); h.cut(); h.wg.Wait() })
	return h
}

func (h *tcpHop) accept() {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		down := h.down
		if down {
			h.refused = append(h.refused, time.Now())
		}
		h.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		h.wg.Go(func() { h.pipe(c) })
	}
}

func (h *tcpHop) pipe(c net.Conn) {
	up, err := net.DialTimeout("tcp", h.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	h.mu.Lock()
	h.conns[c], h.conns[up] = true, true
	h.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { io.Copy(up, c); up.Close() })
	wg.Go(func() { io.Copy(c, up); c.Close() })
	wg.Wait()
	h.mu.Lock()
	delete(h.conns, c)
	delete(h.conns, up)
	h.mu.Unlock()
}

func (h *tcpHop) cut() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.conns {
		c.Close()
	}
	return len(h.conns) / 2
}

func (h *tcpHop) setDown(down bool) {
	h.mu.Lock()
	h.down = down
	if down {
		h.refused = nil
	}
	h.mu.Unlock()
	if down {
		h.cut()
	}
}

// refusals is when the connections refused since the last setDown(true) came.
func (h *tcpHop) refusals() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.refused)
}

// browser starts Debian's Chromium headless with a fresh profile; it maps relay.test to
// 127.0.0.1 and accepts the relay's certificate by its key (so the origin is a secure one, as
// service workers need).
func (w *appWorld) browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatalf("these tests need Debian's chromium (apt-get install chromium): %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath("/usr/bin/chromium"), chromedp.Headless, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(390, 844),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-proxy-server", true), chromedp.Flag("host-resolver-rules", "MAP "+relayDomain+" 127.0.0.1"),
		chromedp.Flag("ignore-certificate-errors-spki-list", w.spki),
	}
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); acancel() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}
