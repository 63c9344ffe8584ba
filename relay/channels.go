package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/modelname"
	"github.com/hearthlab/hearth/relay/translate/anthropic"
	"github.com/hearthlab/hearth/relay/tunnel"
)

// channel is one upstream of the chain: home through the tunnel, or a vendor API.
type channel struct {
	cfg    config.Channel
	client *http.Client // vendors; home goes through the tunnel
	keys   []*channelKey
	next   atomic.Uint32
	brk    *breaker

	homeModels atomic.Pointer[map[string]bool] // home: the cluster's models, from its /api/tags
	homeRead   atomic.Int64                    // home: when homeModels was last read (unix nanos)

	mu        sync.Mutex
	ok, fails int
	lastErr   string
	lastErrAt time.Time
	latency   time.Duration // EWMA of time to first byte
}

// channelKey is one API key of a channel, with its own breaker; a key that answers 401 is
// disabled until the configuration is reloaded.
type channelKey struct {
	id       string // "deepseek#2": never the key itself
	secret   string
	brk      *breaker
	disabled atomic.Pointer[string] // why, when disabled
}

func newChannel(cfg config.Channel) *channel {
	c := &channel{cfg: cfg, brk: newBreaker()}
	if cfg.Type != "home" {
		c.client = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment, // vendors are on the internet: honour the VPS's proxy
			DialContext:         (&net.Dialer{Timeout: cfg.Timeouts.Connect, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: cfg.Timeouts.Connect,
			// No ResponseHeaderTimeout: a non-streamed answer sends its headers only when it is
			// whole, so each attempt bounds its own wait (timeouts.first_byte or .answer).
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		}}
	}
	for i, k := range cfg.Keys {
		c.keys = append(c.keys, &channelKey{id: fmt.Sprintf("%s#%d", cfg.Name, i+1), secret: k, brk: newBreaker()})
	}
	if cfg.Type == "ollama" && len(c.keys) == 0 { // a LAN or private Ollama needs no key
		c.keys = append(c.keys, &channelKey{id: cfg.Name, brk: newBreaker()})
	}
	return c
}

// serves reports whether the channel serves model, and under which name upstream: the
// mapped name, or the model as the client named it.
func (c *channel) serves(model string) (string, bool) {
	if m, ok := c.cfg.Map[model]; ok {
		return m, true
	}
	if m, ok := c.mappedNormalized(model); ok {
		return m, true
	}
	if c.cfg.Type == "home" {
		if len(c.cfg.Models) > 0 && !modelname.MatchAny(c.cfg.Models, model) {
			return "", false
		}
		models := c.homeModels.Load()
		return model, models != nil && (*models)[modelname.Normalize(model)]
	}
	return model, modelname.MatchAny(c.cfg.Models, model)
}

// mappedNormalized finds a map entry whose name is model's under modelname.Normalize
// ("qwen3" is "qwen3:latest"); the first in name order, should two normalise alike.
func (c *channel) mappedNormalized(model string) (string, bool) {
	n := modelname.Normalize(model)
	var keys []string
	for k := range c.cfg.Map {
		if modelname.Normalize(k) == n {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "", false
	}
	slices.Sort(keys)
	return c.cfg.Map[keys[0]], true
}

// pickKey takes the next usable key in turn (nil when every key is disabled or open).
func (c *channel) pickKey(now time.Time) *channelKey {
	n := len(c.keys)
	start := int(c.next.Add(1))
	for i := 0; i < n; i++ {
		k := c.keys[(start+i)%n]
		if k.disabled.Load() == nil && k.brk.allow(now) {
			return k
		}
	}
	return nil
}

// record keeps what the admin views show.
func (c *channel) record(err error, firstByte time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.fails++
		c.lastErr = err.Error()
		c.lastErrAt = time.Now()
		return
	}
	c.ok++
	if firstByte > 0 {
		if c.latency == 0 {
			c.latency = firstByte
		} else {
			c.latency = (4*c.latency + firstByte) / 5
		}
	}
}

// upstreamCall is one attempt's request in OpenAI chat form (home on other routes forwards
// the client's bytes as they are).
type upstreamCall struct {
	path   string // the client's path
	query  string
	header http.Header
	body   []byte // the client's body, or its OpenAI form for a vendor
	model  string // the upstream model name
	stream bool
}

