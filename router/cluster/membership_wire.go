package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/hearthlab/hearth/router"
)

// InventoryPath is where a node's agent API serves InventoryHandler.
const InventoryPath = "/hearth/v1/inventory"

const (
	// inventoryContentType is the inventory's media type over HTTP.
	inventoryContentType = "application/msgpack"
	// fetchTokenHeader carries the token derived from the cluster secret on inventory fetches.
	fetchTokenHeader = "X-Hearth-Cluster-Token"
	fetchTimeout     = 3 * time.Second
	// maxInventoryBytes bounds a fetched inventory (thousands of models).
	maxInventoryBytes = 16 << 20
	// inlineHeadroom is what a gossip packet spends besides one user message: compound and
	// message headers, the label, encryption.
	inlineHeadroom = 100
)

// Message kinds: the first byte of each user message this layer gossips.
const (
	msgInventory byte = 'I' // a wireInventory
	msgNotice    byte = 'N' // a wireNotice: the inventory is too large to gossip, fetch it
)

// wireModel is a router.ModelInfo on the wire.
type wireModel struct {
	Name     string `msgpack:"n"`
	Size     int64  `msgpack:"s"`
	Modified int64  `msgpack:"m"` // unix seconds; 0 = unknown
	Raw      []byte `msgpack:"r"`
}

// wireInventory is a node's inventory: push/pull state, broadcast and HTTP answer.
type wireInventory struct {
	Node string `msgpack:"node"`
	Hash uint64 `msgpack:"h"`
	// Version orders one node's inventories: newer is larger (unix nanoseconds).
	Version int64       `msgpack:"v"`
	Models  []wireModel `msgpack:"m"`
	Loaded  []wireModel `msgpack:"l"`
	// Stored and Storage are the node's model store: its models and health.
	Stored  []wireModel         `msgpack:"s,omitempty"`
	Storage *router.StorageView `msgpack:"st,omitempty"`
}

// wireNotice announces an inventory too large for one gossip packet.
type wireNotice struct {
	Node    string `msgpack:"node"`
	Hash    uint64 `msgpack:"h"`
	Version int64  `msgpack:"v"`
}

func encodeMeta(meta Meta) ([]byte, error) {
	b, err := msgpack.Marshal(&meta)
	if err != nil {
		return nil, fmt.Errorf("cluster: encode meta: %w", err)
	}
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("cluster: node meta is %d bytes, over gossip's limit of %d: the API URL (%d characters) is too long",
			len(b), MaxMetaSize, len(meta.API))
	}
	return b, nil
}

func decodeMeta(b []byte) (Meta, error) {
	var meta Meta
	err := msgpack.Unmarshal(b, &meta)
	return meta, err
}

func encodeInventory(node string, hash uint64, version int64, inv router.Inventory) ([]byte, error) {
	w := wireInventory{Node: node, Hash: hash, Version: version,
		Models: toWire(inv.Models), Loaded: toWire(inv.Loaded), Stored: toWire(inv.Stored), Storage: inv.Storage}
	b, err := msgpack.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("cluster: encode inventory: %w", err)
	}
	return b, nil
}

func decodeInventory(b []byte) (*wireInventory, error) {
	var w wireInventory
	if err := msgpack.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("decode inventory: %w", err)
	}
	return &w, nil
}

func decodeNotice(b []byte) (*wireNotice, error) {
	var n wireNotice
	if err := msgpack.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("decode inventory notice: %w", err)
	}
	return &n, nil
}

func toWire(models []router.ModelInfo) []wireModel {
	out := make([]wireModel, len(models))
	for i, mi := range models {
		out[i] = wireModel{Name: mi.Name, Size: mi.Size, Raw: mi.Raw}
		if !mi.Modified.IsZero() {
			out[i].Modified = mi.Modified.Unix()
		}
	}
	return out
}

func (w *wireInventory) inventory() router.Inventory {
	return router.Inventory{Models: fromWire(w.Models), Loaded: fromWire(w.Loaded), Stored: fromWire(w.Stored), Storage: w.Storage}
}

func fromWire(models []wireModel) []router.ModelInfo {
	if len(models) == 0 {
		return nil
	}
	out := make([]router.ModelInfo, len(models))
	for i, wm := range models {
		out[i] = router.ModelInfo{Name: wm.Name, Size: wm.Size, Raw: json.RawMessage(wm.Raw)}
		if wm.Modified != 0 {
			out[i].Modified = time.Unix(wm.Modified, 0)
		}
	}
	return out
}

