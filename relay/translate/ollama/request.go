// Package ollama translates between Ollama's API dialect (/api/chat, /api/generate) and
// OpenAI's chat dialect, for an Ollama client whose model the relay serves from a vendor:
// requests (ToOpenAI), answers and streams (FromOpenAI, Answer, NDJSON out) and a load-only
// request's answer (LoadResponse), with the tokens counted. It uses nothing of the relay but
// relay/count; the relay's chain calls it.
package ollama

// The Ollama dialect on the vendor path: when no home node serves a model, phone apps that speak
// Ollama's /api/chat and /api/generate are answered by OpenAI-compatible vendors. The request is
// translated to OpenAI chat completions and the answer back into what Ollama's own server sends
// (server/routes.go): NDJSON lines that end with a done:true line carrying the metrics, or one
// JSON object when the client asked for no stream.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hearthlab/hearth/relay/count"
)

// ErrLoadOnly means the Ollama request only asks to load the model (/api/generate with an empty
// prompt, /api/chat with no messages). Ollama answers that without generating anything, so the
// caller answers with [LoadResponse] and calls no upstream.
var ErrLoadOnly = errors.New("relay: ollama request only loads the model")

// dialectMaxAnswer bounds a whole upstream answer, and so one SSE line of it, in bytes.
const dialectMaxAnswer = 32 << 20

// ToOpenAI turns an Ollama /api/chat or /api/generate request body into an OpenAI chat
// completions request body (model unchanged). stream is Ollama's (default true); a streamed
// request asks upstream for include_usage so that the final line can carry the token counts.
// Any error other than [ErrLoadOnly] is the client's (answer 400).
//
// Not carried over: think, keep_alive, truncate, shift, logprobs; in /api/generate raw and
// template (the prompt is sent as the user message as is) and context (the old conversational
// memory: a vendor has nothing to replay it into, so a client relying on it loses its memory).
// A non-empty suffix (fill-in-the-middle) is refused, since a chat model cannot honour it.
func ToOpenAI(path string, body []byte) (openai []byte, model string, stream bool, err error) {
	chat, err := ollamaDialectIsChat(path)
	if err != nil {
		return nil, "", false, err
	}
	var in dialectRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, "", false, fmt.Errorf("relay: ollama request: %w", err)
	}
	stream = in.Stream == nil || *in.Stream
	if in.Model == "" {
		return nil, "", stream, errors.New("relay: ollama request: model is required")
	}
	out := dialectOpenAIRequest{Model: in.Model, Stream: stream}
	if stream {
		out.StreamOptions = &dialectStreamOptions{IncludeUsage: true}
	}
	if chat {
		if len(in.Messages) == 0 {
			return nil, in.Model, stream, ErrLoadOnly
		}
		if out.Messages, err = dialectChatMessages(in.Messages); err != nil {
			return nil, in.Model, stream, err
		}
		if out.Tools, err = dialectTools(in.Tools); err != nil {
			return nil, in.Model, stream, err
		}
	} else {
		if in.Prompt == "" {
			return nil, in.Model, stream, ErrLoadOnly
		}
		if in.Suffix != "" {
			return nil, in.Model, stream, errors.New("relay: ollama request: suffix (fill-in-the-middle) is not supported when a vendor answers")
		}
		if in.System != "" {
			out.Messages = append(out.Messages, dialectOpenAIMessage{Role: "system", Content: in.System})
		}
		user, err := dialectUserContent("prompt", in.Prompt, in.Images)
		if err != nil {
			return nil, in.Model, stream, err
		}
		out.Messages = append(out.Messages, dialectOpenAIMessage{Role: "user", Content: user})
	}
	if out.ResponseFormat, err = dialectResponseFormat(in.Format); err != nil {
		return nil, in.Model, stream, err
	}
	if err := dialectApplyOptions(&out, in.Options); err != nil {
		return nil, in.Model, stream, err
	}
	openai, err = json.Marshal(out)
	if err != nil {
		return nil, in.Model, stream, fmt.Errorf("relay: ollama request: %w", err)
	}
	return openai, in.Model, stream, nil
}

// LoadResponse is Ollama's answer to a load-only request (see [ErrLoadOnly]): one
// done:true object with done_reason "load", sent whatever the stream flag, as Ollama does.
func LoadResponse(path, model string) []byte {
	chat, _ := ollamaDialectIsChat(path)
	line := dialectLine{Model: model, CreatedAt: time.Now().UTC(), Done: true, DoneReason: "load"}
	if chat {
		line.Message = &dialectOutMessage{Role: "assistant"}
	} else {
		line.Response = new(string)
	}
	b, _ := json.Marshal(line)
	return append(b, '\n')
}

