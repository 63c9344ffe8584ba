//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// homeCluster is a small home: two GPU machines, each with its own real Ollama and model store
// (gpu1 has tiny; gpu2 has tiny and tiny2), and a NAS with no Ollama that only routes. The
// three agents form one gossip cluster; clients talk to the NAS.
type homeCluster struct {
	ollama1, ollama2 *ollamaServer
	gpu1, gpu2, nas  *agentProc
}

// clusterView is GET /hearth/v1/cluster as the wire has it.
type clusterView struct {
	Self   string        `json:"self"`
	Nodes  []clusterNode `json:"nodes"`
	Queued int           `json:"queued"`
}

type clusterNode struct {
	Name    string   `json:"name"`
	Role    string   `json:"role"`
	Backend bool     `json:"backend"`
	Problem string   `json:"problem"`
	Models  []string `json:"models"`
	Warm    []string `json:"warm"`
}

// TestCluster drives the real ollama CLI and `hearth status` against the NAS of a three-node
// cluster: one listing for the whole home, a model that only gpu2 has runs on gpu2, and when
// gpu2's Ollama dies, what gpu1 also has still runs and what only gpu2 had is answered with a
// clear "unavailable", not a pull. The subtests run in order; the last one kills Ollama 2.
func TestCluster(t *testing.T) {
	s := st
	s.agentOnly(t)
	c := startHomeCluster(t, s)

	t.Run("ollama list", func(t *testing.T) {
		r := s.ollamaCLI(t, c.nas.URL, "list")
		if r.code != 0 {
			t.Fatalf("ollama list: exit %d\nstderr: %s", r.code, r.stderr)
		}
		rows := tableFirstColumnCounts(r.stdout)
		delete(rows, "NAME")
		if want := map[string]int{"tiny:latest": 1, "tiny2:latest": 1}; !maps.Equal(rows, want) {
			t.Errorf("ollama list through the NAS: rows %v, want %v (each model once, whichever nodes have it)\n%s", rows, want, r.stdout)
		}
		// Where each model lives is in the listing too.
		where := tagNodes(t, c.nas.URL)
		if got := where["tiny:latest"]; !sameSet(got, []string{"gpu1", "gpu2"}) {
			t.Errorf("/api/tags on the NAS: tiny on %v, want gpu1 and gpu2", got)
		}
		if got := where["tiny2:latest"]; !sameSet(got, []string{"gpu2"}) {
			t.Errorf("/api/tags on the NAS: tiny2 on %v, want gpu2 only", got)
		}
	})

	t.Run("ollama run tiny2 lands on gpu2", func(t *testing.T) {
		gen1, gen2 := generateCount(c.ollama1), generateCount(c.ollama2)
		r := s.ollamaCLI(t, c.nas.URL, "run", "--verbose", "tiny2", "hello")
		if r.code != 0 {
			t.Fatalf("ollama run tiny2 hello: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		if !regexp.MustCompile(`(?m)^eval count:\s+\d+ token`).MatchString(r.stderr) {
			t.Errorf("ollama run --verbose tiny2 printed no eval count: the generation did not finish\nstderr: %s", r.stderr)
		}
		waitGenerateCount(t, c.ollama2, gen2+1)
		if n := generateCount(c.ollama1); n != gen1 {
			t.Errorf("Ollama 1 (no tiny2) got %d POST /api/generate during ollama run tiny2, want 0", n-gen1)
		}
		if node := servedBy(t, c.nas.URL, "tiny2"); node != "gpu2" {
			t.Errorf("POST /api/generate tiny2 on the NAS: X-Hearth-Node %q, want gpu2", node)
		}
	})

	t.Run("hearth status", func(t *testing.T) {
		out := hearthStatus(t, s, c.nas.URL)
		rows := statusRows(out)
		for name, role := range map[string]string{"gpu1": "serve", "gpu2": "serve", "nas": "router"} {
			if f := rows[name]; len(f) < 2 || f[1] != role {
				t.Errorf("hearth status: row for %s is %q, want role %s\n%s", name, f, role, out)
			}
		}
		if !strings.Contains(out, "3 node(s)") {
			t.Errorf("hearth status does not count 3 nodes:\n%s", out)
		}
	})

	t.Run("Ollama 2 dies", func(t *testing.T) {
		if err := c.ollama2.kill(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		waitCluster(t, c.nas.URL, 15*time.Second, func(v clusterView) string {
			n, ok := v.node("gpu2")
			switch {
			case !ok:
				return "gpu2 left the cluster view; its agent still runs, so it should stay"
			case n.Backend:
				return "gpu2's backend is still reported up"
			}
			return ""
		})
		t.Logf("the NAS saw gpu2's Ollama down %v after SIGKILL", time.Since(start).Round(10*time.Millisecond))
		if done, err := c.gpu2.exited(); done {
			t.Fatalf("gpu2's agent exited when its Ollama died: %v", err)
		}

		t.Run("hearth status shows gpu2 down", func(t *testing.T) {
			out := hearthStatus(t, s, c.nas.URL)
			if f := statusRows(out)["gpu2"]; len(f) < 3 || f[2] != "DOWN" {
				t.Errorf("hearth status: gpu2 row %q, want BACKEND DOWN\n%s", f, out)
			}
		})

		t.Run("ollama run tiny is served by gpu1", func(t *testing.T) {
			gen1 := generateCount(c.ollama1)
			r := s.ollamaCLI(t, c.nas.URL, "run", "--verbose", "tiny", "hello")
			if r.code != 0 {
				t.Fatalf("ollama run tiny hello with Ollama 2 dead: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			waitGenerateCount(t, c.ollama1, gen1+1)
			if node := servedBy(t, c.nas.URL, "tiny"); node != "gpu1" {
				t.Errorf("POST /api/generate tiny on the NAS: X-Hearth-Node %q, want gpu1", node)
			}
		})

		t.Run("ollama run tiny2 says unavailable", func(t *testing.T) {
			r := s.ollamaCLI(t, c.nas.URL, "run", "tiny2", "hello")
			t.Logf("ollama run tiny2 hello (exit %d)\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			show, showBody := do(t, "POST", c.nas.URL, "/api/show", `{"model":"tiny2"}`)
			gen, genBody := do(t, "POST", c.nas.URL, "/api/generate", `{"model":"tiny2","prompt":"hello","stream":false}`)
			t.Logf("the NAS answers /api/show: %s %s", show.Status, bytes.TrimSpace(showBody))
			t.Logf("the NAS answers /api/generate: %s %s", gen.Status, bytes.TrimSpace(genBody))

			msg := lastErrorLine(r.stderr)
			if r.code == 0 || !strings.Contains(msg, "unavailable") || !strings.Contains(msg, "tiny2") {
				t.Errorf("ollama run tiny2: exit %d, error line %q; want a failure that says tiny2 is unavailable", r.code, msg)
			}
			if strings.Contains(r.stderr, "pulling") {
				t.Errorf("ollama run tiny2 tried to pull it: the NAS must say unavailable, not unknown\nstderr: %s", r.stderr)
			}
			for _, a := range []struct {
				path   string
				status int
				body   []byte
			}{{"/api/show", show.StatusCode, showBody}, {"/api/generate", gen.StatusCode, genBody}} {
				if e := errorField(a.body); a.status != 503 || !strings.Contains(e, `model "tiny2:latest" is unavailable right now`) {
					t.Errorf("%s tiny2 on the NAS: %d %q, want 503 and model \"tiny2:latest\" is unavailable right now", a.path, a.status, e)
				}
			}
			v1, v1Body := do(t, "POST", c.nas.URL, "/v1/chat/completions", `{"model":"tiny2","messages":[{"role":"user","content":"hello"}]}`)
			var oe struct {
				Error struct {
					Code string `json:"code"`
				} `json:"error"`
			}
			_ = json.Unmarshal(v1Body, &oe)
			if v1.StatusCode != 503 || oe.Error.Code != "model_unavailable" {
				t.Errorf("/v1/chat/completions tiny2 on the NAS: %s %s, want 503 with code model_unavailable", v1.Status, v1Body)
			}
		})
	})
}

// startHomeCluster starts the two Ollamas at once (each takes a few seconds to register its
// models), then gpu1, gpu2 and the NAS, and waits until the NAS sees all three with their
// models. Everything stops when t ends.
func startHomeCluster(t *testing.T, s *stack) *homeCluster {
	t.Helper()
	dir := t.TempDir()
	c := &homeCluster{}
	var wg sync.WaitGroup
	var err1, err2 error
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.ollama1, err1 = s.startOllama(filepath.Join(dir, "ollama1"), "tiny")
	}()
	go func() {
		defer wg.Done()
		c.ollama2, err2 = s.startOllama(filepath.Join(dir, "ollama2"), "tiny", "tiny2")
	}()
	wg.Wait()
	for _, o := range []*ollamaServer{c.ollama1, c.ollama2} {
		if o != nil {
			t.Cleanup(o.stop)
		}
	}
	if err1 != nil || err2 != nil {
		t.Fatalf("start Ollama 1: %v; Ollama 2: %v", err1, err2)
	}

	var ports [3]int
	for i := range ports {
		p, err := freeGossipPort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	specs := []agentSpec{
		{Name: "gpu1", OllamaURL: c.ollama1.URL, Parallel: 2, Gossip: ports[0]},
		{Name: "gpu2", OllamaURL: c.ollama2.URL, Parallel: 2, Gossip: ports[1], Join: ports[:1]},
		{Name: "nas", Gossip: ports[2], Join: ports[:2]},
	}
	agents := []**agentProc{&c.gpu1, &c.gpu2, &c.nas}
	for i, spec := range specs {
		a, err := s.startAgent(spec, filepath.Join(dir, spec.Name))
		if a != nil {
			t.Cleanup(a.stop)
			printLogOnFailure(t, a)
			*agents[i] = a
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	want := map[string][]string{"gpu1": {"tiny:latest"}, "gpu2": {"tiny:latest", "tiny2:latest"}, "nas": nil}
	waitCluster(t, c.nas.URL, 30*time.Second, func(v clusterView) string {
		if len(v.Nodes) != 3 {
			return fmt.Sprintf("%d nodes, want 3", len(v.Nodes))
		}
		for name, models := range want {
			n, ok := v.node(name)
			role := "serve"
			if models == nil {
				role = "router"
			}
			switch {
			case !ok:
				return name + " is missing"
			case n.Role != role:
				return fmt.Sprintf("%s has role %q, want %q", name, n.Role, role)
			case role == "serve" && !n.Backend:
				return name + "'s backend is not up yet"
			case !sameSet(n.Models, models):
				return fmt.Sprintf("%s has models %v, want %v", name, n.Models, models)
			}
		}
		return ""
	})
	return c
}

func (v clusterView) node(name string) (clusterNode, bool) {
	for _, n := range v.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return clusterNode{}, false
}

// waitCluster polls agent's GET /hearth/v1/cluster until check finds nothing wrong (returns
// ""), and fails t with what was last wrong after limit.
func waitCluster(t *testing.T, agent string, limit time.Duration, check func(clusterView) string) clusterView {
	t.Helper()
	var last string
	var body []byte
	for deadline := time.Now().Add(limit); ; time.Sleep(200 * time.Millisecond) {
		var v clusterView
		resp, b := do(t, "GET", agent, "/hearth/v1/cluster", "")
		body = b
		if resp.StatusCode != 200 {
			last = fmt.Sprintf("GET /hearth/v1/cluster: %s", resp.Status)
		} else if err := json.Unmarshal(b, &v); err != nil {
			last = fmt.Sprintf("GET /hearth/v1/cluster: %v", err)
		} else if last = check(v); last == "" {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, the cluster view at %s: %s\n%s", limit, agent, last, bytes.TrimSpace(body))
		}
	}
}

// tagNodes maps each model of agent's /api/tags to the nodes its "hearth" field names.
func tagNodes(t *testing.T, agent string) map[string][]string {
	t.Helper()
	resp, b := do(t, "GET", agent, "/api/tags", "")
	var tags struct {
		Models []struct {
			Name   string `json:"name"`
			Hearth struct {
				Nodes []string `json:"nodes"`
			} `json:"hearth"`
		} `json:"models"`
	}
	if err := json.Unmarshal(b, &tags); resp.StatusCode != 200 || err != nil {
		t.Fatalf("GET /api/tags: %s %v\n%s", resp.Status, err, b)
	}
	out := map[string][]string{}
	for _, m := range tags.Models {
		out[m.Name] = append(out[m.Name], m.Hearth.Nodes...)
	}
	return out
}

// servedBy generates with model through agent and returns the node that served it.
func servedBy(t *testing.T, agent, model string) string {
	t.Helper()
	resp, b := do(t, "POST", agent, "/api/generate", fmt.Sprintf(`{"model":%q,"prompt":"hello","stream":false}`, model))
	if resp.StatusCode != 200 {
		t.Fatalf("POST /api/generate %s: %s %s", model, resp.Status, b)
	}
	return resp.Header.Get("X-Hearth-Node")
}

var ginGenerate = regexp.MustCompile(`\[GIN\].*POST\s+"/api/generate"`)

// generateCount is how many POST /api/generate o has answered (Ollama logs one [GIN] line each).
func generateCount(o *ollamaServer) int { return len(ginGenerate.FindAllString(o.log(), -1)) }

// waitGenerateCount waits for o's count to reach want: Ollama logs a request after its answer
// ended, maybe just after the client saw the end.
func waitGenerateCount(t *testing.T, o *ollamaServer, want int) {
	t.Helper()
	var n int
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n = generateCount(o); n >= want {
			break
		}
	}
	if n != want {
		t.Errorf("Ollama at %s answered %d POST /api/generate in all, want %d", o.URL, n, want)
	}
}

// hearthStatus runs `hearth status --agent agent` and returns what it printed.
func hearthStatus(t *testing.T, s *stack, agent string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.hearthBin, "status", "--agent", agent)
	cmd.Env = append(cmd.Environ(), "HOME="+s.home())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hearth status --agent %s: %v\n%s", agent, err, out)
	}
	return string(out)
}

// statusRows maps each node of `hearth status`'s table to its row's fields ("*" marks the node
// that answered and is dropped).
func statusRows(out string) map[string][]string {
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[1] == "*" {
			f = append(f[:1], f[2:]...)
		}
		if len(f) > 2 && (f[1] == "serve" || f[1] == "router") {
			rows[f[0]] = f
		}
	}
	return rows
}

// tableFirstColumnCounts counts the rows of the CLI's tables by their first column.
func tableFirstColumnCounts(out string) map[string]int {
	rows := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]]++
		}
	}
	return rows
}

// errorField is the "error" of an Ollama-style error body.
func errorField(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error
}

// sameSet tells whether a and b hold the same names, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// freeGossipPort finds a 127.0.0.1 port free for both TCP and UDP: memberlist binds both.
func freeGossipPort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port free for both TCP and UDP on 127.0.0.1 in 20 tries")
}
