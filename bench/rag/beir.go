package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// dataset is a retrieval benchmark in BEIR's layout: corpus.jsonl, queries.jsonl and
// qrels/test.tsv (query-id, corpus-id, score; a header line).
type dataset struct {
	docs    []doc
	queries []query
	// rel[query][doc] is the graded relevance (> 0 relevant).
	rel map[string]map[string]int
}

type doc struct {
	ID    string `json:"_id"`
	Title string `json:"title"`
	Text  string `json:"text"`
}

type query struct {
	ID   string `json:"_id"`
	Text string `json:"text"`
}

func loadDataset(dir string) (dataset, error) {
	var ds dataset
	if err := readJSONL(filepath.Join(dir, "corpus.jsonl"), func(b []byte) error {
		var d doc
		err := json.Unmarshal(b, &d)
		ds.docs = append(ds.docs, d)
		return err
	}); err != nil {
		return ds, err
	}
	var all []query
	if err := readJSONL(filepath.Join(dir, "queries.jsonl"), func(b []byte) error {
		var q query
		err := json.Unmarshal(b, &q)
		all = append(all, q)
		return err
	}); err != nil {
		return ds, err
	}
	ds.rel = map[string]map[string]int{}
	f, err := os.Open(filepath.Join(dir, "qrels", "test.tsv"))
	if err != nil {
		return ds, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 0; sc.Scan(); line++ {
		cols := strings.Split(strings.TrimSpace(sc.Text()), "\t")
		if line == 0 && len(cols) > 0 && cols[0] == "query-id" {
			continue
		}
		if len(cols) != 3 {
			return ds, fmt.Errorf("qrels/test.tsv line %d: want query-id, corpus-id, score separated by tabs", line+1)
		}
		score, err := strconv.Atoi(cols[2])
		if err != nil {
			return ds, fmt.Errorf("qrels/test.tsv line %d: score %q: %w", line+1, cols[2], err)
		}
		if ds.rel[cols[0]] == nil {
			ds.rel[cols[0]] = map[string]int{}
		}
		ds.rel[cols[0]][cols[1]] = score
	}
	if err := sc.Err(); err != nil {
		return ds, err
	}
	for _, q := range all {
		if len(ds.rel[q.ID]) > 0 {
			ds.queries = append(ds.queries, q)
		}
	}
	if len(ds.docs) == 0 || len(ds.queries) == 0 {
		return ds, fmt.Errorf("%s: no documents or no judged queries", dir)
	}
	return ds, nil
}

func readJSONL(path string, each func([]byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		if err := each(sc.Bytes()); err != nil {
			return fmt.Errorf("%s line %d: %w", path, n, err)
		}
	}
	return sc.Err()
}
