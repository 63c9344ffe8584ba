package main

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/agent"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/internal/ollamasim"
	"github.com/hearthlab/hearth/internal/storage"
	"github.com/hearthlab/hearth/internal/storage/storetest"
	"github.com/hearthlab/hearth/router"
)

// startStoreAgent runs an agent whose Ollama is a sim and whose store is a directory with
// tiny in it.
func startStoreAgent(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := storetest.Model(dir, "tiny", 3<<20); err != nil {
		t.Fatal(err)
	}
	sim := ollamasim.New(ollamasim.Config{Models: []ollamasim.Model{{Name: "tiny", Size: 3 << 20}}})
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	cfg := config.DefaultAgent()
	cfg.Node.Name, cfg.Node.Listen, cfg.Ollama.URL = "gpu-pc", "127.0.0.1:0", sim.URL()
	cfg.Ollama.PollInterval = 100 * time.Millisecond
	cfg.Storage.ModelsDir, cfg.Storage.HealthInterval = dir, 50*time.Millisecond
	cfg.Idle.Inhibit = false
	a, err := agent.New(cfg, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	hearthtest.Run(t, "agent", a.Run)
	base := "http://" + a.Addr().String()
	hearthtest.Eventually(t, "the agent lists its store", 15*time.Second, func() bool {
		out, err := run("models", "ls", "--agent", base)
		return err == nil && strings.Contains(out, "tiny:latest") && strings.Count(out, "gpu-pc") == 2
	})
	return base
}

func TestModelsCommands(t *testing.T) {
	base := startStoreAgent(t)
	out, err := run("models", "ls", "--agent", base)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "MODEL") || !strings.Contains(lines[1], "3.1 MB") || strings.Count(lines[1], "gpu-pc") != 2 {
		t.Errorf("ls:\n%s", out)
	}

	out, err = run("models", "doctor", "--agent", base, "--read-mb", "1")
	if err != nil || !strings.Contains(out, "gpu-pc: ") || !strings.Contains(out, "read speed: ") || !strings.Contains(out, "COLD LOAD") ||
		!strings.Contains(out, "tiny:latest") || !strings.Contains(out, "all 1 store(s) look fine") {
		t.Errorf("doctor: %v\n%s", err, out)
	}

	out, err = run("models", "prewarm", "tiny", "--agent", base, "--load")
	if err != nil || !strings.Contains(out, "gpu-pc: tiny:latest in the page cache (3.1 MB at ") || !strings.Contains(out, "gpu-pc: tiny loaded in ") {
		t.Errorf("prewarm: %v\n%s", err, out)
	}
	if out, _ := run("models", "ls", "--agent", base); strings.Count(out, "gpu-pc") != 3 {
		t.Errorf("after prewarm --load, tiny is not loaded on gpu-pc:\n%s", out)
	}
	if _, err = run("models", "prewarm", "nope", "--agent", base); err == nil || !strings.Contains(err.Error(), "no serving node's store holds nope") {
		t.Errorf("prewarm of a missing model: %v", err)
	}

	out, err = run("models", "pull", "tiny", "--agent", base, "--node", "gpu-pc")
	if err != nil || !strings.Contains(out, "pulling manifest\n") || !strings.Contains(out, "100% (3.1 MB of 3.1 MB)") || !strings.HasSuffix(out, "success\n") {
		t.Errorf("pull: %v\n%s", err, out)
	}
	if _, err = run("models", "pull", "nope", "--agent", base); err == nil || !strings.Contains(err.Error(), "file does not exist") {
		t.Errorf("pull of a missing model: %v", err)
	}
	out, err = run("models", "rm", "tiny", "--agent", base)
	if err != nil || out != "deleted tiny\n" {
		t.Errorf("rm: %v\n%s", err, out)
	}
	if _, err = run("wake", "gpu2", "--agent", base); err == nil || !strings.Contains(err.Error(), "has no wake: rules") {
		t.Errorf("wake without rules: %v", err)
	}
}

