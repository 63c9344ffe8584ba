// Package storetest writes Ollama model stores on disk (manifests and blobs) for the tests of
// storage, agent and cmd/hearth. Only tests import it.
package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Model writes name ("tiny", "tiny:q4", "user/tiny:latest") into the store at dir with one
// weights layer of weightBytes bytes and a config blob, as `ollama pull` leaves them, and
// returns the manifest's digest.
func Model(dir, name string, weightBytes int) (string, error) {
	host, ns, model, tag := "registry.ollama.ai", "library", name, "latest"
	if i := strings.LastIndexByte(model, ':'); i > 0 {
		model, tag = model[:i], model[i+1:]
	}
	if parts := strings.Split(model, "/"); len(parts) == 2 {
		ns, model = parts[0], parts[1]
	} else if len(parts) == 3 {
		host, ns, model = parts[0], parts[1], parts[2]
	}
	weights := make([]byte, weightBytes)
	for i := range weights {
		weights[i] = byte(i*7 + len(name))
	}
	config := []byte(`{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"1M","file_type":"Q4_0"}`)
	wd, err := blob(dir, weights)
	if err != nil {
		return "", err
	}
	cd, err := blob(dir, config)
	if err != nil {
		return "", err
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
		"config": map[string]any{"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cd, "size": len(config)},
		"layers": []map[string]any{{"mediaType": "application/vnd.ollama.image.model", "digest": wd, "size": len(weights)}},
	})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "manifests", host, ns, model, tag)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, manifest, 0o644); err != nil {
		return "", err
	}
	sum := sha256.Sum256(manifest)
	return hex.EncodeToString(sum[:]), nil
}

func blob(dir string, data []byte) (string, error) {
	sum := sha256.Sum256(data)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	if err := os.MkdirAll(filepath.Join(dir, "blobs"), 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "blobs", "sha256-"+hex.EncodeToString(sum[:]))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", fmt.Errorf("storetest: %w", err)
	}
	return digest, nil
}
