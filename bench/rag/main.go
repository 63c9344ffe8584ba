// Command rag measures hearth's retrieval: quality (nDCG@10, Recall@10, MRR@10) of the
// keyword, vector and hybrid modes on a BEIR-format dataset, beside a plain BM25 baseline
// computed in the same run; query latency (p50, p99) and CPU time per query at 10k and 100k
// chunks with 768-dim vectors, beside chromem-go's exhaustive search and a plain BM25 on the
// same data; and ingest throughput into both indexes with embedding excluded. It prints figures;
// nothing here passes or fails on time.
//
// The quality table is printed for each embedder: ragtest.HashEmbedder (a deterministic hashed
// bag of words, no model), whose vector arm measures the plumbing, not meaning; a real model,
// Universal Sentence Encoder lite, through the vectors `make rag-embeddings` precomputed for
// the dataset's texts (DATASET/vectors-use-lite.jsonl, committed for the default dataset, so no
// model nor npm is needed to measure it); and, with -ollama URL -embed-model NAME, a model
// served by Ollama's /api/embed (an agent's or Ollama's own URL). -dump-texts FILE writes the
// texts the quality run embeds, for bench/rag/realembed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/hearthlab/hearth/rag"
	"github.com/hearthlab/hearth/rag/ragtest"
)

