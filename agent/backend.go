package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hearthlab/hearth/internal/logging"
	"github.com/hearthlab/hearth/router"
)

// checkTimeout bounds one read of Ollama's state: a hung Ollama must not hang the watch.
const checkTimeout = 3 * time.Second

// downInterval is how often a backend that does not answer is checked, so that the agent
// recovers within seconds when Ollama appears.
const downInterval = 2 * time.Second

// The optional capabilities the cluster picker finds by type assertion on its local node.
var (
	_ router.Node                 = (*Backend)(nil)
	_ router.LoadCounter          = (*Backend)(nil)
	_ router.FailureReporter      = (*Backend)(nil)
	_ interface{ InFlight() int } = (*Backend)(nil)
)

// Backend watches the local Ollama: whether it answers, which models it has on disk and
// which are loaded. It is the router.Node for this machine.
type Backend struct {
	name     string
	url      *url.URL
	client   *http.Client
	log      *slog.Logger
	interval time.Duration
	managed  bool // ollama.manage: this agent runs the Ollama, so a refusal is its start-up or restart

	refreshMu sync.Mutex // one read of Ollama at a time
	inFlight  atomic.Int64
	onChange  func() // health, inventory or load changed
	onLoad    func() // requests in flight changed (the sleep guard)

	viaMu   sync.Mutex
	via     map[string]int // requests in flight by the router that picked this node for them
	recheck chan struct{}

	mu    sync.RWMutex
	state router.NodeState
}

// NewBackend returns a watch of the Ollama at u, re-read every interval.
func NewBackend(name string, u *url.URL, connectTimeout, interval time.Duration, logger *slog.Logger) *Backend {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: connectTimeout}).DialContext,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     time.Minute,
	}
	return &Backend{
		name:     name,
		url:      u,
		client:   &http.Client{Transport: tr, Timeout: checkTimeout},
		log:      logging.OrDiscard(logger),
		interval: interval,
		state:    router.NodeState{Name: name, URL: u, Problem: "not checked yet"},
		onChange: func() {},
		onLoad:   func() {},
		recheck:  make(chan struct{}, 1),
	}
}

// Unreachable is told that a request could not connect to Ollama: check now, so that the
// node stops taking requests (and says so in gossip) without waiting for the next poll.
func (b *Backend) Unreachable(error) {
	select {
	case b.recheck <- struct{}{}:
	default:
	}
}

// OnChange registers fn, called after health, inventory or the number of requests in flight
// changed. Set it before Run.
func (b *Backend) OnChange(fn func()) { b.onChange = fn }

// OnLoad registers fn, called after the number of requests in flight changed. Set it
// before Run.
func (b *Backend) OnLoad(fn func()) { b.onLoad = fn }

// Begin counts a request sent to this Ollama until end is called (router.LoadCounter);
// origin is the router that picked this node for it.
func (b *Backend) Begin(origin string) (end func()) {
	b.viaMu.Lock()
	if b.via == nil {
		b.via = map[string]int{}
	}
	b.via[origin]++
	b.inFlight.Add(1)
	b.viaMu.Unlock()
	b.onChange()
	b.onLoad()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.viaMu.Lock()
			if b.via[origin]--; b.via[origin] == 0 {
				delete(b.via, origin)
			}
			b.inFlight.Add(-1)
			b.viaMu.Unlock()
			b.onChange()
			b.onLoad()
		})
	}
}

// InFlightVia is how many requests this Ollama is serving now in all, and how many of them
// each router picked this node for, read together.
func (b *Backend) InFlightVia() (total int, via map[string]int) {
	b.viaMu.Lock()
	defer b.viaMu.Unlock()
	return int(b.inFlight.Load()), maps.Clone(b.via)
}

// InFlight is how many requests this Ollama is serving through hearth now.
func (b *Backend) InFlight() int { return int(b.inFlight.Load()) }

// State returns the last known state.
func (b *Backend) State() router.NodeState {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.state
}

// Run checks Ollama until ctx ends: every interval while it answers, more often while not.
func (b *Backend) Run(ctx context.Context) error {
	defer b.client.CloseIdleConnections()
	for {
		_ = b.Refresh(ctx)
		wait := b.interval
		if !b.State().Healthy && downInterval < wait {
			wait = downInterval
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-b.recheck:
			t.Stop()
		}
	}
}

