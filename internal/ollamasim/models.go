package ollamasim

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// storedModel is a model in the store, with what Ollama keeps in its manifest.
type storedModel struct {
	Model
	digest   string
	modified time.Time
}

func (s *Server) addModelLocked(m Model) {
	n, _ := parseName(m.Name)
	if _, ok := s.store[n.key]; ok {
		s.order = slices.DeleteFunc(s.order, func(k string) bool { return k == n.key })
	}
	s.store[n.key] = &storedModel{Model: m, digest: digestOf(m), modified: time.Now()}
	s.order = append(s.order, n.key)
}

func (s *Server) removeModelLocked(key string) bool {
	if _, ok := s.store[key]; !ok {
		return false
	}
	delete(s.store, key)
	s.order = slices.DeleteFunc(s.order, func(k string) bool { return k == key })
	return true
}

func (s *Server) lookup(key string) (Model, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sm, ok := s.store[key]
	if !ok {
		return Model{}, false
	}
	return sm.Model, true
}

// listed returns the store most recently modified first, as /api/tags orders it (by the
// second, ties in the order the models were added).
func (s *Server) listed() []storedModel {
	s.mu.Lock()
	out := make([]storedModel, 0, len(s.order))
	for _, k := range s.order {
		out = append(out, *s.store[k])
	}
	s.mu.Unlock()
	slices.SortStableFunc(out, func(a, b storedModel) int {
		return cmp.Compare(b.modified.Unix(), a.modified.Unix())
	})
	return out
}

// modelDetails is Ollama's api.ModelDetails.
type modelDetails struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

func detailsOf(m Model) modelDetails {
	return modelDetails{
		Format:            "gguf",
		Family:            m.Family,
		Families:          []string{m.Family},
		ParameterSize:     m.ParameterSize,
		QuantizationLevel: m.QuantizationLevel,
	}
}

func (s *Server) handleRoot(x *exchange) {
	x.respond(0, ctText, []byte("Ollama is running"))
}

func (s *Server) handleVersion(x *exchange) {
	x.respond(0, ctJSONGin, marshalGin(map[string]string{"version": s.cfg.Version}))
}

func (s *Server) handleTags(x *exchange) {
	type ListModelResponse struct {
		Name       string       `json:"name"`
		Model      string       `json:"model"`
		ModifiedAt time.Time    `json:"modified_at"`
		Size       int64        `json:"size"`
		Digest     string       `json:"digest"`
		Details    modelDetails `json:"details"`
	}
	type ListResponse struct {
		Models []ListModelResponse `json:"models"`
	}
	resp := ListResponse{Models: []ListModelResponse{}}
	for _, m := range s.listed() {
		resp.Models = append(resp.Models, ListModelResponse{
			Name: m.Name, Model: m.Name, ModifiedAt: m.modified, Size: m.Size, Digest: m.digest, Details: detailsOf(m.Model),
		})
	}
	x.respond(0, ctJSONGin, marshalGin(resp))
}

func (s *Server) handlePs(x *exchange) {
	type ProcessModelResponse struct {
		Name          string       `json:"name"`
		Model         string       `json:"model"`
		Size          int64        `json:"size"`
		Digest        string       `json:"digest"`
		Details       modelDetails `json:"details"`
		ExpiresAt     time.Time    `json:"expires_at"`
		SizeVRAM      int64        `json:"size_vram"`
		ContextLength int          `json:"context_length"`
	}
	type ProcessResponse struct {
		Models []ProcessModelResponse `json:"models"`
	}
	resp := ProcessResponse{Models: []ProcessModelResponse{}}
	for _, e := range s.running() {
		resp.Models = append(resp.Models, ProcessModelResponse{
			Name: e.model.Name, Model: e.model.Name, Size: e.model.Size, Digest: e.digest,
			Details: detailsOf(e.model), ExpiresAt: e.expiresAt, SizeVRAM: e.model.Size,
			ContextLength: e.model.ContextLength,
		})
	}
	// Longest time left first, compared by the second like Ollama.
	slices.SortStableFunc(resp.Models, func(a, b ProcessModelResponse) int {
		return cmp.Compare(b.ExpiresAt.Unix(), a.ExpiresAt.Unix())
	})
	x.respond(0, ctJSONGin, marshalGin(resp))
}

