package webapp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeChat is an upstream /v1/chat/completions that streams n tokens, one per tick, and
// records whether the caller went away before the end.
type fakeChat struct {
	n        int
	tick     time.Duration
	mu       sync.Mutex
	canceled int
	finished int
	calls    int
	auth     []string
}

func (f *fakeChat) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls++
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.mu.Unlock()
	switch {
	case r.URL.Path == "/v1/models":
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []map[string]string{
			{"id": "tiny", "owned_by": "home"}, {"id": "rag:docs", "owned_by": "home"}, {"id": "deepseek-chat", "owned_by": "deepseek"}}})
		return
	case r.Header.Get("Authorization") == "Bearer bad":
		writeError(w, http.StatusUnauthorized, "invalid_api_key", "the token is not valid")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Hearth-Channel", "home")
	w.Header().Set("X-Hearth-Model", "tiny")
	w.WriteHeader(http.StatusOK)
	for i := range f.n {
		select {
		case <-r.Context().Done():
			f.mu.Lock()
			f.canceled++
			f.mu.Unlock()
			return
		case <-time.After(f.tick):
		}
		fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"t%d \"}}]}\n\n", i)
		w.(http.Flusher).Flush()
	}
	io.WriteString(w, "data: [DONE]\n\n")
	f.mu.Lock()
	f.finished++
	f.mu.Unlock()
}

func (f *fakeChat) counts() (calls, canceled, finished int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.canceled, f.finished
}

func newTestApp(t *testing.T, up http.Handler, lim Limits) (*App, *httptest.Server) {
	t.Helper()
	a := New(Options{Role: "relay", API: up, HomeChannels: []string{"home"}, Limits: lim}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	srv := httptest.NewServer(a)
	t.Cleanup(func() { srv.Close(); cancel(); <-done })
	return a, srv
}

func call(t *testing.T, method, url, token, body string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

const chatBody = `{"model":"tiny","stream":true,"messages":[{"role":"user","content":"hi"}]}`

func start(t *testing.T, srv *httptest.Server, token string) string {
	t.Helper()
	resp := call(t, http.MethodPost, srv.URL+"/app/v1/generations", token, chatBody)
	defer resp.Body.Close()
	var v struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusCreated || v.ID == "" {
		t.Fatalf("POST /app/v1/generations: %d %v id %q, want 201 with an id", resp.StatusCode, err, v.ID)
	}
	return v.ID
}

type sse struct {
	id          int
	event, data string
}

// read reads events from resp until the end event or until limit events (0: no limit).
func read(t *testing.T, resp *http.Response, limit int) []sse {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("events: %d %s", resp.StatusCode, b)
	}
	var evs []sse
	cur := sse{event: "message"}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.data != "" {
				evs = append(evs, cur)
				if cur.event == "end" || (limit > 0 && len(evs) == limit) {
					return evs
				}
			}
			cur = sse{event: "message"}
		case strings.HasPrefix(line, "id: "):
			fmt.Sscan(line[4:], &cur.id)
		case strings.HasPrefix(line, "event: "):
			cur.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			cur.data += line[6:]
		}
	}
	return evs
}

func text(evs []sse) string {
	var b strings.Builder
	for _, e := range evs {
		var c struct {
			Choices []struct{ Delta struct{ Content string } }
		}
		if e.event == "message" && json.Unmarshal([]byte(e.data), &c) == nil && len(c.Choices) > 0 {
			b.WriteString(c.Choices[0].Delta.Content)
		}
	}
	return b.String()
}

func endState(t *testing.T, evs []sse) string {
	t.Helper()
	if len(evs) == 0 || evs[len(evs)-1].event != "end" {
		t.Fatalf("the stream ended without an end event: %v", evs)
	}
	var e struct{ State, Detail string }
	_ = json.Unmarshal([]byte(evs[len(evs)-1].data), &e)
	return e.State
}

func TestGenerationWhole(t *testing.T) {
	up := &fakeChat{n: 12, tick: time.Millisecond}
	_, srv := newTestApp(t, up, Limits{})
	id := start(t, srv, "alice")
	evs := read(t, call(t, http.MethodGet, srv.URL+"/app/v1/generations/"+id+"/events", "alice", ""), 0)
	want := ""
	for i := range 12 {
		want += fmt.Sprintf("t%d ", i)
	}
	if got := text(evs); got != want {
		t.Errorf("text %q, want %q", got, want)
	}
	if evs[0].event != "meta" || !strings.Contains(evs[0].data, `"channel":"home"`) {
		t.Errorf("first event %+v, want meta with the channel", evs[0])
	}
	if s := endState(t, evs); s != "done" {
		t.Errorf("end state %q, want done", s)
	}
	for i, e := range evs {
		if e.id != i+1 {
			t.Fatalf("event %d has id %d, want %d", i, e.id, i+1)
		}
	}
	if _, _, finished := up.counts(); finished != 1 {
		t.Errorf("upstream finished %d answers, want 1", finished)
	}
	if up.auth[0] != "Bearer alice" {
		t.Errorf("upstream saw Authorization %q, want the caller's", up.auth[0])
	}
}

