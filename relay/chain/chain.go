// Package chain is the relay's channel chain: for a chat request's model, the channels that
// serve it (home through the tunnel, then vendors) by priority and weight, then the route
// fallbacks, each with its circuit breakers, keys and probes; it moves on before the first
// byte and never after. A Channel is one kind of upstream (home.go, openai.go, anthropic.go,
// ollama.go), chosen once when the config loads. The chain reaches the tunnel, the token
// check and the usage log through small interfaces (Home, ModelGate, UsageLog), so that its
// tests need none of them. Only the relay root imports it.
package chain

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hearthlab/hearth/internal/apierror"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/logging"
	"github.com/hearthlab/hearth/internal/modelname"
	"github.com/hearthlab/hearth/relay/auth"
	"github.com/hearthlab/hearth/relay/count"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/translate/anthropic"
	"github.com/hearthlab/hearth/relay/translate/ollama"
	"github.com/hearthlab/hearth/relay/tunnel"
	"github.com/hearthlab/hearth/relay/usage"
)

// Chain serves a chat request from the first channel that can: the channels that serve the
// model by priority (then weighted at random), then the route fallbacks with their mapped
// models. It moves on when a channel cannot serve — tunnel down, connection refused, 429 or
// 5xx, no first byte in time, home's model_unavailable — and never after the first byte has
// reached the client.
type Chain struct {
	state    atomic.Pointer[chainState]
	tunnel   Home // nil: no tunnel (tests of vendors only)
	homeHost string
	gate     ModelGate
	usage    UsageLog
	log      *slog.Logger
}

// ErrHomeOffline: no agent holds the home channel's tunnel now.
var ErrHomeOffline = errors.New("home is offline")

// ModelGate is what the chain needs of the relay's auth: *auth.Auth.
type ModelGate interface {
	// CheckModel answers the refusal and returns false when r's token may not use model.
	CheckModel(w http.ResponseWriter, r *http.Request, model string) bool
}

// UsageLog is what the chain needs of the usage log: *usage.Log.
type UsageLog interface {
	// Reserve checks tok's quotas for a request of about estimatedTokens and holds them until
	// settle gets what the request used.
	Reserve(tok tokens.Token, model string, estimatedTokens int) (settle func(actual count.Usage), err error)
	// Record queues a request's record, off the request path.
	Record(r usage.Record)
}

var (
	_ ModelGate = (*auth.Auth)(nil)
	_ UsageLog  = (*usage.Log)(nil)
)

type chainState struct {
	channels []*channel
	routes   []config.Route
}

// link is one channel to try and the model to ask it for.
type link struct {
	ch    *channel
	model string
}

// New builds the chain from the relay config: home through tun (nil: no tunnel), the token's
// model check by gate, quotas and records by ul. A nil logger discards.
func New(cfg config.Relay, tun Home, gate ModelGate, ul UsageLog, logger *slog.Logger) *Chain {
	c := &Chain{tunnel: tun, homeHost: tunnel.HomeHost(cfg.Tunnel.Home), gate: gate, usage: ul, log: logging.OrDiscard(logger)}
	c.state.Store(c.buildState(cfg, nil))
	return c
}

// buildState makes the channels of cfg, keeping the live ones (breakers, keys, statistics)
// of old whose configuration did not change.
func (c *Chain) buildState(cfg config.Relay, old *chainState) *chainState {
	st := &chainState{routes: cfg.Routes}
	for _, cc := range cfg.Channels {
		var ch *channel
		if old != nil {
			for _, o := range old.channels {
				if reflect.DeepEqual(o.cfg, cc) {
					ch = o
				}
			}
		}
		if ch == nil {
			ch = newChannel(cc, c.tunnel, c.homeHost)
		}
		st.channels = append(st.channels, ch)
	}
	return st
}

