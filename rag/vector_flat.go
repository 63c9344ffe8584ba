package rag

import (
	"cmp"
	"math"
	"slices"
	"sync"
)

// flatIndex is a compact copy of a collection's vectors for search: each vector quantised to
// int8 with its own scale (a quarter of chromem-go's float32 memory), and to one bit per
// dimension (vector_bq.go, a thirty-second), stored contiguously. A search scans the bits with
// every core, re-scores the best thousand or so with the int8 codes, and Vectors re-ranks the
// best of those with chromem-go's exact vectors. chromem-go stays the store of record.
type flatIndex struct {
	mu     sync.RWMutex
	dims   int
	ids    []string
	pos    map[string]int
	codes  []int8
	scales []float32

	// The binary codes: words uint64 per vector; the centre and the running sum it is the
	// mean of (of the int8 values); the count when the centre was last set.
	words     int
	bits      []uint64
	ones      []uint16
	factors   []float32
	centre    []float32
	sum       []float64
	centredAt int
}

func newFlatIndex() *flatIndex { return &flatIndex{pos: map[string]int{}} }

func (f *flatIndex) put(id string, v []float32) {
	if len(v) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dims == 0 {
		f.dims, f.words = len(v), (len(v)+63)/64
		f.centre, f.sum = make([]float32, f.dims), make([]float64, f.dims)
	}
	if len(v) != f.dims {
		return // another model's vector: searches fall back to chromem-go
	}
	var maxAbs float32
	for _, x := range v {
		maxAbs = max(maxAbs, float32(math.Abs(float64(x))))
	}
	scale := maxAbs / 127
	if scale == 0 {
		scale = 1
	}
	i, ok := f.pos[id]
	if !ok {
		i = len(f.ids)
		f.pos[id] = i
		f.ids = append(f.ids, id)
		f.codes = append(f.codes, make([]int8, f.dims)...)
		f.scales = append(f.scales, 0)
		f.bits = append(f.bits, make([]uint64, f.words)...)
		f.ones = append(f.ones, 0)
		f.factors = append(f.factors, 0)
	} else {
		f.addToSum(i, -1)
	}
	code := f.codes[i*f.dims : (i+1)*f.dims]
	for k, x := range v {
		code[k] = int8(math.Round(float64(x / scale)))
	}
	f.scales[i] = scale
	f.addToSum(i, 1)
	if len(f.ids) >= 2*f.centredAt {
		f.bqRecentre()
	} else {
		f.bqEncode(i)
	}
}

// addToSum adds vector i's int8 values, times sign, to the running sum.
func (f *flatIndex) addToSum(i int, sign float64) {
	scale := sign * float64(f.scales[i])
	for k, c := range f.codes[i*f.dims : (i+1)*f.dims] {
		f.sum[k] += float64(c) * scale
	}
}

func (f *flatIndex) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.pos[id]
	if !ok {
		return
	}
	f.addToSum(i, -1)
	last := len(f.ids) - 1
	if i != last {
		f.ids[i] = f.ids[last]
		f.pos[f.ids[i]] = i
		copy(f.codes[i*f.dims:(i+1)*f.dims], f.codes[last*f.dims:])
		f.scales[i] = f.scales[last]
		copy(f.bits[i*f.words:(i+1)*f.words], f.bits[last*f.words:])
		f.ones[i], f.factors[i] = f.ones[last], f.factors[last]
	}
	delete(f.pos, id)
	f.ids = f.ids[:last]
	f.codes = f.codes[:last*f.dims]
	f.scales = f.scales[:last]
	f.bits = f.bits[:last*f.words]
	f.ones, f.factors = f.ones[:last], f.factors[:last]
	// After many removals the centre is set again once the count doubles from here.
	f.centredAt = min(f.centredAt, last)
}

func (f *flatIndex) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dims, f.ids, f.codes, f.scales = 0, nil, nil, nil
	f.pos = map[string]int{}
	f.words, f.bits, f.ones, f.factors, f.centre, f.sum, f.centredAt = 0, nil, nil, nil, nil, nil, 0
}

func (f *flatIndex) len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.ids)
}

type scored struct {
	score float32
	i     int
}

// search returns the ids of about the n nearest vectors to q, best first (ok false when q
// does not fit): the binary pass's candidates, or every vector when there are few, ranked by
// their int8 codes.
func (f *flatIndex) search(q []float32, n int) ([]string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if len(q) != f.dims || n <= 0 {
		return nil, false
	}
	var maxAbs float32
	for _, x := range q {
		maxAbs = max(maxAbs, float32(math.Abs(float64(x))))
	}
	if maxAbs == 0 {
		maxAbs = 1
	}
	qc := make([]int32, f.dims)
	for k, x := range q {
		qc[k] = int32(math.Round(float64(x / maxAbs * 127)))
	}
	t := topN{limit: n, items: make([]scored, 0, n)}
	if c := bqCandidates(n); c < len(f.ids) {
		for _, i := range f.bqSearch(q, c) {
			t.offer(f.int8Score(qc, i), i)
		}
	} else {
		for i := range f.ids {
			t.offer(f.int8Score(qc, i), i)
		}
	}
	best := t.items
	slices.SortFunc(best, func(a, b scored) int { return cmp.Compare(b.score, a.score) })
	ids := make([]string, len(best))
	for k, s := range best {
		ids[k] = f.ids[s.i]
	}
	return ids, true
}

// int8Score is q's dot product with vector i's int8 code, in the code's scale.
func (f *flatIndex) int8Score(qc []int32, i int) float32 {
	dims := f.dims
	code := f.codes[i*dims : (i+1)*dims : (i+1)*dims]
	qc = qc[:dims:dims]
	var s0, s1, s2, s3 int32
	k := 0
	for ; k+4 <= dims; k += 4 {
		s0 += qc[k] * int32(code[k])
		s1 += qc[k+1] * int32(code[k+1])
		s2 += qc[k+2] * int32(code[k+2])
		s3 += qc[k+3] * int32(code[k+3])
	}
	for ; k < dims; k++ {
		s0 += qc[k] * int32(code[k])
	}
	return float32(s0+s1+s2+s3) * f.scales[i]
}
