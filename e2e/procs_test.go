//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ollamaServer is one real `ollama serve` that serve.sh started, with its own model store.
type ollamaServer struct {
	URL string
	Dir string // its OLLAMA_MODELS; serve.sh writes serve.log there
	pg  int    // process group of serve.sh, ollama serve and its runners
}

// startOllama starts a real Ollama on a free 127.0.0.1 port with the model store dir and
// registers models in it (serve.sh's default, tiny and tiny2, when none are named). The caller
// stops it with stop.
func (s *stack) startOllama(dir string, models ...string) (*ollamaServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.root, "e2e", "realollama", "serve.sh"),
		strconv.Itoa(port), dir, "2")
	cmd.Env = append(os.Environ(), s.proxyEnv()...)
	cmd.Env = append(cmd.Env, "HEARTH_E2E_CACHE="+s.cache, "HOME="+s.home())
	if len(models) > 0 {
		cmd.Env = append(cmd.Env, "MODELS="+strings.Join(models, " "))
	}
	// serve.sh, the ollama serve it leaves running and that server's runners share one process
	// group, so that stop ends them all and nothing else.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	o := &ollamaServer{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Dir: dir}
	if cmd.Process != nil {
		o.pg = cmd.Process.Pid
	}
	if err != nil {
		o.stop()
		return nil, fmt.Errorf("serve.sh: %w\n%s", err, stderr.Bytes())
	}
	if _, err := strconv.Atoi(strings.TrimSpace(string(out))); err != nil {
		o.stop()
		return nil, fmt.Errorf("serve.sh printed %q, not a PID", out)
	}
	return o, nil
}

// stop ends the server and its runners: SIGTERM, then SIGKILL.
func (o *ollamaServer) stop() { killGroup(o.pg, 15*time.Second) }

// kill ends the server and its runners at once with SIGKILL, as a crash would, and returns
// when its port refuses connections.
func (o *ollamaServer) kill() error {
	if err := syscall.Kill(-o.pg, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill process group %d: %w", o.pg, err)
	}
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := client.Get(o.URL + "/api/version")
		if err != nil {
			return nil
		}
		resp.Body.Close()
	}
	return fmt.Errorf("ollama at %s still answers 10s after SIGKILL", o.URL)
}

// log is what the server wrote so far (Ollama logs one [GIN] line per request).
func (o *ollamaServer) log() string {
	b, _ := os.ReadFile(filepath.Join(o.Dir, "serve.log"))
	return string(b)
}

// agentSpec is what differs between the agents the tests start.
type agentSpec struct {
	Name      string
	OllamaURL string // "" makes a router-only node
	Parallel  int    // ollama.parallel; 0 keeps the default
	Gossip    int    // cluster.bind port on 127.0.0.1; 0 = no cluster
	Join      []int  // gossip ports of the peers to join
	Tunnel    *agentTunnel
	// OllamaYAML is more of the ollama: section ("  manage: true\n"); YAML more sections.
	OllamaYAML, YAML string
}

// agentTunnel is an agent's tunnel: section, to a relay on 127.0.0.1.
type agentTunnel struct {
	Relay      string // the relay's tunnel.bind, "127.0.0.1:PORT"
	Token      string // the relay's tunnel.token
	Name       string // the channel; the relay's tunnel.home serves /api and /v1
	CA         string // PEM file of the roots that sign the relay's certificate
	ServerName string // the name in the relay's certificate
}

// clusterSecret is the gossip key of the test clusters (base64 of 32 bytes).
const clusterSecret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

func (a agentSpec) yaml(listen int, dataDir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node:\n  name: %s\n  listen: \"127.0.0.1:%d\"\n  data_dir: %q\n", a.Name, listen, dataDir)
	fmt.Fprintf(&b, "ollama:\n  url: %q\n", a.OllamaURL)
	if a.Parallel > 0 {
		fmt.Fprintf(&b, "  parallel: %d\n", a.Parallel)
	}
	b.WriteString(a.OllamaYAML)
	if a.Gossip > 0 {
		fmt.Fprintf(&b, "cluster:\n  bind: \"127.0.0.1:%d\"\n  secret: %q\n  timings: fast\n", a.Gossip, clusterSecret)
		if len(a.Join) > 0 {
			b.WriteString("  join:\n")
			for _, p := range a.Join {
				fmt.Fprintf(&b, "    - \"127.0.0.1:%d\"\n", p)
			}
		}
	}
	if t := a.Tunnel; t != nil {
		fmt.Fprintf(&b, "tunnel:\n  relay: %q\n  token: %q\n  name: %q\n  ca: %q\n  server_name: %q\n",
			t.Relay, t.Token, t.Name, t.CA, t.ServerName)
	}
	b.WriteString(a.YAML)
	return b.String()
}

// agentProc is one running `hearth agent` (or, with Role "relay", `hearth relay`).
type agentProc struct {
	Role string // "agent" or "relay"
	Name string
	URL  string
	Log  string // its stdout and stderr
	cmd  *exec.Cmd
	end  chan error // gets Wait's result once; put back by whoever reads it
}

