package agent

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/router"
	"github.com/hearthlab/hearth/router/cluster"
)

// localNode is this agent as the cluster sees it: its role, API, load and inventory.
type localNode struct {
	backend *Backend   // nil on a router-only node
	store   *nodeStore // nil without storage.models_dir
	prune   bool       // storage.prune_owner
	api     string
	slots   int
	holds   int // ollama.max_loaded
	picker  atomic.Pointer[cluster.Picker]
}

// Meta is read by the membership layer whenever it gossips.
func (l *localNode) Meta() cluster.Meta {
	m := cluster.Meta{Role: cluster.RoleRouter, API: l.api, StorageOK: l.store.ok(), PruneOwner: l.prune}
	if p := l.picker.Load(); p != nil {
		m.Queued = uint16(min(p.Queued(), 65535))
	}
	if l.backend == nil {
		return m
	}
	st := l.backend.State()
	m.Role = cluster.RoleServe
	m.Slots = uint16(l.slots)
	m.Holds = uint8(l.holds)
	total, via := l.backend.InFlightVia()
	m.InFlight = uint16(min(total, 65535))
	m.Via = cluster.ViaOf(via)
	m.BackendOK = st.Healthy
	m.InvHash = cluster.InventoryHash(st.Inventory)
	return m
}

// Inventory is this node's models, from its Ollama, and its store's.
func (l *localNode) Inventory() router.Inventory {
	var inv router.Inventory
	if l.backend != nil {
		inv = l.backend.State().Inventory
	}
	inv.Stored, inv.Storage = l.store.stored(), l.store.view()
	return inv
}

// clusterCredential is the key agents present to each other for forwarded requests. It is
// derived from the gossip secret, so only members have it; it never travels in gossip.
func clusterCredential(secret []byte) string {
	if len(secret) == 0 {
		return ""
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("hearth cluster api v1"))
	return "hearth-cluster-" + hex.EncodeToString(mac.Sum(nil))
}

// clusterParts is what the agent wires when cluster.bind is set.
type clusterParts struct {
	membership *cluster.Membership
	picker     *cluster.Picker
	credential string
}

// newCluster starts gossip for this node and the picker over it. apiAddr is the bound API
// listener, whose port other agents use when cluster.api is not set.
func newCluster(cfg config.Agent, backend *Backend, store *nodeStore, apiAddr net.Addr, reg prometheus.Registerer, logger *slog.Logger) (*clusterParts, error) {
	key, err := cfg.Cluster.Key()
	if err != nil {
		return nil, err
	}
	if len(key) == 0 {
		logger.Warn("cluster gossip is not encrypted (cluster.insecure: true): anyone on the network can join; set cluster.secret")
	}
	profile := cluster.ProfileLAN
	if cfg.Cluster.Timings == "fast" {
		profile = cluster.ProfileLocal
	}
	// With cluster.api given, the meta is complete before gossip starts, so an over-long URL
	// fails here; otherwise the URL needs the gossip address and is set just below.
	local := &localNode{backend: backend, store: store, prune: cfg.Storage.PruneOwner, slots: cfg.Ollama.Parallel, holds: cfg.Ollama.MaxLoaded, api: cfg.Cluster.API}
	m, err := cluster.NewMembership(cluster.Config{
		Name: cfg.Node.Name, Bind: cfg.Cluster.Bind, Advertise: cfg.Cluster.Advertise,
		Join: cfg.Cluster.Join, Secret: key, Profile: profile,
	}, local, logger.With("component", "cluster"))
	if err != nil {
		return nil, err
	}
	if local.api == "" {
		local.api, err = defaultAPI(m.Addr(), apiAddr)
		if err != nil {
			_ = m.Close()
			return nil, err
		}
	}
	metrics, err := cluster.NewPickerMetrics(reg, func() int { return len(m.Peers()) })
	if err != nil {
		_ = m.Close()
		return nil, fmt.Errorf("agent: cluster metrics: %w", err)
	}
	credential := clusterCredential(key)
	header := http.Header{router.ForwardedHeader: {cfg.Node.Name}}
	if credential != "" {
		header.Set("Authorization", "Bearer "+credential)
	}
	var node router.Node
	if backend != nil {
		node = backend
	}
	p := cluster.NewPicker(cluster.PickerConfig{
		Self: cfg.Node.Name, MaxQueue: cfg.Router.MaxQueue, QueueTimeout: cfg.Router.QueueTimeout, Header: header,
	}, m, node, metrics, logger.With("component", "picker"))
	local.picker.Store(p)
	p.OnQueueChange(m.LocalChanged)
	m.OnChange(p.Kick)
	if backend != nil {
		backend.OnChange(m.LocalChanged)
	}
	if store != nil {
		store.probe.OnChange(m.LocalChanged)
	}
	prune := &pruneWatch{log: logger}
	m.OnChange(func() { prune.check(m.Peers()) })
	logger.Info("cluster gossip ready", "gossip", m.Addr(), "api", local.api, "join", cfg.Cluster.Join, "encrypted", len(key) > 0)
	return &clusterParts{membership: m, picker: p, credential: credential}, nil
}

// defaultAPI is http://<gossip host>:<API port>: the host other agents already reach.
func defaultAPI(gossip string, api net.Addr) (string, error) {
	host, _, err := net.SplitHostPort(gossip)
	if err != nil {
		return "", fmt.Errorf("agent: gossip address %q: %w", gossip, err)
	}
	_, port, err := net.SplitHostPort(api.String())
	if err != nil {
		return "", fmt.Errorf("agent: API address %q: %w", api, err)
	}
	return "http://" + net.JoinHostPort(host, port), nil
}
