package storage

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearthlab/hearth/internal/storage/storetest"
)

func TestReadModels(t *testing.T) {
	dir := t.TempDir()
	digests := map[string]string{}
	for name, size := range map[string]int{"tiny": 1000, "qwen3:14b": 5000, "me/mine:v1": 300, "hf.co/org/gguf:Q4": 70} {
		d, err := storetest.Model(dir, name, size)
		if err != nil {
			t.Fatal(err)
		}
		digests[name] = d
	}
	// A download in progress and a broken manifest must not hide the others.
	broken := filepath.Join(dir, "manifests", "registry.ollama.ai", "library", "broken", "latest")
	if err := os.MkdirAll(filepath.Dir(broken), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(broken, []byte("{not json"), 0o644)
	os.WriteFile(filepath.Join(filepath.Dir(broken), ".latest.tmp"), []byte("{}"), 0o644)

	models, err := ReadModels(dir)
	if err == nil || !strings.Contains(err.Error(), "broken/latest is not JSON") {
		t.Errorf("error: got %v, want the broken manifest named", err)
	}
	var names []string
	for _, m := range models {
		names = append(names, m.Name)
	}
	want := []string{"hf.co/org/gguf:Q4", "me/mine:v1", "qwen3:14b", "tiny:latest"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("names %v, want %v", names, want)
	}
	configSize := int64(len(`{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"1M","file_type":"Q4_0"}`))
	q := models[2]
	if q.Size != 5000+configSize || q.Digest != digests["qwen3:14b"] || q.Largest().Size != 5000 || q.Details.QuantizationLevel != "Q4_0" || q.Details.Family != "llama" {
		t.Errorf("qwen3:14b read as %+v", q)
	}
	if st, err := os.Stat(BlobPath(dir, q.Largest().Digest)); err != nil || st.Size() != 5000 {
		t.Errorf("blob path of %s: %v", q.Largest().Digest, err)
	}
	var entry map[string]any
	if err := json.Unmarshal(models[3].TagsEntry(), &entry); err != nil {
		t.Fatal(err)
	}
	if entry["name"] != "tiny:latest" || entry["size"] != float64(1000+configSize) || entry["digest"] != digests["tiny"] {
		t.Errorf("tags entry %v", entry)
	}
}

func TestReadModelsEmptyStore(t *testing.T) {
	models, err := ReadModels(t.TempDir())
	if err != nil || models != nil {
		t.Fatalf("got %v, %v", models, err)
	}
}
