package chain

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/hearthlab/hearth/internal/apierror"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/relay/count"
)

// openAIChannel is any OpenAI-compatible vendor (DeepSeek, Qwen, OpenAI, OpenRouter, ...):
// POST {base_url}/chat/completions with a Bearer key.
type openAIChannel struct {
	cfg    config.Channel
	client *http.Client
	path   string // the chat completions path under base_url
}

var _ Channel = (*openAIChannel)(nil)

func newOpenAIChannel(cfg config.Channel) *openAIChannel {
	return &openAIChannel{cfg: cfg, client: vendorClient(cfg), path: "/chat/completions"}
}

func (o *openAIChannel) Kind() string { return "openai" }

func (o *openAIChannel) send(ctx context.Context, call *upstreamCall, k *channelKey) (*http.Response, error) {
	body, err := openAIBody(call.body, call.model, call.stream)
	if err != nil {
		return nil, &clientError{err}
	}
	req, err := vendorRequest(ctx, o.cfg, o.path, body)
	if err != nil {
		return nil, err
	}
	if k != nil && k.secret != "" {
		req.Header.Set("Authorization", "Bearer "+k.secret)
	}
	return o.client.Do(req)
}

// answer passes an OpenAI answer on to a /v1 client, or translates it for an /api one.
func (o *openAIChannel) answer(w http.ResponseWriter, resp *http.Response, body io.Reader, req *chatRequest, report string) count.Usage {
	if req.dialect == apierror.Ollama {
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(body, 1<<20))
			writeVendorError(w, resp.StatusCode, b)
			u, text := openAIUsage(b)
			return estimateIfMissing(u, req, text) // as relayOpenAI counts a /v1 error answer
		}
		return answerOllama(w, body, req, nil)
	}
	return relayOpenAI(w, resp, body, req, report)
}

// vendorRequest is a JSON POST to path under cfg's base_url, with cfg's extra headers.
func vendorRequest(ctx context.Context, cfg config.Channel, p string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(cfg.BaseURL, "/")+p, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range cfg.Headers {
		req.Header.Set(k, v)
	}
	return req, nil
}

// openAIBody sets the upstream model and, for streams, asks for the usage chunk, leaving every
// other field as the client wrote it.
func openAIBody(body []byte, model string, stream bool) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, fmt.Errorf("request body is not a JSON object: %w", err)
	}
	m, _ := json.Marshal(model)
	fields["model"] = m
	if stream {
		var opts map[string]json.RawMessage
		_ = json.Unmarshal(fields["stream_options"], &opts)
		if opts == nil {
			opts = map[string]json.RawMessage{}
		}
		opts["include_usage"] = json.RawMessage("true")
		fields["stream_options"], _ = json.Marshal(opts)
	}
	return json.Marshal(fields)
}
