package ollamasim

import (
	"cmp"
	"errors"
	"io"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	openai "github.com/sashabaranov/go-openai"
)

// TestOllamaGoClient decodes the sim's answers with Ollama's own client and types.
func TestOllamaGoClient(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny", EmbedDim: 4}, {Name: "tiny2"}}, Tokens: 5})
	u, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(u, newClient(t))
	ctx := testCtx(t)
	no := false

	t.Run("version", func(t *testing.T) {
		if v, err := c.Version(ctx); err != nil || v != "0.17.4" {
			t.Errorf("Version = %q, %v", v, err)
		}
	})
	t.Run("list", func(t *testing.T) {
		var list *api.ListResponse
		if list, err = c.List(ctx); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range list.Models {
			names = append(names, m.Name)
			if m.Model != m.Name || m.Size != defaultSize || len(m.Digest) != 64 || m.Details.Format != "gguf" || m.ModifiedAt.IsZero() {
				t.Errorf("model %+v", m)
			}
		}
		if slices.Sort(names); strings.Join(names, ",") != "tiny2:latest,tiny:latest" {
			t.Errorf("List names %v", names)
		}
	})
	t.Run("chat stream", func(t *testing.T) {
		var got []api.ChatResponse
		err := c.Chat(ctx, &api.ChatRequest{Model: "tiny", Messages: []api.Message{{Role: "user", Content: "hi"}}},
			func(r api.ChatResponse) error { got = append(got, r); return nil })
		if err != nil || len(got) != 6 {
			t.Fatalf("Chat: %d responses, %v", len(got), err)
		}
		var text strings.Builder
		for _, r := range got {
			text.WriteString(r.Message.Content)
		}
		last := got[len(got)-1]
		if text.String() != "tok0 tok1 tok2 tok3 tok4 " || !last.Done || last.DoneReason != "stop" ||
			last.EvalCount != 5 || last.PromptEvalCount <= 0 || last.TotalDuration <= 0 || last.CreatedAt.IsZero() {
			t.Errorf("text %q, last %+v", text.String(), last)
		}
	})
	t.Run("chat non-stream num_predict", func(t *testing.T) {
		var got []api.ChatResponse
		err := c.Chat(ctx, &api.ChatRequest{Model: "tiny", Stream: &no, Options: map[string]any{"num_predict": 2},
			Messages: []api.Message{{Role: "user", Content: "hi"}}}, func(r api.ChatResponse) error { got = append(got, r); return nil })
		if err != nil || len(got) != 1 || got[0].Message.Content != "tok0 tok1 " || got[0].DoneReason != "length" {
			t.Errorf("Chat: %+v, %v", got, err)
		}
	})
	t.Run("generate", func(t *testing.T) {
		var got []api.GenerateResponse
		err := c.Generate(ctx, &api.GenerateRequest{Model: "tiny2", Prompt: "hi", KeepAlive: &api.Duration{Duration: time.Hour}},
			func(r api.GenerateResponse) error { got = append(got, r); return nil })
		if err != nil || len(got) != 6 || got[0].Response != "tok0 " || !got[5].Done || len(got[5].Context) == 0 {
			t.Errorf("Generate: %+v, %v", got, err)
		}
	})
	t.Run("ps", func(t *testing.T) {
		ps, err := c.ListRunning(ctx)
		if err != nil || len(ps.Models) != 2 {
			t.Fatalf("ListRunning: %+v, %v", ps, err)
		}
		// tiny2 was asked to stay an hour, tiny the default five minutes: longest first.
		first := ps.Models[0]
		if first.Name != "tiny2:latest" || first.SizeVRAM != defaultSize || first.ContextLength != defaultContext ||
			time.Until(first.ExpiresAt) < 50*time.Minute || ps.Models[1].Name != "tiny:latest" {
			t.Errorf("ListRunning: %+v", ps.Models)
		}
	})
	t.Run("show", func(t *testing.T) {
		sh, err := c.Show(ctx, &api.ShowRequest{Model: "tiny"})
		if err != nil || sh.Details.Family != "llama" || sh.ModelInfo["general.architecture"] != "llama" ||
			!slices.Contains(sh.Capabilities, "completion") || sh.Template == "" {
			t.Errorf("Show: %+v, %v", sh, err)
		}
	})
	t.Run("embed", func(t *testing.T) {
		e, err := c.Embed(ctx, &api.EmbedRequest{Model: "tiny", Input: []string{"a", "b"}})
		if err != nil || len(e.Embeddings) != 2 || !slices.Equal(e.Embeddings[1], Embedding("b", 4)) || e.PromptEvalCount != 2 {
			t.Errorf("Embed: %+v, %v", e, err)
		}
		old, err := c.Embeddings(ctx, &api.EmbeddingRequest{Model: "tiny", Prompt: "a"})
		if err != nil || len(old.Embedding) != 4 || float32(old.Embedding[0]) != Embedding("a", 4)[0] {
			t.Errorf("Embeddings: %+v, %v", old, err)
		}
	})
	t.Run("errors", func(t *testing.T) {
		err := c.Chat(ctx, &api.ChatRequest{Model: "nope", Messages: []api.Message{{Role: "user", Content: "x"}}},
			func(api.ChatResponse) error { return nil })
		var se api.StatusError
		if !errors.As(err, &se) || se.StatusCode != 404 || se.ErrorMessage != "model 'nope' not found" {
			t.Errorf("Chat with an unknown model: %#v", err)
		}
		var statuses []string
		err = c.Pull(ctx, &api.PullRequest{Model: "nope"}, func(p api.ProgressResponse) error {
			statuses = append(statuses, p.Status)
			return nil
		})
		if err == nil || err.Error() != errPullMissing || !slices.Equal(statuses, []string{"pulling manifest"}) {
			t.Errorf("Pull unknown: %v after %v", err, statuses)
		}
	})
	t.Run("pull", func(t *testing.T) {
		var last api.ProgressResponse
		err := c.Pull(ctx, &api.PullRequest{Model: "tiny"}, func(p api.ProgressResponse) error { last = p; return nil })
		if err != nil || last.Status != "success" {
			t.Errorf("Pull: %+v, %v", last, err)
		}
	})
}

