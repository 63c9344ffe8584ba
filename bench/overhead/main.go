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
	rounds := flag.Int("rounds", 3, "rounds over all targets in turn, merged, so drift hits all alike")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if err := loadgen.Profiled(*cpuProfile, func() error { return run(*requests, *maxTime, *rounds) }); err != nil {
		log.Fatal(err)
	}
}

// target is one way to the backend: straight, through a reference proxy, or through the agent.
type target struct {
	name, url string
	cpu       func() time.Duration // CPU spent outside this process (nginx), nil when none
}

func run(requests int, maxTime time.Duration, rounds int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	simURL, agentURL, stop, err := startPair(ctx, 0)
	if err != nil {
		return err
	}
	defer stop()
	targets := []target{{name: "direct", url: simURL}}
	goProxy, err := startGoProxy(simURL)
	if err != nil {
		return err
	}
	defer goProxy.stop()
	targets = append(targets, target{name: "go proxy", url: goProxy.url})
	nginx, err := startNginx(ctx, simURL)
	if err != nil {
		return err
	}
	if nginx != nil {
		defer nginx.stop()
		targets = append(targets, target{name: "nginx", url: nginx.url, cpu: nginx.cpu})
	}
	targets = append(targets, target{name: "agent", url: agentURL})

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, DisableCompression: true}}
	bodies := map[string][]byte{
		"chat":   []byte(`{"model":"bench","stream":false,"messages":[{"role":"user","content":"hello"}]}`),
		"stream": []byte(`{"model":"bench","messages":[{"role":"user","content":"hello"}]}`),
	}

	fmt.Printf("hearth agent overhead: ollamasim (no token delay) direct vs through a proxy, %d round(s) of up to %d requests or %s each, GOMAXPROCS=%d\n",
		rounds, requests, maxTime, runtime.GOMAXPROCS(0))
	fmt.Printf("load generator, backend and proxy share this machine's %d cores; CPU/req is all of it (client, backend and proxy)\n", runtime.NumCPU())
	fmt.Println("references: go proxy = httputil.ReverseProxy, the floor of a net/http proxy (the agent's stack), in this process")
	if nginx == nil {
		fmt.Println("            nginx: not installed, no row (apt-get install nginx-light to add it)")
	} else {
		fmt.Println("            nginx = nginx (2 workers, keep-alive upstream, proxy_buffering off), CPU read from /proc")
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tconc\ttarget\treq/s\tp50\tp99\tCPU/req\tadded p50\tadded p99\tadded CPU/req\tthroughput ratio\t")
	carried := map[string]float64{} // what the agent carries at concurrency 32, by kind
	var goals goalTable
	for _, kind := range []string{"chat", "stream"} {
		for _, conc := range []int{1, 32} {
			res := measure(targets, rounds, func(t target) loadgen.Result {
				return loadgen.Run(conc, requests, maxTime, func(buf []byte) (time.Duration, time.Duration, error) {
					return once(client, t.url+"/api/chat", bodies[kind], buf)
				})
			})
			d := res[0].Stats()
			fmt.Fprintf(tw, "%s\t%d\tdirect\t%.0f\t%s\t%s\t%s\t\t\t\t\t\n", kind, conc, d.RPS, loadgen.MS(d.P50), loadgen.MS(d.P99), loadgen.US(d.CPU))
			for i, t := range targets[1:] {
				s := res[i+1].Stats()
				if t.name == "agent" && conc == 32 {
					carried[kind] = s.RPS
				}
				if kind == "chat" && conc == 32 {
					goals.add("added p50, chat, concurrency 32", 200*time.Microsecond, t.name, s.P50-d.P50)
					goals.add("added p99, chat, concurrency 32", time.Millisecond, t.name, s.P99-d.P99)
				}
				if kind == "stream" {
					goals.add(fmt.Sprintf("added first chunk p50, concurrency %d", conc), time.Millisecond, t.name, s.TTFB50-d.TTFB50)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t\n", kind, conc, t.name, s.RPS, loadgen.MS(s.P50), loadgen.MS(s.P99), loadgen.US(s.CPU),
					loadgen.MS(s.P50-d.P50), loadgen.MS(s.P99-d.P99), loadgen.US(s.CPU-d.CPU), s.RPS/d.RPS)
			}
			if kind == "stream" {
				for i, t := range targets[1:] {
					s := res[i+1].Stats()
					fmt.Fprintf(tw, "%s\t%d\t%s first chunk\t\t%s → %s\t%s → %s\t\t%s\t%s\t\t\t\n", kind, conc, t.name,
						loadgen.MS(d.TTFB50), loadgen.MS(s.TTFB50), loadgen.MS(d.TTFB99), loadgen.MS(s.TTFB99), loadgen.MS(s.TTFB50-d.TTFB50), loadgen.MS(s.TTFB99-d.TTFB99))
				}
			}
		}
	}
	tw.Flush()

	paced(client, targets, bodies, carried, requests, maxTime, rounds)
	if err := chunkCheck(ctx, client); err != nil {
		return err
	}
	goals.print(targets[1:])
	return nil
}

