// Command overhead measures what `hearth agent` adds to a request: the same load goes straight
// to a backend (ollamasim with no token delay) and through an agent in front of it, in the
// same run, and the figures are printed side by side with their ratios. It is a program that
// prints numbers, not a test: nothing here passes or fails on time.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hearthlab/hearth/agent"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/ollamasim"
)

func main() {
	requests := flag.Int("requests", 4000, "requests per target and concurrency level (bounded also by -max-time)")
	maxTime := flag.Duration("max-time", 8*time.Second, "longest run per target and concurrency level")
	rounds := flag.Int("rounds", 3, "alternating direct/agent rounds, merged, so drift hits both alike")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*requests, *maxTime, *rounds); err != nil {
		log.Print(err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(requests int, maxTime time.Duration, rounds int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	simURL, agentURL, stop, err := startPair(ctx, 0)
	if err != nil {
		return err
	}
	defer stop()

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, DisableCompression: true}}
	nonStream := []byte(`{"model":"bench","stream":false,"messages":[{"role":"user","content":"hello"}]}`)
	stream := []byte(`{"model":"bench","messages":[{"role":"user","content":"hello"}]}`)

	fmt.Printf("hearth agent overhead: ollamasim (no token delay) direct vs through the agent, %d round(s) of up to %d requests or %s each, GOMAXPROCS=%d\n\n",
		rounds, requests, maxTime, runtime.GOMAXPROCS(0))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tconc\ttarget\treq/s\tp50\tp99\tCPU/req\tadded p50\tadded p99\tadded CPU/req\tthroughput ratio\t")
	for _, kind := range []string{"chat", "stream"} {
		body := nonStream
		if kind == "stream" {
			body = stream
		}
		for _, conc := range []int{1, 32} {
			var direct, through result
			for r := 0; r < rounds; r++ {
				direct.merge(load(client, simURL, body, conc, requests, maxTime))
				through.merge(load(client, agentURL, body, conc, requests, maxTime))
			}
			if direct.failed+through.failed > 0 {
				fmt.Fprintf(os.Stderr, "failed requests: direct %d, agent %d (first error: %v)\n", direct.failed, through.failed, firstErr(direct, through))
			}
			d, t := direct.stats(), through.stats()
			fmt.Fprintf(tw, "%s\t%d\tdirect\t%.0f\t%s\t%s\t%s\t\t\t\t\t\n", kind, conc, d.rps, ms(d.p50), ms(d.p99), us(d.cpu))
			fmt.Fprintf(tw, "%s\t%d\tagent\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t\n", kind, conc, t.rps, ms(t.p50), ms(t.p99), us(t.cpu),
				ms(t.p50-d.p50), ms(t.p99-d.p99), us(t.cpu-d.cpu), t.rps/d.rps)
			if kind == "stream" {
				fmt.Fprintf(tw, "%s\t%d\tfirst chunk\t\t%s → %s\t%s → %s\t\t%s\t%s\t\t\t\n", kind, conc,
					ms(d.ttfb50), ms(t.ttfb50), ms(d.ttfb99), ms(t.ttfb99), ms(t.ttfb50-d.ttfb50), ms(t.ttfb99-d.ttfb99))
			}
		}
	}
	tw.Flush()

	return chunkCheck(ctx, client)
}

// startPair starts ollamasim and an agent in front of it; stop ends both.
func startPair(ctx context.Context, tokenDelay time.Duration) (simURL, agentURL string, stop func(), err error) {
	sim := ollamasim.New(ollamasim.Config{
		Models:      []ollamasim.Model{{Name: "bench"}},
		Parallel:    256,
		MaxQueue:    4096,
		Tokens:      8,
		TokenDelay:  tokenDelay,
		RecordLimit: -1,
	})
	if err := sim.Start(); err != nil {
		return "", "", nil, err
	}
	cfg := config.DefaultAgent()
	cfg.Node.Name = "bench"
	cfg.Node.Listen = "127.0.0.1:0"
	cfg.Ollama.URL = sim.URL()
	a, err := agent.New(cfg, nil, "bench")
	if err != nil {
		sim.Close()
		return "", "", nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stop = func() {
		cancel()
		<-done
		sim.Close()
	}
	agentURL = "http://" + a.Addr().String()
	if err := waitReady(agentURL); err != nil {
		stop()
		return "", "", nil, err
	}
	return sim.URL(), agentURL, stop, nil
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
// process's CPU over the run (client, agent and backend share it, so the difference between
// targets is the agent's share).
func load(client *http.Client, base string, body []byte, conc, n int, maxTime time.Duration) result {
	var (
		mu  sync.Mutex
		res result
		wg  sync.WaitGroup
	)
	jobs := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	deadline := time.Now().Add(maxTime)
	cpu0 := cpuTime()
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for range jobs {
				if time.Now().After(deadline) {
					return
				}
				lat, ttfb, err := once(client, base+"/api/chat", body, buf)
				mu.Lock()
				if err != nil {
					res.failed++
					if res.err == nil {
						res.err = err
					}
				} else {
					res.lat = append(res.lat, lat)
					res.ttfb = append(res.ttfb, ttfb)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.cpu = cpuTime() - cpu0
	return res
}

func once(client *http.Client, url string, body, buf []byte) (lat, ttfb time.Duration, err error) {
	start := time.Now()
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 && ttfb == 0 {
			ttfb = time.Since(start)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, 0, rerr
		}
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	return time.Since(start), ttfb, nil
}

// chunkCheck streams with a token delay and counts the reads that carry data: through the
// agent each chunk must still arrive on its own, as it does direct.
func chunkCheck(ctx context.Context, client *http.Client) error {
	const streams = 20
	simURL, agentURL, stop, err := startPair(ctx, 2*time.Millisecond)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("\nchunking: %d streams of 8 tokens with 2 ms between tokens; reads that carried data (one per chunk = never merged)\n", streams)
	body := []byte(`{"model":"bench","messages":[{"role":"user","content":"hello"}]}`)
	for _, target := range []struct{ name, url string }{{"direct", simURL}, {"agent", agentURL}} {
		reads, lines := 0, 0
		for i := 0; i < streams; i++ {
			r, l, err := countReads(client, target.url+"/api/chat", body)
			if err != nil {
				return err
			}
			reads += r
			lines += l
		}
		fmt.Printf("  %-6s  %d chunks, %d reads, %.2f chunks per read\n", target.name, lines, reads, float64(lines)/float64(reads))
	}
	return nil
}

func countReads(client *http.Client, url string, body []byte) (reads, lines int, err error) {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	buf := make([]byte, 64<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			reads++
			lines += bytes.Count(buf[:n], []byte("\n"))
		}
		if rerr == io.EOF {
			return reads, lines, nil
		}
		if rerr != nil {
			return 0, 0, rerr
		}
	}
}

func waitReady(base string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("agent at %s not ready after 10s", base)
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
