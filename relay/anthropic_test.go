package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

// anthropicUpdate reports -update: rewrite the golden files from what the code does now. Another
// test file of the package may have registered the flag first; then this one reads theirs.
var anthropicUpdate = func() func() bool {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files in testdata")
	}
	return func() bool {
		f := flag.Lookup("update")
		return f != nil && f.Value.String() == "true"
	}
}()

const anthropicTestdata = "testdata/anthropic"

func anthropicClock() time.Time { return time.Unix(1735689600, 0) }

// anthropicGolden compares got with the golden file, or rewrites it under -update.
func anthropicGolden(t *testing.T, path string, got []byte, equal func(want, got []byte) error) {
	t.Helper()
	if anthropicUpdate() {
		if json.Valid(got) {
			var buf bytes.Buffer
			if err := json.Indent(&buf, got, "", "  "); err != nil {
				t.Fatal(err)
			}
			got = append(buf.Bytes(), '\n')
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if err := equal(want, got); err != nil {
		t.Errorf("%s: %v", path, err)
	}
}

// anthropicJSONEqual compares two JSON documents by meaning, not bytes.
func anthropicJSONEqual(want, got []byte) error {
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		return fmt.Errorf("golden: %w", err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return fmt.Errorf("got invalid JSON %q: %w", got, err)
	}
	if !reflect.DeepEqual(w, g) {
		return fmt.Errorf("differs\n got: %s\nwant: %s", got, bytes.TrimSpace(want))
	}
	return nil
}

// anthropicSSEData splits an OpenAI SSE body into its data payloads, insisting on the exact
// framing "data: ...\n\n".
func anthropicSSEData(body []byte) ([]string, error) {
	s := string(body)
	if !strings.HasSuffix(s, "\n\n") {
		return nil, fmt.Errorf("does not end with a blank line: %q", s)
	}
	var out []string
	for _, ev := range strings.Split(strings.TrimSuffix(s, "\n\n"), "\n\n") {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(data, "\n") {
			return nil, fmt.Errorf("event %q is not one data line", ev)
		}
		out = append(out, data)
	}
	return out, nil
}

func anthropicSSEEqual(want, got []byte) error {
	w, err := anthropicSSEData(want)
	if err != nil {
		return fmt.Errorf("golden: %w", err)
	}
	g, err := anthropicSSEData(got)
	if err != nil {
		return err
	}
	if len(w) != len(g) {
		return fmt.Errorf("%d chunks, want %d\n got: %s", len(g), len(w), got)
	}
	for i := range w {
		if w[i] == "[DONE]" || g[i] == "[DONE]" {
			if w[i] != g[i] {
				return fmt.Errorf("chunk %d: %s, want %s", i, g[i], w[i])
			}
			continue
		}
		if err := anthropicJSONEqual([]byte(w[i]), []byte(g[i])); err != nil {
			return fmt.Errorf("chunk %d: %w", i, err)
		}
	}
	return nil
}

// anthropicCovered fails when a fixture in dir has no row in the test's table.
func anthropicCovered(t *testing.T, dir, suffix string, names map[string]bool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(anthropicTestdata, dir, "*"+suffix))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in %s: %v", dir, err)
	}
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), suffix); !names[name] {
			t.Errorf("fixture %s has no case in the table", f)
		}
	}
}

func TestAnthropicRequestGolden(t *testing.T) {
	cases := []struct {
		name                     string
		wantStream, wantIncUsage bool
	}{
		{name: "system"},
		{name: "multi_turn"},
		{name: "minimal_stream_usage", wantStream: true, wantIncUsage: true},
		{name: "images"},
		{name: "tools", wantStream: true},
		{name: "tool_choice_function"},
		{name: "tool_choice_none"},
		{name: "tool_choice_auto"},
	}
	names := map[string]bool{}
	for _, c := range cases {
		names[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			base := filepath.Join(anthropicTestdata, "request", c.name)
			in, err := os.ReadFile(base + ".openai.json")
			if err != nil {
				t.Fatal(err)
			}
			body, stream, incUsage, err := AnthropicRequest(in, "claude-sonnet-4-5")
			if err != nil {
				t.Fatal(err)
			}
			if stream != c.wantStream || incUsage != c.wantIncUsage {
				t.Errorf("stream, includeUsage = %v, %v; want %v, %v", stream, incUsage, c.wantStream, c.wantIncUsage)
			}
			anthropicGolden(t, base+".anthropic.json", body, anthropicJSONEqual)
		})
	}
	anthropicCovered(t, "request", ".openai.json", names)
}

