// Command relay measures what `hearth relay` adds when it serves chat from a vendor channel:
// the same requests go straight to a fake OpenAI-compatible vendor (no delay at all) and
// through a relay whose only channel is that vendor, in the same run, and the figures are
// printed side by side with their ratios. It is a program that prints numbers, not a test:
// nothing here passes or fails on time (issue 5's "added p50 ≤ 1 ms" is printed as a target).
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/hearthlab/hearth/internal/loadgen"
)

func main() {
	requests := flag.Int("requests", 6000, "requests per target, kind and concurrency level in each round (bounded also by -max-time)")
	maxTime := flag.Duration("max-time", 5*time.Second, "longest run per target, kind and concurrency level in each round")
	rounds := flag.Int("rounds", 3, "alternating direct/relay rounds, merged, so drift hits both alike")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if err := loadgen.Profiled(*cpuProfile, func() error { return run(*requests, *maxTime, *rounds) }); err != nil {
		log.Fatal(err)
	}
}

// concurrencies are the numbers of clients each load runs with.
var concurrencies = []int{1, 16}

// targetP50 is issue 5's target for the relay's added median latency.
const targetP50 = time.Millisecond

func run(requests int, maxTime time.Duration, rounds int) (err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "hearth-bench-relay-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	v := startVendor()
	defer v.srv.Close()
	br, err := startRelay(ctx, dir, v.baseURL())
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = br.stop()
		}
	}()
	relayClient := br.client()
	defer relayClient.CloseIdleConnections()
	if err := waitReady(relayClient, "https://"+relayDomain); err != nil {
		return err
	}
	directClient := &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, DisableCompression: true}}
	defer directClient.CloseIdleConnections()
	direct := &target{name: "direct", client: directClient, url: v.srv.URL + "/v1/chat/completions", auth: "Bearer " + directKey}
	through := &target{name: "relay", client: relayClient, url: "https://" + relayDomain + "/v1/chat/completions", auth: "Bearer " + br.token}

	nonStream := []byte(`{"model":"` + benchModel + `","stream":false,"messages":[{"role":"user","content":"hello"}]}`)
	stream := []byte(`{"model":"` + benchModel + `","stream":true,"messages":[{"role":"user","content":"hello"}]}`)
	if err := preflight(direct, through, nonStream, stream); err != nil {
		return err
	}

	fmt.Printf("hearth relay overhead: fake OpenAI-compatible vendor (no delay) direct (HTTP) vs through the relay (HTTPS, vendor channel only),\n"+
		"%d round(s) of up to %d requests or %s each, keep-alive HTTP/1.1 clients, GOMAXPROCS=%d\n"+
		"stream: %d content chunks + finish chunk; clients do not ask for include_usage (the relay asks the vendor for it and strips it)\n"+
		"CPU/req is the whole process (client, relay, vendor) per request: the added CPU is the relay's, TLS included\n\n",
		rounds, requests, maxTime, runtime.GOMAXPROCS(0), streamTokens)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tconc\ttarget\treq/s\tp50\tp99\tCPU/req\tadded p50\tadded p99\tadded CPU/req\tthroughput ratio\t")
	added := map[string]loadgen.Summary{} // kind at concurrency 1: relay minus direct
	for _, kind := range []string{"chat", "stream"} {
		body, isStream := nonStream, kind == "stream"
		if isStream {
			body = stream
		}
		for _, conc := range concurrencies {
			// Warm both: connections (and TLS sessions) open, code paths hot.
			load(direct, body, isStream, conc, 8*conc, maxTime)
			load(through, body, isStream, conc, 8*conc, maxTime)
			var dr, tr loadgen.Result
			for r := range rounds {
				// The order alternates too, so neither target always runs on a fresher heap.
				if r%2 == 0 {
					dr.Merge(load(direct, body, isStream, conc, requests, maxTime))
					tr.Merge(load(through, body, isStream, conc, requests, maxTime))
				} else {
					tr.Merge(load(through, body, isStream, conc, requests, maxTime))
					dr.Merge(load(direct, body, isStream, conc, requests, maxTime))
				}
			}
			if dr.Failed+tr.Failed > 0 {
				fmt.Fprintf(os.Stderr, "failed requests: direct %d, relay %d (first error: %v)\n", dr.Failed, tr.Failed, loadgen.FirstErr(dr, tr))
			}
			d, t := dr.Stats(), tr.Stats()
			fmt.Fprintf(tw, "%s\t%d\tdirect\t%.0f\t%s\t%s\t%s\t\t\t\t\t\n", kind, conc, d.RPS, loadgen.MS(d.P50), loadgen.MS(d.P99), loadgen.US(d.CPU))
			fmt.Fprintf(tw, "%s\t%d\trelay\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t\n", kind, conc, t.RPS, loadgen.MS(t.P50), loadgen.MS(t.P99), loadgen.US(t.CPU),
				loadgen.MS(t.P50-d.P50), loadgen.MS(t.P99-d.P99), loadgen.US(t.CPU-d.CPU), t.RPS/d.RPS)
			if isStream {
				fmt.Fprintf(tw, "%s\t%d\tfirst chunk\t\t%s → %s\t%s → %s\t\t%s\t%s\t\t\t\n", kind, conc,
					loadgen.MS(d.TTFB50), loadgen.MS(t.TTFB50), loadgen.MS(d.TTFB99), loadgen.MS(t.TTFB99), loadgen.MS(t.TTFB50-d.TTFB50), loadgen.MS(t.TTFB99-d.TTFB99))
			}
			if conc == 1 {
				added[kind] = loadgen.Summary{P50: t.P50 - d.P50, TTFB50: t.TTFB50 - d.TTFB50}
			}
		}
	}
	tw.Flush()

	fmt.Printf("\ntarget (issue 5; a target, not a test): relay's added p50 ≤ %s at concurrency 1\n", loadgen.MS(targetP50))
	fmt.Printf("  measured: chat %s, stream %s (whole stream), stream first chunk %s\n",
		loadgen.MS(added["chat"].P50), loadgen.MS(added["stream"].P50), loadgen.MS(added["stream"].TTFB50))

	// The relay writes usage in batches: stop it (Run returns after the last flush), then count.
	relayClient.CloseIdleConnections()
	stopped = true
	if err := br.stop(); err != nil {
		return fmt.Errorf("relay stopped with: %w", err)
	}
	records, err := br.usageRecords(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("\nrelay stopped cleanly; answers from the relay %d, vendor calls from the relay %d, usage records written %d (channel vendor)\n",
		through.answered.Load(), v.relayed.Load(), records["vendor"])
	return nil
}

// preflight checks, before any timing, that the relay serves from the vendor channel and that
// a relayed stream carries the same events as a direct one.
func preflight(direct, through *target, nonStream, stream []byte) error {
	for _, body := range [][]byte{nonStream, stream} {
		var events [2]int
		for i, t := range []*target{direct, through} {
			req, err := http.NewRequest(http.MethodPost, t.url, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", t.auth)
			resp, err := t.client.Do(req)
			if err != nil {
				return fmt.Errorf("preflight %s: %w", t.name, err)
			}
			t.answered.Add(1)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if bytes.HasPrefix(sc.Bytes(), []byte("data:")) {
					events[i]++
				}
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("preflight %s: status %s", t.name, resp.Status)
			}
			if t == through && resp.Header.Get("X-Hearth-Channel") != "vendor" {
				return fmt.Errorf("preflight: the relay answered from channel %q, want \"vendor\"", resp.Header.Get("X-Hearth-Channel"))
			}
		}
		if events[0] != events[1] {
			return fmt.Errorf("preflight: a stream has %d events direct but %d through the relay", events[0], events[1])
		}
	}
	return nil
}
