package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// target is where a load goes: the vendor itself or the relay in front of it.
type target struct {
	name     string
	client   *http.Client
	url      string // the chat completions endpoint
	auth     string // the Authorization header
	answered atomic.Int64
}

// result collects one target's samples at one concurrency.
type result struct {
	lat, ttfb []time.Duration
	elapsed   time.Duration
	cpu       time.Duration
	failed    int
	err       error
}

func (r *result) merge(o result) {
	r.lat = append(r.lat, o.lat...)
	r.ttfb = append(r.ttfb, o.ttfb...)
	r.elapsed += o.elapsed
	r.cpu += o.cpu
	r.failed += o.failed
	if r.err == nil {
		r.err = o.err
	}
}

type summary struct {
	n                             int
	rps                           float64
	p50, p99, ttfb50, ttfb99, cpu time.Duration
}

func (r *result) stats() summary {
	slices.Sort(r.lat)
	slices.Sort(r.ttfb)
	n := len(r.lat)
	if n == 0 {
		return summary{}
	}
	return summary{
		n:   n,
		rps: float64(n) / r.elapsed.Seconds(),
		p50: pct(r.lat, 50), p99: pct(r.lat, 99),
		ttfb50: pct(r.ttfb, 50), ttfb99: pct(r.ttfb, 99),
		cpu: r.cpu / time.Duration(n),
	}
}

func pct(s []time.Duration, p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[(len(s)-1)*p/100]
}

// load sends up to n requests from conc workers for at most maxTime, timing each and the
// process's CPU over the run (client, relay and vendor share the process, so the difference
// between targets is the relay's share, TLS to it included).
func load(t *target, body []byte, stream bool, conc, n int, maxTime time.Duration) result {
	var (
		mu   sync.Mutex
		res  result
		wg   sync.WaitGroup
		left atomic.Int64
	)
	left.Store(int64(n))
	deadline := time.Now().Add(maxTime)
	cpu0 := cpuTime()
	start := time.Now()
	for range conc {
		wg.Go(func() {
			buf := make([]byte, 32<<10)
			for left.Add(-1) >= 0 && time.Now().Before(deadline) {
				lat, ttfb, err := once(t, body, stream, buf)
				mu.Lock()
				if err != nil {
					res.failed++
					if res.err == nil {
						res.err = fmt.Errorf("%s: %w", t.name, err)
					}
				} else {
					res.lat = append(res.lat, lat)
					res.ttfb = append(res.ttfb, ttfb)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.cpu = cpuTime() - cpu0
	return res
}

var doneEvent = []byte("data: [DONE]\n\n")

// once makes one chat request and reads the whole answer. ttfb is the time to the first read
// that carried body bytes: the first chunk of a stream. A stream must end with [DONE].
func once(t *target, body []byte, stream bool, buf []byte) (lat, ttfb time.Duration, err error) {
	req, err := http.NewRequest(http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", t.auth)
	start := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	t.answered.Add(1)
	var tail []byte // the last bytes read, to check the stream's end
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if ttfb == 0 {
				ttfb = time.Since(start)
			}
			tail = append(tail, buf[:n]...)
			if len(tail) > 64 {
				tail = tail[len(tail)-64:]
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, 0, rerr
		}
	}
	lat = time.Since(start)
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("status %d: %q", resp.StatusCode, tail)
	}
	if stream && !bytes.HasSuffix(tail, doneEvent) {
		return 0, 0, fmt.Errorf("stream did not end with [DONE]: ...%q", tail)
	}
	return lat, ttfb, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }
func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func firstErr(rs ...result) error {
	for _, r := range rs {
		if r.err != nil {
			return r.err
		}
	}
	return nil
}