// FromOpenAI copies an OpenAI chat completions answer (SSE chunks when stream, one JSON
// body otherwise) from src to dst as Ollama's answer for path: NDJSON lines (one per chunk,
// flushed at once when dst is an http.Flusher or a ResponseWriter wrapping one — never merged) ending with a done:true line, or
// one JSON object. The final object carries done_reason and the Metrics fields
// (prompt_eval_count, eval_count from the OpenAI usage when present; durations measured).
// model is what to report. It returns the usage seen.
//
// Either upstream shape is read whatever stream says (a vendor that ignored the stream flag is
// still translated). Chunks that carry nothing for the client (the role, tool-call fragments,
// usage) write no line; tool calls are written whole once the finish_reason arrives, as Ollama
// writes them. Durations are measured here, from the call: the caller calls it once the upstream
// headers arrive. Usage is zero when upstream sent none (the caller estimates). When upstream
// fails (an error chunk, a broken or truncated stream) the client gets Ollama's {"error":"..."}
// (as the last line, or as the whole body) and the error is returned; the caller sets the
// Content-Type (application/x-ndjson for a stream, application/json otherwise).
func FromOpenAI(dst io.Writer, src io.Reader, path, model string, stream bool) (count.Usage, error) {
	a, err := NewAnswer(dst, path, model, stream)
	if err != nil {
		return count.Usage{}, err
	}
	err = a.translate(src)
	return a.usage, err
}

func ollamaDialectIsChat(path string) (bool, error) {
	switch strings.TrimSuffix(path, "/") {
	case "/api/chat":
		return true, nil
	case "/api/generate":
		return false, nil
	}
	return false, fmt.Errorf("relay: ollama dialect: no translation for %q", path)
}

// dialectRequest holds the fields of Ollama's ChatRequest and GenerateRequest that are carried.
type dialectRequest struct {
	Model    string                     `json:"model"`
	Messages []dialectMessage           `json:"messages"`
	Prompt   string                     `json:"prompt"`
	System   string                     `json:"system"`
	Suffix   string                     `json:"suffix"`
	Images   [][]byte                   `json:"images"`
	Stream   *bool                      `json:"stream"`
	Format   json.RawMessage            `json:"format"`
	Tools    json.RawMessage            `json:"tools"`
	Options  map[string]json.RawMessage `json:"options"`
}

type dialectMessage struct {
	Role       string            `json:"role"`
	Content    string            `json:"content"`
	Images     [][]byte          `json:"images"`
	ToolCalls  []dialectToolCall `json:"tool_calls"`
	ToolName   string            `json:"tool_name"`
	ToolCallID string            `json:"tool_call_id"`
}

