package cluster

import (
	"fmt"
	"strings"

	"github.com/hearthlab/hearth/router"
)

// storeView adds a node's model store to its view: health, models with sizes, prune owner.
func storeView(nv *router.NodeView, pr Peer) {
	nv.Storage = pr.Inventory.Storage
	nv.PruneOwner = pr.Meta.PruneOwner
	for _, m := range pr.Inventory.Stored {
		nv.Stored = append(nv.Stored, router.ModelSize{Name: m.Name, Size: m.Size})
	}
	if len(pr.Inventory.Models) > 0 {
		nv.Sizes = make(map[string]int64, len(pr.Inventory.Models))
		for _, m := range pr.Inventory.Models {
			nv.Sizes[m.Name] = m.Size
		}
	}
}

// storedOn names the nodes whose model store holds model, for a model no serving node
// offers now: it exists, but the nodes that could serve it are off or their Ollama is
// stopped ("unavailable", not "unknown").
func storedOn(peers []Peer, model string) []string {
	var out []string
	for _, pr := range peers {
		if pr.Inventory.OnStore(model) {
			out = append(out, pr.Name)
		}
	}
	return out
}

// storedError is the answer for a model that only a store holds.
func storedError(model string, stores []string) error {
	return fmt.Errorf("%w: %s is on the model store of %s, but no node that serves it is up (asleep, or its Ollama is stopped)",
		router.ErrNoCandidate, model, strings.Join(stores, ", "))
}

// PruneOwners names the alive members whose managed Ollama may prune the shared store.
func PruneOwners(peers []Peer) []string {
	var out []string
	for _, pr := range peers {
		if pr.Meta.PruneOwner {
			out = append(out, pr.Name)
		}
	}
	return out
}
