// Package anthropic translates between the OpenAI chat dialect that the relay's clients speak
// and Anthropic's Messages API: requests (Request), whole answers (Response), streams
// (Stream, SSE to SSE) and errors (ErrorBody), with the tokens counted. It uses nothing of the
// relay but relay/count; the relay's chain calls it for channels of type anthropic.
package anthropic

// The anthropic channel: clients speak OpenAI chat completions, a Claude channel speaks
// Anthropic's Messages API (POST {base}/v1/messages). This file translates requests;
// anthropic_stream.go translates what comes back: whole responses, SSE streams and errors.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// anthropicDefaultMaxTokens is sent when the client gives no limit: the Messages API requires
// max_tokens and OpenAI clients usually omit it.
const anthropicDefaultMaxTokens = 4096

// ErrUnsupported marks a request that uses something the Messages API cannot take
// (audio input, a file by id, a non-function tool). It is not the client's mistake, so the chain
// may try a channel of another kind instead of failing the request.
var ErrUnsupported = errors.New("not supported by Anthropic channels")

// anthChatRequest is the part of an OpenAI chat completions request that has a Messages API
// counterpart. Everything else is dropped on purpose, because Anthropic has no equivalent:
// n (one choice is always returned), presence_penalty, frequency_penalty, logit_bias, logprobs,
// top_logprobs, seed, response_format, service_tier, store, metadata, modalities, audio,
// prediction, reasoning_effort, web_search_options, a message's name, an image's detail and the
// deprecated functions/function_call.
type anthChatRequest struct {
	Messages            []anthChatMessage `json:"messages"`
	MaxTokens           *int              `json:"max_tokens"`
	MaxCompletionTokens *int              `json:"max_completion_tokens"`
	Temperature         *float64          `json:"temperature"`
	TopP                *float64          `json:"top_p"`
	Stop                json.RawMessage   `json:"stop"`
	Stream              bool              `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Tools             []anthChatTool  `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	User              string          `json:"user"`
}

type anthChatMessage struct {
	Role       string             `json:"role"`
	Content    json.RawMessage    `json:"content"`
	ToolCalls  []anthChatToolCall `json:"tool_calls"`
	ToolCallID string             `json:"tool_call_id"`
}

// anthChatToolCall is an OpenAI tool call: read from assistant messages, written into responses
// and, with Index set, into stream chunks.
type anthChatToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type anthChatTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// anthChatPart is one element of an OpenAI content array.
type anthChatPart struct {
	Type     string          `json:"type"`
	Text     string          `json:"text"`
	Refusal  string          `json:"refusal"`
	ImageURL json.RawMessage `json:"image_url"` // {"url": ...}, or a bare string from some clients
	File     *struct {
		FileData string `json:"file_data"`
		FileID   string `json:"file_id"`
	} `json:"file"`
}

type anthRequest struct {
	Model         string          `json:"model"`
	System        any             `json:"system,omitempty"` // string, or []anthBlock when several
	Messages      []anthMessage   `json:"messages"`
	MaxTokens     int             `json:"max_tokens"`
	Temperature   *float64        `json:"temperature,omitempty"`
	TopP          *float64        `json:"top_p,omitempty"`
	StopSequences []string        `json:"stop_sequences,omitempty"`
	Stream        bool            `json:"stream,omitempty"`
	Tools         []anthTool      `json:"tools,omitempty"`
	ToolChoice    *anthToolChoice `json:"tool_choice,omitempty"`
	Metadata      *anthMetadata   `json:"metadata,omitempty"`
}

type anthMessage struct {
	Role    string `json:"role"`
	Content any    `json:"content"` // string for a lone text block, else []anthBlock
}