// dialectToolCall is Ollama's tool call, read in requests and written in answers.
type dialectToolCall struct {
	ID       string `json:"id,omitempty"`
	Function struct {
		Index     int             `json:"index"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

type dialectOpenAIRequest struct {
	Model            string                 `json:"model"`
	Messages         []dialectOpenAIMessage `json:"messages"`
	Stream           bool                   `json:"stream"`
	StreamOptions    *dialectStreamOptions  `json:"stream_options,omitempty"`
	Tools            json.RawMessage        `json:"tools,omitempty"`
	ResponseFormat   any                    `json:"response_format,omitempty"`
	Temperature      *float64               `json:"temperature,omitempty"`
	TopP             *float64               `json:"top_p,omitempty"`
	FrequencyPenalty *float64               `json:"frequency_penalty,omitempty"`
	PresencePenalty  *float64               `json:"presence_penalty,omitempty"`
	Seed             *int64                 `json:"seed,omitempty"`
	Stop             []string               `json:"stop,omitempty"`
	MaxTokens        *int64                 `json:"max_tokens,omitempty"`
}

type dialectStreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type dialectOpenAIMessage struct {
	Role       string                  `json:"role"`
	Content    any                     `json:"content"` // a string, content parts, or nil beside tool calls
	ToolCalls  []dialectOpenAIToolCall `json:"tool_calls,omitempty"`
	ToolCallID string                  `json:"tool_call_id,omitempty"`
}

type dialectOpenAIToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type dialectPart struct {
	Type     string            `json:"type"`
	Text     string            `json:"text,omitempty"`
	ImageURL map[string]string `json:"image_url,omitempty"`
}

// dialectChatMessages maps Ollama messages onto OpenAI's. OpenAI ties each tool result to its
// call by id where Ollama clients often send only tool_name, so calls without an id get one and
// a tool result without one takes the id of the earliest unanswered call of that name (or of
// any name) from the assistant turn before it. Thinking text in past turns is not sent back.
func dialectChatMessages(in []dialectMessage) ([]dialectOpenAIMessage, error) {
	out := make([]dialectOpenAIMessage, 0, len(in))
	type call struct{ id, name string }
	var unanswered []call
	for i, m := range in {
		role := strings.ToLower(m.Role)
		content, err := dialectUserContent(fmt.Sprintf("message %d", i), m.Content, m.Images)
		if err != nil {
			return nil, err
		}
		msg := dialectOpenAIMessage{Role: role, Content: content}
		switch {
		case len(m.ToolCalls) > 0:
			unanswered = unanswered[:0]
			for j, tc := range m.ToolCalls {
				c := dialectOpenAIToolCall{ID: tc.ID, Type: "function"}
				if c.ID == "" {
					c.ID = fmt.Sprintf("call_%d_%d", i, j)
				}
				c.Function.Name = tc.Function.Name
				c.Function.Arguments = "{}"
				if args := bytes.TrimSpace(tc.Function.Arguments); len(args) > 0 && string(args) != "null" {
					c.Function.Arguments = string(args)
				}
				msg.ToolCalls = append(msg.ToolCalls, c)
				unanswered = append(unanswered, call{c.ID, c.Function.Name})
			}
			if m.Content == "" {
				msg.Content = nil
			}
		case role == "tool":
			pick := -1
			for k, c := range unanswered {
				if (m.ToolCallID != "" && c.id == m.ToolCallID) || (m.ToolCallID == "" && c.name == m.ToolName) {
					pick = k
					break
				}
			}
			if pick < 0 && m.ToolCallID == "" && len(unanswered) > 0 {
				pick = 0
			}
			msg.ToolCallID = m.ToolCallID
			if pick >= 0 {
				msg.ToolCallID = unanswered[pick].id
				unanswered = append(unanswered[:pick], unanswered[pick+1:]...)
			}
		}
		out = append(out, msg)
	}
	return out, nil
}

// dialectUserContent is text alone as a string, or text and images as content parts with data
// URLs; OpenAI wants the media type, which Ollama clients do not send, so it is read from the bytes.
func dialectUserContent(where, text string, images [][]byte) (any, error) {
	if len(images) == 0 {
		return text, nil
	}
	parts := make([]dialectPart, 0, len(images)+1)
	if text != "" {
		parts = append(parts, dialectPart{Type: "text", Text: text})
	}
	for i, img := range images {
		mime := http.DetectContentType(img)
		switch mime {
		case "image/jpeg", "image/png", "image/gif", "image/webp":
		default:
			return nil, fmt.Errorf("relay: ollama request: %s: image %d is not JPEG, PNG, GIF or WebP", where, i)
		}
		url := "data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(img)
		parts = append(parts, dialectPart{Type: "image_url", ImageURL: map[string]string{"url": url}})
	}
	return parts, nil
}

// dialectTools passes Ollama's tools on: they already have OpenAI's shape.
func dialectTools(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null" || string(raw) == "[]":
		return nil, nil
	case raw[0] != '[':
		return nil, errors.New("relay: ollama request: tools must be a list")
	}
	return raw, nil
}

// dialectResponseFormat maps format "json" to json_object and a JSON schema to json_schema.
func dialectResponseFormat(raw json.RawMessage) (any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" || string(raw) == `""` {
		return nil, nil
	}
	if raw[0] == '{' {
		return map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "response", "schema": raw}}, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && s == "json" {
		return map[string]string{"type": "json_object"}, nil
	}
	return nil, fmt.Errorf("relay: ollama request: format must be \"json\" or a JSON schema, not %s", raw)
}

// dialectApplyOptions carries the sampling options OpenAI has: temperature, top_p, seed, stop,
// num_predict (as max_tokens) and, since both APIs name them alike, frequency_penalty and
// presence_penalty. The rest is dropped: the runner options (num_ctx, num_batch, num_gpu,
// main_gpu, use_mmap, num_thread) and the samplers OpenAI lacks (num_keep, top_k, min_p,
// typical_p, repeat_last_n, repeat_penalty, and any other key). A negative seed or a num_predict
// of 0 or less is Ollama's "unset".
func dialectApplyOptions(out *dialectOpenAIRequest, opts map[string]json.RawMessage) error {
	for key, raw := range opts {
		if string(bytes.TrimSpace(raw)) == "null" {
			continue
		}
		var n float64
		switch key {
		case "temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "num_predict":
			if err := json.Unmarshal(raw, &n); err != nil {
				return fmt.Errorf("relay: ollama request: option %s must be a number", key)
			}
		}
		switch key {
		case "temperature":
			out.Temperature = &n
		case "top_p":
			out.TopP = &n
		case "frequency_penalty":
			out.FrequencyPenalty = &n
		case "presence_penalty":
			out.PresencePenalty = &n
		case "seed":
			if seed := int64(n); seed >= 0 {
				out.Seed = &seed
			}
		case "num_predict":
			if limit := int64(n); limit > 0 {
				out.MaxTokens = &limit
			}
		case "stop":
			var one string
			if json.Unmarshal(raw, &one) == nil {
				out.Stop = []string{one}
			} else if err := json.Unmarshal(raw, &out.Stop); err != nil {
				return errors.New("relay: ollama request: option stop must be a string or a list of strings")
			}
		}
	}
	return nil
}