// startAgent writes spec's config under dir and starts `hearth agent` with it; it returns
// once the agent answers /readyz with 200. The caller stops it with stop, also on error.
func (s *stack) startAgent(spec agentSpec, dir string) (*agentProc, error) {
	a, err := s.launchAgent(spec, dir)
	if err != nil {
		return a, err
	}
	return a, a.waitReady(90 * time.Second)
}

// startAgentUnready is startAgent for an agent that has no Ollama to be ready with: it
// returns once the agent's API answers at all.
func (s *stack) startAgentUnready(spec agentSpec, dir string) (*agentProc, error) {
	a, err := s.launchAgent(spec, dir)
	if err != nil {
		return a, err
	}
	return a, a.waitServing(90 * time.Second)
}

func (s *stack) launchAgent(spec agentSpec, dir string) (*agentProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte(spec.yaml(port, filepath.Join(dir, "data"))), 0o644); err != nil {
		return nil, err
	}
	return s.startHearth("agent", spec.Name, fmt.Sprintf("http://127.0.0.1:%d", port), filepath.Join(dir, "agent.log"),
		"--config", cfg, "--log-level", "debug")
}

// startHearth starts `hearth ROLE args...` in its own process group, with its output in logPath.
// The caller stops it with stop.
func (s *stack) startHearth(role, name, url, logPath string, args ...string) (*agentProc, error) {
	a := &agentProc{Role: role, Name: name, URL: url, Log: logPath}
	logf, err := os.Create(a.Log)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(s.hearthBin, append([]string{role}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), s.proxyEnv()...)
	cmd.Env = append(cmd.Env, "HOME="+s.home())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start hearth %s %s: %w", role, name, err)
	}
	a.cmd = cmd
	a.end = make(chan error, 1)
	go func() { a.end <- cmd.Wait(); logf.Close() }()
	return a, nil
}

// exited tells whether the agent's process has ended, and how.
func (a *agentProc) exited() (bool, error) {
	select {
	case err := <-a.end:
		a.end <- err
		return true, err
	default:
		return false, nil
	}
}

func (a *agentProc) waitReady(limit time.Duration) error {
	return a.waitReadyz(limit, func(status int) bool { return status == http.StatusOK })
}

// waitServing waits until the agent's API answers, ready or not (503 from an agent whose
// Ollama is not running).
func (a *agentProc) waitServing(limit time.Duration) error {
	return a.waitReadyz(limit, func(int) bool { return true })
}

func (a *agentProc) waitReadyz(limit time.Duration, done func(status int) bool) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for time.Now().Before(deadline) {
		if done, err := a.exited(); done {
			return fmt.Errorf("hearth %s %s exited before it was ready: %v", a.Role, a.Name, err)
		}
		resp, err := client.Get(a.URL + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if done(resp.StatusCode) {
				return nil
			}
			last = fmt.Sprintf("%s %s", resp.Status, b)
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("hearth %s %s not ready after %v: last /readyz: %s", a.Role, a.Name, limit, last)
}

// stop asks the process to stop (SIGTERM) and reports when it does not within 10 s.
func (a *agentProc) stop() {
	if a == nil || a.cmd == nil {
		return
	}
	pid := a.cmd.Process.Pid
	if done, _ := a.exited(); done {
		killGroup(pid, time.Second)
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case err := <-a.end:
		a.end <- err
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: hearth %s %s exited after SIGTERM with %v\n", a.Role, a.Name, err)
		}
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "e2e: hearth %s %s still running 10s after SIGTERM; killing it\n", a.Role, a.Name)
		a.printLog(os.Stderr, 0)
	}
	killGroup(pid, 5*time.Second)
}

func (a *agentProc) logSize() int64 {
	fi, err := os.Stat(a.Log)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// printLog writes the process's log from byte off on, at most its last 64 KiB.
func (a *agentProc) printLog(w io.Writer, off int64) {
	b, err := os.ReadFile(a.Log)
	if err != nil {
		fmt.Fprintf(w, "(hearth %s log: %v)\n", a.Role, err)
		return
	}
	if off > int64(len(b)) {
		off = 0
	}
	b = b[off:]
	const limit = 64 << 10
	if len(b) > limit {
		fmt.Fprintf(w, "(... %d bytes left out)\n", len(b)-limit)
		b = b[len(b)-limit:]
	}
	w.Write(b)
}

// killGroup ends process group pg: SIGTERM, then SIGKILL after grace.
func killGroup(pg int, grace time.Duration) {
	if pg <= 0 {
		return
	}
	if syscall.Kill(-pg, syscall.SIGTERM) != nil {
		return
	}
	for deadline := time.Now().Add(grace); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if errors.Is(syscall.Kill(-pg, 0), syscall.ESRCH) {
			return
		}
	}
	syscall.Kill(-pg, syscall.SIGKILL)
}
