package chain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/modelname"
	"github.com/hearthlab/hearth/relay/count"
)

// Channel is what one kind of channel (the config's type: home, openai, anthropic, ollama)
// does its own way: how it sends an attempt upstream and how it answers the client from what
// came back. The kind is chosen once, when the config loads (kinds), as Caddy's reverse proxy
// loads its transport; what every kind shares (breakers, keys, statistics) is channel's.
type Channel interface {
	// Kind is the config's type.
	Kind() string
	// send makes one attempt of call with key k (nil for a kind without keys).
	send(ctx context.Context, call *upstreamCall, k *channelKey) (*http.Response, error)
	// answer writes a successful attempt's resp (body read through body) to the client in its
	// dialect, naming the model report, and returns the usage seen.
	answer(w http.ResponseWriter, resp *http.Response, body io.Reader, req *chatRequest, report string) count.Usage
}

// keyless is a Channel that may have no key (an Ollama on a LAN): it then gets one empty key,
// so that it has a breaker per key like the others.
type keyless interface {
	Channel
	keyless()
}

// kinds builds each config type's Channel; home reaches the cluster through the tunnel.
var kinds = map[string]func(cfg config.Channel, home Home, homeHost string) Channel{
	"home":      func(cfg config.Channel, home Home, homeHost string) Channel { return newHomeChannel(home, homeHost) },
	"openai":    func(cfg config.Channel, _ Home, _ string) Channel { return newOpenAIChannel(cfg) },
	"anthropic": func(cfg config.Channel, _ Home, _ string) Channel { return newAnthropicChannel(cfg) },
	"ollama":    func(cfg config.Channel, _ Home, _ string) Channel { return newOllamaChannel(cfg) },
}

// channel is one upstream of the chain: home through the tunnel, or a vendor API.
type channel struct {
	cfg  config.Channel
	kind Channel
	keys []*channelKey
	next atomic.Uint32
	brk  *breaker

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

// newChannel builds the channel of cfg, of the kind its type names (config validation has
// refused any other; an unknown one is taken as openai, the most common).
func newChannel(cfg config.Channel, home Home, homeHost string) *channel {
	mk, ok := kinds[cfg.Type]
	if !ok {
		mk = kinds["openai"]
	}
	c := &channel{cfg: cfg, kind: mk(cfg, home, homeHost), brk: newBreaker()}
	if c.home() != nil {
		return c // home has no keys: the cluster credential travels in the tunnel
	}
	for i, k := range cfg.Keys {
		c.keys = append(c.keys, &channelKey{id: fmt.Sprintf("%s#%d", cfg.Name, i+1), secret: k, brk: newBreaker()})
	}
	if _, ok := c.kind.(keyless); ok && len(c.keys) == 0 {
		c.keys = append(c.keys, &channelKey{id: cfg.Name, brk: newBreaker()})
	}
	return c
}

// home is the channel's home kind, or nil for a vendor.
func (c *channel) home() *homeChannel {
	h, _ := c.kind.(*homeChannel)
	return h
}

// vendorClient is the HTTP client of a vendor channel: vendors are on the internet.
func vendorClient(cfg config.Channel) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment, // honour the VPS's proxy
		DialContext:         (&net.Dialer{Timeout: cfg.Timeouts.Connect, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: cfg.Timeouts.Connect,
		// No ResponseHeaderTimeout: a non-streamed answer sends its headers only when it is
		// whole, so each attempt bounds its own wait (timeouts.first_byte or .answer).
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}}
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
	if h := c.home(); h != nil {
		if len(c.cfg.Models) > 0 && !modelname.MatchAny(c.cfg.Models, model) {
			return "", false
		}
		return model, h.has(model)
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

// restingFor is how long until the first of the channel's rate-limited keys may be called
// again; 0 when none rests on a vendor's Retry-After (disabled or open instead).
func (c *channel) restingFor(now time.Time) time.Duration {
	var soonest time.Duration
	for _, k := range c.keys {
		if d := k.brk.restingFor(now); d > 0 && k.disabled.Load() == nil && (soonest == 0 || d < soonest) {
			soonest = d
		}
	}
	return soonest
}

// everyKeyResting is restingFor when no usable key is left that does not rest (0 otherwise):
// the wait to tell a client after the last key's 429.
func (c *channel) everyKeyResting(now time.Time) time.Duration {
	for _, k := range c.keys {
		if k.disabled.Load() == nil && k.brk.restingFor(now) == 0 {
			return 0
		}
	}
	return c.restingFor(now)
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

// clientError is a failure caused by the request itself: no other channel would do better.
type clientError struct{ error }

func (e *clientError) Unwrap() error { return e.error }

// testModel is the model `hearth channel test` asks for: probe_model, or else the first the
// channel serves (a test is one call of one token; it should not need a probe configured).
func (c *channel) testModel() string {
	if c.cfg.ProbeModel != "" {
		return c.cfg.ProbeModel
	}
	if len(c.cfg.Models) > 0 {
		return c.cfg.Models[0]
	}
	targets := make([]string, 0, len(c.cfg.Map))
	for _, m := range c.cfg.Map {
		targets = append(targets, m)
	}
	slices.Sort(targets)
	if len(targets) > 0 {
		return targets[0]
	}
	return ""
}

// probe makes one cheap real call for model.
func (c *channel) probe(ctx context.Context, model string) error {
	if model == "" {
		return errors.New("it has no probe_model, models or map to test with: set probe_model in the relay config")
	}
	k := c.pickKey(time.Now())
	if k == nil {
		return errors.New("every key of this channel is disabled or cooling down")
	}
	body := []byte(`{"model":` + strconv.Quote(model) + `,"max_tokens":1,"messages":[{"role":"user","content":"ping"}]}`)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeouts.FirstByte)
	defer cancel()
	resp, err := c.kind.send(ctx, &upstreamCall{path: "/v1/chat/completions", body: body, model: model}, k)
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
