package ollamasim

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/hearthtest"
)

// send starts a non-streaming chat in the background; its result arrives on the channel.
func send(t *testing.T, ctx context.Context, c *http.Client, url, body string) <-chan result {
	t.Helper()
	ch := make(chan result, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			ch <- result{status: -1, body: err.Error()}
			return
		}
		resp, err := c.Do(req)
		if err != nil {
			ch <- result{status: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		var sb strings.Builder
		_, err = io.Copy(&sb, resp.Body)
		if err != nil {
			ch <- result{status: -1, body: err.Error()}
			return
		}
		ch <- result{status: resp.StatusCode, header: resp.Header, body: sb.String()}
	}()
	return ch
}

func TestSlots(t *testing.T) {
	tests := []struct {
		name     string
		parallel int
		queued   int
	}{
		{"one slot, FIFO", 1, 3},
		{"two slots", 2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Holders stream 1000 tokens and run until cancelled, so the queue forms whatever
			// the machine's speed; the queued requests are short.
			s := startSim(t, Config{Models: []Model{{Name: "tiny"}}, Parallel: tt.parallel, Tokens: 1000, TokenDelay: 50 * time.Millisecond})
			c := newClient(t)
			holdCtx, release := context.WithCancel(testCtx(t))
			defer release()
			var holders, queued []<-chan result
			for i := range tt.parallel {
				holders = append(holders, send(t, holdCtx, c, s.URL()+"/api/chat", chatBody("tiny", true, "")))
				hearthtest.Eventually(t, fmt.Sprintf("holder %d to run", i), waitLimit, func() bool { return s.Stats().Running == i+1 })
			}
			for i := range tt.queued {
				queued = append(queued, send(t, testCtx(t), c, s.URL()+"/api/chat", chatBody("tiny", false, `"options":{"num_predict":2}`)))
				// Arrival order is certain: the next request is sent once the sim queued this one.
				hearthtest.Eventually(t, fmt.Sprintf("request %d to queue", i), waitLimit, func() bool { return s.Stats().Queued == i+1 })
			}
			if st := s.Stats(); st.Running != tt.parallel || st.MaxRunning != tt.parallel {
				t.Errorf("with %d queued: stats %+v, want %d running", tt.queued, st, tt.parallel)
			}
			release()
			for _, ch := range holders {
				if res := <-ch; !strings.Contains(res.body, "context canceled") {
					t.Errorf("holder: %d %s, want cancelled", res.status, res.body)
				}
			}
			var finished []time.Time
			for i, ch := range queued {
				res := <-ch
				if res.status != 200 {
					t.Fatalf("request %d: %d %s", i, res.status, res.body)
				}
				finished = append(finished, decode[struct {
					CreatedAt time.Time `json:"created_at"`
				}](t, res.body).CreatedAt)
			}
			st := s.Stats()
			if st.MaxRunning != tt.parallel || st.Requests != tt.parallel+tt.queued {
				t.Errorf("stats %+v, want MaxRunning %d, Requests %d", st, tt.parallel, tt.parallel+tt.queued)
			}
			if tt.parallel == 1 {
				// One slot: each answer was built after the previous request left the slot.
				for i := 1; i < len(finished); i++ {
					if !finished[i].After(finished[i-1]) {
						t.Errorf("request %d finished at %v, not after request %d at %v: not FIFO", i, finished[i], i-1, finished[i-1])
					}
				}
			}
		})
	}
}

