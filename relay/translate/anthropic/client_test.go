package anthropic

// go-openai against the Anthropic translation, and streams that break, stall or arrive in
// pieces.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

// anthropicClient is a go-openai client for a fake OpenAI endpoint that translates with this
// file's functions, as the relay will: the request from go-openai through Request, the
// vendor's answer (a fixture) back through Response or Stream.
func anthropicClient(t *testing.T, fixture string, check func(t *testing.T, anthReq map[string]any)) *openai.Client {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, _ := io.ReadAll(r.Body)
		body, stream, includeUsage, err := Request(in, "claude-sonnet-4-5")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var anthReq map[string]any
		if err := json.Unmarshal(body, &anthReq); err != nil {
			t.Errorf("translated request is not JSON: %v", err)
		}
		check(t, anthReq)
		vendor, err := os.Open(filepath.Join(anthropicTestdata, fixture))
		if err != nil {
			t.Error(err)
			return
		}
		if !stream {
			raw, _ := io.ReadAll(vendor)
			vendor.Close()
			out, _, err := Response(raw, "gpt-4o")
			if err != nil {
				t.Error(err)
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write(out)
			return
		}
		s := NewStream(vendor, "gpt-4o", includeUsage)
		defer s.Close()
		w.Header().Set("Content-Type", "text/event-stream")
		if _, err := io.Copy(w, s); err != nil {
			t.Errorf("stream: %v", err)
		}
	}))
	t.Cleanup(srv.Close)
	cfg := openai.DefaultConfig("hearth-token")
	cfg.BaseURL = srv.URL + "/v1"
	return openai.NewClientWithConfig(cfg)
}

