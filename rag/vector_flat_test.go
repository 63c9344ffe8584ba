package rag

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hearthlab/hearth/rag/ragtest"
)

func randomUnit(rng *rand.Rand, dims int) []float32 {
	v := make([]float32, dims)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return unit(v)
}

// TestCompactIndexFindsTheExactNeighbours: the int8 index's candidates, re-ranked with the
// exact vectors, give the same top 10 as chromem-go's exhaustive search, also after deletes.
func TestCompactIndexFindsTheExactNeighbours(t *testing.T) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	v, err := OpenVectors("", &ragtest.HashEmbedder{Dims: 64}, "m")
	if err != nil {
		t.Fatal(err)
	}
	const n = 6000
	ids := make([]string, n)
	vecs := make([][]float32, n)
	for i := range ids {
		ids[i], vecs[i] = fmt.Sprintf("c%d", i), randomUnit(rng, 64)
	}
	if err := v.Add(ctx, "d", "g", ids, vecs); err != nil {
		t.Fatal(err)
	}
	if err := v.Delete(ctx, ids[:500]); err != nil {
		t.Fatal(err)
	}
	if v.flat.len() != n-500 || v.Count() != n-500 {
		t.Fatalf("compact index %d, store %d, want %d each", v.flat.len(), v.Count(), n-500)
	}
	same, total := 0, 0
	for range 20 {
		q := randomUnit(rng, 64)
		got, err := v.Search(ctx, q, 10)
		if err != nil {
			t.Fatal(err)
		}
		exact, err := v.collection().QueryEmbedding(ctx, q, 10, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range exact {
			total++
			if slices.ContainsFunc(got, func(h Hit) bool { return h.ID == e.ID }) {
				same++
			}
		}
		for _, h := range got {
			if slices.Contains(ids[:500], h.ID) {
				t.Fatalf("deleted chunk %s found", h.ID)
			}
		}
	}
	if same < total*98/100 {
		t.Errorf("%d of %d exact neighbours found, want at least 98%%", same, total)
	}
}
