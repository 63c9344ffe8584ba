//go:build e2e

package e2e

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

func (s *stack) openaiClient() *openai.Client {
	cfg := openai.DefaultConfig("unused")
	cfg.BaseURL = s.agentURL + "/v1"
	return openai.NewClientWithConfig(cfg)
}

// seed fixes the tiny models' noise, so each answer is the same on every run (many of their
// tokens print nothing; with this seed 32 tokens give several chunks of text).
var seed = 1

func hello() []openai.ChatCompletionMessage {
	return []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "hello"}}
}

// TestGoOpenAI uses go-openai, the client Go programs use for any OpenAI-compatible server.
func TestGoOpenAI(t *testing.T) {
	s := use(t)
	c := s.openaiClient()

	t.Run("models", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, err := c.ListModels(ctx)
		if err != nil {
			t.Fatalf("ListModels: %v", err)
		}
		var ids []string
		for _, m := range list.Models {
			ids = append(ids, m.ID)
		}
		for _, want := range []string{"tiny:latest", "tiny2:latest"} {
			if !slices.Contains(ids, want) {
				t.Errorf("GET /v1/models: ids %v, want %s among them", ids, want)
			}
		}
	})

	t.Run("chat", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		resp, err := c.CreateChatCompletion(ctx, openai.ChatCompletionRequest{
			Model: "tiny", Messages: hello(), MaxTokens: 32, Seed: &seed,
		})
		if err != nil {
			t.Fatalf("CreateChatCompletion: %v", err)
		}
		if resp.Model != "tiny" || resp.Object != "chat.completion" || len(resp.Choices) != 1 {
			t.Fatalf("got model %q object %q %d choices, want tiny, chat.completion, 1",
				resp.Model, resp.Object, len(resp.Choices))
		}
		ch := resp.Choices[0]
		if ch.Message.Role != openai.ChatMessageRoleAssistant || ch.Message.Content == "" {
			t.Errorf("message = %+v, want an assistant message with text", ch.Message)
		}
		if ch.FinishReason != openai.FinishReasonLength && ch.FinishReason != openai.FinishReasonStop {
			t.Errorf("finish reason %q, want length or stop", ch.FinishReason)
		}
		if n := resp.Usage.CompletionTokens; n < 1 || n > 32 {
			t.Errorf("completion tokens %d, want 1..32 (max_tokens 32)", n)
		}
		if resp.Usage.PromptTokens < 1 {
			t.Errorf("prompt tokens %d, want > 0", resp.Usage.PromptTokens)
		}
		if !s.direct {
			if got := resp.Header().Get("X-Hearth-Node"); got != nodeName {
				t.Errorf("X-Hearth-Node = %q, want %q", got, nodeName)
			}
		}
	})

	t.Run("chat stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		stream, err := c.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{
			Model: "tiny", Messages: hello(), MaxTokens: 32, Seed: &seed, Stream: true,
			StreamOptions: &openai.StreamOptions{IncludeUsage: true},
		})
		if err != nil {
			t.Fatalf("CreateChatCompletionStream: %v", err)
		}
		defer stream.Close()
		if !s.direct {
			if got := stream.Header().Get("X-Hearth-Node"); got != nodeName {
				t.Errorf("X-Hearth-Node = %q, want %q", got, nodeName)
			}
		}
		var (
			chunks  int
			text    strings.Builder
			finish  openai.FinishReason
			usage   *openai.Usage
			objects = map[string]bool{}
		)
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("Recv after %d chunks: %v", chunks, err)
			}
			chunks++
			objects[chunk.Object] = true
			for _, ch := range chunk.Choices {
				text.WriteString(ch.Delta.Content)
				if ch.FinishReason != "" {
					finish = ch.FinishReason
				}
			}
			if chunk.Usage != nil {
				usage = chunk.Usage
			}
		}
		if chunks < 2 {
			t.Errorf("%d chunks, want more than 1", chunks)
		}
		if text.Len() == 0 {
			t.Errorf("no content in %d chunks", chunks)
		}
		if finish != openai.FinishReasonLength && finish != openai.FinishReasonStop {
			t.Errorf("finish reason %q, want length or stop", finish)
		}
		if usage == nil || usage.CompletionTokens < 1 || usage.CompletionTokens > 32 {
			t.Errorf("usage chunk %+v, want completion tokens 1..32 (include_usage, max_tokens 32)", usage)
		}
		if len(objects) != 1 || !objects["chat.completion.chunk"] {
			t.Errorf("chunk objects %v, want only chat.completion.chunk", objects)
		}
		t.Logf("%d chunks: %q", chunks, text.String())
	})

	t.Run("embeddings", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		resp, err := c.CreateEmbeddings(ctx, openai.EmbeddingRequest{
			Model: "tiny", Input: []string{"hello", "world"},
		})
		if err != nil {
			t.Fatalf("CreateEmbeddings: %v", err)
		}
		if len(resp.Data) != 2 {
			t.Fatalf("%d embeddings, want 2", len(resp.Data))
		}
		n := len(resp.Data[0].Embedding)
		if n == 0 || len(resp.Data[1].Embedding) != n {
			t.Errorf("vector lengths %d and %d, want equal and > 0", n, len(resp.Data[1].Embedding))
		}
		if slices.Equal(resp.Data[0].Embedding, resp.Data[1].Embedding) {
			t.Errorf("hello and world have the same vector")
		}
	})

	t.Run("unknown model", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := c.CreateChatCompletion(ctx, openai.ChatCompletionRequest{Model: "doesnotexist", Messages: hello()})
		var apiErr *openai.APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("err = %v (%T), want *openai.APIError (an OpenAI-style error body)", err, err)
		}
		if apiErr.HTTPStatusCode != 404 || !strings.Contains(apiErr.Message, "doesnotexist") {
			t.Errorf("got %d %q, want 404 and a message naming the model", apiErr.HTTPStatusCode, apiErr.Message)
		}
	})
}
