package anthropic

// What an Anthropic channel streams back, translated into the chunks OpenAI clients read.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hearthlab/hearth/relay/count"
)

// anthropicMaxLine bounds one SSE line from the vendor, so a broken upstream cannot make the
// relay buffer without end. Real events are a few hundred bytes.
const anthropicMaxLine = 8 << 20

// Stream reads an Anthropic SSE stream and yields OpenAI chat.completion.chunk SSE
// ("data: {...}\n\n" per chunk, then "data: [DONE]\n\n"): one output chunk per input event that
// carries content, so chunks are never merged or delayed. Usage() is valid after EOF.
//
// Read returns io.EOF after message_stop, and after a vendor error event, which reaches the
// client as an OpenAI error chunk (no [DONE]) and is reported by Err. A stream that ends or
// breaks before either is an error from Read (wrapping io.ErrUnexpectedEOF when it just ended),
// never a silent EOF. An Stream is not safe for concurrent use.
type Stream struct {
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

// NewStream translates r, a Messages API response body with stream: true, reporting
// model as the model. With includeUsage a usage chunk with empty choices precedes [DONE].
func NewStream(r io.ReadCloser, model string, includeUsage bool) *Stream {
	return newAnthropicStream(r, model, includeUsage, time.Now)
}

func newAnthropicStream(r io.ReadCloser, model string, includeUsage bool, now func() time.Time) *Stream {
	return &Stream{
		src: r, lines: bufio.NewReader(r), model: model, includeUsage: includeUsage, now: now,
		tools: map[int]int{}, argsSeen: map[int]bool{},
	}
}

// Read fills p with translated SSE. It reads the vendor only when no translated bytes are
// pending, and returns as soon as one event has produced output.
func (s *Stream) Read(p []byte) (int, error) {
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
func (s *Stream) Close() error { return s.src.Close() }

// Usage reports the tokens used. When the stream ended before message_delta the vendor's final
// count never came: the completion is then estimated from the bytes streamed (about four per
// token) and marked so.
func (s *Stream) Usage() count.Usage {
	u := s.usage.relay()
	if !s.finalUsed {
		u.Estimated = true
		u.CompletionTokens = max(u.CompletionTokens, (s.streamed+3)/4)
	}
	return u
}

// Err reports the error event the vendor sent mid-stream, if any, once Read has returned io.EOF.
func (s *Stream) Err() error { return s.vendor }

func (s *Stream) step() {
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
func (s *Stream) nextEvent() ([]byte, error) {
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
func (s *Stream) readLine() ([]byte, error) {
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

func (s *Stream) handle(data []byte) error {
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

func (s *Stream) blockStart(ev anthEvent) error {
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

func (s *Stream) blockDelta(ev anthEvent) error {
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

func (s *Stream) emitArgs(call int, args string) {
	tc := anthChatToolCall{Index: new(call)}
	tc.Function.Arguments = args
	s.emitDelta(anthChatReply{ToolCalls: []anthChatToolCall{tc}}, "")
}

func (s *Stream) chunk(choices []anthChatChoice, usage *anthChatUsage) anthChatCompletion {
	if choices == nil {
		choices = []anthChatChoice{} // the usage chunk: "choices": [] as OpenAI sends it
	}
	return anthChatCompletion{
		ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model,
		Choices: choices, Usage: usage,
	}
}

func (s *Stream) emitDelta(d anthChatReply, finish string) {
	c := anthChatChoice{Delta: &d}
	if finish != "" {
		c.FinishReason = &finish
	}
	s.emit(s.chunk([]anthChatChoice{c}, nil))
}

func (s *Stream) emit(v any) {
	b, err := anthMarshal(v)
	if err != nil { // not reachable with the types above; fail loudly rather than skip a chunk
		s.done, s.err = true, fmt.Errorf("relay: anthropic stream: encode: %w", err)
		return
	}
	s.out = append(s.out, "data: "...)
	s.out = append(s.out, b...)
	s.out = append(s.out, "\n\n"...)
}
