//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSharedStore: two agents share one models dir, each running its own real Ollama
// (ollama.manage); one is the prune owner. Killing an Ollama gets it restarted; with both
// Ollamas frozen the store's models are still listed, and an agent started with no Ollama
// at all knows the models from the manifests the real Ollama wrote.
func TestSharedStore(t *testing.T) {
	s := st
	s.agentOnly(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	// Fill the store the way `ollama pull` would, then stop that Ollama.
	seed, err := s.startOllama(store, "tiny")
	if err != nil {
		t.Fatal(err)
	}
	seed.stop()

	g1, err := freeGossipPort()
	if err != nil {
		t.Fatal(err)
	}
	g2, err := freeGossipPort()
	if err != nil {
		t.Fatal(err)
	}
	var agents [2]*agentProc
	for i, spec := range []struct {
		name   string
		gossip int
		join   []int
		owner  bool
	}{{"gpu1", g1, nil, true}, {"gpu2", g2, []int{g1}, false}} {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		a, err := s.startAgent(agentSpec{
			Name: spec.name, OllamaURL: fmt.Sprintf("http://127.0.0.1:%d", port), Parallel: 2, Gossip: spec.gossip, Join: spec.join,
			OllamaYAML: fmt.Sprintf("  manage: true\n  binary: %q\n  keep_alive: 10m\n", s.ollamaBin),
			YAML:       fmt.Sprintf("storage:\n  models_dir: %q\n  prune_owner: %t\n  health_interval: 1s\nidle:\n  inhibit: false\n", store, spec.owner),
		}, filepath.Join(dir, spec.name))
		if a != nil {
			t.Cleanup(a.stop)
			printLogOnFailure(t, a)
		}
		if err != nil {
			t.Fatal(err)
		}
		agents[i] = a
	}
	gpu1, gpu2 := agents[0], agents[1]

	t.Run("prune owner", func(t *testing.T) {
		env1, env2 := startedEnv(t, gpu1), startedEnv(t, gpu2)
		if strings.Contains(env1, "OLLAMA_NOPRUNE") || !strings.Contains(env1, "OLLAMA_MODELS="+store) {
			t.Errorf("gpu1 (the prune owner) started Ollama with %s", env1)
		}
		if !strings.Contains(env2, "OLLAMA_NOPRUNE=1") {
			t.Errorf("gpu2 started Ollama with %s, want OLLAMA_NOPRUNE=1", env2)
		}
		waitStoreView(t, gpu1.URL, func(v hearthView) bool { return v.backends() == 2 })
		for _, a := range agents {
			resp, body := do(t, "POST", a.URL, "/api/generate", `{"model":"tiny","prompt":"hi","stream":false}`)
			if resp.StatusCode != 200 {
				t.Fatalf("generate through %s: %d %s", a.Name, resp.StatusCode, body)
			}
		}
	})

	t.Run("a killed Ollama is restarted", func(t *testing.T) {
		pids := startedPIDs(t, gpu1)
		old := pids[len(pids)-1]
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatalf("kill Ollama %d: %v", old, err)
		}
		deadline := time.Now().Add(90 * time.Second)
		for len(startedPIDs(t, gpu1)) == len(pids) {
			if time.Now().After(deadline) {
				t.Fatalf("gpu1 did not restart its Ollama within 90s")
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.Contains(readLog(t, gpu1), "managed Ollama exited; restarting in") {
			t.Errorf("gpu1's log does not say its Ollama died")
		}
		waitStoreView(t, gpu2.URL, func(v hearthView) bool { return v.backends() == 2 })
		resp, body := do(t, "POST", gpu1.URL, "/api/generate", `{"model":"tiny","prompt":"hi","stream":false}`)
		if resp.StatusCode != 200 {
			t.Fatalf("generate after the restart: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("the store's models without Ollama", func(t *testing.T) {
		var frozen []int
		for _, a := range agents {
			pids := startedPIDs(t, a)
			pid := pids[len(pids)-1]
			if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
				t.Fatalf("stop %s's Ollama: %v", a.Name, err)
			}
			frozen = append(frozen, pid)
		}
		t.Cleanup(func() {
			for _, pid := range frozen {
				syscall.Kill(-pid, syscall.SIGCONT)
			}
		})
		// The agents keep the model lists their Ollamas gave last, so only the nodes'
		// stored models (and the ON STORE OF column) show that the store itself was read.
		v := waitStoreView(t, gpu1.URL, func(v hearthView) bool { return v.backends() == 0 })
		for _, name := range []string{"gpu1", "gpu2"} {
			if n, ok := v.node(name); !ok || !n.stores("tiny:latest") {
				t.Errorf("%s's store in the cluster view does not hold tiny:latest: %+v", name, n)
			}
		}
		if row := s.modelsRow(t, gpu1.URL, "tiny:latest"); row["ON STORE OF"] != "gpu1,gpu2" {
			t.Errorf("hearth models ls with both Ollamas stopped: want tiny:latest on the store of gpu1,gpu2, got %q", row)
		}
		resp, body := do(t, "POST", gpu1.URL, "/api/generate", `{"model":"tiny","prompt":"hi","stream":false}`)
		if resp.StatusCode != 503 || !strings.Contains(string(body), "unavailable") {
			t.Errorf("generate with both Ollamas stopped: %d %s, want 503 unavailable (the model exists)", resp.StatusCode, body)
		}
	})

	// An agent started while no Ollama runs has never had a model list from Ollama: what it
	// knows of tiny can only come from the manifests the real Ollama wrote on the store.
	t.Run("an agent whose Ollama does not run reads the store", func(t *testing.T) {
		gpu1.stop()
		gpu2.stop()
		closed, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		a, err := s.startAgentUnready(agentSpec{
			Name: "gpu2", OllamaURL: fmt.Sprintf("http://127.0.0.1:%d", closed), Gossip: g2,
			YAML: fmt.Sprintf("storage:\n  models_dir: %q\n  health_interval: 1s\nidle:\n  inhibit: false\n", store),
		}, filepath.Join(dir, "gpu2-without-ollama"))
		if a != nil {
			t.Cleanup(a.stop)
			printLogOnFailure(t, a)
		}
		if err != nil {
			t.Fatal(err)
		}
		v := waitStoreView(t, a.URL, func(v hearthView) bool {
			n, ok := v.node("gpu2")
			return ok && n.Storage != nil && n.Storage.Healthy
		})
		n, _ := v.node("gpu2")
		if len(v.Nodes) != 1 || n.Backend || len(n.Models) != 0 {
			t.Fatalf("want gpu2 alone with no Ollama and no model list from it: %+v", v.Nodes)
		}
		if !n.stores("tiny:latest") {
			t.Errorf("gpu2's store as read by the agent: %+v, want tiny:latest with its size", n.Stored)
		}
		if row := s.modelsRow(t, a.URL, "tiny:latest"); row["ON STORE OF"] != "gpu2" || row["OLLAMA ON"] != "-" {
			t.Errorf("hearth models ls without Ollama: want tiny:latest on the store of gpu2 and on no Ollama, got %q", row)
		}
		resp, body := do(t, "POST", a.URL, "/api/generate", `{"model":"tiny","prompt":"hi","stream":false}`)
		if resp.StatusCode != 503 || !strings.Contains(string(body), "model store of gpu2") {
			t.Errorf("generate without Ollama: %d %s, want 503: tiny is on the model store of gpu2", resp.StatusCode, body)
		}
	})
}

// modelsRow is the row of model in `hearth models ls`, by column header.
func (s *stack) modelsRow(t *testing.T, agentURL, model string) map[string]string {
	t.Helper()
	out, err := exec.Command(s.hearthBin, "models", "ls", "--agent", agentURL).CombinedOutput()
	if err != nil {
		t.Fatalf("hearth models ls: %v\n%s", err, out)
	}
	lines := strings.Split(string(out), "\n")
	for _, line := range lines[1:] {
		if f := strings.Fields(line); len(f) > 0 && f[0] == model {
			return tableRow(lines[0], line)
		}
	}
	t.Fatalf("hearth models ls does not list %s:\n%s", model, out)
	return nil
}

// tableRow cuts a tabwriter row at its header's columns (a header is words separated by
// two or more spaces; a cell, such as a size, may hold one).
func tableRow(header, line string) map[string]string {
	var starts []int
	var names []string
	for i := 0; i < len(header); {
		for i < len(header) && header[i] == ' ' {
			i++
		}
		if i == len(header) {
			break
		}
		end := strings.Index(header[i:], "  ")
		if end < 0 {
			end = len(header) - i
		}
		starts, names = append(starts, i), append(names, header[i:i+end])
		i += end
	}
	row := map[string]string{}
	for k, start := range starts {
		end := len(line)
		if k+1 < len(starts) {
			end = min(starts[k+1], len(line))
		}
		if start < end {
			row[names[k]] = strings.TrimSpace(line[start:end])
		}
	}
	return row
}

// hearthView is the part of GET /hearth/v1/cluster this test reads.
type hearthView struct {
	Nodes []hearthNode `json:"nodes"`
}

type hearthNode struct {
	Name    string   `json:"name"`
	Backend bool     `json:"backend"`
	Models  []string `json:"models"`
	Storage *struct {
		Dir     string `json:"dir"`
		Healthy bool   `json:"healthy"`
	} `json:"storage"`
	Stored []struct {
		Name string `json:"name"`
		Size int64  `json:"size"`
	} `json:"stored"`
}

func (v hearthView) node(name string) (hearthNode, bool) {
	for _, n := range v.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return hearthNode{}, false
}

// stores is whether the node's store holds model, with a size read from its manifest.
func (n hearthNode) stores(model string) bool {
	for _, m := range n.Stored {
		if m.Name == model && m.Size > 0 {
			return true
		}
	}
	return false
}

func (v hearthView) backends() int {
	n := 0
	for _, nd := range v.Nodes {
		if nd.Backend {
			n++
		}
	}
	return n
}

// waitStoreView returns the first cluster view from base that meets cond.
func waitStoreView(t *testing.T, base string, cond func(hearthView) bool) hearthView {
	t.Helper()
	var last []byte
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		resp, body := do(t, "GET", base, "/hearth/v1/cluster", "")
		last = body
		var v hearthView
		if resp.StatusCode == 200 && json.Unmarshal(body, &v) == nil && cond(v) {
			return v
		}
	}
	t.Fatalf("the cluster view from %s never got there; last:\n%s", base, last)
	return hearthView{}
}

func readLog(t *testing.T, a *agentProc) string {
	b, err := os.ReadFile(a.Log)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// startedRecords are the agent's "managed Ollama started" log records.
func startedRecords(t *testing.T, a *agentProc) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(readLog(t, a)))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "managed Ollama started" {
			out = append(out, rec)
		}
	}
	return out
}

func startedPIDs(t *testing.T, a *agentProc) []int {
	var pids []int
	for _, rec := range startedRecords(t, a) {
		if pid, ok := rec["pid"].(float64); ok {
			pids = append(pids, int(pid))
		}
	}
	if len(pids) == 0 {
		t.Fatalf("%s never logged starting its Ollama", a.Name)
	}
	return pids
}

func startedEnv(t *testing.T, a *agentProc) string {
	recs := startedRecords(t, a)
	if len(recs) == 0 {
		t.Fatalf("%s never logged starting its Ollama", a.Name)
	}
	b, _ := json.Marshal(recs[0]["env"])
	return string(b)
}
