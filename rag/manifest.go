package rag

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DocEntry is one document in a collection's manifest.
type DocEntry struct {
	// ID names the document's chunks and its text file; it is derived from Source.
	ID string `json:"id"`
	// Source is the path relative to the collection's folder, or "upload/NAME".
	Source string `json:"source"`
	// Path is the file on disk ("" for uploads), so a sync sees it gone.
	Path  string `json:"path,omitempty"`
	Title string `json:"title"`
	// Hash is the SHA-256 of the content, hex.
	Hash             string    `json:"hash"`
	Size             int64     `json:"size"`
	ExtractorVersion int       `json:"extractor_version"`
	Gen              string    `json:"gen"`
	Chunks           []string  `json:"chunks"`
	Indexed          time.Time `json:"indexed"`
}

// manifest is what the collection holds, one file per document (so a change costs one small
// write however large the collection): a document's file is written after both indexes
// hold its chunks, so only what the manifest lists is searchable.
type manifest struct {
	dir  string
	Docs map[string]*DocEntry // by Source
}

func loadManifest(dir string) (manifest, error) {
	m := manifest{dir: dir, Docs: map[string]*DocEntry{}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return m, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return m, err
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var d DocEntry
		if _, err := readJSON(filepath.Join(dir, e.Name()), &d); err != nil {
			return m, err
		}
		m.Docs[d.Source] = &d
	}
	return m, nil
}

func (m manifest) save(d *DocEntry) error { return writeJSON(filepath.Join(m.dir, d.ID+".json"), d) }

func (m manifest) remove(d *DocEntry) error {
	err := os.Remove(filepath.Join(m.dir, d.ID+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// collectionMeta is a collection's settings as its vectors were made.
type collectionMeta struct {
	Name       string    `json:"name"`
	EmbedModel string    `json:"embed_model"`
	Dims       int       `json:"dims,omitempty"`
	Created    time.Time `json:"created"`
	// Paths, Include and Exclude bind the collection to folders (empty for upload-only).
	Paths   []string     `json:"paths,omitempty"`
	Include []string     `json:"include,omitempty"`
	Exclude []string     `json:"exclude,omitempty"`
	Chunk   ChunkOptions `json:"chunk"`
}

// pending is the journal of the document change in progress: written before either index is
// touched, removed after the manifest, so that a crash in between is undone at the next open.
type pending struct {
	Doc    string `json:"doc"`
	Source string `json:"source"`
	NewGen string `json:"new_gen,omitempty"`
	OldGen string `json:"old_gen,omitempty"`
	// Count is how many chunks the new generation has.
	Count int `json:"count"`
}

func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s is damaged: %w", path, err)
	}
	return true, nil
}

// writeJSON replaces path atomically: a temp file, fsync, rename.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}
