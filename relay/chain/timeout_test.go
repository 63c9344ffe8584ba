package chain

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/modelname"
)

// newSlowVendor is a vendor that sends nothing, not even its headers, for delay: a model
// loading, or a whole non-streamed answer being generated.
func newSlowVendor(t *testing.T, delay time.Duration) *vendor {
	v := &vendor{}
	v.mode.Store("ok")
	v.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay):
			v.serve(w, r)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(v.srv.Close)
	return v
}

// TestChainAnswerTimeout: a non-streamed answer may take up to timeouts.answer, however long
// past timeouts.first_byte; past it, or past first_byte for a stream, the chain moves on and
// says which timeout ran out.
func TestChainAnswerTimeout(t *testing.T) {
	const delay = 700 * time.Millisecond
	for _, tc := range []struct {
		name, path, body string
		answer           time.Duration
		withB            bool
		status           int
		channel          string // that served
		why              string // in the answer, or in a's last error when b served
	}{
		{"whole answer within answer", "/v1/chat/completions", chatBody, 5 * time.Second, true, 200, "a", ""},
		{"ollama whole answer within answer", "/api/chat", `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`, 5 * time.Second, true, 200, "a", ""},
		{"past answer moves on", "/v1/chat/completions", chatBody, 300 * time.Millisecond, true, 200, "b", "no answer within timeouts.answer 300ms"},
		{"past answer, nothing else", "/v1/chat/completions", chatBody, 300 * time.Millisecond, false, 503, "", "a: no answer within timeouts.answer 300ms"},
		{"stream past first_byte moves on", "/v1/chat/completions", streamBody, 5 * time.Second, true, 200, "b", "no first byte within timeouts.first_byte 500ms"},
		{"stream past first_byte, nothing else", "/v1/chat/completions", streamBody, 5 * time.Second, false, 503, "", "a: no first byte within timeouts.first_byte 500ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newSlowVendor(t, delay), newVendor(t)
			chA := vendorChannel("a", a, 0, "m")
			chA.Timeouts = config.ChannelTimeouts{Connect: time.Second, FirstByte: 500 * time.Millisecond, Idle: 500 * time.Millisecond, Answer: tc.answer}
			channels := []config.Channel{chA}
			if tc.withB {
				channels = append(channels, vendorChannel("b", b, 10, "m"))
			}
			w := startChain(t, channels, nil)
			resp, body := w.post(t, tc.path, tc.body)
			if resp.StatusCode != tc.status || resp.Header.Get("X-Hearth-Channel") != tc.channel {
				t.Fatalf("%d via %q, want %d via %q: %s", resp.StatusCode, resp.Header.Get("X-Hearth-Channel"), tc.status, tc.channel, body)
			}
			if tc.status == 200 && !strings.Contains(body, "hel") {
				t.Errorf("no answer in %s", body)
			}
			if tc.channel == "a" && b.calls.Load() != 0 {
				t.Errorf("b was called %d times for an answer a gave", b.calls.Load())
			}
			var aView ChannelView
			for _, c := range w.chain.Channels() {
				if c.Name == "a" {
					aView = c
				}
			}
			switch {
			case tc.channel == "a":
				if aView.LastError != "" || aView.SuccessRate != 1 {
					t.Errorf("a after serving: %+v", aView)
				}
			case tc.channel == "b":
				if !strings.Contains(aView.LastError, tc.why) {
					t.Errorf("a's last error %q, want %q", aView.LastError, tc.why)
				}
			default:
				if !strings.Contains(body, tc.why) {
					t.Errorf("answer %s, want it to say %q", body, tc.why)
				}
			}
		})
	}
}

func TestModelGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		glob, model string
		want        bool
	}{
		{"*", "hf.co/org/m:q4", true},
		{"*", "qwen3", true},
		{"hf.co/*", "hf.co/org/m:q4", true},
		{"hf.co/org/*", "hf.co/org/m:q4", true},
		{"*:q4", "hf.co/org/m:q4", true},
		{"hf.co/other/*", "hf.co/org/m:q4", false},
		{"qwen3:*", "qwen3", true},
		{"qwen3:*", "Qwen3:8B", true},
		{"qwen3:?b", "qwen3:8b", true},
		{"qwen3:*", "qwen2.5:7b", false},
		{"qwen3", "qwen3:latest", true},
		{"qwen3:latest", "qwen3", true},
		{"qwen3", "qwen3:8b", false},
		{"llama3", "llama3.1", false},
		{"gpt-4o", "gpt-4o", true},
		{"gpt-4o", "gpt-4o-mini", false},
		{"deepseek-*", "deepseek-chat", true},
		{"Qwen/*", "Qwen/Qwen3-8B", true},
		{"Qwen/Qwen3-8B", "Qwen/Qwen3-8B", true},
	} {
		if got := modelname.Match(tc.glob, tc.model); got != tc.want {
			t.Errorf("modelname.Match(%q, %q) = %v, want %v", tc.glob, tc.model, got, tc.want)
		}
	}
}

