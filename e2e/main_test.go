//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nodeName is the agent's node.name; every response it proxies carries it in X-Hearth-Node.
const nodeName = "e2e"

// toolsModel is a copy of tiny whose template uses .Tools, so that Ollama accepts requests with
// tools for it (tiny's template is only the prompt, and Ollama answers 400 to tools for it).
const toolsModel = "tiny-tools"

// st is the stack every test talks to; TestMain starts it once and stops it at the end.
var st *stack

// stack is one real Ollama, the capturing proxy in front of it, and `hearth agent` in front of
// that: client → agent → capture → Ollama.
type stack struct {
	root   string // repository root
	cache  string // where setup.sh built Ollama and the tiny models
	tmp    string // removed at the end
	direct bool   // HEARTH_E2E_DIRECT=1: clients talk to the capture proxy, no agent

	ollamaBin string
	ollamaURL string // Ollama itself, for comparisons with what the agent answers
	ollamaPG  int    // process group of serve.sh, ollama serve and its runners

	noNet   *httptest.Server // the only "internet" Ollama and its CLI may reach: it refuses all
	capture *capture

	agentURL string // what clients use: the agent, or in direct mode the capture proxy
	agentLog string // the agent's stdout and stderr
	agent    *exec.Cmd
	agentEnd chan error

	cleanups []func()
}

func TestMain(m *testing.M) {
	s, err := startStack()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: start: %v\n", err)
		if s != nil {
			s.printAgentLog(os.Stderr, 0)
			s.stop()
		}
		os.Exit(1)
	}
	st = s
	code := m.Run()
	if code != 0 && s.agentLog != "" {
		fmt.Fprintf(os.Stderr, "\n=== hearth agent log (%s)\n", s.agentLog)
		s.printAgentLog(os.Stderr, 0)
	}
	s.stop()
	os.Exit(code)
}

func startStack() (*stack, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return nil, err
	}
	cache := os.Getenv("HEARTH_E2E_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, err
		}
		cache = filepath.Join(home, ".cache", "hearth-e2e")
	}
	s := &stack{root: root, cache: cache, direct: os.Getenv("HEARTH_E2E_DIRECT") == "1"}
	s.ollamaBin = filepath.Join(cache, "bin", "ollama")
	for _, f := range []string{s.ollamaBin, filepath.Join(cache, "tiny.gguf"), filepath.Join(cache, "tiny2.gguf")} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("%s missing: run e2e/setup.sh first (%w)", f, err)
		}
	}
	if s.tmp, err = os.MkdirTemp("", "hearth-e2e-"); err != nil {
		return nil, err
	}
	s.defer_(func() { os.RemoveAll(s.tmp) })

	var hearthBin string
	if !s.direct {
		hearthBin = filepath.Join(s.tmp, "hearth")
		if err := s.buildHearth(hearthBin); err != nil {
			return s, err
		}
	}

	s.noNet = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "e2e: no network", http.StatusForbidden)
	}))
	s.defer_(s.noNet.Close)

	if err := s.startOllama(); err != nil {
		return s, err
	}
	s.capture = newCapture(s.ollamaURL)
	s.defer_(s.capture.close)

	if s.direct {
		s.agentURL = s.capture.URL()
		return s, nil
	}
	return s, s.startAgent(hearthBin)
}

// defer_ registers f to run at stop, last registered first.
func (s *stack) defer_(f func()) { s.cleanups = append(s.cleanups, f) }

func (s *stack) stop() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
	s.cleanups = nil
}

func (s *stack) buildHearth(out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/hearth")
	cmd.Dir = s.root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/hearth: %w\n%s", err, b)
	}
	return nil
}

// proxyEnv keeps Ollama and its CLI off the internet: registry calls go to noNet, which refuses
// them, so `pull` fails the same way on every machine and never leaves 127.0.0.1.
func (s *stack) proxyEnv() []string {
	u := s.noNet.URL
	return []string{"HTTPS_PROXY=" + u, "HTTP_PROXY=" + u, "https_proxy=" + u, "http_proxy=" + u,
		"NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost"}
}

