package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// job is one request of the workload: when it arrives (from the start of the run), for which
// model, and in which conversation.
type job struct {
	at    time.Duration
	model string
	conv  int // conversation number; its turns share the first user message
	turn  int // 1 for the opening message
}

// workload builds the arrival sequence every strategy replays: Poisson arrivals at rate per
// second, each either opening a conversation (model picked by share) or continuing one of
// the recent open ones, so that about turns requests belong to each conversation.
func workload(n int, rate float64, models []string, shares []float64, turns float64, seed uint64) []job {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	type conv struct {
		model string
		turns int
	}
	var convs []conv
	const recent = 32 // a continued conversation is one of the newest few: chats are short-lived
	jobs := make([]job, 0, n)
	var at time.Duration
	for range n {
		at += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		var c int
		if len(convs) == 0 || rng.Float64() < 1/turns {
			convs = append(convs, conv{model: pickShare(rng, models, shares)})
			c = len(convs) - 1
		} else {
			c = len(convs) - 1 - rng.IntN(min(recent, len(convs)))
		}
		convs[c].turns++
		jobs = append(jobs, job{at: at, model: convs[c].model, conv: c, turn: convs[c].turns})
	}
	return jobs
}

func pickShare(rng *rand.Rand, models []string, shares []float64) string {
	x := rng.Float64()
	for i, s := range shares {
		if x < s {
			return models[i]
		}
		x -= s
	}
	return models[len(models)-1]
}

// body is the /api/chat request of j: the conversation so far, streamed. The first user
// message names the conversation, which is what hearth keys session affinity on.
func (j job) body() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"model":%q,"stream":true,"messages":[`, j.model)
	for t := 1; t <= j.turn; t++ {
		if t > 1 {
			fmt.Fprintf(&b, `{"role":"assistant","content":"answer %d"},`, t-1)
		}
		fmt.Fprintf(&b, `{"role":"user","content":"conversation %d, question %d"}`, j.conv, t)
		if t < j.turn {
			b.WriteByte(',')
		}
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// result is what one request saw.
type result struct {
	job
	node    string        // X-Hearth-Node
	latency time.Duration // from the scheduled arrival to the end of the stream
	ttft    time.Duration // from the scheduled arrival to the first NDJSON line
	start   time.Time     // the scheduled arrival
	err     string        // "" for a complete 200 stream
}

func (r result) failed() bool { return r.err != "" }

// send runs one streaming chat and checks the stream: every line JSON from the model, the
// last one "done":true, no error event.
func send(ctx context.Context, client *http.Client, base string, j job, start time.Time) result {
	res := result{job: j, start: start}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/chat", bytes.NewReader(j.body()))
	if err != nil {
		res.err = err.Error()
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		res.err = "no answer: " + shortErr(err)
		res.latency = time.Since(start)
		return res
	}
	defer resp.Body.Close()
	res.node = resp.Header.Get("X-Hearth-Node")
	br := bufio.NewReaderSize(resp.Body, 4096)
	var last []byte
	for {
		line, err := br.ReadSlice('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			if last == nil {
				res.ttft = time.Since(start)
			}
			last = append(last[:0], line...)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			res.err = "stream broken: " + shortErr(err)
			res.latency = time.Since(start)
			return res
		}
	}
	res.latency = time.Since(start)
	switch {
	case resp.StatusCode != http.StatusOK:
		res.err = fmt.Sprintf("status %d: %.120s", resp.StatusCode, bytes.TrimSpace(last))
	case bytes.Contains(last, []byte(`"error"`)):
		res.err = fmt.Sprintf("error in stream: %.120s", bytes.TrimSpace(last))
	case !bytes.Contains(last, []byte(`"done":true`)):
		res.err = "stream ended without done:true"
	}
	return res
}

func shortErr(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "deadline of the run reached"
	}
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// replay sends jobs open-loop: each at its own arrival time, whether or not earlier ones
// have finished, until all are done or ctx ends. Jobs not sent by then fail as "not sent".
// onSend, when set, is called with each job's index just before it goes out.
func replay(ctx context.Context, client *http.Client, base string, jobs []job, onSend func(i int)) []result {
	results := make([]result, len(jobs))
	start := time.Now()
	var wg sync.WaitGroup
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for i, j := range jobs {
		at := start.Add(j.at)
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			for k := i; k < len(jobs); k++ {
				results[k] = result{job: jobs[k], err: "not sent: deadline of the run reached"}
			}
			break
		}
		if onSend != nil {
			onSend(i)
		}
		wg.Go(func() { results[i] = send(ctx, client, base, j, at) })
	}
	wg.Wait()
	return results
}

// summary is the figures of one strategy's run over the measured requests.
type summary struct {
	requests, failed int
	failedWarm       int // failures among the warm-up requests
	p50, p99         time.Duration
	p99ok            time.Duration // over answered requests only
	ttft50, ttft99   time.Duration
	byNode           map[string]int // answered requests by X-Hearth-Node
	firstErr         string
}

// failedLatency ranks a failed request after every answered one in the percentiles: a
// strategy that drops requests must not look faster for it.
const failedLatency = time.Duration(math.MaxInt64)

// summarize computes percentiles over the requests from index from on (the ones before are
// the warm-up), failed ones ranking last; failures are counted over all requests.
func summarize(results []result, from int) summary {
	s := summary{byNode: map[string]int{}}
	var lat, ttft, ok []time.Duration
	for i, r := range results {
		if i < from {
			if r.failed() {
				s.failedWarm++
				if s.firstErr == "" {
					s.firstErr = r.err
				}
			}
			continue
		}
		s.requests++
		if r.failed() {
			s.failed++
			if s.firstErr == "" {
				s.firstErr = r.err
			}
			lat = append(lat, failedLatency)
			ttft = append(ttft, failedLatency)
			continue
		}
		s.byNode[r.node]++
		ok = append(ok, r.latency)
		lat = append(lat, r.latency)
		ttft = append(ttft, r.ttft)
	}
	s.p50, s.p99, s.p99ok = pct(lat, 0.50), pct(lat, 0.99), pct(ok, 0.99)
	s.ttft50, s.ttft99 = pct(ttft, 0.50), pct(ttft, 0.99)
	return s
}

// pct is the nearest-rank percentile; it sorts d.
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(math.Ceil(p*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

func ms(d time.Duration) string {
	switch {
	case d == failedLatency:
		return "failed"
	case d >= 10*time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	case d >= time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s"
	default:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	}
}
