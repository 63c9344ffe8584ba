package cluster

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/hearthlab/hearth/router"
)

// member is one other node as gossip describes it.
type member struct {
	alive     bool // joined and not left
	metaOK    bool // meta decoded; only such members are Peers
	badLogged bool // an undecodable meta was logged
	meta      Meta

	inv        router.Inventory
	invHash    uint64 // 0: none yet
	invVersion int64
	invVia     string // how the stored inventory arrived: broadcast, push/pull or fetch
	// want is the inventory hash the member last announced (meta or notice); a stored
	// inventory with another hash is stale.
	want      uint64
	fetchFail bool // a failed fetch was logged; reset by a success
}

// memberLocked returns name's entry, creating it.
func (m *Membership) memberLocked(name string) *member {
	mb := m.members[name]
	if mb == nil {
		mb = &member{}
		m.members[name] = mb
	}
	return mb
}

// rebuildLocked publishes a new Peers snapshot.
func (m *Membership) rebuildLocked() {
	peers := make([]Peer, 0, len(m.members)+1)
	peers = append(peers, Peer{
		Name: m.cfg.Name, Meta: m.self.meta, Inventory: m.self.inv, InvHash: m.self.hash, Self: true,
	})
	for name, mb := range m.members {
		if mb.alive && mb.metaOK {
			peers = append(peers, Peer{Name: name, Meta: mb.meta, Inventory: mb.inv, InvHash: mb.invHash})
		}
	}
	slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	m.snapshot.Store(&peers)
	m.numAlive.Store(int32(len(peers)))
}

// memberAlive records a join or a meta update.
func (m *Membership) memberAlive(n *memberlist.Node, joined bool) {
	meta, err := decodeMeta(n.Meta)
	m.mu.Lock()
	mb := m.memberLocked(n.Name)
	wasPeer := mb.alive && mb.metaOK
	mb.alive = true
	if err != nil {
		mb.metaOK = false
		logIt := !mb.badLogged
		mb.badLogged = true
		if wasPeer {
			m.rebuildLocked()
		}
		m.mu.Unlock()
		if logIt {
			m.log.Warn("ignoring a cluster member whose meta cannot be read; is it hearth of another version?",
				"peer", n.Name, "addr", n.Address(), "error", err)
		}
		if wasPeer {
			m.changedPeers()
		}
		return
	}
	mb.metaOK, mb.badLogged, mb.meta = true, false, meta
	stale := meta.InvHash != 0 && meta.InvHash != mb.invHash
	if stale {
		mb.want = meta.InvHash
	}
	m.rebuildLocked()
	m.mu.Unlock()
	if joined || !wasPeer {
		m.log.Info("peer joined the cluster", "peer", n.Name, "addr", n.Address(), "api", meta.API)
	}
	m.changedPeers()
	if stale {
		// The inventory usually follows the meta by broadcast within a gossip round.
		m.wantInventory(n.Name, m.fetchGrace)
	}
}

// memberGone records a leave or a failure; memberlist does not say which.
func (m *Membership) memberGone(name string) {
	m.mu.Lock()
	mb, ok := m.members[name]
	if !ok {
		m.mu.Unlock()
		return
	}
	wasPeer := mb.alive && mb.metaOK
	delete(m.members, name)
	m.rebuildLocked()
	m.mu.Unlock()
	if wasPeer {
		m.log.Info("peer left the cluster or failed", "peer", name)
		m.changedPeers()
	}
}

// storeInventory keeps w as its node's inventory unless what is stored is as new; it
// reports whether w was kept.
func (m *Membership) storeInventory(w *wireInventory, via string) bool {
	if w.Node == m.cfg.Name || w.Node == "" {
		return false
	}
	inv := w.inventory()
	if InventoryHash(inv) != w.Hash {
		m.log.Debug("dropping an inventory whose hash does not match", "peer", w.Node, "via", via)
		return false
	}
	m.mu.Lock()
	mb := m.memberLocked(w.Node)
	if w.Hash == mb.invHash && w.Version <= mb.invVersion {
		m.mu.Unlock()
		return false
	}
	// A newer version wins; an older one only if it is what the member says is current
	// (its clock went back).
	if w.Version <= mb.invVersion && (w.Hash != mb.meta.InvHash || !mb.metaOK) {
		m.mu.Unlock()
		return false
	}
	mb.inv, mb.invHash, mb.invVersion, mb.invVia = inv, w.Hash, w.Version, via
	isPeer := mb.alive && mb.metaOK
	if isPeer {
		m.rebuildLocked()
	}
	m.mu.Unlock()
	if isPeer {
		m.changedPeers()
	}
	return true
}

// noticeReceived handles "node's inventory is now hash": fetch it unless known. It reports
// whether the notice was news, to be passed on.
func (m *Membership) noticeReceived(n *wireNotice) bool {
	if n.Node == m.cfg.Name || n.Node == "" {
		return false
	}
	m.mu.Lock()
	mb := m.memberLocked(n.Node)
	if mb.invHash == n.Hash || mb.want == n.Hash {
		m.mu.Unlock()
		return false
	}
	mb.want = n.Hash
	m.mu.Unlock()
	m.wantInventory(n.Node, 0)
	return true
}

