package agent

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/internal/ollamasim"
)

func TestSleepInhibitorWhileRequestsRun(t *testing.T) {
	dir := t.TempDir()
	pidFile, idleFile := filepath.Join(dir, "inhibitor.pid"), filepath.Join(dir, "idle")
	inhibitor := filepath.Join(dir, "inhibit")
	script := "#!/bin/sh\necho \"$$ $*\" >> " + pidFile + "\nexec sleep 60\n"
	if err := os.WriteFile(inhibitor, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// 2s requests: the inhibitor is seen while they run, even on a busy machine.
	sim := ollamasim.New(ollamasim.Config{Models: []ollamasim.Model{{Name: "tiny"}}, TokenDelay: 40 * time.Millisecond, Tokens: 50, Parallel: 2})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	cfg := config.DefaultAgent()
	cfg.Node.Name, cfg.Node.Listen, cfg.Ollama.URL = "gpu", "127.0.0.1:0", sim.URL()
	cfg.Ollama.PollInterval = 100 * time.Millisecond
	cfg.Idle.After, cfg.Idle.Command = 300*time.Millisecond, "echo idle >> "+idleFile
	base, logs := startAgentWith(t, cfg, WithInhibitCommand(inhibitor, "--what=sleep"))
	hearthtest.Eventually(t, "the agent sees tiny", waitLimit, func() bool {
		resp, body := do(t, http.MethodGet, base+"/api/tags", "")
		return resp.StatusCode == 200 && strings.Contains(body, "tiny")
	})

	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			resp, body := do(t, http.MethodPost, base+"/api/generate", `{"model":"tiny","prompt":"hi"}`)
			if resp.StatusCode != 200 {
				t.Errorf("generate: %d %s", resp.StatusCode, body)
			}
		})
	}
	var pid int
	hearthtest.Eventually(t, "the inhibitor runs during the requests", waitLimit, func() bool {
		data, _ := os.ReadFile(pidFile)
		f := strings.Fields(string(data))
		if len(f) < 2 {
			return false
		}
		pid, _ = strconv.Atoi(f[0])
		return f[1] == "--what=sleep" && alive(pid)
	})
	wg.Wait()
	hearthtest.Eventually(t, "the inhibitor is released after the requests", waitLimit, func() bool { return !alive(pid) })
	if data, _ := os.ReadFile(pidFile); strings.Count(string(data), "\n") != 1 {
		t.Errorf("one inhibitor for two overlapping requests, got:\n%s", data)
	}
	hearthtest.Eventually(t, "idle.command runs after idle.after", waitLimit, func() bool {
		data, _ := os.ReadFile(idleFile)
		return strings.HasPrefix(string(data), "idle\n")
	})
	if !strings.Contains(logs.String(), "running idle.command") {
		t.Errorf("log:\n%s", logs)
	}
}

func TestSleepInhibitorMissing(t *testing.T) {
	sim := startSim(t, "tiny")
	cfg := config.DefaultAgent()
	cfg.Node.Name, cfg.Node.Listen, cfg.Ollama.URL = "gpu", "127.0.0.1:0", sim.URL()
	base, logs := startAgentWith(t, cfg, WithInhibitCommand("/nonexistent/systemd-inhibit"))
	for range 3 {
		hearthtest.Eventually(t, "generate", waitLimit, func() bool {
			resp, _ := do(t, http.MethodPost, base+"/api/generate", `{"model":"tiny","prompt":"hi","stream":false}`)
			return resp.StatusCode == 200
		})
	}
	hearthtest.Eventually(t, "the missing inhibitor is reported", waitLimit, func() bool { return strings.Contains(logs.String(), "no sleep inhibitor") })
	if n := strings.Count(logs.String(), "no sleep inhibitor"); n != 1 {
		t.Errorf("reported %d times, want once", n)
	}
}

