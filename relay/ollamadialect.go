package relay

// The Ollama dialect on the vendor path: when no home node serves a model, phone apps that speak
// Ollama's /api/chat and /api/generate are answered by OpenAI-compatible vendors. The request is
// translated to OpenAI chat completions and the answer back into what Ollama's own server sends
// (server/routes.go): NDJSON lines that end with a done:true line carrying the metrics, or one
// JSON object when the client asked for no stream.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ErrLoadOnly means the Ollama request only asks to load the model (/api/generate with an empty
// prompt, /api/chat with no messages). Ollama answers that without generating anything, so the
// caller answers with [OllamaLoadResponse] and calls no upstream.
var ErrLoadOnly = errors.New("relay: ollama request only loads the model")

// dialectMaxAnswer bounds a whole upstream answer, and so one SSE line of it, in bytes.
const dialectMaxAnswer = 32 << 20

// OllamaToOpenAI turns an Ollama /api/chat or /api/generate request body into an OpenAI chat
// completions request body (model unchanged). stream is Ollama's (default true); a streamed
// request asks upstream for include_usage so that the final line can carry the token counts.
// Any error other than [ErrLoadOnly] is the client's (answer 400).
//
// Not carried over: think, keep_alive, truncate, shift, logprobs; in /api/generate raw and
// template (the prompt is sent as the user message as is) and context (the old conversational
// memory: a vendor has nothing to replay it into, so a client relying on it loses its memory).
// A non-empty suffix (fill-in-the-middle) is refused, since a chat model cannot honour it.
func OllamaToOpenAI(path string, body []byte) (openai []byte, model string, stream bool, err error) {
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

// OllamaLoadResponse is Ollama's answer to a load-only request (see [ErrLoadOnly]): one
// done:true object with done_reason "load", sent whatever the stream flag, as Ollama does.
func OllamaLoadResponse(path, model string) []byte {
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

// OpenAIToOllama copies an OpenAI chat completions answer (SSE chunks when stream, one JSON
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
func OpenAIToOllama(dst io.Writer, src io.Reader, path, model string, stream bool) (Usage, error) {
	chat, err := ollamaDialectIsChat(path)
	if err != nil {
		return Usage{}, err
	}
	a := &dialectAnswer{w: dst, chat: chat, model: model, stream: stream, start: time.Now()}
	switch f := dst.(type) {
	case http.Flusher:
		a.flush = f.Flush
	case http.ResponseWriter: // a wrapper that may unwrap to a Flusher
		rc := http.NewResponseController(f)
		a.flush = func() { _ = rc.Flush() } // a failed flush fails the next write too
	}
	err = a.read(src)
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

// dialectAnswer is the state of one translated answer.
type dialectAnswer struct {
	w      io.Writer
	flush  func() // nil when dst cannot flush
	chat   bool
	model  string
	stream bool

	start, first time.Time // first is when the first generated text or tool call arrived
	usage        Usage
	finish       string // OpenAI's finish_reason, once seen
	pending      []*dialectPending
	calls        int // tool calls written so far, for their index

	// Without stream the pieces are gathered into the one object.
	content, thinking strings.Builder
	toolCalls         []dialectToolCall
}

// read takes SSE lines, or a whole JSON body when the first thing upstream sent is a '{'.
func (a *dialectAnswer) read(src io.Reader) error {
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
func (a *dialectAnswer) apply(c *dialectChunk, whole bool) error {
	if len(c.Error) > 0 && string(c.Error) != "null" {
		msg := dialectErrorMessage(c.Error)
		return dialectFail("upstream error: "+msg, fmt.Errorf("upstream error: %s", msg))
	}
	if c.Usage != nil {
		a.usage = Usage{PromptTokens: c.Usage.PromptTokens, CompletionTokens: c.Usage.CompletionTokens}
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
		}
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
func (a *dialectAnswer) addCallFragment(index *int, id, name, args string, whole bool) {
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
func (a *dialectAnswer) takeCalls() ([]dialectToolCall, error) {
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
func (a *dialectAnswer) emit(content, thinking string, calls []dialectToolCall) error {
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
func (a *dialectAnswer) done() error {
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

func (a *dialectAnswer) line(content, thinking string, calls []dialectToolCall) dialectLine {
	l := dialectLine{Model: a.model, CreatedAt: time.Now().UTC()}
	if a.chat {
		l.Message = &dialectOutMessage{Role: "assistant", Content: content, Thinking: thinking, ToolCalls: calls}
	} else {
		l.Response, l.Thinking, l.ToolCalls = &content, thinking, calls
	}
	return l
}

// write sends v as one line in one Write, flushed at once so that no two lines merge.
func (a *dialectAnswer) write(v any) error {
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
