package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/router"
)

// preloads is a node's API that records the loads it is asked for.
type preloads struct {
	mu     sync.Mutex
	models []string
	auth   []string
}

func (pl *preloads) serve(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Model  string `json:"model"`
			Prompt *string
		}
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/api/generate" || json.Unmarshal(b, &body) != nil || body.Prompt != nil {
			t.Errorf("load request %s %s", r.URL.Path, b)
		}
		pl.mu.Lock()
		pl.models = append(pl.models, body.Model)
		pl.auth = append(pl.auth, r.Header.Get("Authorization"))
		pl.mu.Unlock()
		w.Write([]byte(`{"model":"` + body.Model + `","done":true,"done_reason":"load"}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func (pl *preloads) got() []string {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return append([]string(nil), pl.models...)
}

// TestPickerWaitsForFastNodeUntilSlowIsSooner: a free slow node is used only when the queue
// for the fast one is long enough that the slow node finishes first.
func TestPickerWaitsForFastNodeUntilSlowIsSooner(t *testing.T) {
	p, _ := newTestPicker(t, PickerConfig{QueueTimeout: time.Minute},
		peer("fast", 1, []string{"m:latest"}, []string{"m:latest"}),
		peer("slow", 1, []string{"m:latest"}, []string{"m:latest"}))
	p.mu.Lock()
	p.est.learnService("fast", "m:latest", 100*time.Millisecond) // 10 requests/s
	p.est.learnService("slow", "m:latest", 500*time.Millisecond)
	p.mu.Unlock()
	busy := pick(t, p, "m:latest", "")
	if busy.Node != "fast" {
		t.Fatalf("first pick %s, want fast", busy.Node)
	}
	// Waiting k places behind in the queue costs 2×(k+0.5)×100 ms + 100 ms (the wait counts
	// twice: it holds back those behind): less than the slow node's 500 ms for the first two
	// waiters, more for the third.
	got := make(chan *router.Target, 3)
	for i := range 3 {
		go func() {
			tg, err := p.Pick(t.Context(), router.PickRequest{Model: "m:latest"})
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			got <- tg
		}()
		if i < 2 {
			waitQueued(t, p, i+1)
		}
	}
	select {
	case tg := <-got:
		if tg.Node != "slow" {
			t.Fatalf("the third waiter went to %s, want slow", tg.Node)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nobody took the slow node with three waiting for the fast one")
	}
	if q := p.Queued(); q != 2 {
		t.Fatalf("queued %d, want the two for whom the fast node is sooner", q)
	}
	busy.Done(router.Outcome{})
	tg := <-got
	if tg.Node != "fast" {
		t.Fatalf("released fast slot went to %s", tg.Node)
	}
	// The last waiter takes the fast slot in turn: no waiter outlives the test.
	tg.Done(router.Outcome{})
	(<-got).Done(router.Outcome{})
}

func waitQueued(t *testing.T, p *Picker, n int) {
	t.Helper()
	hearthtest.Eventually(t, fmt.Sprintf("%d queued", n), 5*time.Second, func() bool { return p.Queued() == n })
}

// TestPlannerLoadsAnotherCopy: when a model's demand exceeds what its loaded copy serves, the
// picker loads it on a node where that evicts nothing, and sends requests there.
func TestPlannerLoadsAnotherCopy(t *testing.T) {
	var pl preloads
	srv := pl.serve(t)
	b := peer("b", 4, []string{"m:latest"}, nil)
	b.Meta.API, b.Meta.Holds = srv.URL, 1
	a := peer("a", 1, []string{"m:latest"}, []string{"m:latest"})
	a.Meta.Holds = 1
	p, _ := newTestPicker(t, PickerConfig{QueueTimeout: time.Minute, Header: http.Header{"Authorization": {"Bearer cluster-key"}}}, a, b)
	p.mu.Lock()
	p.est.learnService("a", "m:latest", 100*time.Millisecond) // a serves 10 requests/s
	for range 40 {
		p.noteArrival("m:latest", time.Now()) // 40 requests/s asked
	}
	p.mu.Unlock()
	tg := pick(t, p, "m:latest", "")
	if tg.Node != "a" {
		t.Fatalf("first pick %s, want a (warm)", tg.Node)
	}
	// a is full: the next request waits (a load on b would take longer than a's slot), and
	// with a request waiting the planner loads the model on b.
	waited := make(chan *router.Target, 1)
	go func() {
		tg, err := p.Pick(t.Context(), router.PickRequest{Model: "m:latest"})
		if err != nil {
			t.Errorf("waiter: %v", err)
		}
		waited <- tg
	}()
	hearthtest.Eventually(t, "a load on b", waitTimeout, func() bool { return len(pl.got()) == 1 })
	if got := pl.got(); got[0] != "m:latest" || pl.auth[0] != "Bearer cluster-key" {
		t.Fatalf("load request for %v with %q", got, pl.auth[0])
	}
	// b is warm once loaded: the waiter goes there rather than wait for a.
	if tg := <-waited; tg == nil || tg.Node != "b" || tg.Reason != "warm" {
		t.Fatalf("after the load: %+v, want b (warm)", tg)
	}
	if len(pl.got()) != 1 {
		t.Fatalf("loads %v, want one", pl.got())
	}
}

// TestPlannerLeavesAKeepingUpModelAlone: one request, whatever the rate it suggests, loads no
// second copy while its copy has room: nobody waits.
func TestPlannerLeavesAKeepingUpModelAlone(t *testing.T) {
	var pl preloads
	srv := pl.serve(t)
	b := peer("b", 4, []string{"m:latest"}, nil)
	b.Meta.API = srv.URL
	p, _ := newTestPicker(t, PickerConfig{}, peer("a", 1, []string{"m:latest"}, []string{"m:latest"}), b)
	tg := pick(t, p, "m:latest", "")
	tg.Done(router.Outcome{FirstByte: time.Millisecond})
	pick(t, p, "m:latest", "").Done(router.Outcome{FirstByte: time.Millisecond})
	p.Kick()
	time.Sleep(50 * time.Millisecond)
	if got := pl.got(); len(got) != 0 {
		t.Fatalf("loads %v: nobody waited", got)
	}
}

// TestPlannerKeepsAModelsOnlyCopy: a model in demand is not evicted from its only node to
// make room for another, however busy the other is.
func TestPlannerKeepsAModelsOnlyCopy(t *testing.T) {
	var pl preloads
	srv := pl.serve(t)
	a := peer("a", 1, []string{"m1:latest", "m2:latest"}, []string{"m1:latest"})
	b := peer("b", 1, []string{"m1:latest", "m2:latest"}, []string{"m2:latest"})
	a.Meta.Holds, b.Meta.Holds, b.Meta.API = 1, 1, srv.URL
	p, _ := newTestPicker(t, PickerConfig{QueueTimeout: time.Minute}, a, b)
	p.mu.Lock()
	p.est.learnService("a", "m1:latest", 100*time.Millisecond)
	p.est.learnService("b", "m2:latest", 100*time.Millisecond)
	for range 40 {
		p.noteArrival("m1:latest", time.Now())
	}
	p.noteArrival("m2:latest", time.Now())
	p.mu.Unlock()
	if tg := pick(t, p, "m1:latest", ""); tg.Node != "a" {
		t.Fatalf("m1 went to %s", tg.Node)
	}
	time.Sleep(50 * time.Millisecond)
	p.mu.Lock()
	loads := len(p.loads)
	p.mu.Unlock()
	if got := pl.got(); len(got) != 0 || loads != 0 {
		t.Fatalf("loads %v (%d under way): m2's only copy on b must stay", got, loads)
	}
	// With a waiting for its slot, m1's next request waits rather than evict m2 from b.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if tg, err := p.Pick(ctx, router.PickRequest{Model: "m1:latest"}); err == nil {
		t.Fatalf("m1 went to %s (%s) while m2 is in demand there", tg.Node, tg.Reason)
	}
}

func TestArrivalsRate(t *testing.T) {
	var a arrivals
	t0 := time.Unix(1000, 0)
	for i := range 50 { // 5 per second for 10 s
		a.add(t0.Add(time.Duration(i) * 200 * time.Millisecond))
	}
	if r := a.rate(t0.Add(10 * time.Second)); r < 4 || r > 6 {
		t.Fatalf("rate %.1f, want about 5/s", r)
	}
	if r := a.rate(t0.Add(time.Minute)); r != 0 {
		t.Fatalf("a minute later the rate is %.1f, want 0", r)
	}
}

// TestPickerRequestDoesNotEvictForASecondCopy: a request whose model is loaded on a busy node
// waits for it, even past ColdWait, rather than unload another model from a free node: moving
// models is the planner's.
func TestPickerRequestDoesNotEvictForASecondCopy(t *testing.T) {
	a := peer("a", 1, []string{"m1:latest", "m2:latest"}, []string{"m1:latest"})
	b := peer("b", 1, []string{"m1:latest", "m2:latest"}, []string{"m2:latest"})
	a.Meta.Holds, b.Meta.Holds = 1, 1
	p, _ := newTestPicker(t, PickerConfig{ColdWait: 20 * time.Millisecond, QueueTimeout: 300 * time.Millisecond}, a, b)
	busy := pick(t, p, "m1:latest", "")
	if busy.Node != "a" {
		t.Fatalf("m1 went to %s", busy.Node)
	}
	tg, err := p.Pick(t.Context(), router.PickRequest{Model: "m1:latest"})
	if err == nil {
		t.Fatalf("m1 went to %s (%s): it unloaded m2 while m1 has a copy", tg.Node, tg.Reason)
	}
	if !errors.Is(err, router.ErrBusy) {
		t.Fatalf("got %v, want the queue timeout", err)
	}
	busy.Done(router.Outcome{})
	if tg := pick(t, p, "m1:latest", ""); tg.Node != "a" || tg.Reason != "warm" {
		t.Fatalf("after a freed up: %s (%s)", tg.Node, tg.Reason)
	}
}

// TestPickerCloseWaitsForPreloads: Close cancels a load ahead of need that its node has not
// answered yet, and returns only once the goroutine that sent it has finished.
func TestPickerCloseWaitsForPreloads(t *testing.T) {
	asked := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then the server notices the client going
		asked <- struct{}{}
		select { // a cold load that takes longer than the test
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	b := peer("b", 4, []string{"m:latest"}, nil)
	b.Meta.API, b.Meta.Holds = srv.URL, 1
	a := peer("a", 1, []string{"m:latest"}, []string{"m:latest"})
	a.Meta.Holds = 1
	p, _ := newTestPicker(t, PickerConfig{QueueTimeout: time.Minute}, a, b)
	p.mu.Lock()
	p.est.learnService("a", "m:latest", 100*time.Millisecond)
	for range 40 {
		p.noteArrival("m:latest", time.Now())
	}
	p.mu.Unlock()
	busy := pick(t, p, "m:latest", "")
	ctx, cancel := context.WithCancel(t.Context())
	waited := make(chan error, 1)
	go func() {
		_, err := p.Pick(ctx, router.PickRequest{Model: "m:latest"})
		waited <- err
	}()
	select {
	case <-asked:
	case <-time.After(5 * time.Second):
		t.Fatal("the planner sent no load to b")
	}
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter: %v", err)
	}
	p.Close()
	p.mu.Lock()
	_, loading := p.loads["b"]
	p.mu.Unlock()
	if loading {
		t.Fatal("Close returned while the load on b was still being sent")
	}
	// After Close no load starts: the planner's next turn sends nothing.
	p.mu.Lock()
	p.preload(b, "m:latest", time.Now())
	p.mu.Unlock()
	p.preloads.Wait()
	select {
	case <-asked:
		t.Fatal("a load was sent after Close")
	default:
	}
	busy.Done(router.Outcome{})
}
