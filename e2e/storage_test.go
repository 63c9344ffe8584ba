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
// Ollamas frozen the store's models are still listed.
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
		waitStoreView(t, gpu1.URL, func(v hearthView) bool { return v.backends() == 0 })
		out, err := exec.Command(s.hearthBin, "models", "ls", "--agent", gpu1.URL).CombinedOutput()
		if err != nil {
			t.Fatalf("hearth models ls: %v\n%s", err, out)
		}
		var row string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "tiny:latest") {
				row = line
			}
		}
		if !strings.Contains(row, "gpu1,gpu2") {
			t.Errorf("hearth models ls with both Ollamas stopped: want tiny on the store of gpu1,gpu2:\n%s", out)
		}
		resp, body := do(t, "POST", gpu1.URL, "/api/generate", `{"model":"tiny","prompt":"hi","stream":false}`)
		if resp.StatusCode != 503 || !strings.Contains(string(body), "unavailable") {
			t.Errorf("generate with both Ollamas stopped: %d %s, want 503 unavailable (the model exists)", resp.StatusCode, body)
		}
	})
}

// hearthView is the part of GET /hearth/v1/cluster this test reads.
type hearthView struct {
	Nodes []struct {
		Name    string `json:"name"`
		Backend bool   `json:"backend"`
		Storage *struct {
			Dir     string `json:"dir"`
			Healthy bool   `json:"healthy"`
		} `json:"storage"`
		Stored []struct {
			Name string `json:"name"`
		} `json:"stored"`
	} `json:"nodes"`
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

func waitStoreView(t *testing.T, base string, cond func(hearthView) bool) {
	t.Helper()
	var last []byte
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		resp, body := do(t, "GET", base, "/hearth/v1/cluster", "")
		last = body
		var v hearthView
		if resp.StatusCode == 200 && json.Unmarshal(body, &v) == nil && cond(v) {
			return
		}
	}
	t.Fatalf("the cluster view from %s never got there; last:\n%s", base, last)
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
