package ollama

// The answer side of the Ollama dialect: an OpenAI answer (stream or whole) read and written
// back as Ollama's NDJSON.

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

	"github.com/hearthlab/hearth/relay/count"
)

// dialectMaxText bounds the answer text kept to estimate usage, in bytes; past it, only the
// estimated tokens of each further piece are added up.
const dialectMaxText = 1 << 20

// dialectChunk is an OpenAI stream chunk, or a whole completion (choices carry message instead
// of delta). Text fields stay raw: vendors differ in what they put there.
type dialectChunk struct {
	Choices []struct {
		Delta        *dialectDelta `json:"delta"`
		Message      *dialectDelta `json:"message"`
		FinishReason string        `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

type dialectDelta struct {
	Content          json.RawMessage `json:"content"`
	ReasoningContent json.RawMessage `json:"reasoning_content"` // DeepSeek, Qwen, vLLM
	Reasoning        json.RawMessage `json:"reasoning"`         // OpenRouter
	ToolCalls        []struct {
		Index    *int   `json:"index"`
		ID       string `json:"id"`
		Function struct {
			Name      string          `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

// dialectLine is one object of Ollama's answer: ChatResponse (message) or GenerateResponse
// (response, thinking, tool_calls) with the Metrics fields.
type dialectLine struct {
	Model              string             `json:"model"`
	CreatedAt          time.Time          `json:"created_at"`
	Message            *dialectOutMessage `json:"message,omitempty"`
	Response           *string            `json:"response,omitempty"`
	Thinking           string             `json:"thinking,omitempty"`
	ToolCalls          []dialectToolCall  `json:"tool_calls,omitempty"`
	Done               bool               `json:"done"`
	DoneReason         string             `json:"done_reason,omitempty"`
	TotalDuration      time.Duration      `json:"total_duration,omitempty"`
	PromptEvalCount    int                `json:"prompt_eval_count,omitempty"`
	PromptEvalDuration time.Duration      `json:"prompt_eval_duration,omitempty"`
	EvalCount          int                `json:"eval_count,omitempty"`
	EvalDuration       time.Duration      `json:"eval_duration,omitempty"`
}

type dialectOutMessage struct {
	Role      string            `json:"role"`
	Content   string            `json:"content"`
	Thinking  string            `json:"thinking,omitempty"`
	ToolCalls []dialectToolCall `json:"tool_calls,omitempty"`
}

// dialectFailure is an upstream failure; shown is what the Ollama client reads.
type dialectFailure struct {
	shown string
	err   error
}

func (f *dialectFailure) Error() string { return "relay: ollama answer: " + f.err.Error() }
func (f *dialectFailure) Unwrap() error { return f.err }

func dialectFail(shown string, err error) error { return &dialectFailure{shown: shown, err: err} }

// dialectPending is a tool call whose arguments are still arriving in fragments.
type dialectPending struct {
	id, name string
	args     strings.Builder
}

// Answer is the state of one answer translated from OpenAI's dialect to Ollama's.
type Answer struct {
	w      io.Writer
	flush  func() // nil when dst cannot flush
	chat   bool
	model  string
	stream bool

	start, first time.Time // first is when the first generated text or tool call arrived
	usage        count.Usage
	finish       string // OpenAI's finish_reason, once seen
	pending      []*dialectPending
	calls        int // tool calls written so far, for their index

	// Without stream the pieces are gathered into the one object.
	content, thinking strings.Builder
	toolCalls         []dialectToolCall

	// text is what upstream generated (content, thinking, tool arguments), kept so that the
	// caller can estimate usage when upstream reports none; extraTokens estimates what came
	// past dialectMaxText.
	text        strings.Builder
	extraTokens int
}

// NewAnswer starts an answer to the Ollama route path, written to dst: flushed after
// each line when dst is an http.Flusher or a ResponseWriter wrapping one.
func NewAnswer(dst io.Writer, path, model string, stream bool) (*Answer, error) {
	chat, err := ollamaDialectIsChat(path)
	if err != nil {
		return nil, err
	}
	a := &Answer{w: dst, chat: chat, model: model, stream: stream, start: time.Now()}
	switch f := dst.(type) {
	case http.Flusher:
		a.flush = f.Flush
	case http.ResponseWriter: // a wrapper that may unwrap to a Flusher
		rc := http.NewResponseController(f)
		a.flush = func() { _ = rc.Flush() } // a failed flush fails the next write too
	}
	return a, nil
}

// Usage is what upstream reported (zero when it sent none).
func (a *Answer) Usage() count.Usage { return a.usage }

// Estimate is the completion tokens estimated from the generated text, for an upstream that
// reported none: the text kept (up to dialectMaxText) and what came past it.
func (a *Answer) Estimate() (text string, extraTokens int) { return a.text.String(), a.extraTokens }

// Translate reads upstream's OpenAI answer from src and writes it, as FromOpenAI documents;
// a failure ends the answer with Ollama's {"error":"..."} and is returned.
func (a *Answer) Translate(src io.Reader) error { return a.translate(src) }

// translate reads upstream's OpenAI answer from src and writes it, as FromOpenAI
// documents; a failure ends the answer with Ollama's {"error":"..."} and is returned.
func (a *Answer) translate(src io.Reader) error {
	err := a.read(src)
	if err == nil {
		err = a.done()
	}
	var failed *dialectFailure
	if errors.As(err, &failed) {
		if werr := a.write(struct {
			Error string `json:"error"`
		}{failed.shown}); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	return err
}

// keepText keeps generated text for the usage estimate, within dialectMaxText.
func (a *Answer) keepText(s string) {
	if s == "" {
		return
	}
	if a.text.Len()+len(s) > dialectMaxText {
		a.extraTokens += count.Estimate(s)
		return
	}
	a.text.WriteString(s)
}

// read takes SSE lines, or a whole JSON body when the first thing upstream sent is a '{'.
func (a *Answer) read(src io.Reader) error {
	sc := bufio.NewScanner(src)
	sc.Buffer(make([]byte, 0, 64<<10), dialectMaxAnswer)
	var body []byte
	sse := false
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if body != nil {
			if body = append(append(body, line...), '\n'); len(body) > dialectMaxAnswer {
				return dialectFail("upstream answer too large", errors.New("body over limit"))
			}
			continue
		}
		if len(line) == 0 {
			continue
		}
		if !sse && line[0] == '{' {
			body = append(append(make([]byte, 0, 4096), line...), '\n')
			continue
		}
		sse = true
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue // event:, id:, retry: and comments carry nothing here
		}
		data = bytes.TrimSpace(data)
		if string(data) == "[DONE]" {
			return nil
		}
		var c dialectChunk
		if err := json.Unmarshal(data, &c); err != nil {
			return dialectFail("upstream sent an invalid stream", fmt.Errorf("chunk: %w", err))
		}
		if err := a.apply(&c, false); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return dialectFail("upstream stream interrupted", fmt.Errorf("read: %w", err))
	}
	if body != nil {
		var c dialectChunk
		if err := json.Unmarshal(body, &c); err != nil {
			return dialectFail("upstream sent an invalid answer", fmt.Errorf("body: %w", err))
		}
		if err := a.apply(&c, true); err != nil {
			return err
		}
		if a.finish == "" {
			a.finish = "stop"
		}
	}
	if a.finish == "" {
		return dialectFail("upstream stream ended early", io.ErrUnexpectedEOF)
	}
	return nil
}

// apply takes one chunk (or, when whole, a complete answer) and writes its line.
func (a *Answer) apply(c *dialectChunk, whole bool) error {
	if len(c.Error) > 0 && string(c.Error) != "null" {
		msg := dialectErrorMessage(c.Error)
		return dialectFail("upstream error: "+msg, fmt.Errorf("upstream error: %s", msg))
	}
	if c.Usage != nil {
		a.usage = count.Usage{PromptTokens: c.Usage.PromptTokens, CompletionTokens: c.Usage.CompletionTokens}
	}
	if len(c.Choices) == 0 {
		return nil
	}
	ch := c.Choices[0]
	var content, thinking string
	if d := ch.Delta; d != nil || ch.Message != nil {
		if d == nil {
			d = ch.Message
		}
		content = dialectText(d.Content)
		if thinking = dialectText(d.ReasoningContent); thinking == "" {
			thinking = dialectText(d.Reasoning)
		}
		for _, tc := range d.ToolCalls {
			args := dialectText(tc.Function.Arguments)
			if raw := bytes.TrimSpace(tc.Function.Arguments); len(raw) > 0 && raw[0] == '{' {
				args = string(raw) // some vendors send the arguments as an object
			}
			a.addCallFragment(tc.Index, tc.ID, tc.Function.Name, args, whole)
			a.keepText(tc.Function.Name)
			a.keepText(args)
		}
		a.keepText(content)
		a.keepText(thinking)
		if a.first.IsZero() && (content != "" || thinking != "" || len(d.ToolCalls) > 0) {
			a.first = time.Now()
		}
	}
	var calls []dialectToolCall
	if ch.FinishReason != "" {
		a.finish = ch.FinishReason
		var err error
		if calls, err = a.takeCalls(); err != nil {
			return err
		}
	}
	return a.emit(content, thinking, calls)
}

// addCallFragment adds to the tool call at index. Vendors that omit the index send each call
// whole, told apart by a new id, and so do some that send index 0 for every call (an index out
// of order is taken as missing, so that upstream cannot make the relay allocate for it);
// whole answers list each call once.
func (a *Answer) addCallFragment(index *int, id, name, args string, whole bool) {
	var p *dialectPending
	switch {
	case whole:
	case index != nil && *index >= 0 && *index < len(a.pending) && (id == "" || a.pending[*index].id == "" || a.pending[*index].id == id):
		p = a.pending[*index]
	case index != nil && *index == len(a.pending):
	case len(a.pending) > 0 && (id == "" || id == a.pending[len(a.pending)-1].id):
		p = a.pending[len(a.pending)-1]
	}
	if p == nil {
		p = &dialectPending{}
		a.pending = append(a.pending, p)
	}
	if p.id == "" {
		p.id = id
	}
	if p.name == "" {
		p.name = name
	}
	p.args.WriteString(args)
}

// takeCalls turns the gathered fragments into whole Ollama tool calls, whose arguments are an
// object, not a string.
func (a *Answer) takeCalls() ([]dialectToolCall, error) {
	var out []dialectToolCall
	for _, p := range a.pending {
		args := bytes.TrimSpace([]byte(p.args.String()))
		if len(args) == 0 || string(args) == "null" {
			args = []byte("{}")
		}
		if args[0] != '{' || !json.Valid(args) {
			return nil, dialectFail(fmt.Sprintf("upstream sent invalid arguments for tool %q", p.name),
				fmt.Errorf("tool call %q arguments %.200q are not a JSON object", p.name, args))
		}
		var tc dialectToolCall
		tc.ID, tc.Function.Name, tc.Function.Arguments = p.id, p.name, args
		tc.Function.Index = a.calls
		a.calls++
		out = append(out, tc)
	}
	a.pending = nil
	return out, nil
}

// emit writes one line for a chunk that carries something for the client, or gathers it.
func (a *Answer) emit(content, thinking string, calls []dialectToolCall) error {
	if content == "" && thinking == "" && len(calls) == 0 {
		return nil
	}
	if !a.stream {
		a.content.WriteString(content)
		a.thinking.WriteString(thinking)
		a.toolCalls = append(a.toolCalls, calls...)
		return nil
	}
	return a.write(a.line(content, thinking, calls))
}

// done writes the done:true object: the whole answer without stream, the metrics with it.
func (a *Answer) done() error {
	calls, err := a.takeCalls()
	if err != nil {
		return err
	}
	if err := a.emit("", "", calls); err != nil {
		return err
	}
	var line dialectLine
	if a.stream {
		line = a.line("", "", nil)
	} else {
		line = a.line(a.content.String(), a.thinking.String(), a.toolCalls)
	}
	end := time.Now()
	first := a.first
	if first.IsZero() || !a.stream {
		first = a.start // a whole answer arrived at once: count it all as generation
	}
	line.Done = true
	line.DoneReason = "stop" // also for tool_calls and content_filter, as Ollama has no such reasons
	if a.finish == "length" {
		line.DoneReason = "length"
	}
	line.TotalDuration = max(end.Sub(a.start), 1)
	line.PromptEvalCount, line.PromptEvalDuration = a.usage.PromptTokens, first.Sub(a.start)
	line.EvalCount, line.EvalDuration = a.usage.CompletionTokens, max(end.Sub(first), 1)
	return a.write(line)
}

func (a *Answer) line(content, thinking string, calls []dialectToolCall) dialectLine {
	l := dialectLine{Model: a.model, CreatedAt: time.Now().UTC()}
	if a.chat {
		l.Message = &dialectOutMessage{Role: "assistant", Content: content, Thinking: thinking, ToolCalls: calls}
	} else {
		l.Response, l.Thinking, l.ToolCalls = &content, thinking, calls
	}
	return l
}

// write sends v as one line in one Write, flushed at once so that no two lines merge.
func (a *Answer) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("relay: ollama answer: %w", err)
	}
	if _, err := a.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("relay: ollama answer: write: %w", err)
	}
	if a.flush != nil {
		a.flush()
	}
	return nil
}

// dialectText reads a text field: a string, or content parts whose text is joined.
func dialectText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Text string `json:"text"`
	}
	if raw[0] == '[' && json.Unmarshal(raw, &parts) == nil {
		var b strings.Builder
		for _, p := range parts {
			b.WriteString(p.Text)
		}
		return b.String()
	}
	return ""
}

// dialectErrorMessage reads OpenAI's {"message":...} or a plain string.
func dialectErrorMessage(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return s
	}
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Message != "" {
		return e.Message
	}
	return "unknown error"
}
