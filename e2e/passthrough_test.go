//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The bodies below are written the way no JSON encoder writes them: odd key order, tabs, CRLF,
// spaces around colons, escapes, numbers like 2.50 and -0.0, and a temperature of 0, a tools
// list, a JSON-schema format, keep_alive and a field no server knows. A proxy that decodes and
// re-encodes (as go-openai would: it drops temperature 0 and unknown fields) changes them.
const (
	chatBody = "{\r\n  \"stream\" : false ,\t\"e2e_unknown\": {\"nonce\": \"%s\", \"nested\": [1, 2.50, -0.0, 1e2, true, null], \"s\": \"caf\\u00e9 \\\"q\\\" </b>\"},\n" +
		"  \"messages\":[ {\"content\":\"hello\",   \"role\":\"user\"} ],\n" +
		"  \"model\"  :  \"tiny-tools\",\n" +
		"  \"tools\": [ {\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather in a city\", \"parameters\": {\"type\": \"object\", \"required\": [\"city\"], \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City name\"}}}}} ],\n" +
		"  \"format\": {\"type\":\"object\",\"properties\":{\"answer\":{\"type\":\"string\"}},\"required\":[\"answer\"]},\n" +
		"  \"options\": {\"temperature\": 0, \"num_predict\": 6, \"seed\": 7},\n" +
		"  \"keep_alive\": \"5m\"\n}\n"

	openaiChatBody = "{\"messages\" : [{\"role\":\"system\",\"content\":\"be brief\"}, {\"content\":\"hello\",\"role\":\"user\"}],\n" +
		"\t\"temperature\" : 0, \"max_tokens\":6,   \"seed\": 7,\n" +
		"\t\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"lookup\",\"description\":\"Look up a word\",\"parameters\":{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\"}},\"required\":[\"q\"]}}}],\n" +
		"\t\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"answer\",\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"answer\":{\"type\":\"string\"}},\"required\":[\"answer\"]}}},\n" +
		"\t\"keep_alive\" : \"5m\", \"x_unknown\" : {\"nonce\":\"%s\",\"deep\":[{\"a\":1.000}]},\n" +
		"\t\"model\":\"tiny-tools\", \"stream\" : false }"

	chatStreamBody = "{ \"options\" : { \"num_predict\" : 32 , \"temperature\" : 0 }, \"e2e_nonce\" : \"%s\",\n" +
		"  \"model\" : \"tiny\", \"messages\" : [ { \"role\" : \"user\", \"content\" : \"hello\" } ] }"

	generateStreamBody = "{\"prompt\":\"once upon\",\t\"model\":\"tiny2\",\"keep_alive\":\"10m\",\"options\":{\"num_predict\":32,\"seed\":1},\"e2e_nonce\":\"%s\",\"stream\":true}\n"

	openaiStreamBody = "{\"stream\":true,\"model\":\"tiny\",\"max_tokens\":32,\"temperature\":0,\n" +
		"\"stream_options\":{\"include_usage\":true},\"x_nonce\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}"

	embedBody       = "{ \"input\" : [\"a\", \"b\"], \"truncate\": true, \"model\" : \"tiny\", \"e2e_nonce\": \"%s\" }"
	openaiEmbedBody = "{\"input\":\"hello\",\"encoding_format\":\"float\",\"model\":\"tiny\",\"x_nonce\":\"%s\"}"
)