// fetchStale asks for every inventory found stale before Run started fetching.
func (m *Membership) fetchStale() {
	m.mu.Lock()
	var stale []string
	for name, mb := range m.members {
		if mb.want != 0 && mb.want != mb.invHash {
			stale = append(stale, name)
		}
	}
	m.mu.Unlock()
	for _, name := range stale {
		m.wantInventory(name, 0)
	}
}

// wantInventory fetches name's inventory after delay, one fetch at a time per peer.
func (m *Membership) wantInventory(name string, delay time.Duration) {
	m.mu.Lock()
	if m.state != stateRunning {
		m.mu.Unlock()
		return
	}
	if _, running := m.fetching[name]; running {
		m.fetching[name] = true
		m.mu.Unlock()
		return
	}
	m.fetching[name] = false
	m.mu.Unlock()
	if !m.spawn(func(ctx context.Context) { m.fetchLoop(ctx, name, delay) }) {
		m.mu.Lock()
		delete(m.fetching, name)
		m.mu.Unlock()
	}
}

func (m *Membership) fetchLoop(ctx context.Context, name string, delay time.Duration) {
	for {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if api, ok := m.fetchTarget(name); ok {
			err := m.fetchInventory(ctx, name, inventoryURL(api))
			m.fetchDone(name, err)
		}
		m.mu.Lock()
		if again := m.fetching[name]; again && m.state == stateRunning {
			m.fetching[name] = false
			m.mu.Unlock()
			delay = 0
			continue
		}
		delete(m.fetching, name)
		m.mu.Unlock()
		return
	}
}

// fetchTarget says whether name's stored inventory is stale and where to fetch it.
func (m *Membership) fetchTarget(name string) (api string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mb := m.members[name]
	if mb == nil || !mb.alive || !mb.metaOK || mb.meta.API == "" {
		return "", false
	}
	return mb.meta.API, mb.want != 0 && mb.want != mb.invHash
}

// fetchDone logs the first failure of a run of failures; the next meta update retries.
func (m *Membership) fetchDone(name string, err error) {
	m.mu.Lock()
	mb := m.members[name]
	logIt := false
	if mb != nil {
		logIt = err != nil && !mb.fetchFail
		mb.fetchFail = err != nil
	}
	m.mu.Unlock()
	if logIt {
		m.log.Warn("cannot fetch a peer's inventory; will retry on its next update", "peer", name, "error", err)
	}
}

// delegate is memberlist's view of a Membership.
type delegate struct{ m *Membership }

func (d delegate) NodeMeta(limit int) []byte {
	p := d.m.meta.Load()
	if p == nil || len(*p) > limit {
		return nil
	}
	return *p
}

func (d delegate) NotifyMsg(buf []byte) {
	if len(buf) < 2 {
		return
	}
	m := d.m
	// memberlist reuses buf after the call.
	buf = bytes.Clone(buf)
	kind, body := buf[0], buf[1:]
	switch kind {
	case msgInventory:
		m.stats.inventoriesReceived.Add(1)
		w, err := decodeInventory(body)
		if err != nil {
			m.log.Debug("dropping an undecodable inventory broadcast", "error", err)
			return
		}
		if m.storeInventory(w, "broadcast") {
			// Pass it on: memberlist sends a broadcast to a few nodes only.
			m.queue.QueueBroadcast(&inventoryBroadcast{node: w.Node, msg: buf})
		}
	case msgNotice:
		n, err := decodeNotice(body)
		if err != nil {
			m.log.Debug("dropping an undecodable inventory notice", "error", err)
			return
		}
		if m.noticeReceived(n) {
			m.queue.QueueBroadcast(&inventoryBroadcast{node: n.Node, msg: buf})
		}
	}
}

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.queue.GetBroadcasts(overhead, limit)
}

// LocalState is this node's inventory only: push/pull with every peer in turn spreads each
// node's own.
func (d delegate) LocalState(join bool) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	return d.m.self.wire
}

func (d delegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 {
		return
	}
	w, err := decodeInventory(buf)
	if err != nil {
		d.m.log.Debug("dropping an undecodable push/pull state", "error", err)
		return
	}
	d.m.storeInventory(w, "push/pull")
}

func (d delegate) NotifyJoin(n *memberlist.Node) {
	if n.Name != d.m.cfg.Name {
		d.m.memberAlive(n, true)
	}
}

func (d delegate) NotifyUpdate(n *memberlist.Node) {
	if n.Name != d.m.cfg.Name {
		d.m.memberAlive(n, false)
	}
}

func (d delegate) NotifyLeave(n *memberlist.Node) {
	if n.Name != d.m.cfg.Name {
		d.m.memberGone(n.Name)
	}
}