// Reload swaps in the channels of cfg; requests in flight finish on the channels they had.
func (c *Chain) Reload(cfg config.Relay) {
	old := c.state.Load()
	st := c.buildState(cfg, old)
	for _, ch := range st.channels {
		if h := ch.home(); h != nil && h.models.Load() == nil {
			_ = h.refresh(context.Background())
		}
	}
	c.state.Store(st)
	names := make([]string, 0, len(st.channels))
	for _, ch := range st.channels {
		names = append(names, ch.cfg.Name)
	}
	c.log.Info("channels reloaded", "channels", names, "routes", len(st.routes))
}

// hasHome: a home channel is configured.
func (c *Chain) hasHome() bool {
	for _, ch := range c.state.Load().channels {
		if ch.home() != nil {
			return true
		}
	}
	return false
}

// refreshHomeIfMissing re-reads home's model list when home is online but not among links
// and the list is more than a second old: the model may have just been pulled at home, or
// the tunnel just came up. It reports whether it read.
func (c *Chain) refreshHomeIfMissing(ctx context.Context, links []link) bool {
	if !c.homeOnline() {
		return false
	}
	for _, l := range links {
		if l.ch.home() != nil {
			return false
		}
	}
	for _, ch := range c.state.Load().channels {
		if h := ch.home(); h != nil && time.Since(time.Unix(0, h.read.Load())) > time.Second {
			return h.refresh(ctx) == nil
		}
	}
	return false
}

// homeOnline: an agent holds the home channel's tunnel now.
func (c *Chain) homeOnline() bool { return c.tunnel != nil && c.tunnel.Channel(c.homeName()) }

// links lists what to try for model, in order.
func (c *Chain) links(model string) []link {
	st := c.state.Load()
	var direct []link
	for _, ch := range st.channels {
		if m, ok := ch.serves(model); ok {
			direct = append(direct, link{ch, m})
		}
	}
	order(direct)
	out := direct
	for _, r := range st.routes {
		if !modelname.Match(r.Model, model) {
			continue
		}
		for _, f := range r.Fallback {
			name, m, _ := strings.Cut(f, "/")
			for _, ch := range st.channels {
				if ch.cfg.Name == name && !contains(out, ch, m) {
					out = append(out, link{ch, m})
				}
			}
		}
		break // the first matching route decides
	}
	return out
}

func contains(ls []link, ch *channel, model string) bool {
	for _, l := range ls {
		if l.ch == ch && l.model == model {
			return true
		}
	}
	return false
}

// order sorts by priority, and within one priority draws by weight.
func order(ls []link) {
	keys := make([]float64, len(ls))
	for i, l := range ls {
		// Efraimidis–Spirakis: a weighted random order from one draw per item.
		keys[i] = -rand.ExpFloat64() / float64(max(1, l.ch.cfg.Weight))
	}
	idx := make([]int, len(ls))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		la, lb := ls[idx[a]], ls[idx[b]]
		if la.ch.cfg.Priority != lb.ch.cfg.Priority {
			return la.ch.cfg.Priority < lb.ch.cfg.Priority
		}
		return keys[idx[a]] > keys[idx[b]]
	})
	sorted := make([]link, len(ls))
	for i, j := range idx {
		sorted[i] = ls[j]
	}
	copy(ls, sorted)
}

// chatRequest is what the chain reads from the client's request.
type chatRequest struct {
	dialect      apierror.Dialect
	path         string
	body         []byte // as the client sent it
	openai       []byte // its OpenAI chat form, for vendors
	model        string
	stream       bool
	includeUsage bool // the client asked for the usage chunk
	realModel    bool // the client wants to see the model that served it
	// vendorErr says why no vendor can take this Ollama request (a suffix, a format only
	// Ollama knows, nothing to generate: ollama.ErrLoadOnly); home still can.
	vendorErr error
}

