package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/hearthlab/hearth/router"
)

const (
	// updateTimeout bounds how long a meta update waits for its first broadcast.
	updateTimeout = time.Second
	// leaveTimeout bounds how long Run waits for its leave message to go out.
	leaveTimeout   = 2 * time.Second
	joinBackoffMin = time.Second
	joinBackoffMax = 30 * time.Second
)

// Membership is this node's view of the cluster, kept by gossip: every alive node with its
// meta (load, health) and its model inventory.
type Membership struct {
	cfg   Config
	local Local
	log   *slog.Logger
	list  *memberlist.Memberlist
	queue *memberlist.TransmitLimitedQueue
	addr  string
	token string // inventory fetch token derived from the secret; "" without one
	httpc *http.Client
	// maxInline is the largest inventory broadcast that fits one gossip packet.
	maxInline  int
	fetchGrace time.Duration

	meta     atomic.Pointer[[]byte] // encoded Meta served to memberlist
	snapshot atomic.Pointer[[]Peer]
	numAlive atomic.Int32

	changed chan struct{} // LocalChanged, coalesced
	notify  chan struct{} // peers changed, coalesced

	ctx      context.Context // ends when the membership stops
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once

	mu        sync.Mutex
	state     runState
	self      selfState
	members   map[string]*member
	fetching  map[string]bool // peer name -> another fetch wanted after the running one
	callbacks []func()

	stats stats
}

type runState uint8

const (
	stateNew runState = iota
	stateRunning
	stateStopped
)

// selfState is this node's own state as last published.
type selfState struct {
	meta    Meta
	inv     router.Inventory
	hash    uint64
	version int64
	wire    []byte // encoded wireInventory: push/pull state and the HTTP answer
}

// stats counts what tests and metrics want to see.
type stats struct {
	metaUpdates         atomic.Int64 // UpdateNode calls
	inventoriesSent     atomic.Int64 // own inventories broadcast whole
	noticesSent         atomic.Int64 // own inventory changes announced by notice
	inventoriesReceived atomic.Int64 // inventory broadcasts received
	fetches             atomic.Int64 // inventories fetched over HTTP
	joinFailures        atomic.Int64 // join rounds where no peer answered
}

// NewMembership starts gossip on cfg.Bind (not yet joined: see Run). local is read for this
// node's meta and inventory at start and after each LocalChanged. A nil logger discards.
func NewMembership(cfg Config, local Local, logger *slog.Logger) (*Membership, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if local == nil {
		return nil, errors.New("cluster: membership needs the local node's state")
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Membership{
		cfg:   cfg,
		local: local,
		log:   logger,
		token: fetchToken(cfg.Secret),
		// Peers are on the LAN: never through a proxy.
		httpc:    &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}},
		changed:  make(chan struct{}, 1),
		notify:   make(chan struct{}, 1),
		ctx:      ctx,
		cancel:   cancel,
		members:  map[string]*member{},
		fetching: map[string]bool{},
	}
	// memberlist asks for the meta while it starts, so the local state comes first; this is
	// also where an over-long API URL is caught, before memberlist would panic on it.
	if _, _, err := m.refreshLocal(); err != nil {
		cancel()
		return nil, err
	}
	mlc := memberlistConfig(cfg, logger.With("lib", "memberlist"))
	m.maxInline = mlc.UDPBufferSize - inlineHeadroom
	m.fetchGrace = time.Second
	if cfg.Profile == ProfileLocal {
		m.fetchGrace = 200 * time.Millisecond
	}
	m.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(m.numAlive.Load()) },
		RetransmitMult: mlc.RetransmitMult,
	}
	d := delegate{m}
	mlc.Delegate = d
	mlc.Events = d
	list, err := memberlist.Create(mlc)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cluster: start gossip on %s: %w", cfg.Bind, err)
	}
	m.list = list
	m.addr = list.LocalNode().Address()
	return m, nil
}

// Addr is the gossip address other nodes reach this one at, "ip:port": the bound address, or
// the advertised one. Give it to other nodes' Join.
func (m *Membership) Addr() string { return m.addr }

// Run joins the cluster and serves until ctx ends, then leaves gracefully (peers see a leave,
// not a failure) and stops gossip. Joining retries in the background until a peer answers.
// Run returns nil on a clean stop; it can be called once.
func (m *Membership) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.state != stateNew {
		m.mu.Unlock()
		return errors.New("cluster: membership: Run called twice or after Close")
	}
	m.state = stateRunning
	m.mu.Unlock()

	m.spawn(m.publishLoop)
	m.spawn(m.notifyLoop)
	if peers := m.joinPeers(); len(peers) > 0 {
		m.spawn(func(ctx context.Context) { m.joinLoop(ctx, peers) })
	}
	m.fetchStale()
	// The local state may have changed between NewMembership and now (the agent learns its
	// API address after gossip binds).
	m.LocalChanged()

	select {
	case <-ctx.Done():
	case <-m.ctx.Done():
	}
	m.stop()
	return nil
}

// Close stops gossip without Run: it releases the port when Run was never called, and makes
// a running Run return. Safe to call more than once.
func (m *Membership) Close() error {
	m.stop()
	return nil
}