// anthBlock is any Messages API content block; Type says which fields are used.
type anthBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	Source    *anthSource     `json:"source,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   any             `json:"content,omitempty"` // tool_result: string or []anthBlock
}

type anthSource struct {
	Type      string `json:"type"` // base64 or url
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

type anthTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anthToolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

type anthMetadata struct {
	UserID string `json:"user_id"`
}

// anthTurn is one Messages API message while it is being built.
type anthTurn struct {
	role   string
	blocks []anthBlock
}

// Request translates an OpenAI chat completions request body into a Messages API
// request body for the vendor's model name. stream/includeUsage report what the client asked.
// Errors wrapping ErrUnsupported are about the channel; others about the request.
func Request(openai []byte, model string) (body []byte, stream, includeUsage bool, err error) {
	var in anthChatRequest
	if err := json.Unmarshal(openai, &in); err != nil {
		return nil, false, false, fmt.Errorf("relay: anthropic request: decode: %w", err)
	}
	out := anthRequest{Model: model, MaxTokens: anthropicDefaultMaxTokens, Stream: in.Stream}
	if err := anthConversation(&out, in.Messages); err != nil {
		return nil, false, false, fmt.Errorf("relay: anthropic request: %w", err)
	}
	if err := anthParams(&out, &in); err != nil {
		return nil, false, false, fmt.Errorf("relay: anthropic request: %w", err)
	}
	if body, err = anthMarshal(out); err != nil {
		return nil, false, false, fmt.Errorf("relay: anthropic request: encode: %w", err)
	}
	includeUsage = in.Stream && in.StreamOptions != nil && in.StreamOptions.IncludeUsage
	return body, in.Stream, includeUsage, nil
}

// anthConversation moves system messages to the top-level system prompt (wherever they were:
// Anthropic has no mid-conversation system turn) and merges consecutive same-role messages,
// tool results included, because the Messages API requires user and assistant to alternate.
func anthConversation(out *anthRequest, msgs []anthChatMessage) error {
	var system []anthBlock
	var turns []anthTurn
	for i, m := range msgs {
		var role string
		var blocks []anthBlock
		var err error
		switch m.Role {
		case "system", "developer":
			blocks, err = anthTextOnly(m.Content)
			system = append(system, blocks...)
		case "user":
			role = "user"
			blocks, err = anthUserBlocks(m.Content)
		case "assistant":
			role = "assistant"
			blocks, err = anthAssistantBlocks(m)
		case "tool":
			role = "user"
			blocks, err = anthToolResult(m)
		default:
			err = fmt.Errorf("role %q: want system, developer, user, assistant or tool", m.Role)
		}
		if err != nil {
			return fmt.Errorf("messages[%d]: %w", i, err)
		}
		// A message with nothing left (empty text) would be rejected by Anthropic; skip it.
		if role == "" || len(blocks) == 0 {
			continue
		}
		if n := len(turns); n > 0 && turns[n-1].role == role {
			turns[n-1].blocks = append(turns[n-1].blocks, blocks...)
		} else {
			turns = append(turns, anthTurn{role: role, blocks: blocks})
		}
	}
	if len(turns) == 0 {
		return errors.New("messages: no user or assistant message to send")
	}
	switch len(system) {
	case 0:
	case 1:
		out.System = system[0].Text
	default:
		out.System = system
	}
	out.Messages = make([]anthMessage, len(turns))
	for i, t := range turns {
		out.Messages[i] = anthMessage{Role: t.role, Content: t.blocks}
		if len(t.blocks) == 1 && t.blocks[0].Type == "text" {
			out.Messages[i].Content = t.blocks[0].Text
		}
	}
	return nil
}

// anthParts decodes OpenAI message content: absent/null, a string, or an array of parts.
func anthParts(raw json.RawMessage) ([]anthChatPart, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("content: %w", err)
		}
		return []anthChatPart{{Type: "text", Text: s}}, nil
	}
	var parts []anthChatPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, fmt.Errorf("content: want a string or an array of parts: %w", err)
	}
	return parts, nil
}

// anthText makes a text block; ok is false for blank text, which Anthropic rejects.
func anthText(s string) (b anthBlock, ok bool) {
	return anthBlock{Type: "text", Text: s}, strings.TrimSpace(s) != ""
}

// anthTextOnly translates content that may only hold text (system and tool messages).
func anthTextOnly(raw json.RawMessage) ([]anthBlock, error) {
	parts, err := anthParts(raw)
	if err != nil {
		return nil, err
	}
	var blocks []anthBlock
	for i, p := range parts {
		if p.Type != "text" {
			return nil, fmt.Errorf("content[%d]: type %q: only text is allowed here", i, p.Type)
		}
		if b, ok := anthText(p.Text); ok {
			blocks = append(blocks, b)
		}
	}
	return blocks, nil
}

func anthUserBlocks(raw json.RawMessage) ([]anthBlock, error) {
	parts, err := anthParts(raw)
	if err != nil {
		return nil, err
	}
	var blocks []anthBlock
	for i, p := range parts {
		var b anthBlock
		switch p.Type {
		case "text":
			var ok bool
			if b, ok = anthText(p.Text); !ok {
				continue
			}
		case "image_url":
			b, err = anthImage(p.ImageURL)
		case "file":
			b, err = anthDocument(p)
		default:
			err = fmt.Errorf("type %q: %w", p.Type, ErrUnsupported)
		}
		if err != nil {
			return nil, fmt.Errorf("content[%d]: %w", i, err)
		}
		blocks = append(blocks, b)
	}
	return blocks, nil
}

func anthImage(raw json.RawMessage) (anthBlock, error) {
	var img struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(raw, &img); err != nil {
		if json.Unmarshal(raw, &img.URL) != nil {
			return anthBlock{}, errors.New("image_url: want {\"url\": ...}")
		}
	}
	switch {
	case strings.HasPrefix(img.URL, "data:"):
		mediaType, data, err := anthDataURL(img.URL)
		if err != nil {
			return anthBlock{}, fmt.Errorf("image_url: %w", err)
		}
		if !strings.HasPrefix(mediaType, "image/") {
			return anthBlock{}, fmt.Errorf("image_url: media type %q is not an image", mediaType)
		}
		if mediaType == "image/jpg" {
			mediaType = "image/jpeg" // a common misspelling that Anthropic refuses
		}
		return anthBlock{Type: "image", Source: &anthSource{Type: "base64", MediaType: mediaType, Data: data}}, nil
	case strings.HasPrefix(img.URL, "https://"), strings.HasPrefix(img.URL, "http://"):
		return anthBlock{Type: "image", Source: &anthSource{Type: "url", URL: img.URL}}, nil
	default:
		return anthBlock{}, errors.New("image_url: want a data: or http(s) URL")
	}
}

// anthDocument translates a PDF sent inline as an OpenAI file part.
func anthDocument(p anthChatPart) (anthBlock, error) {
	if p.File == nil || p.File.FileData == "" {
		return anthBlock{}, fmt.Errorf("file without file_data (file ids are OpenAI's): %w", ErrUnsupported)
	}
	mediaType, data, err := anthDataURL(p.File.FileData)
	if err != nil {
		return anthBlock{}, fmt.Errorf("file: %w", err)
	}
	if mediaType != "application/pdf" {
		return anthBlock{}, fmt.Errorf("file of type %q: %w", mediaType, ErrUnsupported)
	}
	return anthBlock{Type: "document", Source: &anthSource{Type: "base64", MediaType: mediaType, Data: data}}, nil
}

// anthDataURL splits "data:image/png;base64,AAAA" into its media type and base64 payload.
func anthDataURL(u string) (mediaType, data string, err error) {
	meta, data, ok := strings.Cut(strings.TrimPrefix(u, "data:"), ",")
	if !ok {
		return "", "", errors.New("malformed data URL")
	}
	params := strings.Split(meta, ";")
	mediaType = strings.ToLower(strings.TrimSpace(params[0]))
	isBase64 := false
	for _, p := range params[1:] {
		isBase64 = isBase64 || strings.EqualFold(strings.TrimSpace(p), "base64")
	}
	if mediaType == "" || !isBase64 || data == "" {
		return "", "", errors.New("want a base64 data URL with a media type")
	}
	return mediaType, data, nil
}

func anthAssistantBlocks(m anthChatMessage) ([]anthBlock, error) {
	parts, err := anthParts(m.Content)
	if err != nil {
		return nil, err
	}
	var blocks []anthBlock
	for i, p := range parts {
		text := p.Text
		switch p.Type {
		case "text":
		case "refusal":
			text = p.Refusal
		default:
			return nil, fmt.Errorf("content[%d]: type %q: assistant content may only be text", i, p.Type)
		}
		if b, ok := anthText(text); ok {
			blocks = append(blocks, b)
		}
	}
	for i, tc := range m.ToolCalls {
		if tc.Type != "" && tc.Type != "function" {
			return nil, fmt.Errorf("tool_calls[%d]: type %q: %w", i, tc.Type, ErrUnsupported)
		}
		if tc.ID == "" || tc.Function.Name == "" {
			return nil, fmt.Errorf("tool_calls[%d]: id and function.name are required", i)
		}
		input, err := anthToolInput(tc.Function.Arguments)
		if err != nil {
			return nil, fmt.Errorf("tool_calls[%d]: %w", i, err)
		}
		blocks = append(blocks, anthBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: input})
	}
	return blocks, nil
}

// anthToolInput turns OpenAI's arguments string into the JSON object Anthropic wants as input.
func anthToolInput(args string) (json.RawMessage, error) {
	args = strings.TrimSpace(args)
	if args == "" {
		return json.RawMessage("{}"), nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(args)); err != nil || buf.Bytes()[0] != '{' {
		return nil, errors.New("function.arguments: want a JSON object")
	}
	return buf.Bytes(), nil
}

func anthToolResult(m anthChatMessage) ([]anthBlock, error) {
	if m.ToolCallID == "" {
		return nil, errors.New("tool message without tool_call_id")
	}
	blocks, err := anthTextOnly(m.Content)
	if err != nil {
		return nil, err
	}
	result := anthBlock{Type: "tool_result", ToolUseID: m.ToolCallID}
	switch len(blocks) {
	case 0: // an empty result is legal in both APIs
	case 1:
		result.Content = blocks[0].Text
	default:
		result.Content = blocks
	}
	return []anthBlock{result}, nil
}

func anthParams(out *anthRequest, in *anthChatRequest) error {
	switch {
	case in.MaxCompletionTokens != nil:
		out.MaxTokens = *in.MaxCompletionTokens
	case in.MaxTokens != nil:
		out.MaxTokens = *in.MaxTokens
	}
	if out.MaxTokens <= 0 {
		return fmt.Errorf("max_tokens %d: want a positive number", out.MaxTokens)
	}
	if t := in.Temperature; t != nil {
		// OpenAI allows up to 2, Anthropic up to 1: clamp rather than fail the request.
		out.Temperature = new(min(max(*t, 0), 1))
	}
	if p := in.TopP; p != nil && *p < 1 {
		// top_p 1 is no filtering at all, and newer Claude models refuse temperature and top_p
		// together, so send it only when it means something.
		out.TopP = p
	}
	stop, err := anthStop(in.Stop)
	if err != nil {
		return err
	}
	out.StopSequences = stop
	if in.User != "" {
		out.Metadata = &anthMetadata{UserID: in.User}
	}
	if len(in.Tools) == 0 {
		return nil // tool_choice and parallel_tool_calls mean nothing without tools
	}
	for i, t := range in.Tools {
		if t.Type != "" && t.Type != "function" {
			return fmt.Errorf("tools[%d]: type %q: %w", i, t.Type, ErrUnsupported)
		}
		if t.Function.Name == "" {
			return fmt.Errorf("tools[%d]: function.name is required", i)
		}
		schema := bytes.TrimSpace(t.Function.Parameters)
		if len(schema) == 0 || string(schema) == "null" {
			schema = json.RawMessage(`{"type":"object","properties":{}}`) // required by Anthropic
		}
		out.Tools = append(out.Tools, anthTool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
	}
	choice, err := anthToolChoiceOf(in.ToolChoice)
	if err != nil {
		return err
	}
	if in.ParallelToolCalls != nil && !*in.ParallelToolCalls {
		if choice == nil {
			choice = &anthToolChoice{Type: "auto"}
		}
		if choice.Type != "none" {
			choice.DisableParallelToolUse = true
		}
	}
	out.ToolChoice = choice
	return nil
}

func anthStop(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var list []string
	if raw[0] == '"' {
		list = make([]string, 1)
		if err := json.Unmarshal(raw, &list[0]); err != nil {
			return nil, fmt.Errorf("stop: %w", err)
		}
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("stop: want a string or an array of strings")
	}
	var stops []string
	for _, s := range list {
		if s != "" {
			stops = append(stops, s)
		}
	}
	return stops, nil
}

func anthToolChoiceOf(raw json.RawMessage) (*anthToolChoice, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		switch mode {
		case "auto", "none":
			return &anthToolChoice{Type: mode}, nil
		case "required":
			return &anthToolChoice{Type: "any"}, nil
		}
		return nil, fmt.Errorf("tool_choice %q: want auto, none, required or a function", mode)
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &named); err != nil || named.Type != "function" || named.Function.Name == "" {
		return nil, errors.New(`tool_choice: want {"type":"function","function":{"name":...}}`)
	}
	return &anthToolChoice{Type: "tool", Name: named.Function.Name}, nil
}

// anthMarshal encodes without HTML escaping, so text reaches the other side as it was written.
func anthMarshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
