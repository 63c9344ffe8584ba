package relay

// The web app's generation endpoints on the relay are behind the same gate as /v1: the token
// check (a revoked token is refused at once), the per-address limit and the lockout of
// addresses that guess; a generation is readable and stoppable only by the token that started
// it. The relay is assembled from its real parts (token store, auth, usage log, chain) with
// one vendor channel, and mounted as relay.go mounts it.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/relay/auth"
	"github.com/hearthlab/hearth/relay/chain"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/tokens/tokenstest"
	"github.com/hearthlab/hearth/relay/usage"
)

// heldVendor is an OpenAI vendor that streams "one " and holds the rest ("two three") until
// released; it counts the answers whose caller went away first.
type heldVendor struct {
	srv      *httptest.Server
	mu       sync.Mutex
	release  chan struct{}
	canceled int
	started  int
}

func newHeldVendor(t *testing.T) *heldVendor {
	v := &heldVendor{release: make(chan struct{})}
	v.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		v.mu.Lock()
		v.started++
		release := v.release
		v.mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		chunk := func(s string) {
			fmt.Fprintf(w, "data: {\"object\":\"chat.completion.chunk\",\"model\":\"vendor-chat\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q}}]}\n\n", s)
			w.(http.Flusher).Flush()
		}
		chunk("one ")
		select {
		case <-release:
		case <-r.Context().Done():
			v.mu.Lock()
			v.canceled++
			v.mu.Unlock()
			return
		}
		chunk("two ")
		chunk("three")
		fmt.Fprint(w, "data: {\"object\":\"chat.completion.chunk\",\"model\":\"vendor-chat\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(v.srv.Close)
	return v
}

// let releases the answers held now and holds the next ones again.
func (v *heldVendor) let() {
	v.mu.Lock()
	defer v.mu.Unlock()
	close(v.release)
	v.release = make(chan struct{})
}

func (v *heldVendor) counts() (started, canceled int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.started, v.canceled
}

type appRelay struct {
	url    string
	store  *tokens.Store
	vendor *heldVendor
	tokens map[string]string // name → secret
}

// startAppRelay is the relay's app surface with tokens alice and mallory.
func startAppRelay(t *testing.T, limits func(*config.RelayLimits)) *appRelay {
	t.Helper()
	v := newHeldVendor(t)
	cfg := config.DefaultRelay()
	cfg.Channels = []config.Channel{{Name: "vendor", Type: "openai", BaseURL: v.srv.URL, Keys: []string{"sk-vendor"}, Models: []string{"vendor-chat"},
		Timeouts: config.ChannelTimeouts{Connect: time.Second, FirstByte: 5 * time.Second, Idle: 30 * time.Second}}}
	if limits != nil {
		limits(&cfg.Limits)
	}
	cfg.Complete()
	st := tokenstest.Open(t, filepath.Join(t.TempDir(), "relay.db"))
	ul, err := usage.New(st, config.UsageConfig{FlushInterval: 20 * time.Millisecond, Retention: time.Hour}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	a := auth.New(st, cfg.Limits, "admin-key-0123456789abcdef", log)
	rl := &Relay{cfg: cfg, log: log, store: st, auth: a, usage: ul, chain: chain.New(cfg, nil, a, ul, log)}
	r := chi.NewRouter()
	rl.mountApp(r)
	srv := httptest.NewServer(r)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = ul.Run(ctx) })
	wg.Go(func() { rl.app.Run(ctx) })
	// Last in, first out: the server's connections close, the vendor lets go of what it
	// holds, then the app and the usage log stop, and the store closes after them.
	t.Cleanup(func() { cancel(); wg.Wait() })
	t.Cleanup(func() { v.let() })
	t.Cleanup(srv.Close)
	w := &appRelay{url: srv.URL, store: st, vendor: v, tokens: map[string]string{}}
	for _, name := range []string{"alice", "mallory"} {
		secret, _, err := st.Create(t.Context(), tokens.Spec{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		w.tokens[name] = secret
	}
	return w
}

// call sends method path with the named token ("" none; a name not in tokens is sent as the
// secret itself); the caller closes the body.
func (w *appRelay) call(t *testing.T, method, path, token, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, w.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		secret, ok := w.tokens[token]
		if !ok {
			secret = token
		}
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// status is call's status and error code (from either error dialect), the body read.
func (w *appRelay) status(t *testing.T, method, path, token string) (int, string) {
	t.Helper()
	resp := w.call(t, method, path, token, "")
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	_ = json.Unmarshal(b, &e)
	var openai struct{ Code string }
	if json.Unmarshal(e.Error, &openai) == nil && openai.Code != "" {
		return resp.StatusCode, openai.Code
	}
	return resp.StatusCode, strings.Trim(string(e.Error), `"`)
}

const appChat = `{"model":"vendor-chat","stream":true,"messages":[{"role":"user","content":"count"}]}`

func (w *appRelay) start(t *testing.T, token string) string {
	t.Helper()
	resp := w.call(t, http.MethodPost, "/app/v1/generations", token, appChat)
	defer resp.Body.Close()
	var g struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&g); err != nil || resp.StatusCode != http.StatusCreated || g.ID == "" {
		t.Fatalf("POST /app/v1/generations as %s: %d %v, want 201 with an id", token, resp.StatusCode, err)
	}
	return g.ID
}

// content reads an events stream: the answer's text so far when upTo is found in it, or the
// whole text and the end state when the stream ends first.
func content(t *testing.T, resp *http.Response, upTo string) (text, end string) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("events: %d %s, want 200", resp.StatusCode, b)
	}
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
			continue
		}
		d, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			if line == "" {
				event = ""
			}
			continue
		}
		if event == "end" {
			var v struct{ State string }
			_ = json.Unmarshal([]byte(d), &v)
			return b.String(), v.State
		}
		var c struct {
			Choices []struct{ Delta struct{ Content string } }
		}
		if json.Unmarshal([]byte(d), &c) == nil && len(c.Choices) > 0 {
			b.WriteString(c.Choices[0].Delta.Content)
		}
		if upTo != "" && strings.Contains(b.String(), upTo) {
			return b.String(), ""
		}
	}
	return b.String(), "(stream cut)"
}

