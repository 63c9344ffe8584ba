package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	// defaultHost and defaultNamespace are left out of model names, as Ollama does.
	defaultHost      = "registry.ollama.ai"
	defaultNamespace = "library"
	// maxManifestBytes bounds one manifest or config blob read from the store.
	maxManifestBytes = 1 << 20
	// maxModels bounds an inventory: a store with more manifests than this is not Ollama's.
	maxModels = 10000
)

// Blob is one layer of a model: a file blobs/sha256-<hex> in the store.
type Blob struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// Details are what Ollama's /api/tags shows of a model, read from its config blob.
type Details struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

// Model is one model on the store, from its manifest.
type Model struct {
	// Name as Ollama shows it: "qwen3:14b", "user/model:tag", "host/ns/model:tag".
	Name string
	// Size is the sum of its layers and config, as Ollama's /api/tags reports it.
	Size int64
	// Digest is the sha256 of the manifest file, as /api/tags reports it.
	Digest string
	// Modified is the manifest's modification time.
	Modified time.Time
	Config   Blob
	Layers   []Blob
	Details  Details
}

// Largest is the model's biggest layer (its weights), or a zero Blob.
func (m Model) Largest() Blob {
	var b Blob
	for _, l := range m.Layers {
		if l.Size > b.Size {
			b = l
		}
	}
	return b
}

// TagsEntry is the model as one entry of Ollama's /api/tags, so listings of the store read
// like Ollama's own.
func (m Model) TagsEntry() json.RawMessage {
	entry := struct {
		Name       string    `json:"name"`
		Model      string    `json:"model"`
		ModifiedAt time.Time `json:"modified_at"`
		Size       int64     `json:"size"`
		Digest     string    `json:"digest"`
		Details    Details   `json:"details"`
	}{m.Name, m.Name, m.Modified, m.Size, m.Digest, m.Details}
	b, _ := json.Marshal(entry) // strings and numbers only
	return b
}

type manifestFile struct {
	SchemaVersion int    `json:"schemaVersion"`
	Config        Blob   `json:"config"`
	Layers        []Blob `json:"layers"`
}

type configFile struct {
	ModelFormat   string   `json:"model_format"`
	ModelFamily   string   `json:"model_family"`
	ModelFamilies []string `json:"model_families"`
	ModelType     string   `json:"model_type"`
	FileType      string   `json:"file_type"`
}

// BlobPath is where the store keeps a blob ("sha256:ab..." is blobs/sha256-ab...).
func BlobPath(dir, digest string) string {
	return filepath.Join(dir, "blobs", strings.Replace(digest, ":", "-", 1))
}

// ReadModels reads every manifest under dir/manifests/<host>/<namespace>/<model>/<tag>,
// sorted by name. A store without a manifests directory holds no models yet (nil, nil). A
// manifest that cannot be read or parsed is skipped and reported in the joined error, so one
// half-written download does not hide the others.
func ReadModels(dir string) ([]Model, error) {
	root := filepath.Join(dir, "manifests")
	if _, err := os.Stat(root); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var models []Model
	var problems []error
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			problems = append(problems, err)
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if d.IsDir() {
			if len(parts) > 3 {
				return fs.SkipDir
			}
			return nil
		}
		if len(parts) != 4 || strings.HasPrefix(parts[3], ".") {
			return nil // stray files, and Ollama's temporary files
		}
		if len(models) >= maxModels {
			return fmt.Errorf("storage: more than %d manifests under %s", maxModels, root)
		}
		m, err := readManifest(dir, path, parts)
		if err != nil {
			problems = append(problems, err)
			return nil
		}
		models = append(models, m)
		return nil
	})
	if err != nil {
		problems = append(problems, err)
	}
	slices.SortFunc(models, func(a, b Model) int { return strings.Compare(a.Name, b.Name) })
	return models, errors.Join(problems...)
}

func readManifest(dir, path string, parts []string) (Model, error) {
	data, info, err := readSmall(path)
	if err != nil {
		return Model{}, fmt.Errorf("storage: manifest %s: %w", path, err)
	}
	var mf manifestFile
	if err := json.Unmarshal(data, &mf); err != nil {
		return Model{}, fmt.Errorf("storage: manifest %s is not JSON: %w", path, err)
	}
	if mf.SchemaVersion != 2 || len(mf.Layers) == 0 {
		return Model{}, fmt.Errorf("storage: manifest %s: schemaVersion %d with %d layers is not an Ollama model", path, mf.SchemaVersion, len(mf.Layers))
	}
	sum := sha256.Sum256(data)
	m := Model{Name: modelName(parts), Digest: hex.EncodeToString(sum[:]), Modified: info.ModTime(),
		Config: mf.Config, Layers: mf.Layers, Size: mf.Config.Size}
	for _, l := range mf.Layers {
		m.Size += l.Size
	}
	if mf.Config.Digest != "" {
		if cdata, _, err := readSmall(BlobPath(dir, mf.Config.Digest)); err == nil {
			var c configFile
			if json.Unmarshal(cdata, &c) == nil {
				m.Details = Details{Format: c.ModelFormat, Family: c.ModelFamily, Families: c.ModelFamilies,
					ParameterSize: c.ModelType, QuantizationLevel: c.FileType}
			}
		}
	}
	return m, nil
}

func readSmall(path string) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return nil, nil, err
	}
	if len(data) > maxManifestBytes {
		return nil, nil, fmt.Errorf("over %d bytes", maxManifestBytes)
	}
	return data, info, nil
}

// modelName is Ollama's shortest display name for host/namespace/model/tag.
func modelName(parts []string) string {
	host, ns, model, tag := parts[0], parts[1], parts[2], parts[3]
	switch {
	case !strings.EqualFold(host, defaultHost):
		return host + "/" + ns + "/" + model + ":" + tag
	case !strings.EqualFold(ns, defaultNamespace):
		return ns + "/" + model + ":" + tag
	default:
		return model + ":" + tag
	}
}
