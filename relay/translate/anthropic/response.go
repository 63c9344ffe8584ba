package anthropic

// What an Anthropic channel answers when the client did not ask for a stream, and its errors,
// translated into what OpenAI clients read.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hearthlab/hearth/relay/count"
)

type anthResponse struct {
	ID         string           `json:"id"`
	Type       string           `json:"type"`
	Content    []anthBlock      `json:"content"`
	StopReason string           `json:"stop_reason"`
	Usage      anthUsage        `json:"usage"`
	Error      *anthErrorDetail `json:"error"`
}

type anthUsage struct {
	InputTokens              int `json:"input_tokens"`
	OutputTokens             int `json:"output_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
}

// relay counts cache writes and reads as prompt tokens: they are part of the prompt, which
// Anthropic reports in three parts where OpenAI reports one.
func (u anthUsage) relay() count.Usage {
	return count.Usage{PromptTokens: u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens, CompletionTokens: u.OutputTokens}
}

func (u anthUsage) chat() *anthChatUsage {
	r := u.relay()
	c := &anthChatUsage{PromptTokens: r.PromptTokens, CompletionTokens: r.CompletionTokens, TotalTokens: r.PromptTokens + r.CompletionTokens}
	if u.CacheReadInputTokens > 0 {
		c.PromptTokensDetails = &anthCachedTokens{CachedTokens: u.CacheReadInputTokens}
	}
	return c
}

// anthChatCompletion is an OpenAI chat.completion or, with Delta in its choices, a
// chat.completion.chunk.
type anthChatCompletion struct {
	ID      string           `json:"id,omitempty"`
	Object  string           `json:"object,omitempty"`
	Created int64            `json:"created,omitempty"`
	Model   string           `json:"model,omitempty"`
	Choices []anthChatChoice `json:"choices"`
	Usage   *anthChatUsage   `json:"usage,omitempty"`
}

type anthChatChoice struct {
	Index        int            `json:"index"`
	Message      *anthChatReply `json:"message,omitempty"`
	Delta        *anthChatReply `json:"delta,omitempty"`
	Logprobs     *struct{}      `json:"logprobs"` // always null: Anthropic has none
	FinishReason *string        `json:"finish_reason"`
}

type anthChatReply struct {
	Role      string             `json:"role,omitempty"`
	Content   *string            `json:"content,omitempty"`
	ToolCalls []anthChatToolCall `json:"tool_calls,omitempty"`
}

type anthChatUsage struct {
	PromptTokens        int               `json:"prompt_tokens"`
	CompletionTokens    int               `json:"completion_tokens"`
	TotalTokens         int               `json:"total_tokens"`
	PromptTokensDetails *anthCachedTokens `json:"prompt_tokens_details,omitempty"`
}

type anthCachedTokens struct {
	CachedTokens int `json:"cached_tokens"`
}

// anthFinishReason maps a Messages API stop_reason to an OpenAI finish_reason.
func anthFinishReason(stop string) string {
	switch stop {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	default: // end_turn, stop_sequence, pause_turn and reasons added later
		return "stop"
	}
}

// Response translates a non-stream Messages response into an OpenAI chat.completion
// body reporting `model` as the model.
func Response(body []byte, model string) ([]byte, count.Usage, error) {
	return anthropicResponse(body, model, time.Now)
}

func anthropicResponse(body []byte, model string, now func() time.Time) ([]byte, count.Usage, error) {
	var r anthResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, count.Usage{}, fmt.Errorf("relay: anthropic response: decode: %w", err)
	}
	if r.Type == "error" && r.Error != nil {
		return nil, count.Usage{}, fmt.Errorf("relay: anthropic response: vendor error %s: %s", r.Error.Type, r.Error.Message)
	}
	if r.Type != "message" || r.ID == "" {
		return nil, count.Usage{}, fmt.Errorf("relay: anthropic response: type %q id %q: want a message", r.Type, r.ID)
	}
	var text strings.Builder
	reply := anthChatReply{Role: "assistant"}
	for _, b := range r.Content {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
		case "tool_use":
			call := anthChatToolCall{ID: b.ID, Type: "function"}
			call.Function.Name = b.Name
			call.Function.Arguments = anthArguments(b.Input)
			reply.ToolCalls = append(reply.ToolCalls, call)
		}
		// thinking, redacted_thinking and server-tool blocks have no chat completions field.
	}
	if text.Len() > 0 || len(reply.ToolCalls) == 0 {
		reply.Content = new(text.String()) // OpenAI sends null content beside tool calls
	}
	out := anthChatCompletion{
		ID:      "chatcmpl-" + r.ID,
		Object:  "chat.completion",
		Created: now().Unix(),
		Model:   model,
		Choices: []anthChatChoice{{Message: &reply, FinishReason: new(anthFinishReason(r.StopReason))}},
		Usage:   r.Usage.chat(),
	}
	b, err := anthMarshal(out)
	if err != nil {
		return nil, count.Usage{}, fmt.Errorf("relay: anthropic response: encode: %w", err)
	}
	return b, r.Usage.relay(), nil
}

// anthArguments renders a tool_use input as OpenAI's arguments string.
func anthArguments(input json.RawMessage) string {
	var buf bytes.Buffer
	if json.Compact(&buf, input) != nil || buf.String() == "null" {
		return "{}"
	}
	return buf.String()
}

type anthErrorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

type anthChatError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// ErrorBody turns an Anthropic error body {"type":"error","error":{"type","message"}} into
// an OpenAI error body with the same meaning (for 4xx passed on to the client). A body that is
// not Anthropic's (a proxy's HTML page) gets a message from the status alone.
func ErrorBody(status int, body []byte) []byte {
	var e struct {
		Error *anthErrorDetail `json:"error"`
	}
	var detail anthErrorDetail
	if json.Unmarshal(body, &e) == nil && e.Error != nil {
		detail = *e.Error
	}
	if detail.Message == "" {
		detail.Message = fmt.Sprintf("upstream error: %d %s", status, http.StatusText(status))
	}
	return anthChatErrorBody(status, detail)
}

// anthChatErrorBody maps Anthropic's error types onto the type and code OpenAI uses for the same
// condition, keeping Anthropic's message. status is 0 for an error event inside a stream.
func anthChatErrorBody(status int, d anthErrorDetail) []byte {
	kind := d.Type
	if kind == "" || kind == "error" {
		kind = anthErrorTypeOf(status)
	}
	var e anthChatError
	e.Error.Message = d.Message
	e.Error.Type = "invalid_request_error"
	code := ""
	switch kind {
	case "invalid_request_error":
	case "authentication_error":
		code = "invalid_api_key"
	case "permission_error":
		code = "permission_denied"
	case "not_found_error":
		code = "not_found"
	case "request_too_large":
		code = "request_too_large"
	case "billing_error":
		e.Error.Type, code = "insufficient_quota", "insufficient_quota"
	case "rate_limit_error":
		e.Error.Type, code = "requests", "rate_limit_exceeded"
	case "overloaded_error":
		e.Error.Type, code = "server_error", "overloaded"
	case "timeout_error":
		e.Error.Type, code = "server_error", "timeout"
	default: // api_error and types added later
		e.Error.Type = "server_error"
		if status >= 400 && status < 500 {
			e.Error.Type = "invalid_request_error"
		}
	}
	if code != "" {
		e.Error.Code = &code
	}
	b, _ := anthMarshal(e) // cannot fail: strings and pointers to strings
	return b
}

// anthErrorTypeOf names the Anthropic error type its documentation gives for a status.
func anthErrorTypeOf(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusPaymentRequired:
		return "billing_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 || status == 0 {
		return "api_error"
	}
	return "invalid_request_error"
}