func TestAppGenerationsOnlyForTheirToken(t *testing.T) {
	w := startAppRelay(t, nil)
	id := w.start(t, "alice")
	gen := "/app/v1/generations/" + id

	// The owner reads the answer while it runs.
	live := w.call(t, http.MethodGet, gen+"/events", "alice", "")
	if text, _ := content(t, live, "one "); text != "one " {
		t.Fatalf("the owner's stream of the running answer: %q, want \"one \"", text)
	}

	for _, c := range []struct {
		name, method, path, token string
		status                    int
		code                      string
	}{
		{"another token reads the events", http.MethodGet, "/events", "mallory", 404, "not_found"},
		{"another token reads the state", http.MethodGet, "", "mallory", 404, "not_found"},
		{"another token stops it", http.MethodDelete, "", "mallory", 404, "not_found"},
		{"no token reads the events", http.MethodGet, "/events", "", 401, "missing_api_key"},
		{"no token stops it", http.MethodDelete, "", "", 401, "missing_api_key"},
		{"a wrong token reads the events", http.MethodGet, "/events", "not-a-token", 401, "invalid_api_key"},
		{"the secret in the URL instead of the header", http.MethodGet, "/events?token=" + w.tokens["alice"] + "&access_token=" + w.tokens["alice"], "", 401,
			"missing_api_key"},
	} {
		if status, code := w.status(t, c.method, gen+c.path, c.token); status != c.status || code != c.code {
			t.Errorf("%s: %d %q, want %d %q", c.name, status, code, c.status, c.code)
		}
	}
	if _, canceled := w.vendor.counts(); canceled != 0 {
		t.Errorf("the vendor saw %d cancelled answers after the others' DELETEs, want 0", canceled)
	}

	// The owner stops a second running answer; the vendor sees the cancel.
	id2 := w.start(t, "alice")
	if status, code := w.status(t, http.MethodDelete, "/app/v1/generations/"+id2, "mallory"); status != 404 {
		t.Errorf("mallory stops alice's second answer: %d %q, want 404", status, code)
	}
	if status, code := w.status(t, http.MethodDelete, "/app/v1/generations/"+id2, "alice"); status != 200 {
		t.Errorf("alice stops her second answer: %d %q, want 200", status, code)
	}
	// The vendor notices the closed connection a moment after the relay let go of it.
	hearthtest.Eventually(t, "the vendor seeing alice's stop", 5*time.Second, func() bool {
		_, canceled := w.vendor.counts()
		return canceled == 1
	})

	// The first answer ends; its owner reads all of it again from the start.
	w.vendor.let()
	if text, end := content(t, w.call(t, http.MethodGet, gen+"/events", "alice", ""), ""); text != "one two three" || end != "done" {
		t.Errorf("the owner's replay of the finished answer: %q %s, want \"one two three\" done", text, end)
	}

	// Revoked, the token reads and stops nothing, at once: the kept answer included.
	if err := w.store.Revoke(t.Context(), "alice"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, path string }{{http.MethodGet, "/events"}, {http.MethodGet, ""}, {http.MethodDelete, ""}} {
		if status, code := w.status(t, c.method, gen+c.path, "alice"); status != 401 || code != "token_revoked" {
			t.Errorf("%s %s with alice revoked: %d %q, want 401 token_revoked", c.method, c.path, status, code)
		}
	}
	if status, code := w.status(t, http.MethodPost, "/app/v1/generations", "alice"); status != 401 || code != "token_revoked" {
		t.Errorf("a new generation with alice revoked: %d %q, want 401 token_revoked", status, code)
	}
}

