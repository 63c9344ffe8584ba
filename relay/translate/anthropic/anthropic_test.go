package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/hearthlab/hearth/relay/count"
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

const anthropicTestdata = "testdata"

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
			body, stream, incUsage, err := Request(in, "claude-sonnet-4-5")
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
		want count.Usage
	}{
		{"end_turn", count.Usage{PromptTokens: 2121, CompletionTokens: 17}},
		{"stop_sequence", count.Usage{PromptTokens: 12, CompletionTokens: 6}},
		{"max_tokens", count.Usage{PromptTokens: 30, CompletionTokens: 10}},
		{"refusal", count.Usage{PromptTokens: 40}},
		{"tool_use", count.Usage{PromptTokens: 472, CompletionTokens: 91}},
		{"tool_use_only", count.Usage{PromptTokens: 300, CompletionTokens: 20}},
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
		want         count.Usage
		wantVendor   string // substring of Err(), "" for none
	}{
		{name: "text", input: "text", want: count.Usage{PromptTokens: 35, CompletionTokens: 15}},
		{name: "text_usage", input: "text", includeUsage: true, want: count.Usage{PromptTokens: 35, CompletionTokens: 15}},
		{name: "tool_use", input: "tool_use", includeUsage: true, want: count.Usage{PromptTokens: 472, CompletionTokens: 89}},
		{name: "max_tokens", input: "max_tokens", want: count.Usage{PromptTokens: 30, CompletionTokens: 10}},
		// Cut by an error event: no final count, so 12 streamed bytes ≈ 3 tokens, estimated.
		{name: "error", input: "error", includeUsage: true, want: count.Usage{PromptTokens: 8, CompletionTokens: 3, Estimated: true}, wantVendor: "overloaded_error: Overloaded"},
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
			body, _, _, err := Request([]byte(c.body), "claude-x")
			if err == nil {
				t.Fatalf("no error; body %s", body)
			}
			if !strings.HasPrefix(err.Error(), "relay: anthropic request: ") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
			if got := errors.Is(err, ErrUnsupported); got != c.unsupported {
				t.Errorf("errors.Is(ErrUnsupported) = %v, want %v (%v)", got, c.unsupported, err)
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
			_, _, err := Response([]byte(c.body), "gpt-4o")
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
			got := ErrorBody(c.status, []byte(c.body))
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
