package hearthtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// VendorConfig is what a fake vendor answers.
type VendorConfig struct {
	// Model is the only model it serves; a request for another gets its 400.
	Model string
	// Tokens are the answer's pieces, one SSE chunk each when streamed. Default "from ",
	// "the ", "vendor".
	Tokens []string
	// PromptTokens and CompletionTokens are the usage it reports. Default 5 and 3.
	PromptTokens, CompletionTokens int
}

// Vendor is a fake OpenAI-compatible vendor API (POST /chat/completions, streamed or whole)
// on 127.0.0.1, beside internal/ollamasim for the home side: what the relay's vendor
// channels call in tests.
type Vendor struct {
	URL   string // the base URL, for a channel's base_url
	calls atomic.Int32
}

// Calls is how many requests it has had.
func (v *Vendor) Calls() int { return int(v.calls.Load()) }

// NewVendor starts a fake vendor, closed when the test ends.
func NewVendor(t testing.TB, cfg VendorConfig) *Vendor {
	t.Helper()
	if len(cfg.Tokens) == 0 {
		cfg.Tokens = []string{"from ", "the ", "vendor"}
	}
	if cfg.PromptTokens == 0 && cfg.CompletionTokens == 0 {
		cfg.PromptTokens, cfg.CompletionTokens = 5, 3
	}
	v := &Vendor{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v.calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		var req struct {
			Model  string `json:"model"`
			Stream bool   `json:"stream"`
		}
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
			http.Error(w, "this fake vendor serves POST /chat/completions", http.StatusNotFound)
			return
		}
		if err := json.Unmarshal(body, &req); err != nil || req.Model != cfg.Model {
			http.Error(w, "wrong model: "+string(body), http.StatusBadRequest)
			return
		}
		usage := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d}`, cfg.PromptTokens, cfg.CompletionTokens)
		if !req.Stream {
			content, _ := json.Marshal(strings.Join(cfg.Tokens, ""))
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":%s},"finish_reason":"stop"}],"usage":%s}`, cfg.Model, content, usage)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, tok := range cfg.Tokens {
			fmt.Fprintf(w, "data: {\"object\":\"chat.completion.chunk\",\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{\"content\":%q}}]}\n\n", cfg.Model, tok)
			w.(http.Flusher).Flush()
		}
		fmt.Fprintf(w, "data: {\"object\":\"chat.completion.chunk\",\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n", cfg.Model)
		fmt.Fprintf(w, "data: {\"object\":\"chat.completion.chunk\",\"model\":%q,\"choices\":[],\"usage\":%s}\n\ndata: [DONE]\n\n", cfg.Model, usage)
	}))
	t.Cleanup(srv.Close)
	v.URL = srv.URL
	return v
}