// TestAppGenerationsShareTheLimits: reading a generation spends the address's request budget
// as /v1 does, and wrong tokens against it count toward the address's lockout.
func TestAppGenerationsShareTheLimits(t *testing.T) {
	t.Run("address rate", func(t *testing.T) {
		w := startAppRelay(t, func(l *config.RelayLimits) { l.IPRequestsPerMinute = 4 })
		id := w.start(t, "alice") // 1
		gen := "/app/v1/generations/" + id
		for i := 2; i <= 4; i++ {
			if status, code := w.status(t, http.MethodGet, gen, "alice"); status != 200 {
				t.Fatalf("request %d of 4 a minute: %d %q, want 200", i, status, code)
			}
		}
		for _, token := range []string{"alice", "mallory"} {
			if status, code := w.status(t, http.MethodGet, gen+"/events", token); status != 429 || code != "rate_limit_exceeded" {
				t.Errorf("the 5th request of the address (%s): %d %q, want 429 rate_limit_exceeded", token, status, code)
			}
		}
	})
	t.Run("lockout", func(t *testing.T) {
		w := startAppRelay(t, func(l *config.RelayLimits) { l.AuthFailures = 3 })
		id := w.start(t, "alice")
		gen := "/app/v1/generations/" + id
		for i := range 3 {
			if status, _ := w.status(t, http.MethodGet, gen+"/events", "guess-"+fmt.Sprint(i)); status != 401 {
				t.Fatalf("guess %d: %d, want 401", i, status)
			}
		}
		for _, path := range []string{gen + "/events", gen} {
			if status, code := w.status(t, http.MethodGet, path, "guess-3"); status != 429 || code != "too_many_auth_failures" {
				t.Errorf("GET %s after 3 guesses: %d %q, want 429 too_many_auth_failures", path, status, code)
			}
		}
		// The credential is checked before the lockout: the owner behind the same address
		// still stops her answer.
		if status, code := w.status(t, http.MethodDelete, gen, "alice"); status != 200 {
			t.Errorf("the owner's stop from the locked-out address: %d %q, want 200", status, code)
		}
	})
}

// TestAppRevokeEndsRunningAnswers: a token revoked while its answer runs loses that answer
// too: the upstream call is cancelled, the open stream ends, and nothing of it is kept.
func TestAppRevokeEndsRunningAnswers(t *testing.T) {
	w := startAppRelay(t, nil)
	id := w.start(t, "alice")
	other := w.start(t, "mallory")
	live := w.call(t, http.MethodGet, "/app/v1/generations/"+id+"/events", "alice", "")
	defer live.Body.Close()
	// The stream is read here to its end, in the background: "one " first, then whatever
	// comes until the relay ends it.
	got := make(chan string, 1)
	sawOne := make(chan struct{})
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(live.Body)
		one := sync.OnceFunc(func() { close(sawOne) })
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), `"one "`) {
				one()
			}
		}
		got <- all.String()
	}()
	select {
	case <-sawOne:
	case <-time.After(10 * time.Second):
		t.Fatal("alice's stream did not bring \"one \" within 10 s")
	}
	if err := w.store.Revoke(t.Context(), "alice"); err != nil {
		t.Fatal(err)
	}
	select {
	case all := <-got:
		if strings.Contains(all, "two") {
			t.Errorf("alice's stream after the revoke brought the held rest of the answer:\n%s", all)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("alice's open stream still runs 10 s after her token was revoked")
	}
	hearthtest.Eventually(t, "the vendor seeing the revoked answer cancelled", 10*time.Second, func() bool {
		_, canceled := w.vendor.counts()
		return canceled == 1
	})
	// Another token's answer runs on.
	w.vendor.let()
	if text, end := content(t, w.call(t, http.MethodGet, "/app/v1/generations/"+other+"/events", "mallory", ""), ""); text != "one two three" || end != "done" {
		t.Errorf("mallory's answer beside the revoke: %q %s, want \"one two three\" done", text, end)
	}
}