// A client cut after a third of the answer resumes from its last event and ends with the
// same text as an uninterrupted read, while the answer went on without it.
func TestGenerationResume(t *testing.T) {
	up := &fakeChat{n: 30, tick: 2 * time.Millisecond}
	_, srv := newTestApp(t, up, Limits{})
	id := start(t, srv, "alice")
	first := read(t, call(t, http.MethodGet, srv.URL+"/app/v1/generations/"+id+"/events", "alice", ""), 11) // meta + 10 tokens
	last := first[len(first)-1].id
	for _, h := range []struct{ name, url, hdr string }{
		{"Last-Event-ID", srv.URL + "/app/v1/generations/" + id + "/events", "Last-Event-ID"},
		{"?after=", srv.URL + fmt.Sprintf("/app/v1/generations/%s/events?after=%d", id, last), ""},
	} {
		var resp *http.Response
		if h.hdr != "" {
			resp = call(t, http.MethodGet, h.url, "alice", "", h.hdr, fmt.Sprint(last))
		} else {
			resp = call(t, http.MethodGet, h.url, "alice", "")
		}
		rest := read(t, resp, 0)
		if rest[0].id != last+1 {
			t.Errorf("%s: resumed at event %d, want %d", h.name, rest[0].id, last+1)
		}
		whole := read(t, call(t, http.MethodGet, srv.URL+"/app/v1/generations/"+id+"/events", "alice", ""), 0)
		if got, want := text(first)+text(rest), text(whole); got != want || !strings.HasSuffix(want, "t29 ") {
			t.Errorf("%s: cut and resumed text %q, uninterrupted %q", h.name, got, want)
		}
	}
	if calls, _, _ := up.counts(); calls != 1 {
		t.Errorf("upstream called %d times, want 1: a reconnect must not start the answer again", calls)
	}
}

func TestGenerationStop(t *testing.T) {
	up := &fakeChat{n: 1000, tick: 5 * time.Millisecond}
	_, srv := newTestApp(t, up, Limits{})
	id := start(t, srv, "alice")
	read(t, call(t, http.MethodGet, srv.URL+"/app/v1/generations/"+id+"/events", "alice", ""), 3)
	resp := call(t, http.MethodDelete, srv.URL+"/app/v1/generations/"+id, "alice", "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d, want 200", resp.StatusCode)
	}
	if _, canceled, finished := up.counts(); canceled != 1 || finished != 0 {
		t.Errorf("after DELETE the upstream saw %d cancels and %d whole answers, want 1 and 0", canceled, finished)
	}
	evs := read(t, call(t, http.MethodGet, srv.URL+"/app/v1/generations/"+id+"/events", "alice", ""), 0)
	if s := endState(t, evs); s != "stopped" {
		t.Errorf("end state %q, want stopped", s)
	}
}

func TestGenerationOtherToken(t *testing.T) {
	up := &fakeChat{n: 200, tick: 5 * time.Millisecond}
	_, srv := newTestApp(t, up, Limits{})
	id := start(t, srv, "alice")
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/events"}, {http.MethodGet, ""}, {http.MethodDelete, ""},
	} {
		for _, tok := range []string{"mallory", ""} {
			resp := call(t, c.method, srv.URL+"/app/v1/generations/"+id+c.path, tok, "")
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s with token %q: %d, want 404", c.method, c.path, tok, resp.StatusCode)
			}
		}
	}
	if _, canceled, _ := up.counts(); canceled != 0 {
		t.Errorf("another token's DELETE cancelled the answer")
	}
}

