package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/router"
	"github.com/hearthlab/hearth/router/cluster"
)

// TestWakeSleepingNode: the NAS holds the store; the GPU node sleeps (its agent and Ollama
// start only when its magic packet arrives). A request for a model on the store wakes it
// and, by policy, waits for it or gets 503 at once.
func TestWakeSleepingNode(t *testing.T) {
	for _, policy := range []string{"hold", "fallback"} {
		t.Run(policy, func(t *testing.T) {
			card, addr := udpListener(t)
			dir, mounts := testStore(t, "nfs4", "tiny")
			nas := startMember(t, memberSpec{name: "nas", opts: []Option{WithMountInfo(mounts)}, mutate: func(c *config.Agent) {
				withStore(dir, true)(c)
				c.Node.DataDir = t.TempDir()
				c.Wake = []config.WakeRule{{Node: "gpu", MAC: "aa:bb:cc:dd:ee:ff", Broadcast: addr, Wait: 20 * time.Second, Policy: policy}}
			}}, "")
			hearthtest.Eventually(t, "the NAS advertises its store", waitLimit, func() bool {
				nv, ok := nodeNamed(clusterView(t, nas), "nas")
				return ok && len(nv.Stored) == 1
			})

			type answer struct {
				status int
				retry  string
				body   string
			}
			answers := make(chan answer, 1)
			go func() {
				req, _ := http.NewRequest(http.MethodPost, nas.base+"/v1/chat/completions",
					strings.NewReader(`{"model":"tiny","messages":[{"role":"user","content":"hi"}]}`))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					answers <- answer{body: err.Error()}
					return
				}
				defer resp.Body.Close()
				var b bytes.Buffer
				b.ReadFrom(resp.Body)
				answers <- answer{resp.StatusCode, resp.Header.Get("Retry-After"), b.String()}
			}()

			if policy == "fallback" {
				a := <-answers
				if a.status != http.StatusServiceUnavailable || a.retry != "20" || !strings.Contains(a.body, "model_unavailable") ||
					!strings.Contains(a.body, "node gpu, which is asleep: it is being woken") {
					t.Fatalf("fallback answer: %d Retry-After %q %s", a.status, a.retry, a.body)
				}
			}
			// The sleeping machine's card receives the packet; then it boots.
			buf := make([]byte, 256)
			card.SetReadDeadline(time.Now().Add(15 * time.Second))
			n, _, err := card.ReadFromUDP(buf)
			if err != nil || n != 102 || buf[6] != 0xaa || buf[101] != 0xff {
				t.Fatalf("magic packet: %d bytes, %v", n, err)
			}
			startMember(t, memberSpec{name: "gpu", models: []string{"tiny"}}, nas.gossip)

			if policy == "hold" {
				a := <-answers
				if a.status != http.StatusOK || !strings.Contains(a.body, "chat.completion") {
					t.Fatalf("held request: %d %s", a.status, a.body)
				}
			} else {
				hearthtest.Eventually(t, "the woken node serves", waitLimit, func() bool {
					resp, _ := do(t, http.MethodPost, nas.base+"/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"hi"}]}`)
					return resp.StatusCode == http.StatusOK
				})
			}
			_, metrics := do(t, http.MethodGet, nas.base+"/metrics", "")
			for _, want := range []string{`hearth_wake_packets_total{node="gpu"} 1`, `hearth_wake_to_first_token_seconds_count{node="gpu"} 1`} {
				if !strings.Contains(metrics, want) {
					t.Errorf("metrics lack %s", want)
				}
			}
			if !strings.Contains(nas.logs.String(), "woken node answered its first token") {
				t.Errorf("no wake-to-first-token log line")
			}
		})
	}
}

