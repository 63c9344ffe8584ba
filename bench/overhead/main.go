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
	"text/tabwriter"
	"time"

	"github.com/hearthlab/hearth/agent"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/loadgen"
	"github.com/hearthlab/hearth/internal/ollamasim"
)

func main() {
	requests := flag.Int("requests", 4000, "requests per target and concurrency level (bounded also by -max-time)")
	maxTime := flag.Duration("max-time", 8*time.Second, "longest run per target and concurrency level")
	rounds := flag.Int("rounds", 3, "alternating direct/agent rounds, merged, so drift hits both alike")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if err := loadgen.Profiled(*cpuProfile, func() error { return run(*requests, *maxTime, *rounds) }); err != nil {
		log.Fatal(err)
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
	carried := map[string]float64{} // what the agent carries at concurrency 32, by kind
	for _, kind := range []string{"chat", "stream"} {
		body := nonStream
		if kind == "stream" {
			body = stream
		}
		for _, conc := range []int{1, 32} {
			var direct, through loadgen.Result
			for r := 0; r < rounds; r++ {
				direct.Merge(load(client, simURL, body, conc, requests, maxTime))
				through.Merge(load(client, agentURL, body, conc, requests, maxTime))
			}
			if direct.Failed+through.Failed > 0 {
				fmt.Fprintf(os.Stderr, "failed requests: direct %d, agent %d (first error: %v)\n", direct.Failed, through.Failed, loadgen.FirstErr(direct, through))
			}
			d, t := direct.Stats(), through.Stats()
			if conc == 32 {
				carried[kind] = t.RPS
			}
			fmt.Fprintf(tw, "%s\t%d\tdirect\t%.0f\t%s\t%s\t%s\t\t\t\t\t\n", kind, conc, d.RPS, loadgen.MS(d.P50), loadgen.MS(d.P99), loadgen.US(d.CPU))
			fmt.Fprintf(tw, "%s\t%d\tagent\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t\n", kind, conc, t.RPS, loadgen.MS(t.P50), loadgen.MS(t.P99), loadgen.US(t.CPU),
				loadgen.MS(t.P50-d.P50), loadgen.MS(t.P99-d.P99), loadgen.US(t.CPU-d.CPU), t.RPS/d.RPS)
			if kind == "stream" {
				fmt.Fprintf(tw, "%s\t%d\tfirst chunk\t\t%s → %s\t%s → %s\t\t%s\t%s\t\t\t\n", kind, conc,
					loadgen.MS(d.TTFB50), loadgen.MS(t.TTFB50), loadgen.MS(d.TTFB99), loadgen.MS(t.TTFB99), loadgen.MS(t.TTFB50-d.TTFB50), loadgen.MS(t.TTFB99-d.TTFB99))
			}
		}
	}
	tw.Flush()

	paced(client, simURL, agentURL, map[string][]byte{"chat": nonStream, "stream": stream}, carried, requests, maxTime, rounds)
	return chunkCheck(ctx, client)
}

// paced sends the same requests as an open loop from 32 connections at half the rate the
// agent carried in the closed loop: the closed loop keeps both cores busy, so there every
// microsecond of CPU the agent spends is also queueing time for 32 requests; at a rate the
// machine carries, the added latency is what one request costs.
func paced(client *http.Client, simURL, agentURL string, bodies map[string][]byte, carried map[string]float64, requests int, maxTime time.Duration, rounds int) {
	const conc = 32
	fmt.Printf("\nopen loop: %d connections, evenly paced at half the rate the agent carried at concurrency %d; latency counts from when a request was due\n\n", conc, conc)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\trate\ttarget\tp50\tp99\tfirst chunk p50\tadded p50\tadded p99\tadded first chunk p50\t")
	for _, kind := range []string{"chat", "stream"} {
		rate := carried[kind] / 2
		if rate <= 0 {
			continue
		}
		var direct, through loadgen.Result
		for r := 0; r < rounds; r++ {
			direct.Merge(loadgen.RunPaced(conc, requests, rate, maxTime, func(buf []byte) (time.Duration, time.Duration, error) {
				return once(client, simURL+"/api/chat", bodies[kind], buf)
			}))
			through.Merge(loadgen.RunPaced(conc, requests, rate, maxTime, func(buf []byte) (time.Duration, time.Duration, error) {
				return once(client, agentURL+"/api/chat", bodies[kind], buf)
			}))
		}
		if direct.Failed+through.Failed > 0 {
			fmt.Fprintf(os.Stderr, "failed requests: direct %d, agent %d (first error: %v)\n", direct.Failed, through.Failed, loadgen.FirstErr(direct, through))
		}
		d, t := direct.Stats(), through.Stats()
		fmt.Fprintf(tw, "%s\t%.0f/s\tdirect\t%s\t%s\t%s\t\t\t\t\n", kind, rate, loadgen.MS(d.P50), loadgen.MS(d.P99), loadgen.MS(d.TTFB50))
		fmt.Fprintf(tw, "%s\t%.0f/s\tagent\t%s\t%s\t%s\t%s\t%s\t%s\t\n", kind, rate, loadgen.MS(t.P50), loadgen.MS(t.P99), loadgen.MS(t.TTFB50),
			loadgen.MS(t.P50-d.P50), loadgen.MS(t.P99-d.P99), loadgen.MS(t.TTFB50-d.TTFB50))
	}
	tw.Flush()
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

// load sends up to n requests to base from conc workers for at most maxTime.
func load(client *http.Client, base string, body []byte, conc, n int, maxTime time.Duration) loadgen.Result {
	return loadgen.Run(conc, n, maxTime, func(buf []byte) (time.Duration, time.Duration, error) {
		return once(client, base+"/api/chat", body, buf)
	})
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
