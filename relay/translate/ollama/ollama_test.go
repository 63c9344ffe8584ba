package ollama

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/hearthlab/hearth/relay/count"
)

var (
	dialectPNG  = append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), make([]byte, 16)...)
	dialectJPEG = append([]byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"), make([]byte, 16)...)
)

func dialectB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// dialectJSONEqual compares two JSON texts by value.
func dialectJSONEqual(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("got is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want is not JSON: %v\n%s", err, want)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("JSON differs\n got: %s\nwant: %s", got, want)
	}
}

func TestOllamaToOpenAI(t *testing.T) {
	png, jpeg := dialectB64(dialectPNG), dialectB64(dialectJPEG)
	tools := `[{"type":"function","function":{"name":"weather","description":"Weather in a city","parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string"}}}}}]`
	tests := []struct {
		name, path, body string
		want             string // the OpenAI body; empty when an error is expected
		wantModel        string
		wantStream       bool
		wantErr          error  // errors.Is
		wantErrText      string // substring
	}{{
		name: "chat with system, images, tool round trip, tools, format json and options",
		path: "/api/chat",
		body: `{"model":"qwen3:8b","keep_alive":"5m","think":true,"tools":` + tools + `,"format":"json",
			"options":{"temperature":0.2,"top_p":0.9,"seed":7,"stop":"END","num_predict":128,"num_ctx":8192,"top_k":40,"repeat_penalty":1.1,"presence_penalty":0.5},
			"messages":[
			{"role":"system","content":"Be brief."},
			{"role":"user","content":"What is this?","images":["` + png + `"]},
			{"role":"assistant","content":"","thinking":"hmm","tool_calls":[
				{"function":{"name":"weather","arguments":{"city":"Paris"}}},
				{"id":"call_b","function":{"name":"weather","arguments":{"city":"Oslo"}}}]},
			{"role":"tool","content":"sunny","tool_name":"weather"},
			{"role":"Tool","content":"snow","tool_call_id":"call_b"},
			{"role":"user","content":"","images":["` + jpeg + `"]}]}`,
		want: `{"model":"qwen3:8b","stream":true,"stream_options":{"include_usage":true},"tools":` + tools + `,
			"response_format":{"type":"json_object"},"temperature":0.2,"top_p":0.9,"seed":7,"stop":["END"],"max_tokens":128,"presence_penalty":0.5,
			"messages":[
			{"role":"system","content":"Be brief."},
			{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,` + png + `"}}]},
			{"role":"assistant","content":null,"tool_calls":[
				{"id":"call_2_0","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"}},
				{"id":"call_b","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}}]},
			{"role":"tool","content":"sunny","tool_call_id":"call_2_0"},
			{"role":"tool","content":"snow","tool_call_id":"call_b"},
			{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,` + jpeg + `"}}]}]}`,
		wantModel: "qwen3:8b", wantStream: true,
	}, {
		name: "chat with a JSON schema, no stream, stop list, unset num_predict and seed",
		path: "/api/chat",
		body: `{"model":"m","stream":false,"format":{"type":"object","properties":{"age":{"type":"integer"}}},
			"options":{"stop":["a","b"],"num_predict":-1,"seed":-1,"temperature":null},"messages":[{"role":"user","content":"hi"}]}`,
		want: `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}],"stop":["a","b"],
			"response_format":{"type":"json_schema","json_schema":{"name":"response","schema":{"type":"object","properties":{"age":{"type":"integer"}}}}}}`,
		wantModel: "m",
	}, {
		name: "generate with system, prompt and image; raw, template and context ignored",
		path: "/api/generate",
		body: `{"model":"llava","system":"You describe photos.","prompt":"Describe","images":["` + jpeg + `"],
			"raw":true,"template":"{{ .Prompt }}","context":[1,2,3],"stream":false,"options":{"num_predict":10}}`,
		want: `{"model":"llava","stream":false,"max_tokens":10,"messages":[
			{"role":"system","content":"You describe photos."},
			{"role":"user","content":[{"type":"text","text":"Describe"},{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,` + jpeg + `"}}]}]}`,
		wantModel: "llava",
	}, {
		name: "generate streams by default", path: "/api/generate", body: `{"model":"m","prompt":"hi"}`,
		want:      `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
		wantModel: "m", wantStream: true,
	}, {
		name: "generate with an empty prompt only loads", path: "/api/generate", body: `{"model":"m","system":"x"}`,
		wantErr: ErrLoadOnly, wantModel: "m", wantStream: true,
	}, {
		name: "chat without messages only loads", path: "/api/chat", body: `{"model":"m","stream":false}`,
		wantErr: ErrLoadOnly, wantModel: "m",
	}, {
		name: "no model", path: "/api/chat", body: `{"messages":[{"role":"user","content":"hi"}]}`,
		wantErrText: "model is required", wantStream: true,
	}, {
		name: "unknown format", path: "/api/chat", body: `{"model":"m","format":"yaml","messages":[{"role":"user","content":"hi"}]}`,
		wantErrText: `format must be "json" or a JSON schema`, wantModel: "m", wantStream: true,
	}, {
		name: "suffix", path: "/api/generate", body: `{"model":"m","prompt":"def f(","suffix":"return x"}`,
		wantErrText: "suffix", wantModel: "m", wantStream: true,
	}, {
		name: "image that is no image", path: "/api/chat",
		body:        `{"model":"m","messages":[{"role":"user","content":"hi","images":["` + dialectB64([]byte("hello, world")) + `"]}]}`,
		wantErrText: "message 0: image 0 is not JPEG, PNG", wantModel: "m", wantStream: true,
	}, {
		name: "option of the wrong type", path: "/api/chat",
		body:        `{"model":"m","options":{"temperature":"hot"},"messages":[{"role":"user","content":"hi"}]}`,
		wantErrText: "option temperature must be a number", wantModel: "m", wantStream: true,
	}, {
		name: "not JSON", path: "/api/chat", body: `{"model":`, wantErrText: "relay: ollama request",
	}, {
		name: "other path", path: "/api/embed", body: `{"model":"m"}`, wantErrText: "no translation",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, model, stream, err := ToOpenAI(tt.path, []byte(tt.body))
			if model != tt.wantModel || stream != tt.wantStream {
				t.Errorf("model, stream = %q, %v; want %q, %v", model, stream, tt.wantModel, tt.wantStream)
			}
			switch {
			case tt.wantErr != nil || tt.wantErrText != "":
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.wantErrText) {
					t.Fatalf("err = %v; want %v %q", err, tt.wantErr, tt.wantErrText)
				}
				if got != nil {
					t.Errorf("body %s with an error", got)
				}
			case err != nil:
				t.Fatal(err)
			default:
				dialectJSONEqual(t, string(got), tt.want)
			}
		})
	}
}

func TestOllamaLoadResponse(t *testing.T) {
	var chat api.ChatResponse
	if err := json.Unmarshal(LoadResponse("/api/chat", "qwen3:8b"), &chat); err != nil {
		t.Fatal(err)
	}
	if !chat.Done || chat.DoneReason != "load" || chat.Model != "qwen3:8b" || chat.Message.Role != "assistant" || chat.CreatedAt.IsZero() {
		t.Errorf("chat load response = %+v", chat)
	}
	b := LoadResponse("/api/generate", "m")
	var gen api.GenerateResponse
	if err := json.Unmarshal(b, &gen); err != nil {
		t.Fatal(err)
	}
	if !gen.Done || gen.DoneReason != "load" || gen.Model != "m" || !bytes.Contains(b, []byte(`"response":""`)) {
		t.Errorf("generate load response = %s", b)
	}
}

// dialectSSE writes chunks as an OpenAI stream.
func dialectSSE(chunks ...string) string {
	var b strings.Builder
	for _, c := range chunks {
		b.WriteString("data: " + c + "\n\n")
	}
	return b.String()
}

const (
	dialectRoleChunk  = `{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`
	dialectUsageChunk = `{"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}`
)

func dialectSSEDelta(delta string) string {
	return `{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":` + delta + `,"finish_reason":null}]}`
}

func dialectSSEFinish(reason string) string {
	return `{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"` + reason + `"}]}`
}

// dialectToolStream is a stream that calls two tools, arguments in fragments, then usage.
var dialectToolStream = dialectSSE(dialectRoleChunk,
	dialectSSEDelta(`{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"weather","arguments":""}}]}`),
	dialectSSEDelta(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}`),
	dialectSSEDelta(`{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}`),
	dialectSSEDelta(`{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"time","arguments":"{\"tz\":\"CET\",\"h24\":true}"}}]}`),
	dialectSSEFinish("tool_calls"), dialectUsageChunk, "[DONE]")

// dialectLines decodes NDJSON and drops what changes from run to run (created_at, durations),
// after checking it is there.
func dialectLines(t *testing.T, ndjson string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.SplitAfter(ndjson, "\n") {
		if line == "" {
			continue
		}
		if !strings.HasSuffix(line, "\n") {
			t.Errorf("unterminated line %q", line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if _, isErr := m["error"]; !isErr {
			if _, ok := m["created_at"].(string); !ok {
				t.Errorf("line without created_at: %s", line)
			}
			if d, _ := m["done"].(bool); d && !(m["total_duration"].(float64) > 0 && m["eval_duration"].(float64) > 0) {
				t.Errorf("done line without durations: %s", line)
			}
		}
		for _, k := range []string{"created_at", "total_duration", "prompt_eval_duration", "eval_duration"} {
			delete(m, k)
		}
		b, _ := json.Marshal(m)
		out = append(out, string(b))
	}
	return out
}

func TestOpenAIToOllama(t *testing.T) {
	textStream := dialectSSE(dialectRoleChunk, dialectSSEDelta(`{"content":"Hel"}`), dialectSSEDelta(`{"content":"lo"}`),
		dialectSSEFinish("stop"), dialectUsageChunk, "[DONE]")
	const chatDone = `{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":12,"eval_count":3}`
	tests := []struct {
		name, path string
		stream     bool
		upstream   string
		want       []string
		wantUsage  count.Usage
		wantErr    string
	}{{
		name: "chat stream", path: "/api/chat", stream: true, upstream: textStream,
		want: []string{
			`{"model":"m","message":{"role":"assistant","content":"Hel"},"done":false}`,
			`{"model":"m","message":{"role":"assistant","content":"lo"},"done":false}`,
			chatDone},
		wantUsage: count.Usage{PromptTokens: 12, CompletionTokens: 3},
	}, {
		name: "generate stream", path: "/api/generate", stream: true, upstream: textStream,
		want: []string{
			`{"model":"m","response":"Hel","done":false}`,
			`{"model":"m","response":"lo","done":false}`,
			`{"model":"m","response":"","done":true,"done_reason":"stop","prompt_eval_count":12,"eval_count":3}`},
		wantUsage: count.Usage{PromptTokens: 12, CompletionTokens: 3},
	}, {
		name: "chat stream of tool calls: whole calls on finish, done_reason stop", path: "/api/chat", stream: true,
		upstream: dialectToolStream,
		want: []string{
			`{"model":"m","message":{"role":"assistant","content":"","tool_calls":[
				{"id":"call_1","function":{"index":0,"name":"weather","arguments":{"city":"Paris"}}},
				{"id":"call_2","function":{"index":1,"name":"time","arguments":{"tz":"CET","h24":true}}}]},"done":false}`,
			chatDone},
		wantUsage: count.Usage{PromptTokens: 12, CompletionTokens: 3},
	}, {
		name: "stream cut at length, thinking, no usage, no [DONE]", path: "/api/chat", stream: true,
		upstream: dialectSSE(dialectSSEDelta(`{"reasoning_content":"let me see"}`), dialectSSEDelta(`{"content":"Once upon"}`),
			`{"choices":[{"index":0,"delta":{"content":" a"},"finish_reason":"length"}]}`),
		want: []string{
			`{"model":"m","message":{"role":"assistant","content":"","thinking":"let me see"},"done":false}`,
			`{"model":"m","message":{"role":"assistant","content":"Once upon"},"done":false}`,
			`{"model":"m","message":{"role":"assistant","content":" a"},"done":false}`,
			`{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"length"}`},
	}, {
		name: "whole tool calls without index or all at index 0, told apart by id", path: "/api/chat", stream: true,
		upstream: dialectSSE(
			dialectSSEDelta(`{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{\"n\":1}"}}]}`),
			dialectSSEDelta(`{"tool_calls":[{"index":0,"id":"b","function":{"name":"g","arguments":{"n":2}}}]}`),
			dialectSSEFinish("tool_calls"), "[DONE]"),
		want: []string{`{"model":"m","message":{"role":"assistant","content":"","tool_calls":[
				{"id":"a","function":{"index":0,"name":"f","arguments":{"n":1}}},
				{"id":"b","function":{"index":1,"name":"g","arguments":{"n":2}}}]},"done":false}`,
			`{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}`},
	}, {
		name: "SSE comments, event lines, CRLF, data without a space", path: "/api/generate", stream: true,
		upstream: ": keep-alive\r\n\r\nevent: message\r\ndata:" + dialectSSEDelta(`{"content":"ok"}`) + "\r\n\r\ndata: " +
			dialectSSEFinish("stop") + "\r\n\r\ndata: [DONE]\r\n\r\n",
		want: []string{`{"model":"m","response":"ok","done":false}`,
			`{"model":"m","response":"","done":true,"done_reason":"stop"}`},
	}, {
		name: "chat without stream", path: "/api/chat",
		upstream: `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Let me check.",
			"tool_calls":[{"id":"call_9","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}}]},
			"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29}}`,
		want: []string{`{"model":"m","message":{"role":"assistant","content":"Let me check.","tool_calls":[
			{"id":"call_9","function":{"index":0,"name":"weather","arguments":{"city":"Oslo"}}}]},
			"done":true,"done_reason":"stop","prompt_eval_count":20,"eval_count":9}`},
		wantUsage: count.Usage{PromptTokens: 20, CompletionTokens: 9},
	}, {
		name: "generate without stream", path: "/api/generate",
		upstream:  `{"choices":[{"index":0,"message":{"role":"assistant","content":"42"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}`,
		want:      []string{`{"model":"m","response":"42","done":true,"done_reason":"stop","prompt_eval_count":5,"eval_count":1}`},
		wantUsage: count.Usage{PromptTokens: 5, CompletionTokens: 1},
	}, {
		name: "no stream asked but upstream streamed: gathered", path: "/api/chat", upstream: textStream,
		want:      []string{`{"model":"m","message":{"role":"assistant","content":"Hello"},"done":true,"done_reason":"stop","prompt_eval_count":12,"eval_count":3}`},
		wantUsage: count.Usage{PromptTokens: 12, CompletionTokens: 3},
	}, {
		name: "stream asked but upstream answered whole", path: "/api/generate", stream: true,
		upstream: `{"choices":[{"index":0,"message":{"role":"assistant","content":"42"},"finish_reason":"stop"}]}`,
		want: []string{`{"model":"m","response":"42","done":false}`,
			`{"model":"m","response":"","done":true,"done_reason":"stop"}`},
	}, {
		name: "error chunk mid-stream", path: "/api/chat", stream: true,
		upstream: dialectSSE(dialectSSEDelta(`{"content":"Hi"}`), `{"error":{"message":"overloaded","type":"server_error"}}`),
		want: []string{`{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false}`,
			`{"error":"upstream error: overloaded"}`},
		wantErr: "overloaded",
	}, {
		name: "error body without stream", path: "/api/generate",
		upstream: `{"error":"quota exhausted"}`, want: []string{`{"error":"upstream error: quota exhausted"}`}, wantErr: "quota exhausted",
	}, {
		name: "stream cut short", path: "/api/generate", stream: true,
		upstream: dialectSSE(dialectSSEDelta(`{"content":"Hi"}`)),
		want:     []string{`{"model":"m","response":"Hi","done":false}`, `{"error":"upstream stream ended early"}`},
		wantErr:  "unexpected EOF",
	}, {
		name: "tool arguments that are not an object", path: "/api/chat", stream: true,
		upstream: dialectSSE(dialectSSEDelta(`{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{\"a\":"}}]}`), dialectSSEFinish("tool_calls")),
		want:     []string{`{"error":"upstream sent invalid arguments for tool \"f\""}`},
		wantErr:  "not a JSON object",
	}, {
		name: "chunk that is not JSON", path: "/api/chat", stream: true, upstream: "data: {oops\n\n",
		want: []string{`{"error":"upstream sent an invalid stream"}`}, wantErr: "chunk",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			usage, err := FromOpenAI(&out, strings.NewReader(tt.upstream), tt.path, "m", tt.stream)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v; want %q", err, tt.wantErr)
			}
			if usage != tt.wantUsage {
				t.Errorf("usage = %+v; want %+v", usage, tt.wantUsage)
			}
			got := dialectLines(t, out.String())
			if len(got) != len(tt.want) {
				t.Fatalf("%d lines; want %d:\n%s", len(got), len(tt.want), out.String())
			}
			for i := range got {
				dialectJSONEqual(t, got[i], tt.want[i])
			}
		})
	}
	if !errors.Is(dialectTruncated(t), io.ErrUnexpectedEOF) {
		t.Error("a stream cut short is not io.ErrUnexpectedEOF")
	}
}

func dialectTruncated(t *testing.T) error {
	_, err := FromOpenAI(io.Discard, strings.NewReader(dialectSSE(dialectSSEDelta(`{"content":"Hi"}`))), "/api/chat", "m", true)
	return err
}

// dialectRecorder is a ResponseWriter that keeps each Write and each Flush as an event.
type dialectRecorder struct {
	header http.Header
	events chan string
}

func (r *dialectRecorder) Header() http.Header { return r.header }
func (r *dialectRecorder) WriteHeader(int)     {}
func (r *dialectRecorder) Flush()              { r.events <- "flush" }
func (r *dialectRecorder) Write(b []byte) (int, error) {
	r.events <- "write " + string(b)
	return len(b), nil
}

// dialectWrapped hides the recorder's Flush the way middleware does, and unwraps to it.
type dialectWrapped struct{ http.ResponseWriter }

func (w dialectWrapped) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Each content chunk must reach the client as its own line, written and flushed before the
// next chunk arrives: a phone shows tokens as they come.
func TestOpenAIToOllamaFlushesEachChunk(t *testing.T) {
	for _, wrapped := range []bool{false, true} {
		t.Run(map[bool]string{false: "flusher", true: "wrapped"}[wrapped], func(t *testing.T) {
			dialectFlushesEachChunk(t, wrapped)
		})
	}
}

func dialectFlushesEachChunk(t *testing.T, wrapped bool) {
	chunks := []string{dialectRoleChunk, dialectSSEDelta(`{"content":"one"}`), dialectSSEDelta(`{"content":" two"}`),
		dialectSSEDelta(`{"content":" three"}`), dialectSSEFinish("stop"), dialectUsageChunk}
	wantLines := map[int]string{1: "one", 2: " two", 3: " three"} // chunk index → the line it must produce
	pr, pw := io.Pipe()
	rec := &dialectRecorder{header: http.Header{}, events: make(chan string, 64)}
	type result struct {
		usage count.Usage
		err   error
	}
	res := make(chan result, 1)
	var dst http.ResponseWriter = rec
	if wrapped {
		dst = dialectWrapped{rec}
	}
	go func() {
		u, err := FromOpenAI(dst, pr, "/api/chat", "m", true)
		res <- result{u, err}
	}()
	t.Cleanup(func() { pw.Close() })
	next := func() string {
		t.Helper()
		select {
		case e := <-rec.events:
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no write or flush")
			return ""
		}
	}
	expectLine := func(contains string) {
		t.Helper()
		w := next()
		if !strings.HasPrefix(w, "write ") || strings.Count(w, "\n") != 1 || !strings.HasSuffix(w, "\n") || !strings.Contains(w, contains) {
			t.Fatalf("event %q; want one line with %q", w, contains)
		}
		if f := next(); f != "flush" {
			t.Fatalf("event %q after a line; want flush", f)
		}
	}
	for i, c := range chunks {
		if _, err := io.WriteString(pw, "data: "+c+"\n\n"); err != nil {
			t.Fatal(err)
		}
		if text, ok := wantLines[i]; ok {
			expectLine(`"content":"` + text + `"`)
		}
		select {
		case e := <-rec.events:
			t.Fatalf("chunk %d: unexpected %q", i, e)
		case <-time.After(20 * time.Millisecond):
		}
	}
	io.WriteString(pw, "data: [DONE]\n\n")
	expectLine(`"done":true`)
	r := <-res
	if r.err != nil || r.usage != (count.Usage{PromptTokens: 12, CompletionTokens: 3}) {
		t.Errorf("usage, err = %+v, %v", r.usage, r.err)
	}
	if len(rec.events) != 0 {
		t.Errorf("%d more events", len(rec.events))
	}
}
