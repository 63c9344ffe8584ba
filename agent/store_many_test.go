package agent

import (
	"fmt"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/router/cluster"
)

// TestStoreOfManyModels: a store of 200 models (with long names) is gossiped in the
// inventory, not the node meta, which stays under memberlist's 512 bytes; the other agents
// see all of them.
func TestStoreOfManyModels(t *testing.T) {
	var names []string
	for i := range 200 {
		names = append(names, fmt.Sprintf("someone/a-model-with-a-rather-long-name-%03d:q4_K_M-instruct", i))
	}
	dir, mounts := testStore(t, "nfs4", names...)
	ms := startCluster(t,
		memberSpec{name: "nas", mutate: withStore(dir, true), opts: []Option{WithMountInfo(mounts)}},
		memberSpec{name: "gpu", models: []string{"tiny"}},
	)
	hearthtest.Eventually(t, "gpu sees the 200 models of the NAS store", waitLimit, func() bool {
		nv, ok := nodeNamed(clusterView(t, ms[1]), "nas")
		return ok && nv.Storage != nil && nv.Storage.Healthy && len(nv.Stored) == 200
	})
	nv, _ := nodeNamed(clusterView(t, ms[1]), "nas")
	if nv.Stored[0].Name != names[0] || nv.Stored[199].Name != names[199] || nv.Stored[7].Size <= 4096 {
		t.Errorf("stored models seen as %+v ... %+v", nv.Stored[0], nv.Stored[199])
	}

	// The NAS's own meta, as its gossip sends it, with the same store.
	store := newNodeStore(func() config.Storage { c := config.DefaultAgent(); withStore(dir, true)(&c); return c.Storage }(),
		options{mountInfo: mounts}, nil)
	local := &localNode{store: store, prune: true, api: "http://nas.lan:11500"}
	hearthtest.Eventually(t, "the store's 200 models are read", waitLimit, func() bool {
		store.probe.Check(t.Context())
		return len(local.Inventory().Stored) == 200
	})
	meta := local.Meta()
	meta.InvHash = cluster.InventoryHash(local.Inventory())
	b, err := msgpack.Marshal(&meta)
	if err != nil || len(b) > cluster.MaxMetaSize {
		t.Fatalf("meta with a 200-model store is %d bytes (%v), limit %d", len(b), err, cluster.MaxMetaSize)
	}
}