func main() {
	data := flag.String("dataset", "bench/rag/testdata/home", "BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
	ollama := flag.String("ollama", "", "embed with a real model through this Ollama API URL (default: the deterministic hash embedder)")
	model := flag.String("embed-model", "nomic-embed-text", "the embed model with -ollama")
	sizes := flag.String("sizes", "10000,100000", "chunk counts for the latency table (comma-separated; empty skips it)")
	dims := flag.Int("dims", 768, "vector dimensions for the latency table")
	queries := flag.Int("queries", 100, "queries timed per mode and size")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the queries at the largest size to this file")
	vectors := flag.String("vectors", "", "real-model vectors for the dataset's texts, made by `make rag-embeddings` (default DATASET/"+vectorsFile+"; measured when present)")
	dump := flag.String("dump-texts", "", "write the texts the quality run embeds (one JSON string a line) to this file and exit")
	flag.Parse()
	ctx := context.Background()

	ds, err := loadDataset(*data)
	if err != nil {
		log.Fatalf("dataset: %v", err)
	}
	if *dump != "" {
		if err := dumpTexts(*dump, ds); err != nil {
			log.Fatalf("-dump-texts: %v", err)
		}
		fmt.Printf("wrote the %d texts the quality run embeds to %s\n", len(embeddedTexts(ds)), *dump)
		return
	}
	type embedder struct {
		name, model string
		emb         rag.Embedder
	}
	embs := []embedder{{"ragtest.HashEmbedder (hashed bag of words and trigrams, 256 dims, no model)", "hash", &ragtest.HashEmbedder{Dims: 256}}}
	if *vectors == "" {
		*vectors = filepath.Join(*data, vectorsFile)
	}
	switch pre, err := loadPrecomputed(*vectors); {
	case err == nil:
		embs = append(embs, embedder{pre.Name(), pre.Header.Model, pre})
	case errors.Is(err, fs.ErrNotExist):
		fmt.Printf("no real-model vectors (%s): `make rag-embeddings RAG_DATASET=%s` makes them\n", *vectors, *data)
	default:
		log.Fatalf("-vectors: %v", err)
	}
	if *ollama != "" {
		embs = append(embs, embedder{*model + " via " + *ollama, *model, &rag.Client{Base: *ollama}})
	}
	for i, e := range embs {
		if i > 0 {
			fmt.Println()
		}
		fmt.Printf("retrieval quality: %s, %d documents, %d queries; embedder %s\n", *data, len(ds.docs), len(ds.queries), e.name)
		printQuality(ctx, ds, e.emb, e.model)
		if cjk := subset(ds, hasCJK); len(cjk.queries) > 0 && len(cjk.queries) < len(ds.queries) {
			fmt.Printf("\nCJK queries only (%d):\n", len(cjk.queries))
			printQuality(ctx, cjk, e.emb, e.model)
			other := subset(ds, notCJK)
			fmt.Printf("\nthe other queries (%d, English):\n", len(other.queries))
			printQuality(ctx, other, e.emb, e.model)
		}
	}

	if strings.TrimSpace(*sizes) == "" {
		return
	}
	fmt.Printf("\nquery latency and CPU (one query at a time, top 10, %d-dim embedding-like vectors (ragtest.EmbeddingLike), Zipf-drawn texts):\n"+
		"hearth's vector arm scans one bit per dimension, re-scores the best 1024 (16 per result asked, if more) with int8 codes and re-ranks the best 4 per result with chromem-go's exact vectors;\n"+
		"its keyword arm is bleve BM25. CPU is the process's user+system time per query; each mode is compared with a reference run on the same data in the same process:\n"+
		"vector and hybrid with chromem-go's own exhaustive QueryEmbedding, keyword with the plain BM25 (an inverted index written out in bench/rag).\n"+
		"recall@10 is against chromem-go's exhaustive top 10. Ingest is into both indexes, embedding excluded.\n", *dims)
	// A minimum width keeps the columns of each size, flushed as it is measured, aligned.
	tw := tabwriter.NewWriter(os.Stdout, 12, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "chunks	search	p50	p99	CPU/query	p50 vs ref	CPU vs ref	recall@10	")
	list := strings.Split(*sizes, ",")
	var ingest []string
	for i, s := range list {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			log.Fatalf("-sizes: %q is not a chunk count", s)
		}
		profile := ""
		if i == len(list)-1 {
			profile = *cpuprofile
		}
		row, err := measureLatency(ctx, n, *dims, *queries, profile)
		if err != nil {
			log.Fatalf("latency at %d chunks: %v", n, err)
		}
		for _, m := range []struct{ name, ref string }{
			{refChromem, ""}, {refBM25, ""}, {rag.ModeKeyword, refBM25}, {rag.ModeVector, refChromem}, {rag.ModeHybrid, refChromem},
		} {
			t := row.times[m.name]
			vs, cpuVs, recall := "", "", ""
			if r, ok := row.times[m.ref]; ok {
				vs = fmt.Sprintf("%.2fx", t.p50.Seconds()/r.p50.Seconds())
				cpuVs = fmt.Sprintf("%.2fx", t.cpu.Seconds()/r.cpu.Seconds())
			}
			if t.recall >= 0 {
				recall = fmt.Sprintf("%.3f", t.recall)
			}
			name := m.name
			if m.ref == "" {
				name += " (ref)"
			} else {
				name = "hearth " + name
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", n, name, ms(t.p50), ms(t.p99), ms(t.cpu), vs, cpuVs, recall)
		}
		tw.Flush()
		ingest = append(ingest, fmt.Sprintf("%d chunks at %.0f chunks/s", n, row.ingestPerSecond))
	}
	fmt.Printf("ingest (bleve + chromem-go + compact index, embedding excluded): %s\n", strings.Join(ingest, ", "))
	fmt.Println("target: hybrid p50 <= 20 ms at 100k chunks (chromem-go's README: ~40 ms for 100k documents, exhaustive cosine)")
}

func printQuality(ctx context.Context, ds dataset, emb rag.Embedder, model string) {
	table, err := qualityTable(ctx, ds, emb, model)
	if err != nil {
		log.Fatalf("quality: %v", err)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tnDCG@10\tRecall@10\tMRR@10\tvs bm25 nDCG\t")
	base := table["bm25 baseline"].NDCG
	for _, m := range []string{"bm25 baseline", rag.ModeKeyword, rag.ModeVector, rag.ModeHybrid} {
		s := table[m]
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.2fx\t\n", m, s.NDCG, s.Recall, s.MRR, s.NDCG/base)
	}
	tw.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

func hasCJK(s string) bool {
	for _, r := range s {
		if unicode.Is(unicode.Han, r) {
			return true
		}
	}
	return false
}

func notCJK(s string) bool { return !hasCJK(s) }

// subset keeps the queries whose text satisfies keep (the corpus stays whole).
func subset(ds dataset, keep func(string) bool) dataset {
	out := dataset{docs: ds.docs, rel: ds.rel}
	for _, q := range ds.queries {
		if keep(q.Text) {
			out.queries = append(out.queries, q)
		}
	}
	return out
}