func TestAnthropicResponseGolden(t *testing.T) {
	cases := []struct {
		name string
		want Usage
	}{
		{"end_turn", Usage{PromptTokens: 2121, CompletionTokens: 17}},
		{"stop_sequence", Usage{PromptTokens: 12, CompletionTokens: 6}},
		{"max_tokens", Usage{PromptTokens: 30, CompletionTokens: 10}},
		{"refusal", Usage{PromptTokens: 40}},
		{"tool_use", Usage{PromptTokens: 472, CompletionTokens: 91}},
		{"tool_use_only", Usage{PromptTokens: 300, CompletionTokens: 20}},
	}
	names := map[string]bool{}
	for _, c := range cases {
		names[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			base := filepath.Join(anthropicTestdata, "response", c.name)
			in, err := os.ReadFile(base + ".anthropic.json")
			if err != nil {
				t.Fatal(err)
			}
			body, usage, err := anthropicResponse(in, "gpt-4o", anthropicClock)
			if err != nil {
				t.Fatal(err)
			}
			if usage != c.want {
				t.Errorf("usage %+v, want %+v", usage, c.want)
			}
			anthropicGolden(t, base+".openai.json", body, anthropicJSONEqual)
		})
	}
	anthropicCovered(t, "response", ".anthropic.json", names)
}

func TestAnthropicStreamGolden(t *testing.T) {
	cases := []struct {
		name, input  string
		includeUsage bool
		want         Usage
		wantVendor   string // substring of Err(), "" for none
	}{
		{name: "text", input: "text", want: Usage{PromptTokens: 35, CompletionTokens: 15}},
		{name: "text_usage", input: "text", includeUsage: true, want: Usage{PromptTokens: 35, CompletionTokens: 15}},
		{name: "tool_use", input: "tool_use", includeUsage: true, want: Usage{PromptTokens: 472, CompletionTokens: 89}},
		{name: "max_tokens", input: "max_tokens", want: Usage{PromptTokens: 30, CompletionTokens: 10}},
		// Cut by an error event: no final count, so 12 streamed bytes ≈ 3 tokens, estimated.
		{name: "error", input: "error", includeUsage: true, want: Usage{PromptTokens: 8, CompletionTokens: 3, Estimated: true}, wantVendor: "overloaded_error: Overloaded"},
	}
	inputs := map[string]bool{}
	for _, c := range cases {
		inputs[c.input] = true
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(anthropicTestdata, "stream")
			in, err := os.ReadFile(filepath.Join(dir, c.input+".anthropic.sse"))
			if err != nil {
				t.Fatal(err)
			}
			s := newAnthropicStream(io.NopCloser(bytes.NewReader(in)), "gpt-4o", c.includeUsage, anthropicClock)
			out, err := io.ReadAll(s)
			if err != nil {
				t.Fatalf("read: %v (after %q)", err, out)
			}
			if u := s.Usage(); u != c.want {
				t.Errorf("usage %+v, want %+v", u, c.want)
			}
			if verr := s.Err(); (verr == nil) != (c.wantVendor == "") || verr != nil && !strings.Contains(verr.Error(), c.wantVendor) {
				t.Errorf("Err() = %v, want %q", verr, c.wantVendor)
			}
			anthropicGolden(t, filepath.Join(dir, c.name+".openai.sse"), out, anthropicSSEEqual)
		})
	}
	anthropicCovered(t, "stream", ".anthropic.sse", inputs)
}

func TestAnthropicRequestErrors(t *testing.T) {
	user := func(content string) string {
		return `{"messages":[{"role":"user","content":` + content + `}]}`
	}
	image := func(url string) string {
		return user(`[{"type":"image_url","image_url":{"url":"` + url + `"}}]`)
	}
	assistant := func(args string) string {
		return `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":` + args + `}}]}]}`
	}
	withTools := func(extra string) string {
		return `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],` + extra + `}`
	}
	cases := []struct {
		name, body, want string
		unsupported      bool
	}{
		{"not json", `{"messages":`, "decode", false},
		{"unknown role", `{"messages":[{"role":"function","content":"x"}]}`, `messages[0]: role "function"`, false},
		{"only system", `{"messages":[{"role":"system","content":"be nice"}]}`, "no user or assistant message", false},
		{"no messages", `{}`, "no user or assistant message", false},
		{"content not text", user(`42`), "want a string or an array of parts", false},
		{"image in system", `{"messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`, "only text is allowed", false},
		{"image ftp", image("ftp://example.com/a.png"), "want a data: or http(s) URL", false},
		{"image not base64", image("data:image/png,abc"), "base64 data URL", false},
		{"image no comma", image("data:image/png;base64"), "malformed data URL", false},
		{"data not an image", image("data:text/plain;base64,aGk="), "not an image", false},
		{"image_url missing", user(`[{"type":"image_url"}]`), "image_url", false},
		{"audio", user(`[{"type":"input_audio","input_audio":{"data":"AAA","format":"wav"}}]`), `type "input_audio"`, true},
		{"file by id", user(`[{"type":"file","file":{"file_id":"file-abc"}}]`), "file ids", true},
		{"file not pdf", user(`[{"type":"file","file":{"file_data":"data:text/csv;base64,YSxi"}}]`), `"text/csv"`, true},
		{"arguments not json", assistant(`"{\"city\":"`), "want a JSON object", false},
		{"arguments not object", assistant(`"[1,2]"`), "want a JSON object", false},
		{"tool call without id", `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f"}}]}]}`, "id and function.name", false},
		{"tool message without id", `{"messages":[{"role":"user","content":"hi"},{"role":"tool","content":"42"}]}`, "tool_call_id", false},
		{"tool_choice unknown", withTools(`"tool_choice":"sometimes"`), `tool_choice "sometimes"`, false},
		{"tool_choice bad object", withTools(`"tool_choice":{"type":"function"}`), "tool_choice: want", false},
		{"tool without name", `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{}}]}`, "function.name is required", false},
		{"non-function tool", `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"custom","custom":{"name":"x"}}]}`, `type "custom"`, true},
		{"stop not string", `{"messages":[{"role":"user","content":"hi"}],"stop":42}`, "stop: want", false},
		{"max_tokens zero", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":0}`, "max_tokens 0", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body, _, _, err := AnthropicRequest([]byte(c.body), "claude-x")
			if err == nil {
				t.Fatalf("no error; body %s", body)
			}
			if !strings.HasPrefix(err.Error(), "relay: anthropic request: ") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
			if got := errors.Is(err, ErrAnthropicUnsupported); got != c.unsupported {
				t.Errorf("errors.Is(ErrAnthropicUnsupported) = %v, want %v (%v)", got, c.unsupported, err)
			}
		})
	}
}

