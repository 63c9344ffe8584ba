package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
)

const (
	benchModel = "bench-model"
	// directKey and relayKey tell the vendor who called: the bench itself or the relay's
	// channel, so that the end of the run can check every relayed request reached it.
	directKey = "sk-bench-direct"
	relayKey  = "sk-bench-relay"
	// streamTokens is how many content chunks a stream carries before its finish chunk.
	streamTokens = 8
)

// vendor is a fake OpenAI-compatible API with no delay at all: whatever time a request takes
// through it is the HTTP stack's, the bench client's and, through the relay, the relay's.
type vendor struct {
	srv             *httptest.Server
	direct, relayed atomic.Int64 // calls by key

	completion []byte   // the non-stream answer
	chunks     [][]byte // the stream's events, finish chunk included, usage chunk and [DONE] not
	usageChunk []byte
}

func startVendor() *vendor {
	v := &vendor{}
	v.completion = fmt.Appendf(nil, `{"id":"chatcmpl-bench","object":"chat.completion","created":1767225600,"model":%q,`+
		`"choices":[{"index":0,"message":{"role":"assistant","content":"one two three four five six seven eight"},"finish_reason":"stop"}],`+
		`"usage":{"prompt_tokens":9,"completion_tokens":%d,"total_tokens":%d}}`, benchModel, streamTokens, 9+streamTokens)
	for i := range streamTokens {
		v.chunks = append(v.chunks, fmt.Appendf(nil, "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,"+
			"\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok%d \"},\"finish_reason\":null}]}\n\n", benchModel, i))
	}
	v.chunks = append(v.chunks, fmt.Appendf(nil, "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,"+
		"\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n", benchModel))
	v.usageChunk = fmt.Appendf(nil, "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,"+
		"\"model\":%q,\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n", benchModel, streamTokens, 9+streamTokens)
	v.srv = httptest.NewServer(v)
	return v
}

// baseURL is what a channel's base_url would be: the API root, /v1 included.
func (v *vendor) baseURL() string { return v.srv.URL + "/v1" }

func (v *vendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Header.Get("Authorization") {
	case "Bearer " + directKey:
		v.direct.Add(1)
	case "Bearer " + relayKey:
		v.relayed.Add(1)
	default:
		vendorError(w, http.StatusUnauthorized, "invalid_api_key", "Incorrect API key provided.")
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		vendorError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
		return
	}
	var req struct {
		Model         string `json:"model"`
		Stream        bool   `json:"stream"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		vendorError(w, http.StatusBadRequest, "invalid_json", err.Error())
		return
	}
	if req.Model != benchModel {
		vendorError(w, http.StatusNotFound, "model_not_found", fmt.Sprintf("The model %q does not exist.", req.Model))
		return
	}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(v.completion)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher := w.(http.Flusher)
	// Each event is flushed on its own, as a vendor sends tokens as they come.
	for _, c := range v.chunks {
		if _, err := w.Write(c); err != nil {
			return
		}
		flusher.Flush()
	}
	if req.StreamOptions.IncludeUsage {
		_, _ = w.Write(v.usageChunk)
		flusher.Flush()
	}
	_, _ = w.Write([]byte("data: [DONE]\n\n"))
}

func vendorError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": "invalid_request_error", "code": code}})
}