func TestQueueFull503(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny"}}, MaxQueue: 1, Tokens: 1, TokenDelay: time.Hour})
	c := newClient(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	running := send(t, ctx, c, s.URL()+"/api/chat", chatBody("tiny", true, ""))
	hearthtest.Eventually(t, "the first request to run", waitLimit, func() bool { return s.Stats().Running == 1 })
	queued := send(t, ctx, c, s.URL()+"/api/chat", chatBody("tiny", true, ""))
	hearthtest.Eventually(t, "the second request to queue", waitLimit, func() bool { return s.Stats().Queued == 1 })

	tests := []struct {
		path, body, contentType, want string
	}{
		{"/api/chat", chatBody("tiny", true, ""), ctJSONGin, `{"error":"server busy, please try again.  maximum pending requests exceeded"}`},
		{"/api/embed", `{"model":"tiny","input":"x"}`, ctJSONGin, `{"error":"server busy, please try again.  maximum pending requests exceeded"}`},
		{"/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"x"}]}`, ctJSON,
			`{"error":{"message":"server busy, please try again.  maximum pending requests exceeded","type":"api_error","param":null,"code":null}}` + "\n"},
	}
	for _, tt := range tests {
		res := post(t, c, s.URL()+tt.path, tt.body)
		if res.status != 503 || res.header.Get("Content-Type") != tt.contentType || res.body != tt.want {
			t.Errorf("%s: %d %q %s, want 503 %q %s", tt.path, res.status, res.header.Get("Content-Type"), res.body, tt.contentType, tt.want)
		}
	}
	cancel()
	<-running
	<-queued
	hearthtest.Eventually(t, "the slot to be free", waitLimit, func() bool { st := s.Stats(); return st.Running == 0 && st.Queued == 0 })
	if st := s.Stats(); st.Rejected != len(tests) {
		t.Errorf("Rejected = %d, want %d", st.Rejected, len(tests))
	}
}

func TestClientLeaves(t *testing.T) {
	tests := []struct {
		name  string
		queue bool // the leaving client waits in the queue rather than runs
	}{
		{"running client frees its slot", false},
		{"queued client leaves the queue", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSim(t, Config{Models: []Model{{Name: "tiny"}}, Tokens: 1000, TokenDelay: 50 * time.Millisecond})
			c := newClient(t)
			holderCtx, stopHolder := context.WithCancel(testCtx(t))
			defer stopHolder()
			holder := send(t, holderCtx, c, s.URL()+"/api/chat", chatBody("tiny", true, ""))
			hearthtest.Eventually(t, "the holder to run", waitLimit, func() bool { return s.Stats().Running == 1 })
			leaverCtx, leave := context.WithCancel(testCtx(t))
			leaver := holder
			if tt.queue {
				leaver = send(t, leaverCtx, c, s.URL()+"/api/chat", chatBody("tiny", true, ""))
				hearthtest.Eventually(t, "the leaver to queue", waitLimit, func() bool { return s.Stats().Queued == 1 })
				leave()
			} else {
				stopHolder()
			}
			if res := <-leaver; res.status != -1 || !strings.Contains(res.body, "context canceled") {
				t.Errorf("leaving client got %d %s, want its own cancellation", res.status, res.body)
			}
			hearthtest.Eventually(t, "the sim to forget the client", waitLimit, func() bool {
				st := s.Stats()
				return st.Queued == 0 && st.Running == map[bool]int{true: 1, false: 0}[tt.queue]
			})
			stopHolder()
			leave()
			// The slot is usable again: a short request completes.
			res := post(t, c, s.URL()+"/api/chat", chatBody("tiny", false, `"options":{"num_predict":1}`))
			if res.status != 200 || !strings.Contains(res.body, `"content":"tok0 "`) {
				t.Errorf("after the client left: %d %s", res.status, res.body)
			}
		})
	}
}

