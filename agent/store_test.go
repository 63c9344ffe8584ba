package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/internal/storage/storetest"
	"github.com/hearthlab/hearth/router"
)

// testStore is a models dir with models in it and a mountinfo that puts it on fsType.
func testStore(t *testing.T, fsType string, models ...string) (dir, mountinfo string) {
	t.Helper()
	dir = t.TempDir()
	for _, m := range models {
		if _, err := storetest.Model(dir, m, 4096); err != nil {
			t.Fatal(err)
		}
	}
	mountinfo = filepath.Join(t.TempDir(), "mountinfo")
	body := fmt.Sprintf("27 1 253:0 / / rw - ext4 /dev/root rw\n40 27 0:45 / %s rw - %s nas:/export/ollama rw\n", dir, fsType)
	if err := os.WriteFile(mountinfo, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, mountinfo
}

func withStore(dir string, require bool) func(*config.Agent) {
	return func(c *config.Agent) {
		c.Storage.ModelsDir, c.Storage.RequireMount = dir, require
		c.Storage.HealthInterval, c.Storage.HealthTimeout = 50*time.Millisecond, 100*time.Millisecond
		c.Idle.Inhibit = false
	}
}

func nodeNamed(v router.ClusterView, name string) (router.NodeView, bool) {
	for _, n := range v.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return router.NodeView{}, false
}

// TestStoreInventoryAndHealth: a NAS that only routes advertises its store's models, so a
// model there with no serving node up is "unavailable", not "unknown"; a GPU node whose store
// hangs gets no cold loads but still serves what it has loaded.
func TestStoreInventoryAndHealth(t *testing.T) {
	nasDir, nasMounts := testStore(t, "nfs4", "qwen3:14b", "tiny")
	gpuDir, gpuMounts := testStore(t, "nfs4", "tiny", "big")
	var hang atomic.Bool
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stat := func(dir string) error {
		if hang.Load() {
			<-release
		}
		_, err := os.Stat(dir)
		return err
	}
	ms := startCluster(t,
		memberSpec{name: "nas", mutate: withStore(nasDir, true), opts: []Option{WithMountInfo(nasMounts)}},
		memberSpec{name: "gpu", models: []string{"tiny", "big"}, mutate: withStore(gpuDir, true),
			opts: []Option{WithMountInfo(gpuMounts), WithStoreStat(stat)}},
	)
	nas, gpu := ms[0], ms[1]
	hearthtest.Eventually(t, "gpu sees the NAS store", waitLimit, func() bool {
		nv, ok := nodeNamed(clusterView(t, gpu), "nas")
		return ok && nv.Storage != nil && nv.Storage.Healthy && len(nv.Stored) == 2
	})
	nv, _ := nodeNamed(clusterView(t, gpu), "nas")
	if st := nv.Storage; st.Dir != nasDir || !st.Required || !st.Mounted || st.FSType != "nfs4" || st.Error != "" || st.CheckedAt.IsZero() ||
		nv.Stored[0].Name != "qwen3:14b" || nv.Stored[0].Size <= 4096 || nv.Role != "router" {
		t.Errorf("the NAS in gpu's view: %+v storage %+v", nv, st)
	}
	resp, body := do(t, http.MethodPost, gpu.base+"/v1/chat/completions", `{"model":"qwen3:14b","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "model_unavailable") || !strings.Contains(body, "on the model store of nas") {
		t.Errorf("a model only on the store: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodPost, nas.base+"/api/generate", `{"model":"nope","prompt":"hi"}`)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown model: %d %s", resp.StatusCode, body)
	}

	// Load tiny on gpu, then hang gpu's store.
	resp, body = do(t, http.MethodPost, nas.base+"/api/generate", `{"model":"tiny","prompt":"hi","stream":false}`)
	if resp.StatusCode != 200 {
		t.Fatalf("tiny before the hang: %d %s", resp.StatusCode, body)
	}
	hang.Store(true)
	hearthtest.Eventually(t, "nas sees gpu's store unhealthy", waitLimit, func() bool {
		nv, ok := nodeNamed(clusterView(t, nas), "gpu")
		return ok && !nv.StorageOK && nv.Storage != nil && strings.Contains(nv.Storage.Error, "not answered since an earlier check")
	})
	resp, body = do(t, http.MethodPost, nas.base+"/api/generate", `{"model":"big","prompt":"hi","stream":false}`)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "gpu's model storage is not answering") {
		t.Errorf("a cold load on a hung store: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodPost, nas.base+"/api/generate", `{"model":"tiny","prompt":"hi","stream":false}`)
	if resp.StatusCode != 200 {
		t.Errorf("a loaded model on a hung store: %d %s", resp.StatusCode, body)
	}
	hang.Store(false)
	release <- struct{}{} // the hung stat returns
	hearthtest.Eventually(t, "gpu's store recovers", waitLimit, func() bool {
		nv, ok := nodeNamed(clusterView(t, nas), "gpu")
		return ok && nv.StorageOK && nv.Storage.Healthy
	})
	resp, body = do(t, http.MethodPost, nas.base+"/api/generate", `{"model":"big","prompt":"hi","stream":false}`)
	if resp.StatusCode != 200 {
		t.Errorf("a cold load after recovery: %d %s", resp.StatusCode, body)
	}
}

// TestStoreMountTimeout: with require_mount, an agent whose store never gets mounted says
// what it waits for and stops after storage.mount_timeout.
func TestStoreMountTimeout(t *testing.T) {
	dir, mounts := testStore(t, "ext4")
	cfg := config.DefaultAgent()
	cfg.Node.Name, cfg.Node.Listen, cfg.Ollama.URL = "gpu", "127.0.0.1:0", "http://127.0.0.1:1"
	withStore(dir, true)(&cfg)
	cfg.Storage.MountTimeout = 200 * time.Millisecond
	logs := &hearthtest.Logs{}
	a, err := New(cfg, slog.New(slog.NewJSONHandler(logs, nil)), "test", WithMountInfo(mounts))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err = a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "still not ready after 200ms (storage.mount_timeout): a mount of type [nfs nfs4 cifs smb3] at "+dir) {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(logs.String(), "waiting for a network filesystem (nfs, nfs4, cifs, smb3) mounted at the model store") {
		t.Errorf("log does not say what it waits for:\n%s", logs)
	}
}

// TestTwoPruneOwners: two nodes with storage.prune_owner in one cluster are reported loudly.
func TestTwoPruneOwners(t *testing.T) {
	dir, mounts := testStore(t, "nfs4", "tiny")
	owner := func(c *config.Agent) {
		withStore(dir, false)(c)
		c.Storage.PruneOwner = true
	}
	ms := startCluster(t,
		memberSpec{name: "a", models: []string{"tiny"}, mutate: owner, opts: []Option{WithMountInfo(mounts)}},
		memberSpec{name: "b", models: []string{"tiny"}, mutate: owner, opts: []Option{WithMountInfo(mounts)}},
	)
	for _, m := range ms {
		hearthtest.Eventually(t, m.name+" reports two prune owners", waitLimit, func() bool {
			return strings.Contains(m.logs.String(), "MORE THAN ONE NODE HAS storage.prune_owner: true") &&
				strings.Contains(m.logs.String(), `"prune_owners":["a","b"]`)
		})
	}
	if n := strings.Count(ms[0].logs.String(), "MORE THAN ONE NODE"); n != 1 {
		t.Errorf("reported %d times, want once while the set stays the same", n)
	}
	nv, _ := nodeNamed(clusterView(t, ms[0]), "b")
	if !nv.PruneOwner {
		t.Errorf("the view does not show b as a prune owner: %+v", nv)
	}
}

// TestSingleNodeStore: without a cluster, a hung store stops cold loads and a model only on
// the store is unavailable, not unknown.
func TestSingleNodeStore(t *testing.T) {
	dir, mounts := testStore(t, "nfs4", "tiny", "big", "onlystore")
	var hang atomic.Bool
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stat := func(dir string) error {
		if hang.Load() {
			<-release
		}
		return nil
	}
	sim := startSim(t, "tiny", "big")
	cfg := config.DefaultAgent()
	cfg.Node.Name, cfg.Node.Listen, cfg.Ollama.URL = "gpu", "127.0.0.1:0", sim.URL()
	cfg.Ollama.PollInterval = 100 * time.Millisecond
	withStore(dir, true)(&cfg)
	base, _ := startAgentWith(t, cfg, WithMountInfo(mounts), WithStoreStat(stat))
	hearthtest.Eventually(t, "tiny loads", waitLimit, func() bool {
		resp, _ := do(t, http.MethodPost, base+"/api/generate", `{"model":"tiny","prompt":"hi","stream":false}`)
		return resp.StatusCode == 200
	})
	resp, body := do(t, http.MethodPost, base+"/api/generate", `{"model":"onlystore","prompt":"hi","stream":false}`)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "on this node's model store") {
		t.Errorf("a model only on the store: %d %s", resp.StatusCode, body)
	}
	hang.Store(true)
	hearthtest.Eventually(t, "the store is reported hung", waitLimit, func() bool {
		v := clusterViewAt(t, base)
		return len(v.Nodes) == 1 && v.Nodes[0].Storage != nil && !v.Nodes[0].Storage.Healthy
	})
	resp, body = do(t, http.MethodPost, base+"/api/generate", `{"model":"big","prompt":"hi","stream":false}`)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "model storage is not answering") {
		t.Errorf("a cold load on a hung store: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, http.MethodPost, base+"/api/generate", `{"model":"tiny","prompt":"hi","stream":false}`); resp.StatusCode != 200 {
		t.Errorf("a loaded model on a hung store: %d %s", resp.StatusCode, body)
	}
}

func clusterViewAt(t *testing.T, base string) router.ClusterView {
	t.Helper()
	resp, body := do(t, http.MethodGet, base+"/hearth/v1/cluster", "")
	var v router.ClusterView
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &v) != nil {
		t.Fatalf("cluster view: %d %s", resp.StatusCode, body)
	}
	return v
}

// TestManagedOllamaWaitsForTheMount: with require_mount, a managed Ollama is not started
// while the store is a directory on the local disk (mountinfo shows ext4: the NFS share is not
// mounted yet), and the store's models are not advertised; once mountinfo shows the share
// (nfs4), Ollama starts with the store as OLLAMA_MODELS and the store's models appear.
func TestManagedOllamaWaitsForTheMount(t *testing.T) {
	dir, mounts := testStore(t, "ext4", "tiny", "big")
	binary, starts := fakeOllama(t, 0, false)
	cfg := procConfig(binary)
	cfg.Node.Name, cfg.Node.Listen = "gpu", "127.0.0.1:0"
	withStore(dir, true)(&cfg)
	base, logs := startAgentWith(t, cfg, WithMountInfo(mounts))

	hearthtest.Eventually(t, "the agent says what it waits for", waitLimit, func() bool {
		return strings.Contains(logs.String(), "waiting for a network filesystem (nfs, nfs4, cifs, smb3) mounted at the model store before starting Ollama")
	})
	// Two more checks of the unmounted store: the wait holds, it did not only begin.
	for range 2 {
		before := storeNode(t, base).Storage.CheckedAt
		hearthtest.Eventually(t, "the store is checked again", waitLimit, func() bool {
			return storeNode(t, base).Storage.CheckedAt.After(before)
		})
	}
	nv := storeNode(t, base)
	if st := nv.Storage; st.Mounted || st.FSType != "ext4" || st.Healthy || len(nv.Stored) != 0 {
		t.Errorf("the unmounted store is shown as %+v with models %v", st, nv.Stored)
	}
	if _, err := os.Stat(starts); !os.IsNotExist(err) || strings.Contains(logs.String(), "managed Ollama started") {
		t.Fatalf("Ollama was started before the store was mounted (starts file: %v):\n%s", err, logs)
	}

	body := fmt.Sprintf("27 1 253:0 / / rw - ext4 /dev/root rw\n40 27 0:45 / %s rw - nfs4 nas:/export/ollama rw\n", dir)
	next := mounts + ".next"
	if err := os.WriteFile(next, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, mounts); err != nil { // the probe reads a whole file, old or new
		t.Fatal(err)
	}
	hearthtest.Eventually(t, "Ollama starts once the share is mounted", waitLimit, func() bool {
		return len(pids(t, starts)) == 1 && strings.Contains(logs.String(), "ollama: serving")
	})
	if out := logs.String(); !strings.Contains(out, "models="+dir+" ") || !strings.Contains(out, "noprune=1") {
		t.Errorf("Ollama started without the store as OLLAMA_MODELS:\n%s", out)
	}
	hearthtest.Eventually(t, "the store's models appear", waitLimit, func() bool {
		nv := storeNode(t, base)
		return nv.Storage.Mounted && nv.Storage.FSType == "nfs4" && len(nv.Stored) == 2
	})
	if nv := storeNode(t, base); nv.Stored[0].Name != "big:latest" || nv.Stored[1].Name != "tiny:latest" {
		t.Errorf("the store's models: %+v", nv.Stored)
	}
}

// storeNode is the only node of a single agent's cluster view, which has a store.
func storeNode(t *testing.T, base string) router.NodeView {
	t.Helper()
	v := clusterViewAt(t, base)
	if len(v.Nodes) != 1 || v.Nodes[0].Storage == nil {
		t.Fatalf("want one node with a store: %+v", v.Nodes)
	}
	return v.Nodes[0]
}

// TestNoPullToAnUnmountedStore: a pull named for a node whose required mount went away is
// refused with what to do, not written to the local disk under the mount point.
func TestNoPullToAnUnmountedStore(t *testing.T) {
	nasDir, nasMounts := testStore(t, "nfs4", "tiny")
	gpuDir, gpuMounts := testStore(t, "nfs4", "tiny")
	ms := startCluster(t,
		memberSpec{name: "nas", mutate: withStore(nasDir, false), opts: []Option{WithMountInfo(nasMounts)}},
		memberSpec{name: "gpu", models: []string{"tiny"}, mutate: withStore(gpuDir, true), opts: []Option{WithMountInfo(gpuMounts)}},
	)
	nas := ms[0]
	hearthtest.Eventually(t, "nas sees gpu's store mounted", waitLimit, func() bool {
		nv, ok := nodeNamed(clusterView(t, nas), "gpu")
		return ok && nv.Storage != nil && nv.Storage.Mounted
	})
	if err := os.WriteFile(gpuMounts, []byte("27 1 253:0 / / rw - ext4 /dev/root rw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hearthtest.Eventually(t, "nas sees gpu's store unmounted", waitLimit, func() bool {
		nv, ok := nodeNamed(clusterView(t, nas), "gpu")
		return ok && nv.Storage != nil && !nv.Storage.Mounted
	})
	resp, body := do(t, http.MethodPost, nas.base+"/api/pull?node=gpu", `{"model":"qwen3:14b"}`)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "node gpu's model store "+gpuDir+" is not mounted") {
		t.Errorf("a pull to an unmounted store: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodDelete, nas.base+"/api/delete?node=gpu", `{"model":"tiny"}`)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a delete on an unmounted store: %d %s", resp.StatusCode, body)
	}
}

// TestManagedOllamaRestartWaitsForTheMount: a managed Ollama that dies while the share is
// gone is not restarted on the local directory under the mount point, but once the share is
// mounted again.
func TestManagedOllamaRestartWaitsForTheMount(t *testing.T) {
	dir, mounts := testStore(t, "nfs4", "tiny")
	binary, starts := fakeOllama(t, 0, false)
	cfg := procConfig(binary)
	cfg.Node.Name, cfg.Node.Listen = "gpu", "127.0.0.1:0"
	withStore(dir, true)(&cfg)
	base, logs := startAgentWith(t, cfg, WithMountInfo(mounts))
	hearthtest.Eventually(t, "Ollama starts on the mounted share", waitLimit, func() bool { return len(pids(t, starts)) == 1 })

	setMounts := func(fsType string) {
		body := fmt.Sprintf("27 1 253:0 / / rw - ext4 /dev/root rw\n40 27 0:45 / %s rw - %s nas:/export/ollama rw\n", dir, fsType)
		if err := os.WriteFile(mounts+".next", []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(mounts+".next", mounts); err != nil {
			t.Fatal(err)
		}
	}
	setMounts("ext4") // the share went away
	hearthtest.Eventually(t, "the store is seen unmounted", waitLimit, func() bool { return !storeNode(t, base).Storage.Mounted })
	if err := syscall.Kill(pids(t, starts)[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	hearthtest.Eventually(t, "the agent says why it does not restart Ollama", waitLimit, func() bool {
		return strings.Contains(logs.String(), "the model store is not mounted: the managed Ollama is restarted once it is")
	})
	for range 2 { // two more checks of the unmounted store: still no restart
		before := storeNode(t, base).Storage.CheckedAt
		hearthtest.Eventually(t, "the store is checked again", waitLimit, func() bool {
			return storeNode(t, base).Storage.CheckedAt.After(before)
		})
	}
	if n := len(pids(t, starts)); n != 1 {
		t.Fatalf("Ollama was restarted %d time(s) while the share was not mounted:\n%s", n-1, logs)
	}
	setMounts("nfs4")
	hearthtest.Eventually(t, "Ollama is restarted once the share is back", waitLimit, func() bool { return len(pids(t, starts)) == 2 })
}
