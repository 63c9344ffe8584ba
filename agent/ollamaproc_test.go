package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
)

// fakeOllama writes a shell script that stands in for `ollama serve`: it prints its
// environment, records each start, exits with status 3 on its first `fails` starts, and then
// runs until signalled (ignoring SIGTERM when stubborn).
func fakeOllama(t *testing.T, fails int, stubborn bool) (binary, startsFile string) {
	t.Helper()
	dir := t.TempDir()
	startsFile = filepath.Join(dir, "starts")
	trap := `trap 'echo "level=WARN got TERM"; exit 0' TERM`
	if stubborn {
		trap = `trap '' TERM`
	}
	script := `#!/bin/sh
[ "$1" = serve ] || { echo "want serve, got $1"; exit 64; }
echo "$$" >> "` + startsFile + `"
n=$(wc -l < "` + startsFile + `")
echo "start $n host=$OLLAMA_HOST models=$OLLAMA_MODELS parallel=$OLLAMA_NUM_PARALLEL loaded=$OLLAMA_MAX_LOADED_MODELS keep=$OLLAMA_KEEP_ALIVE noprune=${OLLAMA_NOPRUNE:-unset} fa=$OLLAMA_FLASH_ATTENTION"
if [ "$n" -le ` + strconv.Itoa(fails) + ` ]; then echo "level=ERROR dying" >&2; exit 3; fi
` + trap + `
echo serving
while :; do sleep 0.05; done
`
	binary = filepath.Join(dir, "ollama")
	if err := os.WriteFile(binary, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return binary, startsFile
}

// startProc runs a supervisor of cfg's Ollama; stop stops it and fails the test if its Run
// failed.
func startProc(t *testing.T, cfg config.Agent) (p *OllamaProc, logs *hearthtest.Logs, stop func()) {
	t.Helper()
	logs = &hearthtest.Logs{}
	p, err := newOllamaProc(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	p.backoffMin, p.backoffMax, p.grace = 10*time.Millisecond, 40*time.Millisecond, 200*time.Millisecond
	return p, logs, hearthtest.Run(t, "the Ollama supervisor", p.Run)
}

func procConfig(binary string) config.Agent {
	cfg := config.DefaultAgent()
	cfg.Ollama.Manage, cfg.Ollama.Binary = true, binary
	cfg.Ollama.URL = "http://127.0.0.1:11999"
	cfg.Ollama.Parallel, cfg.Ollama.MaxLoaded, cfg.Ollama.KeepAlive = 3, 2, "30m"
	cfg.Ollama.Env = map[string]string{"OLLAMA_FLASH_ATTENTION": "1"}
	cfg.Storage.ModelsDir = "/mnt/nas/ollama-models"
	return cfg
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func pids(t *testing.T, file string) []int {
	data, _ := os.ReadFile(file)
	var out []int
	for _, f := range strings.Fields(string(data)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func TestOllamaProcRestartsWithBackoffAndStops(t *testing.T) {
	binary, starts := fakeOllama(t, 2, false)
	p, logs, stop := startProc(t, procConfig(binary))
	// "serving" comes once its SIGTERM trap is set.
	hearthtest.Eventually(t, "the third start stays up", waitLimit, func() bool {
		return p.Starts() == 3 && p.PID() != 0 && strings.Contains(logs.String(), "ollama: serving")
	})
	out := logs.String()
	for _, want := range []string{
		"start 1 host=127.0.0.1:11999 models=/mnt/nas/ollama-models parallel=3 loaded=2 keep=30m noprune=1 fa=1",
		"level=ERROR msg=\"ollama: level=ERROR dying\"",
		"managed Ollama exited; restarting in 10ms", "managed Ollama exited; restarting in 20ms", "exit status 3",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "restarting in 40ms") {
		t.Errorf("restarted more than twice:\n%s", out)
	}
	last := p.PID()
	stop()
	if got := pids(t, starts); len(got) != 3 || got[2] != last {
		t.Errorf("started pids %v, last %d", got, last)
	}
	if alive(last) {
		t.Errorf("Ollama %d still runs after stop", last)
	}
	if out := logs.String(); !strings.Contains(out, "got TERM") || !strings.Contains(out, "managed Ollama stopped") {
		t.Errorf("no clean SIGTERM stop in the log:\n%s", out)
	}
}

func TestOllamaProcKillsAfterGrace(t *testing.T) {
	binary, _ := fakeOllama(t, 0, true)
	p, logs, stop := startProc(t, procConfig(binary))
	hearthtest.Eventually(t, "Ollama runs", waitLimit, func() bool { return p.PID() != 0 && strings.Contains(logs.String(), "ollama: serving") })
	pid := p.PID()
	stop()
	if alive(pid) {
		t.Errorf("Ollama %d still runs", pid)
	}
	if !strings.Contains(logs.String(), "did not stop within 200ms of SIGTERM; killed it") {
		t.Errorf("log:\n%s", logs.String())
	}
}

func TestOllamaProcPruneOwnerAndMissingBinary(t *testing.T) {
	cfg := procConfig("/nonexistent/ollama")
	cfg.Storage.PruneOwner = true
	host, _ := cfg.Ollama.OllamaHost()
	for _, kv := range ollamaEnv(cfg, host) {
		if strings.HasPrefix(kv, "OLLAMA_NOPRUNE") {
			t.Errorf("the prune owner got %s", kv)
		}
	}
	logs := &hearthtest.Logs{}
	p, err := newOllamaProc(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = p.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), `cannot start the managed Ollama (ollama.binary "/nonexistent/ollama")`) {
		t.Fatalf("got %v", err)
	}
}

// TestOllamaProcRestartsWhenARunnerOutlivesIt: Ollama's runners inherit its output; when
// `ollama serve` dies and leaves one running, the supervisor still restarts it (and kills
// the runner with its process group) instead of waiting for the runner's end.
func TestOllamaProcRestartsWhenARunnerOutlivesIt(t *testing.T) {
	dir := t.TempDir()
	startsFile, runnerFile := filepath.Join(dir, "starts"), filepath.Join(dir, "runner")
	script := `#!/bin/sh
echo "$$" >> "` + startsFile + `"
if [ "$(wc -l < "` + startsFile + `")" -eq 1 ]; then
  sleep 60 &
  echo "$!" > "` + runnerFile + `"
  echo "level=ERROR dying, a runner left behind"
  exit 3
fi
trap 'exit 0' TERM
while :; do sleep 0.05; done
`
	binary := filepath.Join(dir, "ollama")
	if err := os.WriteFile(binary, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p, _, _ := startProc(t, procConfig(binary))
	hearthtest.Eventually(t, "Ollama is started again although its runner holds the output", waitLimit, func() bool { return p.Starts() == 2 && p.PID() != 0 })
	runner := pids(t, runnerFile)
	if len(runner) != 1 {
		t.Fatalf("runner pids %v", runner)
	}
	hearthtest.Eventually(t, "the left-behind runner is killed with the group", waitLimit, func() bool { return !alive(runner[0]) })
}

// TestLineLogBoundsLines: a child's output reaches the log in records of at most maxLine
// bytes, also when a long line ends in the same write.
func TestLineLogBoundsLines(t *testing.T) {
	logs := &hearthtest.Logs{}
	l := &lineLog{log: slog.New(slog.NewJSONHandler(logs, nil))}
	long := strings.Repeat("a", 3*maxLine+10)
	if n, err := l.Write([]byte(long + "\nshort\n")); err != nil || n != len(long)+7 {
		t.Fatalf("Write: %d, %v", n, err)
	}
	l.flush()
	var total int
	var records []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct{ Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		records = append(records, rec.Msg)
		msg := strings.TrimPrefix(rec.Msg, "ollama: ")
		if len(msg) > maxLine {
			t.Errorf("a record of %d bytes, over %d", len(msg), maxLine)
		}
		total += len(msg)
	}
	if len(records) != 5 || records[4] != "ollama: short" || total != len(long)+len("short") {
		t.Errorf("%d records, %d bytes: last %q", len(records), total, records[len(records)-1])
	}
}

// TestOllamaProcStopIsBounded: an Ollama that SIGKILL does not end at once (in the kernel,
// reading a hung NFS store) does not hold the agent's stop for ever.
func TestOllamaProcStopIsBounded(t *testing.T) {
	binary, _ := fakeOllama(t, 0, true)
	logs := &hearthtest.Logs{}
	p, err := newOllamaProc(procConfig(binary), slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	p.grace, p.killWait = 100*time.Millisecond, 200*time.Millisecond
	var killed []int
	p.kill = func(pid int, sig syscall.Signal) error { // SIGKILL "does not land" yet
		if sig == syscall.SIGKILL {
			killed = append(killed, pid)
			return nil
		}
		return syscall.Kill(pid, sig)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	hearthtest.Eventually(t, "Ollama runs", waitLimit, func() bool { return p.PID() != 0 && strings.Contains(logs.String(), "ollama: serving") })
	pid := p.PID()
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the supervisor waits for an Ollama that does not die")
	}
	if len(killed) != 1 || killed[0] != -pid {
		t.Errorf("SIGKILL went to %v, want the group -%d", killed, pid)
	}
	if !strings.Contains(logs.String(), "did not die within 200ms of SIGKILL") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// TestOllamaProcGetsNoHearthSecrets: the managed Ollama does not inherit hearth's own
// variables (the cluster secret, API keys, the tunnel token).
func TestOllamaProcGetsNoHearthSecrets(t *testing.T) {
	t.Setenv("HEARTH_CLUSTER_KEY", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=")
	t.Setenv("SOME_PROXY_SETTING", "kept")
	dir := t.TempDir()
	binary := filepath.Join(dir, "ollama")
	script := "#!/bin/sh\necho \"cluster=${HEARTH_CLUSTER_KEY:-unset} proxy=${SOME_PROXY_SETTING:-unset} host=$OLLAMA_HOST\"\ntrap 'exit 0' TERM\necho serving\nwhile :; do sleep 0.05; done\n"
	if err := os.WriteFile(binary, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	_, logs, _ := startProc(t, procConfig(binary))
	hearthtest.Eventually(t, "Ollama runs", waitLimit, func() bool { return strings.Contains(logs.String(), "ollama: serving") })
	if out := logs.String(); !strings.Contains(out, "cluster=unset proxy=kept host=127.0.0.1:11999") || strings.Contains(out, "c2VjcmV0") {
		t.Errorf("Ollama's environment:\n%s", out)
	}
}

// TestOllamaProcWaitsForAForeignOllama: with another program on OLLAMA_HOST (an
// ollama.service left enabled), the supervisor says what to stop and starts nothing until the
// port is free, instead of restarting an Ollama that dies with "address already in use".
func TestOllamaProcWaitsForAForeignOllama(t *testing.T) {
	foreign, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { foreign.Close() })
	binary, _ := fakeOllama(t, 0, false)
	cfg := procConfig(binary)
	cfg.Ollama.URL = "http://" + foreign.Addr().String()
	p, logs, stop := startProc(t, cfg)
	defer stop()
	hearthtest.Eventually(t, "the supervisor names the taken port", waitLimit, func() bool {
		return strings.Contains(logs.String(), "something else already listens at "+foreign.Addr().String()+", so the managed Ollama cannot start there")
	})
	if n := p.Starts(); n != 0 {
		t.Fatalf("Ollama was started %d time(s) on a taken port:\n%s", n, logs)
	}
	foreign.Close()
	hearthtest.Eventually(t, "Ollama starts once the port is free", waitLimit, func() bool {
		return p.Starts() == 1 && strings.Contains(logs.String(), "nothing else listens at OLLAMA_HOST any more")
	})
}
