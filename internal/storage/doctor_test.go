package storage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearthlab/hearth/internal/storage/storetest"
)

func TestCheckAccess(t *testing.T) {
	root, err := os.MkdirTemp("", "hearth-access-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(root, "share", "ollama")
	if _, err := storetest.Model(store, "tiny", 100); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "share"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(root, "share"), 0o755) })
	const other = 54321 // a user that owns nothing here
	var blocked []string
	for _, a := range CheckAccess(store, other, []uint32{other}) {
		if !a.OK {
			blocked = append(blocked, a.Path)
		}
	}
	// share has no x for others; the store itself (0755) is not writable by them.
	if len(blocked) < 2 || blocked[0] != filepath.Join(root, "share") || blocked[1] != store {
		t.Fatalf("blocked %v", blocked)
	}
	uid := uint32(os.Getuid())
	for _, a := range CheckAccess(store, uid, nil) {
		if !a.OK {
			t.Errorf("the owner is refused at %s: %s", a.Path, a.Problem)
		}
	}
}

func TestReadSpeedAndPrewarm(t *testing.T) {
	dir := t.TempDir()
	if _, err := storetest.Model(dir, "tiny", 9<<20); err != nil {
		t.Fatal(err)
	}
	models, err := ReadModels(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := models[0]
	r, err := ReadSpeed(t.Context(), BlobPath(dir, m.Largest().Digest), 5<<20, true, nil)
	if err != nil || r.Bytes != 5<<20 || r.BytesPerSecond() <= 0 {
		t.Fatalf("ReadSpeed: %+v %v", r, err)
	}
	var last, total int64
	sum, err := Prewarm(t.Context(), dir, m, func(done, t int64) { last, total = done, t })
	if err != nil || sum.Bytes != m.Size || last != m.Size || total != m.Size {
		t.Fatalf("Prewarm read %d of %d (progress %d/%d): %v", sum.Bytes, m.Size, last, total, err)
	}
	sp, err := FreeSpace(dir)
	if err != nil || sp.Total <= 0 || sp.Free > sp.Total {
		t.Fatalf("FreeSpace %+v %v", sp, err)
	}
}

// TestDiagnoseRootOnNFS: root passes every local permission check, but an NFS server maps it
// to nobody (root_squash), so a store only its owner may enter is a problem for a root Ollama.
func TestDiagnoseRootOnNFS(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	root := User{Name: "root", UID: 0, GIDs: []uint32{0}}
	h := Health{Dir: dir, Required: true, Mounted: true, FSType: "nfs4", Healthy: true}
	rep := Diagnose(t.Context(), "gpu-pc", h, nil, root, 0)
	var found bool
	for _, p := range rep.Problems {
		found = found || (strings.HasPrefix(p, dir+": Ollama runs as root, which the NFS server maps to nobody (uid 65534)") && strings.Contains(p, "lacks rwx permission"))
	}
	if !found {
		t.Fatalf("problems %q", rep.Problems)
	}
	h.FSType, h.Required, h.Mounted = "ext4", false, false // a local store: root may
	if rep := Diagnose(t.Context(), "gpu-pc", h, nil, root, 0); len(rep.Problems) != 0 {
		t.Fatalf("a local store as root: %q", rep.Problems)
	}
}

// TestDiagnoseReadOnlyAgent: on a node without Ollama (the NAS that only routes) the agent
// only reads the manifests: a store it may read but not write is fine there, and not for an
// Ollama.
func TestDiagnoseReadOnlyAgent(t *testing.T) {
	dir, err := os.MkdirTemp("", "hearth-ro-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const other = 54321 // neither owner nor group of dir
	h := Health{Dir: dir, Healthy: true, FSType: "ext4"}
	agent := User{Name: "(the agent's user)", UID: other, GIDs: []uint32{other}, ReadOnly: true}
	if rep := Diagnose(t.Context(), "nas", h, nil, agent, 0); len(rep.Problems) != 0 {
		t.Errorf("a readable store for an agent without Ollama: %q", rep.Problems)
	}
	ollama := User{Name: "ollama", UID: other, GIDs: []uint32{other}}
	rep := Diagnose(t.Context(), "gpu", h, nil, ollama, 0)
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "uid 54321 (gids [54321]) lacks rwx permission here") {
		t.Errorf("a store Ollama cannot write: %q", rep.Problems)
	}
}

// TestDiagnoseColdLoad: each model's predicted cold load is its size read at the speed
// measured on the largest blob, and a model twice the size takes twice as long.
func TestDiagnoseColdLoad(t *testing.T) {
	dir := t.TempDir()
	for name, size := range map[string]int{"small": 2 << 20, "big": 4 << 20} {
		if _, err := storetest.Model(dir, name, size); err != nil {
			t.Fatal(err)
		}
	}
	models, err := ReadModels(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := Health{Dir: dir, Healthy: true, FSType: "ext4"}
	rep := Diagnose(t.Context(), "gpu", h, models, User{Name: "me", UID: uint32(os.Getuid())}, 1<<20)
	if rep.Read == nil || rep.Read.Bytes != 1<<20 || rep.Read.BytesPerSecond <= 0 || len(rep.Models) != 2 {
		t.Fatalf("report: read %+v, models %+v, problems %q", rep.Read, rep.Models, rep.Problems)
	}
	byName := map[string]ColdLoad{}
	for _, c := range rep.Models {
		byName[c.Name] = c
		// Equal up to rounding: the prediction is size ÷ the measured speed.
		if want := float64(c.Size) / rep.Read.BytesPerSecond; c.Seconds <= 0 || c.Seconds/want < 0.99 || c.Seconds/want > 1.01 {
			t.Errorf("%s (%d bytes): cold load %gs, want %gs at %.0f B/s", c.Name, c.Size, c.Seconds, want, rep.Read.BytesPerSecond)
		}
	}
	small, big := byName["small:latest"], byName["big:latest"]
	if ratio := big.Seconds / small.Seconds; ratio < 0.9*float64(big.Size)/float64(small.Size) || ratio > 1.1*float64(big.Size)/float64(small.Size) {
		t.Errorf("big/small cold load %g, want about %g (their sizes' ratio)", ratio, float64(big.Size)/float64(small.Size))
	}
}
