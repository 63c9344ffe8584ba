package rag

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hearthlab/hearth/router"
)

// ModelPrefix names the virtual models: rag:<collection>.
const ModelPrefix = "rag:"

// Virtual serves the rag:<collection> models on the agent's Ollama and OpenAI surfaces
// (router.VirtualModels): chats retrieve from the collection and stream rag.chat_model's
// grounded answer in the caller's dialect, with the sources as an extra field.
type Virtual struct {
	Answerer *Answerer
}

var _ router.VirtualModels = (*Virtual)(nil)

// Models lists one model per collection, as /api/tags entries.
func (v *Virtual) Models() []router.ModelInfo {
	var out []router.ModelInfo
	for _, info := range v.Answerer.Store.List() {
		out = append(out, ModelEntry(info.Name, info.Created))
	}
	return out
}

// ModelEntry is the /api/tags entry of rag:<name>, made when the collection was (zero: now).
// Its digest is a hash of the name: clients cut digests to 12 characters (the ollama CLI
// panics on a shorter one).
func ModelEntry(name string, created time.Time) router.ModelInfo {
	model := ModelPrefix + name
	if created.IsZero() {
		created = time.Now().UTC()
	}
	sum := sha256.Sum256([]byte("hearth " + model))
	raw, _ := json.Marshal(map[string]any{
		"name": model, "model": model, "modified_at": created, "size": 0, "digest": hex.EncodeToString(sum[:]),
		"details": map[string]any{"format": "hearth-rag", "family": "rag", "families": []string{"rag"}, "parameter_size": "", "quantization_level": ""},
	})
	return router.ModelInfo{Name: model, Modified: created, Raw: raw}
}

// Claims reports whether model is a rag: model.
func (v *Virtual) Claims(model string) bool { return strings.HasPrefix(model, ModelPrefix) }

// Serves reports whether this node holds the collection.
func (v *Virtual) Serves(model string) bool {
	_, err := v.Answerer.Store.Collection(CollectionOf(model))
	return v.Claims(model) && err == nil
}

// CollectionOf is the collection a rag: model names.
func CollectionOf(model string) string {
	return strings.TrimPrefix(router.NormalizeModel(model), ModelPrefix)
}

// chatBody is what is read of a chat or generate request to a rag: model.
type chatBody struct {
	Model    string         `json:"model"`
	Messages []messageBody  `json:"messages"`
	Prompt   *string        `json:"prompt"`
	System   string         `json:"system"`
	Stream   *bool          `json:"stream"`
	Options  map[string]any `json:"options"`
	Usage    *struct {
		Include bool `json:"include_usage"`
	} `json:"stream_options"`
	Hearth struct {
		Cite bool   `json:"cite"`
		Mode string `json:"mode"`
		TopK int    `json:"top_k"`
	} `json:"hearth"`
	// OpenAI sampling fields, passed on as Ollama options.
	Temperature *float64 `json:"temperature"`
	TopP        *float64 `json:"top_p"`
	MaxTokens   *int     `json:"max_tokens"`
	Seed        *int     `json:"seed"`
}

type messageBody struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// text reads content as a string or as OpenAI's list of parts (text parts kept).
func (m messageBody) text() string {
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(m.Content, &parts) == nil {
		var b strings.Builder
		for _, p := range parts {
			if p.Type == "text" {
				b.WriteString(p.Text)
			}
		}
		return b.String()
	}
	return ""
}