func TestShowPullTerminal(t *testing.T) {
	in := `{"status":"pulling manifest"}
{"status":"pulling abc","digest":"sha256:abc","total":1000,"completed":500}
{"status":"pulling abc","digest":"sha256:abc","total":1000,"completed":1000}
{"status":"success"}
`
	var out bytes.Buffer
	if err := showPull(&out, strings.NewReader(in), true); err != nil {
		t.Fatal(err)
	}
	want := "pulling manifest\n\rpulling abc [###############---------------]  50% 500 B/1.0 kB\rpulling abc [##############################] 100% 1.0 kB/1.0 kB\nsuccess\n"
	if out.String() != want {
		t.Errorf("got %q\nwant %q", out.String(), want)
	}
	err := showPull(&out, strings.NewReader(`{"status":"pulling manifest"}`+"\n"+`{"error":"pull model manifest: file does not exist"}`+"\n"), false)
	if err == nil || err.Error() != "pull failed: pull model manifest: file does not exist" {
		t.Errorf("error line: %v", err)
	}
}

func TestDoctorComparesUIDs(t *testing.T) {
	report := func(node string, uid uint32) storage.Report {
		return storage.Report{Node: node, Dir: "/mnt/nas/ollama-models",
			Health:     storage.Health{Dir: "/mnt/nas/ollama-models", Required: true, Mounted: true, FSType: "nfs4", Healthy: true},
			OllamaUser: storage.User{Name: "ollama", UID: uid, GIDs: []uint32{uid}}}
	}
	var out bytes.Buffer
	n := renderDoctor(&out, router.ClusterView{}, []storage.Report{report("nas", 997), report("gpu-pc", 998)}, nil)
	if n != 1 || !strings.Contains(out.String(), "PROBLEM: Ollama's UID differs: 997 on nas, 998 on gpu-pc") {
		t.Errorf("%d problems:\n%s", n, out.String())
	}
	// A node without Ollama reads the store as its agent's user, whose UID need not match.
	nas := report("nas", 0)
	nas.OllamaUser = storage.User{Name: "(the agent's user; no Ollama on this node)", UID: 0, GIDs: []uint32{0}, ReadOnly: true}
	out.Reset()
	n = renderDoctor(&out, router.ClusterView{}, []storage.Report{nas, report("gpu-pc", 998), report("gpu-box", 998)}, nil)
	if n != 0 || !strings.Contains(out.String(), "no Ollama here; the agent reads the store as uid 0") || !strings.Contains(out.String(), "all 3 store(s) look fine") {
		t.Errorf("%d problems:\n%s", n, out.String())
	}
}

