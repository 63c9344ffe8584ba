package agent

import (
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestBackendRefusedAdvice: nothing listening at ollama.url tells a user to start Ollama,
// except when the agent runs it (ollama.manage): then a second `ollama serve` would take the
// port from the agent's own, so it says the managed one is (re)starting.
func TestBackendRefusedAdvice(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	ln.Close() // a port that refuses
	for _, tc := range []struct {
		managed bool
		want    string
	}{
		{false, "connection refused): start Ollama with `ollama serve`, or point ollama.url at it"},
		{true, "connection refused): the Ollama this agent runs (ollama.manage) is starting, or restarting after it exited; the agent's log says why"},
	} {
		b := NewBackend("gpu", u, time.Second, time.Second, nil)
		b.managed = tc.managed
		if err := b.Refresh(t.Context()); err == nil {
			t.Fatalf("managed=%t: Refresh of a closed port succeeded", tc.managed)
		}
		if p := b.State().Problem; !strings.Contains(p, tc.want) {
			t.Errorf("managed=%t: problem %q, want %q", tc.managed, p, tc.want)
		}
	}
}