// showFor looks a model up for /api/show and /v1/models/{model}; it answers the failure.
func (s *Server) showFor(x *exchange, model string) (storedModel, bool) {
	n, _ := parseName(model)
	s.mu.Lock()
	sm, ok := s.store[n.key]
	s.mu.Unlock()
	if !ok {
		x.fail(http.StatusNotFound, "model '"+model+"' not found")
		return storedModel{}, false
	}
	return *sm, true
}

func (s *Server) handleShow(x *exchange) {
	type ShowRequest struct {
		Model string `json:"model"`
		Name  string `json:"name"`
	}
	var req ShowRequest
	if err := decodeBody(x.body, &req); err != nil {
		x.badBody(err)
		return
	}
	model := cmp.Or(req.Model, req.Name)
	if model == "" {
		x.fail(http.StatusBadRequest, "model is required")
		return
	}
	sm, ok := s.showFor(x, model)
	if !ok {
		return
	}
	type Tensor struct {
		Name  string   `json:"name"`
		Type  string   `json:"type"`
		Shape []uint64 `json:"shape"`
	}
	type ShowResponse struct {
		Modelfile    string         `json:"modelfile,omitempty"`
		Template     string         `json:"template,omitempty"`
		Details      modelDetails   `json:"details"`
		ModelInfo    map[string]any `json:"model_info"`
		Tensors      []Tensor       `json:"tensors,omitempty"`
		Capabilities []string       `json:"capabilities,omitempty"`
		ModifiedAt   time.Time      `json:"modified_at"`
	}
	fam, dim := sm.Family, uint64(sm.EmbedDim)
	resp := ShowResponse{
		Modelfile: "# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, replace FROM with:\n" +
			"# FROM " + sm.Name + "\n\nFROM " + sm.Name + "\nTEMPLATE {{ .Prompt }}\n",
		Template: "{{ .Prompt }}",
		Details:  detailsOf(sm.Model),
		// A plausible subset of a GGUF's metadata; clients read architecture and lengths.
		ModelInfo: map[string]any{
			"general.architecture":         fam,
			"general.file_type":            15,
			"general.parameter_count":      sm.Size * 2,
			fam + ".attention.head_count":  8,
			fam + ".block_count":           16,
			fam + ".context_length":        sm.ContextLength,
			fam + ".embedding_length":      sm.EmbedDim,
			"tokenizer.ggml.model":         "gpt2",
			"tokenizer.ggml.bos_token_id":  1,
			"tokenizer.ggml.eos_token_id":  2,
			"tokenizer.ggml.add_bos_token": true,
		},
		Tensors: []Tensor{
			{Name: "token_embd.weight", Type: "Q4_K", Shape: []uint64{dim, 32000}},
			{Name: "output_norm.weight", Type: "F32", Shape: []uint64{dim}},
		},
		Capabilities: []string{"completion"},
		ModifiedAt:   sm.modified,
	}
	x.respond(0, ctJSONGin, marshalGin(resp))
}

func (s *Server) handleOpenAIModels(x *exchange) {
	type Model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	type ListCompletion struct {
		Object string  `json:"object"`
		Data   []Model `json:"data"` // null when the store is empty, as from Ollama
	}
	list := ListCompletion{Object: "list"}
	for _, m := range s.listed() {
		n, _ := parseName(m.Name)
		list.Data = append(list.Data, Model{ID: m.Name, Object: "model", Created: m.modified.Unix(), OwnedBy: n.namespace})
	}
	x.respond(0, ctJSON, marshalEncoder(list))
}