// Refresh reads Ollama's health and inventory now.
func (b *Backend) Refresh(ctx context.Context) error {
	b.refreshMu.Lock()
	defer b.refreshMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()

	prev := b.State()
	next := prev
	next.Checked = time.Now()
	inv, err := b.readInventory(ctx)
	if err == nil && (!prev.Healthy || prev.Version == "") {
		next.Version, err = b.readVersion(ctx)
	}
	if err != nil {
		next.Healthy = false
		next.Problem = b.describe(err)
	} else {
		next.Healthy = true
		next.Problem = ""
		next.Inventory = inv
	}
	b.mu.Lock()
	b.state = next
	b.mu.Unlock()
	b.report(prev, next)
	if prev.Healthy != next.Healthy || !sameInventory(prev.Inventory, next.Inventory) {
		b.onChange()
	}
	return err
}

// report logs changes a person cares about, once each, not every check.
func (b *Backend) report(prev, next router.NodeState) {
	switch {
	case !next.Healthy && prev.Checked.IsZero():
		b.log.Warn("Ollama is not reachable yet; model requests get 503 until it answers, and hearth keeps checking",
			"url", b.url.String(), "problem", next.Problem, "every", downInterval.String())
	case !next.Healthy && prev.Healthy:
		b.log.Warn("Ollama stopped answering; model requests get 503 until it is back", "url", b.url.String(), "problem", next.Problem)
	case next.Healthy && !prev.Healthy:
		b.log.Info("Ollama is answering", "url", b.url.String(), "version", next.Version,
			"models", names(next.Inventory.Models), "loaded", names(next.Inventory.Loaded))
	case next.Healthy && !slices.Equal(names(prev.Inventory.Models), names(next.Inventory.Models)):
		b.log.Info("models on this node changed", "models", names(next.Inventory.Models))
	}
}

func sameInventory(a, b router.Inventory) bool {
	return slices.Equal(names(a.Models), names(b.Models)) && slices.Equal(names(a.Loaded), names(b.Loaded))
}

func names(models []router.ModelInfo) []string {
	out := make([]string, len(models))
	for i, m := range models {
		out[i] = m.Name
	}
	return out
}

// describe puts a failed check in words that say what to do.
func (b *Backend) describe(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED) && b.managed:
		// Not "start ollama serve": a second Ollama on the port would fail the agent's own.
		return fmt.Sprintf("nothing listens at %s (connection refused): the Ollama this agent runs (ollama.manage) is starting, or restarting after it exited; the agent's log says why", b.url)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("nothing listens at %s (connection refused): start Ollama with `ollama serve`, or point ollama.url at it", b.url)
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer from %s within %s: Ollama may be hung, or the host unreachable", b.url, checkTimeout)
	default:
		return err.Error()
	}
}

func (b *Backend) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url.JoinPath(path).String(), nil)
	if err != nil {
		return err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading GET %s from %s: %w", path, b.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s at %s answered %s: %.200s", path, b.url, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s does not look like Ollama: GET %s returned %.80q", b.url, path, body)
	}
	return nil
}

func (b *Backend) readVersion(ctx context.Context) (string, error) {
	var v struct {
		Version string `json:"version"`
	}
	err := b.get(ctx, "/api/version", &v)
	return v.Version, err
}

// readInventory reads /api/tags (on disk) and /api/ps (loaded now).
func (b *Backend) readInventory(ctx context.Context) (router.Inventory, error) {
	var inv router.Inventory
	var err error
	if inv.Models, err = b.readList(ctx, "/api/tags"); err != nil {
		return inv, err
	}
	inv.Loaded, err = b.readList(ctx, "/api/ps")
	return inv, err
}

func (b *Backend) readList(ctx context.Context, path string) ([]router.ModelInfo, error) {
	var list struct {
		Models []json.RawMessage `json:"models"`
	}
	if err := b.get(ctx, path, &list); err != nil {
		return nil, err
	}
	out := make([]router.ModelInfo, 0, len(list.Models))
	for _, raw := range list.Models {
		var m struct {
			Name       string    `json:"name"`
			Model      string    `json:"model"`
			Size       int64     `json:"size"`
			ModifiedAt time.Time `json:"modified_at"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("GET %s at %s: unexpected model entry %.120s", path, b.url, raw)
		}
		if m.Name == "" {
			m.Name = m.Model
		}
		out = append(out, router.ModelInfo{Name: m.Name, Size: m.Size, Modified: m.ModifiedAt, Raw: raw})
	}
	return out, nil
}
