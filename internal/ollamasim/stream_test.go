package ollamasim

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestOllamaStream(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny"}}})
	c := newClient(t)
	tests := []struct {
		name       string
		path, body string
		wantTokens int
		wantReason string
		field      string // where the text is: "message.content" or "response"
	}{
		{"chat default streams", "/api/chat", chatBody("tiny", true, ""), 8, "stop", "message"},
		{"chat num_predict smaller wins", "/api/chat", chatBody("tiny", true, `"options":{"num_predict":3}`), 3, "length", "message"},
		{"chat num_predict larger ignored", "/api/chat", chatBody("tiny:latest", true, `"options":{"num_predict":20}`), 8, "stop", "message"},
		{"generate", "/api/generate", `{"model":"tiny","prompt":"hello there"}`, 8, "stop", "response"},
		{"generate num_predict", "/api/generate", `{"model":"tiny","prompt":"hi","options":{"num_predict":1}}`, 1, "length", "response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := post(t, c, s.URL()+tt.path, tt.body)
			if res.status != 200 || res.header.Get("Content-Type") != "application/x-ndjson" {
				t.Fatalf("status %d content type %q, want 200 application/x-ndjson", res.status, res.header.Get("Content-Type"))
			}
			lines := ndjson(t, res.body)
			if len(lines) != tt.wantTokens+1 {
				t.Fatalf("%d lines, want %d tokens and a final one:\n%s", len(lines), tt.wantTokens, res.body)
			}
			sentModel := decode[map[string]any](t, tt.body)["model"]
			for i, line := range lines[:tt.wantTokens] {
				m := decode[map[string]any](t, line)
				if got := text(m, tt.field); got != fmt.Sprintf("tok%d ", i) || m["done"] != false || m["model"] != sentModel {
					t.Errorf("line %d = %s, want text tok%d, done false, model %v", i, line, i, sentModel)
				}
			}
			final := decode[map[string]any](t, lines[tt.wantTokens])
			if final["done"] != true || final["done_reason"] != tt.wantReason || text(final, tt.field) != "" {
				t.Errorf("final line %s: want done, done_reason %s, empty text", lines[tt.wantTokens], tt.wantReason)
			}
			for _, k := range []string{"total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_duration"} {
				if n, _ := final[k].(json.Number).Int64(); n <= 0 {
					t.Errorf("final %s = %v, want > 0", k, final[k])
				}
			}
			if n, _ := final["eval_count"].(json.Number).Int64(); n != int64(tt.wantTokens) {
				t.Errorf("eval_count %v, want %d", final["eval_count"], tt.wantTokens)
			}
			if tt.path == "/api/generate" {
				ctx, _ := final["context"].([]any)
				p, _ := final["prompt_eval_count"].(json.Number).Int64()
				if len(ctx) != int(p)+tt.wantTokens {
					t.Errorf("context has %d ids, want prompt %d + %d", len(ctx), p, tt.wantTokens)
				}
			}
		})
	}
}

// text is the generated text of an /api/chat or /api/generate object.
func text(m map[string]any, field string) string {
	if field == "message" {
		msg, _ := m["message"].(map[string]any)
		if msg["role"] != "assistant" {
			return fmt.Sprintf("<role %v>", msg["role"])
		}
		s, _ := msg["content"].(string)
		return s
	}
	s, _ := m[field].(string)
	return s
}

