package ollamasim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startSim starts a sim on 127.0.0.1 that the test's cleanup closes.
func startSim(t *testing.T, cfg Config) *Server {
	t.Helper()
	s := New(cfg)
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// newClient is an HTTP client with its own connection pool, closed at cleanup, so tests do
// not share keep-alive connections.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// testCtx bounds every request of a test: nothing may block forever.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// result is a finished HTTP exchange.
type result struct {
	status int
	header http.Header
	body   string
}

func do(ctx context.Context, t *testing.T, c *http.Client, method, url, body string) result {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return result{resp.StatusCode, resp.Header, string(b)}
}

func post(t *testing.T, c *http.Client, url, body string) result {
	t.Helper()
	return do(testCtx(t), t, c, http.MethodPost, url, body)
}

func get(t *testing.T, c *http.Client, url string) result {
	t.Helper()
	return do(testCtx(t), t, c, http.MethodGet, url, "")
}

// ndjson splits an NDJSON body into its lines, each checked to end in '\n'.
func ndjson(t *testing.T, body string) []string {
	t.Helper()
	if !strings.HasSuffix(body, "\n") {
		t.Fatalf("NDJSON body does not end with a newline: %q", body)
	}
	return strings.Split(strings.TrimSuffix(body, "\n"), "\n")
}

// sseData returns the data of each SSE event, checking the "data: …\n\n" framing.
func sseData(t *testing.T, body string) []string {
	t.Helper()
	if !strings.HasSuffix(body, "\n\n") {
		t.Fatalf("SSE body does not end with a blank line: %q", body)
	}
	var out []string
	for ev := range strings.SplitSeq(strings.TrimSuffix(body, "\n\n"), "\n\n") {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("bad SSE event %q", ev)
		}
		out = append(out, data)
	}
	return out
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decoding %q: %v", s, err)
	}
	return v
}

// waitLimit bounds the tests' waits; it is generous because machines are noisy.
const waitLimit = 20 * time.Second

// streamLines reads complete lines of a streaming answer until the body ends, returning
// them with the error that ended the body (nil for a clean end).
func streamLines(resp *http.Response) ([]string, error) {
	var lines []string
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			if err == io.EOF && len(line) == 0 {
				return lines, nil
			}
			return lines, err
		}
		lines = append(lines, string(bytes.TrimSuffix(line, []byte("\n"))))
	}
}

func chatBody(model string, stream bool, extra string) string {
	s := `{"model":"` + model + `","messages":[{"role":"user","content":"hello"}]`
	if !stream {
		s += `,"stream":false`
	}
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}
