package ollamasim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// streamOptions is OpenAI's stream_options.
type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// badOpenAIBody answers a body the OpenAI middleware could not bind: gin's error text,
// "EOF" for an empty body included, in OpenAI's shape.
func (x *exchange) badOpenAIBody(err error) {
	if errors.Is(err, io.EOF) {
		x.failRequest("EOF")
		return
	}
	x.failRequest(err.Error())
}

func (s *Server) handleOpenAIChat(x *exchange) {
	type Message struct {
		Role      string          `json:"role"`
		Content   any             `json:"content"`
		ToolCalls json.RawMessage `json:"tool_calls"`
	}
	type ChatCompletionRequest struct {
		Model         string         `json:"model"`
		Messages      []Message      `json:"messages"`
		Stream        bool           `json:"stream"`
		StreamOptions *streamOptions `json:"stream_options"`
		MaxTokens     *int           `json:"max_tokens"`
	}
	var req ChatCompletionRequest
	if err := decodeBody(x.body, &req); err != nil {
		x.badOpenAIBody(err)
		return
	}
	if len(req.Messages) == 0 {
		x.failRequest("[] is too short - 'messages'")
		return
	}
	g := genRequest{
		kind:         kindOpenAIChat,
		model:        req.Model,
		stream:       req.Stream,
		includeUsage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
		id:           "chatcmpl-" + strconv.FormatUint(s.ids.Add(1)%999, 10),
	}
	if req.MaxTokens != nil {
		g.numPredict = *req.MaxTokens
	}
	for _, m := range req.Messages {
		n, msg := contentTokens(m.Content, m.ToolCalls != nil)
		if msg != "" {
			x.failRequest(msg)
			return
		}
		g.promptTokens += n + 3
	}
	var ok bool
	if g.name, ok = parseName(req.Model); !ok {
		x.fail(400, "model is required")
		return
	}
	s.generate(x, &g)
}

// contentTokens counts a chat message's content the way openai.FromChatRequest accepts it:
// a string, or parts of type text or image_url. msg is the middleware's error, if any.
func contentTokens(content any, hasToolCalls bool) (n int, msg string) {
	switch c := content.(type) {
	case string:
		return estimateTokens(c), ""
	case []any:
		for _, part := range c {
			p, ok := part.(map[string]any)
			if !ok {
				return 0, "invalid message format"
			}
			switch p["type"] {
			case "text":
				text, ok := p["text"].(string)
				if !ok {
					return 0, "invalid message format"
				}
				n += estimateTokens(text)
			case "image_url":
				n += 64
			default:
				return 0, "invalid message format"
			}
		}
		return n, ""
	default:
		if !hasToolCalls {
			return 0, fmt.Sprintf("invalid message content type: %T", c)
		}
		return 1, ""
	}
}

func (s *Server) handleOpenAICompletion(x *exchange) {
	type CompletionRequest struct {
		Model         string         `json:"model"`
		Prompt        string         `json:"prompt"`
		MaxTokens     *int           `json:"max_tokens"`
		Stop          any            `json:"stop"`
		Stream        bool           `json:"stream"`
		StreamOptions *streamOptions `json:"stream_options"`
	}
	var req CompletionRequest
	if err := decodeBody(x.body, &req); err != nil {
		x.badOpenAIBody(err)
		return
	}
	if stops, ok := req.Stop.([]any); ok {
		for _, st := range stops {
			if _, ok := st.(string); !ok {
				x.failRequest(fmt.Sprintf("invalid type for 'stop' field: %T", st))
				return
			}
		}
	}
	g := genRequest{
		kind:         kindOpenAICompletion,
		model:        req.Model,
		stream:       req.Stream,
		includeUsage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
		empty:        req.Prompt == "",
		promptTokens: estimateTokens(req.Prompt) + 1,
		id:           "cmpl-" + strconv.FormatUint(s.ids.Add(1)%999, 10),
	}
	if req.MaxTokens != nil {
		g.numPredict = *req.MaxTokens
	}
	var ok bool
	if g.name, ok = parseName(req.Model); !ok {
		x.fail(404, "model '"+req.Model+"' not found")
		return
	}
	s.generate(x, &g)
}