func (s *stack) startOllama() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	models := filepath.Join(s.tmp, "models")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.root, "e2e", "realollama", "serve.sh"),
		strconv.Itoa(port), models, "2")
	cmd.Env = append(os.Environ(), s.proxyEnv()...)
	cmd.Env = append(cmd.Env, "HEARTH_E2E_CACHE="+s.cache, "HOME="+s.home())
	// serve.sh, the ollama serve it leaves running and that server's runners share one process
	// group, so that stop ends them all and nothing else.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if cmd.Process != nil {
		s.ollamaPG = cmd.Process.Pid
		s.defer_(func() { killGroup(s.ollamaPG, 15*time.Second) })
	}
	if err != nil {
		return fmt.Errorf("serve.sh: %w\n%s", err, stderr.Bytes())
	}
	if _, err := strconv.Atoi(strings.TrimSpace(string(out))); err != nil {
		return fmt.Errorf("serve.sh printed %q, not a PID", out)
	}
	s.ollamaURL = fmt.Sprintf("http://127.0.0.1:%d", port)

	if err := s.createToolsModel(); err != nil {
		return err
	}
	names, err := tagNames(s.ollamaURL)
	if err != nil {
		return err
	}
	for _, want := range []string{"tiny:latest", "tiny2:latest", toolsModel + ":latest"} {
		if !slices.Contains(names, want) {
			log, _ := os.ReadFile(filepath.Join(models, "serve.log"))
			return fmt.Errorf("ollama has models %v, want %s\n%s", names, want, log)
		}
	}
	return nil
}

func (s *stack) home() string {
	h := filepath.Join(s.tmp, "home")
	os.MkdirAll(h, 0o755)
	return h
}

// createToolsModel registers toolsModel before the agent starts, so it is in the agent's
// inventory from the first look.
func (s *stack) createToolsModel() error {
	body := `{"model":"` + toolsModel + `","from":"tiny","stream":false,` +
		`"template":"{{ if .Tools }}tools:{{ range .Tools }} {{ .Function.Name }}{{ end }}\n{{ end }}{{ .Prompt }}"}`
	resp, err := http.Post(s.ollamaURL+"/api/create", "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("create %s: %s %s", toolsModel, resp.Status, b)
	}
	return nil
}

func (s *stack) startAgent(bin string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	cfg := filepath.Join(s.tmp, "agent.yaml")
	yaml := fmt.Sprintf("node:\n  name: %s\n  listen: \"127.0.0.1:%d\"\nollama:\n  url: %q\n", nodeName, port, s.capture.URL())
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		return err
	}
	s.agentLog = filepath.Join(s.tmp, "agent.log")
	logf, err := os.Create(s.agentLog)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "agent", "--config", cfg, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), s.proxyEnv()...)
	cmd.Env = append(cmd.Env, "HOME="+s.home())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start hearth agent: %w", err)
	}
	s.agent = cmd
	s.agentEnd = make(chan error, 1)
	go func() { s.agentEnd <- cmd.Wait(); logf.Close() }()
	s.defer_(s.stopAgent)
	s.agentURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	return s.waitReady(90 * time.Second)
}

func (s *stack) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for time.Now().Before(deadline) {
		select {
		case err := <-s.agentEnd:
			s.agentEnd <- err
			return fmt.Errorf("hearth agent exited before it was ready: %v", err)
		default:
		}
		resp, err := client.Get(s.agentURL + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s %s", resp.Status, b)
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("hearth agent not ready after %v: last /readyz: %s", limit, last)
}

// stopAgent asks the agent to stop (SIGTERM) and reports when it does not within 10 s.
func (s *stack) stopAgent() {
	pid := s.agent.Process.Pid
	select {
	case <-s.agentEnd: // it had exited already; waitReady said so
		killGroup(pid, time.Second)
		return
	default:
	}
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case err := <-s.agentEnd:
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: hearth agent exited after SIGTERM with %v\n", err)
		}
	case <-time.After(10 * time.Second):
		fmt.Fprintln(os.Stderr, "e2e: hearth agent still running 10s after SIGTERM; killing it")
		s.printAgentLog(os.Stderr, 0)
	}
	killGroup(pid, 5*time.Second)
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tagNames(base string) ([]string, error) {
	resp, err := http.Get(base + "/api/tags")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var tags struct {
		Models []struct {
			Name string `json:"name"`
		} `json:"models"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tags); err != nil {
		return nil, fmt.Errorf("/api/tags: %s: %w", resp.Status, err)
	}
	var names []string
	for _, m := range tags.Models {
		names = append(names, m.Name)
	}
	return names, nil
}
