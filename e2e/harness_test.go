//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// capture is a reverse proxy between the agent and Ollama that records every request's raw body
// and the raw response body Ollama sent back, so tests can compare bytes on both sides of the agent.
type capture struct {
	srv       *httptest.Server
	target    *url.URL
	transport *http.Transport

	mu        sync.Mutex
	exchanges []*exchange
	gates     map[string]chan struct{} // body marker → closed when the held stream may go on
}

// exchange is one request the agent sent to Ollama, and Ollama's answer.
type exchange struct {
	Method string
	Path   string // with the query, as the agent sent it
	Header http.Header
	Body   []byte

	mu       sync.Mutex
	status   int
	resp     bytes.Buffer
	canceled bool // the agent went away before Ollama's answer ended
}

// Canceled tells whether the agent closed the call before Ollama's answer ended.
func (e *exchange) Canceled() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.canceled
}

// Response is Ollama's status and the body bytes it has sent so far.
func (e *exchange) Response() (int, []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status, bytes.Clone(e.resp.Bytes())
}

func newCapture(target string) *capture {
	u, err := url.Parse(target)
	if err != nil {
		panic(err)
	}
	c := &capture{target: u, transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	return c
}

func (c *capture) URL() string { return c.srv.URL }

func (c *capture) close() {
	c.srv.Close()
	c.transport.CloseIdleConnections()
}

func (c *capture) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "capture: read body: "+err.Error(), http.StatusBadGateway)
		return
	}
	ex := &exchange{Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body}
	var gate chan struct{}
	c.mu.Lock()
	c.exchanges = append(c.exchanges, ex)
	for marker, g := range c.gates {
		if bytes.Contains(body, []byte(marker)) {
			gate = g
		}
	}
	c.mu.Unlock()

	r.Body = io.NopCloser(bytes.NewReader(body))
	rp := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(c.target) },
		Transport:     c.transport,
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			ex.mu.Lock()
			ex.status = resp.StatusCode
			ex.mu.Unlock()
			resp.Body = &teeBody{rc: resp.Body, ex: ex, gate: gate, ctx: r.Context()}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() == nil {
				http.Error(w, "capture: "+err.Error(), http.StatusBadGateway)
			}
		},
	}
	// ReverseProxy aborts the handler with a panic when the copy fails, so this is deferred.
	defer func() {
		if r.Context().Err() != nil {
			ex.mu.Lock()
			ex.canceled = true
			ex.mu.Unlock()
		}
	}()
	rp.ServeHTTP(w, r)
}

// teeBody records what Ollama sends while the proxy copies it. With a gate, it lets the first
// line through and then holds the rest until the gate opens (at most a minute).
type teeBody struct {
	rc       io.ReadCloser
	ex       *exchange
	gate     chan struct{}
	ctx      context.Context // the agent's call: a held stream ends when the agent goes away
	sentLine bool
}

func (t *teeBody) Read(p []byte) (int, error) {
	if t.gate != nil && t.sentLine {
		select {
		case <-t.gate:
		case <-t.ctx.Done():
			return 0, t.ctx.Err()
		case <-time.After(time.Minute):
		}
		t.gate = nil
	}
	n, err := t.rc.Read(p)
	t.ex.mu.Lock()
	t.ex.resp.Write(p[:n])
	t.ex.mu.Unlock()
	if bytes.IndexByte(p[:n], '\n') >= 0 {
		t.sentLine = true
	}
	return n, err
}

// hold makes the capture proxy stop Ollama's answer to a request whose body contains marker
// after its first line, until release is called: whatever the client then has, the agent
// passed on without waiting for more.
func (c *capture) hold(marker string) (release func()) {
	g := make(chan struct{})
	c.mu.Lock()
	if c.gates == nil {
		c.gates = map[string]chan struct{}{}
	}
	c.gates[marker] = g
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(g)
			c.mu.Lock()
			delete(c.gates, marker)
			c.mu.Unlock()
		})
	}
}

func (t *teeBody) Close() error { return t.rc.Close() }

// count is how many requests have reached Ollama so far.
func (c *capture) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.exchanges)
}

// since returns the exchanges after the first n.
func (c *capture) since(n int) []*exchange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*exchange(nil), c.exchanges[n:]...)
}

// withBody returns the exchanges whose request body contains marker.
func (c *capture) withBody(marker string) []*exchange {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*exchange
	for _, e := range c.exchanges {
		if bytes.Contains(e.Body, []byte(marker)) {
			out = append(out, e)
		}
	}
	return out
}

// use gives a test the stack and prints the agent's log lines written during the test if it fails.
func use(t *testing.T) *stack {
	t.Helper()
	if st.agent != nil {
		printLogOnFailure(t, st.agent)
	}
	return st
}

// printLogOnFailure prints what a wrote to its log during t if t fails.
func printLogOnFailure(t *testing.T, a *agentProc) {
	t.Helper()
	off := a.logSize()
	t.Cleanup(func() {
		if t.Failed() {
			var b strings.Builder
			a.printLog(&b, off)
			if b.Len() == 0 {
				b.WriteString("(nothing)")
			}
			t.Logf("hearth %s %s log during %s:\n%s", a.Role, a.Name, t.Name(), b.String())
		}
	})
}

// agentOnly skips tests of what only the agent does (its header) in direct mode.
func (s *stack) agentOnly(t *testing.T) {
	t.Helper()
	if s.direct {
		t.Skip("HEARTH_E2E_DIRECT=1: no agent in front of Ollama")
	}
}

// do sends one raw request to base+path and returns the response with its whole body.
func do(t *testing.T, method, base, path, body string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

// cliResult is what one run of the ollama CLI did.
type cliResult struct {
	stdout, stderr string
	code           int
}

// ollamaCLI runs the real ollama CLI against host (a base URL) with a private HOME.
func (s *stack) ollamaCLI(t *testing.T, host string, args ...string) cliResult {
	t.Helper()
	return s.ollamaCLIEnv(t, host, nil, args...)
}

// ollamaCLIEnv is ollamaCLI with env added last, so that it overrides (HOME, the proxy).
func (s *stack) ollamaCLIEnv(t *testing.T, host string, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.ollamaCmd(ctx, host, env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("ollama %s: %v", strings.Join(args, " "), err)
		}
		res.code = ee.ExitCode()
	}
	if ctx.Err() != nil {
		t.Fatalf("ollama %s: timed out\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.stdout, res.stderr)
	}
	return res
}

// ollamaCmd is the ollama CLI with args, OLLAMA_HOST=host, the shared private HOME and no way
// to the internet; env comes last and overrides any of these.
func (s *stack) ollamaCmd(ctx context.Context, host string, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, s.ollamaBin, args...)
	cmd.Env = append(os.Environ(), s.proxyEnv()...)
	cmd.Env = append(cmd.Env, "OLLAMA_HOST="+host, "HOME="+s.home(), "TERM=dumb", "NO_COLOR=1")
	cmd.Env = append(cmd.Env, env...)
	return cmd
}
