package ollamasim

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
)

// genKind is which of the four generation endpoints a request came in on.
type genKind uint8

const (
	kindChat             genKind = iota // /api/chat
	kindGenerate                        // /api/generate
	kindOpenAIChat                      // /v1/chat/completions
	kindOpenAICompletion                // /v1/completions
)

// genRequest is what the sim needs from any generation request.
type genRequest struct {
	kind         genKind
	model        string // as the client sent it: Ollama echoes it verbatim
	modelJSON    []byte // model as a JSON string, escaped once per request
	name         modelName
	stream       bool
	numPredict   int
	keepAlive    keepAlive
	promptTokens int
	empty        bool // nothing to generate: the request only loads (or unloads) the model
	includeUsage bool
	id           string // OpenAI response id
}

func (g *genRequest) ollama() bool { return g.kind == kindChat || g.kind == kindGenerate }

// metrics are the timings and counts of a final chunk, in Ollama's units (nanoseconds).
type metrics struct {
	total, load, promptEval, eval time.Duration
	promptCount, evalCount        int
}

func (s *Server) handleChat(x *exchange) {
	// Named like Ollama's types so that decoding errors read the same
	// ("... Go struct field ChatRequest.stream of type bool").
	type Message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	type ChatRequest struct {
		Model     string     `json:"model"`
		Messages  []Message  `json:"messages"`
		Stream    *bool      `json:"stream"`
		KeepAlive keepAlive  `json:"keep_alive"`
		Options   numPredict `json:"options"`
	}
	var req ChatRequest
	if err := decodeBody(x.body, &req); err != nil {
		x.badBody(err)
		return
	}
	g := genRequest{
		kind:       kindChat,
		model:      req.Model,
		stream:     req.Stream == nil || *req.Stream,
		numPredict: int(req.Options),
		keepAlive:  req.KeepAlive,
		empty:      len(req.Messages) == 0,
	}
	for _, m := range req.Messages {
		g.promptTokens += estimateTokens(m.Content) + 3
	}
	var ok bool
	if g.name, ok = parseName(req.Model); !ok {
		x.fail(http.StatusBadRequest, "model is required")
		return
	}
	s.generate(x, &g)
}

func (s *Server) handleGenerate(x *exchange) {
	type GenerateRequest struct {
		Model     string     `json:"model"`
		Prompt    string     `json:"prompt"`
		Stream    *bool      `json:"stream"`
		KeepAlive keepAlive  `json:"keep_alive"`
		Options   numPredict `json:"options"`
	}
	var req GenerateRequest
	if err := decodeBody(x.body, &req); err != nil {
		x.badBody(err)
		return
	}
	g := genRequest{
		kind:         kindGenerate,
		model:        req.Model,
		stream:       req.Stream == nil || *req.Stream,
		numPredict:   int(req.Options),
		keepAlive:    req.KeepAlive,
		empty:        req.Prompt == "",
		promptTokens: estimateTokens(req.Prompt) + 1,
	}
	var ok bool
	if g.name, ok = parseName(req.Model); !ok {
		// Ollama answers an invalid name on /api/generate as an unknown model.
		x.fail(http.StatusNotFound, "model '"+req.Model+"' not found")
		return
	}
	s.generate(x, &g)
}

// badBody answers a body gin could not bind, with Ollama's messages.
func (x *exchange) badBody(err error) {
	msg := err.Error()
	if errors.Is(err, io.EOF) {
		msg = "missing request body"
	}
	x.fail(http.StatusBadRequest, msg)
}