// ServeHTTP serves /v1/chat/completions, /api/chat and /api/generate.
func (c *Chain) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req, apiErr := readChat(r)
	if apiErr != nil {
		apierror.Write(w, apierror.DialectOf(r.URL.Path), apiErr)
		return
	}
	if !c.gate.CheckModel(w, r, req.model) {
		return
	}
	tok, _ := auth.TokenFrom(r.Context())
	settle, err := c.usage.Reserve(tok, req.model, count.Estimate(string(req.body)))
	if err != nil {
		apierror.Write(w, req.dialect, usage.Refusal(err))
		return
	}
	rec := usage.Record{Time: start, TokenID: tok.ID, TokenName: tok.Name, RequestedModel: req.model, Stream: req.stream}
	used := c.serve(w, r, req, &rec)
	rec.Duration = time.Since(start)
	settle(used)
	rec.PromptTokens, rec.CompletionTokens, rec.Estimated = used.PromptTokens, used.CompletionTokens, used.Estimated
	if rec.Status != 0 {
		c.usage.Record(rec)
	}
}

// serve walks the links; it fills rec and returns the usage of the answer given.
func (c *Chain) serve(w http.ResponseWriter, r *http.Request, req *chatRequest, rec *usage.Record) count.Usage {
	links := c.links(req.model)
	if c.refreshHomeIfMissing(r.Context(), links) {
		links = c.links(req.model)
	}
	var tried, why []string
	homeOffline := false
	var rest time.Duration // the soonest a rate-limited vendor key may be called again
	for _, l := range links {
		if l.ch.home() == nil && req.vendorErr != nil {
			if errors.Is(req.vendorErr, ollama.ErrLoadOnly) {
				// Nothing to generate: a vendor has nothing to load, and the model is served.
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("X-Hearth-Channel", l.ch.cfg.Name)
				_, _ = w.Write(ollama.LoadResponse(req.path, req.model))
				rec.Channel, rec.ServedModel, rec.Status = l.ch.cfg.Name, l.model, http.StatusOK
				return count.Usage{}
			}
			why = append(why, l.ch.cfg.Name+": "+strings.TrimPrefix(req.vendorErr.Error(), "relay: "))
			continue
		}
		now := time.Now()
		if !l.ch.brk.allow(now) {
			why = append(why, l.ch.cfg.Name+": cooling down after failures")
			continue
		}
		var k *channelKey
		if l.ch.home() == nil {
			if k = l.ch.pickKey(now); k == nil {
				l.ch.brk.release()
				if d := l.ch.restingFor(now); d > 0 {
					why = append(why, fmt.Sprintf("%s: rate-limited by the vendor for another %s (its Retry-After)", l.ch.cfg.Name, d.Round(time.Second)))
					if rest == 0 || d < rest {
						rest = d
					}
					continue
				}
				why = append(why, l.ch.cfg.Name+": every key disabled or cooling down")
				continue
			}
		} else if !c.homeOnline() {
			l.ch.brk.release()
			homeOffline = true
			why = append(why, l.ch.cfg.Name+": "+ErrHomeOffline.Error())
			continue
		}
		used, done, err := c.attempt(w, r, req, l, k, rec, tried)
		if done {
			return used
		}
		if r.Context().Err() != nil {
			rec.Status = 499
			return count.Usage{}
		}
		if d := l.ch.everyKeyResting(time.Now()); d > 0 && (rest == 0 || d < rest) {
			rest = d
		}
		c.log.Info("channel could not serve; moving on", "channel", l.ch.cfg.Name, "model", l.model, "err", err)
		tried = append(tried, l.ch.cfg.Name)
		why = append(why, l.ch.cfg.Name+": "+err.Error())
	}
	msg := fmt.Sprintf("no channel could serve %q", req.model)
	status, code := http.StatusServiceUnavailable, "model_unavailable"
	switch {
	case (len(links) == 0 || homeOffline && len(why) == 1) && c.hasHome() && !c.homeOnline():
		code = "home_offline"
		msg = fmt.Sprintf("home is offline: no agent holds the tunnel %q to this relay right now, and no other channel serves %q; check `hearth status` at home", c.homeName(), req.model)
	case len(links) == 0:
		status, code = http.StatusNotFound, "model_not_found"
		msg = fmt.Sprintf("model %q not found: home does not have it and no channel or route serves it", req.model)
	default:
		msg += ": " + strings.Join(why, "; ")
	}
	rec.Status = status
	apierror.Write(w, req.dialect, &apierror.Error{Status: status, Code: code, RetryAfter: retryAfter(status, rest), Message: msg})
	return count.Usage{}
}

