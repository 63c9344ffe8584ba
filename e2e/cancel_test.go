//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestClientGoesAway: a client that closes a stream mid-way makes the agent end its call to
// Ollama, so Ollama stops generating for nobody (and a slot frees).
func TestClientGoesAway(t *testing.T) {
	s := use(t)
	cases := []struct{ name, path, body string }{
		{"api chat", "/api/chat", `{"model":"tiny","messages":[{"role":"user","content":"hello"}],"options":{"temperature":0},"e2e_nonce":"%s"}`},
		{"openai chat", "/v1/chat/completions", `{"model":"tiny","stream":true,"temperature":0,"messages":[{"role":"user","content":"hello"}],"x_nonce":"%s"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nonce := newNonce()
			release := s.capture.hold(nonce)
			defer release()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "POST", s.agentURL+tc.path, strings.NewReader(fmt.Sprintf(tc.body, nonce)))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("POST %s: %v", tc.path, err)
			}
			line, err := bufio.NewReader(resp.Body).ReadString('\n')
			if err != nil || line == "" {
				t.Fatalf("first line of the stream: %q, %v", line, err)
			}
			// The capture proxy holds the rest of Ollama's stream; the client hangs up now.
			cancel()
			resp.Body.Close()

			exs := s.capture.withBody(nonce)
			if len(exs) != 1 {
				t.Fatalf("Ollama received %d requests carrying the nonce, want 1", len(exs))
			}
			deadline := time.Now().Add(10 * time.Second)
			for !exs[0].Canceled() && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if !exs[0].Canceled() {
				t.Errorf("10 s after the client hung up, the agent's call to Ollama for %s is still open", tc.path)
			}
		})
	}
}