// TestGoOpenAIClient decodes the sim's /v1 answers with go-openai.
func TestGoOpenAIClient(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny", EmbedDim: 4}}, Tokens: 3})
	cfg := openai.DefaultConfig("unused")
	cfg.BaseURL = s.URL() + "/v1"
	cfg.HTTPClient = newClient(t)
	c := openai.NewClientWithConfig(cfg)
	ctx := testCtx(t)
	msgs := []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "hello"}}

	t.Run("chat", func(t *testing.T) {
		resp, err := c.CreateChatCompletion(ctx, openai.ChatCompletionRequest{Model: "tiny", Messages: msgs})
		if err != nil || len(resp.Choices) != 1 || resp.Choices[0].Message.Content != "tok0 tok1 tok2 " ||
			resp.Choices[0].FinishReason != openai.FinishReasonStop || resp.Usage.CompletionTokens != 3 {
			t.Errorf("CreateChatCompletion: %+v, %v", resp, err)
		}
	})
	t.Run("chat stream with usage", func(t *testing.T) {
		st, err := c.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{
			Model: "tiny", Messages: msgs, MaxTokens: 2, StreamOptions: &openai.StreamOptions{IncludeUsage: true}})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var text strings.Builder
		var usage *openai.Usage
		var finish openai.FinishReason
		for {
			r, err := st.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, ch := range r.Choices {
				text.WriteString(ch.Delta.Content)
				finish = cmp.Or(ch.FinishReason, finish)
			}
			if r.Usage != nil {
				usage = r.Usage
			}
		}
		if text.String() != "tok0 tok1 " || finish != openai.FinishReasonLength || usage == nil || usage.CompletionTokens != 2 {
			t.Errorf("stream: text %q finish %q usage %+v", text.String(), finish, usage)
		}
	})
	t.Run("completion", func(t *testing.T) {
		resp, err := c.CreateCompletion(ctx, openai.CompletionRequest{Model: "tiny", Prompt: "hi"})
		if err != nil || len(resp.Choices) != 1 || resp.Choices[0].Text != "tok0 tok1 tok2 " {
			t.Errorf("CreateCompletion: %+v, %v", resp, err)
		}
	})
	t.Run("embeddings", func(t *testing.T) {
		for _, format := range []openai.EmbeddingEncodingFormat{openai.EmbeddingEncodingFormatFloat, openai.EmbeddingEncodingFormatBase64} {
			resp, err := c.CreateEmbeddings(ctx, openai.EmbeddingRequestStrings{Model: "tiny", Input: []string{"a"}, EncodingFormat: format})
			if err != nil || len(resp.Data) != 1 || !slices.Equal(resp.Data[0].Embedding, Embedding("a", 4)) {
				t.Errorf("CreateEmbeddings %s: %+v, %v", format, resp, err)
			}
		}
	})
	t.Run("models", func(t *testing.T) {
		list, err := c.ListModels(ctx)
		if err != nil || len(list.Models) != 1 || list.Models[0].ID != "tiny:latest" || list.Models[0].OwnedBy != "library" {
			t.Errorf("ListModels: %+v, %v", list, err)
		}
		m, err := c.GetModel(ctx, "tiny")
		if err != nil || m.ID != "tiny" {
			t.Errorf("GetModel: %+v, %v", m, err)
		}
	})
	t.Run("unknown model", func(t *testing.T) {
		_, err := c.CreateChatCompletion(ctx, openai.ChatCompletionRequest{Model: "nope", Messages: msgs})
		var ae *openai.APIError
		if !errors.As(err, &ae) || ae.HTTPStatusCode != 404 || ae.Message != "model 'nope' not found" || ae.Type != "api_error" {
			t.Errorf("unknown model: %#v", err)
		}
	})
}
