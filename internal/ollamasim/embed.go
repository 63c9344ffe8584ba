package ollamasim

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"strings"
	"time"
)

// Embedding is the vector the sim answers for text: deterministic from an FNV hash of the
// text, dim long, unit length. Tests can compute expected vectors with it.
func Embedding(text string, dim int) []float32 {
	h := fnv.New64a()
	h.Write([]byte(text))
	state := h.Sum64()
	v := make([]float32, dim)
	for i := range v {
		// splitmix64 spreads one hash over as many components as needed.
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		z ^= z >> 31
		v[i] = float32(float64(int64(z)) / math.MaxInt64)
	}
	return normalize(v)
}

// normalize scales v to unit length, as Ollama's EmbedHandler does.
func normalize(v []float32) []float32 {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	norm := float32(1 / max(math.Sqrt(sum), 1e-12))
	for i := range v {
		v[i] *= norm
	}
	return v
}

// embedJob is one embedding request, whichever endpoint it came in on.
type embedJob struct {
	model      string // as sent
	name       modelName
	keepAlive  keepAlive
	inputs     []string
	dimensions int
}

// embedResult is what Ollama's EmbedHandler answers.
type embedResult struct {
	vectors [][]float32
	tokens  int
	total   time.Duration
	load    time.Duration
}

// embed takes a slot and the model like a generation, without token delays. It answers the
// request itself when it fails.
func (s *Server) embed(x *exchange, j embedJob) (embedResult, bool) {
	start := time.Now()
	m, ok := s.lookup(j.name.key)
	if !ok {
		x.fail(http.StatusNotFound, fmt.Sprintf("model %q not found, try pulling it first", j.model))
		return embedResult{}, false
	}
	if err := s.acquireSlot(x.ctx); err != nil {
		x.scheduleError(err)
		return embedResult{}, false
	}
	defer s.releaseSlot()
	lm, err := s.useModel(x.ctx, m, j.name.key, j.keepAlive)
	if err != nil {
		x.scheduleError(err)
		return embedResult{}, false
	}
	defer s.releaseModel(lm)
	s.served(m.Name)
	loaded := time.Now()

	res := embedResult{vectors: make([][]float32, len(j.inputs))}
	for i, text := range j.inputs {
		v := Embedding(text, m.EmbedDim)
		if j.dimensions > 0 && j.dimensions < len(v) {
			v = normalize(v[:j.dimensions])
		}
		res.vectors[i] = v
		res.tokens += estimateTokens(text)
	}
	res.load = max(loaded.Sub(start), 1)
	res.total = max(time.Since(start), res.load)
	return res, true
}