// scheduleError answers a request that got no slot or no model, like handleScheduleError.
func (x *exchange) scheduleError(err error) {
	switch {
	case errors.Is(err, errMaxQueue):
		x.fail(http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		x.fail(499, "request canceled")
	case errors.Is(err, errClosed):
		x.drop() // the sim is shutting down: the backend just goes away
	default:
		x.fail(http.StatusInternalServerError, err.Error())
	}
}

// generate runs a generation request: store lookup, slot, model, tokens, final chunk.
func (s *Server) generate(x *exchange, g *genRequest) {
	start := time.Now()
	m, ok := s.lookup(g.name.key)
	if !ok {
		x.fail(http.StatusNotFound, "model '"+g.model+"' not found")
		return
	}
	bp := s.lines.Get().(*[]byte)
	x.buf = (*bp)[:0]
	defer func() {
		*bp = x.buf[:0]
		s.lines.Put(bp)
	}()
	g.modelJSON = appendString(make([]byte, 0, len(g.model)+2), g.model)

	if g.ollama() && g.empty && g.keepAlive.set && g.keepAlive.d == 0 {
		// Ollama expires the runner without scheduling anything.
		s.unloadNow(g.name.key)
		x.respond(0, ctJSONGin, g.appendOllamaFinal(x.buf[:0], time.Now(), "", "unload", metrics{}))
		return
	}
	if err := s.acquireSlot(x.ctx); err != nil {
		x.scheduleError(err)
		return
	}
	defer s.releaseSlot()
	lm, err := s.useModel(x.ctx, m, g.name.key, g.keepAlive)
	if err != nil {
		x.scheduleError(err)
		return
	}
	defer s.releaseModel(lm)
	s.served(m.Name)
	loaded := time.Now()

	if g.empty {
		s.answerLoad(x, g)
		return
	}
	if g.stream {
		if g.ollama() {
			x.startStream(ctNDJSON)
		} else {
			x.startStream(ctSSE)
		}
	}

	n, reason := s.cfg.Tokens, "stop"
	if g.numPredict > 0 && g.numPredict < n {
		n, reason = g.numPredict, "length"
	}
	if err := s.produce(x, g, n); err != nil {
		if errors.Is(err, errClosed) {
			x.drop()
		}
		return // the client left, the fault cut the connection, or Close
	}
	s.finish(x, g, n, reason, newMetrics(start, loaded, time.Now(), g.promptTokens, n))
}

// newMetrics reports the real load and generation times. The sim does not evaluate the
// prompt, so that time is made up (20µs a token); each duration is at least 1ns so that
// none is dropped by omitempty, and the total covers the parts.
func newMetrics(start, loaded, end time.Time, promptTokens, evalTokens int) metrics {
	mt := metrics{
		load:        max(loaded.Sub(start), 1),
		promptEval:  time.Duration(promptTokens) * 20 * time.Microsecond,
		eval:        max(end.Sub(loaded), time.Duration(evalTokens)*time.Microsecond),
		promptCount: promptTokens,
		evalCount:   evalTokens,
	}
	mt.total = max(end.Sub(start), mt.load+mt.promptEval+mt.eval)
	return mt
}

// answerLoad answers a request with nothing to generate, once its model is loaded.
func (s *Server) answerLoad(x *exchange, g *genRequest) {
	switch {
	case g.ollama():
		// Even a streaming request gets one plain JSON object, as from Ollama.
		x.respond(0, ctJSONGin, g.appendOllamaFinal(x.buf[:0], time.Now(), "", "load", metrics{}))
	case g.stream:
		// /v1/completions with an empty prompt: the same answer through the middleware,
		// written at once.
		x.respond(0, ctSSE, g.appendOpenAIFinal(x.buf[:0], time.Now(), "load", metrics{}))
	default:
		s.finish(x, g, 0, "load", metrics{})
	}
}

// produce emits n tokens, TokenDelay apart, streaming each one when the request streams.
func (s *Server) produce(x *exchange, g *genRequest, n int) error {
	var t *time.Timer
	if d := s.cfg.TokenDelay; d > 0 {
		t = time.NewTimer(d)
		defer t.Stop()
	}
	for i := range n {
		if t != nil {
			if i > 0 {
				t.Reset(s.cfg.TokenDelay)
			}
			select {
			case <-t.C:
			case <-x.ctx.Done():
				return x.ctx.Err()
			case <-s.done:
				return errClosed
			}
		} else if err := x.ctx.Err(); err != nil {
			return err
		}
		if !g.stream {
			continue
		}
		tok := s.token(i)
		now := time.Now()
		switch g.kind {
		case kindChat, kindGenerate:
			x.buf = g.appendOllamaChunk(x.buf[:0], now, tok)
		case kindOpenAIChat:
			x.buf = g.appendChatChunk(x.buf[:0], now, tok, "")
		case kindOpenAICompletion:
			x.buf = g.appendCompletionChunk(x.buf[:0], now, tok, "")
		}
		if err := x.chunk(x.buf, false); err != nil {
			return err
		}
	}
	return nil
}

// finish writes the final chunk (streaming) or the whole answer.
func (s *Server) finish(x *exchange, g *genRequest, n int, reason string, mt metrics) {
	now := time.Now()
	text := ""
	if n > 0 {
		text = s.tokens[:s.tokenEnd[n-1]]
	}
	switch {
	case g.stream && g.ollama():
		x.buf = append(g.appendOllamaFinal(x.buf[:0], now, "", reason, mt), '\n')
		_ = x.chunk(x.buf, true)
	case g.ollama():
		x.respond(0, ctJSONGin, g.appendOllamaFinal(x.buf[:0], now, text, reason, mt))
	case g.stream:
		x.buf = g.appendOpenAIFinal(x.buf[:0], now, reason, mt)
		_ = x.chunk(x.buf, true)
	case g.kind == kindOpenAIChat:
		x.respond(0, ctJSON, g.appendChatCompletion(x.buf[:0], now, text, reason, mt))
	default:
		x.respond(0, ctJSON, g.appendCompletion(x.buf[:0], now, text, reason, mt))
	}
}

func (s *Server) token(i int) string {
	from := 0
	if i > 0 {
		from = s.tokenEnd[i-1]
	}
	return s.tokens[from:s.tokenEnd[i]]
}

// estimateTokens is the sim's tokenizer: about four bytes a token, at least one.
func estimateTokens(s string) int { return len(s)/4 + 1 }

// appendOllamaChunk appends one streamed NDJSON line of /api/chat or /api/generate.
func (g *genRequest) appendOllamaChunk(b []byte, now time.Time, tok string) []byte {
	b = append(b, `{"model":`...)
	b = append(b, g.modelJSON...)
	b = append(b, `,"created_at":`...)
	b = appendTime(b, now.UTC())
	if g.kind == kindChat {
		b = append(b, `,"message":{"role":"assistant","content":`...)
		b = appendString(b, tok)
		b = append(b, '}')
	} else {
		b = append(b, `,"response":`...)
		b = appendString(b, tok)
	}
	return append(b, `,"done":false}`+"\n"...)
}

// appendOllamaFinal appends the done object, without newline: the last NDJSON line, the
// whole non-streaming answer, or the load/unload answer (no metrics then).
func (g *genRequest) appendOllamaFinal(b []byte, now time.Time, content, reason string, mt metrics) []byte {
	b = append(b, `{"model":`...)
	b = append(b, g.modelJSON...)
	b = append(b, `,"created_at":`...)
	b = appendTime(b, now.UTC())
	if g.kind == kindChat {
		b = append(b, `,"message":{"role":"assistant","content":`...)
		b = appendString(b, content)
		b = append(b, '}')
	} else {
		b = append(b, `,"response":`...)
		b = appendString(b, content)
	}
	b = append(b, `,"done":true,"done_reason":`...)
	b = appendString(b, reason)
	if g.kind == kindGenerate && mt.evalCount > 0 {
		// The deprecated "context": the prompt and the answer as token ids.
		b = append(b, `,"context":[`...)
		for i := range mt.promptCount + mt.evalCount {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(100+i%32000), 10)
		}
		b = append(b, ']')
	}
	b = appendField(b, "total_duration", int64(mt.total))
	b = appendField(b, "load_duration", int64(mt.load))
	b = appendField(b, "prompt_eval_count", int64(mt.promptCount))
	b = appendField(b, "prompt_eval_duration", int64(mt.promptEval))
	b = appendField(b, "eval_count", int64(mt.evalCount))
	b = appendField(b, "eval_duration", int64(mt.eval))
	return append(b, '}')
}
