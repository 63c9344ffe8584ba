package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/hearthlab/hearth/rag"
	"github.com/hearthlab/hearth/rag/ragtest"
)

// synthetic makes n chunks of household-like text (a Zipf draw over a vocabulary, as words
// in real text are) with random dims-dimensional unit vectors.
func synthetic(n, dims int, seed uint64) ([]rag.Chunk, [][]float32, []string) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	vocab := make([]string, 20000)
	for i := range vocab {
		vocab[i] = word(rng, i)
	}
	zipf := func() string {
		return vocab[int(math.Min(float64(len(vocab)-1), math.Floor(math.Pow(rng.Float64(), 3)*float64(len(vocab)))))]
	}
	chunks := make([]rag.Chunk, n)
	vecs := make([][]float32, n)
	for i := range chunks {
		words := make([]string, 60+rng.IntN(80))
		for j := range words {
			words[j] = zipf()
		}
		chunks[i] = rag.Chunk{ID: fmt.Sprintf("c%d", i), Source: fmt.Sprintf("docs/file%d.md", i/8), Position: i % 8, Text: strings.Join(words, " ")}
		v := make([]float32, dims)
		var norm float64
		for k := range v {
			v[k] = float32(rng.NormFloat64())
			norm += float64(v[k]) * float64(v[k])
		}
		inv := float32(1 / math.Sqrt(norm))
		for k := range v {
			v[k] *= inv
		}
		vecs[i] = v
	}
	queries := make([]string, 200)
	for i := range queries {
		q := make([]string, 2+rng.IntN(4))
		for j := range q {
			q[j] = zipf()
		}
		queries[i] = strings.Join(q, " ")
	}
	return chunks, vecs, queries
}

func word(rng *rand.Rand, i int) string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 3+rng.IntN(7))
	for k := range b {
		b[k] = letters[rng.IntN(len(letters))]
	}
	return string(b) + fmt.Sprint(i%10)
}

type latencyRow struct {
	chunks          int
	ingestPerSecond float64
	p50, p99        map[string]time.Duration
}

// measureLatency loads n synthetic chunks and times queries of each mode, one at a time.
func measureLatency(ctx context.Context, n, dims, queries int, profile string) (latencyRow, error) {
	chunks, vecs, qs := synthetic(n, dims, uint64(n))
	emb := &ragtest.HashEmbedder{Dims: dims}
	col, err := rag.NewMemory("latency", emb, "hash")
	if err != nil {
		return latencyRow{}, err
	}
	defer col.Close()
	start := time.Now()
	if err := col.Load(ctx, chunks, vecs); err != nil {
		return latencyRow{}, err
	}
	row := latencyRow{chunks: n, ingestPerSecond: float64(n) / time.Since(start).Seconds(),
		p50: map[string]time.Duration{}, p99: map[string]time.Duration{}}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return row, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return row, err
		}
		defer pprof.StopCPUProfile()
	}
	for _, mode := range []string{rag.ModeKeyword, rag.ModeVector, rag.ModeHybrid} {
		var times []time.Duration
		for i := range queries {
			t0 := time.Now()
			if _, err := col.Search(ctx, rag.Query{Text: qs[i%len(qs)], Mode: mode, TopK: 10}); err != nil {
				return row, err
			}
			times = append(times, time.Since(t0))
		}
		slices.Sort(times)
		row.p50[mode] = times[len(times)/2]
		row.p99[mode] = times[min(len(times)-1, len(times)*99/100)]
	}
	return row, nil
}
