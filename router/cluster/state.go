// Package cluster makes hearth agents one cluster: gossip membership (hashicorp/memberlist)
// carrying each node's load in its meta and its model inventory in push/pull state and
// broadcasts, and the Picker that routes each request to the best node. The agent role wires
// it; it imports router and never agent or relay.
package cluster

import (
	"cmp"
	"hash/fnv"
	"maps"
	"slices"

	"github.com/hearthlab/hearth/router"
)

// MaxMetaSize is memberlist's limit on node meta; memberlist panics above it.
const MaxMetaSize = 512

// Role is what a node does in the cluster.
type Role uint8

const (
	// RoleServe nodes have an Ollama and serve models.
	RoleServe Role = iota
	// RoleRouter nodes (a NAS without a GPU) route requests and serve no models.
	RoleRouter
)

// Meta is a node's memberlist meta: its load and health, small enough to gossip often
// (msgpack, at most MaxMetaSize bytes). The inventory travels separately; InvHash says
// which version of it is current.
type Meta struct {
	Role Role `msgpack:"r"`
	// API is the base URL of the node's agent API, e.g. "http://10.0.0.5:11500".
	API string `msgpack:"a"`
	// Slots is how many requests the node's Ollama runs at once (OLLAMA_NUM_PARALLEL).
	Slots uint16 `msgpack:"s"`
	// Holds is how many models its Ollama keeps loaded at once (ollama.max_loaded); 0 when
	// not configured, and routers learn it from its /api/ps.
	Holds uint8 `msgpack:"m,omitempty"`
	// InFlight is how many requests its Ollama is serving now.
	InFlight uint16 `msgpack:"f"`
	// Via splits InFlight by the router that picked this node (RouterID of its name; at
	// most MaxVia routers, the busiest), read together with InFlight: a router subtracts its
	// own entry to learn the others' share without mixing counts of different moments.
	Via map[uint32]uint16 `msgpack:"v,omitempty"`
	// Queued is how many requests wait in its router's queue.
	Queued uint16 `msgpack:"q"`
	// BackendOK: its Ollama answers.
	BackendOK bool `msgpack:"b"`
	// StorageOK: its model store answers (no stale NFS handle).
	StorageOK bool `msgpack:"st"`
	// InvHash identifies the current inventory.
	InvHash uint64 `msgpack:"h"`
	// PruneOwner: its managed Ollama may prune blobs of the shared store (storage.prune_owner);
	// two in one cluster is a mistake the agents report.
	PruneOwner bool `msgpack:"po,omitempty"`
}

// MaxVia bounds Meta.Via: a home cluster has a handful of routers, and the meta must stay
// under MaxMetaSize.
const MaxVia = 8

// RouterID is a router's key in Meta.Via.
func RouterID(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return h.Sum32()
}

// ViaOf builds Meta.Via from in-flight counts by router name, keeping the MaxVia busiest.
func ViaOf(via map[string]int) map[uint32]uint16 {
	if len(via) == 0 {
		return nil
	}
	names := slices.Collect(maps.Keys(via))
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(via[b], via[a]) })
	out := make(map[uint32]uint16, min(len(names), MaxVia))
	for _, n := range names[:min(len(names), MaxVia)] {
		out[RouterID(n)] = uint16(min(via[n], 65535))
	}
	return out
}

// Local is this node's own state, read by the membership layer when it gossips.
type Local interface {
	Meta() Meta
	Inventory() router.Inventory
}

// Peer is one cluster member as this node knows it.
type Peer struct {
	Name string
	Meta Meta
	// Inventory is the latest inventory received; its hash may lag Meta.InvHash briefly.
	Inventory router.Inventory
	InvHash   uint64
	// Self marks this node.
	Self bool
}
