package ollama

// Ollama's own Go client against the dialect translation, and a client that goes away.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
)

// Ollama's own Go client talks to a handler that translates both ways over canned upstream
// answers: what it sends is understood, and what it gets back parses into its own types.
func TestOllamaDialectWithOllamaClient(t *testing.T) {
	textStream := dialectSSE(dialectRoleChunk, dialectSSEDelta(`{"content":"Hel"}`), dialectSSEDelta(`{"content":"lo"}`),
		dialectSSEFinish("stop"), dialectUsageChunk, "[DONE]")
	var (
		mu             sync.Mutex
		sent, upstream string // the OpenAI body of the last request; the canned answer to it
	)
	setUpstream := func(s string) { mu.Lock(); upstream = s; mu.Unlock() }
	lastSent := func() string { mu.Lock(); defer mu.Unlock(); return sent }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		oa, model, stream, err := ToOpenAI(r.URL.Path, body)
		if errors.Is(err, ErrLoadOnly) {
			w.Write(LoadResponse(r.URL.Path, model))
			return
		}
		if err != nil {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		mu.Lock()
		sent = string(oa)
		answer := upstream
		mu.Unlock()
		if _, err := FromOpenAI(w, strings.NewReader(answer), r.URL.Path, model, stream); err != nil {
			t.Logf("answer: %v", err)
		}
	}))
	t.Cleanup(srv.Close)
	base, _ := url.Parse(srv.URL)
	client := api.NewClient(base, srv.Client())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)

	t.Run("chat stream with image and tools", func(t *testing.T) {
		setUpstream(dialectToolStream)
		var tools api.Tools
		if err := json.Unmarshal([]byte(`[{"type":"function","function":{"name":"weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]`), &tools); err != nil {
			t.Fatal(err)
		}
		req := &api.ChatRequest{Model: "qwen3", Tools: tools, Options: map[string]any{"temperature": 0.5, "num_predict": 64},
			Messages: []api.Message{{Role: "user", Content: "Weather here?", Images: []api.ImageData{dialectPNG}}}}
		var got []api.ChatResponse
		if err := client.Chat(ctx, req, func(r api.ChatResponse) error { got = append(got, r); return nil }); err != nil {
			t.Fatal(err)
		}
		oa := lastSent()
		for _, want := range []string{`"data:image/png;base64,` + dialectB64(dialectPNG), `"max_tokens":64`, `"temperature":0.5`, `"name":"weather"`} {
			if !strings.Contains(oa, want) {
				t.Errorf("OpenAI request lacks %s: %s", want, oa)
			}
		}
		if len(got) != 2 || len(got[0].Message.ToolCalls) != 2 || got[0].Done {
			t.Fatalf("answers = %+v", got)
		}
		call := got[0].Message.ToolCalls[0]
		if city, _ := call.Function.Arguments.Get("city"); call.Function.Name != "weather" || city != "Paris" {
			t.Errorf("tool call = %s(%s)", call.Function.Name, call.Function.Arguments.String())
		}
		if h24, _ := got[0].Message.ToolCalls[1].Function.Arguments.Get("h24"); h24 != true || got[0].Message.ToolCalls[1].Function.Index != 1 {
			t.Errorf("second tool call = %+v", got[0].Message.ToolCalls[1])
		}
		last := got[1]
		if !last.Done || last.DoneReason != "stop" || last.PromptEvalCount != 12 || last.EvalCount != 3 ||
			last.TotalDuration <= 0 || last.EvalDuration <= 0 || last.Model != "qwen3" || last.CreatedAt.IsZero() {
			t.Errorf("final answer = %+v", last)
		}
	})
	t.Run("generate stream", func(t *testing.T) {
		setUpstream(textStream)
		var text strings.Builder
		var final api.GenerateResponse
		err := client.Generate(ctx, &api.GenerateRequest{Model: "m", System: "Greet.", Prompt: "hi"}, func(r api.GenerateResponse) error {
			text.WriteString(r.Response)
			final = r
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		dialectJSONEqual(t, lastSent(), `{"model":"m","stream":true,"stream_options":{"include_usage":true},
			"messages":[{"role":"system","content":"Greet."},{"role":"user","content":"hi"}]}`)
		if text.String() != "Hello" || !final.Done || final.EvalCount != 3 || final.PromptEvalCount != 12 {
			t.Errorf("text %q, final %+v", text.String(), final)
		}
	})
	t.Run("chat without stream", func(t *testing.T) {
		setUpstream(`{"choices":[{"index":0,"message":{"role":"assistant","content":"{\"age\":3}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":5}}`)
		no := false
		var got []api.ChatResponse
		req := &api.ChatRequest{Model: "m", Stream: &no, Format: json.RawMessage(`"json"`), Messages: []api.Message{{Role: "user", Content: "age?"}}}
		if err := client.Chat(ctx, req, func(r api.ChatResponse) error { got = append(got, r); return nil }); err != nil {
			t.Fatal(err)
		}
		if oa := lastSent(); !strings.Contains(oa, `"response_format":{"type":"json_object"}`) || !strings.Contains(oa, `"stream":false`) {
			t.Errorf("OpenAI request = %s", oa)
		}
		if len(got) != 1 || got[0].Message.Content != `{"age":3}` || !got[0].Done || got[0].EvalCount != 5 {
			t.Errorf("answers = %+v", got)
		}
	})
	t.Run("error mid-stream", func(t *testing.T) {
		setUpstream(dialectSSE(dialectSSEDelta(`{"content":"Hi"}`), `{"error":{"message":"overloaded"}}`))
		var n int
		err := client.Chat(ctx, &api.ChatRequest{Model: "m", Messages: []api.Message{{Role: "user", Content: "hi"}}},
			func(api.ChatResponse) error { n++; return nil })
		lastSent()
		if err == nil || !strings.Contains(err.Error(), "overloaded") || n != 1 {
			t.Errorf("err = %v after %d answers; want the upstream's message after 1", err, n)
		}
	})
	t.Run("load only", func(t *testing.T) {
		var got []api.GenerateResponse
		if err := client.Generate(ctx, &api.GenerateRequest{Model: "m"}, func(r api.GenerateResponse) error { got = append(got, r); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !got[0].Done || got[0].DoneReason != "load" {
			t.Errorf("answers = %+v", got)
		}
	})
}

// dialectGoneWriter is a client that went away.
type dialectGoneWriter struct{ writes int }

func (w *dialectGoneWriter) Write([]byte) (int, error) {
	w.writes++
	return 0, errors.New("broken pipe")
}

// When the client is gone nothing more is written, not even an error line.
func TestOpenAIToOllamaClientGone(t *testing.T) {
	w := &dialectGoneWriter{}
	upstream := dialectSSE(dialectSSEDelta(`{"content":"a"}`), dialectSSEDelta(`{"content":"b"}`), dialectSSEFinish("stop"), "[DONE]")
	_, err := FromOpenAI(w, strings.NewReader(upstream), "/api/chat", "m", true)
	if err == nil || !strings.Contains(err.Error(), "broken pipe") || w.writes != 1 {
		t.Errorf("err = %v after %d writes; want broken pipe after 1", err, w.writes)
	}
}
