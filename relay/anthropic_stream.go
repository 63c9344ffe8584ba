package relay

// What an Anthropic channel sends back, translated into what OpenAI clients read.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
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
func (u anthUsage) relay() Usage {
	return Usage{PromptTokens: u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens, CompletionTokens: u.OutputTokens}
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

// AnthropicResponse translates a non-stream Messages response into an OpenAI chat.completion
// body reporting `model` as the model.
func AnthropicResponse(body []byte, model string) ([]byte, Usage, error) {
	return anthropicResponse(body, model, time.Now)
}

func anthropicResponse(body []byte, model string, now func() time.Time) ([]byte, Usage, error) {
	var r anthResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, Usage{}, fmt.Errorf("relay: anthropic response: decode: %w", err)
	}
	if r.Type == "error" && r.Error != nil {
		return nil, Usage{}, fmt.Errorf("relay: anthropic response: vendor error %s: %s", r.Error.Type, r.Error.Message)
	}
	if r.Type != "message" || r.ID == "" {
		return nil, Usage{}, fmt.Errorf("relay: anthropic response: type %q id %q: want a message", r.Type, r.ID)
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
		return nil, Usage{}, fmt.Errorf("relay: anthropic response: encode: %w", err)
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

// AnthropicError turns an Anthropic error body {"type":"error","error":{"type","message"}} into
// an OpenAI error body with the same meaning (for 4xx passed on to the client). A body that is
// not Anthropic's (a proxy's HTML page) gets a message from the status alone.
func AnthropicError(status int, body []byte) []byte {
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

// anthropicMaxLine bounds one SSE line from the vendor, so a broken upstream cannot make the
// relay buffer without end. Real events are a few hundred bytes.
const anthropicMaxLine = 8 << 20

// AnthropicStream reads an Anthropic SSE stream and yields OpenAI chat.completion.chunk SSE
// ("data: {...}\n\n" per chunk, then "data: [DONE]\n\n"): one output chunk per input event that
// carries content, so chunks are never merged or delayed. Usage() is valid after EOF.
//
// Read returns io.EOF after message_stop, and after a vendor error event, which reaches the
// client as an OpenAI error chunk (no [DONE]) and is reported by Err. A stream that ends or
// breaks before either is an error from Read (wrapping io.ErrUnexpectedEOF when it just ended),
// never a silent EOF. An AnthropicStream is not safe for concurrent use.
type AnthropicStream struct {
	src          io.ReadCloser
	lines        *bufio.Reader
	model        string
	includeUsage bool
	now          func() time.Time

	id       string
	created  int64
	started  bool        // message_start seen
	tools    map[int]int // content block index → OpenAI tool call index
	argsSeen map[int]bool
	finished bool // finish_reason sent

	usage     anthUsage
	finalUsed bool // message_delta carried usage: the counts are the vendor's final ones
	streamed  int  // bytes of text and arguments, for an estimate when finalUsed is false

	out     []byte // translated bytes; out[off:] not yet returned by Read
	off     int
	done    bool  // no more events will be read
	err     error // returned by Read once out is drained; nil means io.EOF
	readErr error // sticky error from src
	vendor  error // the vendor's error event, for Err
}

// NewAnthropicStream translates r, a Messages API response body with stream: true, reporting
// model as the model. With includeUsage a usage chunk with empty choices precedes [DONE].
func NewAnthropicStream(r io.ReadCloser, model string, includeUsage bool) *AnthropicStream {
	return newAnthropicStream(r, model, includeUsage, time.Now)
}

func newAnthropicStream(r io.ReadCloser, model string, includeUsage bool, now func() time.Time) *AnthropicStream {
	return &AnthropicStream{
		src: r, lines: bufio.NewReader(r), model: model, includeUsage: includeUsage, now: now,
		tools: map[int]int{}, argsSeen: map[int]bool{},
	}
}

// Read fills p with translated SSE. It reads the vendor only when no translated bytes are
// pending, and returns as soon as one event has produced output.
func (s *AnthropicStream) Read(p []byte) (int, error) {
	for s.off == len(s.out) {
		s.out, s.off = s.out[:0], 0
		if s.done {
			if s.err != nil {
				return 0, s.err
			}
			return 0, io.EOF
		}
		s.step()
	}
	n := copy(p, s.out[s.off:])
	s.off += n
	return n, nil
}

// Close closes the vendor's body.
func (s *AnthropicStream) Close() error { return s.src.Close() }

// Usage reports the tokens used. When the stream ended before message_delta the vendor's final
// count never came: the completion is then estimated from the bytes streamed (about four per
// token) and marked so.
func (s *AnthropicStream) Usage() Usage {
	u := s.usage.relay()
	if !s.finalUsed {
		u.Estimated = true
		u.CompletionTokens = max(u.CompletionTokens, (s.streamed+3)/4)
	}
	return u
}

// Err reports the error event the vendor sent mid-stream, if any, once Read has returned io.EOF.
func (s *AnthropicStream) Err() error { return s.vendor }

func (s *AnthropicStream) step() {
	data, err := s.nextEvent()
	if err != nil {
		s.done = true
		if errors.Is(err, io.EOF) {
			s.err = fmt.Errorf("relay: anthropic stream: ended before message_stop: %w", io.ErrUnexpectedEOF)
		} else {
			s.err = fmt.Errorf("relay: anthropic stream: read: %w", err)
		}
		return
	}
	if err := s.handle(data); err != nil {
		s.done = true
		s.err = fmt.Errorf("relay: anthropic stream: %w", err)
	}
}

// nextEvent returns the data of the next SSE event. The event: line is not needed (the JSON
// repeats it as "type"); comments, id: and retry: lines are not used by Anthropic.
func (s *AnthropicStream) nextEvent() ([]byte, error) {
	var data []byte
	for {
		line, err := s.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && len(data) > 0 && json.Valid(data) {
				return data, nil // a last event without its blank line
			}
			return nil, err
		}
		if len(line) == 0 {
			if len(data) > 0 {
				return data, nil
			}
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		if string(field) != "data" {
			continue
		}
		if len(data) > 0 {
			data = append(data, '\n')
		}
		data = append(data, bytes.TrimPrefix(value, []byte(" "))...)
	}
}

// readLine returns the next line without its line ending; it stays valid until the next call.
func (s *AnthropicStream) readLine() ([]byte, error) {
	if s.readErr != nil {
		return nil, s.readErr
	}
	var long []byte
	for {
		frag, err := s.lines.ReadSlice('\n')
		if len(long)+len(frag) > anthropicMaxLine {
			return nil, fmt.Errorf("line longer than %d bytes", anthropicMaxLine)
		}
		if err == bufio.ErrBufferFull {
			long = append(long, frag...)
			continue
		}
		line := frag
		if long != nil {
			line = append(long, frag...)
		}
		if err != nil {
			s.readErr = err
			if len(line) == 0 {
				return nil, err
			}
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		return bytes.TrimSuffix(line, []byte("\r")), nil
	}
}

type anthEvent struct {
	Type         string           `json:"type"`
	Message      *anthResponse    `json:"message"`
	Index        int              `json:"index"`
	ContentBlock *anthBlock       `json:"content_block"`
	Delta        *anthEventDelta  `json:"delta"`
	Usage        *anthUsage       `json:"usage"`
	Error        *anthErrorDetail `json:"error"`
}

type anthEventDelta struct {
	Type        string `json:"type"`
	Text        string `json:"text"`
	PartialJSON string `json:"partial_json"`
	StopReason  string `json:"stop_reason"`
}

func (s *AnthropicStream) handle(data []byte) error {
	var ev anthEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return fmt.Errorf("decode event: %w", err)
	}
	switch ev.Type {
	case "ping":
		return nil
	case "error":
		d := anthErrorDetail{Type: "api_error", Message: "the upstream stream failed"}
		if ev.Error != nil {
			d = *ev.Error
		}
		s.vendor = fmt.Errorf("relay: anthropic stream: vendor error %s: %s", d.Type, d.Message)
		s.emit(json.RawMessage(anthChatErrorBody(0, d)))
		s.done = true
		return nil
	case "message_start":
		if ev.Message == nil {
			return errors.New("message_start without message")
		}
		s.id, s.created, s.started = "chatcmpl-"+ev.Message.ID, s.now().Unix(), true
		s.usage = ev.Message.Usage
		s.emitDelta(anthChatReply{Role: "assistant", Content: new("")}, "")
		return nil
	}
	if !s.started {
		return fmt.Errorf("%s before message_start", ev.Type)
	}
	switch ev.Type {
	case "content_block_start":
		return s.blockStart(ev)
	case "content_block_delta":
		return s.blockDelta(ev)
	case "content_block_stop":
		if call, ok := s.tools[ev.Index]; ok && !s.argsSeen[ev.Index] {
			s.emitArgs(call, "{}") // a call without arguments: clients parse "" as bad JSON
		}
	case "message_delta":
		if ev.Usage != nil {
			s.finalUsed = true
			s.usage.OutputTokens = ev.Usage.OutputTokens
			// Newer API versions repeat the input counts here, cumulatively.
			s.usage.InputTokens = max(s.usage.InputTokens, ev.Usage.InputTokens)
			s.usage.CacheCreationInputTokens = max(s.usage.CacheCreationInputTokens, ev.Usage.CacheCreationInputTokens)
			s.usage.CacheReadInputTokens = max(s.usage.CacheReadInputTokens, ev.Usage.CacheReadInputTokens)
		}
		if ev.Delta != nil && ev.Delta.StopReason != "" && !s.finished {
			s.finished = true
			s.emitDelta(anthChatReply{}, anthFinishReason(ev.Delta.StopReason))
		}
	case "message_stop":
		if !s.finished {
			s.emitDelta(anthChatReply{}, "stop")
		}
		if s.includeUsage {
			s.emit(s.chunk(nil, s.usage.chat()))
		}
		s.out = append(s.out, "data: [DONE]\n\n"...)
		s.done = true
	}
	// Unknown event types are ignored, as Anthropic asks of clients.
	return nil
}

func (s *AnthropicStream) blockStart(ev anthEvent) error {
	b := ev.ContentBlock
	if b == nil {
		return errors.New("content_block_start without content_block")
	}
	switch b.Type {
	case "text":
		if b.Text != "" {
			s.streamed += len(b.Text)
			s.emitDelta(anthChatReply{Content: new(b.Text)}, "")
		}
	case "tool_use":
		call := anthChatToolCall{Index: new(len(s.tools)), ID: b.ID, Type: "function"}
		call.Function.Name = b.Name
		s.tools[ev.Index] = *call.Index
		s.emitDelta(anthChatReply{ToolCalls: []anthChatToolCall{call}}, "")
	}
	// thinking and server-tool blocks have no chat completions counterpart.
	return nil
}

func (s *AnthropicStream) blockDelta(ev anthEvent) error {
	d := ev.Delta
	if d == nil {
		return errors.New("content_block_delta without delta")
	}
	switch d.Type {
	case "text_delta":
		if d.Text != "" {
			s.streamed += len(d.Text)
			s.emitDelta(anthChatReply{Content: new(d.Text)}, "")
		}
	case "input_json_delta":
		call, ok := s.tools[ev.Index]
		if !ok {
			return fmt.Errorf("input_json_delta for block %d, which is not a tool_use", ev.Index)
		}
		if d.PartialJSON != "" {
			s.argsSeen[ev.Index] = true
			s.streamed += len(d.PartialJSON)
			s.emitArgs(call, d.PartialJSON)
		}
	}
	// thinking_delta, signature_delta and citations_delta have nowhere to go.
	return nil
}

func (s *AnthropicStream) emitArgs(call int, args string) {
	tc := anthChatToolCall{Index: new(call)}
	tc.Function.Arguments = args
	s.emitDelta(anthChatReply{ToolCalls: []anthChatToolCall{tc}}, "")
}

func (s *AnthropicStream) chunk(choices []anthChatChoice, usage *anthChatUsage) anthChatCompletion {
	if choices == nil {
		choices = []anthChatChoice{} // the usage chunk: "choices": [] as OpenAI sends it
	}
	return anthChatCompletion{
		ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model,
		Choices: choices, Usage: usage,
	}
}

func (s *AnthropicStream) emitDelta(d anthChatReply, finish string) {
	c := anthChatChoice{Delta: &d}
	if finish != "" {
		c.FinishReason = &finish
	}
	s.emit(s.chunk([]anthChatChoice{c}, nil))
}

func (s *AnthropicStream) emit(v any) {
	b, err := anthMarshal(v)
	if err != nil { // not reachable with the types above; fail loudly rather than skip a chunk
		s.done, s.err = true, fmt.Errorf("relay: anthropic stream: encode: %w", err)
		return
	}
	s.out = append(s.out, "data: "...)
	s.out = append(s.out, b...)
	s.out = append(s.out, "\n\n"...)
}
