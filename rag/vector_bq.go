package rag

import (
	"container/heap"
	"math"
	"math/bits"
	"runtime"
	"sync"
)

// The binary first pass: each vector x is kept as one bit per dimension, the sign of its
// residual r = x - c from the index's centre c (the mean of the vectors, so that the bits
// split the data rather than repeating the direction every embedding shares), with two
// numbers: how many bits are set and f = |r|²/|r|₁. For a unit query q, x·q = c·q + r·q and
// c·q is the same for every x, so the vectors rank by r·q, estimated as f·Σₖ sign(rₖ)·qₖ
// (RaBitQ's estimator without its random rotation: sign(r)·r = |r|₁). The query is quantised
// to 4 bits per dimension and split into bit planes, so Σ over the set bits of qₖ is four
// AND+popcounts per 64 dimensions: 12 words per 768-dim vector, 9.6 MB for 100k of them, a
// scan of a few milliseconds where the int8 codes (77 MB) take tens.

// bqPlanes is the query's bits per dimension.
const bqPlanes = 4

// bqCandidates is how many vectors the binary pass keeps for the int8 pass when that is
// asked for its best n: enough that the estimate's error rarely drops a true neighbour. Of
// 100k vectors of 768 dims, the exact top 10 keeps 0.97 on uniform noise (the hardest case)
// and 0.98 on embedding-like vectors (bench/rag); TestBinaryPassRecall checks 20k.
func bqCandidates(n int) int { return max(4*n, 1024) }

// bqEncode sets vector i's bits, count and factor from its int8 code and the centre.
// Callers hold f.mu for writing.
func (f *flatIndex) bqEncode(i int) {
	code := f.codes[i*f.dims : (i+1)*f.dims]
	words := f.bits[i*f.words : (i+1)*f.words]
	clear(words)
	scale := f.scales[i]
	var l1, l2 float64
	ones := 0
	for k, c := range code {
		r := float64(c)*float64(scale) - float64(f.centre[k])
		if r > 0 {
			words[k/64] |= 1 << (k % 64)
			ones++
		}
		l1 += math.Abs(r)
		l2 += r * r
	}
	f.ones[i] = uint16(ones)
	f.factors[i] = 0
	if l1 > 0 {
		f.factors[i] = float32(l2 / l1)
	}
}

// bqRecentre makes the centre the mean of the vectors held and encodes them all again. put
// calls it each time the count doubles, so the work stays proportional to the vectors put.
func (f *flatIndex) bqRecentre() {
	n := len(f.ids)
	f.centredAt = n
	if n == 0 {
		return
	}
	for k := range f.centre {
		f.centre[k] = float32(f.sum[k] / float64(n))
	}
	for i := range n {
		f.bqEncode(i)
	}
}

// bqQuery is a query prepared for the binary pass.
type bqQuery struct {
	planes [][bqPlanes]uint64 // per word of 64 dimensions, the query's bit j of each
	lo     float64            // qₖ ≈ lo + step·uₖ, uₖ in [0, 15]
	step   float64
	sum    float64 // Σₖ of the quantised qₖ
}

func (f *flatIndex) bqPrepare(q []float32) bqQuery {
	lo, hi := q[0], q[0]
	for _, x := range q {
		lo, hi = min(lo, x), max(hi, x)
	}
	step := float64(hi-lo) / (1<<bqPlanes - 1)
	if step == 0 {
		step = 1
	}
	p := bqQuery{planes: make([][bqPlanes]uint64, f.words), lo: float64(lo), step: step}
	var units int
	for k, x := range q {
		u := int(math.Round((float64(x) - p.lo) / step))
		units += u
		for j := range bqPlanes {
			if u>>j&1 == 1 {
				p.planes[k/64][j] |= 1 << (k % 64)
			}
		}
	}
	p.sum = float64(len(q))*p.lo + step*float64(units)
	return p
}

// bqSearch returns the indexes of about the best n vectors for q by the binary estimate, in
// no particular order. Callers hold f.mu for reading.
func (f *flatIndex) bqSearch(q []float32, n int) []int {
	p := f.bqPrepare(q)
	total := len(f.ids)
	parts := max(1, min(runtime.GOMAXPROCS(0), total/8192))
	tops := make([]topN, parts)
	var wg sync.WaitGroup
	for part := range parts {
		lo, hi := part*total/parts, (part+1)*total/parts
		wg.Go(func() {
			t := topN{limit: n, items: make([]scored, 0, n)}
			words := f.words
			planes := p.planes[:words:words]
			for i := lo; i < hi; i++ {
				code := f.bits[i*words : (i+1)*words : (i+1)*words]
				units := 0
				for w := range planes {
					b, pl := code[w], &planes[w]
					units += bits.OnesCount64(b&pl[0]) + 2*bits.OnesCount64(b&pl[1]) +
						4*bits.OnesCount64(b&pl[2]) + 8*bits.OnesCount64(b&pl[3])
				}
				set := p.lo*float64(f.ones[i]) + p.step*float64(units)
				score := float32(float64(f.factors[i]) * (2*set - p.sum))
				if len(t.items) < t.limit || score > t.items[0].score {
					t.offer(score, i)
				}
			}
			tops[part] = t
		})
	}
	wg.Wait()
	out := make([]int, 0, n*parts)
	for _, t := range tops {
		for _, s := range t.items {
			out = append(out, s.i)
		}
	}
	return out
}

// topN keeps the limit best scores offered, the worst of them at items[0].
type topN struct {
	limit int
	items minHeap
}

func (t *topN) offer(score float32, i int) {
	if len(t.items) < t.limit {
		heap.Push(&t.items, scored{score, i})
	} else if score > t.items[0].score {
		t.items[0] = scored{score, i}
		heap.Fix(&t.items, 0)
	}
}

// minHeap is container/heap's heap of scores, the worst on top.
type minHeap []scored

func (h minHeap) Len() int           { return len(h) }
func (h minHeap) Less(a, b int) bool { return h[a].score < h[b].score }
func (h minHeap) Swap(a, b int)      { h[a], h[b] = h[b], h[a] }
func (h *minHeap) Push(x any)        { *h = append(*h, x.(scored)) }
func (h *minHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
