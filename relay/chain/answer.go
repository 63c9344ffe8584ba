package chain

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/hearthlab/hearth/internal/apierror"
	"github.com/hearthlab/hearth/internal/streamtail"
	"github.com/hearthlab/hearth/relay/count"
	"github.com/hearthlab/hearth/relay/translate/ollama"
)

// readChat reads the client's chat request (the body within the relay's limit).
func readChat(r *http.Request) (*chatRequest, *apierror.Error) {
	d := apierror.DialectOf(r.URL.Path)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &apierror.Error{Status: http.StatusRequestEntityTooLarge, Code: "request_too_large",
				Message: fmt.Sprintf("request body is larger than %d bytes (limits.max_body on the relay): send less", tooLarge.Limit)}
		}
		return nil, &apierror.Error{Status: http.StatusBadRequest, Code: "bad_body", Message: "could not read the request body: " + err.Error()}
	}
	req := &chatRequest{dialect: d, path: r.URL.Path, body: body, realModel: r.Header.Get("X-Hearth-Real-Model") != ""}
	bad := func(err error) *apierror.Error {
		return &apierror.Error{Status: http.StatusBadRequest, Code: "invalid_json", Message: "request body: " + err.Error()}
	}
	if d == apierror.OpenAI {
		var meta struct {
			Model         string `json:"model"`
			Stream        bool   `json:"stream"`
			StreamOptions struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
		}
		if err := json.Unmarshal(body, &meta); err != nil {
			return nil, bad(err)
		}
		req.model, req.stream, req.includeUsage, req.openai = meta.Model, meta.Stream, meta.StreamOptions.IncludeUsage, body
	} else {
		oai, model, stream, err := ollama.ToOpenAI(r.URL.Path, body)
		if err != nil && model == "" {
			return nil, bad(err) // not JSON, or no model: nobody can serve it
		}
		// What only a vendor cannot take is refused only when a vendor is to answer.
		req.model, req.stream, req.openai, req.vendorErr = model, stream, oai, err
	}
	if strings.TrimSpace(req.model) == "" {
		return nil, &apierror.Error{Status: http.StatusBadRequest, Code: "missing_model", Message: `model is required: name it in the "model" field`}
	}
	return req, nil
}

// answer writes resp to the client in its dialect, as l's kind of channel answers, and
// returns the usage seen.
func (c *Chain) answer(w http.ResponseWriter, resp *http.Response, body io.Reader, req *chatRequest, l link) count.Usage {
	report := req.model
	if req.realModel {
		report = l.model
	}
	return l.ch.kind.answer(w, resp, body, req, report)
}

// answerOllama writes the OpenAI answer in src as Ollama's NDJSON. It returns the usage
// upstream reported in it, else what seen reports once src is read (nil: nothing), else an
// estimate from the request and the answer's text, so that quotas do not undercount.
func answerOllama(w http.ResponseWriter, src io.Reader, req *chatRequest, seen func() count.Usage) count.Usage {
	a, err := ollama.NewAnswer(w, req.path, req.model, req.stream)
	if err != nil { // readChat took the dialect from this path: not expected
		apierror.Write(w, apierror.Ollama, &apierror.Error{Status: http.StatusInternalServerError, Code: "internal", Message: "relay: " + err.Error()})
		return count.Usage{}
	}
	flushHeader(w, "application/x-ndjson", req.stream)
	_ = a.Translate(src) // a failure reached the client as the answer's last line
	u := a.Usage()
	if seen != nil {
		u = orUsage(u, seen())
	}
	text, extra := a.Estimate()
	u = estimateIfMissing(u, req, text)
	if u.Estimated {
		u.CompletionTokens += extra
	}
	return u
}

// vendorErrorMax bounds the vendor's message shown to an Ollama client, in bytes.
const vendorErrorMax = 1000