func (s *Server) handleOpenAIModel(x *exchange) {
	id := strings.TrimPrefix(x.r.URL.Path, "/v1/models/")
	sm, ok := s.showFor(x, id)
	if !ok {
		return
	}
	n, _ := parseName(id)
	x.respond(0, ctJSON, marshalEncoder(struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}{id, "model", sm.modified.Unix(), n.namespace}))
}

func (s *Server) handleDelete(x *exchange) {
	type DeleteRequest struct {
		Model string `json:"model"`
		Name  string `json:"name"`
	}
	var req DeleteRequest
	if err := decodeBody(x.body, &req); err != nil {
		x.badBody(err)
		return
	}
	model := cmp.Or(req.Model, req.Name)
	n, ok := parseName(model)
	if !ok {
		x.fail(http.StatusBadRequest, fmt.Sprintf("name %q is invalid", model))
		return
	}
	s.mu.Lock()
	removed := s.removeModelLocked(n.key)
	s.mu.Unlock()
	if !removed {
		x.fail(http.StatusNotFound, "model '"+model+"' not found")
		return
	}
	x.respond(0, "", nil)
}

func (s *Server) handleCopy(x *exchange) {
	type CopyRequest struct {
		Source      string `json:"source"`
		Destination string `json:"destination"`
	}
	var req CopyRequest
	if err := decodeBody(x.body, &req); err != nil {
		x.badBody(err)
		return
	}
	if _, ok := parseName(req.Source); !ok {
		x.fail(http.StatusBadRequest, fmt.Sprintf("source %q is invalid", req.Source))
		return
	}
	dst, ok := parseName(req.Destination)
	if !ok {
		x.fail(http.StatusBadRequest, fmt.Sprintf("destination %q is invalid", req.Destination))
		return
	}
	if !s.copyModel(req.Source, dst) {
		x.fail(http.StatusNotFound, fmt.Sprintf("model %q not found", req.Source))
		return
	}
	x.respond(0, "", nil)
}

// copyModel stores a copy of the model named src under dst; false when src is unknown.
func (s *Server) copyModel(src string, dst modelName) bool {
	n, _ := parseName(src)
	s.mu.Lock()
	defer s.mu.Unlock()
	sm, ok := s.store[n.key]
	if !ok {
		return false
	}
	m := sm.Model
	m.Name = dst.display
	s.addModelLocked(m)
	return true
}

// validDigest is Ollama's blob digest check, ^sha256[:-][0-9a-fA-F]{64}$.
func validDigest(d string) bool {
	if len(d) != 71 || !strings.HasPrefix(d, "sha256") || d[6] != ':' && d[6] != '-' {
		return false
	}
	_, err := hex.DecodeString(d[7:])
	return err == nil
}

func (s *Server) handleBlob(x *exchange) {
	digest := strings.TrimPrefix(x.r.URL.Path, "/api/blobs/")
	if !validDigest(digest) {
		x.fail(http.StatusBadRequest, "invalid digest format")
		return
	}
	key := "sha256:" + strings.ToLower(digest[7:])
	s.mu.Lock()
	_, known := s.blobs[key]
	s.mu.Unlock()
	switch {
	case x.r.Method == http.MethodHead && !known:
		x.fail(http.StatusNotFound, fmt.Sprintf("blob %q not found", digest))
	case known:
		x.respond(0, "", nil)
	default:
		sum := sha256.Sum256(x.body)
		got := "sha256:" + hex.EncodeToString(sum[:])
		if got != digest {
			x.fail(http.StatusBadRequest, fmt.Sprintf("digest mismatch, expected %q, got %q", digest, got))
			return
		}
		s.mu.Lock()
		s.blobs[key] = struct{}{}
		s.mu.Unlock()
		x.respond(http.StatusCreated, "", nil)
	}
}