func TestGenerationLimits(t *testing.T) {
	t.Run("per token", func(t *testing.T) {
		_, srv := newTestApp(t, &fakeChat{n: 500, tick: 5 * time.Millisecond}, Limits{PerToken: 2})
		start(t, srv, "alice")
		start(t, srv, "alice")
		resp := call(t, http.MethodPost, srv.URL+"/app/v1/generations", "alice", chatBody)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "the most is 2") {
			t.Errorf("third generation: %d %s, want 429 saying the limit", resp.StatusCode, b)
		}
		start(t, srv, "bob") // another token has its own allowance
	})
	t.Run("finished ones make room", func(t *testing.T) {
		// Answers read to the end are kept only for a reconnect: the limits bound the running
		// ones, so a chat's seventeenth message in ten minutes is not refused.
		_, srv := newTestApp(t, &fakeChat{n: 2, tick: time.Millisecond}, Limits{PerToken: 2, Total: 2})
		finished := func(token string) string {
			id := start(t, srv, token)
			endState(t, read(t, call(t, http.MethodGet, srv.URL+"/app/v1/generations/"+id+"/events", token, ""), 0))
			return id
		}
		status := func(token, id string) int {
			resp := call(t, http.MethodGet, srv.URL+"/app/v1/generations/"+id, token, "")
			resp.Body.Close()
			return resp.StatusCode
		}
		first, second := finished("alice"), finished("alice")
		third := finished("alice")
		if status("alice", first) != http.StatusNotFound || status("alice", second) != http.StatusOK || status("alice", third) != http.StatusOK {
			t.Errorf("after a third answer with room for two: first %d, second %d, third %d; want the oldest (first) gone",
				status("alice", first), status("alice", second), status("alice", third))
		}
		// The app's own limit (2) takes the oldest finished answer of anyone: alice's second.
		bob := finished("bob")
		if status("alice", second) != http.StatusNotFound || status("alice", third) != http.StatusOK || status("bob", bob) != http.StatusOK {
			t.Errorf("at the app's limit: alice's second %d, third %d, bob's %d; want alice's second gone",
				status("alice", second), status("alice", third), status("bob", bob))
		}
	})
	t.Run("bytes", func(t *testing.T) {
		up := &fakeChat{n: 1000, tick: 100 * time.Microsecond}
		_, srv := newTestApp(t, up, Limits{MaxBytes: 2000})
		id := start(t, srv, "alice")
		evs := read(t, call(t, http.MethodGet, srv.URL+"/app/v1/generations/"+id+"/events", "alice", ""), 0)
		if s := endState(t, evs); s != "error" || !strings.Contains(evs[len(evs)-1].data, "2000 bytes for one answer") {
			t.Errorf("end %q %s, want error naming the limit", s, evs[len(evs)-1].data)
		}
		if n := len(text(evs)); n > 2000 {
			t.Errorf("kept %d bytes of text, limit 2000", n)
		}
		if _, canceled, finished := up.counts(); canceled != 1 || finished != 0 {
			t.Errorf("upstream: %d cancels, %d whole answers; want the limit to cancel it", canceled, finished)
		}
	})
	t.Run("bytes of all generations", func(t *testing.T) {
		up := &fakeChat{n: 1000, tick: 100 * time.Microsecond}
		a, srv := newTestApp(t, up, Limits{TotalBytes: 3000})
		first := start(t, srv, "alice")
		evs := read(t, call(t, http.MethodGet, srv.URL+"/app/v1/generations/"+first+"/events", "alice", ""), 0)
		if s := endState(t, evs); s != "error" || !strings.Contains(evs[len(evs)-1].data, "3000 for all") {
			t.Errorf("end %q %s, want error naming the shared limit", s, evs[len(evs)-1].data)
		}
		if n := a.gens.bytes.Load(); n > 3000+200 {
			t.Errorf("the generations keep %d bytes, shared limit 3000", n)
		}
		resp := call(t, http.MethodDelete, srv.URL+"/app/v1/generations/"+first, "alice", "")
		resp.Body.Close()
		a.gens.sweep(time.Now().Add(DefaultLimits.TTL + time.Second))
		if n := a.gens.bytes.Load(); n != 0 {
			t.Errorf("after the generation expired %d bytes are still counted, want 0", n)
		}
	})
	t.Run("ttl", func(t *testing.T) {
		a, srv := newTestApp(t, &fakeChat{n: 1, tick: time.Millisecond}, Limits{})
		id := start(t, srv, "alice")
		read(t, call(t, http.MethodGet, srv.URL+"/app/v1/generations/"+id+"/events", "alice", ""), 0)
		a.gens.sweep(time.Now().Add(DefaultLimits.TTL + time.Second))
		resp := call(t, http.MethodGet, srv.URL+"/app/v1/generations/"+id, "alice", "")
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("a generation past its TTL: %d, want 404", resp.StatusCode)
		}
	})
	t.Run("body", func(t *testing.T) {
		_, srv := newTestApp(t, &fakeChat{}, Limits{MaxBody: 100})
		resp := call(t, http.MethodPost, srv.URL+"/app/v1/generations", "alice", `{"model":"tiny","messages":[{"role":"user","content":"`+strings.Repeat("x", 200)+`"}]}`)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("a 200-byte body over a 100-byte limit: %d, want 413", resp.StatusCode)
		}
	})
}

func TestGenerationRefusedAndBad(t *testing.T) {
	_, srv := newTestApp(t, &fakeChat{n: 1, tick: time.Millisecond}, Limits{})
	for _, c := range []struct {
		token, body string
		status      int
		want        string
	}{
		{"bad", chatBody, 401, "the token is not valid"},
		{"alice", `{"messages":[]}`, 400, "chat completion request"},
		{"alice", `not json`, 400, "chat completion request"},
	} {
		resp := call(t, http.MethodPost, srv.URL+"/app/v1/generations", c.token, c.body)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(b), c.want) {
			t.Errorf("POST %s with %q: %d %s, want %d with %q", c.body, c.token, resp.StatusCode, b, c.status, c.want)
		}
	}
}
