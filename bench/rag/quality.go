package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/hearthlab/hearth/rag"
	"github.com/hearthlab/hearth/rag/ragtest"
)

// scores are the mean retrieval metrics at 10 over a dataset's queries.
type scores struct {
	NDCG, Recall, MRR float64
}

// ranker returns the ids of the best documents for a query, best first.
type ranker func(ctx context.Context, q string) ([]string, error)

func evaluate(ctx context.Context, ds dataset, rank ranker) (scores, error) {
	var s scores
	for _, q := range ds.queries {
		ids, err := rank(ctx, q.Text)
		if err != nil {
			return s, err
		}
		n, r, m := metricsAt10(ids, ds.rel[q.ID])
		s.NDCG += n
		s.Recall += r
		s.MRR += m
	}
	k := float64(len(ds.queries))
	return scores{s.NDCG / k, s.Recall / k, s.MRR / k}, nil
}

// metricsAt10 is nDCG@10 (graded gains, log2 discount), Recall@10 and MRR@10 of one ranking.
func metricsAt10(ids []string, rel map[string]int) (ndcg, recall, mrr float64) {
	ids = ids[:min(len(ids), 10)]
	relevant := 0
	var ideal []int
	for _, g := range rel {
		if g > 0 {
			relevant++
			ideal = append(ideal, g)
		}
	}
	if relevant == 0 {
		return 0, 0, 0
	}
	var dcg float64
	found := 0
	for i, id := range ids {
		if g := rel[id]; g > 0 {
			dcg += (math.Pow(2, float64(g)) - 1) / math.Log2(float64(i)+2)
			found++
			if mrr == 0 {
				mrr = 1 / float64(i+1)
			}
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(ideal)))
	var idcg float64
	for i, g := range ideal[:min(len(ideal), 10)] {
		idcg += (math.Pow(2, float64(g)) - 1) / math.Log2(float64(i)+2)
	}
	return dcg / idcg, float64(found) / float64(min(relevant, 10)), mrr
}

// indexDataset loads every document as one chunk of a memory collection, embedded by emb.
func indexDataset(ctx context.Context, ds dataset, emb rag.Embedder, model string) (*rag.Collection, error) {
	col, err := rag.NewMemory("bench", emb, model)
	if err != nil {
		return nil, err
	}
	chunks := corpusChunks(ds)
	texts := make([]string, len(chunks))
	for i, ch := range chunks {
		texts[i] = rag.IndexText(ch)
	}
	var vecs [][]float32
	for start := 0; start < len(texts); start += 32 {
		v, err := emb.Embed(ctx, model, texts[start:min(start+32, len(texts))])
		if err != nil {
			return nil, fmt.Errorf("embedding the corpus with %s: %w", model, err)
		}
		vecs = append(vecs, v...)
	}
	return col, col.Load(ctx, chunks, vecs)
}

// corpusChunks makes each document one chunk, as an ingest of a short file does.
func corpusChunks(ds dataset) []rag.Chunk {
	chunks := make([]rag.Chunk, len(ds.docs))
	for i, d := range ds.docs {
		chunks[i] = rag.Chunk{ID: d.ID, Source: d.ID, Title: d.Title, Text: d.Text}
	}
	return chunks
}

// embeddedTexts are the texts the quality run embeds, in order, each once: every chunk's
// rag.IndexText and every query as Collection.Search embeds it (trimmed).
func embeddedTexts(ds dataset) []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, ch := range corpusChunks(ds) {
		add(rag.IndexText(ch))
	}
	for _, q := range ds.queries {
		add(strings.TrimSpace(q.Text))
	}
	return out
}

func collectionRanker(col *rag.Collection, mode string) ranker {
	return func(ctx context.Context, q string) ([]string, error) {
		ans, err := col.Search(ctx, rag.Query{Text: q, Mode: mode, TopK: 10})
		if err != nil {
			return nil, err
		}
		ids := make([]string, len(ans.Results))
		for i, r := range ans.Results {
			ids[i] = r.Source
		}
		return ids, nil
	}
}

// bm25 is the plain baseline: Okapi BM25 (k1 1.2, b 0.75) over lower-cased words and CJK
// bigrams, no stemming, no stop words, written out here so that hearth's keyword arm is
// compared with the textbook formula on the same documents. An inverted index (each term's
// documents and counts) keeps it a fair reference for speed too.
type bm25 struct {
	ids      []string
	postings map[string][]posting
	lens     []int
	avgdl    float64
}

type posting struct {
	doc int32
	tf  int32
}

func newBM25(ds dataset) *bm25 {
	b := &bm25{postings: map[string][]posting{}}
	total := 0
	tf := map[string]int32{}
	for i, d := range ds.docs {
		toks := ragtest.Tokens(d.Title + " " + d.Text)
		clear(tf)
		for _, t := range toks {
			tf[t]++
		}
		for t, f := range tf {
			b.postings[t] = append(b.postings[t], posting{int32(i), f})
		}
		b.ids = append(b.ids, d.ID)
		b.lens = append(b.lens, len(toks))
		total += len(toks)
	}
	b.avgdl = float64(total) / float64(max(len(ds.docs), 1))
	return b
}

func (b *bm25) rank(_ context.Context, q string) ([]string, error) {
	const k1, bb = 1.2, 0.75
	n := float64(len(b.ids))
	scores := map[int32]float64{}
	for _, t := range ragtest.Tokens(q) {
		ps := b.postings[t]
		df := float64(len(ps))
		idf := math.Log(1 + (n-df+0.5)/(df+0.5))
		for _, p := range ps {
			f := float64(p.tf)
			scores[p.doc] += idf * f * (k1 + 1) / (f + k1*(1-bb+bb*float64(b.lens[p.doc])/b.avgdl))
		}
	}
	type hit struct {
		id    string
		score float64
	}
	hits := make([]hit, 0, len(scores))
	for d, s := range scores {
		hits = append(hits, hit{b.ids[d], s})
	}
	sort.Slice(hits, func(i, j int) bool {
		if hits[i].score != hits[j].score {
			return hits[i].score > hits[j].score
		}
		return hits[i].id < hits[j].id
	})
	ids := make([]string, 0, 10)
	for _, h := range hits[:min(len(hits), 10)] {
		ids = append(ids, h.id)
	}
	return ids, nil
}

// qualityTable measures the plain BM25 baseline and hearth's three modes on ds.
func qualityTable(ctx context.Context, ds dataset, emb rag.Embedder, model string) (map[string]scores, error) {
	col, err := indexDataset(ctx, ds, emb, model)
	if err != nil {
		return nil, err
	}
	defer col.Close()
	out := map[string]scores{}
	out["bm25 baseline"], err = evaluate(ctx, ds, newBM25(ds).rank)
	if err != nil {
		return nil, err
	}
	for _, mode := range []string{rag.ModeKeyword, rag.ModeVector, rag.ModeHybrid} {
		if out[mode], err = evaluate(ctx, ds, collectionRanker(col, mode)); err != nil {
			return nil, err
		}
	}
	return out, nil
}
