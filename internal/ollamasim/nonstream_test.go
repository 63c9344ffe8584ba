package ollamasim

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestNonStreamBodies checks whole answers against templates: ⟨T⟩ is a timestamp, ⟨N⟩ a
// positive number, ⟨ID⟩ an OpenAI id; everything else must match byte for byte.
func TestNonStreamBodies(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny", EmbedDim: 3}}, Tokens: 3})
	c := newClient(t)
	msgs := `"messages":[{"role":"user","content":"hello"}]`
	tests := []struct {
		name         string
		method, path string
		body         string
		status       int
		contentType  string
		want         string
	}{
		{"chat", "POST", "/api/chat", chatBody("tiny", false, ""), 200, ctJSONGin,
			`{"model":"tiny","created_at":⟨T⟩,"message":{"role":"assistant","content":"tok0 tok1 tok2 "},"done":true,"done_reason":"stop","total_duration":⟨N⟩,"load_duration":⟨N⟩,"prompt_eval_count":⟨N⟩,"prompt_eval_duration":⟨N⟩,"eval_count":3,"eval_duration":⟨N⟩}`},
		{"generate", "POST", "/api/generate", `{"model":"tiny","prompt":"x","stream":false,"options":{"num_predict":2}}`, 200, ctJSONGin,
			`{"model":"tiny","created_at":⟨T⟩,"response":"tok0 tok1 ","done":true,"done_reason":"length","context":[100,101,102,103],"total_duration":⟨N⟩,"load_duration":⟨N⟩,"prompt_eval_count":2,"prompt_eval_duration":⟨N⟩,"eval_count":2,"eval_duration":⟨N⟩}`},
		{"generate empty prompt loads, even streaming", "POST", "/api/generate", `{"model":"tiny"}`, 200, ctJSONGin,
			`{"model":"tiny","created_at":⟨T⟩,"response":"","done":true,"done_reason":"load"}`},
		{"chat no messages loads", "POST", "/api/chat", `{"model":"tiny"}`, 200, ctJSONGin,
			`{"model":"tiny","created_at":⟨T⟩,"message":{"role":"assistant","content":""},"done":true,"done_reason":"load"}`},
		{"chat keep_alive 0 unloads", "POST", "/api/chat", `{"model":"tiny","keep_alive":0}`, 200, ctJSONGin,
			`{"model":"tiny","created_at":⟨T⟩,"message":{"role":"assistant","content":""},"done":true,"done_reason":"unload"}`},
		{"openai chat", "POST", "/v1/chat/completions", `{"model":"tiny",` + msgs + `}`, 200, ctJSON,
			`{"id":"chatcmpl-⟨N⟩","object":"chat.completion","created":⟨N⟩,"model":"tiny","system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant","content":"tok0 tok1 tok2 "},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}` + "\n"},
		{"openai completion", "POST", "/v1/completions", `{"model":"tiny","prompt":"x","max_tokens":1}`, 200, ctJSON,
			`{"id":"cmpl-⟨N⟩","object":"text_completion","created":⟨N⟩,"model":"tiny","system_fingerprint":"fp_ollama","choices":[{"text":"tok0 ","index":0,"finish_reason":"length"}],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}` + "\n"},
		{"openai completion empty prompt loads", "POST", "/v1/completions", `{"model":"tiny","prompt":""}`, 200, ctJSON,
			`{"id":"cmpl-⟨N⟩","object":"text_completion","created":⟨N⟩,"model":"tiny","system_fingerprint":"fp_ollama","choices":[{"text":"","index":0,"finish_reason":"load"}],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}` + "\n"},
		{"openai completion empty prompt streaming", "POST", "/v1/completions", `{"model":"tiny","prompt":"","stream":true}`, 200, ctSSE,
			`data: {"id":"cmpl-⟨N⟩","object":"text_completion","created":⟨N⟩,"choices":[{"text":"","index":0,"finish_reason":"load"}],"model":"tiny","system_fingerprint":"fp_ollama"}` + "\n\ndata: [DONE]\n\n"},
		{"embed", "POST", "/api/embed", `{"model":"tiny","input":["a","b"]}`, 200, ctJSONGin,
			`{"model":"tiny","embeddings":[` + vec(t, "a", 3) + `,` + vec(t, "b", 3) + `],"total_duration":⟨N⟩,"load_duration":⟨N⟩,"prompt_eval_count":2}`},
		{"embed dimensions", "POST", "/api/embed", `{"model":"tiny","input":"a","dimensions":2}`, 200, ctJSONGin,
			`{"model":"tiny","embeddings":[` + marshal(t, normalize(Embedding("a", 3)[:2])) + `],"total_duration":⟨N⟩,"load_duration":⟨N⟩,"prompt_eval_count":1}`},
		{"embed no input loads", "POST", "/api/embed", `{"model":"tiny"}`, 200, ctJSONGin, `{"model":"tiny","embeddings":[]}`},
		{"embeddings", "POST", "/api/embeddings", `{"model":"tiny","prompt":"a"}`, 200, ctJSONGin,
			`{"embedding":` + marshal(t, widen(Embedding("a", 3))) + `}`},
		{"openai embeddings", "POST", "/v1/embeddings", `{"model":"tiny","input":["a"]}`, 200, ctJSON,
			`{"object":"list","data":[{"object":"embedding","embedding":` + vec(t, "a", 3) + `,"index":0}],"model":"tiny","usage":{"prompt_tokens":1,"total_tokens":1}}` + "\n"},
		{"openai embeddings base64", "POST", "/v1/embeddings", `{"model":"tiny","input":"a","encoding_format":"base64"}`, 200, ctJSON,
			`{"object":"list","data":[{"object":"embedding","embedding":"` + b64(Embedding("a", 3)) + `","index":0}],"model":"tiny","usage":{"prompt_tokens":1,"total_tokens":1}}` + "\n"},
		{"version", "GET", "/api/version", "", 200, ctJSONGin, `{"version":"0.17.4"}`},
		{"root", "GET", "/", "", 200, ctText, "Ollama is running"},
		{"head root", "HEAD", "/", "", 200, ctText, ""},
		{"openai model", "GET", "/v1/models/tiny", "", 200, ctJSON, `{"id":"tiny","object":"model","created":⟨N⟩,"owned_by":"library"}` + "\n"},
		{"openai models", "GET", "/v1/models", "", 200, ctJSON, `{"object":"list","data":[{"id":"tiny:latest","object":"model","created":⟨N⟩,"owned_by":"library"}]}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(testCtx(t), t, c, tt.method, s.URL()+tt.path, tt.body)
			if res.status != tt.status || res.header.Get("Content-Type") != tt.contentType {
				t.Errorf("status %d content type %q, want %d %q", res.status, res.header.Get("Content-Type"), tt.status, tt.contentType)
			}
			if !matchTemplate(tt.want, res.body) {
				t.Errorf("body\n%s\nwant\n%s", res.body, tt.want)
			}
		})
	}
}

func matchTemplate(tmpl, got string) bool {
	placeholders := strings.NewReplacer(
		"⟨T⟩", `"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"`,
		"⟨N⟩", `[1-9][0-9]*`,
	)
	re := "^" + placeholders.Replace(regexp.QuoteMeta(tmpl)) + "$"
	return regexp.MustCompile(re).MatchString(got)
}

func marshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func vec(t *testing.T, text string, dim int) string { return marshal(t, Embedding(text, dim)) }

func widen(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func b64(v []float32) string {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestRequestErrors(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny"}}})
	c := newClient(t)
	tests := []struct {
		name, method, path, body string
		status                   int
		contentType, want        string
	}{
		{"malformed json", "POST", "/api/chat", `{bad`, 400, ctJSONGin, `{"error":"invalid character 'b' looking for beginning of object key string"}`},
		{"truncated json", "POST", "/api/generate", `{"model":`, 400, ctJSONGin, `{"error":"unexpected EOF"}`},
		{"missing body", "POST", "/api/chat", ``, 400, ctJSONGin, `{"error":"missing request body"}`},
		{"wrong type", "POST", "/api/chat", `{"model":"tiny","stream":"yes"}`, 400, ctJSONGin, `{"error":"json: cannot unmarshal string into Go struct field ChatRequest.stream of type bool"}`},
		{"bad keep_alive", "POST", "/api/chat", `{"model":"tiny","keep_alive":true}`, 400, ctJSONGin, `{"error":"Unsupported type: 'bool'"}`},
		{"chat without model", "POST", "/api/chat", `{"messages":[]}`, 400, ctJSONGin, `{"error":"model is required"}`},
		{"generate without model", "POST", "/api/generate", `{"prompt":"x"}`, 404, ctJSONGin, `{"error":"model '' not found"}`},
		{"embeddings without model", "POST", "/api/embeddings", `{"prompt":"x"}`, 400, ctJSONGin, `{"error":"model is required"}`},
		{"show without model", "POST", "/api/show", `{}`, 400, ctJSONGin, `{"error":"model is required"}`},
		{"embed bad input", "POST", "/api/embed", `{"model":"tiny","input":5}`, 400, ctJSONGin, `{"error":"invalid input type"}`},
		{"openai malformed", "POST", "/v1/chat/completions", `{bad`, 400, ctJSONGin, `{"error":{"message":"invalid character 'b' looking for beginning of object key string","type":"invalid_request_error","param":null,"code":null}}`},
		{"openai empty body", "POST", "/v1/completions", ``, 400, ctJSONGin, `{"error":{"message":"EOF","type":"invalid_request_error","param":null,"code":null}}`},
		{"openai no messages", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[]}`, 400, ctJSONGin, `{"error":{"message":"[] is too short - 'messages'","type":"invalid_request_error","param":null,"code":null}}`},
		{"openai no model", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`, 400, ctJSON, `{"error":{"message":"model is required","type":"api_error","param":null,"code":null}}` + "\n"},
		{"openai embeddings no input", "POST", "/v1/embeddings", `{"model":"tiny"}`, 400, ctJSONGin, `{"error":{"message":"invalid input","type":"invalid_request_error","param":null,"code":null}}`},
		{"unknown path", "GET", "/api/nothing", ``, 404, "text/plain", `404 page not found`},
		{"wrong method", "GET", "/api/chat", ``, 405, "text/plain", `405 method not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(testCtx(t), t, c, tt.method, s.URL()+tt.path, tt.body)
			if res.status != tt.status || res.header.Get("Content-Type") != tt.contentType || res.body != tt.want {
				t.Errorf("got %d %q %s\nwant %d %q %s", res.status, res.header.Get("Content-Type"), res.body, tt.status, tt.contentType, tt.want)
			}
		})
	}
	if st := s.Stats(); st.Requests != 0 {
		t.Errorf("Stats().Requests = %d after only bad requests, want 0", st.Requests)
	}
}

func TestRequestsRecorded(t *testing.T) {
	tests := []struct {
		name      string
		limit     int
		send      int
		wantCount int
		wantFirst int // index of the first body kept
	}{
		{"under the limit", 10, 3, 3, 0},
		{"ring keeps the newest", 3, 5, 3, 2},
		{"off", -1, 2, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSim(t, Config{Models: []Model{{Name: "tiny"}}, RecordLimit: tt.limit})
			c := newClient(t)
			var bodies []string
			for i := range tt.send {
				// Odd spacing on purpose: the record must be the raw bytes, not re-encoded JSON.
				b := `{ "model" : "tiny", "prompt":"n` + string(rune('0'+i)) + `" ,"stream":false}`
				bodies = append(bodies, b)
				if res := post(t, c, s.URL()+"/api/generate", b); res.status != 200 {
					t.Fatalf("status %d", res.status)
				}
			}
			got := s.Requests()
			if len(got) != tt.wantCount {
				t.Fatalf("%d records, want %d", len(got), tt.wantCount)
			}
			for i, r := range got {
				if r.Method != http.MethodPost || r.Path != "/api/generate" || string(r.Body) != bodies[tt.wantFirst+i] || r.Time.IsZero() {
					t.Errorf("record %d = %s %s %q, want POST /api/generate %q", i, r.Method, r.Path, r.Body, bodies[tt.wantFirst+i])
				}
			}
			s.ResetRequests()
			if n := len(s.Requests()); n != 0 {
				t.Errorf("%d records after ResetRequests", n)
			}
		})
	}
}