func TestOpenAIStream(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny"}}, Tokens: 4})
	c := newClient(t)
	msgs := `"messages":[{"role":"user","content":"hello"}]`
	tests := []struct {
		name        string
		path, body  string
		object      string
		wantTokens  int
		wantReason  string
		wantUsage   bool // a usage chunk with empty choices before [DONE]
		usageInEach bool // Ollama's completions put a zero usage in every chunk
	}{
		{"chat", "/v1/chat/completions", `{"model":"tiny","stream":true,` + msgs + `}`, "chat.completion.chunk", 4, "stop", false, false},
		{"chat include_usage", "/v1/chat/completions", `{"model":"tiny","stream":true,"stream_options":{"include_usage":true},` + msgs + `}`, "chat.completion.chunk", 4, "stop", true, false},
		{"chat max_tokens", "/v1/chat/completions", `{"model":"tiny","stream":true,"max_tokens":2,` + msgs + `}`, "chat.completion.chunk", 2, "length", false, false},
		{"completions", "/v1/completions", `{"model":"tiny","stream":true,"prompt":"hi"}`, "text_completion", 4, "stop", false, false},
		{"completions include_usage", "/v1/completions", `{"model":"tiny","stream":true,"prompt":"hi","stream_options":{"include_usage":true}}`, "text_completion", 4, "stop", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := post(t, c, s.URL()+tt.path, tt.body)
			if res.status != 200 || res.header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("status %d content type %q, want 200 text/event-stream", res.status, res.header.Get("Content-Type"))
			}
			events := sseData(t, res.body)
			want := tt.wantTokens + 2 // tokens, the finish_reason chunk, [DONE]
			if tt.wantUsage {
				want++
			}
			if len(events) != want || events[len(events)-1] != "[DONE]" {
				t.Fatalf("%d events, want %d ending in [DONE]:\n%s", len(events), want, res.body)
			}
			id := ""
			for i, ev := range events[:len(events)-1] {
				m := decode[map[string]any](t, ev)
				if id == "" {
					id, _ = m["id"].(string)
				}
				if m["object"] != tt.object || m["id"] != id || m["model"] != "tiny" || m["system_fingerprint"] != "fp_ollama" {
					t.Errorf("event %d = %s: want object %s, one id, model tiny", i, ev, tt.object)
				}
				_, hasUsage := m["usage"]
				choices, _ := m["choices"].([]any)
				if tt.wantUsage && i == len(events)-2 {
					u, _ := m["usage"].(map[string]any)
					if len(choices) != 0 || u["completion_tokens"] != json.Number(fmt.Sprint(tt.wantTokens)) {
						t.Errorf("usage chunk %s: want empty choices and completion_tokens %d", ev, tt.wantTokens)
					}
					continue
				}
				if hasUsage != tt.usageInEach {
					t.Errorf("event %d has usage %v, want %v", i, hasUsage, tt.usageInEach)
				}
				if len(choices) != 1 {
					t.Fatalf("event %d: %d choices", i, len(choices))
				}
				ch := choices[0].(map[string]any)
				wantText, wantReason := fmt.Sprintf("tok%d ", i), any(nil)
				if i == tt.wantTokens {
					wantText, wantReason = "", tt.wantReason
				}
				got := ch["text"]
				if delta, ok := ch["delta"].(map[string]any); ok {
					got = delta["content"]
				}
				if got != wantText || ch["finish_reason"] != wantReason {
					t.Errorf("event %d = %s: want text %q finish_reason %v", i, ev, wantText, wantReason)
				}
			}
		})
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	tests := []string{"", "plain", `q"uote\`, "<html>&amp;", "tab\tnl\ncr\r", "\x00\x01\x1f\b\f", "é ü 漢字 🎉", "\u2028\u2029", "bad\xffutf8", "tiny:latest"}
	for _, s := range tests {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

func TestParseName(t *testing.T) {
	tests := []struct {
		in, display, namespace string
		ok                     bool
	}{
		{"tiny", "tiny:latest", "library", true},
		{"tiny:latest", "tiny:latest", "library", true},
		{"TINY:Latest", "TINY:Latest", "library", true},
		{"library/tiny:q4", "tiny:q4", "library", true},
		{"registry.ollama.ai/library/tiny", "tiny:latest", "library", true},
		{"user/model:v1.2", "user/model:v1.2", "user", true},
		{"example.com:5000/user/model", "example.com:5000/user/model:latest", "user", true},
		{"", "!MISSING!:latest", "library", false},
		{"tiny:", "tiny:!MISSING!", "library", false},
		{"bad name", "bad name:latest", "library", false},
		{"-dash", "-dash:latest", "library", false},
	}
	for _, tt := range tests {
		n, ok := parseName(tt.in)
		if n.display != tt.display || n.namespace != tt.namespace || ok != tt.ok {
			t.Errorf("parseName(%q) = %q ns %q ok %v, want %q ns %q ok %v", tt.in, n.display, n.namespace, ok, tt.display, tt.namespace, tt.ok)
		}
		if n.key != strings.ToLower(n.display) {
			t.Errorf("parseName(%q).key = %q, want lower-case display", tt.in, n.key)
		}
	}
}

func TestKeepAliveJSON(t *testing.T) {
	tests := []struct {
		in      string
		set     bool
		want    string
		wantErr string
	}{
		{`{}`, false, "0s", ""},
		{`{"keep_alive":null}`, false, "0s", ""},
		{`{"keep_alive":"10m"}`, true, "10m0s", ""},
		{`{"keep_alive":0}`, true, "0s", ""},
		{`{"keep_alive":"0"}`, true, "0s", ""},
		{`{"keep_alive":1.5}`, true, "1.5s", ""},
		{`{"keep_alive":-1}`, true, forever.String(), ""},
		{`{"keep_alive":"-5m"}`, true, forever.String(), ""},
		{`{"keep_alive":true}`, false, "", "Unsupported type: 'bool'"},
		{`{"keep_alive":"5"}`, false, "", `time: missing unit in duration "5"`},
	}
	for _, tt := range tests {
		var v struct {
			KeepAlive keepAlive `json:"keep_alive"`
		}
		err := json.Unmarshal([]byte(tt.in), &v)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%s: error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || v.KeepAlive.set != tt.set || v.KeepAlive.d.String() != tt.want {
			t.Errorf("%s: %+v %v, want set %v %s", tt.in, v.KeepAlive, err, tt.set, tt.want)
		}
	}
}

func TestEmbeddingDeterministicUnit(t *testing.T) {
	tests := []struct {
		a, b string
		dim  int
	}{{"hello", "world", 8}, {"", "x", 3}, {"long text here", "long text here!", 768}}
	for _, tt := range tests {
		va, vb := Embedding(tt.a, tt.dim), Embedding(tt.b, tt.dim)
		if len(va) != tt.dim || fmt.Sprint(va) != fmt.Sprint(Embedding(tt.a, tt.dim)) {
			t.Errorf("Embedding(%q, %d) = %v: wrong length or not deterministic", tt.a, tt.dim, va)
		}
		if fmt.Sprint(va) == fmt.Sprint(vb) {
			t.Errorf("Embedding(%q) == Embedding(%q)", tt.a, tt.b)
		}
		var sum float64
		for _, x := range va {
			sum += float64(x) * float64(x)
		}
		if sum < 0.999 || sum > 1.001 {
			t.Errorf("Embedding(%q) has squared norm %v, want 1", tt.a, sum)
		}
	}
}