// TestWakeRemembersWhatANodeHad: a restarted agent still knows what the sleeping node had.
func TestWakeRemembersWhatANodeHad(t *testing.T) {
	dir := t.TempDir()
	rules := []config.WakeRule{{Node: "gpu", MAC: "aa:bb:cc:dd:ee:ff", Broadcast: "127.0.0.1:9", Wait: time.Second, Policy: "hold"}}
	gpu := cluster.Peer{Name: "gpu", Meta: cluster.Meta{Role: cluster.RoleServe, BackendOK: true}}
	gpu.Inventory.Models = []router.ModelInfo{{Name: "qwen3:14b"}, {Name: "tiny"}}
	peers := []cluster.Peer{gpu}
	w, err := newWaker(nil, rules, func() []cluster.Peer { return peers }, dir, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	w.observe()
	data, err := os.ReadFile(filepath.Join(dir, seenFile))
	if err != nil || string(data) != `{"gpu":["qwen3:14b","tiny:latest"]}` {
		t.Fatalf("saved %q, %v", data, err)
	}
	peers = nil // the node sleeps; the agent restarts
	w2, err := newWaker(nil, rules, func() []cluster.Peer { return peers }, dir, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := w2.ruleFor("tiny:latest"); !ok || r.Node != "gpu" {
		t.Errorf("after a restart, tiny is not known to be on gpu: %v %v", r, ok)
	}
	if _, ok := w2.ruleFor("other:latest"); ok {
		t.Errorf("a model gpu never had wakes it")
	}
	// Woken: gpu has joined, but its Ollama does not answer yet. Its models are still held
	// for (or 503), not unknown.
	peers = []cluster.Peer{{Name: "gpu", Meta: cluster.Meta{Role: cluster.RoleServe, BackendOK: false}}}
	if r, ok := w2.ruleFor("tiny:latest"); !ok || r.Node != "gpu" {
		t.Errorf("gpu joined with its Ollama not up yet: tiny has no wake rule (%v %v)", r, ok)
	}
	peers = []cluster.Peer{gpu}
	if _, ok := w2.ruleFor("tiny:latest"); ok {
		t.Errorf("gpu is up with its Ollama, and still a wake rule applies")
	}
}

// TestWakeRateLimit: under both policies, a burst of requests (and a held request polling)
// sends one magic packet per wakeRepeat; the next window sends again; by hand is never held
// back. The clock is the test's.
func TestWakeRateLimit(t *testing.T) {
	for _, policy := range []string{"fallback", "hold"} {
		t.Run(policy, func(t *testing.T) {
			nas := cluster.Peer{Name: "nas", Meta: cluster.Meta{Role: cluster.RoleRouter, StorageOK: true}}
			nas.Inventory.Stored = []router.ModelInfo{{Name: "tiny:latest"}}
			rules := []config.WakeRule{{Node: "gpu", MAC: "aa:bb:cc:dd:ee:ff", Broadcast: "127.0.0.1:9", Wait: 300 * time.Millisecond, Policy: policy}}
			w, err := newWaker(noCandidate{}, rules, func() []cluster.Peer { return []cluster.Peer{nas} }, "", prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			clock := time.Unix(1_800_000_000, 0)
			var sent int
			w.now = func() time.Time { return clock }
			w.send = func(context.Context, config.WakeRule) error { sent++; return nil }
			pick := func() {
				t.Helper()
				_, err := w.Pick(t.Context(), router.PickRequest{Model: "tiny:latest"})
				var api *router.APIError
				if !errors.As(err, &api) || api.Status != http.StatusServiceUnavailable || api.Code != "model_unavailable" {
					t.Fatalf("Pick: %v", err)
				}
			}
			for range 3 {
				pick()
			}
			if sent != 1 {
				t.Fatalf("three requests within %s sent %d packets, want 1", wakeRepeat, sent)
			}
			clock = clock.Add(wakeRepeat - time.Second)
			pick()
			if sent != 1 {
				t.Fatalf("a request %s after the packet sent another", wakeRepeat-time.Second)
			}
			clock = clock.Add(2 * time.Second)
			pick()
			if sent != 2 {
				t.Fatalf("a request past %s sent %d packets in all, want 2", wakeRepeat, sent)
			}
			if err := w.Wake(t.Context(), "gpu"); err != nil || sent != 3 {
				t.Fatalf("by hand: %v, %d packets in all, want 3", err, sent)
			}
			if err := w.Wake(t.Context(), "other"); err == nil || !strings.Contains(err.Error(), `no wake rule for "other"`) {
				t.Fatalf("waking a node without a rule: %v", err)
			}
		})
	}
}

// TestWakeClusterViewNamesSleepers: the cluster view names the wake rules' nodes that are
// not in the cluster, and not those that are.
func TestWakeClusterViewNamesSleepers(t *testing.T) {
	rules := []config.WakeRule{
		{Node: "gpu-pc", MAC: "aa:bb:cc:dd:ee:ff", Broadcast: "127.0.0.1:9", Wait: time.Second, Policy: "hold"},
		{Node: "gpu-box", MAC: "aa:bb:cc:dd:ee:fe", Broadcast: "127.0.0.1:9", Wait: time.Second, Policy: "hold"},
		{Node: "attic", MAC: "aa:bb:cc:dd:ee:fd", Broadcast: "127.0.0.1:9", Wait: time.Second, Policy: "hold"},
	}
	peers := []cluster.Peer{{Name: "nas", Self: true}, {Name: "gpu-box"}}
	w, err := newWaker(noCandidate{}, rules, func() []cluster.Peer { return peers }, "", prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := w.ClusterView().Asleep; !slices.Equal(got, []string{"attic", "gpu-pc"}) {
		t.Errorf("asleep: %v, want [attic gpu-pc]", got)
	}
}

// noCandidate is a cluster where nothing can serve.
type noCandidate struct{ router.Picker }

func (noCandidate) Pick(context.Context, router.PickRequest) (*router.Target, error) {
	return nil, router.ErrNoCandidate
}
