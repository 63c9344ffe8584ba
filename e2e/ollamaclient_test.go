//go:build e2e

package e2e

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
)

func (s *stack) ollamaClient(t *testing.T) *api.Client {
	return api.NewClient(mustURL(t, s.agentURL), http.DefaultClient)
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestOllamaGoClient uses github.com/ollama/ollama/api, the client of the ollama CLI and of many
// Go tools, against the agent.
func TestOllamaGoClient(t *testing.T) {
	s := use(t)
	c := s.ollamaClient(t)
	// The tiny models' output is noise, and many of their tokens print nothing; a fixed seed
	// makes each answer the same on every run, and 32 tokens give several chunks of text.
	short := map[string]any{"num_predict": 32, "seed": 1}

	t.Run("version", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		v, err := c.Version(ctx)
		if err != nil {
			t.Fatalf("Version: %v", err)
		}
		// A go-install build of Ollama reports 0.0.0; what matters is that it is Ollama's answer.
		direct, err := api.NewClient(mustURL(t, s.ollamaURL), http.DefaultClient).Version(ctx)
		if err != nil {
			t.Fatalf("Version straight from Ollama: %v", err)
		}
		if v == "" || v != direct {
			t.Errorf("version %q, want %q (Ollama's own)", v, direct)
		}
	})

	t.Run("list", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, err := c.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		var names []string
		for _, m := range list.Models {
			names = append(names, m.Name)
			if strings.HasPrefix(m.Name, "tiny") && (m.Size <= 0 || m.Digest == "" || m.Details.Format != "gguf") {
				t.Errorf("model %s: size %d digest %q format %q, want the model's real details",
					m.Name, m.Size, m.Digest, m.Details.Format)
			}
		}
		for _, want := range []string{"tiny:latest", "tiny2:latest"} {
			if !slices.Contains(names, want) {
				t.Errorf("List: %v, want %s among them", names, want)
			}
		}
	})

	t.Run("show", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		resp, err := c.Show(ctx, &api.ShowRequest{Model: "tiny"})
		if err != nil {
			t.Fatalf("Show: %v", err)
		}
		if resp.Details.Family != "llama" || resp.Template != "{{ .Prompt }}" {
			t.Errorf("family %q template %q, want llama and {{ .Prompt }}", resp.Details.Family, resp.Template)
		}
		if !strings.Contains(resp.Parameters, "num_predict") || !strings.Contains(resp.Parameters, "32") {
			t.Errorf("parameters %q, want num_predict 32", resp.Parameters)
		}
		if got := resp.ModelInfo["llama.embedding_length"]; got != float64(64) {
			t.Errorf("llama.embedding_length = %v, want 64", got)
		}
	})

	t.Run("chat stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var (
			calls int
			text  strings.Builder
			last  api.ChatResponse
		)
		err := c.Chat(ctx, &api.ChatRequest{
			Model:    "tiny",
			Messages: []api.Message{{Role: "user", Content: "hello"}},
			Options:  short,
		}, func(r api.ChatResponse) error {
			if last.Done {
				t.Errorf("callback after the final chunk: %+v", r)
			}
			calls++
			text.WriteString(r.Message.Content)
			last = r
			return nil
		})
		if err != nil {
			t.Fatalf("Chat: %v", err)
		}
		if calls < 2 {
			t.Errorf("%d callbacks, want several (a stream)", calls)
		}
		if !last.Done || last.DoneReason == "" {
			t.Errorf("last chunk done=%v reason=%q, want done with a reason", last.Done, last.DoneReason)
		}
		if last.EvalCount < 1 || last.EvalCount > 32 {
			t.Errorf("eval count %d, want 1..32 (num_predict 32)", last.EvalCount)
		}
		if text.Len() == 0 || last.Model != "tiny" || last.Message.Role != "assistant" {
			t.Errorf("text %q model %q role %q, want text from tiny's assistant", text.String(), last.Model, last.Message.Role)
		}
	})

	t.Run("generate", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		stream := false
		var got []api.GenerateResponse
		err := c.Generate(ctx, &api.GenerateRequest{Model: "tiny2", Prompt: "hello", Stream: &stream, Options: short},
			func(r api.GenerateResponse) error { got = append(got, r); return nil })
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		if len(got) != 1 {
			t.Fatalf("%d responses, want 1 (stream false)", len(got))
		}
		r := got[0]
		if !r.Done || r.Response == "" || r.EvalCount < 1 || r.EvalCount > 32 || r.Model != "tiny2" {
			t.Errorf("got done=%v response %q eval count %d model %q, want a finished tiny2 answer of 1..32 tokens",
				r.Done, r.Response, r.EvalCount, r.Model)
		}
	})

	t.Run("embed", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		resp, err := c.Embed(ctx, &api.EmbedRequest{Model: "tiny", Input: []string{"a", "b", "c"}})
		if err != nil {
			t.Fatalf("Embed: %v", err)
		}
		if len(resp.Embeddings) != 3 || len(resp.Embeddings[0]) != 64 {
			t.Errorf("%d embeddings of length %d, want 3 of 64 (tiny's embedding length)",
				len(resp.Embeddings), lenFirst(resp.Embeddings))
		}
	})

	t.Run("ps", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		resp, err := c.ListRunning(ctx)
		if err != nil {
			t.Fatalf("ListRunning: %v", err)
		}
		var names []string
		for _, m := range resp.Models {
			names = append(names, m.Name)
		}
		// Chat and generate above loaded both models; OLLAMA_MAX_LOADED_MODELS on CPU is 3.
		for _, want := range []string{"tiny:latest", "tiny2:latest"} {
			if !slices.Contains(names, want) {
				t.Errorf("ps: %v, want %s loaded", names, want)
			}
		}
	})

	t.Run("unknown model", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, showErr := c.Show(ctx, &api.ShowRequest{Model: "doesnotexist"})
		chatErr := c.Chat(ctx, &api.ChatRequest{Model: "doesnotexist", Messages: []api.Message{{Role: "user", Content: "hi"}}},
			func(api.ChatResponse) error { return nil })
		genErr := c.Generate(ctx, &api.GenerateRequest{Model: "doesnotexist", Prompt: "hi"},
			func(api.GenerateResponse) error { return nil })
		for name, err := range map[string]error{"show": showErr, "chat": chatErr, "generate": genErr} {
			var se api.StatusError
			if !errors.As(err, &se) {
				t.Errorf("%s: err = %v (%T), want api.StatusError", name, err, err)
				continue
			}
			if se.StatusCode != 404 || !strings.Contains(se.ErrorMessage, "doesnotexist") {
				t.Errorf("%s: got %d %q, want 404 and a message naming the model", name, se.StatusCode, se.ErrorMessage)
			}
		}
	})
}

func lenFirst(v [][]float32) int {
	if len(v) == 0 {
		return 0
	}
	return len(v[0])
}
