package chain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/hearthlab/hearth/internal/apierror"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/relay/count"
	"github.com/hearthlab/hearth/relay/translate/anthropic"
)

// anthropicChannel is Anthropic's Messages API: requests and answers translated from and to
// the OpenAI chat dialect (relay/translate/anthropic).
type anthropicChannel struct {
	cfg    config.Channel
	client *http.Client
}

var _ Channel = (*anthropicChannel)(nil)

func newAnthropicChannel(cfg config.Channel) *anthropicChannel {
	return &anthropicChannel{cfg: cfg, client: vendorClient(cfg)}
}

func (a *anthropicChannel) Kind() string { return "anthropic" }

func (a *anthropicChannel) send(ctx context.Context, call *upstreamCall, k *channelKey) (*http.Response, error) {
	body, _, _, err := anthropic.Request(call.body, call.model)
	if errors.Is(err, anthropic.ErrUnsupported) {
		// Not the client's mistake, nor the channel's: another kind of channel may take it.
		return nil, &errMoveOn{fmt.Errorf("cannot take this request: %s: %w", strings.TrimPrefix(err.Error(), "relay: "), anthropic.ErrUnsupported)}
	}
	if err != nil {
		return nil, &clientError{fmt.Errorf("cannot translate the request for Anthropic: %w", err)}
	}
	req, err := vendorRequest(ctx, a.cfg, "/v1/messages", body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("x-api-key", k.secret)
	req.Header.Set("anthropic-version", "2023-06-01")
	return a.client.Do(req)
}

// answer translates Anthropic's answer (whole, streamed or an error) to the client's dialect.
func (a *anthropicChannel) answer(w http.ResponseWriter, resp *http.Response, body io.Reader, req *chatRequest, report string) count.Usage {
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(body, 1<<20))
		if req.dialect == apierror.Ollama {
			writeVendorError(w, resp.StatusCode, b)
			return count.Usage{}
		}
		return writeRaw(w, resp.StatusCode, "application/json", anthropic.ErrorBody(resp.StatusCode, b))
	}
	if req.stream {
		s := anthropic.NewStream(io.NopCloser(body), report, true)
		if req.dialect == apierror.Ollama {
			return answerOllama(w, s, req, s.Usage)
		}
		translated := &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"text/event-stream"}}}
		return orUsage(relayOpenAI(w, translated, s, req, report), s.Usage())
	}
	b, _ := io.ReadAll(io.LimitReader(body, 64<<20))
	out, u, err := anthropic.Response(b, report)
	if err != nil {
		const msg = "the vendor's answer could not be translated"
		if req.dialect == apierror.Ollama {
			apierror.Write(w, apierror.Ollama, &apierror.Error{Status: http.StatusBadGateway, Code: "bad_upstream_answer", Message: msg})
			return count.Usage{}
		}
		return writeRaw(w, http.StatusBadGateway, "application/json", []byte(`{"error":{"message":"`+msg+`","type":"server_error"}}`))
	}
	if req.dialect == apierror.Ollama {
		return answerOllama(w, bytes.NewReader(out), req, func() count.Usage { return u })
	}
	writeRaw(w, http.StatusOK, "application/json", out)
	return u
}