// TestPassthrough checks that the agent forwards request bodies byte for byte, gives the client
// Ollama's response bytes unchanged, and passes each stream chunk on as it comes.
func TestPassthrough(t *testing.T) {
	s := use(t)
	cases := []struct {
		name, path, body string
		stream           bool
		contentType      string // of Ollama's answer, which the client must get too
	}{
		{"api chat", "/api/chat", chatBody, false, "application/json"},
		{"openai chat", "/v1/chat/completions", openaiChatBody, false, "application/json"},
		{"api embed", "/api/embed", embedBody, false, "application/json"},
		{"openai embeddings", "/v1/embeddings", openaiEmbedBody, false, "application/json"},
		{"api chat stream", "/api/chat", chatStreamBody, true, "application/x-ndjson"},
		{"api generate stream", "/api/generate", generateStreamBody, true, "application/x-ndjson"},
		{"openai chat stream", "/v1/chat/completions", openaiStreamBody, true, "text/event-stream"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nonce := newNonce()
			body := fmt.Sprintf(tc.body, nonce)
			var got []byte
			var status int
			if tc.stream {
				status, got = s.postStream(t, tc.path, body, nonce, tc.contentType)
			} else {
				resp, b := do(t, "POST", s.agentURL, tc.path, body)
				status, got = resp.StatusCode, b
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
					t.Errorf("Content-Type %q, want %s", ct, tc.contentType)
				}
			}

			exs := s.capture.withBody(nonce)
			if len(exs) != 1 {
				t.Fatalf("Ollama received %d requests carrying the nonce, want 1", len(exs))
			}
			ex := exs[0]
			if ex.Method != "POST" || ex.Path != tc.path {
				t.Errorf("Ollama received %s %s, want POST %s", ex.Method, ex.Path, tc.path)
			}
			if !bytes.Equal(ex.Body, []byte(body)) {
				t.Errorf("request body changed on the way to Ollama\nsent:     %q\nreceived: %q", body, ex.Body)
			}
			upStatus, upBody := ex.Response()
			if status != http.StatusOK || upStatus != http.StatusOK {
				t.Errorf("status: client got %d, Ollama answered %d (%s); want 200 both", status, upStatus, upBody)
			}
			if !bytes.Equal(got, upBody) {
				t.Errorf("response body changed on the way to the client\nOllama sent: %q\nclient got:  %q", upBody, got)
			}
			if tc.stream && bytes.Count(got, []byte("\n")) < 3 {
				t.Errorf("stream of %d lines, want several: %q", bytes.Count(got, []byte("\n")), got)
			}
		})
	}

	t.Run("blob upload", func(t *testing.T) {
		blob := make([]byte, 64<<10)
		rand.Read(blob)
		sum := sha256.Sum256(blob)
		path := "/api/blobs/sha256:" + hex.EncodeToString(sum[:])
		before := s.capture.count()

		if resp, b := do(t, "HEAD", s.agentURL, path, ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("HEAD %s before upload: %d %s, want 404", path, resp.StatusCode, b)
		}
		req, err := http.NewRequest("POST", s.agentURL+path, bytes.NewReader(blob))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("POST %s: %d, want 201", path, resp.StatusCode)
		}
		if resp, b := do(t, "HEAD", s.agentURL, path, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("HEAD %s after upload: %d %s, want 200", path, resp.StatusCode, b)
		}
		var posts int
		for _, ex := range s.capture.since(before) {
			if ex.Method == "POST" && ex.Path == path {
				posts++
				if !bytes.Equal(ex.Body, blob) {
					t.Errorf("blob changed on the way: %d bytes reached Ollama, want the %d sent", len(ex.Body), len(blob))
				}
			}
		}
		if posts != 1 {
			t.Errorf("Ollama received %d uploads of the blob, want 1", posts)
		}
	})
}

// postStream sends body (which contains nonce) to the agent and reads the streamed answer while
// the capture proxy holds Ollama's stream after its first line: that line must reach the client
// within 20 s, or the agent buffers.
func (s *stack) postStream(t *testing.T, path, body, nonce, contentType string) (int, []byte) {
	t.Helper()
	release := s.capture.hold(nonce)
	defer release()
	url := s.agentURL + path
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	type result struct {
		resp  *http.Response
		first []byte
		err   error
	}
	done := make(chan result, 1)
	var resp *http.Response
	var br *bufio.Reader
	go func() {
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		resp, br = r, bufio.NewReader(r.Body)
		line, err := br.ReadBytes('\n')
		done <- result{resp: r, first: line, err: err}
	}()
	var first result
	held := -1 // how much of Ollama's stream had reached the capture proxy when the client had a line
	select {
	case first = <-done:
		if exs := s.capture.withBody(nonce); len(exs) == 1 {
			_, b := exs[0].Response()
			held = len(b)
		}
	case <-time.After(20 * time.Second):
		release()
		first = <-done
		t.Errorf("the first chunk did not reach the client within 20 s while Ollama's stream was held after it: the agent does not flush each chunk")
	}
	release()
	if first.err != nil {
		t.Fatalf("POST %s: %v", url, first.err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, contentType) {
		t.Errorf("Content-Type %q, want %s", ct, contentType)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read stream: %v", err)
	}
	all := append(first.first, rest...)
	if held >= len(all) {
		// The hold kept nothing back, so this run says nothing about flushing.
		t.Errorf("the capture proxy had all %d bytes of the stream before the client read its first line: the flush check did not hold", len(all))
	}
	return resp.StatusCode, all
}

func newNonce() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "e2e-" + hex.EncodeToString(b)
}