// writeVendorError answers an Ollama client for a vendor's error answer b: Ollama's
// {"error":"..."} with the vendor's message and status (502 for one that is not an error).
func writeVendorError(w http.ResponseWriter, status int, b []byte) {
	if status < http.StatusBadRequest {
		status = http.StatusBadGateway
	}
	apierror.Write(w, apierror.Ollama, &apierror.Error{Status: status, Code: "upstream_error", Message: vendorErrorMessage(status, b)})
}

// vendorErrorMessage reads the message of a vendor's error body: OpenAI's
// {"error":{"message"}}, Anthropic's {"type":"error","error":{"message"}}, {"error":"..."} or
// {"message":"..."}; else the body's start as text.
func vendorErrorMessage(status int, b []byte) string {
	var e struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	var text string
	if json.Unmarshal(b, &e) == nil {
		var detail struct {
			Message string `json:"message"`
		}
		switch {
		case json.Unmarshal(e.Error, &text) == nil:
		case json.Unmarshal(e.Error, &detail) == nil:
			text = detail.Message
		}
		if strings.TrimSpace(text) == "" {
			text = e.Message
		}
	}
	if text = strings.TrimSpace(strings.ToValidUTF8(text, "")); text == "" {
		text = strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "")), " ") // HTML, say
	}
	if text == "" {
		return fmt.Sprintf("the vendor answered %d %s", status, http.StatusText(status))
	}
	if len(text) > vendorErrorMax {
		cut := vendorErrorMax
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut] + "…"
	}
	return text
}

func orUsage(a, b count.Usage) count.Usage {
	if a.PromptTokens+a.CompletionTokens > 0 {
		return a
	}
	return b
}

func flushHeader(w http.ResponseWriter, contentType string, stream bool) {
	if !stream {
		contentType = "application/json; charset=utf-8"
	}
	w.Header().Set("Content-Type", contentType)
}

func writeRaw(w http.ResponseWriter, status int, contentType string, b []byte) count.Usage {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return count.Usage{}
}

// maxWholeAnswer bounds a non-streamed answer the relay holds to rename its model.
const maxWholeAnswer = 64 << 20

// relayOpenAI copies an OpenAI chat answer: a stream event by event (dropping the usage
// chunk hearth asked for when the client did not), or a body with the model the client
// asked for. It returns the usage the upstream reported, or an estimate.
func relayOpenAI(w http.ResponseWriter, resp *http.Response, body io.Reader, req *chatRequest, report string) count.Usage {
	h := w.Header()
	for k, v := range resp.Header {
		if k == "Content-Type" || k == "Cache-Control" || strings.HasPrefix(k, "X-Hearth-") && k != "X-Hearth-Channel" && k != "X-Hearth-Model" {
			h[k] = v
		}
	}
	if !req.stream || resp.StatusCode != http.StatusOK {
		b, err := io.ReadAll(io.LimitReader(body, maxWholeAnswer+1))
		if err == nil && len(b) > maxWholeAnswer {
			err = fmt.Errorf("the answer is larger than %d MiB", maxWholeAnswer>>20)
		}
		if err == nil && resp.StatusCode == http.StatusOK && !json.Valid(b) {
			// A vendor that ends its body early without a Content-Length: no client could read it.
			err = errors.New("what it sent is not JSON")
		}
		if err != nil {
			// Nothing went out yet: a broken answer is an error, not a short 200.
			u, text := openAIUsage(b)
			apierror.Write(w, req.dialect, &apierror.Error{Status: http.StatusBadGateway, Code: "upstream_broken",
				Message: fmt.Sprintf("the upstream broke off its answer part-way (%v); try again", err)})
			return estimateIfMissing(u, req, text)
		}
		u, text := openAIUsage(b)
		if resp.StatusCode == http.StatusOK {
			if renamed, err := renameModel(b, report); err == nil {
				b = renamed
			}
		}
		h.Del("Content-Length")
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(b)
		return estimateIfMissing(u, req, text)
	}
	w.WriteHeader(resp.StatusCode)
	flusher, _ := w.(http.Flusher)
	br := bufio.NewReader(body)
	var usage count.Usage
	var text strings.Builder
	dropBlank := false
	// Line by line: an event's lines may arrive apart, and none may wait for the next.
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			keep := true
			trimmed := bytes.TrimSpace(line)
			switch {
			case len(trimmed) == 0:
				keep, dropBlank = !dropBlank, false
			case bytes.HasPrefix(trimmed, []byte("data:")):
				data := bytes.TrimSpace(trimmed[len("data:"):])
				if !bytes.Equal(data, []byte("[DONE]")) {
					u, t, usageOnly := chunkInfo(data)
					if u.PromptTokens+u.CompletionTokens > 0 {
						usage = u
					}
					text.WriteString(t)
					if usageOnly && !req.includeUsage {
						keep, dropBlank = false, true
					}
				}
			}
			if keep {
				if _, werr := w.Write(line); werr != nil {
					return estimateIfMissing(usage, req, text.String())
				}
			}
			// Flush when nothing more has arrived: an event's lines leave together, and no
			// line waits for one that is not here yet.
			if flusher != nil && br.Buffered() == 0 {
				flusher.Flush()
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_, _ = fmt.Fprintf(w, "\ndata: {\"error\":{\"message\":%q,\"type\":\"server_error\",\"code\":\"stream_interrupted\"}}\n\n",
					"the upstream stopped in the middle of the answer: "+err.Error())
				if flusher != nil {
					flusher.Flush()
				}
			}
			return estimateIfMissing(usage, req, text.String())
		}
	}
}

