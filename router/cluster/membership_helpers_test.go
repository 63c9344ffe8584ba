package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/router"
)

// waitTimeout is the generous bound for anything gossip has to spread.
const waitTimeout = 15 * time.Second

// memberLocal is a Local the test changes.
type memberLocal struct {
	mu   sync.Mutex
	meta Meta
	inv  router.Inventory
}

func (l *memberLocal) Meta() Meta {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.meta
}

func (l *memberLocal) Inventory() router.Inventory {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inv
}

func (l *memberLocal) set(fn func(*Meta, *router.Inventory)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn(&l.meta, &l.inv)
}

// memberNode is one in-process node: its membership, its local state, its logs and an
// agent API serving its inventory.
type memberNode struct {
	name  string
	m     *Membership
	local *memberLocal
	logs  *logCapture
	api   string
	stop  func() // cancels Run and waits for it
}

type memberOpts struct {
	secret []byte
	join   []string
	inv    router.Inventory
	// lateAPI sets Meta.API after NewMembership, as the agent does.
	lateAPI bool
}

func startMember(t *testing.T, name string, o memberOpts) *memberNode {
	t.Helper()
	var handler atomic.Pointer[http.Handler]
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := handler.Load(); h != nil && r.URL.Path == InventoryPath {
			(*h).ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(api.Close)

	local := &memberLocal{meta: Meta{API: api.URL, Slots: 4, BackendOK: true, StorageOK: true}, inv: o.inv}
	if o.lateAPI {
		local.meta.API = ""
	}
	logs := &logCapture{}
	cfg := Config{Name: name, Bind: "127.0.0.1:0", Join: o.join, Secret: o.secret, Profile: ProfileLocal}
	m, err := NewMembership(cfg, local, slog.New(logs))
	if err != nil {
		t.Fatalf("NewMembership(%s): %v", name, err)
	}
	h := m.InventoryHandler()
	handler.Store(&h)
	local.set(func(meta *Meta, _ *router.Inventory) { meta.API = api.URL })

	stop := hearthtest.Run(t, "membership "+name, m.Run)
	return &memberNode{name: name, m: m, local: local, logs: logs, api: api.URL, stop: stop}
}

func peerNames(m *Membership) []string {
	var names []string
	for _, p := range m.Peers() {
		names = append(names, p.Name)
	}
	return names
}

func peerNamed(m *Membership, name string) (Peer, bool) {
	for _, p := range m.Peers() {
		if p.Name == name {
			return p, true
		}
	}
	return Peer{}, false
}

func seesExactly(m *Membership, names []string) func() bool {
	return func() bool { return slices.Equal(peerNames(m), names) }
}

func testInventory(n, nameLen int) router.Inventory {
	var inv router.Inventory
	for i := range n {
		name := fmt.Sprintf("model-%03d", i)
		name += strings.Repeat("x", max(0, nameLen-len(name)-len(":latest"))) + ":latest"
		raw, _ := json.Marshal(map[string]any{
			"name": name, "model": name, "size": 1000 + i, "modified_at": "2025-01-02T03:04:05Z",
			"digest":  fmt.Sprintf("%064x", i),
			"details": map[string]any{"format": "gguf", "family": "llama", "parameter_size": "1B"},
		})
		mi := router.ModelInfo{Name: name, Size: int64(1000 + i), Modified: time.Unix(1735787045, 0), Raw: raw}
		inv.Models = append(inv.Models, mi)
		if i%2 == 0 {
			inv.Loaded = append(inv.Loaded, mi)
		}
	}
	return inv
}

// hasInventory reports whether m sees node with exactly inv.
func hasInventory(m *Membership, node string, inv router.Inventory) bool {
	p, ok := peerNamed(m, node)
	if !ok || p.InvHash != InventoryHash(inv) || p.Meta.InvHash != p.InvHash {
		return false
	}
	same := func(a, b []router.ModelInfo) bool {
		return slices.EqualFunc(a, b, func(x, y router.ModelInfo) bool {
			return x.Name == y.Name && x.Size == y.Size && x.Modified.Equal(y.Modified) && bytes.Equal(x.Raw, y.Raw)
		})
	}
	return same(p.Inventory.Models, inv.Models) && same(p.Inventory.Loaded, inv.Loaded)
}

func viaOf(m *Membership, node string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mb := m.members[node]; mb != nil {
		return mb.invVia
	}
	return ""
}

func startTrio(t *testing.T, secret []byte) (a, b, c *memberNode) {
	a = startMember(t, "a", memberOpts{secret: secret})
	b = startMember(t, "b", memberOpts{secret: secret, join: []string{a.m.Addr()}})
	c = startMember(t, "c", memberOpts{secret: secret, join: []string{a.m.Addr()}})
	for _, nd := range []*memberNode{a, b, c} {
		hearthtest.Eventually(t, nd.name+" sees a, b, c", waitTimeout, seesExactly(nd.m, []string{"a", "b", "c"}))
	}
	return a, b, c
}

// logCapture is a slog.Handler keeping every record, attributes flattened.
type logCapture struct {
	mu      sync.Mutex
	records []capturedRecord
	attrs   []slog.Attr
	parent  *logCapture
}

type capturedRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (c *logCapture) root() *logCapture {
	if c.parent != nil {
		return c.parent.root()
	}
	return c
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	rec := capturedRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range c.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	root := c.root()
	root.mu.Lock()
	root.records = append(root.records, rec)
	root.mu.Unlock()
	return nil
}

func (c *logCapture) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logCapture{attrs: append(slices.Clone(c.attrs), attrs...), parent: c.root()}
}

func (c *logCapture) WithGroup(string) slog.Handler { return c }

// hasAttr reports whether a record at level has msg in its message and key=value.
func (c *logCapture) hasAttr(level slog.Level, msg, key, value string) bool {
	root := c.root()
	root.mu.Lock()
	defer root.mu.Unlock()
	for _, r := range root.records {
		if r.level == level && strings.Contains(r.msg, msg) && (key == "" || r.attrs[key] == value) {
			return true
		}
	}
	return false
}

func (c *logCapture) has(level slog.Level, msg string) bool { return c.hasAttr(level, msg, "", "") }

func (c *logCapture) String() string {
	root := c.root()
	root.mu.Lock()
	defer root.mu.Unlock()
	var b strings.Builder
	for _, r := range root.records {
		fmt.Fprintf(&b, "%s %s %v\n", r.level, r.msg, r.attrs)
	}
	return b.String()
}
