// Package ragtest holds test doubles for rag: a deterministic embedder, and writers of real
// PDF and Word files for the extractor's tests and the benchmark's corpora. Only tests and
// bench/rag import it.
package ragtest

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"sync/atomic"
	"unicode"
)

// HashEmbedder is a deterministic bag-of-words embedder: each lower-cased word (and each CJK
// bigram) is hashed to one of Dims dimensions with a sign, so texts that share words are
// near. It stands in for a real model where the test needs stable vectors, not meaning.
type HashEmbedder struct {
	Dims int
	// Models, when set, are the only models it knows; others get an error wrapping Missing.
	Models  []string
	Missing error
	Calls   atomic.Int64
	Texts   atomic.Int64
}

// Embed implements rag.Embedder.
func (h *HashEmbedder) Embed(ctx context.Context, model string, texts []string) ([][]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(h.Models) > 0 {
		known := false
		for _, m := range h.Models {
			known = known || m == model
		}
		if !known {
			return nil, fmt.Errorf("%w: model %s not found: run `ollama pull %s`", h.Missing, model, model)
		}
	}
	h.Calls.Add(1)
	h.Texts.Add(int64(len(texts)))
	dims := h.Dims
	if dims <= 0 {
		dims = 256
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		out[i] = Vector(t, dims)
	}
	return out, nil
}

// Vector is the hashed bag-of-words vector of text, normalised: stop words dropped, English
// words cut to a crude stem (so "tires" and "tire" meet), each word's character trigrams
// added at half weight (so "tyre" and "tire" come close).
func Vector(text string, dims int) []float32 {
	v := make([]float32, dims)
	add := func(tok string, w float32) {
		f := fnv.New64a()
		f.Write([]byte(tok))
		h := f.Sum64()
		sign := float32(1)
		if h&1 == 1 {
			sign = -1
		}
		v[(h>>1)%uint64(dims)] += sign * w
	}
	for _, tok := range Tokens(text) {
		if stopWords[tok] {
			continue
		}
		tok = stem(tok)
		add(tok, 1)
		if rs := []rune("^" + tok + "$"); len(rs) > 4 {
			for i := 0; i+3 <= len(rs); i++ {
				add("#"+string(rs[i:i+3]), 0.5)
			}
		}
	}
	return normalize(v)
}

var stopWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields("a an and are as at be by do does for from how in is it its of on or our should the to we what when where which who why with can much often long") {
		stopWords[w] = true
	}
}

// stem cuts common English endings.
func stem(w string) string {
	for _, suf := range []string{"ing", "ed", "es", "s", "ly"} {
		if len(w) > len(suf)+3 && strings.HasSuffix(w, suf) {
			return strings.TrimSuffix(w, suf)
		}
	}
	return w
}

func normalize(v []float32) []float32 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	if n == 0 {
		v[0] = 1
		return v
	}
	inv := float32(1 / math.Sqrt(n))
	for i := range v {
		v[i] *= inv
	}
	return v
}

// Tokens splits text into lower-case words, and CJK runs into bigrams.
func Tokens(text string) []string {
	var out []string
	var word []rune
	var cjk []rune
	flushWord := func() {
		if len(word) > 1 {
			out = append(out, strings.ToLower(string(word)))
		}
		word = word[:0]
	}
	flushCJK := func() {
		if len(cjk) == 1 {
			out = append(out, string(cjk))
		}
		for i := 0; i+1 < len(cjk); i++ {
			out = append(out, string(cjk[i:i+2]))
		}
		cjk = cjk[:0]
	}
	for _, r := range text {
		switch {
		case unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul):
			flushWord()
			cjk = append(cjk, r)
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			flushCJK()
			word = append(word, r)
		default:
			flushWord()
			flushCJK()
		}
	}
	flushWord()
	flushCJK()
	return out
}
