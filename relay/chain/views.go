package chain

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hearthlab/hearth/relay/auth"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/tunnel"
)

// ChannelView is one channel in /admin/v1/channels and `hearth channel list`.
type ChannelView struct {
	Name        string    `json:"name"`
	Type        string    `json:"type"`
	Priority    int       `json:"priority"`
	State       string    `json:"state"` // closed, open, half-open
	Keys        []KeyView `json:"keys,omitempty"`
	Models      []string  `json:"models"`
	Requests    int       `json:"requests"`
	SuccessRate float64   `json:"success_rate"`
	LatencyMS   int64     `json:"latency_ms"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// KeyView is one key of a channel: its id, never the key.
type KeyView struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Disabled string `json:"disabled,omitempty"`
}

// Channels describes every channel now.
func (c *Chain) Channels() []ChannelView {
	now := time.Now()
	var out []ChannelView
	for _, ch := range c.state.Load().channels {
		ch.mu.Lock()
		v := ChannelView{Name: ch.cfg.Name, Type: ch.kind.Kind(), Priority: ch.cfg.Priority, State: ch.brk.state(now),
			Models: ch.cfg.Models, Requests: ch.ok + ch.fails, LatencyMS: ch.latency.Milliseconds(), LastError: ch.lastErr, LastErrorAt: ch.lastErrAt}
		if v.Requests > 0 {
			v.SuccessRate = float64(ch.ok) / float64(v.Requests)
		}
		ch.mu.Unlock()
		if h := ch.home(); h != nil {
			if m := h.list(); m != nil {
				v.Models = append(v.Models[:0:0], m...)
			}
			if !c.homeOnline() {
				v.State = "offline"
			}
		}
		for _, k := range ch.keys {
			kv := KeyView{ID: k.id, State: k.brk.state(now)}
			if why := k.disabled.Load(); why != nil {
				kv.Disabled = *why
			}
			v.Keys = append(v.Keys, kv)
		}
		out = append(out, v)
	}
	return out
}

func (c *Chain) homeName() string { return strings.TrimSuffix(c.homeHost, tunnel.HomeHost("")) }

// Run probes channels until ctx ends: home's model list through the tunnel, and vendors with
// a probe_model by a cheap real call, each at its probe_interval.
func (c *Chain) Run(ctx context.Context) {
	next := map[*channel]time.Time{}
	wasOnline := false
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		now := time.Now()
		online := c.homeOnline()
		for _, ch := range c.state.Load().channels {
			due := now.After(next[ch])
			h := ch.home()
			if h != nil && online && (due || !wasOnline) {
				// A tunnel that just came back is read at once: traffic returns home.
				if err := h.refresh(ctx); err != nil {
					c.log.Debug("home's model list", "err", err)
				} else {
					ch.brk.success()
				}
				next[ch] = now.Add(ch.cfg.ProbeInterval)
			} else if h == nil && ch.cfg.ProbeModel != "" && due {
				if err := ch.probe(ctx, ch.cfg.ProbeModel); err != nil {
					ch.record(err, 0)
					c.log.Info("channel probe failed", "channel", ch.cfg.Name, "err", err)
				} else {
					ch.brk.success()
				}
				next[ch] = now.Add(ch.cfg.ProbeInterval)
			}
		}
		wasOnline = online
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Test makes one real call on the named channel, for `hearth channel test`.
func (c *Chain) Test(ctx context.Context, name string) (time.Duration, error) {
	for _, ch := range c.state.Load().channels {
		if ch.cfg.Name == name {
			start := time.Now()
			if h := ch.home(); h != nil {
				err := h.refresh(ctx)
				return time.Since(start), err
			}
			err := ch.probe(ctx, ch.testModel())
			return time.Since(start), err
		}
	}
	return 0, errUnknownChannel(name)
}

type errUnknownChannel string

func (e errUnknownChannel) Error() string { return "no channel named " + string(e) }

// Models is GET /v1/models: home's models and the models vendors serve by name.
func (c *Chain) Models(w http.ResponseWriter, r *http.Request) {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	seen := map[string]bool{}
	data := []model{}
	add := func(id, owner string) {
		if !seen[id] && !strings.ContainsAny(id, "*?[") {
			seen[id] = true
			data = append(data, model{ID: id, Object: "model", OwnedBy: owner})
		}
	}
	tok, _ := auth.TokenFrom(r.Context())
	for _, ch := range c.state.Load().channels {
		var names []string
		if h := ch.home(); h != nil {
			if c.homeOnline() {
				names = h.list()
				sort.Strings(names)
			}
		} else {
			names = append(names, ch.cfg.Models...)
		}
		for name := range ch.cfg.Map {
			names = append(names, name)
		}
		for _, n := range names {
			if tokens.Allows(tok, n) {
				add(n, ch.cfg.Name)
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
