package rag

import (
	"slices"
	"testing"
)

func TestSharedRanks(t *testing.T) {
	hits := []Hit{{ID: "a", Score: 0.9}, {ID: "b", Score: 0.5}, {ID: "c", Score: 0.5}, {ID: "d", Score: 0.5}, {ID: "e", Score: 0.1}}
	if got, want := sharedRanks(hits), []float64{1, 3, 3, 3, 5}; !slices.Equal(got, want) {
		t.Errorf("sharedRanks = %v, want %v", got, want)
	}
	if got := sharedRanks(nil); len(got) != 0 {
		t.Errorf("sharedRanks(nil) = %v", got)
	}
}

// An arm whose hits all score alike (an embed model blind to the query's script) must not
// reorder the other arm's results: fused, the keyword order stands.
func TestFuseLeavesTiesToTheOtherArm(t *testing.T) {
	chunks := map[string]Chunk{}
	for _, id := range []string{"k1", "k2", "k3", "v1", "v2"} {
		chunks[id] = Chunk{ID: id}
	}
	kw := []Hit{{ID: "k1", Score: 9}, {ID: "k2", Score: 5}, {ID: "k3", Score: 1}}
	// The blind arm returns k3 first, k1 last, all with one score.
	vec := []Hit{{ID: "k3", Score: 0.7}, {ID: "v1", Score: 0.7}, {ID: "k2", Score: 0.7}, {ID: "v2", Score: 0.7}, {ID: "k1", Score: 0.7}}
	var got []string
	for _, r := range fuse(kw, vec, true, 3, chunks) {
		got = append(got, r.ID)
	}
	if want := []string{"k1", "k2", "k3"}; !slices.Equal(got, want) {
		t.Errorf("fused %v, want the keyword order %v", got, want)
	}
	// Without ties the vector arm does reorder: the keyword's second, which the vector arm
	// ranks first and alone, passes the keyword's first.
	vec = []Hit{{ID: "k2", Score: 0.9}, {ID: "v1", Score: 0.2}}
	got = got[:0]
	for _, r := range fuse(kw, vec, true, 2, chunks) {
		got = append(got, r.ID)
	}
	if want := []string{"k2", "k1"}; !slices.Equal(got, want) {
		t.Errorf("fused %v, want %v", got, want)
	}
}
