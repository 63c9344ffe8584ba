//go:build e2e

package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestSurface sends one request to each endpoint of the Ollama and OpenAI surfaces, straight to
// Ollama and through the agent: the agent answers with Ollama's status and marks every proxied
// response with X-Hearth-Node.
func TestSurface(t *testing.T) {
	s := use(t)
	cases := []struct {
		method, path, body string
		want               int
		// local: the agent answers itself (a health answer or a cluster-wide listing) rather
		// than proxying one Ollama's response, so X-Hearth-Node is not required.
		local bool
	}{
		{"HEAD", "/", "", 200, true},
		{"GET", "/", "", 200, true},
		{"GET", "/api/tags", "", 200, true},
		{"GET", "/api/ps", "", 200, true},
		{"GET", "/v1/models", "", 200, true},
		{"GET", "/api/version", "", 200, false},
		{"POST", "/api/show", `{"model":"tiny"}`, 200, false},
		{"POST", "/api/generate", `{"model":"tiny","prompt":"hi","stream":false,"options":{"num_predict":4}}`, 200, false},
		{"POST", "/api/chat", `{"model":"tiny2","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":4}}`, 200, false},
		{"POST", "/api/embed", `{"model":"tiny","input":"hi"}`, 200, false},
		{"POST", "/api/embeddings", `{"model":"tiny","prompt":"hi"}`, 200, false},
		{"POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`, 200, false},
		{"POST", "/v1/completions", `{"model":"tiny","prompt":"hi","max_tokens":4}`, 200, false},
		{"POST", "/v1/embeddings", `{"model":"tiny","input":["hi"]}`, 200, false},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			direct, _ := do(t, tc.method, s.ollamaURL, tc.path, tc.body)
			if direct.StatusCode != tc.want {
				t.Fatalf("straight to Ollama: %d, want %d (the test's assumption about Ollama is wrong)",
					direct.StatusCode, tc.want)
			}
			resp, b := do(t, tc.method, s.agentURL, tc.path, tc.body)
			if resp.StatusCode != tc.want {
				t.Errorf("through the agent: %d %s, want %d like Ollama", resp.StatusCode, b, tc.want)
			}
			got := resp.Header.Get("X-Hearth-Node")
			switch {
			case s.direct:
			case !tc.local && got != nodeName:
				t.Errorf("X-Hearth-Node = %q, want %q", got, nodeName)
			case tc.local && got != nodeName:
				t.Logf("answered by the agent itself, without X-Hearth-Node")
			}
		})
	}

	t.Run("proxied stream", func(t *testing.T) {
		s.agentOnly(t)
		body := `{"model":"tiny","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":4}}`
		resp, b := do(t, "POST", s.agentURL, "/api/chat", body)
		if resp.StatusCode != 200 || resp.Header.Get("X-Hearth-Node") != nodeName {
			t.Errorf("streamed /api/chat: %d, X-Hearth-Node %q; want 200 and %q (%s)",
				resp.StatusCode, resp.Header.Get("X-Hearth-Node"), nodeName, b)
		}
	})

	t.Run("model management", func(t *testing.T) {
		// create, copy and delete go to the node that holds the store; with one node, to Ollama.
		steps := []struct {
			method, path, body string
			want               int
		}{
			{"POST", "/api/create", `{"model":"tiny-e2e","from":"tiny","system":"You are terse.","stream":false}`, 200},
			{"POST", "/api/copy", `{"source":"tiny-e2e","destination":"tiny-e2e-copy"}`, 200},
			{"DELETE", "/api/delete", `{"model":"tiny-e2e-copy"}`, 200},
			{"DELETE", "/api/delete", `{"model":"tiny-e2e"}`, 200},
		}
		for _, step := range steps {
			resp, b := do(t, step.method, s.agentURL, step.path, step.body)
			if resp.StatusCode != step.want {
				t.Errorf("%s %s %s: %d %s, want %d", step.method, step.path, step.body, resp.StatusCode, b, step.want)
			}
		}
		names, err := tagNames(s.ollamaURL)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if strings.HasPrefix(n, "tiny-e2e") {
				t.Errorf("Ollama still has %s after the deletes through the agent", n)
			}
		}
	})

	t.Run("unknown model", func(t *testing.T) {
		// Each dialect gets its own error shape: Ollama's {"error":"..."}, OpenAI's
		// {"error":{"message":...}}.
		resp, b := do(t, "POST", s.agentURL, "/api/chat", `{"model":"doesnotexist","messages":[{"role":"user","content":"hi"}]}`)
		var ollamaErr struct {
			Error string `json:"error"`
		}
		if resp.StatusCode != http.StatusNotFound || json.Unmarshal(b, &ollamaErr) != nil || !strings.Contains(ollamaErr.Error, "doesnotexist") {
			t.Errorf("POST /api/chat unknown model: %d %s, want 404 {\"error\":\"...doesnotexist...\"}", resp.StatusCode, b)
		}
		resp, b = do(t, "POST", s.agentURL, "/v1/chat/completions", `{"model":"doesnotexist","messages":[{"role":"user","content":"hi"}]}`)
		var openaiErr struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if resp.StatusCode != http.StatusNotFound || json.Unmarshal(b, &openaiErr) != nil || !strings.Contains(openaiErr.Error.Message, "doesnotexist") {
			t.Errorf("POST /v1/chat/completions unknown model: %d %s, want 404 {\"error\":{\"message\":\"...doesnotexist...\"}}", resp.StatusCode, b)
		}
	})

	t.Run("health", func(t *testing.T) {
		s.agentOnly(t)
		for _, p := range []string{"/healthz", "/readyz"} {
			if resp, b := do(t, "GET", s.agentURL, p, ""); resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s: %d %s, want 200", p, resp.StatusCode, b)
			}
		}
	})
}