// TestChainRouteAndChannelGlobs: route and channel globs match slashed and bare names; the
// upstream gets the name the client sent unless a route or map renames it, and the client
// sees its own name.
func TestChainRouteAndChannelGlobs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		models   []string
		mapped   map[string]string
		routes   []config.Route
		model    string
		status   int
		upstream string
	}{
		{"star route takes a slashed name", []string{"deepseek-chat"}, nil,
			[]config.Route{{Model: "*", Fallback: []string{"v/deepseek-chat"}}}, "hf.co/org/m:q4", 200, "deepseek-chat"},
		{"slashed route glob", []string{"deepseek-chat"}, nil,
			[]config.Route{{Model: "hf.co/*", Fallback: []string{"v/deepseek-chat"}}}, "hf.co/org/m:q4", 200, "deepseek-chat"},
		{"bare name, tagged route glob", []string{"deepseek-chat"}, nil,
			[]config.Route{{Model: "qwen3:*", Fallback: []string{"v/deepseek-chat"}}}, "qwen3", 200, "deepseek-chat"},
		{"channel glob with a slash", []string{"hf.co/org/*"}, nil, nil, "hf.co/org/m:q4", 200, "hf.co/org/m:q4"},
		{"star channel glob", []string{"*"}, nil, nil, "hf.co/org/m:q4", 200, "hf.co/org/m:q4"},
		{"bare name, tagged channel glob", []string{"qwen3:*"}, nil, nil, "qwen3", 200, "qwen3"},
		{"map by the normalised name", nil, map[string]string{"qwen3:latest": "qwen-max"}, nil, "qwen3", 200, "qwen-max"},
		{"no glob matches", []string{"qwen3:*"}, nil,
			[]config.Route{{Model: "hf.co/other/*", Fallback: []string{"v/deepseek-chat"}}}, "hf.co/org/m:q4", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVendor(t)
			ch := vendorChannel("v", v, 0, tc.models...)
			ch.Map = tc.mapped
			w := startChain(t, []config.Channel{ch}, tc.routes)
			resp, body := w.post(t, "/v1/chat/completions", `{"model":"`+tc.model+`","messages":[{"role":"user","content":"hi"}]}`)
			if resp.StatusCode != tc.status {
				t.Fatalf("%d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status != 200 {
				if !strings.Contains(body, "model_not_found") || v.calls.Load() != 0 {
					t.Errorf("body %s, vendor called %d times", body, v.calls.Load())
				}
				return
			}
			if got := resp.Header.Get("X-Hearth-Model"); got != tc.upstream {
				t.Errorf("X-Hearth-Model %q, want %q", got, tc.upstream)
			}
			if sent := string(v.last.Load().([]byte)); !strings.Contains(sent, `"model":"`+tc.upstream+`"`) {
				t.Errorf("upstream got %s, want model %q", sent, tc.upstream)
			}
			if !strings.Contains(body, `"model":"`+tc.model+`"`) {
				t.Errorf("client sees %s, want model %q", body, tc.model)
			}
		})
	}
}

// TestChainAnthropicUnsupportedMovesOn: a request an Anthropic channel cannot take (audio)
// goes to the next channel without counting against the Anthropic channel or its key; with
// no other channel the answer says why. A malformed request is still the client's 400.
func TestChainAnthropicUnsupportedMovesOn(t *testing.T) {
	const audio = `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAA","format":"wav"}}]}]}`
	for _, tc := range []struct {
		name, body string
		withB      bool
		status     int
		channel    string
		want       string
	}{
		{"next channel serves", audio, true, 200, "b", "hello there friend"},
		{"nothing else serves", audio, false, 503, "", `claude: cannot take this request: anthropic request: messages[0]: content[0]: type \"input_audio\": not supported by Anthropic channels`},
		{"malformed is the client's", `{"model":"m","messages":[{"role":"function","content":"x"}]}`, true, 400, "", `role \"function\"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claudeAPI, b := newVendor(t), newVendor(t)
			channels := []config.Channel{{Name: "claude", Type: "anthropic", BaseURL: claudeAPI.srv.URL, Keys: []string{"sk-claude"}, Models: []string{"m"}}}
			if tc.withB {
				channels = append(channels, vendorChannel("b", b, 10, "m"))
			}
			w := startChain(t, channels, nil)
			for i := 0; i < 4; i++ { // more than the breaker's 3 failures
				resp, body := w.post(t, "/v1/chat/completions", tc.body)
				if resp.StatusCode != tc.status || resp.Header.Get("X-Hearth-Channel") != tc.channel || !strings.Contains(body, tc.want) {
					t.Fatalf("request %d: %d via %q: %s; want %d via %q with %q", i, resp.StatusCode, resp.Header.Get("X-Hearth-Channel"), body, tc.status, tc.channel, tc.want)
				}
			}
			if n := claudeAPI.calls.Load(); n != 0 {
				t.Errorf("Anthropic's API was called %d times", n)
			}
			c := w.chain.Channels()[0]
			if c.Name != "claude" || c.State != "closed" || c.Requests != 0 || c.LastError != "" || len(c.Keys) != 1 || c.Keys[0].State != "closed" || c.Keys[0].Disabled != "" {
				t.Errorf("claude counted what it could not take: %+v", c)
			}
			if st := w.chain.state.Load().channels[0]; st.brk.fails != 0 || st.keys[0].brk.fails != 0 {
				t.Errorf("breaker failures: channel %d, key %d", st.brk.fails, st.keys[0].brk.fails)
			}
		})
	}
}
