package rag

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/hearthlab/hearth/rag/ragtest"
)

// exactTop is the brute-force top n by cosine over unit vectors.
func exactTop(ids []string, vecs [][]float32, q []float32, n int) []string {
	type hit struct {
		id string
		s  float32
	}
	hits := make([]hit, len(vecs))
	for i, v := range vecs {
		var s float32
		for k, x := range q {
			s += x * v[k]
		}
		hits[i] = hit{ids[i], s}
	}
	slices.SortFunc(hits, func(a, b hit) int { return cmp.Compare(b.s, a.s) })
	out := make([]string, n)
	for i := range out {
		out[i] = hits[i].id
	}
	return out
}

// TestBinaryPassRecall: on embedding-like vectors, the binary first pass, its int8 re-score
// and the exact re-rank find at least 95% of the exhaustive top 10, and of the top 40 that
// a hybrid query asks the vector arm for.
func TestBinaryPassRecall(t *testing.T) {
	ctx := context.Background()
	const n, dims = 20000, 768
	gen := ragtest.NewEmbeddingLike(7, dims, 200)
	v, err := OpenVectors("", &ragtest.HashEmbedder{Dims: dims}, "m")
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	vecs := make([][]float32, n)
	for i := range ids {
		ids[i], vecs[i] = fmt.Sprintf("c%d", i), gen.Next()
	}
	for start := 0; start < n; start += 5000 {
		if err := v.Add(ctx, "d", "g", ids[start:start+5000], vecs[start:start+5000]); err != nil {
			t.Fatal(err)
		}
	}
	if c := bqCandidates(40); c >= n {
		t.Fatalf("%d candidates of %d vectors: the binary pass would not run", c, n)
	}
	for _, k := range []int{10, 40} {
		found, total := 0, 0
		for range 20 {
			q := gen.Next()
			got, err := v.Search(ctx, q, k)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range exactTop(ids, vecs, q, k) {
				total++
				if slices.ContainsFunc(got, func(h Hit) bool { return h.ID == id }) {
					found++
				}
			}
		}
		recall := float64(found) / float64(total)
		t.Logf("recall@%d %.3f", k, recall)
		if recall < 0.95 {
			t.Errorf("recall@%d %.3f against exhaustive search, want at least 0.95", k, recall)
		}
	}
}

// TestCompactIndexRebuiltOnOpen: a persistent store opened again and indexed chunk by chunk,
// as a collection's recovery does, holds the same vectors and answers as before; a chunk put
// again with a new vector and a removed one are followed by the binary codes too.
func TestCompactIndexRebuiltOnOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const n, dims = 1500, 96
	gen := ragtest.NewEmbeddingLike(3, dims, 30)
	emb := &ragtest.HashEmbedder{Dims: dims}
	v, err := OpenVectors(dir, emb, "m")
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	vecs := make([][]float32, n)
	for i := range ids {
		ids[i], vecs[i] = fmt.Sprintf("c%d", i), gen.Next()
	}
	must(t, v.Add(ctx, "d", "g", ids, vecs))
	vecs[7] = gen.Next()
	must(t, v.Add(ctx, "d", "g", ids[7:8], vecs[7:8]))
	must(t, v.Delete(ctx, ids[:5]))
	ids, vecs = ids[5:], vecs[5:]
	queries := make([][]float32, 20)
	for i := range queries {
		queries[i] = gen.Next()
	}
	check := func(v *Vectors, when string) {
		t.Helper()
		if v.flat.len() != len(ids) || v.Count() != len(ids) {
			t.Fatalf("%s: compact index %d, store %d, want %d", when, v.flat.len(), v.Count(), len(ids))
		}
		found := 0
		for _, q := range queries {
			got, err := v.Search(ctx, q, 10)
			must(t, err)
			for _, id := range exactTop(ids, vecs, q, 10) {
				if slices.ContainsFunc(got, func(h Hit) bool { return h.ID == id }) {
					found++
				}
			}
		}
		if found < len(queries)*10*95/100 {
			t.Errorf("%s: %d of %d exact neighbours found", when, found, len(queries)*10)
		}
	}
	check(v, "after adds and deletes")
	again, err := OpenVectors(dir, emb, "m")
	must(t, err)
	if again.flat.len() != 0 {
		t.Fatalf("a store just opened has %d vectors in its compact index before indexing", again.flat.len())
	}
	for _, id := range ids {
		if !again.Index(ctx, id) {
			t.Fatalf("chunk %s has no vector after reopening", id)
		}
	}
	check(again, "reopened")

	// A reindex with another model starts the compact index again, at the new model's size.
	must(t, again.Reset(&ragtest.HashEmbedder{Dims: 32}, "other"))
	if again.flat.len() != 0 || again.Count() != 0 {
		t.Fatalf("after a reset: compact index %d, store %d", again.flat.len(), again.Count())
	}
	other := ragtest.NewEmbeddingLike(4, 32, 5)
	ids, vecs = ids[:1200], vecs[:1200]
	for i := range vecs {
		vecs[i] = other.Next()
	}
	for i := range queries {
		queries[i] = other.Next()
	}
	must(t, again.Add(ctx, "d", "g2", ids, vecs))
	check(again, "reindexed")
}
