package ragtest

import (
	"math"
	"math/rand/v2"
)

// EmbeddingLike draws unit vectors shaped as a text embedding model's are, rather than as
// uniform noise: a direction every vector shares (embeddings of one model are far from
// orthogonal), topics (clusters of uneven spread) and dimensions of uneven variance. With
// 768 dimensions and a thousand topics over 100k vectors, a draw's nearest neighbours have a
// cosine of about 0.5 and a random pair about 0.2. Queries are more draws: questions about
// what the documents say.
type EmbeddingLike struct {
	rng      *rand.Rand
	dims     int
	shared   []float32
	dimScale []float64
	topics   [][]float32
	spread   []float64
}

// NewEmbeddingLike returns a deterministic source of dims-dimensional vectors over topics.
func NewEmbeddingLike(seed uint64, dims, topics int) *EmbeddingLike {
	e := &EmbeddingLike{rng: rand.New(rand.NewPCG(seed, seed+1)), dims: dims}
	e.dimScale = make([]float64, dims)
	for k := range e.dimScale {
		e.dimScale[k] = math.Exp(0.5 * e.rng.NormFloat64())
	}
	e.shared = e.gauss()
	for range max(topics, 1) {
		e.topics = append(e.topics, e.gauss())
		e.spread = append(e.spread, 1+e.rng.Float64())
	}
	return e
}

// gauss is a unit vector of the dimensions' variances.
func (e *EmbeddingLike) gauss() []float32 {
	v := make([]float32, e.dims)
	for k := range v {
		v[k] = float32(e.rng.NormFloat64() * e.dimScale[k])
	}
	return normalize(v)
}

// Next is one more vector.
func (e *EmbeddingLike) Next() []float32 {
	t := e.rng.IntN(len(e.topics))
	noise := e.gauss()
	v := make([]float32, e.dims)
	for k := range v {
		v[k] = 1.2*e.shared[k] + e.topics[t][k] + float32(e.spread[t])*noise[k]
	}
	return normalize(v)
}
