package cluster

import (
	"slices"
	"testing"
)

// TestPlanSwapsTowardTheBestPlacement: three nodes that hold one model each start with the
// popular model on the small nodes; the planner's steps lead to the best placement, one load
// at a time, and no step unloads a model's only copy.
func TestPlanSwapsTowardTheBestPlacement(t *testing.T) {
	both := []string{"llama", "qwen"}
	node := func(name string, slots int, perSlot float64, res string) planNode {
		return planNode{name: name, slots: slots, holds: 1, res: []string{res}, can: both,
			rate: map[string]float64{"llama": float64(slots) * perSlot, "qwen": float64(slots) * perSlot}}
	}
	in := planInput{
		nodes:  []planNode{node("a", 4, 10, "qwen"), node("b", 2, 5, "llama"), node("c", 1, 2.5, "llama")},
		models: both,
		demand: map[string]float64{"llama": 20.4, "qwen": 8.75},
	}
	for range 5 {
		step, ok := in.nextStep()
		if !ok {
			break
		}
		if step.victim != "" && !in.heldElsewhere(in.current(), slices.IndexFunc(in.nodes, func(n planNode) bool { return n.name == step.node }), step.victim) {
			t.Fatalf("step %+v unloads the only copy of %s", step, step.victim)
		}
		for i := range in.nodes {
			if in.nodes[i].name == step.node {
				in.nodes[i].res = []string{step.model}
			}
		}
	}
	got := map[string]string{}
	for _, n := range in.nodes {
		got[n.name] = n.res[0]
	}
	if got["a"] != "llama" || got["b"] != "qwen" || got["c"] != "qwen" {
		t.Fatalf("placement after the steps: %v, want a: llama, b and c: qwen", got)
	}
	if s := in.score(in.current()); s > planBusy {
		t.Fatalf("busiest model at %.2f of its capacity, want at most %.2f", s, planBusy)
	}
	if _, ok := in.nextStep(); ok {
		t.Fatal("a further step from the best placement")
	}
}

// TestPlanLeavesEnoughAlone: a placement whose busiest model is under planBusy is kept.
func TestPlanLeavesEnoughAlone(t *testing.T) {
	in := planInput{
		nodes: []planNode{
			{name: "a", slots: 1, holds: 1, res: []string{"m"}, can: []string{"m"}, rate: map[string]float64{"m": 10}},
			{name: "b", slots: 1, holds: 1, can: []string{"m"}, rate: map[string]float64{"m": 10}},
		},
		models: []string{"m"},
		demand: map[string]float64{"m": 7},
	}
	if step, ok := in.nextStep(); ok {
		t.Fatalf("step %+v at 70 %% of capacity", step)
	}
	in.demand["m"] = 9
	if step, ok := in.nextStep(); !ok || step.node != "b" || step.victim != "" {
		t.Fatalf("at 90 %%: step %+v, %v; want a load on b that evicts nothing", step, ok)
	}
}

// TestPlanLeavesOtherRoutersModelsAlone: a node that other routers are using is not made to
// unload its model: this router cannot see their demand.
func TestPlanLeavesOtherRoutersModelsAlone(t *testing.T) {
	in := planInput{
		nodes: []planNode{
			{name: "a", slots: 1, holds: 1, res: []string{"m1"}, can: []string{"m1", "m2"}, rate: map[string]float64{"m1": 10, "m2": 10}},
			{name: "b", slots: 1, holds: 1, res: []string{"m2"}, can: []string{"m1", "m2"}, rate: map[string]float64{"m1": 10, "m2": 10}, others: 1},
		},
		models: []string{"m1"}, // m2 is not asked of this router: only others use it
		demand: map[string]float64{"m1": 30},
	}
	if step, ok := in.nextStep(); ok {
		t.Fatalf("step %+v unloads m2 from b, which another router is using", step)
	}
	in.nodes[1].others = 0
	if step, ok := in.nextStep(); !ok || step.node != "b" || step.model != "m1" {
		t.Fatalf("with b idle: step %+v, %v; want m1 on b", step, ok)
	}
}