// InventoryHash identifies an inventory by its models' names and sizes, the names of the
// loaded models and the store's models and health, in any order. Raw entries and times do not count: /api/ps moves expires_at
// on every request, which is no reason to gossip. Never 0, which means "none".
func InventoryHash(inv router.Inventory) uint64 {
	entries := make([]string, 0, len(inv.Models)+len(inv.Loaded))
	for _, mi := range inv.Models {
		entries = append(entries, "m "+mi.Name+" "+strconv.FormatInt(mi.Size, 10))
	}
	for _, mi := range inv.Loaded {
		entries = append(entries, "l "+mi.Name)
	}
	for _, mi := range inv.Stored {
		entries = append(entries, "s "+mi.Name+" "+strconv.FormatInt(mi.Size, 10))
	}
	if st := inv.Storage; st != nil { // its health, not when it was checked
		entries = append(entries, fmt.Sprintf("storage %q %t %t %q %t %q", st.Dir, st.Required, st.Mounted, st.FSType, st.Healthy, st.Error))
	}
	slices.Sort(entries)
	h := fnv.New64a()
	for _, e := range entries {
		io.WriteString(h, e)
		h.Write([]byte{'\n'})
	}
	if sum := h.Sum64(); sum != 0 {
		return sum
	}
	return 1
}

// inventoryBroadcast is a gossiped inventory or notice about one node; a newer one about
// the same node replaces it in the queue.
type inventoryBroadcast struct {
	node string
	msg  []byte
}

func (b *inventoryBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*inventoryBroadcast)
	return ok && o.node == b.node
}
func (b *inventoryBroadcast) Name() string    { return "inventory/" + b.node }
func (b *inventoryBroadcast) Message() []byte { return b.msg }
func (b *inventoryBroadcast) Finished()       {}

// broadcastInventory gossips this node's inventory, or a notice to fetch it when it does not
// fit one packet.
func (m *Membership) broadcastInventory() {
	m.mu.Lock()
	wire, hash, version := m.self.wire, m.self.hash, m.self.version
	m.mu.Unlock()
	msg := make([]byte, 0, 1+len(wire))
	msg = append(append(msg, msgInventory), wire...)
	if len(msg) > m.maxInline {
		b, err := msgpack.Marshal(&wireNotice{Node: m.cfg.Name, Hash: hash, Version: version})
		if err != nil {
			m.log.Error("cannot announce the inventory", "error", err)
			return
		}
		msg = append([]byte{msgNotice}, b...)
		m.stats.noticesSent.Add(1)
	} else {
		m.stats.inventoriesSent.Add(1)
	}
	m.queue.QueueBroadcast(&inventoryBroadcast{node: m.cfg.Name, msg: msg})
}

// fetchToken derives the inventory fetch credential from the cluster secret, so that only
// members read a node's inventory.
func fetchToken(secret []byte) string {
	if len(secret) == 0 {
		return ""
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("hearth cluster inventory v1"))
	return hex.EncodeToString(mac.Sum(nil))
}

// InventoryHandler serves this node's inventory (msgpack, as gossiped) to members fetching
// it; mount it at InventoryPath. With a secret, a request must carry the token derived from
// it, which members send and nobody else has.
func (m *Membership) InventoryHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if m.token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get(fetchTokenHeader)), []byte(m.token)) != 1 {
			http.Error(w, "cluster members only", http.StatusUnauthorized)
			return
		}
		m.mu.Lock()
		body := m.self.wire
		m.mu.Unlock()
		w.Header().Set("Content-Type", inventoryContentType)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodGet {
			w.Write(body)
		}
	})
}

func inventoryURL(api string) string {
	return strings.TrimRight(api, "/") + InventoryPath
}

// fetchInventory reads node's inventory from url and stores it.
func (m *Membership) fetchInventory(ctx context.Context, node, url string) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("fetch inventory of %s: %w", node, err)
	}
	req.Header.Set("Accept", inventoryContentType)
	if m.token != "" {
		req.Header.Set(fetchTokenHeader, m.token)
	}
	resp, err := m.httpc.Do(req)
	if err != nil {
		return fmt.Errorf("fetch inventory of %s: %w", node, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch inventory of %s: GET %s: %s", node, url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxInventoryBytes+1))
	if err != nil {
		return fmt.Errorf("fetch inventory of %s: %w", node, err)
	}
	if len(body) > maxInventoryBytes {
		return fmt.Errorf("fetch inventory of %s: over %d bytes", node, maxInventoryBytes)
	}
	w, err := decodeInventory(body)
	if err != nil {
		return fmt.Errorf("fetch inventory of %s: %w", node, err)
	}
	if w.Node != node {
		return fmt.Errorf("fetch inventory of %s: %s answered for %q", node, url, w.Node)
	}
	m.stats.fetches.Add(1)
	m.storeInventory(w, "fetch")
	return nil
}
