// Package loadgen is the load of hearth's overhead benchmarks: a fixed number of workers send
// requests, each timed, as fast as they can (Run, a closed loop) or at a set rate (RunPaced,
// an open loop), while the process's CPU time is read around the run. The
// benchmark programs (bench/...) import it; nothing else does.
package loadgen

import (
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Result collects one target's samples at one concurrency, over one or more runs.
type Result struct {
	Lat, TTFB []time.Duration
	Elapsed   time.Duration
	CPU       time.Duration
	Failed    int
	Err       error // the first failure
}

// Merge adds o's samples to r.
func (r *Result) Merge(o Result) {
	r.Lat = append(r.Lat, o.Lat...)
	r.TTFB = append(r.TTFB, o.TTFB...)
	r.Elapsed += o.Elapsed
	r.CPU += o.CPU
	r.Failed += o.Failed
	if r.Err == nil {
		r.Err = o.Err
	}
}

// add records one request: its times, or its failure.
func (r *Result) add(lat, ttfb time.Duration, err error) {
	if err != nil {
		r.Failed++
		if r.Err == nil {
			r.Err = err
		}
		return
	}
	r.Lat = append(r.Lat, lat)
	r.TTFB = append(r.TTFB, ttfb)
}

// Summary is a Result's figures.
type Summary struct {
	N                             int
	RPS                           float64
	P50, P99, TTFB50, TTFB99, CPU time.Duration // CPU: per request
}

// Stats sorts the samples and sums them up.
func (r *Result) Stats() Summary {
	slices.Sort(r.Lat)
	slices.Sort(r.TTFB)
	n := len(r.Lat)
	if n == 0 {
		return Summary{}
	}
	return Summary{
		N: n, RPS: float64(n) / r.Elapsed.Seconds(),
		P50: Pct(r.Lat, 50), P99: Pct(r.Lat, 99),
		TTFB50: Pct(r.TTFB, 50), TTFB99: Pct(r.TTFB, 99),
		CPU: r.CPU / time.Duration(n),
	}
}

// Pct is the p-th percentile of sorted samples.
func Pct(s []time.Duration, p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[(len(s)-1)*p/100]
}

// Once makes one request with a worker's own buffer and reports its latency and time to the
// first body byte.
type Once func(buf []byte) (lat, ttfb time.Duration, err error)

// Run sends up to n requests from conc workers for at most maxTime, timing each, and the
// process's CPU over the run: client, server and backend share the process, so the difference
// between two targets' CPU is the one in between.
func Run(conc, n int, maxTime time.Duration, once Once) Result {
	var (
		mu   sync.Mutex
		res  Result
		wg   sync.WaitGroup
		left atomic.Int64
	)
	left.Store(int64(n))
	deadline := time.Now().Add(maxTime)
	cpu0 := CPUTime()
	start := time.Now()
	for range conc {
		wg.Go(func() {
			buf := make([]byte, 32<<10)
			for left.Add(-1) >= 0 && time.Now().Before(deadline) {
				lat, ttfb, err := once(buf)
				mu.Lock()
				res.add(lat, ttfb, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.CPU = CPUTime() - cpu0
	return res
}

// RunPaced sends n requests at rate per second from conc workers (an open loop: request i is
// due at i/rate from the start, whatever happened to the others), for at most maxTime. A
// request that was due while every worker was busy counts the wait from when it was due. At a rate the machine carries, this measures what a request costs rather than
// how long it queues for a saturated CPU.
func RunPaced(conc, n int, rate float64, maxTime time.Duration, once Once) Result {
	var (
		mu   sync.Mutex
		res  Result
		wg   sync.WaitGroup
		next atomic.Int64
	)
	interval := time.Duration(float64(time.Second) / rate)
	cpu0 := CPUTime()
	start := time.Now()
	deadline := start.Add(maxTime)
	for range conc {
		wg.Go(func() {
			buf := make([]byte, 32<<10)
			for {
				i := next.Add(1) - 1
				due := start.Add(time.Duration(i) * interval)
				if i >= int64(n) || due.After(deadline) {
					return
				}
				// A worker that picks a request already due was busy: the wait is the
				// request's, and counts. One that must sleep for it counts from when it
				// wakes: a timer fires up to a millisecond late (the runtime polls the
				// network with a millisecond timeout), and that is the clock's, not the
				// target's.
				var late time.Duration
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
				} else {
					late = -wait
				}
				lat, ttfb, err := once(buf)
				mu.Lock()
				res.add(lat+late, ttfb+late, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.CPU = CPUTime() - cpu0
	return res
}

// CPUTime is the process's user and system CPU time so far.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// MS and US format durations for the tables.
func MS(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }
func US(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

// FirstErr is the first failure among results.
func FirstErr(rs ...Result) error {
	for _, r := range rs {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}

// Profiled runs run, writing a CPU profile of it to path unless path is "".
func Profiled(path string, run func() error) error {
	if path == "" {
		return run()
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	return run()
}
