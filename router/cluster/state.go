// Package cluster makes hearth agents one cluster: gossip membership (hashicorp/memberlist)
// carrying each node's load in its meta and its model inventory in push/pull state and
// broadcasts, and the Picker that routes each request to the best node. The agent role wires
// it; it imports router and never agent or relay.
package cluster

import (
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
	// InFlight is how many requests its Ollama is serving now.
	InFlight uint16 `msgpack:"f"`
	// Queued is how many requests wait in its router's queue.
	Queued uint16 `msgpack:"q"`
	// BackendOK: its Ollama answers.
	BackendOK bool `msgpack:"b"`
	// StorageOK: its model store answers (no stale NFS handle).
	StorageOK bool `msgpack:"st"`
	// InvHash identifies the current inventory.
	InvHash uint64 `msgpack:"h"`
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