func TestAnthropicResponseErrors(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"not json", `{"id":`, "decode"},
		{"error body", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, "vendor error overloaded_error: Overloaded"},
		{"not a message", `{"type":"completion","id":"x"}`, `type "completion"`},
		{"no id", `{"type":"message","content":[]}`, "want a message"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := AnthropicResponse([]byte(c.body), "gpt-4o")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestAnthropicError(t *testing.T) {
	anth := func(typ, msg string) string {
		return `{"type":"error","error":{"type":"` + typ + `","message":"` + msg + `"},"request_id":"req_1"}`
	}
	oai := func(msg, typ, code string) string {
		c := "null"
		if code != "" {
			c = `"` + code + `"`
		}
		return `{"error":{"message":"` + msg + `","type":"` + typ + `","param":null,"code":` + c + `}}`
	}
	cases := []struct {
		status     int
		body, want string
	}{
		{400, anth("invalid_request_error", "max_tokens: Field required"), oai("max_tokens: Field required", "invalid_request_error", "")},
		{401, anth("authentication_error", "invalid x-api-key"), oai("invalid x-api-key", "invalid_request_error", "invalid_api_key")},
		{402, anth("billing_error", "Your credit balance is too low"), oai("Your credit balance is too low", "insufficient_quota", "insufficient_quota")},
		{403, anth("permission_error", "no access"), oai("no access", "invalid_request_error", "permission_denied")},
		{404, anth("not_found_error", "model: claude-9"), oai("model: claude-9", "invalid_request_error", "not_found")},
		{413, `<html>Request Entity Too Large</html>`, oai("upstream error: 413 Request Entity Too Large", "invalid_request_error", "request_too_large")},
		{429, anth("rate_limit_error", "slow down"), oai("slow down", "requests", "rate_limit_exceeded")},
		{500, anth("api_error", "Internal server error"), oai("Internal server error", "server_error", "")},
		{529, anth("overloaded_error", "Overloaded"), oai("Overloaded", "server_error", "overloaded")},
		{418, ``, oai("upstream error: 418 I'm a teapot", "invalid_request_error", "")},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.status), func(t *testing.T) {
			got := AnthropicError(c.status, []byte(c.body))
			if err := anthropicJSONEqual([]byte(c.want), got); err != nil {
				t.Error(err)
			}
			var e openai.ErrorResponse
			if err := json.Unmarshal(got, &e); err != nil || e.Error == nil || e.Error.Message == "" {
				t.Errorf("go-openai cannot read %s: %v", got, err)
			}
		})
	}
}

// anthropicClient is a go-openai client for a fake OpenAI endpoint that translates with this
// file's functions, as the relay will: the request from go-openai through AnthropicRequest, the
// vendor's answer (a fixture) back through AnthropicResponse or AnthropicStream.
func anthropicClient(t *testing.T, fixture string, check func(t *testing.T, anthReq map[string]any)) *openai.Client {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, _ := io.ReadAll(r.Body)
		body, stream, includeUsage, err := AnthropicRequest(in, "claude-sonnet-4-5")
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
			out, _, err := AnthropicResponse(raw, "gpt-4o")
			if err != nil {
				t.Error(err)
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write(out)
			return
		}
		s := NewAnthropicStream(vendor, "gpt-4o", includeUsage)
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
	resp, err := client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
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
	stream, err := client.CreateChatCompletionStream(context.Background(), openai.ChatCompletionRequest{
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
	stream, err := client.CreateChatCompletionStream(context.Background(), openai.ChatCompletionRequest{
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
			s := NewAnthropicStream(io.NopCloser(c.src), "gpt-4o", false)
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
