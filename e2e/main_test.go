//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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
	hearthBin string // built from this tree; "" in direct mode
	ollama    *ollamaServer
	ollamaURL string // Ollama itself, for comparisons with what the agent answers

	noNet   *httptest.Server // the only "internet" Ollama and its CLI may reach: it refuses all
	capture *capture

	agentURL string     // what clients use: the agent, or in direct mode the capture proxy
	agent    *agentProc // nil in direct mode

	cleanups []func()
}

func TestMain(m *testing.M) {
	s, err := startStack()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: start: %v\n", err)
		if s != nil {
			if s.agent != nil {
				s.agent.printLog(os.Stderr, 0)
			}
			s.stop()
		}
		os.Exit(1)
	}
	st = s
	code := m.Run()
	if code != 0 && s.agent != nil {
		fmt.Fprintf(os.Stderr, "\n=== hearth agent log (%s)\n", s.agent.Log)
		s.agent.printLog(os.Stderr, 0)
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

	if !s.direct {
		s.hearthBin = filepath.Join(s.tmp, "hearth")
		if err := s.buildHearth(s.hearthBin); err != nil {
			return s, err
		}
	}

	s.noNet = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "e2e: no network", http.StatusForbidden)
	}))
	s.defer_(s.noNet.Close)

	if err := s.startSharedOllama(); err != nil {
		return s, err
	}
	s.capture = newCapture(s.ollamaURL)
	s.defer_(s.capture.close)

	if s.direct {
		s.agentURL = s.capture.URL()
		return s, nil
	}
	s.agent, err = s.startAgent(agentSpec{Name: nodeName, OllamaURL: s.capture.URL()}, filepath.Join(s.tmp, "agent"))
	if s.agent != nil {
		s.defer_(s.agent.stop)
		s.agentURL = s.agent.URL
	}
	return s, err
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
	// Built as the releases are (static, -trimpath): what ships is what is tested, and in CI
	// `make dist-ci` has compiled it already, so this is a link from the build cache.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./cmd/hearth")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
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

// startSharedOllama starts the Ollama most tests share, with tiny, tiny2 and toolsModel.
func (s *stack) startSharedOllama() error {
	models := filepath.Join(s.tmp, "models")
	o, err := s.startOllama(models)
	if err != nil {
		return err
	}
	s.ollama, s.ollamaURL = o, o.URL
	s.defer_(o.stop)

	if err := s.createToolsModel(); err != nil {
		return err
	}
	names, err := tagNames(s.ollamaURL)
	if err != nil {
		return err
	}
	for _, want := range []string{"tiny:latest", "tiny2:latest", toolsModel + ":latest"} {
		if !slices.Contains(names, want) {
			return fmt.Errorf("ollama has models %v, want %s\n%s", names, want, o.log())
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
