package rag

import (
	"container/heap"
	"math"
	"runtime"
	"sync"
)

// flatIndex is a compact copy of a collection's vectors for search: each vector quantised to
// int8 with its own scale (a quarter of chromem-go's float32 memory), stored contiguously and
// scanned by every core without locks. Its order is approximate; Vectors re-ranks its best
// candidates with chromem-go's exact vectors. chromem-go stays the store of record.
type flatIndex struct {
	mu     sync.RWMutex
	dims   int
	ids    []string
	pos    map[string]int
	codes  []int8
	scales []float32
}

func newFlatIndex() *flatIndex { return &flatIndex{pos: map[string]int{}} }

func (f *flatIndex) put(id string, v []float32) {
	if len(v) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dims == 0 {
		f.dims = len(v)
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
	}
	code := f.codes[i*f.dims : (i+1)*f.dims]
	for k, x := range v {
		code[k] = int8(math.Round(float64(x / scale)))
	}
	f.scales[i] = scale
}

func (f *flatIndex) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.pos[id]
	if !ok {
		return
	}
	last := len(f.ids) - 1
	if i != last {
		f.ids[i] = f.ids[last]
		f.pos[f.ids[i]] = i
		copy(f.codes[i*f.dims:(i+1)*f.dims], f.codes[last*f.dims:])
		f.scales[i] = f.scales[last]
	}
	delete(f.pos, id)
	f.ids = f.ids[:last]
	f.codes = f.codes[:last*f.dims]
	f.scales = f.scales[:last]
}

func (f *flatIndex) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dims, f.ids, f.codes, f.scales = 0, nil, nil, nil
	f.pos = map[string]int{}
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

// minHeap keeps the best n scores seen, the worst on top.
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

// search returns the ids of about the n nearest vectors to q (ok false when q does not fit).
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
	total := len(f.ids)
	parts := max(1, min(runtime.GOMAXPROCS(0), total/4096))
	heaps := make([]minHeap, parts)
	var wg sync.WaitGroup
	for p := range parts {
		lo, hi := p*total/parts, (p+1)*total/parts
		wg.Go(func() {
			h := make(minHeap, 0, n+1)
			dims := f.dims
			for i := lo; i < hi; i++ {
				code := f.codes[i*dims : (i+1)*dims : (i+1)*dims]
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
				score := float32(s0+s1+s2+s3) * f.scales[i]
				if len(h) < n {
					heap.Push(&h, scored{score, i})
				} else if score > h[0].score {
					h[0] = scored{score, i}
					heap.Fix(&h, 0)
				}
			}
			heaps[p] = h
		})
	}
	wg.Wait()
	var all []scored
	for _, h := range heaps {
		all = append(all, h...)
	}
	// Best first.
	for a := 1; a < len(all); a++ {
		for b := a; b > 0 && all[b].score > all[b-1].score; b-- {
			all[b], all[b-1] = all[b-1], all[b]
		}
	}
	ids := make([]string, 0, min(n, len(all)))
	for _, s := range all[:min(n, len(all))] {
		ids = append(ids, f.ids[s.i])
	}
	return ids, true
}