// retryAfter is the client's wait after a 503: until a rate-limited vendor key may be called
// again when one rests (asking sooner would fail the same way), else 10s.
func retryAfter(status int, rest time.Duration) int {
	if status != http.StatusServiceUnavailable {
		return 0
	}
	if rest > 0 {
		return max(int((rest+time.Second-1)/time.Second), 1)
	}
	return 10
}

// errMoveOn wraps a channel failure that another channel may not share.
type errMoveOn struct{ error }

func (e *errMoveOn) Unwrap() error { return e.error }

// errKeyRefused is a vendor's 401: the key, not the channel, is at fault.
var errKeyRefused = errors.New("answered 401 Unauthorized: the key is wrong or revoked")

// attemptWait is how long an attempt may wait for its first byte, and the error that says
// it waited in vain. A stream's first chunk comes soon after the model is loaded; a
// non-streamed answer's headers only once the whole answer is generated (and home's after a
// cold load from NFS), so it gets timeouts.answer for all of it.
func attemptWait(t config.ChannelTimeouts, stream bool) (time.Duration, error) {
	if stream {
		return t.FirstByte, fmt.Errorf("no first byte within timeouts.first_byte %s", t.FirstByte)
	}
	return t.Answer, fmt.Errorf("no answer within timeouts.answer %s", t.Answer)
}

// attempt tries one link. done means the client got an answer (good or not): stop here.
func (c *Chain) attempt(w http.ResponseWriter, r *http.Request, req *chatRequest, l link, k *channelKey, rec *usage.Record, tried []string) (count.Usage, bool, error) {
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	// One timer cancels the attempt: the first byte's (or the whole answer's) wait, then for
	// a stream the idle gap between chunks.
	wait, errWait := attemptWait(l.ch.cfg.Timeouts, req.stream)
	timer := time.AfterFunc(wait, func() { cancel(errWait) })
	defer timer.Stop()
	sent := time.Now()
	call := c.upstreamCall(r, req, l)
	resp, err := l.ch.kind.send(ctx, call, k)
	if err == nil {
		err = moveOnStatus(l.ch, resp)
	}
	var br *bufio.Reader
	if err == nil {
		br = bufio.NewReaderSize(resp.Body, 32<<10)
		if _, perr := br.Peek(1); perr != nil && !errors.Is(perr, io.EOF) {
			err = fmt.Errorf("reading the first byte: %w", perr)
		}
	}
	if err != nil && r.Context().Err() == nil && errors.Is(context.Cause(ctx), errWait) {
		err = errWait // the timer's, whatever the transport made of the cancellation
	}
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		var ce *clientError
		if r.Context().Err() != nil || errors.Is(err, anthropic.ErrUnsupported) {
			// The client left, or the request is one this kind of channel cannot take:
			// neither is the channel's or the key's failure.
			l.ch.brk.release()
			if k != nil {
				k.brk.release()
			}
			return count.Usage{}, false, err
		}
		if errors.As(err, &ce) {
			l.ch.brk.release()
			rec.Status = http.StatusBadRequest
			apierror.Write(w, req.dialect, &apierror.Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: ce.Error()})
			return count.Usage{}, true, nil
		}
		c.fail(l, k, err)
		return count.Usage{}, false, err
	}
	defer resp.Body.Close()
	ttft := time.Since(sent)
	l.ch.brk.success()
	if k != nil {
		k.brk.success()
	}
	l.ch.record(nil, ttft)
	rec.Channel, rec.ServedModel, rec.TTFT, rec.Status = l.ch.cfg.Name, l.model, ttft, resp.StatusCode
	rec.FellBackFrom = strings.Join(tried, ",")
	if k != nil {
		rec.KeyID = k.id
	}
	var body io.Reader = br // a whole answer stays within timeouts.answer
	if req.stream {
		body = &idleReader{r: br, timer: timer, idle: l.ch.cfg.Timeouts.Idle}
	}
	h := w.Header()
	h.Set("X-Hearth-Channel", l.ch.cfg.Name)
	h.Set("X-Hearth-Model", l.model)
	return c.answer(w, resp, body, req, l), true, nil
}

