package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/router"
)

func TestMembershipGossipsTheStore(t *testing.T) {
	a, b, _ := startTrio(t, nil)
	health := &router.StorageView{Dir: "/mnt/nas/ollama-models", Required: true, Mounted: true, FSType: "nfs4", Healthy: true, CheckedAt: time.Now()}
	a.local.set(func(meta *Meta, inv *router.Inventory) {
		meta.PruneOwner = true
		inv.Stored = []router.ModelInfo{{Name: "qwen3:14b", Size: 9e9}}
		inv.Storage = health
	})
	a.m.LocalChanged()
	hearthtest.Eventually(t, "b sees a's store", waitTimeout, func() bool {
		pr, ok := peerNamed(b.m, "a")
		return ok && pr.Inventory.Storage != nil && pr.Inventory.OnStore("qwen3:14b") && pr.Meta.PruneOwner
	})
	pr, _ := peerNamed(b.m, "a")
	if st := pr.Inventory.Storage; st.Dir != health.Dir || st.FSType != "nfs4" || !st.Mounted || !st.Healthy || pr.Inventory.Stored[0].Size != 9e9 {
		t.Errorf("b sees a's store as %+v, models %+v", st, pr.Inventory.Stored)
	}
	if owners := PruneOwners(b.m.Peers()); len(owners) != 1 || owners[0] != "a" {
		t.Errorf("prune owners %v", owners)
	}

	// A health change alone is news.
	before := InventoryHash(pr.Inventory)
	a.local.set(func(_ *Meta, inv *router.Inventory) {
		inv.Storage = &router.StorageView{Dir: health.Dir, Required: true, Mounted: true, FSType: "nfs4", Error: "stat timed out"}
	})
	a.m.LocalChanged()
	hearthtest.Eventually(t, "b sees a's store go unhealthy", waitTimeout, func() bool {
		pr, ok := peerNamed(b.m, "a")
		return ok && pr.Inventory.Storage != nil && !pr.Inventory.Storage.Healthy
	})
	pr, _ = peerNamed(b.m, "a")
	if InventoryHash(pr.Inventory) == before {
		t.Error("the hash did not change with the store's health")
	}
}

func TestPickerStoreOnly(t *testing.T) {
	nas := Peer{Name: "nas", Meta: Meta{Role: RoleRouter, StorageOK: true}}
	nas.Inventory.Stored = []router.ModelInfo{{Name: "qwen3:14b"}}
	p, _ := newTestPicker(t, PickerConfig{}, nas, peer("gpu2", 2, []string{"tiny:latest"}, nil))
	_, err := p.Pick(t.Context(), router.PickRequest{Model: "qwen3:14b"})
	if !errors.Is(err, router.ErrNoCandidate) || !strings.Contains(err.Error(), "on the model store of nas, but no node that serves it is up") {
		t.Fatalf("a model only the store holds: %v", err)
	}
	_, err = p.Pick(t.Context(), router.PickRequest{Model: "nope:latest"})
	if !errors.Is(err, router.ErrUnknownModel) {
		t.Fatalf("a model nowhere: %v", err)
	}
}

func TestPickerUnhealthyStoreNoColdLoads(t *testing.T) {
	sick := peer("sick", 4, []string{"big:latest", "tiny:latest"}, []string{"tiny:latest"})
	sick.Meta.StorageOK = false
	p, _ := newTestPicker(t, PickerConfig{}, sick)
	tg := pick(t, p, "tiny:latest", "") // loaded: served from memory
	if tg.Node != "sick" {
		t.Fatalf("warm pick went to %s", tg.Node)
	}
	tg.Done(router.Outcome{})
	_, err := p.Pick(t.Context(), router.PickRequest{Model: "big:latest"})
	if !errors.Is(err, router.ErrNoCandidate) || !strings.Contains(err.Error(), "sick's model storage is not answering") {
		t.Fatalf("a cold load on a node whose store hangs: %v", err)
	}
	// Not answering and not mounted are different repairs: say which.
	sick.Inventory.Storage = &router.StorageView{Dir: "/mnt/nas", Required: true, Error: "not on a network filesystem"}
	p, _ = newTestPicker(t, PickerConfig{}, sick)
	_, err = p.Pick(t.Context(), router.PickRequest{Model: "big:latest"})
	if !errors.Is(err, router.ErrNoCandidate) || !strings.Contains(err.Error(), "sick's model store /mnt/nas is not mounted") {
		t.Fatalf("a cold load on a node whose store is not mounted: %v", err)
	}
}
