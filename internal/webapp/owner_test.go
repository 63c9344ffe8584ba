package webapp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type whoKey struct{}

// TestGenerationOwnerAndCarry: with the role's Owner, a generation belongs to the identity the
// role's authentication found, not to the Authorization header's bytes (two secrets of one
// identity share, another identity gets 404, none gets 401), and Carry gives the upstream call
// what it needs of the request's context even after that request ended.
func TestGenerationOwnerAndCarry(t *testing.T) {
	up := &fakeChat{n: 3, tick: 20 * time.Millisecond}
	var mu sync.Mutex
	var carried []string
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, _ := r.Context().Value(whoKey{}).(string)
		mu.Lock()
		carried = append(carried, who)
		mu.Unlock()
		up.ServeHTTP(w, r)
	})
	a := New(Options{Role: "relay", API: upstream,
		Owner: func(r *http.Request) string { who, _ := r.Context().Value(whoKey{}).(string); return who },
		Carry: func(ctx context.Context, r *http.Request) context.Context {
			return context.WithValue(ctx, whoKey{}, r.Context().Value(whoKey{}))
		}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	// The role's authentication, as the relay's Require is: it names the caller and takes the
	// credential off the request.
	identities := map[string]string{"Bearer alice-phone": "alice", "Bearer alice-laptop": "alice", "Bearer bob": "bob"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who := identities[r.Header.Get("Authorization")]
		r.Header.Del("Authorization")
		if who != "" {
			r = r.WithContext(context.WithValue(r.Context(), whoKey{}, who))
		}
		a.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.Close(); cancel(); <-done })

	id := start(t, srv, "alice-phone")
	if got := text(read(t, call(t, http.MethodGet, srv.URL+"/app/v1/generations/"+id+"/events", "alice-laptop", ""), 0)); got != "t0 t1 t2 " {
		t.Errorf("alice's other device reads %q, want the whole answer \"t0 t1 t2 \"", got)
	}
	mu.Lock()
	if len(carried) != 1 || carried[0] != "alice" {
		t.Errorf("the upstream call carried %q, want [alice]: the identity must reach it after the POST ended", carried)
	}
	mu.Unlock()
	for _, c := range []struct {
		token  string
		status int
	}{{"bob", 404}, {"", 401}, {"stranger", 401}} {
		for _, m := range []struct{ method, path string }{{http.MethodGet, "/events"}, {http.MethodGet, ""}, {http.MethodDelete, ""}} {
			resp := call(t, m.method, srv.URL+"/app/v1/generations/"+id+m.path, c.token, "")
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Errorf("%s %s as %q: %d %s, want %d", m.method, m.path, c.token, resp.StatusCode, b, c.status)
			}
		}
	}
	resp := call(t, http.MethodPost, srv.URL+"/app/v1/generations", "stranger", chatBody)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), "sign in") {
		t.Errorf("a generation for nobody: %d %s, want 401", resp.StatusCode, b)
	}
	if calls, _, _ := up.counts(); calls != 1 {
		t.Errorf("the upstream was called %d times, want 1: nobody's POST must not reach it", calls)
	}
}