// chunkInfo reads one stream chunk: its usage, its text, and whether it is the usage-only
// chunk (no choices) that include_usage adds.
func chunkInfo(data []byte) (count.Usage, string, bool) {
	var ch struct {
		Choices []struct {
			Delta struct {
				Content string `json:"content"`
			} `json:"delta"`
		} `json:"choices"`
		Usage *struct {
			Prompt     int `json:"prompt_tokens"`
			Completion int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal(data, &ch) != nil {
		return count.Usage{}, "", false
	}
	var u count.Usage
	var text string
	if ch.Usage != nil {
		u = count.Usage{PromptTokens: ch.Usage.Prompt, CompletionTokens: ch.Usage.Completion}
	}
	if len(ch.Choices) > 0 {
		text = ch.Choices[0].Delta.Content
	}
	return u, text, len(ch.Choices) == 0 && ch.Usage != nil
}

// openAIUsage reads usage and the answer's text from a non-stream body.
func openAIUsage(b []byte) (count.Usage, string) {
	var body struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage struct {
			Prompt     int `json:"prompt_tokens"`
			Completion int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal(b, &body) != nil {
		return count.Usage{}, ""
	}
	text := ""
	if len(body.Choices) > 0 {
		text = body.Choices[0].Message.Content
	}
	return count.Usage{PromptTokens: body.Usage.Prompt, CompletionTokens: body.Usage.Completion}, text
}

func estimateIfMissing(u count.Usage, req *chatRequest, answer string) count.Usage {
	if u.PromptTokens+u.CompletionTokens > 0 {
		return u
	}
	return count.Usage{PromptTokens: count.Estimate(string(req.openai)), CompletionTokens: count.Estimate(answer), Estimated: true}
}

// relayRaw copies home's answer on the Ollama routes as it comes, flushing each read, and
// reads the token counts from Ollama's final chunk.
func relayRaw(w http.ResponseWriter, resp *http.Response, body io.Reader) count.Usage {
	for k, v := range resp.Header {
		if k != "Content-Length" && k != "Connection" && k != "Transfer-Encoding" && k != "X-Hearth-Channel" && k != "X-Hearth-Model" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	var tail []byte
	for {
		n, err := body.Read(buf)
		if n > 0 {
			tail = streamtail.Keep(tail, buf[:n])
			if _, werr := w.Write(buf[:n]); werr != nil {
				break
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_, _ = fmt.Fprintf(w, "{\"error\":%q}\n", "home stopped in the middle of the answer: "+err.Error())
			}
			break
		}
	}
	prompt, generated, _, _ := streamtail.TokenCounts(tail)
	return count.Usage{PromptTokens: int(prompt), CompletionTokens: int(generated)}
}
