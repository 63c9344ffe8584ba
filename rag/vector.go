package rag

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	chromem "github.com/philippgille/chromem-go"
)

// Embedder turns texts into vectors with a model; the agent's implementation calls
// /api/embed through its router, so any node with the model serves it.
type Embedder interface {
	Embed(ctx context.Context, model string, texts []string) ([][]float32, error)
}

// EmbedOptions bound embedding work: texts per call and calls at once.
type EmbedOptions struct {
	Batch       int
	Concurrency int
}

// embedAll embeds texts in batches, at most o.Concurrency batches at once, keeping order.
// progress (may be nil) hears how many texts are done.
func embedAll(ctx context.Context, e Embedder, model string, texts []string, o EmbedOptions, progress func(done int)) ([][]float32, error) {
	if o.Batch <= 0 {
		o.Batch = 32
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	out := make([][]float32, len(texts))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for start := 0; start < len(texts); start += o.Batch {
		end := min(start+o.Batch, len(texts))
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			vecs, err := e.Embed(ctx, model, texts[start:end])
			if err == nil && len(vecs) != end-start {
				err = fmt.Errorf("rag: embed model %s returned %d vectors for %d texts", model, len(vecs), end-start)
			}
			if err != nil {
				cancel(err)
				return
			}
			copy(out[start:end], vecs)
			mu.Lock()
			done += end - start
			d := done
			mu.Unlock()
			if progress != nil {
				progress(d)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// Vectors is a collection's vector store (chromem-go, persisted under its directory).
// Embeddings are always computed by hearth and passed in; the embedding func given to
// chromem-go (it would call OpenAI over the internet by default) uses the same Embedder.
type Vectors struct {
	db *chromem.DB

	mu  sync.RWMutex // col is replaced by Reset
	col *chromem.Collection

	flat *flatIndex
}

func (v *Vectors) collection() *chromem.Collection {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.col
}

// OpenVectors opens the store at dir ("" keeps it in memory).
func OpenVectors(dir string, e Embedder, model string) (*Vectors, error) {
	var db *chromem.DB
	if dir == "" {
		db = chromem.NewDB()
	} else {
		var err error
		if db, err = chromem.NewPersistentDB(dir, false); err != nil {
			return nil, fmt.Errorf("rag: vector store %s: %w", dir, err)
		}
	}
	if e == nil {
		return nil, errors.New("rag: vector store needs an embedder")
	}
	col, err := openIn(db, e, model)
	if err != nil {
		return nil, err
	}
	return &Vectors{db: db, col: col, flat: newFlatIndex()}, nil
}

// Add stores vectors for chunks of document docID in generation gen.
func (v *Vectors) Add(ctx context.Context, docID, gen string, ids []string, vecs [][]float32) error {
	if len(ids) == 0 {
		return nil
	}
	docs := make([]chromem.Document, len(ids))
	for i, id := range ids {
		docs[i] = chromem.Document{ID: id, Metadata: map[string]string{"doc": docID, "gen": gen}, Embedding: vecs[i]}
	}
	if err := v.collection().AddDocuments(ctx, docs, 4); err != nil {
		return fmt.Errorf("rag: vector store: %w", err)
	}
	for i, id := range ids {
		v.flat.put(id, unit(vecs[i]))
	}
	return nil
}

// unit is v scaled to length 1, as chromem-go stores it.
func unit(v []float32) []float32 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	if n == 0 || math.Abs(n-1) < 1e-6 {
		return v
	}
	inv := float32(1 / math.Sqrt(n))
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x * inv
	}
	return out
}

// Delete removes chunks by id.
func (v *Vectors) Delete(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := v.collection().Delete(ctx, nil, nil, ids...); err != nil {
		return fmt.Errorf("rag: vector store: %w", err)
	}
	for _, id := range ids {
		v.flat.remove(id)
	}
	return nil
}

// DeleteGeneration removes a document's chunks of one generation (a crashed write).
func (v *Vectors) DeleteGeneration(ctx context.Context, docID, gen string) error {
	if err := v.collection().Delete(ctx, map[string]string{"doc": docID, "gen": gen}, nil); err != nil {
		return fmt.Errorf("rag: vector store: %w", err)
	}
	return nil
}

// Search returns the n chunks nearest to q by cosine similarity: candidates from the compact
// index, re-ranked with the exact vectors; chromem-go's own exhaustive search when the
// compact index does not hold every vector.
func (v *Vectors) Search(ctx context.Context, q []float32, n int) ([]Hit, error) {
	col := v.collection()
	n = min(n, col.Count())
	if n <= 0 {
		return nil, nil
	}
	if v.flat.len() == col.Count() {
		if hits, ok := v.rerank(ctx, col, unit(q), n); ok {
			return hits, nil
		}
	}
	res, err := col.QueryEmbedding(ctx, q, n, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("rag: vector search: %w", err)
	}
	hits := make([]Hit, len(res))
	for i, r := range res {
		hits[i] = Hit{ID: r.ID, Score: float64(r.Similarity)}
	}
	return hits, nil
}

// Count is the number of vectors stored.
func (v *Vectors) Count() int { return v.collection().Count() }

func (v *Vectors) rerank(ctx context.Context, col *chromem.Collection, q []float32, n int) ([]Hit, bool) {
	cands, ok := v.flat.search(q, max(4*n, 40))
	if !ok {
		return nil, false
	}
	hits := make([]Hit, 0, len(cands))
	for _, id := range cands {
		doc, err := col.GetByID(ctx, id)
		if err != nil || len(doc.Embedding) != len(q) {
			continue
		}
		var s float32
		for i, x := range q {
			s += x * doc.Embedding[i]
		}
		hits = append(hits, Hit{ID: id, Score: float64(s)})
	}
	slices.SortFunc(hits, func(a, b Hit) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return hits[:min(n, len(hits))], true
}

// Index reports whether chunk id has a vector, and puts it in the compact search index.
func (v *Vectors) Index(ctx context.Context, id string) bool {
	doc, err := v.collection().GetByID(ctx, id)
	if err != nil {
		return false
	}
	v.flat.put(id, doc.Embedding)
	return true
}

// Reset drops every vector (before a reindex with another model).
func (v *Vectors) Reset(e Embedder, model string) error {
	if err := v.db.DeleteCollection("chunks"); err != nil {
		return fmt.Errorf("rag: vector store reset: %w", err)
	}
	nv, err := openIn(v.db, e, model)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.col = nv
	v.mu.Unlock()
	v.flat.reset()
	return nil
}

func openIn(db *chromem.DB, e Embedder, model string) (*chromem.Collection, error) {
	col, err := db.GetOrCreateCollection("chunks", nil, func(ctx context.Context, text string) ([]float32, error) {
		vs, err := e.Embed(ctx, model, []string{text})
		if err != nil {
			return nil, err
		}
		if len(vs) != 1 {
			return nil, fmt.Errorf("rag: embed model %s returned %d vectors for 1 text", model, len(vs))
		}
		return vs[0], nil
	})
	if err != nil {
		return nil, fmt.Errorf("rag: vector store: %w", err)
	}
	return col, nil
}