func (m *Membership) stop() {
	m.stopOnce.Do(func() {
		m.mu.Lock()
		wasRunning := m.state == stateRunning
		m.state = stateStopped
		m.mu.Unlock()
		m.cancel()
		if wasRunning {
			if err := m.list.Leave(leaveTimeout); err != nil {
				m.log.Warn("left the cluster, but no peer confirmed it in time; peers will see a failure", "error", err)
			} else {
				m.log.Info("left the cluster")
			}
		}
		if err := m.list.Shutdown(); err != nil {
			m.log.Warn("stopping gossip", "error", err)
		}
		m.wg.Wait()
		m.httpc.CloseIdleConnections()
	})
}

// spawn runs fn in a goroutine that stop waits for; it does nothing once stopping.
func (m *Membership) spawn(fn func(ctx context.Context)) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != stateRunning {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn(m.ctx)
	}()
	return true
}

// joinPeers is cfg.Join without this node's own address.
func (m *Membership) joinPeers() []string {
	var peers []string
	for _, p := range m.cfg.Join {
		if p != m.addr && p != m.cfg.Advertise {
			peers = append(peers, p)
		}
	}
	return peers
}

func (m *Membership) joinLoop(ctx context.Context, peers []string) {
	backoff := joinBackoffMin
	for {
		answered, err := m.joinOnce(ctx, peers)
		if answered > 0 {
			m.log.Info("joined the cluster", "answered", answered, "peers", peers)
			// The peers that answered have our inventory from the join; tell the others.
			m.broadcastInventory()
			return
		}
		if ctx.Err() != nil {
			return
		}
		m.stats.joinFailures.Add(1)
		m.log.Warn(fmt.Sprintf("no cluster peer answered; trying again in %s", backoff), "peers", peers, "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, joinBackoffMax)
	}
}

// joinOnce contacts each peer in turn (so that stopping waits for one TCP timeout at most,
// not one per peer) and reports how many answered.
func (m *Membership) joinOnce(ctx context.Context, peers []string) (int, error) {
	answered := 0
	var errs []error
	for _, p := range peers {
		if ctx.Err() != nil {
			break
		}
		n, err := m.list.Join([]string{p})
		answered += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return answered, errors.Join(errs...)
}

// LocalChanged tells the membership that the local meta or inventory changed. It never
// blocks: changes within MetaDebounce are gossiped together.
func (m *Membership) LocalChanged() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// publishLoop gossips local changes, at most one meta update per MetaDebounce.
func (m *Membership) publishLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.changed:
		}
		t := time.NewTimer(m.cfg.MetaDebounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		// What changed while waiting is read below; only later changes need another round.
		select {
		case <-m.changed:
		default:
		}
		m.publish()
	}
}

func (m *Membership) publish() {
	metaChanged, invChanged, err := m.refreshLocal()
	if err != nil {
		m.log.Error("cannot gossip this node's state", "error", err)
		return
	}
	if invChanged {
		m.broadcastInventory()
	}
	if metaChanged {
		m.stats.metaUpdates.Add(1)
		if err := m.list.UpdateNode(updateTimeout); err != nil {
			m.log.Debug("meta update not yet sent to a peer", "error", err)
		}
	}
	if metaChanged || invChanged {
		m.changedPeers()
	}
}

// refreshLocal reads the local state and makes it what gossip serves.
func (m *Membership) refreshLocal() (metaChanged, invChanged bool, err error) {
	inv := m.local.Inventory()
	inv.Models, inv.Loaded, inv.Stored = slices.Clone(inv.Models), slices.Clone(inv.Loaded), slices.Clone(inv.Stored)
	meta := m.local.Meta()
	hash := InventoryHash(inv)
	meta.InvHash = hash
	enc, err := encodeMeta(meta)
	if err != nil {
		return false, false, err
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.self.wire == nil || hash != m.self.hash {
		version := max(time.Now().UnixNano(), m.self.version+1)
		wire, err := encodeInventory(m.cfg.Name, hash, version, inv)
		if err != nil {
			return false, false, err
		}
		m.self.inv, m.self.hash, m.self.version, m.self.wire = inv, hash, version, wire
		invChanged = true
	}
	old := m.meta.Load()
	metaChanged = old == nil || !bytes.Equal(*old, enc)
	m.self.meta = meta
	m.meta.Store(&enc)
	m.rebuildLocked()
	return metaChanged, invChanged, nil
}

// Peers is every alive member, this node included (Self), sorted by name, with its latest
// meta and inventory. The slice is the caller's; the inventories in it are shared and must
// not be modified. Cheap: a copy of a snapshot rebuilt on each change.
func (m *Membership) Peers() []Peer {
	if p := m.snapshot.Load(); p != nil {
		return slices.Clone(*p)
	}
	return nil
}

// OnChange registers fn to run after members join or leave, or their meta or inventory
// change. Calls are coalesced, run one at a time on one goroutine while Run runs, and hold
// no lock of the membership's: fn may call Peers.
func (m *Membership) OnChange(fn func()) {
	m.mu.Lock()
	m.callbacks = append(m.callbacks, fn)
	m.mu.Unlock()
}

// changedPeers wakes notifyLoop.
func (m *Membership) changedPeers() {
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

func (m *Membership) notifyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.notify:
		}
		m.mu.Lock()
		fns := slices.Clone(m.callbacks)
		m.mu.Unlock()
		for _, fn := range fns {
			fn()
		}
	}
}