// appendChunkHead appends the fields every OpenAI chunk and answer starts with.
func (g *genRequest) appendChunkHead(b []byte, object string, created time.Time) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, g.id)
	b = append(b, `,"object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	return strconv.AppendInt(b, created.Unix(), 10)
}

func (g *genRequest) appendModelFingerprint(b []byte) []byte {
	b = append(b, `,"model":`...)
	b = append(b, g.modelJSON...)
	return append(b, `,"system_fingerprint":"fp_ollama"`...)
}

func appendFinishReason(b []byte, reason string) []byte {
	b = append(b, `,"finish_reason":`...)
	if reason == "" {
		return append(b, "null"...)
	}
	return appendString(b, reason)
}

func appendUsage(b []byte, mt metrics) []byte {
	b = append(b, `"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(mt.promptCount), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(mt.evalCount), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(mt.promptCount+mt.evalCount), 10)
	return append(b, '}')
}

// appendChatChunk appends one SSE event of chat.completion.chunk, as openai.ToChunk.
func (g *genRequest) appendChatChunk(b []byte, now time.Time, content, reason string) []byte {
	b = append(b, "data: "...)
	b = g.appendChunkHead(b, "chat.completion.chunk", now)
	b = g.appendModelFingerprint(b)
	b = append(b, `,"choices":[{"index":0,"delta":{"role":"assistant","content":`...)
	b = appendString(b, content)
	b = append(b, '}')
	b = appendFinishReason(b, reason)
	return append(b, "}]}\n\n"...)
}

// appendCompletionChunk appends one SSE event of text_completion, as openai.ToCompleteChunk.
// With include_usage, Ollama puts a zero usage in every chunk, not only in the last one.
func (g *genRequest) appendCompletionChunk(b []byte, now time.Time, text, reason string) []byte {
	b = append(b, "data: "...)
	b = g.appendChunkHead(b, "text_completion", now)
	b = append(b, `,"choices":[{"text":`...)
	b = appendString(b, text)
	b = append(b, `,"index":0`...)
	b = appendFinishReason(b, reason)
	b = append(b, "}]"...)
	b = g.appendModelFingerprint(b)
	if g.includeUsage {
		b = append(b, ',')
		b = appendUsage(b, metrics{})
	}
	return append(b, "}\n\n"...)
}

// appendOpenAIFinal appends what Ollama writes at once after the last token: the chunk with
// finish_reason, the usage chunk (choices empty) when asked for, and data: [DONE].
func (g *genRequest) appendOpenAIFinal(b []byte, now time.Time, reason string, mt metrics) []byte {
	if g.kind == kindOpenAIChat {
		b = g.appendChatChunk(b, now, "", reason)
	} else {
		b = g.appendCompletionChunk(b, now, "", reason)
	}
	if g.includeUsage {
		b = append(b, "data: "...)
		if g.kind == kindOpenAIChat {
			b = g.appendChunkHead(b, "chat.completion.chunk", now)
			b = g.appendModelFingerprint(b)
			b = append(b, `,"choices":[],`...)
		} else {
			b = g.appendChunkHead(b, "text_completion", now)
			b = append(b, `,"choices":[]`...)
			b = g.appendModelFingerprint(b)
			b = append(b, ',')
		}
		b = appendUsage(b, mt)
		b = append(b, "}\n\n"...)
	}
	return append(b, "data: [DONE]\n\n"...)
}

// appendChatCompletion appends a non-streaming chat.completion, newline-terminated.
func (g *genRequest) appendChatCompletion(b []byte, now time.Time, text, reason string, mt metrics) []byte {
	b = g.appendChunkHead(b, "chat.completion", now)
	b = g.appendModelFingerprint(b)
	b = append(b, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
	b = appendString(b, text)
	b = append(b, '}')
	b = appendFinishReason(b, reason)
	b = append(b, "}],"...)
	b = appendUsage(b, mt)
	return append(b, "}\n"...)
}

// appendCompletion appends a non-streaming text_completion, newline-terminated.
func (g *genRequest) appendCompletion(b []byte, now time.Time, text, reason string, mt metrics) []byte {
	b = g.appendChunkHead(b, "text_completion", now)
	b = g.appendModelFingerprint(b)
	b = append(b, `,"choices":[{"text":`...)
	b = appendString(b, text)
	b = append(b, `,"index":0`...)
	b = appendFinishReason(b, reason)
	b = append(b, "}],"...)
	b = appendUsage(b, mt)
	return append(b, "}\n"...)
}
