package rag

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Client speaks the Ollama API of the agent rag runs in: embeddings and chats go through the
// agent's router, so whichever node has the model serves them. It is the Embedder and the
// Chatter the agent gives rag.
type Client struct {
	// Base is the agent's API, "http://127.0.0.1:11500".
	Base string
	// Key is sent as a Bearer token ("" for none).
	Key  string
	HTTP *http.Client

	mu     sync.Mutex
	ctxLen map[string]int
}

func (c *Client) post(ctx context.Context, path string, body any) (*http.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.Base, "/")+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	return hc.Do(req)
}

// apiError reads an Ollama-dialect error answer.
func apiError(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(b))
}

// Embed implements Embedder with POST /api/embed.
func (c *Client) Embed(ctx context.Context, model string, texts []string) ([][]float32, error) {
	resp, err := c.post(ctx, "/api/embed", map[string]any{"model": model, "input": texts, "truncate": true})
	if err != nil {
		return nil, fmt.Errorf("rag: embed with %s: %w", model, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%w: the embed model %s (rag.embed_model) is on no node: run `ollama pull %s` on a node of the cluster (%s)",
			ErrEmbedModel, model, strings.TrimSuffix(model, ":latest"), apiError(resp))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("rag: embed with %s: %s: %s", model, resp.Status, apiError(resp))
	}
	var out struct {
		Embeddings [][]float32 `json:"embeddings"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("rag: embed with %s: reading the answer: %w", model, err)
	}
	return out.Embeddings, nil
}

// ContextLength is the model's trained context window (from /api/show), 0 when unknown.
func (c *Client) ContextLength(ctx context.Context, model string) (int, error) {
	c.mu.Lock()
	n, ok := c.ctxLen[model]
	c.mu.Unlock()
	if ok {
		return n, nil
	}
	resp, err := c.post(ctx, "/api/show", map[string]any{"model": model})
	if err != nil {
		return 0, fmt.Errorf("rag: show %s: %w", model, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return 0, fmt.Errorf("%w: the chat model %s (rag.chat_model) is on no node: run `ollama pull %s` on a node of the cluster",
			ErrChatModel, model, strings.TrimSuffix(model, ":latest"))
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("rag: show %s: %s: %s", model, resp.Status, apiError(resp))
	}
	var show struct {
		ModelInfo map[string]any `json:"model_info"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&show); err != nil {
		return 0, fmt.Errorf("rag: show %s: %w", model, err)
	}
	for k, v := range show.ModelInfo {
		if strings.HasSuffix(k, ".context_length") {
			if f, ok := v.(float64); ok {
				n = int(f)
			}
		}
	}
	c.mu.Lock()
	if c.ctxLen == nil {
		c.ctxLen = map[string]int{}
	}
	c.ctxLen[model] = n
	c.mu.Unlock()
	return n, nil
}

// ErrChatModel: rag.chat_model is on no node.
var ErrChatModel = errors.New("chat model unavailable")

// ChatStats are the counts Ollama's last chunk reports.
type ChatStats struct {
	PromptTokens     int `json:"prompt_eval_count"`
	CompletionTokens int `json:"eval_count"`
}

// Chat streams a chat's answer from POST /api/chat, calling onToken with each piece.
func (c *Client) Chat(ctx context.Context, model string, msgs []Message, options map[string]any, onToken func(string) error) (ChatStats, error) {
	resp, err := c.post(ctx, "/api/chat", map[string]any{"model": model, "messages": msgs, "stream": true, "options": options})
	if err != nil {
		return ChatStats{}, fmt.Errorf("rag: chat with %s: %w", model, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return ChatStats{}, fmt.Errorf("%w: the chat model %s (rag.chat_model) is on no node: run `ollama pull %s` (%s)",
			ErrChatModel, model, strings.TrimSuffix(model, ":latest"), apiError(resp))
	}
	if resp.StatusCode != http.StatusOK {
		return ChatStats{}, fmt.Errorf("rag: chat with %s: %s: %s", model, resp.Status, apiError(resp))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var chunk struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			Done  bool   `json:"done"`
			Error string `json:"error"`
			ChatStats
		}
		if err := json.Unmarshal(sc.Bytes(), &chunk); err != nil {
			return ChatStats{}, fmt.Errorf("rag: chat with %s: bad stream line: %w", model, err)
		}
		if chunk.Error != "" {
			return ChatStats{}, fmt.Errorf("rag: chat with %s: %s", model, chunk.Error)
		}
		if chunk.Message.Content != "" {
			if err := onToken(chunk.Message.Content); err != nil {
				return ChatStats{}, err
			}
		}
		if chunk.Done {
			return chunk.ChatStats, nil
		}
	}
	if err := sc.Err(); err != nil {
		return ChatStats{}, fmt.Errorf("rag: chat with %s: %w", model, err)
	}
	return ChatStats{}, fmt.Errorf("rag: chat with %s: the stream ended before its last chunk", model)
}
