package rag

import (
	"context"
	"errors"
	"fmt"

	"github.com/hearthlab/hearth/internal/logging"
)

// NewMemory returns a collection kept in memory only, for evaluation and benchmarks: Load
// fills it with prepared chunks and vectors in bulk. It has no manifest and no files.
func NewMemory(name string, emb Embedder, model string) (*Collection, error) {
	kw, err := OpenKeyword("")
	if err != nil {
		return nil, err
	}
	vec, err := OpenVectors("", emb, model)
	if err != nil {
		return nil, err
	}
	return &Collection{log: logging.OrDiscard(nil), emb: emb, model: model, x: &Extractor{}, kw: kw, vec: vec,
		meta: collectionMeta{Name: name, EmbedModel: model}, man: manifest{Docs: map[string]*DocEntry{}}, chunks: map[string]Chunk{},
		syncing: make(chan struct{}, 1)}, nil
}

// Load indexes prepared chunks (their IDs set) with their vectors, in batches: what an ingest
// writes, without extraction, embedding or the manifest. Memory collections only.
func (c *Collection) Load(ctx context.Context, chunks []Chunk, vecs [][]float32) error {
	if c.dir != "" {
		return errors.New("rag: Load is for memory collections")
	}
	if len(vecs) != len(chunks) {
		return fmt.Errorf("rag: Load: %d vectors for %d chunks", len(vecs), len(chunks))
	}
	// Each keyword batch is a bleve segment, and a memory index has no merger to join them;
	// 10k chunks a batch keeps a 100k collection's searches over as few segments as a merged
	// index on disk has.
	const batch = 10000
	for start := 0; start < len(chunks); start += batch {
		end := min(start+batch, len(chunks))
		part := chunks[start:end]
		ids := make([]string, len(part))
		for i, ch := range part {
			ids[i] = ch.ID
		}
		if err := c.kw.Replace("", part, nil); err != nil {
			return err
		}
		if err := c.vec.Add(ctx, "", "", ids, vecs[start:end]); err != nil {
			return err
		}
		c.mu.Lock()
		for _, ch := range part {
			c.chunks[ch.ID] = ch
		}
		c.mu.Unlock()
	}
	return nil
}