// TestDoctorPruneOwners: two prune owners in the cluster, and a shared store without one,
// are problems; a store of one node without an owner is not.
func TestDoctorPruneOwners(t *testing.T) {
	node := func(name, dir string, owner bool) router.NodeView {
		return router.NodeView{Name: name, Role: "serve", PruneOwner: owner,
			Storage: &router.StorageView{Dir: dir, Required: true, Mounted: true, FSType: "nfs4", Healthy: true}}
	}
	tests := []struct {
		name  string
		nodes []router.NodeView
		want  []string
	}{
		{"one owner", []router.NodeView{node("gpu-pc", "/mnt/nas", true), node("gpu-box", "/mnt/nas", false)}, nil},
		{"two owners", []router.NodeView{node("gpu-pc", "/mnt/nas", true), node("gpu-box", "/mnt/nas", true)},
			[]string{"PROBLEM: more than one node has storage.prune_owner: true (gpu-pc, gpu-box): each one's Ollama deletes the blobs it finds unused when it starts"}},
		{"a shared store without an owner", []router.NodeView{node("gpu-pc", "/mnt/nas", false), node("gpu-box", "/mnt/nas", false), node("laptop", "/home/me/models", false)},
			[]string{"PROBLEM: gpu-pc, gpu-box share the store /mnt/nas but none has storage.prune_owner: true: their managed Ollamas run with OLLAMA_NOPRUNE=1, " +
				"so none deletes unused blobs when it starts, nor the old layers a re-pull or re-create of a model leaves behind"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var reports []storage.Report
			for _, n := range tc.nodes {
				reports = append(reports, storage.Report{Node: n.Name, Dir: n.Storage.Dir,
					Health:     storage.Health{Dir: n.Storage.Dir, Required: true, Mounted: true, FSType: "nfs4", Healthy: true},
					OllamaUser: storage.User{Name: "ollama", UID: 997}})
			}
			var out bytes.Buffer
			n := renderDoctor(&out, router.ClusterView{Nodes: tc.nodes}, reports, nil)
			if n != len(tc.want) || strings.Count(out.String(), "PROBLEM") != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%s", n, len(tc.want), out.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// TestDoctorNotChecked: nodes of the cluster without a store, and the sleeping nodes of the
// agent's wake rules, are listed with the reason they were not checked, not left out.
func TestDoctorNotChecked(t *testing.T) {
	store := &router.StorageView{Dir: "/mnt/nas", Required: true, Mounted: true, FSType: "nfs4", Healthy: true}
	v := router.ClusterView{
		Nodes:  []router.NodeView{{Name: "gpu-box", Role: "serve", Storage: store}, {Name: "laptop", Role: "serve"}},
		Asleep: []string{"gpu-pc"},
	}
	rep := storage.Report{Node: "gpu-box", Dir: "/mnt/nas", Health: storage.Health{Dir: "/mnt/nas", Required: true, Mounted: true, FSType: "nfs4", Healthy: true},
		OllamaUser: storage.User{Name: "ollama", UID: 997}}
	var out bytes.Buffer
	n := renderDoctor(&out, v, []storage.Report{rep}, nil)
	for _, want := range []string{
		"not checked: laptop (no model store: storage.models_dir is not set there)\n",
		"not checked: gpu-pc (not in the cluster now: asleep or off; `hearth wake gpu-pc` wakes it)\n",
		"all 1 store(s) look fine",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if n != 0 {
		t.Errorf("%d problems, want 0 (a node without a store is not one):\n%s", n, out.String())
	}
}

// TestModelsCommandErrors: an unknown node, a model a node does not hold and an agent that
// does not answer each get a message that says what is wrong and what to do.
func TestModelsCommandErrors(t *testing.T) {
	base := startStoreAgent(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"models", "prewarm", "tiny", "--node", "nope", "--agent", base}, `no node "nope" in the cluster (nodes: gpu-pc): give --node one of them`},
		{[]string{"models", "prewarm", "nope", "--node", "gpu-pc", "--agent", base}, "node gpu-pc's store does not hold nope"},
		{[]string{"models", "pull", "tiny", "--node", "nope", "--agent", base}, `answered 404 Not Found: unknown node "nope" (this agent serves node "gpu-pc")`},
		{[]string{"models", "rm", "tiny", "--node", "nope", "--agent", base}, `answered 404 Not Found: unknown node "nope"`},
		{[]string{"models", "rm", "nope", "--agent", base}, `answered 404 Not Found: model 'nope' not found`},
		{[]string{"models", "ls", "--agent", dead}, "cannot reach the agent at " + dead},
		{[]string{"models", "pull", "tiny", "--agent", dead}, "(is `hearth agent` running there?)"},
		{[]string{"models", "doctor", "--agent", dead}, "cannot reach the agent at " + dead},
		{[]string{"wake", "gpu-pc", "--agent", dead}, "cannot reach the agent at " + dead},
	}
	for _, tc := range tests {
		out, err := run(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v (output %q), want an error with %q", tc.args, err, out, tc.want)
		}
	}
}