// Serve answers a request for a rag: model on route.
func (v *Virtual) Serve(w http.ResponseWriter, r *http.Request, route string, body []byte) {
	d := router.DialectOf(r.URL.Path)
	var req chatBody
	if err := json.Unmarshal(body, &req); err != nil {
		router.WriteError(w, d, &router.APIError{Status: http.StatusBadRequest, Code: "invalid_json", Message: "request body is not valid JSON: " + err.Error()})
		return
	}
	model := router.NormalizeModel(req.Model)
	switch route {
	case "show":
		writeJSONBody(w, http.StatusOK, map[string]any{
			"modelfile":  "# hearth RAG collection " + CollectionOf(model) + ", answered by " + v.Answerer.Model,
			"parameters": "", "template": "{{ .Prompt }}", "modified_at": time.Now().UTC(),
			"details":      map[string]any{"format": "hearth-rag", "family": "rag", "families": []string{"rag"}},
			"model_info":   map[string]any{"general.architecture": "rag"},
			"capabilities": []string{"completion"},
		})
		return
	case "chat", "chat_completions", "generate":
	default:
		router.WriteError(w, d, &router.APIError{Status: http.StatusBadRequest, Code: "unsupported",
			Message: fmt.Sprintf("%s is a collection of documents: chat with it on /api/chat, /api/generate or /v1/chat/completions", model)})
		return
	}
	msgs := make([]Message, 0, len(req.Messages)+2)
	if req.System != "" {
		msgs = append(msgs, Message{Role: "system", Content: req.System})
	}
	for _, m := range req.Messages {
		msgs = append(msgs, Message{Role: m.Role, Content: m.text()})
	}
	if req.Prompt != nil && *req.Prompt != "" {
		msgs = append(msgs, Message{Role: "user", Content: *req.Prompt})
	}
	stream := route != "chat_completions"
	if req.Stream != nil {
		stream = *req.Stream
	}
	out := &writer{w: w, d: d, route: route, model: model, stream: stream, id: newID(), created: time.Now()}
	if !hasUser(msgs) {
		// The ollama CLI loads a model with an empty request before the first prompt.
		out.loaded()
		return
	}
	opts := req.Options
	if opts == nil {
		opts = map[string]any{}
	}
	for k, p := range map[string]*float64{"temperature": req.Temperature, "top_p": req.TopP} {
		if p != nil {
			opts[k] = *p
		}
	}
	if req.MaxTokens != nil {
		opts["num_predict"] = *req.MaxTokens
	}
	if req.Seed != nil {
		opts["seed"] = *req.Seed
	}
	fin, err := v.Answerer.Answer(r.Context(), AnswerRequest{Collection: CollectionOf(model), Messages: msgs, Options: opts,
		Mode: req.Hearth.Mode, TopK: req.Hearth.TopK}, func([]Source) error { return nil }, out.token)
	if err != nil {
		out.fail(err)
		return
	}
	tail := fin.LeftOutNote()
	if req.Hearth.Cite {
		tail += fin.SourcesBlock()
	}
	if tail != "" {
		_ = out.token(tail)
	}
	out.done(fin, req.Usage != nil && req.Usage.Include)
}

func hasUser(msgs []Message) bool {
	for _, m := range msgs {
		if m.Role == "user" && strings.TrimSpace(m.Content) != "" {
			return true
		}
	}
	return false
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ErrorFor chooses the answer for an error of rag.
func ErrorFor(err error) *router.APIError {
	var e *router.APIError
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, ErrNoCollection):
		return &router.APIError{Status: http.StatusNotFound, Code: "model_not_found", Message: err.Error()}
	case errors.Is(err, ErrBadQuery), errors.Is(err, ErrNoQuestion), errors.Is(err, ErrBadName):
		return &router.APIError{Status: http.StatusBadRequest, Code: "invalid_request", Message: err.Error()}
	case errors.Is(err, ErrExists):
		return &router.APIError{Status: http.StatusConflict, Code: "exists", Message: err.Error()}
	case errors.Is(err, ErrTooLarge):
		return &router.APIError{Status: http.StatusRequestEntityTooLarge, Code: "file_too_large", Message: err.Error()}
	case errors.Is(err, ErrNeedsReindex):
		return &router.APIError{Status: http.StatusConflict, Code: "needs_reindex", Message: err.Error()}
	case errors.Is(err, ErrEmbedModel), errors.Is(err, ErrChatModel):
		return &router.APIError{Status: http.StatusServiceUnavailable, Code: "model_unavailable", Message: err.Error()}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &router.APIError{Status: http.StatusServiceUnavailable, Code: "canceled", Message: "the request was canceled: " + err.Error()}
	default:
		return &router.APIError{Status: http.StatusInternalServerError, Code: "internal", Message: err.Error()}
	}
}

func writeJSONBody(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