// goalTable holds the targets of the agent's overhead (issue 2) with what every proxy
// measured against them, so the agent's misses can be read beside the references'.
type goalTable struct {
	rows  []string
	limit map[string]time.Duration
	got   map[string]map[string]time.Duration // row → proxy → measured
}

func (g *goalTable) add(row string, limit time.Duration, proxy string, v time.Duration) {
	if g.got == nil {
		g.limit, g.got = map[string]time.Duration{}, map[string]map[string]time.Duration{}
	}
	if _, ok := g.got[row]; !ok {
		g.rows = append(g.rows, row)
		g.limit[row], g.got[row] = limit, map[string]time.Duration{}
	}
	g.got[row][proxy] = v
}

func (g *goalTable) print(proxies []target) {
	fmt.Printf("\ntargets (closed loop): a proxy that spends C of CPU per request adds about 32×C/%d to the p50 at concurrency 32 here,\n", runtime.NumCPU())
	fmt.Printf("since the load, the backend and the proxy share the cores: 0.2 ms leaves a proxy %.1f µs of CPU per request\n\n", 200*float64(runtime.NumCPU())/32)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "target\tlimit\t"
	for _, p := range proxies {
		head += p.name + "\t"
	}
	fmt.Fprintln(tw, head)
	for _, row := range g.rows {
		line := fmt.Sprintf("%s\t≤ %s\t", row, loadgen.MS(g.limit[row]))
		for _, p := range proxies {
			v := g.got[row][p.name]
			verdict := "met"
			if v > g.limit[row] {
				verdict = "MISSED"
			}
			line += fmt.Sprintf("%s %s\t", loadgen.MS(v), verdict)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

// measure runs load against every target, rounds times in turn (so drift hits all alike),
// and merges each target's runs; CPU spent outside this process is added to the target's.
func measure(targets []target, rounds int, load func(target) loadgen.Result) []loadgen.Result {
	res := make([]loadgen.Result, len(targets))
	for range rounds {
		for i, t := range targets {
			var before time.Duration
			if t.cpu != nil {
				before = t.cpu()
			}
			r := load(t)
			if t.cpu != nil {
				r.CPU += t.cpu() - before
			}
			res[i].Merge(r)
		}
	}
	for i, r := range res {
		if r.Failed > 0 {
			fmt.Fprintf(os.Stderr, "%s: %d failed requests (first error: %v)\n", targets[i].name, r.Failed, r.Err)
		}
	}
	return res
}

// paced sends the same requests as an open loop from 32 connections at half the rate the
// agent carried in the closed loop: the closed loop keeps both cores busy, so there every
// microsecond of CPU a proxy spends is also queueing time for 32 requests; at a rate the
// machine carries, the added latency is what one request costs.
func paced(client *http.Client, targets []target, bodies map[string][]byte, carried map[string]float64, requests int, maxTime time.Duration, rounds int) {
	const conc = 32
	fmt.Printf("\nopen loop: %d connections, evenly paced at half the rate the agent carried at concurrency %d; a request that waits for a free connection counts the wait\n\n", conc, conc)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\trate\ttarget\tp50\tp99\tfirst chunk p50\tadded p50\tadded p99\tadded first chunk p50\t")
	for _, kind := range []string{"chat", "stream"} {
		rate := carried[kind] / 2
		if rate <= 0 {
			continue
		}
		res := measure(targets, rounds, func(t target) loadgen.Result {
			return loadgen.RunPaced(conc, requests, rate, maxTime, func(buf []byte) (time.Duration, time.Duration, error) {
				return once(client, t.url+"/api/chat", bodies[kind], buf)
			})
		})
		d := res[0].Stats()
		fmt.Fprintf(tw, "%s\t%.0f/s\tdirect\t%s\t%s\t%s\t\t\t\t\n", kind, rate, loadgen.MS(d.P50), loadgen.MS(d.P99), loadgen.MS(d.TTFB50))
		for i, t := range targets[1:] {
			s := res[i+1].Stats()
			fmt.Fprintf(tw, "%s\t%.0f/s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", kind, rate, t.name, loadgen.MS(s.P50), loadgen.MS(s.P99), loadgen.MS(s.TTFB50),
				loadgen.MS(s.P50-d.P50), loadgen.MS(s.P99-d.P99), loadgen.MS(s.TTFB50-d.TTFB50))
		}
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
