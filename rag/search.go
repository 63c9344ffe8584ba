package rag

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Search modes.
const (
	ModeHybrid  = "hybrid"
	ModeKeyword = "keyword"
	ModeVector  = "vector"
)

// rrfK is the reciprocal rank fusion constant (Cormack et al.): a result's fused score is
// the sum over arms of 1/(k + rank).
const rrfK = 60

// Query asks a collection for chunks.
type Query struct {
	Text string `json:"query"`
	// Mode is hybrid (default), keyword or vector.
	Mode string `json:"mode,omitempty"`
	// TopK is how many results (default 5, at most 100).
	TopK int `json:"top_k,omitempty"`
	// Source keeps results whose source matches this glob ("**" spans folders).
	Source string `json:"source,omitempty"`
	// Meta keeps results whose metadata equal these values: title, ext (".pdf"), page.
	Meta map[string]string `json:"meta,omitempty"`
}

// Result is one chunk found, with its scores.
type Result struct {
	Chunk
	// Score is the fused score in hybrid mode, else the arm's own (BM25 or cosine).
	Score float64 `json:"score"`
	// KeywordRank and VectorRank are the chunk's 1-based ranks in each arm (0: not found).
	KeywordRank int `json:"keyword_rank,omitempty"`
	VectorRank  int `json:"vector_rank,omitempty"`
}

// Answer is a search's results, with what the caller should know.
type Answer struct {
	Results []Result `json:"results"`
	Mode    string   `json:"mode"`
	// Warning says when the answer is degraded (vectors unusable until reindex).
	Warning string `json:"warning,omitempty"`
}

// ErrBadQuery marks a query that cannot be run as asked.
var ErrBadQuery = errors.New("bad query")

// Search runs q: both arms in parallel in hybrid mode, fused by reciprocal rank.
func (c *Collection) Search(ctx context.Context, q Query) (Answer, error) {
	q.Text = strings.TrimSpace(q.Text)
	if q.Text == "" {
		return Answer{}, fmt.Errorf(`%w: "query" is empty: send the question to search for`, ErrBadQuery)
	}
	if q.Mode == "" {
		q.Mode = ModeHybrid
	}
	if q.TopK <= 0 {
		q.TopK = 5
	}
	q.TopK = min(q.TopK, 100)
	if q.Source != "" {
		if _, err := path.Match(strings.ReplaceAll(q.Source, "**", "*"), ""); err != nil {
			return Answer{}, fmt.Errorf("%w: source glob %q: %v", ErrBadQuery, q.Source, err)
		}
	}
	ans := Answer{Mode: q.Mode}
	useKW, useVec := true, true
	switch q.Mode {
	case ModeHybrid:
	case ModeKeyword:
		useVec = false
	case ModeVector:
		useKW = false
	default:
		return Answer{}, fmt.Errorf("%w: mode %q: use hybrid, keyword or vector", ErrBadQuery, q.Mode)
	}
	if why := c.NeedsReindex(); why != "" && useVec {
		if !useKW {
			return Answer{}, fmt.Errorf("%w: %s", ErrNeedsReindex, why)
		}
		useVec, ans.Mode, ans.Warning = false, ModeKeyword, "keyword search only: "+why
	}
	pool := q.TopK * 4
	if q.Source != "" || len(q.Meta) > 0 {
		pool = max(pool, 200)
	}
	var kwHits, vecHits []Hit
	var kwErr, vecErr error
	var wg sync.WaitGroup
	if useKW {
		wg.Go(func() { kwHits, kwErr = c.kw.Search(q.Text, pool) })
	}
	if useVec {
		c.mu.RLock()
		model := c.meta.EmbedModel
		c.mu.RUnlock()
		wg.Go(func() {
			var v [][]float32
			if v, vecErr = c.emb.Embed(ctx, model, []string{q.Text}); vecErr == nil {
				if len(v) != 1 {
					vecErr = fmt.Errorf("rag: embed model returned %d vectors for 1 query", len(v))
					return
				}
				vecHits, vecErr = c.vec.Search(ctx, v[0], pool)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(kwErr, vecErr); err != nil {
		return Answer{}, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	keep := func(hits []Hit) []Hit {
		out := hits[:0:0]
		for _, h := range hits {
			if ch, ok := c.chunks[h.ID]; ok && matches(ch, q) {
				out = append(out, h)
			}
		}
		return out
	}
	kwHits, vecHits = keep(kwHits), keep(vecHits)
	ans.Results = fuse(kwHits, vecHits, useKW && useVec, q.TopK, c.chunks)
	return ans, nil
}

// fuse ranks by reciprocal rank fusion when both arms ran, else by the one arm's order.
func fuse(kw, vec []Hit, both bool, k int, chunks map[string]Chunk) []Result {
	byID := map[string]*Result{}
	var order []*Result
	add := func(hits []Hit, kwArm bool) {
		ranks := sharedRanks(hits)
		for i, h := range hits {
			r := byID[h.ID]
			if r == nil {
				r = &Result{Chunk: chunks[h.ID]}
				byID[h.ID] = r
				order = append(order, r)
			}
			if kwArm {
				r.KeywordRank = i + 1
			} else {
				r.VectorRank = i + 1
			}
			if both {
				r.Score += 1 / (rrfK + ranks[i])
			} else {
				r.Score = h.Score
			}
		}
	}
	add(kw, true)
	add(vec, false)
	slices.SortStableFunc(order, func(a, b *Result) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	out := make([]Result, 0, min(k, len(order)))
	for _, r := range order[:min(k, len(order))] {
		out = append(out, *r)
	}
	return out
}

// sharedRanks gives each hit (in the arm's order) its rank for fusion, tied scores sharing
// the mean of the ranks they span (fractional ranking, as rank statistics treat ties). An arm
// that cannot tell its hits apart — an embed model that maps every word of a script it does
// not know to one vector, so that all those chunks score alike — then adds the same to each
// and leaves their order to the other arm, instead of an arbitrary order of its own; and the
// fused order no longer depends on how an index happened to order equal scores.
func sharedRanks(hits []Hit) []float64 {
	ranks := make([]float64, len(hits))
	for i := 0; i < len(hits); {
		j := i + 1
		for j < len(hits) && sameScore(hits[j].Score, hits[i].Score) {
			j++
		}
		mean := float64(i+1+j) / 2 // the mean of ranks i+1 … j
		for k := i; k < j; k++ {
			ranks[k] = mean
		}
		i = j
	}
	return ranks
}

// sameScore: equal up to float32 rounding (scores come from float32 vectors).
func sameScore(a, b float64) bool {
	return math.Abs(a-b) <= 1e-6*math.Max(math.Abs(a), math.Abs(b))
}

func matches(ch Chunk, q Query) bool {
	if q.Source != "" && !Glob(q.Source, ch.Source) {
		return false
	}
	for k, v := range q.Meta {
		var have string
		switch k {
		case "title":
			have = ch.Title
		case "ext":
			have = strings.ToLower(filepath.Ext(ch.Source))
		case "page":
			have = strconv.Itoa(ch.Page)
		default:
			return false
		}
		if !strings.EqualFold(have, v) {
			return false
		}
	}
	return true
}

// Glob matches a slash-separated path against a pattern where "*" stays within a folder and
// "**" spans any number of folders; a pattern without a slash matches the file's base name.
func Glob(pattern, name string) bool {
	if !strings.Contains(pattern, "/") {
		ok, _ := path.Match(pattern, path.Base(name))
		return ok
	}
	return globParts(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func globParts(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if globParts(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}
