package rag

import (
	"errors"
	"fmt"
	"unicode"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/keyword"
	"github.com/blevesearch/bleve/v2/analysis/lang/cjk"
	"github.com/blevesearch/bleve/v2/analysis/lang/en"
	"github.com/blevesearch/bleve/v2/analysis/lang/ru"
	"github.com/blevesearch/bleve/v2/index/scorch"
	"github.com/blevesearch/bleve/v2/mapping"
	"github.com/blevesearch/bleve/v2/search/query"
	index "github.com/blevesearch/bleve_index_api"
)

// Each chunk's text goes to the field of its script's analyzer: English (Porter stemming,
// stop words), Russian (Snowball stemming, stop words) or CJK (bigrams, since Chinese and
// Japanese are written without spaces). A query is analysed by all three and searched in each.
const (
	fieldEN  = "en"
	fieldRU  = "ru"
	fieldCJK = "cjk"
	fieldDoc = "doc"
)

// Keyword is a collection's BM25 index (bleve), updated in batches per document.
type Keyword struct {
	idx bleve.Index
}

type keywordDoc struct {
	Doc string `json:"doc"`
	EN  string `json:"en,omitempty"`
	RU  string `json:"ru,omitempty"`
	CJK string `json:"cjk,omitempty"`
}

func keywordMapping() mapping.IndexMapping {
	m := bleve.NewIndexMapping()
	m.ScoringModel = index.BM25Scoring
	m.DefaultAnalyzer = en.AnalyzerName
	dm := bleve.NewDocumentStaticMapping()
	text := func(analyzer string) *mapping.FieldMapping {
		f := bleve.NewTextFieldMapping()
		f.Analyzer = analyzer
		f.Store = false
		f.IncludeTermVectors = false
		return f
	}
	dm.AddFieldMappingsAt(fieldEN, text(en.AnalyzerName))
	dm.AddFieldMappingsAt(fieldRU, text(ru.AnalyzerName))
	dm.AddFieldMappingsAt(fieldCJK, text(cjk.AnalyzerName))
	docField := bleve.NewKeywordFieldMapping()
	docField.Analyzer = keyword.Name
	docField.Store = false
	dm.AddFieldMappingsAt(fieldDoc, docField)
	m.DefaultMapping = dm
	return m
}

// OpenKeyword opens the index at dir, creating it when missing; "" keeps it in memory.
func OpenKeyword(dir string) (*Keyword, error) {
	if dir == "" {
		// Scorch in memory (no path, no persister): bleve's NewMemOnly uses the older
		// upsidedown index, which is slow to fill and has no BM25.
		idx, err := bleve.NewUsing("", keywordMapping(), scorch.Name, scorch.Name, nil)
		return &Keyword{idx: idx}, err
	}
	idx, err := bleve.Open(dir)
	if errors.Is(err, bleve.ErrorIndexPathDoesNotExist) {
		idx, err = bleve.New(dir, keywordMapping())
	}
	if err != nil {
		return nil, fmt.Errorf("rag: keyword index %s: %w", dir, err)
	}
	return &Keyword{idx: idx}, nil
}

// Close releases the index.
func (k *Keyword) Close() error { return k.idx.Close() }

// language picks the analyzer field for a text by its letters.
func language(s string) string {
	var latin, cyr, cjkn int
	for _, r := range s {
		switch {
		case unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul):
			cjkn++
		case unicode.Is(unicode.Cyrillic, r):
			cyr++
		case unicode.IsLetter(r):
			latin++
		}
	}
	// A CJK character carries about as much as a short Latin word.
	switch {
	case cjkn*4 >= latin && cjkn >= cyr && cjkn > 0:
		return fieldCJK
	case cyr > latin:
		return fieldRU
	default:
		return fieldEN
	}
}

// Replace removes the chunks with ids remove and indexes chunks, in one batch.
func (k *Keyword) Replace(docID string, chunks []Chunk, remove []string) error {
	b := k.idx.NewBatch()
	for _, id := range remove {
		b.Delete(id)
	}
	for _, c := range chunks {
		d := keywordDoc{Doc: docID}
		text := IndexText(c)
		switch language(text) {
		case fieldCJK:
			d.CJK = text
		case fieldRU:
			d.RU = text
		default:
			d.EN = text
		}
		if err := b.Index(c.ID, d); err != nil {
			return fmt.Errorf("rag: keyword index %s: %w", c.ID, err)
		}
	}
	if err := k.idx.Batch(b); err != nil {
		return fmt.Errorf("rag: keyword index: %w", err)
	}
	return nil
}

// Delete removes chunks by id.
func (k *Keyword) Delete(ids []string) error { return k.Replace("", nil, ids) }

// Hit is one search result: a chunk id and its score in that arm.
type Hit struct {
	ID    string
	Score float64
}

// Search returns the best n chunks for q by BM25.
func (k *Keyword) Search(q string, n int) ([]Hit, error) {
	if n <= 0 {
		return nil, nil
	}
	var arms []query.Query
	for _, f := range []string{fieldEN, fieldRU, fieldCJK} {
		m := bleve.NewMatchQuery(q)
		m.SetField(f)
		arms = append(arms, m)
	}
	req := bleve.NewSearchRequestOptions(bleve.NewDisjunctionQuery(arms...), n, 0, false)
	res, err := k.idx.Search(req)
	if err != nil {
		return nil, fmt.Errorf("rag: keyword search: %w", err)
	}
	hits := make([]Hit, 0, len(res.Hits))
	for _, h := range res.Hits {
		hits = append(hits, Hit{ID: h.ID, Score: h.Score})
	}
	return hits, nil
}

// IDs lists every chunk id in the index, for reconciling with the manifest.
func (k *Keyword) IDs() ([]string, error) {
	const page = 10000
	var ids []string
	after := []string(nil)
	for range 10000 { // up to 100M chunks
		req := bleve.NewSearchRequestOptions(bleve.NewMatchAllQuery(), page, 0, false)
		req.SortBy([]string{"_id"})
		if after != nil {
			req.SearchAfter = after
		}
		res, err := k.idx.Search(req)
		if err != nil {
			return nil, fmt.Errorf("rag: keyword ids: %w", err)
		}
		for _, h := range res.Hits {
			ids = append(ids, h.ID)
		}
		if len(res.Hits) < page {
			return ids, nil
		}
		after = []string{res.Hits[len(res.Hits)-1].ID}
	}
	return ids, nil
}

// Count is the number of chunks indexed.
func (k *Keyword) Count() (uint64, error) { return k.idx.DocCount() }

// IndexText is what is searched and embedded for a chunk: its title and headings weigh as words
// of it. bench/rag embeds the same text, so that its precomputed vectors are of what hearth embeds.
func IndexText(c Chunk) string {
	s := c.Title
	for _, h := range c.Heading {
		s += "\n" + h
	}
	return s + "\n" + c.Text
}