// send makes one attempt on this channel with key k (nil for home).
func (c *channel) send(ctx context.Context, t *tunnel.Server, homeHost string, call *upstreamCall, k *channelKey) (*http.Response, error) {
	switch c.cfg.Type {
	case "home":
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, call.path, bytes.NewReader(call.body))
		if err != nil {
			return nil, err
		}
		req.URL.RawQuery = call.query
		req.Header = call.header.Clone() // auth.Require already took the relay's token off
		req.ContentLength = int64(len(call.body))
		return t.Do(req, homeHost)
	case "anthropic":
		body, _, _, err := anthropic.Request(call.body, call.model)
		if errors.Is(err, anthropic.ErrUnsupported) {
			// Not the client's mistake, nor the channel's: another kind of channel may take it.
			return nil, &errMoveOn{fmt.Errorf("cannot take this request: %s: %w", strings.TrimPrefix(err.Error(), "relay: "), anthropic.ErrUnsupported)}
		}
		if err != nil {
			return nil, &clientError{fmt.Errorf("cannot translate the request for Anthropic: %w", err)}
		}
		req, err := c.newRequest(ctx, "/v1/messages", body)
		if err != nil {
			return nil, err
		}
		req.Header.Set("x-api-key", k.secret)
		req.Header.Set("anthropic-version", "2023-06-01")
		return c.client.Do(req)
	default: // openai, ollama: the OpenAI chat completions API
		body, err := openAIBody(call.body, call.model, call.stream)
		if err != nil {
			return nil, &clientError{err}
		}
		p := "/chat/completions"
		if c.cfg.Type == "ollama" {
			p = "/v1/chat/completions"
		}
		req, err := c.newRequest(ctx, p, body)
		if err != nil {
			return nil, err
		}
		if k != nil && k.secret != "" {
			req.Header.Set("Authorization", "Bearer "+k.secret)
		}
		return c.client.Do(req)
	}
}

func (c *channel) newRequest(ctx context.Context, p string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.cfg.BaseURL, "/")+p, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range c.cfg.Headers {
		req.Header.Set(k, v)
	}
	return req, nil
}

// clientError is a failure caused by the request itself: no other channel would do better.
type clientError struct{ error }

func (e *clientError) Unwrap() error { return e.error }

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

// refreshHomeModels reads the home cluster's models through the tunnel.
func (c *channel) refreshHomeModels(ctx context.Context, t *tunnel.Server, homeHost string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "/api/tags", nil)
	if err != nil {
		return err
	}
	resp, err := t.Do(req, homeHost)
	if err != nil {
		return err // keep the last list: home is offline, not empty
	}
	defer resp.Body.Close()
	var tags struct {
		Models []struct {
			Name string `json:"name"`
		} `json:"models"`
	}
	if resp.StatusCode != http.StatusOK {
		c.homeModels.Store(&map[string]bool{})
		return fmt.Errorf("home answered GET /api/tags with %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&tags); err != nil {
		return fmt.Errorf("home's model list: %w", err)
	}
	models := map[string]bool{}
	for _, m := range tags.Models {
		models[modelname.Normalize(m.Name)] = true
	}
	c.homeModels.Store(&models)
	c.homeRead.Store(time.Now().UnixNano())
	return nil
}

// probe makes one cheap real call with the channel's probe model.
func (c *channel) probe(ctx context.Context) error {
	if c.cfg.ProbeModel == "" {
		return errors.New("no probe_model configured for this channel")
	}
	k := c.pickKey(time.Now())
	if k == nil {
		return errors.New("every key of this channel is disabled or cooling down")
	}
	body := []byte(`{"model":` + strconv.Quote(c.cfg.ProbeModel) + `,"max_tokens":1,"messages":[{"role":"user","content":"ping"}]}`)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeouts.FirstByte)
	defer cancel()
	resp, err := c.send(ctx, nil, "", &upstreamCall{path: "/v1/chat/completions", body: body, model: c.cfg.ProbeModel}, k)
	if err != nil {
		k.brk.failure(time.Now())
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("probe answered %s", resp.Status)
		if resp.StatusCode == http.StatusUnauthorized {
			c.disableKey(k, "the vendor answered 401 Unauthorized: check the key")
		}
		k.brk.failure(time.Now())
		return err
	}
	k.brk.success()
	return nil
}

func (c *channel) disableKey(k *channelKey, why string) {
	k.disabled.Store(&why)
}
