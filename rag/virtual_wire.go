package rag

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/hearthlab/hearth/router"
)

// writer writes an answer in the dialect of the route it came on: OpenAI chat completion
// (SSE chunks or one body), Ollama chat or generate (NDJSON lines or one body).
type writer struct {
	w       http.ResponseWriter
	d       router.Dialect
	route   string
	model   string
	stream  bool
	id      string
	created time.Time

	started bool
	text    strings.Builder
}

func (o *writer) begin() {
	if o.started {
		return
	}
	o.started = true
	h := o.w.Header()
	switch {
	case o.stream && o.route == "chat_completions":
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
	case o.stream:
		h.Set("Content-Type", "application/x-ndjson")
	default:
		h.Set("Content-Type", "application/json; charset=utf-8")
	}
	o.w.WriteHeader(http.StatusOK)
}

func (o *writer) emit(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if o.route == "chat_completions" {
		if o.stream {
			b = append(append([]byte("data: "), b...), '\n', '\n')
		} else {
			b = append(b, '\n')
		}
	} else {
		b = append(b, '\n')
	}
	if _, err := o.w.Write(b); err != nil {
		return err
	}
	if f, ok := o.w.(http.Flusher); ok && o.stream {
		f.Flush()
	}
	return nil
}

func (o *writer) ollamaChunk(content string, done bool) map[string]any {
	m := map[string]any{"model": o.model, "created_at": time.Now().UTC().Format(time.RFC3339Nano), "done": done}
	if o.route == "generate" {
		m["response"] = content
	} else {
		m["message"] = map[string]any{"role": "assistant", "content": content}
	}
	return m
}

// token writes one piece of the answer (streams) or keeps it (whole answers).
func (o *writer) token(tok string) error {
	o.text.WriteString(tok)
	if !o.stream {
		return nil
	}
	o.begin()
	if o.route == "chat_completions" {
		return o.emit(map[string]any{"id": "chatcmpl-" + o.id, "object": "chat.completion.chunk", "created": o.created.Unix(), "model": o.model,
			"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": tok}, "finish_reason": nil}}})
	}
	return o.emit(o.ollamaChunk(tok, false))
}

// loaded answers the empty request clients send to load a model.
func (o *writer) loaded() {
	if o.route == "chat_completions" {
		o.fail(&router.APIError{Status: http.StatusBadRequest, Code: "invalid_request",
			Message: `"messages" has no user message: ask a question`})
		return
	}
	o.stream = false
	o.begin()
	m := o.ollamaChunk("", true)
	m["done_reason"] = "load"
	_ = o.emit(m)
}

// done writes the last chunk (or the whole body) with the sources.
func (o *writer) done(fin Final, includeUsage bool) {
	o.begin()
	usage := map[string]any{"prompt_tokens": fin.Stats.PromptTokens, "completion_tokens": fin.Stats.CompletionTokens,
		"total_tokens": fin.Stats.PromptTokens + fin.Stats.CompletionTokens}
	info := map[string]any{"left_out": fin.LeftOut, "num_ctx": fin.Window, "chat_model": fin.Model}
	if fin.Warning != "" {
		info["warning"] = fin.Warning
	}
	sources := fin.Sources
	if sources == nil {
		sources = []Source{}
	}
	if o.route == "chat_completions" {
		base := map[string]any{"id": "chatcmpl-" + o.id, "created": o.created.Unix(), "model": o.model, "sources": sources, "hearth": info}
		if o.stream {
			base["object"] = "chat.completion.chunk"
			base["choices"] = []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "stop"}}
			_ = o.emit(base)
			if includeUsage {
				_ = o.emit(map[string]any{"id": "chatcmpl-" + o.id, "object": "chat.completion.chunk", "created": o.created.Unix(),
					"model": o.model, "choices": []any{}, "usage": usage})
			}
			_, _ = o.w.Write([]byte("data: [DONE]\n\n"))
			return
		}
		base["object"] = "chat.completion"
		base["choices"] = []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": o.text.String()}, "finish_reason": "stop"}}
		base["usage"] = usage
		_ = o.emit(base)
		return
	}
	content := ""
	if !o.stream {
		content = o.text.String()
	}
	m := o.ollamaChunk(content, true)
	m["done_reason"] = "stop"
	m["prompt_eval_count"] = fin.Stats.PromptTokens
	m["eval_count"] = fin.Stats.CompletionTokens
	m["sources"] = sources
	m["hearth"] = info
	_ = o.emit(m)
}

// fail answers an error: a status before the first byte, an error event after it.
func (o *writer) fail(err error) {
	e := ErrorFor(err)
	if !o.started {
		router.WriteError(o.w, o.d, e)
		return
	}
	if o.route == "chat_completions" {
		_ = o.emit(map[string]any{"error": map[string]any{"message": e.Message, "type": "server_error", "code": e.Code}})
		return
	}
	_ = o.emit(map[string]any{"error": e.Message})
}