func TestSharedColdLoad(t *testing.T) {
	tests := []struct {
		name     string
		parallel int
		requests int
	}{
		{"concurrent slots share one load", 4, 4},
		{"queued requests find it loaded", 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const delay = 300 * time.Millisecond
			s := startSim(t, Config{Models: []Model{{Name: "tiny", LoadDelay: delay}}, Parallel: tt.parallel})
			c := newClient(t)
			var wg sync.WaitGroup
			statuses := make([]int, tt.requests)
			for i := range tt.requests {
				wg.Go(func() {
					statuses[i] = post(t, c, s.URL()+"/api/generate", `{"model":"tiny","prompt":"x","stream":false}`).status
				})
			}
			// The first arrival holds its slot for the whole load.
			wg.Wait()
			for i, st := range statuses {
				if st != 200 {
					t.Errorf("request %d: status %d", i, st)
				}
			}
			st := s.Stats()
			if st.ColdLoads != 1 || st.Requests != tt.requests || st.PerModel["tiny:latest"] != tt.requests {
				t.Errorf("stats %+v, want one cold load and %d requests on tiny:latest", st, tt.requests)
			}
			if res := post(t, c, s.URL()+"/api/generate", `{"model":"tiny","prompt":"x","stream":false}`); res.status != 200 || s.Stats().ColdLoads != 1 {
				t.Errorf("warm request: %d, cold loads %d; want no new load", res.status, s.Stats().ColdLoads)
			}
		})
	}
}

func TestColdLoadDuration(t *testing.T) {
	const delay = 100 * time.Millisecond
	s := startSim(t, Config{Models: []Model{{Name: "tiny", LoadDelay: delay}}})
	res := post(t, newClient(t), s.URL()+"/api/chat", chatBody("tiny", false, ""))
	final := decode[struct {
		LoadDuration  time.Duration `json:"load_duration"`
		TotalDuration time.Duration `json:"total_duration"`
	}](t, res.body)
	// A lower bound only: a slow machine can only make these longer.
	if final.LoadDuration < delay || final.TotalDuration < final.LoadDuration {
		t.Errorf("load_duration %v total_duration %v, want at least the %v load", final.LoadDuration, final.TotalDuration, delay)
	}
}

// psNames lists the models /api/ps shows.
func psNames(t *testing.T, c *http.Client, url string) []string {
	t.Helper()
	ps := decode[struct {
		Models []struct {
			Name      string    `json:"name"`
			ExpiresAt time.Time `json:"expires_at"`
		} `json:"models"`
	}](t, get(t, c, url+"/api/ps").body)
	var names []string
	for _, m := range ps.Models {
		names = append(names, m.Name)
	}
	return names
}

func TestKeepAlive(t *testing.T) {
	tests := []struct {
		name       string
		cfgKeep    time.Duration
		body       string
		wantGone   bool          // unloads on its own (polled for)
		wantExpiry time.Duration // else: expires_at about this far ahead
	}{
		{"request keep_alive 0 unloads after the answer", time.Hour, chatBody("tiny", false, `"keep_alive":0`), true, 0},
		{"config keep-alive expires", 50 * time.Millisecond, chatBody("tiny", false, ""), true, 0},
		{"request keep_alive overrides config", 50 * time.Millisecond, chatBody("tiny", false, `"keep_alive":"1h"`), false, time.Hour},
		{"request keep_alive in seconds", 0, chatBody("tiny", false, `"keep_alive":600`), false, 10 * time.Minute},
		{"negative keeps it forever", 0, chatBody("tiny", false, `"keep_alive":-1`), false, forever},
		{"default five minutes", 0, chatBody("tiny", false, ""), false, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSim(t, Config{Models: []Model{{Name: "tiny"}}, KeepAlive: tt.cfgKeep})
			c := newClient(t)
			if res := post(t, c, s.URL()+"/api/chat", tt.body); res.status != 200 {
				t.Fatalf("chat: %d %s", res.status, res.body)
			}
			if tt.wantGone {
				hearthtest.Eventually(t, "the model to unload", waitLimit, func() bool { return len(psNames(t, c, s.URL())) == 0 })
				if st := s.Stats(); st.Unloads != 1 {
					t.Errorf("Unloads = %d, want 1", st.Unloads)
				}
				return
			}
			ps := decode[struct {
				Models []struct {
					Name      string    `json:"name"`
					ExpiresAt time.Time `json:"expires_at"`
				} `json:"models"`
			}](t, get(t, c, s.URL()+"/api/ps").body)
			if len(ps.Models) != 1 || ps.Models[0].Name != "tiny:latest" {
				t.Fatalf("ps = %+v, want tiny:latest loaded", ps.Models)
			}
			left := time.Until(ps.Models[0].ExpiresAt)
			if tt.wantExpiry == forever {
				if ps.Models[0].ExpiresAt.Year() < 2200 {
					t.Errorf("expires_at %v, want centuries ahead", ps.Models[0].ExpiresAt)
				}
			} else if left > tt.wantExpiry || left < tt.wantExpiry-time.Minute {
				t.Errorf("expires in %v, want about %v", left, tt.wantExpiry)
			}
		})
	}
}