// upstreamCall is the request for l: home gets the client's own bytes (with the model
// renamed when a route maps it), vendors the OpenAI chat form.
func (c *Chain) upstreamCall(r *http.Request, req *chatRequest, l link) *upstreamCall {
	call := &upstreamCall{path: r.URL.Path, query: r.URL.RawQuery, header: r.Header, model: l.model, stream: req.stream, body: req.openai}
	if l.ch.home() != nil {
		call.body = req.body
		if l.model != req.model {
			if b, err := renameModel(req.body, l.model); err == nil {
				call.body = b
			}
		}
	}
	return call
}

// moveOnStatus turns an answer another channel may do better than into an error.
func moveOnStatus(ch *channel, resp *http.Response) error {
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		err := fmt.Errorf("answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
		if d := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); resp.StatusCode == http.StatusTooManyRequests && d > 0 {
			return &errRateLimited{error: err, wait: d}
		}
		return &errMoveOn{err}
	case resp.StatusCode == http.StatusUnauthorized && ch.home() == nil:
		return &errMoveOn{errKeyRefused}
	}
	return nil
}

// errRateLimited is a vendor's 429 with a Retry-After: the key rests that long.
type errRateLimited struct {
	error
	wait time.Duration
}

func (e *errRateLimited) Unwrap() error { return e.error }

// maxRetryAfter bounds how long one 429 may rest a key: a vendor's odd value (a day) should
// not take a key out of use until the next reload.
const maxRetryAfter = 15 * time.Minute

// parseRetryAfter reads a Retry-After of seconds or an HTTP date; 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// fail counts a channel failure; a 401 disables the key until the next reload, a 429 with
// Retry-After rests it (or the channel, for home) that long.
func (c *Chain) fail(l link, k *channelKey, err error) {
	now := time.Now()
	l.ch.record(err, 0)
	if l.ch.brk.failure(now) {
		c.log.Warn("channel breaker opened after repeated failures", "channel", l.ch.cfg.Name, "err", err)
	}
	var rl *errRateLimited
	if errors.As(err, &rl) {
		if k != nil {
			k.brk.rest(now.Add(rl.wait))
		} else {
			l.ch.brk.rest(now.Add(rl.wait))
		}
		c.log.Info("channel rate-limited by its vendor; resting as Retry-After asks", "channel", l.ch.cfg.Name, "key", keyID(k), "for", rl.wait.String())
	}
	if k != nil {
		k.brk.failure(now)
		if errors.Is(err, errKeyRefused) { // not a 401 in some error text: a 500 may quote one
			l.ch.disableKey(k, err.Error())
			c.log.Error("channel key disabled until reload", "channel", l.ch.cfg.Name, "key", k.id, "err", err)
		}
	}
}

func keyID(k *channelKey) string {
	if k == nil {
		return ""
	}
	return k.id
}

// idleReader cancels the attempt when the upstream stalls longer than idle between chunks.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
	idle  time.Duration
}

func (i *idleReader) Read(p []byte) (int, error) {
	i.timer.Reset(i.idle)
	return i.r.Read(p)
}

func renameModel(body []byte, model string) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, err
	}
	fields["model"], _ = json.Marshal(model)
	return json.Marshal(fields)
}
