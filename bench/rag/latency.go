package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	chromem "github.com/philippgille/chromem-go"

	"github.com/hearthlab/hearth/rag"
	"github.com/hearthlab/hearth/rag/ragtest"
)

// synthetic makes n chunks of household-like text (a Zipf draw over a vocabulary, as words
// in real text are) with dims-dimensional vectors shaped as an embedding model's
// (ragtest.EmbeddingLike: topics, a shared direction, uneven dimensions), and queries with
// their own vectors from the same source.
func synthetic(n, dims int, seed uint64) ([]rag.Chunk, [][]float32, []string, [][]float32) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	gen := ragtest.NewEmbeddingLike(seed, dims, max(n/100, 10))
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
		vecs[i] = gen.Next()
	}
	queries := make([]string, 200)
	qvecs := make([][]float32, len(queries))
	seen := map[string]bool{}
	for i := range queries {
		for try := 0; try < 100 && (queries[i] == "" || seen[queries[i]]); try++ {
			q := make([]string, 2+rng.IntN(4))
			for j := range q {
				q[j] = zipf()
			}
			queries[i] = strings.Join(q, " ")
		}
		seen[queries[i]] = true
		qvecs[i] = gen.Next()
	}
	return chunks, vecs, queries, qvecs
}

func word(rng *rand.Rand, i int) string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 3+rng.IntN(7))
	for k := range b {
		b[k] = letters[rng.IntN(len(letters))]
	}
	return string(b) + fmt.Sprint(i%10)
}

// queryVectors is the embedder of the latency runs: each query text has its prepared vector.
type queryVectors map[string][]float32

func (q queryVectors) Embed(_ context.Context, _ string, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, t := range texts {
		v, ok := q[t]
		if !ok {
			return nil, fmt.Errorf("bench: no vector for %q", t)
		}
		out[i] = v
	}
	return out, nil
}

// timing is one search method's figures at one size.
type timing struct {
	p50, p99 time.Duration
	cpu      time.Duration // process CPU time (user + system) per query
	recall   float64       // recall@10 against chromem-go's exhaustive search (-1: not measured)
}

type latencyRow struct {
	chunks          int
	ingestPerSecond float64
	times           map[string]timing
}

// Names of the methods in the latency table.
const (
	refChromem = "chromem-go exhaustive"
	refBM25    = "plain BM25"
)

// measureLatency loads n synthetic chunks and times queries of each mode, one at a time,
// beside the references on the same data: chromem-go's exhaustive QueryEmbedding over the
// same vectors and the plain BM25 over the same texts.
func measureLatency(ctx context.Context, n, dims, queries int, profile string) (latencyRow, error) {
	chunks, vecs, qs, qvecs := synthetic(n, dims, uint64(n))
	emb := queryVectors{}
	for i, q := range qs {
		emb[q] = qvecs[i]
	}
	col, err := rag.NewMemory("latency", emb, "bench")
	if err != nil {
		return latencyRow{}, err
	}
	defer col.Close()
	start := time.Now()
	if err := col.Load(ctx, chunks, vecs); err != nil {
		return latencyRow{}, err
	}
	row := latencyRow{chunks: n, ingestPerSecond: float64(n) / time.Since(start).Seconds(), times: map[string]timing{}}

	ref := chromem.NewDB()
	refCol, err := ref.CreateCollection("ref", nil, func(context.Context, string) ([]float32, error) {
		return nil, fmt.Errorf("bench: the reference is given its vectors")
	})
	if err != nil {
		return row, err
	}
	docs := make([]chromem.Document, n)
	for i := range docs {
		docs[i] = chromem.Document{ID: chunks[i].ID, Embedding: vecs[i]}
	}
	if err := refCol.AddDocuments(ctx, docs, runtime.GOMAXPROCS(0)); err != nil {
		return row, err
	}
	docs = nil
	ds := dataset{docs: make([]doc, n)}
	for i, ch := range chunks {
		ds.docs[i] = doc{ID: ch.ID, Text: ch.Text}
	}
	plain := newBM25(ds)
	ds = dataset{}

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
	exact := make([][]string, queries)
	row.times[refChromem], err = timeQueries(queries, func(i int) ([]string, error) {
		res, err := refCol.QueryEmbedding(ctx, qvecs[i%len(qs)], 10, nil, nil)
		if err != nil {
			return nil, err
		}
		for _, r := range res {
			exact[i] = append(exact[i], r.ID)
		}
		return exact[i], nil
	}, nil)
	if err != nil {
		return row, err
	}
	if row.times[refBM25], err = timeQueries(queries, func(i int) ([]string, error) { return plain.rank(ctx, qs[i%len(qs)]) }, nil); err != nil {
		return row, err
	}
	for _, mode := range []string{rag.ModeKeyword, rag.ModeVector, rag.ModeHybrid} {
		var against [][]string
		if mode == rag.ModeVector {
			against = exact
		}
		row.times[mode], err = timeQueries(queries, func(i int) ([]string, error) {
			ans, err := col.Search(ctx, rag.Query{Text: qs[i%len(qs)], Mode: mode, TopK: 10})
			ids := make([]string, len(ans.Results))
			for k, r := range ans.Results {
				ids[k] = r.ID
			}
			return ids, err
		}, against)
		if err != nil {
			return row, err
		}
	}
	return row, nil
}

// timeQueries runs search for queries 0..n-1 one at a time, after a collection, and measures
// latency and the process's CPU time; with exact, also recall@10 against it.
func timeQueries(n int, search func(i int) ([]string, error), exact [][]string) (timing, error) {
	runtime.GC()
	times := make([]time.Duration, 0, n)
	found, total := 0, 0
	cpu0 := cpuTime()
	for i := range n {
		t0 := time.Now()
		ids, err := search(i)
		if err != nil {
			return timing{}, err
		}
		times = append(times, time.Since(t0))
		if exact != nil {
			for _, id := range exact[i] {
				total++
				if slices.Contains(ids, id) {
					found++
				}
			}
		}
	}
	cpu := cpuTime() - cpu0
	slices.Sort(times)
	t := timing{p50: times[len(times)/2], p99: times[min(len(times)-1, len(times)*99/100)], cpu: cpu / time.Duration(n), recall: -1}
	if total > 0 {
		t.recall = float64(found) / float64(total)
	}
	return t, nil
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
