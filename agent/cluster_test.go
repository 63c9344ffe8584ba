package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/internal/ollamasim"
	"github.com/hearthlab/hearth/router"
)

const testClusterKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes

// member is one agent of an in-process test cluster.
type member struct {
	name   string
	base   string
	gossip string
	sim    *ollamasim.Server // nil for a router-only node
	logs   *hearthtest.Logs
	stop   func()
}

type memberSpec struct {
	name     string
	models   []string // none: router-only
	parallel int
	sim      ollamasim.Config
	secret   string
	mutate   func(*config.Agent) // after the defaults above
	opts     []Option
}

// startMember runs one clustered agent; join is a gossip address ("" for the seed).
func startMember(t *testing.T, spec memberSpec, join string) *member {
	t.Helper()
	m := &member{name: spec.name, logs: &hearthtest.Logs{}}
	cfg := config.DefaultAgent()
	cfg.Node.Name = spec.name
	cfg.Node.Listen = "127.0.0.1:0"
	cfg.Ollama.URL = ""
	cfg.Ollama.PollInterval = 100 * time.Millisecond
	cfg.Node.DataDir = t.TempDir()
	if spec.parallel > 0 {
		cfg.Ollama.Parallel = spec.parallel
	}
	if len(spec.models) > 0 {
		simCfg := spec.sim
		for _, name := range spec.models {
			simCfg.Models = append(simCfg.Models, ollamasim.Model{Name: name})
		}
		if simCfg.Parallel == 0 {
			simCfg.Parallel = cfg.Ollama.Parallel
		}
		m.sim = ollamasim.New(simCfg)
		if err := m.sim.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.sim.Close)
		cfg.Ollama.URL = m.sim.URL()
	}
	cfg.Cluster.Bind = "127.0.0.1:0"
	cfg.Cluster.Timings = "fast"
	cfg.Cluster.Secret = testClusterKey
	if spec.secret != "" {
		cfg.Cluster.Secret = spec.secret
	}
	if join != "" {
		cfg.Cluster.Join = []string{join}
	}
	if spec.mutate != nil {
		spec.mutate(&cfg)
	}
	a, err := New(cfg, m.logs.Logger(), "test", spec.opts...)
	if err != nil {
		t.Fatal(err)
	}
	m.base = "http://" + a.Addr().String()
	m.gossip = a.GossipAddr()
	m.stop = hearthtest.Run(t, "agent "+spec.name, a.Run)
	return m
}

// startCluster starts the members, all joining the first, and waits until each sees all.
func startCluster(t *testing.T, specs ...memberSpec) []*member {
	t.Helper()
	var ms []*member
	for i, s := range specs {
		join := ""
		if i > 0 {
			join = ms[0].gossip
		}
		ms = append(ms, startMember(t, s, join))
	}
	for _, m := range ms {
		waitMembers(t, m, len(ms))
	}
	return ms
}

func clusterView(t *testing.T, m *member) router.ClusterView {
	t.Helper()
	resp, body := do(t, http.MethodGet, m.base+"/hearth/v1/cluster", "")
	var v router.ClusterView
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &v) != nil {
		t.Fatalf("cluster view from %s: %d %s", m.name, resp.StatusCode, body)
	}
	return v
}

// waitMembers waits until m sees n members whose inventories have arrived.
func waitMembers(t *testing.T, m *member, n int) {
	t.Helper()
	hearthtest.Eventually(t, fmt.Sprintf("%s sees %d members", m.name, n), waitLimit, func() bool {
		v := clusterView(t, m)
		if len(v.Nodes) != n {
			return false
		}
		for _, nv := range v.Nodes {
			if nv.Role == "serve" && (!nv.Backend || len(nv.Models) == 0) {
				return false
			}
		}
		return true
	})
}

