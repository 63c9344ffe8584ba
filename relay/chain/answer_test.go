package chain

// How the chain writes a vendor's answer back to an Ollama-dialect client: vendor errors in
// Ollama's {"error":"..."}, and usage estimated when the vendor reports none.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/relay/usage"
)

// failingVendor answers every request with status and body.
func failingVendor(t *testing.T, status int, contentType, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// bearerTransport adds the relay token to the Ollama client's requests.
type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func (w *chainWorld) ollamaClient(t *testing.T) *api.Client {
	t.Helper()
	base, err := url.Parse(w.url)
	if err != nil {
		t.Fatal(err)
	}
	return api.NewClient(base, &http.Client{Transport: bearerTransport{w.token}, Timeout: 10 * time.Second})
}

// A vendor's error answer reaches an Ollama client as {"error":"<the vendor's message>"} with
// the vendor's status, and the Ollama Go client reports that message; /v1 clients still get
// the OpenAI shape.
func TestChainOllamaDialectVendorErrors(t *testing.T) {
	long := strings.Repeat("overflow ", 400)
	for _, tc := range []struct {
		name, kind        string
		status            int
		contentType, body string
		want              string // the message the Ollama client gets
		v1                string // what /v1 gets in its body
	}{
		{"openai context length", "openai", 400, "application/json",
			`{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9001 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`,
			"This model's maximum context length is 8192 tokens. However, your messages resulted in 9001 tokens.",
			`"code":"context_length_exceeded"`},
		{"anthropic prompt too long", "anthropic", 400, "application/json",
			`{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}`,
			"prompt is too long: 210000 tokens > 200000 maximum",
			`{"error":{"message":"prompt is too long: 210000 tokens > 200000 maximum"`},
		{"plain error string", "openai", 422, "application/json", `{"error":"context length exceeded"}`,
			"context length exceeded", `{"error":"context length exceeded"}`},
		{"raw text", "openai", 404, "text/plain", "model gpt-9 does not exist\n",
			"model gpt-9 does not exist", "model gpt-9 does not exist"},
		{"html", "openai", 413, "text/html", "<html>\n<body>\n<h1>413 Request Entity Too Large</h1>\n</body>\n</html>\n",
			"<html> <body> <h1>413 Request Entity Too Large</h1> </body> </html>", "<h1>413 Request Entity Too Large</h1>"},
		{"empty", "anthropic", 403, "", "", "the vendor answered 403 Forbidden", `"message":"upstream error: 403 Forbidden"`},
		{"long", "openai", 400, "text/plain", long, strings.TrimSpace(long)[:vendorErrorMax] + "…", "overflow overflow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := failingVendor(t, tc.status, tc.contentType, tc.body)
			ch := config.Channel{Name: "v", Type: tc.kind, BaseURL: srv.URL, Keys: []string{"sk-v"}, Models: []string{"m"}}
			w := startChain(t, []config.Channel{ch}, nil)
			wantBody, _ := json.Marshal(struct {
				Error string `json:"error"`
			}{tc.want})

			for _, call := range []struct{ path, body string }{
				{"/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
				{"/api/chat", `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`},
				{"/api/generate", `{"model":"m","prompt":"hi"}`},
				{"/api/generate", `{"model":"m","stream":false,"prompt":"hi"}`},
			} {
				resp, body := w.post(t, call.path, call.body)
				if resp.StatusCode != tc.status || strings.TrimSuffix(body, "\n") != string(wantBody) {
					t.Errorf("%s %s: %d %q, want %d %s", call.path, call.body, resp.StatusCode, body, tc.status, wantBody)
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("%s: Content-Type %q", call.path, ct)
				}
			}

			client := w.ollamaClient(t)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			stream := false
			errs := map[string]error{
				"chat stream": client.Chat(ctx, &api.ChatRequest{Model: "m", Messages: []api.Message{{Role: "user", Content: "hi"}}},
					func(api.ChatResponse) error { return nil }),
				"generate": client.Generate(ctx, &api.GenerateRequest{Model: "m", Prompt: "hi", Stream: &stream},
					func(api.GenerateResponse) error { return nil }),
			}
			for name, err := range errs {
				var se api.StatusError
				if !errors.As(err, &se) || se.StatusCode != tc.status || se.ErrorMessage != tc.want || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Ollama client %s: %#v (%v), want status %d with %q", name, err, err, tc.status, tc.want)
				}
			}

			resp, body := w.post(t, "/v1/chat/completions", chatBody)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.v1) {
				t.Errorf("/v1: %d %s, want %d with %s", resp.StatusCode, body, tc.status, tc.v1)
			}
		})
	}
}