func TestUnloadRequest(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "tiny"}}})
	c := newClient(t)
	post(t, c, s.URL()+"/api/generate", `{"model":"tiny"}`)
	if got := psNames(t, c, s.URL()); len(got) != 1 {
		t.Fatalf("after a load request ps = %v, want tiny", got)
	}
	res := post(t, c, s.URL()+"/api/generate", `{"model":"tiny","keep_alive":0}`)
	if !strings.Contains(res.body, `"done_reason":"unload"`) {
		t.Errorf("unload answer %s", res.body)
	}
	if got := psNames(t, c, s.URL()); len(got) != 0 {
		t.Errorf("after keep_alive 0 ps = %v, want empty", got)
	}
}

func TestMaxLoadedEvictsLRU(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "a"}, {Name: "b"}, {Name: "c"}}, MaxLoaded: 2})
	c := newClient(t)
	for _, m := range []string{"a", "b", "a", "c"} {
		if res := post(t, c, s.URL()+"/api/chat", chatBody(m, false, "")); res.status != 200 {
			t.Fatalf("%s: %d %s", m, res.status, res.body)
		}
	}
	got := psNames(t, c, s.URL())
	slices.Sort(got)
	if strings.Join(got, ",") != "a:latest,c:latest" {
		t.Errorf("ps = %v, want a and c (b least recently used)", got)
	}
	if st := s.Stats(); st.ColdLoads != 3 || st.Evictions != 1 {
		t.Errorf("stats %+v, want 3 cold loads, 1 eviction", st)
	}
}

// TestPendingLoadIsNotOvertaken: as in Ollama's scheduler, a request for a loaded model that
// arrives behind one waiting to load another model (evicting the first) waits its turn.
func TestPendingLoadIsNotOvertaken(t *testing.T) {
	s := startSim(t, Config{Models: []Model{{Name: "a"}, {Name: "b"}}, MaxLoaded: 1, Parallel: 4, Tokens: 10, TokenDelay: 20 * time.Millisecond})
	c := newClient(t)
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	send := func(name, model string) {
		wg.Go(func() {
			if res := post(t, c, s.URL()+"/api/chat", chatBody(model, false, "")); res.status != 200 {
				t.Errorf("%s: %d %s", name, res.status, res.body)
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
		})
	}
	blocked := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.blocked
	}
	send("a1", "a")
	hearthtest.Eventually(t, "a1 running", waitLimit, func() bool { return s.Stats().ColdLoads == 1 })
	send("b1", "b")
	hearthtest.Eventually(t, "b1 waiting for a to unload", waitLimit, func() bool { return blocked() == 1 })
	send("a2", "a")
	wg.Wait()
	if strings.Join(order, ",") != "a1,b1,a2" {
		t.Errorf("finished in order %v, want a1,b1,a2: a2 must not overtake b1's load", order)
	}
	if st := s.Stats(); st.ColdLoads != 3 || st.Evictions != 2 {
		t.Errorf("stats %+v, want 3 cold loads (a, b, a again), 2 evictions", st)
	}
}
