package ollamasim

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/hearthtest"
)

func TestFaultRefuseThenRecover(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny"}}})
	c := newClient(t)
	addr := strings.TrimPrefix(s.URL(), "http://")

	// An idle keep-alive connection from before the fault.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, "GET /api/version HTTP/1.1\r\nHost: sim\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("keep-alive request: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	if err := s.SetFault(Fault{Kind: FaultRefuse}); err != nil {
		t.Fatalf("SetFault(FaultRefuse): %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := br.ReadByte(); err == nil {
		t.Errorf("idle connection still open after FaultRefuse: read %q", n)
	} else if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) || isTimeout(err) {
		t.Errorf("idle connection not closed by FaultRefuse: %v", err)
	}
	if _, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial during FaultRefuse: %v, want connection refused", err)
	}
	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodGet, s.URL()+"/api/version", nil)
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("GET during FaultRefuse answered %d", resp.StatusCode)
	}

	if err := s.SetFault(Fault{}); err != nil {
		t.Fatalf("clearing FaultRefuse: %v", err)
	}
	if res := get(t, c, s.URL()+"/api/version"); res.status != 200 || res.body != `{"version":"0.17.4"}` {
		t.Errorf("after recovery on the same URL: %d %s", res.status, res.body)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestFaultStatus500(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny"}}})
	c := newClient(t)
	if err := s.SetFault(Fault{Kind: FaultStatus500, Paths: []string{"/api/chat", "/v1/chat/completions"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/api/chat", chatBody("tiny", true, ""), 500, `{"error":"llama runner process has terminated: exit status 2"}`},
		{"POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"x"}]}`, 500,
			`{"error":{"message":"llama runner process has terminated: exit status 2","type":"api_error","param":null,"code":null}}` + "\n"},
		{"GET", "/api/version", "", 200, `{"version":"0.17.4"}`}, // not in Paths
	}
	for _, tt := range tests {
		res := do(testCtx(t), t, c, tt.method, s.URL()+tt.path, tt.body)
		if res.status != tt.status || res.body != tt.want {
			t.Errorf("%s %s: %d %s, want %d %s", tt.method, tt.path, res.status, res.body, tt.status, tt.want)
		}
	}
	if st := s.Stats(); st.Requests != 0 {
		t.Errorf("Stats().Requests = %d, want 0: a 500 fault serves nothing", st.Requests)
	}
}

func TestFaultHangUntilClientGivesUp(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny"}}})
	c := newClient(t)
	if err := s.SetFault(Fault{Kind: FaultHang}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	body := chatBody("tiny", true, "")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/api/chat", strings.NewReader(body))
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("hung request answered %d", resp.StatusCode)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hung request: %v, want the client's deadline", err)
	}
	recs := s.Requests()
	if len(recs) != 1 || string(recs[0].Body) != body {
		t.Errorf("recorded %+v, want the hung request's body", recs)
	}
	if st := s.Stats(); st.Requests != 0 || st.Running != 0 {
		t.Errorf("stats %+v: a hung request must not take a slot", st)
	}
	if err := s.SetFault(Fault{}); err != nil {
		t.Fatal(err)
	}
	if res := post(t, c, s.URL()+"/api/chat", body); res.status != 200 {
		t.Errorf("after clearing the fault: %d", res.status)
	}
}

func TestFaultCutAfter(t *testing.T) {
	tests := []struct {
		name       string
		chunks     int
		path, body string
		wantLines  []string // prefixes of the complete lines the client reads before the cut
	}{
		{"ndjson after 3", 3, "/api/chat", chatBody("tiny", true, ""),
			[]string{`{"model":"tiny","created_at":`, `{"model":"tiny","created_at":`, `{"model":"tiny","created_at":`}},
		{"ndjson after 0", 0, "/api/generate", `{"model":"tiny","prompt":"x"}`, nil},
		{"more chunks than tokens still loses the final one", 100, "/api/chat", chatBody("tiny", true, `"options":{"num_predict":2}`),
			[]string{`{"model":"tiny"`, `{"model":"tiny"`}},
		{"sse after 2", 2, "/v1/chat/completions", `{"model":"tiny","stream":true,"messages":[{"role":"user","content":"x"}]}`,
			[]string{`data: {"id":"chatcmpl-`, ``, `data: {"id":"chatcmpl-`, ``}},
		{"pull progress after 1", 1, "/api/pull", `{"model":"tiny"}`, []string{`{"status":"pulling manifest"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSim(t, Config{Models: []Model{{Name: "tiny"}}})
			c := newClient(t)
			if err := s.SetFault(Fault{Kind: FaultCutAfter, Chunks: tt.chunks}); err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, s.URL()+tt.path, strings.NewReader(tt.body))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("the status line and headers should arrive: %v", err)
			}
			defer resp.Body.Close()
			lines, err := streamLines(resp)
			if resp.StatusCode != 200 || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("status %d, body ended with %v; want 200 and an unexpected EOF", resp.StatusCode, err)
			}
			if len(lines) != len(tt.wantLines) {
				t.Fatalf("read %d lines, want %d: %q", len(lines), len(tt.wantLines), lines)
			}
			for i, l := range lines {
				if !strings.HasPrefix(l, tt.wantLines[i]) || strings.Contains(l, `"done":true`) {
					t.Errorf("line %d = %q, want prefix %q and no final chunk", i, l, tt.wantLines[i])
				}
			}
		})
	}
}

func TestFaultCutNonStreaming(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny"}}})
	c := newClient(t)
	if err := s.SetFault(Fault{Kind: FaultCutAfter, Chunks: 5, Paths: []string{"/api/chat"}}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, s.URL()+"/api/chat", strings.NewReader(chatBody("tiny", false, "")))
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("non-streaming answer under FaultCutAfter arrived: %d", resp.StatusCode)
	}
	if res := get(t, c, s.URL()+"/api/tags"); res.status != 200 {
		t.Errorf("/api/tags outside Paths: %d", res.status)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	s := New(Config{Models: []Model{{Name: "tiny", LoadDelay: time.Hour}, {Name: "warm"}}, Parallel: 2, Tokens: 1000, TokenDelay: 50 * time.Millisecond})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	tr := &http.Transport{}
	c := &http.Client{Transport: tr}
	// Hold every kind of blocked request open: streaming, loading, queued, hung.
	streaming := send(t, testCtx(t), c, s.URL()+"/api/chat", chatBody("warm", true, `"keep_alive":"1h"`))
	hearthtest.Eventually(t, "the stream to run", waitLimit, func() bool { return s.Stats().Running == 1 })
	loading := send(t, testCtx(t), c, s.URL()+"/api/chat", chatBody("tiny", true, ""))
	hearthtest.Eventually(t, "the load to start", waitLimit, func() bool { return s.Stats().ColdLoads == 2 })
	queued := send(t, testCtx(t), c, s.URL()+"/api/chat", chatBody("tiny", true, ""))
	hearthtest.Eventually(t, "the third request to queue", waitLimit, func() bool { return s.Stats().Queued == 1 })
	if err := s.SetFault(Fault{Kind: FaultHang, Paths: []string{"/api/tags"}}); err != nil {
		t.Fatal(err)
	}
	hung := send(t, testCtx(t), c, s.URL()+"/api/tags", "")
	hearthtest.Eventually(t, "the hung request to arrive", waitLimit, func() bool { return len(s.Requests()) == 4 })

	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return")
	}
	for name, ch := range map[string]<-chan result{"streaming": streaming, "loading": loading, "queued": queued, "hung": hung} {
		if res := <-ch; res.status != -1 {
			t.Errorf("%s request: %d %s, want its connection closed", name, res.status, res.body)
		}
	}
	if _, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://")); err == nil {
		t.Error("still listening after Close")
	}
	s.Close() // twice is fine
	tr.CloseIdleConnections()
	hearthtest.Eventually(t, "goroutines to end", waitLimit, func() bool { return runtime.NumGoroutine() <= before })
}

// TestMountedHandler serves the sim through httptest instead of Start: faults that need the
// sim's own listener degrade to closing each request's connection.
func TestMountedHandler(t *testing.T) {
	s := New(Config{Models: []Model{{Name: "tiny"}}})
	t.Cleanup(s.Close)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	c := newClient(t)
	if s.URL() != "" {
		t.Errorf("URL() = %q before Start, want empty", s.URL())
	}
	tests := []struct {
		name    string
		fault   Fault
		wantErr bool
	}{
		{"answers", Fault{}, false},
		{"refuse closes the connection", Fault{Kind: FaultRefuse}, true},
		{"cleared", Fault{}, false},
	}
	for _, tt := range tests {
		if err := s.SetFault(tt.fault); err != nil {
			t.Fatalf("%s: SetFault: %v", tt.name, err)
		}
		req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, ts.URL+"/api/chat", strings.NewReader(chatBody("tiny", false, "")))
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if (err != nil) != tt.wantErr || err == nil && resp.StatusCode != 200 {
			t.Errorf("%s: %v %v, want error %v", tt.name, resp, err, tt.wantErr)
		}
	}
}