func TestAnthropicGoOpenAIResponse(t *testing.T) {
	client := anthropicClient(t, "response/tool_use.anthropic.json", func(t *testing.T, req map[string]any) {
		if req["system"] != "Use tools." || req["max_tokens"] != 4096.0 || req["stream"] != nil {
			t.Errorf("system, max_tokens, stream = %v, %v, %v", req["system"], req["max_tokens"], req["stream"])
		}
		msgs := req["messages"].([]any)
		parts := msgs[0].(map[string]any)["content"].([]any)
		src := parts[1].(map[string]any)["source"].(map[string]any)
		if src["type"] != "base64" || src["media_type"] != "image/png" || src["data"] != "iVBORw0KGgo=" {
			t.Errorf("image source %v", src)
		}
		tool := req["tools"].([]any)[0].(map[string]any)
		if tool["name"] != "get_weather" || tool["input_schema"].(map[string]any)["type"] != "object" {
			t.Errorf("tool %v", tool)
		}
	})
	resp, err := client.CreateChatCompletion(t.Context(), openai.ChatCompletionRequest{
		Model: "gpt-4o",
		Messages: []openai.ChatCompletionMessage{
			{Role: openai.ChatMessageRoleSystem, Content: "Use tools."},
			{Role: openai.ChatMessageRoleUser, MultiContent: []openai.ChatMessagePart{
				{Type: openai.ChatMessagePartTypeText, Text: "Weather where this photo was taken?"},
				{Type: openai.ChatMessagePartTypeImageURL, ImageURL: &openai.ChatMessageImageURL{URL: "data:image/png;base64,iVBORw0KGgo=", Detail: openai.ImageURLDetailLow}},
			}},
		},
		Tools: []openai.Tool{{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
			Name: "get_weather", Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}}}`),
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ID != "chatcmpl-msg_01Aq9w938a90dw8q" || resp.Object != "chat.completion" || resp.Model != "gpt-4o" || resp.Created == 0 {
		t.Errorf("id, object, model, created = %q, %q, %q, %d", resp.ID, resp.Object, resp.Model, resp.Created)
	}
	if len(resp.Choices) != 1 {
		t.Fatalf("%d choices", len(resp.Choices))
	}
	ch := resp.Choices[0]
	if ch.FinishReason != openai.FinishReasonToolCalls || ch.Message.Role != "assistant" || ch.Message.Content != "I'll check both cities." {
		t.Errorf("finish, role, content = %q, %q, %q", ch.FinishReason, ch.Message.Role, ch.Message.Content)
	}
	anthropicCheckCalls(t, ch.Message.ToolCalls, []string{
		`toolu_01A09q90qw90lq917835lq9 get_weather {"city":"Paris","unit":"celsius"}`,
		`toolu_01B09q90qw90lq917835lq9 get_weather {"city":"Lyon"}`,
	})
	if u := resp.Usage; u.PromptTokens != 472 || u.CompletionTokens != 91 || u.TotalTokens != 563 {
		t.Errorf("usage %+v", u)
	}
}

// anthropicCheckCalls compares tool calls as "id name arguments", arguments compared as JSON.
func anthropicCheckCalls(t *testing.T, calls []openai.ToolCall, want []string) {
	t.Helper()
	if len(calls) != len(want) {
		t.Fatalf("%d tool calls, want %d: %+v", len(calls), len(want), calls)
	}
	for i, c := range calls {
		id, rest, _ := strings.Cut(want[i], " ")
		name, args, _ := strings.Cut(rest, " ")
		if c.ID != id || c.Function.Name != name || c.Type != openai.ToolTypeFunction {
			t.Errorf("call %d: %s %s %s, want %s %s function", i, c.ID, c.Function.Name, c.Type, id, name)
		}
		if err := anthropicJSONEqual([]byte(args), []byte(c.Function.Arguments)); err != nil {
			t.Errorf("call %d arguments: %v", i, err)
		}
	}
}

func TestAnthropicGoOpenAIStream(t *testing.T) {
	client := anthropicClient(t, "stream/tool_use.anthropic.sse", func(t *testing.T, req map[string]any) {
		if req["stream"] != true || req["tool_choice"].(map[string]any)["type"] != "any" {
			t.Errorf("stream, tool_choice = %v, %v", req["stream"], req["tool_choice"])
		}
	})
	stream, err := client.CreateChatCompletionStream(t.Context(), openai.ChatCompletionRequest{
		Model:         "gpt-4o",
		Messages:      []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Weather in Paris, and the time?"}},
		Tools:         []openai.Tool{{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{Name: "get_weather"}}, {Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{Name: "get_time"}}},
		ToolChoice:    "required",
		StreamOptions: &openai.StreamOptions{IncludeUsage: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()

	var content strings.Builder
	var calls []openai.ToolCall
	var finish openai.FinishReason
	var usage *openai.Usage
	for n := 0; ; n++ {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("chunk %d: %v", n, err)
		}
		if chunk.Usage != nil {
			usage = chunk.Usage
		}
		if len(chunk.Choices) == 0 {
			continue
		}
		d := chunk.Choices[0].Delta
		if (n == 0) != (d.Role == "assistant") {
			t.Errorf("chunk %d has role %q; only the first may, and must", n, d.Role)
		}
		content.WriteString(d.Content)
		for _, tc := range d.ToolCalls {
			i := *tc.Index
			for len(calls) <= i {
				calls = append(calls, openai.ToolCall{})
			}
			calls[i].ID += tc.ID
			calls[i].Type += tc.Type
			calls[i].Function.Name += tc.Function.Name
			calls[i].Function.Arguments += tc.Function.Arguments
		}
		if r := chunk.Choices[0].FinishReason; r != "" {
			finish = r
		}
	}
	if content.String() != "Let me check." || finish != openai.FinishReasonToolCalls {
		t.Errorf("content, finish = %q, %q", content.String(), finish)
	}
	anthropicCheckCalls(t, calls, []string{
		`toolu_01T1x1fJ34qAmk2tNTrN7Up6 get_weather {"city":"Paris","unit":"celsius"}`,
		`toolu_01Time get_time {}`,
	})
	if usage == nil || usage.PromptTokens != 472 || usage.CompletionTokens != 89 || usage.TotalTokens != 561 {
		t.Errorf("usage %+v", usage)
	}
}

func TestAnthropicGoOpenAIStreamError(t *testing.T) {
	client := anthropicClient(t, "stream/error.anthropic.sse", func(*testing.T, map[string]any) {})
	stream, err := client.CreateChatCompletionStream(t.Context(), openai.ChatCompletionRequest{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "hi"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var content strings.Builder
	for {
		chunk, err := stream.Recv()
		if err != nil {
			var apiErr *openai.APIError
			if !errors.As(err, &apiErr) || apiErr.Message != "Overloaded" || apiErr.Type != "server_error" {
				t.Errorf("stream ended with %v, want the vendor's overloaded error", err)
			}
			break
		}
		content.WriteString(chunk.Choices[0].Delta.Content)
	}
	if content.String() != "Partial answ" {
		t.Errorf("content before the error %q", content.String())
	}
}

// TestAnthropicStreamCut cuts the vendor's stream at every byte: before message_stop that is an
// error wrapping io.ErrUnexpectedEOF, after the chunks translated so far; never a clean EOF.
func TestAnthropicStreamCut(t *testing.T) {
	for _, name := range []string{"text", "tool_use"} {
		t.Run(name, func(t *testing.T) {
			full, err := os.ReadFile(filepath.Join(anthropicTestdata, "stream", name+".anthropic.sse"))
			if err != nil {
				t.Fatal(err)
			}
			wantAll, err := io.ReadAll(newAnthropicStream(io.NopCloser(bytes.NewReader(full)), "gpt-4o", true, anthropicClock))
			if err != nil {
				t.Fatal(err)
			}
			// A last event whose data line is whole but lacks its line end is taken as sent.
			complete := bytes.Index(full, []byte(`{"type":"message_stop"}`)) + len(`{"type":"message_stop"}`)
			// Before message_delta's data line is whole the vendor's final count has not come.
			delta := bytes.Index(full, []byte(`data: {"type":"message_delta"`))
			delta += bytes.IndexAny(full[delta:], "\r\n")
			for cut := range len(full) {
				s := newAnthropicStream(io.NopCloser(bytes.NewReader(full[:cut])), "gpt-4o", true, anthropicClock)
				got, err := io.ReadAll(s)
				if cut >= complete {
					if err != nil || !bytes.Equal(got, wantAll) {
						t.Fatalf("cut at %d (after message_stop): err %v", cut, err)
					}
					continue
				}
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("cut at %d: err %v, want io.ErrUnexpectedEOF", cut, err)
				}
				if !bytes.HasPrefix(wantAll, got) || bytes.Contains(got, []byte("[DONE]")) {
					t.Fatalf("cut at %d: output %q is not a prefix of the full output without [DONE]", cut, got)
				}
				if u := s.Usage(); u.Estimated != (cut < delta) {
					t.Fatalf("cut at %d: usage %+v, want estimated %v", cut, u, cut < delta)
				}
			}
		})
	}
}

type anthropicBrokenReader struct {
	data []byte
	err  error
}

func (r *anthropicBrokenReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestAnthropicStreamBroken(t *testing.T) {
	start := `data: {"type":"message_start","message":{"id":"msg_1","type":"message","usage":{"input_tokens":3}}}` + "\n\n"
	reset := errors.New("connection reset by peer")
	cases := []struct {
		name string
		src  io.Reader
		want error  // errors.Is target
		sub  string // substring of the error
	}{
		{"read error", &anthropicBrokenReader{data: []byte(start + "data: {\"type\":\"content_blo"), err: reset}, reset, "read: connection reset"},
		{"bad json", strings.NewReader(start + "data: {\"type\":\n\n"), nil, "decode event"},
		{"content before start", strings.NewReader(`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}` + "\n\n"), nil, "content_block_delta before message_start"},
		{"args for a text block", strings.NewReader(start + `data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}` + "\n\n"), nil, "not a tool_use"},
		{"endless line", io.MultiReader(strings.NewReader(start+"data: "), bytes.NewReader(bytes.Repeat([]byte("x"), anthropicMaxLine+10))), nil, "line longer than"},
		{"empty", strings.NewReader(""), io.ErrUnexpectedEOF, "ended before message_stop"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := NewStream(io.NopCloser(c.src), "gpt-4o", false)
			_, err := io.ReadAll(s)
			if err == nil || !strings.Contains(err.Error(), c.sub) || c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("err %v, want %q (is %v)", err, c.sub, c.want)
			}
			if _, again := s.Read(make([]byte, 10)); again == nil || again.Error() != err.Error() {
				t.Errorf("second Read: %v, want the same error", again)
			}
		})
	}
}

// anthropicFeed is a vendor body that hands out only the events sent to it so far. A Read that
// finds none waits a while, then fails: the stream under test wanted an event not yet sent.
type anthropicFeed struct {
	events  chan []byte
	pending []byte
}

func (f *anthropicFeed) Read(p []byte) (int, error) {
	if len(f.pending) == 0 {
		select {
		case f.pending = <-f.events:
		case <-time.After(5 * time.Second):
			return 0, errors.New("Read waited for an event not yet sent")
		}
	}
	n := copy(p, f.pending)
	f.pending = f.pending[n:]
	return n, nil
}

// TestAnthropicStreamNoDelay feeds the vendor's events one at a time and reads after each: an
// event with content must come out at once, as exactly one chunk, without waiting for the next.
func TestAnthropicStreamNoDelay(t *testing.T) {
	full, err := os.ReadFile(filepath.Join(anthropicTestdata, "stream", "text.anthropic.sse"))
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(filepath.Join(anthropicTestdata, "stream", "text.openai.sse"))
	if err != nil {
		t.Fatal(err)
	}
	events := strings.SplitAfter(string(full), "\n\n")
	feed := &anthropicFeed{events: make(chan []byte, len(events))}
	s := newAnthropicStream(io.NopCloser(feed), "gpt-4o", false, anthropicClock)
	var out []byte
	buf := make([]byte, 64<<10)
	for _, ev := range events {
		if ev == "" {
			continue
		}
		feed.events <- []byte(ev)
		if !strings.Contains(ev, "message_") && !strings.Contains(ev, "text_delta") {
			continue // ping, block start and stop carry nothing to send
		}
		n, err := s.Read(buf)
		if err != nil {
			t.Fatalf("after %q: %v", ev, err)
		}
		if chunks, err := anthropicSSEData(buf[:n]); err != nil || len(chunks) != 1 {
			t.Fatalf("after %q: read %q, want one chunk (%v)", ev, buf[:n], err)
		}
		out = append(out, buf[:n]...)
	}
	if n, err := s.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("after message_stop: %d, %v; want 0, EOF", n, err)
	}
	if err := anthropicSSEEqual(golden, out); err != nil {
		t.Error(err)
	}
}