// A vendor that reports no usage to an Ollama client is counted by estimate (prompt from the
// request, completion from the answer), stream or not; one that reports usage is not estimated.
func TestChainOllamaDialectEstimatesMissingUsage(t *testing.T) {
	counted, guessed := newVendor(t), newVendor(t)
	guessed.mode.Store("nousage")
	w := startChain(t, []config.Channel{vendorChannel("counted", counted, 0, "a"), vendorChannel("guessed", guessed, 0, "b")}, nil)
	for _, call := range []struct{ path, body string }{
		{"/api/chat", `{"model":"a","messages":[{"role":"user","content":"how are you today?"}]}`},
		{"/api/chat", `{"model":"b","messages":[{"role":"user","content":"how are you today?"}]}`},
		{"/api/generate", `{"model":"b","stream":false,"prompt":"how are you today?"}`},
	} {
		resp, body := w.post(t, call.path, call.body)
		if resp.StatusCode != 200 || !strings.Contains(body, `"done":true`) {
			t.Fatalf("%s %s: %d %s", call.path, call.body, resp.StatusCode, body)
		}
	}
	byChannel := map[string]usage.Row{}
	for _, r := range w.rows(t, 3) {
		byChannel[r.Key] = r
	}
	c, g := byChannel["counted"], byChannel["guessed"]
	if c.Requests != 1 || c.PromptTokens != 11 || c.CompletionTokens != 3 || c.EstimatedShare != 0 {
		t.Errorf("reported usage: %+v", c)
	}
	// "hello there" (stream) and "hello there friend" (whole): 3 + 5 estimated tokens.
	if g.Requests != 2 || g.PromptTokens < 2*4 || g.CompletionTokens < 8 || g.EstimatedShare <= 0 {
		t.Errorf("estimated usage: %+v", g)
	}
}

// A whole (non-streamed) answer that the upstream breaks off part-way reaches the client as
// a 502 in its dialect, not as a 200 with half a JSON body.
func TestChainWholeAnswerBrokenOff(t *testing.T) {
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assi`)
		w.(http.Flusher).Flush()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(cut.Close)
	ch := config.Channel{Name: "cut", Type: "openai", BaseURL: cut.URL, Keys: []string{"sk-cut"}, Models: []string{"m"}}
	w := startChain(t, []config.Channel{ch}, nil)
	resp, body := w.post(t, "/v1/chat/completions", chatBody)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, `"message":"the upstream broke off its answer part-way`) {
		t.Fatalf("%d: %s", resp.StatusCode, body)
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code != "upstream_broken" {
		t.Errorf("not an OpenAI error body: %s (%v)", body, err)
	}
}

// A whole answer that ends cleanly but is not JSON (a vendor that stops writing early and
// sends no Content-Length) is a 502 too, not a 200 that no client can parse.
func TestChainWholeAnswerNotJSON(t *testing.T) {
	short := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"c1","object":"chat.completion","choices":[{"message":`)
	}))
	t.Cleanup(short.Close)
	ch := config.Channel{Name: "short", Type: "openai", BaseURL: short.URL, Keys: []string{"sk-short"}, Models: []string{"m"}}
	w := startChain(t, []config.Channel{ch}, nil)
	resp, body := w.post(t, "/v1/chat/completions", chatBody)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, `"code":"upstream_broken"`) || !strings.Contains(body, "not JSON") {
		t.Fatalf("%d: %s", resp.StatusCode, body)
	}
}
