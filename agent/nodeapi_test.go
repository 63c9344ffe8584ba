package agent

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/internal/storage"
)

// TestNodeAPIOnAHungStore: a store that does not answer is not read by a prewarm (its reads
// would hang for ever), and a storage report stuck on it blocks no more than itself: the
// next report is refused at once until it ends.
func TestNodeAPIOnAHungStore(t *testing.T) {
	dir, mounts := testStore(t, "nfs4", "tiny")
	var hang atomic.Bool
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stat := func(string) error {
		if hang.Load() {
			<-release
		}
		return nil
	}
	sim := startSim(t, "tiny")
	cfg := config.DefaultAgent()
	cfg.Node.Name, cfg.Node.Listen, cfg.Ollama.URL = "gpu", "127.0.0.1:0", sim.URL()
	withStore(dir, true)(&cfg)
	a, err := New(cfg, slog.New(slog.DiscardHandler), "test", WithMountInfo(mounts), WithStoreStat(stat))
	if err != nil {
		t.Fatal(err)
	}
	unblock := make(chan struct{})
	a.node.diagnose = func(ctx context.Context, node string, h storage.Health, models []storage.Model, u storage.User, n int64) storage.Report {
		<-unblock // a stat of the store that never returns
		return storage.Diagnose(ctx, node, h, models, u, n)
	}
	hearthtest.Run(t, "agent", a.Run)
	base := "http://" + a.Addr().String()
	hearthtest.Eventually(t, "the store is ready", waitLimit, func() bool { return a.node.store.ok() && len(a.node.store.stored()) == 1 })

	// A report whose client gives up; its diagnosis still hangs.
	rctx, rcancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	req, _ := http.NewRequestWithContext(rctx, http.MethodGet, base+NodePath+"/storage?read_mb=0", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the hung report answered %d", resp.StatusCode)
	}
	rcancel()
	resp, body := do(t, http.MethodGet, base+NodePath+"/storage?read_mb=0", "")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "an earlier storage report on gpu has not finished") {
		t.Fatalf("a report while one hangs: %d %s", resp.StatusCode, body)
	}
	close(unblock)
	hearthtest.Eventually(t, "a report once the hung one ended", waitLimit, func() bool {
		resp, body := do(t, http.MethodGet, base+NodePath+"/storage?read_mb=0", "")
		return resp.StatusCode == http.StatusOK && strings.Contains(body, `"node":"gpu"`)
	})

	hang.Store(true)
	hearthtest.Eventually(t, "the store is unhealthy", waitLimit, func() bool { return !a.node.store.ok() })
	resp, body = do(t, http.MethodPost, base+NodePath+"/prewarm", `{"model":"tiny"}`)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "node gpu's model store is not usable, so nothing is read from it") {
		t.Fatalf("a prewarm on a hung store: %d %s", resp.StatusCode, body)
	}
}

// TestOllamaUserOfARouterOnlyNode: a node without Ollama reports its agent's user as one that
// only reads the store.
func TestOllamaUserOfARouterOnlyNode(t *testing.T) {
	u := (&nodeParts{}).ollamaUser()
	if !u.ReadOnly || !strings.Contains(u.Name, "no Ollama on this node") {
		t.Errorf("router-only node: %+v", u)
	}
	if u := (&nodeParts{backend: &Backend{}}).ollamaUser(); u.ReadOnly {
		t.Errorf("a node with Ollama: %+v", u)
	}
}