// startAgentWith runs an agent with cfg and options; it returns its base URL and log.
func startAgentWith(t *testing.T, cfg config.Agent, opts ...Option) (string, *hearthtest.Logs) {
	t.Helper()
	logs := &hearthtest.Logs{}
	a, err := New(cfg, logs.Logger(), "test", opts...)
	if err != nil {
		t.Fatal(err)
	}
	hearthtest.Run(t, "agent", a.Run)
	return "http://" + a.Addr().String(), logs
}

// TestSleepInhibitorReleasedWhenTheAgentStops: requests still in flight when the guard stops
// (the agent shutting down) do not leave the inhibitor running.
func TestSleepInhibitorReleasedWhenTheAgentStops(t *testing.T) {
	dir := t.TempDir()
	pidFile, inhibitor := filepath.Join(dir, "inhibitor.pid"), filepath.Join(dir, "inhibit")
	if err := os.WriteFile(inhibitor, []byte("#!/bin/sh\necho $$ > "+pidFile+"\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	g := newSleepGuard([]string{inhibitor}, 0, "", func() int { return 1 }, slog.New(slog.DiscardHandler))
	stop := hearthtest.Run(t, "sleep guard", g.Run)
	g.changed()
	var pid int
	hearthtest.Eventually(t, "the inhibitor runs", waitLimit, func() bool {
		data, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		return pid > 0 && alive(pid)
	})
	stop()
	if alive(pid) {
		t.Errorf("the inhibitor %d still runs after the guard stopped", pid)
	}
}

// TestSleepInhibitorDuringAPull: a pull on a clustered node (a store operation, no model
// request) is work in flight too: the machine does not fall asleep in the middle of it.
func TestSleepInhibitorDuringAPull(t *testing.T) {
	dir := t.TempDir()
	pidFile, inhibitor := filepath.Join(dir, "inhibitor.pid"), filepath.Join(dir, "inhibit")
	if err := os.WriteFile(inhibitor, []byte("#!/bin/sh\necho $$ > "+pidFile+"\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	gpu := startMember(t, memberSpec{name: "gpu", models: []string{"tiny"}, opts: []Option{WithInhibitCommand(inhibitor)},
		mutate: func(c *config.Agent) { c.Idle.Inhibit = true }}, "")
	waitMembers(t, gpu, 1)
	if err := gpu.sim.SetFault(ollamasim.Fault{Kind: ollamasim.FaultHang, Paths: []string{"/api/pull"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pulled := make(chan struct{})
	go func() {
		defer close(pulled)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gpu.base+"/api/pull", strings.NewReader(`{"model":"big"}`))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	var pid int
	hearthtest.Eventually(t, "the inhibitor runs during the pull", waitLimit, func() bool {
		data, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		return pid > 0 && alive(pid)
	})
	cancel() // the pull ends
	<-pulled
	hearthtest.Eventually(t, "the inhibitor is released after the pull", waitLimit, func() bool { return !alive(pid) })
}

// TestSleepInhibitorDuringALoad: `hearth models prewarm --load` loads a model through the
// node API, not a model request; the machine stays awake for it too.
func TestSleepInhibitorDuringALoad(t *testing.T) {
	dir := t.TempDir()
	pidFile, inhibitor := filepath.Join(dir, "inhibitor.pid"), filepath.Join(dir, "inhibit")
	if err := os.WriteFile(inhibitor, []byte("#!/bin/sh\necho $$ > "+pidFile+"\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sim := startSim(t, "tiny")
	cfg := config.DefaultAgent()
	cfg.Node.Name, cfg.Node.Listen, cfg.Ollama.URL = "gpu", "127.0.0.1:0", sim.URL()
	base, _ := startAgentWith(t, cfg, WithInhibitCommand(inhibitor))
	if err := sim.SetFault(ollamasim.Fault{Kind: ollamasim.FaultHang, Paths: []string{"/api/generate"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+NodePath+"/load", strings.NewReader(`{"model":"tiny"}`))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	var pid int
	hearthtest.Eventually(t, "the inhibitor runs during the load", waitLimit, func() bool {
		data, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		return pid > 0 && alive(pid)
	})
	cancel()
	<-loaded
	hearthtest.Eventually(t, "the inhibitor is released after the load", waitLimit, func() bool { return !alive(pid) })
}