// embedInputs reads /api/embed's "input": a string or a list of strings.
func embedInputs(input any) ([]string, bool) {
	switch in := input.(type) {
	case nil:
		return nil, true
	case string:
		if in == "" {
			return nil, true
		}
		return []string{in}, true
	case []any:
		out := make([]string, 0, len(in))
		for _, v := range in {
			s, ok := v.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

// embedJobFrom validates an /api/embed-style request as Ollama's EmbedHandler does.
func (x *exchange) embedJobFrom(model string, input any, ka keepAlive, dims int) (embedJob, bool) {
	inputs, ok := embedInputs(input)
	if !ok {
		x.fail(http.StatusBadRequest, "invalid input type")
		return embedJob{}, false
	}
	j := embedJob{model: model, keepAlive: ka, inputs: inputs, dimensions: dims}
	if j.name, ok = parseName(model); !ok {
		// Ollama reaches its scheduler with the invalid name and fails there.
		x.fail(http.StatusInternalServerError, "unqualified name: "+j.name.full())
		return embedJob{}, false
	}
	return j, true
}

func (s *Server) handleEmbed(x *exchange) {
	type EmbedRequest struct {
		Model      string    `json:"model"`
		Input      any       `json:"input"`
		KeepAlive  keepAlive `json:"keep_alive"`
		Truncate   *bool     `json:"truncate"`
		Dimensions int       `json:"dimensions"`
	}
	var req EmbedRequest
	if err := decodeBody(x.body, &req); err != nil {
		x.badBody(err)
		return
	}
	j, ok := x.embedJobFrom(req.Model, req.Input, req.KeepAlive, req.Dimensions)
	if !ok {
		return
	}
	res, ok := s.embed(x, j)
	if !ok {
		return
	}
	type EmbedResponse struct {
		Model           string      `json:"model"`
		Embeddings      [][]float32 `json:"embeddings"`
		TotalDuration   int64       `json:"total_duration,omitempty"`
		LoadDuration    int64       `json:"load_duration,omitempty"`
		PromptEvalCount int         `json:"prompt_eval_count,omitempty"`
	}
	resp := EmbedResponse{Model: req.Model, Embeddings: res.vectors}
	if len(j.inputs) > 0 {
		resp.TotalDuration, resp.LoadDuration, resp.PromptEvalCount = int64(res.total), int64(res.load), res.tokens
	}
	x.respond(0, ctJSONGin, marshalGin(resp))
}

func (s *Server) handleEmbeddings(x *exchange) {
	type EmbeddingRequest struct {
		Model     string    `json:"model"`
		Prompt    string    `json:"prompt"`
		KeepAlive keepAlive `json:"keep_alive"`
	}
	var req EmbeddingRequest
	if err := decodeBody(x.body, &req); err != nil {
		x.badBody(err)
		return
	}
	j := embedJob{model: req.Model, keepAlive: req.KeepAlive}
	var ok bool
	if j.name, ok = parseName(req.Model); !ok {
		x.fail(http.StatusBadRequest, "model is required")
		return
	}
	if req.Prompt != "" {
		j.inputs = []string{req.Prompt}
	}
	res, ok := s.embed(x, j)
	if !ok {
		return
	}
	type EmbeddingResponse struct {
		Embedding []float64 `json:"embedding"`
	}
	resp := EmbeddingResponse{Embedding: []float64{}}
	if len(res.vectors) == 1 {
		for _, v := range res.vectors[0] {
			resp.Embedding = append(resp.Embedding, float64(v))
		}
	}
	x.respond(0, ctJSONGin, marshalGin(resp))
}

func (s *Server) handleOpenAIEmbeddings(x *exchange) {
	type EmbedRequest struct {
		Input          any    `json:"input"`
		Model          string `json:"model"`
		Dimensions     int    `json:"dimensions"`
		EncodingFormat string `json:"encoding_format"`
	}
	var req EmbedRequest
	if err := decodeBody(x.body, &req); err != nil {
		x.badOpenAIBody(err)
		return
	}
	format := req.EncodingFormat
	if format != "" && !strings.EqualFold(format, "float") && !strings.EqualFold(format, "base64") {
		x.failRequest(fmt.Sprintf("Invalid value for 'encoding_format' = %s. Supported values: ['float', 'base64'].", format))
		return
	}
	if req.Input == "" {
		req.Input = []any{""}
	}
	if list, isList := req.Input.([]any); req.Input == nil || isList && len(list) == 0 {
		x.failRequest("invalid input")
		return
	}
	j, ok := x.embedJobFrom(req.Model, req.Input, keepAlive{}, req.Dimensions)
	if !ok {
		return
	}
	res, ok := s.embed(x, j)
	if !ok {
		return
	}
	type Embedding struct {
		Object    string `json:"object"`
		Embedding any    `json:"embedding"`
		Index     int    `json:"index"`
	}
	type EmbeddingUsage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	}
	type EmbeddingList struct {
		Object string         `json:"object"`
		Data   []Embedding    `json:"data"`
		Model  string         `json:"model"`
		Usage  EmbeddingUsage `json:"usage,omitempty"`
	}
	list := EmbeddingList{Object: "list", Model: req.Model, Usage: EmbeddingUsage{res.tokens, res.tokens}}
	for i, v := range res.vectors {
		var e any = v
		if strings.EqualFold(format, "base64") {
			e = floatsToBase64(v)
		}
		list.Data = append(list.Data, Embedding{Object: "embedding", Embedding: e, Index: i})
	}
	x.respond(0, ctJSON, marshalEncoder(list))
}

// floatsToBase64 is OpenAI's base64 encoding_format: little-endian float32s.
func floatsToBase64(v []float32) string {
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.LittleEndian, v) // a bytes.Buffer does not fail
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}