func TestClusterRoutesByModel(t *testing.T) {
	ms := startCluster(t,
		memberSpec{name: "a", models: []string{"tiny"}, parallel: 2},
		memberSpec{name: "b", models: []string{"tiny", "tiny2"}, parallel: 2},
		memberSpec{name: "nas"}, // router-only
	)
	nas := ms[2]

	// The router-only node lists each model once, naming the nodes that have it.
	_, body := do(t, http.MethodGet, nas.base+"/api/tags", "")
	var tags struct {
		Models []struct {
			Name   string `json:"name"`
			Hearth struct {
				Nodes []string `json:"nodes"`
			} `json:"hearth"`
		} `json:"models"`
	}
	if err := json.Unmarshal([]byte(body), &tags); err != nil {
		t.Fatal(err)
	}
	where := map[string][]string{}
	for _, m := range tags.Models {
		slices.Sort(m.Hearth.Nodes)
		where[m.Name] = m.Hearth.Nodes
	}
	if len(tags.Models) != 2 || !slices.Equal(where["tiny:latest"], []string{"a", "b"}) || !slices.Equal(where["tiny2:latest"], []string{"b"}) {
		t.Fatalf("/api/tags through the router-only node: %s", body)
	}

	// A model only on b always goes to b, from any entry point.
	for _, entry := range ms {
		for i := 0; i < 5; i++ {
			resp, body := do(t, http.MethodPost, entry.base+"/api/chat", `{"model":"tiny2","stream":false,"messages":[{"role":"user","content":"hi `+fmt.Sprint(i)+`"}]}`)
			if resp.StatusCode != 200 || resp.Header.Get("X-Hearth-Node") != "b" || !strings.Contains(body, `"done":true`) {
				t.Fatalf("tiny2 via %s: %d node %q %s", entry.name, resp.StatusCode, resp.Header.Get("X-Hearth-Node"), body)
			}
		}
	}
	// Unknown models are 404 naming what exists; /v1/models is the union too.
	resp, body := do(t, http.MethodPost, nas.base+"/v1/chat/completions", `{"model":"llama3"}`)
	if resp.StatusCode != 404 || !strings.Contains(body, "no node in the cluster has llama3:latest (available: tiny2:latest, tiny:latest)") {
		t.Errorf("unknown model: %d %s", resp.StatusCode, body)
	}
	_, body = do(t, http.MethodGet, nas.base+"/v1/models", "")
	if strings.Count(body, `"id":"tiny:latest"`) != 1 || strings.Count(body, `"id":"tiny2:latest"`) != 1 {
		t.Errorf("/v1/models: %s", body)
	}

	// b's Ollama dies: tiny2 is unavailable (503 model_unavailable), tiny still served by a.
	if err := ms[1].sim.SetFault(ollamasim.Fault{Kind: ollamasim.FaultRefuse}); err != nil {
		t.Fatal(err)
	}
	hearthtest.Eventually(t, "tiny2 unavailable", waitLimit, func() bool {
		resp, _ := do(t, http.MethodPost, nas.base+"/api/chat", `{"model":"tiny2","stream":false}`)
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	resp, body = do(t, http.MethodPost, nas.base+"/v1/chat/completions", `{"model":"tiny2"}`)
	if resp.StatusCode != 503 || !strings.Contains(body, `"code":"model_unavailable"`) || !(strings.Contains(body, "Ollama is not answering") || strings.Contains(body, "node b: cannot connect to Ollama") ||
		strings.Contains(body, "b could not serve moments ago")) {
		t.Errorf("tiny2 with b's Ollama down: %d %s", resp.StatusCode, body)
	}
	for i := 0; i < 5; i++ {
		resp, _ := do(t, http.MethodPost, nas.base+"/api/chat", `{"model":"tiny","stream":false}`)
		if resp.StatusCode != 200 || resp.Header.Get("X-Hearth-Node") != "a" {
			t.Fatalf("tiny with b down: %d via %q", resp.StatusCode, resp.Header.Get("X-Hearth-Node"))
		}
	}
}

func TestClusterJoinLeaveRejoin(t *testing.T) {
	ms := startCluster(t,
		memberSpec{name: "a", models: []string{"tiny"}},
		memberSpec{name: "b", models: []string{"tiny"}},
		memberSpec{name: "c", models: []string{"tiny"}},
		memberSpec{name: "d", models: []string{"tiny2"}},
	)
	ms[3].stop()
	waitMembers(t, ms[0], 3)
	waitMembers(t, ms[1], 3)
	if !strings.Contains(ms[3].logs.String(), "hearth agent stopped") {
		t.Error("d did not stop cleanly")
	}
	// d left: tiny2 is a model a node had, so 503 not 404.
	resp, body := do(t, http.MethodPost, ms[0].base+"/api/chat", `{"model":"tiny2"}`)
	if resp.StatusCode != 503 || !strings.Contains(body, "node d, which had it, has left the cluster") {
		t.Errorf("tiny2 after d left: %d %s", resp.StatusCode, body)
	}
	// d comes back under the same name.
	ms[3] = startMember(t, memberSpec{name: "d", models: []string{"tiny2"}}, ms[1].gossip)
	for _, m := range ms {
		waitMembers(t, m, 4)
	}
	resp, _ = do(t, http.MethodPost, ms[0].base+"/api/chat", `{"model":"tiny2","stream":false}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Hearth-Node") != "d" {
		t.Errorf("tiny2 after d rejoined: %d via %q", resp.StatusCode, resp.Header.Get("X-Hearth-Node"))
	}
}

func TestClusterWrongSecretCannotJoin(t *testing.T) {
	ms := startCluster(t, memberSpec{name: "a", models: []string{"tiny"}}, memberSpec{name: "b", models: []string{"tiny"}})
	intruder := startMember(t, memberSpec{name: "intruder", models: []string{"evil"},
		secret: "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="}, ms[0].gossip)
	hearthtest.Eventually(t, "intruder's join attempt logged", waitLimit, func() bool { return strings.Contains(intruder.logs.String(), "join") })
	time.Sleep(500 * time.Millisecond) // give a wrongful join every chance to show
	for _, m := range ms {
		if v := clusterView(t, m); len(v.Nodes) != 2 {
			t.Errorf("%s sees %d nodes with an intruder about", m.name, len(v.Nodes))
		}
	}
	if v := clusterView(t, intruder); len(v.Nodes) != 1 {
		t.Errorf("the intruder sees %d nodes", len(v.Nodes))
	}
	resp, _ := do(t, http.MethodPost, ms[0].base+"/api/chat", `{"model":"evil"}`)
	if resp.StatusCode != 404 {
		t.Errorf("the intruder's model is routable: %d", resp.StatusCode)
	}
	// A forged forwarded request without the cluster credential is refused off the trusted network.
	resp, _ = do(t, http.MethodPost, ms[1].base+"/api/chat", `{"model":"tiny","stream":false}`, router.ForwardedHeader, "a")
	if resp.StatusCode != 200 {
		t.Errorf("loopback is trusted by default; got %d", resp.StatusCode)
	}
}

func TestClusterQueueHeader(t *testing.T) {
	ms := startCluster(t, memberSpec{name: "solo", models: []string{"tiny"}, parallel: 1,
		sim: ollamasim.Config{TokenDelay: 20 * time.Millisecond, Tokens: 10}})
	var wg sync.WaitGroup
	waited := atomic.Int32{}
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := do(t, http.MethodPost, ms[0].base+"/api/generate", `{"model":"tiny","prompt":"x","stream":false}`)
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
			if resp.Header.Get("X-Hearth-Queue-Ms") != "" {
				waited.Add(1)
			}
		}()
	}
	wg.Wait()
	if waited.Load() < 1 {
		t.Errorf("3 requests on 1 slot: %d carried X-Hearth-Queue-Ms, want at least 1", waited.Load())
	}
	if ms[0].sim.Stats().MaxRunning != 1 {
		t.Errorf("the backend ran %d at once with 1 slot", ms[0].sim.Stats().MaxRunning)
	}
}

// TestClusterNodeLossUnderLoad: 300 streaming requests from 30 clients; mid-run one node's
// Ollama dies, then the whole agent. Every request that had not started streaming succeeds
// elsewhere; streams cut mid-way end with an error event, never silently.
func TestClusterNodeLossUnderLoad(t *testing.T) {
	sim := ollamasim.Config{TokenDelay: 3 * time.Millisecond, Tokens: 12}
	ms := startCluster(t,
		memberSpec{name: "entry", models: []string{"tiny"}, parallel: 8, sim: sim},
		memberSpec{name: "b", models: []string{"tiny"}, parallel: 8, sim: sim},
		memberSpec{name: "c", models: []string{"tiny"}, parallel: 8, sim: sim},
	)
	const total, clients = 300, 30
	var started, failedBeforeStream, cutWithEvent, cutSilently, ok atomic.Int32
	jobs := make(chan int, total)
	for i := 0; i < total; i++ {
		jobs <- i
	}
	close(jobs)
	var wg sync.WaitGroup
	var firstErr sync.Once
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				n := started.Add(1)
				switch n {
				case total / 3:
					_ = ms[1].sim.SetFault(ollamasim.Fault{Kind: ollamasim.FaultRefuse})
				case 2 * total / 3:
					go ms[1].stop()
				}
				res := streamOnce(ms[0].base, i)
				switch {
				case res.err != nil && res.lines == 0:
					failedBeforeStream.Add(1)
					firstErr.Do(func() { t.Logf("first failure before streaming: %v", res.err) })
				case res.errorEvent:
					cutWithEvent.Add(1)
				case !res.done:
					cutSilently.Add(1)
				default:
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("ok %d, failed before streaming %d, cut with an error event %d, cut silently %d",
		ok.Load(), failedBeforeStream.Load(), cutWithEvent.Load(), cutSilently.Load())
	if failedBeforeStream.Load() != 0 || cutSilently.Load() != 0 {
		t.Errorf("failed before streaming: %d, cut without an error event: %d; both must be 0", failedBeforeStream.Load(), cutSilently.Load())
	}
	if ok.Load()+cutWithEvent.Load() != total {
		t.Errorf("%d + %d != %d", ok.Load(), cutWithEvent.Load(), total)
	}
	// The dead node gets no more picks once it is known dead.
	waitMembers(t, ms[0], 2)
	for i := 0; i < 20; i++ {
		if res := streamOnce(ms[0].base, i); !res.done || res.node == "b" {
			t.Fatalf("after b died: %+v", res)
		}
	}
}

type streamResult struct {
	node             string
	lines            int
	done, errorEvent bool
	err              error
}

func streamOnce(base string, i int) streamResult {
	body := fmt.Sprintf(`{"model":"tiny","messages":[{"role":"user","content":"q%d"}]}`, i)
	resp, err := http.Post(base+"/api/chat", "application/json", strings.NewReader(body))
	if err != nil {
		return streamResult{err: err}
	}
	defer resp.Body.Close()
	res := streamResult{node: resp.Header.Get("X-Hearth-Node")}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		res.err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
		return res
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		res.lines++
		if strings.HasPrefix(line, `{"error":`) {
			res.errorEvent = true
		}
		if strings.Contains(line, `"done":true`) {
			res.done = true
		}
	}
	res.err = sc.Err()
	return res
}
