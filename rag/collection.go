package rag

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrNeedsReindex: the collection's vectors were made by another embed model than the one
// configured; mixing them would make vector search meaningless.
var ErrNeedsReindex = errors.New("collection needs reindex")

// Collection is one set of documents with its keyword index, vectors, extracted text and
// manifest, under its own directory.
type Collection struct {
	dir   string
	log   *slog.Logger
	emb   Embedder
	model string // the configured embed model
	eo    EmbedOptions
	x     *Extractor

	kw  *Keyword
	vec *Vectors

	write sync.Mutex // one document change (or reindex) at a time
	// syncing is held by the one sync running: a second waits (or gives up with its ctx),
	// then finds the work done.
	syncing chan struct{}

	mu     sync.RWMutex
	meta   collectionMeta
	man    manifest
	chunks map[string]Chunk
	// current is the running sync's latest step (nil when none runs), for Info.
	current *Progress

	// crash, when set (tests), is called after each step of a document change; an error stops
	// the change there, as a kill -9 would.
	crash func(step string) error
}

func (c *Collection) step(name string) error {
	if c.crash != nil {
		return c.crash(name)
	}
	return nil
}

// openCollection opens (or creates, with meta) the collection in dir and repairs what a crash
// may have left half done. rebind makes meta's folders and chunking replace the stored ones
// (a collection of the config); otherwise those it was made with are kept (`hearth rag create`).
func openCollection(ctx context.Context, dir string, meta collectionMeta, rebind bool, emb Embedder, eo EmbedOptions, x *Extractor, logger *slog.Logger) (*Collection, error) {
	if err := os.MkdirAll(filepath.Join(dir, "text"), 0o755); err != nil {
		return nil, fmt.Errorf("rag: collection %s: %w", meta.Name, err)
	}
	c := &Collection{dir: dir, log: logger, emb: emb, model: meta.EmbedModel, eo: eo, x: x, chunks: map[string]Chunk{},
		syncing: make(chan struct{}, 1)}
	found, err := readJSON(filepath.Join(dir, "meta.json"), &c.meta)
	if err != nil {
		return nil, fmt.Errorf("rag: collection %s: %w", meta.Name, err)
	}
	if !found {
		c.meta = meta
		c.meta.Created = time.Now().UTC()
		if err := writeJSON(filepath.Join(dir, "meta.json"), c.meta); err != nil {
			return nil, fmt.Errorf("rag: collection %s: %w", meta.Name, err)
		}
	} else if rebind {
		// The config is the truth for folders and chunking; the embed model stays as made.
		c.meta.Paths, c.meta.Include, c.meta.Exclude, c.meta.Chunk = meta.Paths, meta.Include, meta.Exclude, meta.Chunk
	}
	if c.meta.Chunk == (ChunkOptions{}) {
		c.meta.Chunk = meta.Chunk
	}
	if c.man, err = loadManifest(filepath.Join(dir, "manifest")); err != nil {
		return nil, fmt.Errorf("rag: collection %s: %w", meta.Name, err)
	}
	if c.kw, err = OpenKeyword(filepath.Join(dir, "keyword")); err != nil {
		return nil, err
	}
	if c.vec, err = OpenVectors(filepath.Join(dir, "vectors"), emb, c.meta.EmbedModel); err != nil {
		_ = c.kw.Close()
		return nil, err
	}
	if err := c.recover(ctx); err != nil {
		_ = c.kw.Close()
		return nil, err
	}
	return c, nil
}

// Name is the collection's name.
func (c *Collection) Name() string { return c.meta.Name }

// NeedsReindex says why the vectors cannot be used as they are ("" when they can).
func (c *Collection) NeedsReindex() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.meta.EmbedModel != c.model {
		return fmt.Sprintf("the collection was embedded with %s but rag.embed_model is %s: run `hearth rag reindex %s`", c.meta.EmbedModel, c.model, c.meta.Name)
	}
	return ""
}

// Close releases the indexes.
func (c *Collection) Close() error { return c.kw.Close() }

func docID(source string) string {
	sum := sha256.Sum256([]byte(source))
	return hex.EncodeToString(sum[:8])
}

func generation(hash string, version int) string { return fmt.Sprintf("%sv%d", hash[:12], version) }

func chunkID(doc, gen string, pos int) string { return fmt.Sprintf("%s-%s-%d", doc, gen, pos) }

func (c *Collection) textPath(doc, gen string) string {
	return filepath.Join(c.dir, "text", doc+"-"+gen+".json")
}

// Outcome is what happened to one document.
type Outcome string

const (
	Indexed   Outcome = "indexed"
	Unchanged Outcome = "unchanged"
	Skipped   Outcome = "skipped"
	Removed   Outcome = "removed"
	Failed    Outcome = "failed"
)

// PutResult says what Put did.
type PutResult struct {
	Source  string  `json:"source"`
	Outcome Outcome `json:"outcome"`
	Chunks  int     `json:"chunks"`
	Reason  string  `json:"reason,omitempty"`
}

// Put indexes data as document source (path on disk: path, "" for uploads), replacing what
// the collection held for it. Unchanged content costs a hash. An unreadable file is Skipped
// with its reason (and whatever was indexed for it before stays); errors are for failures of
// the collection itself (embedding, disk).
func (c *Collection) Put(ctx context.Context, source, path string, data []byte, onEmbed func(done, total int)) (PutResult, error) {
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	res := PutResult{Source: source}
	c.mu.RLock()
	old := c.man.Docs[source]
	c.mu.RUnlock()
	version := extractorVersion(source)
	if old != nil && old.Hash == hash && old.ExtractorVersion == version {
		res.Outcome, res.Chunks = Unchanged, len(old.Chunks)
		return res, nil
	}
	if why := c.NeedsReindex(); why != "" {
		return res, fmt.Errorf("%w: %s", ErrNeedsReindex, why)
	}
	doc, err := c.x.Extract(source, data)
	if errors.Is(err, ErrUnreadable) {
		res.Outcome, res.Reason = Skipped, strings.TrimPrefix(err.Error(), ErrUnreadable.Error()+": ")
		return res, nil
	}
	if err != nil {
		return res, err
	}
	id, gen := docID(source), generation(hash, version)
	chunks := Split(doc, c.meta.Chunk)
	texts := make([]string, len(chunks))
	for i := range chunks {
		chunks[i].ID, chunks[i].Source = chunkID(id, gen, i), source
		texts[i] = IndexText(chunks[i])
	}
	vecs, err := embedAll(ctx, c.emb, c.meta.EmbedModel, texts, c.eo, func(done int) {
		if onEmbed != nil {
			onEmbed(done, len(texts))
		}
	})
	if err != nil {
		return res, err
	}
	entry := &DocEntry{ID: id, Source: source, Path: path, Title: doc.Title, Hash: hash, Size: int64(len(data)),
		ExtractorVersion: version, Gen: gen, Indexed: time.Now().UTC()}
	for _, ch := range chunks {
		entry.Chunks = append(entry.Chunks, ch.ID)
	}
	if err := c.commit(ctx, entry, old, chunks, vecs); err != nil {
		return res, err
	}
	res.Outcome, res.Chunks = Indexed, len(chunks)
	return res, nil
}

// commit makes entry the document's content: text file, journal, both indexes, manifest, and
// only then the old generation goes. A crash anywhere leaves the old or the new document.
func (c *Collection) commit(ctx context.Context, entry, old *DocEntry, chunks []Chunk, vecs [][]float32) error {
	c.write.Lock()
	defer c.write.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := writeJSON(c.textPath(entry.ID, entry.Gen), chunks); err != nil {
		return fmt.Errorf("rag: keep extracted text: %w", err)
	}
	j := pending{Doc: entry.ID, Source: entry.Source, NewGen: entry.Gen, Count: len(chunks)}
	if old != nil && old.Gen != entry.Gen {
		j.OldGen = old.Gen
	}
	if err := writeJSON(c.journalPath(), j); err != nil {
		return fmt.Errorf("rag: journal: %w", err)
	}
	if len(vecs) > 0 && c.meta.Dims == 0 {
		c.mu.Lock()
		c.meta.Dims = len(vecs[0])
		err := writeJSON(filepath.Join(c.dir, "meta.json"), c.meta)
		c.mu.Unlock()
		if err != nil {
			return fmt.Errorf("rag: collection meta: %w", err)
		}
	}
	if err := c.vec.Add(context.WithoutCancel(ctx), entry.ID, entry.Gen, entry.Chunks, vecs); err != nil {
		return err
	}
	if err := c.step("vectors"); err != nil {
		return err
	}
	if err := c.kw.Replace(entry.ID, chunks, nil); err != nil {
		return err
	}
	if err := c.step("keyword"); err != nil {
		return err
	}
	c.mu.Lock()
	c.man.Docs[entry.Source] = entry
	for _, ch := range chunks {
		c.chunks[ch.ID] = ch
	}
	err := c.man.save(entry)
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("rag: manifest: %w", err)
	}
	if err := c.step("manifest"); err != nil {
		return err
	}
	if old != nil && old.Gen != entry.Gen {
		c.dropChunks(old)
	}
	return os.Remove(c.journalPath())
}

// Delete removes a document from both indexes; the manifest goes first, so the chunks stop
// being answers at once.
func (c *Collection) Delete(ctx context.Context, source string) (bool, error) {
	c.write.Lock()
	defer c.write.Unlock()
	c.mu.Lock()
	old := c.man.Docs[source]
	if old == nil {
		c.mu.Unlock()
		return false, nil
	}
	if err := writeJSON(c.journalPath(), pending{Doc: old.ID, Source: source, OldGen: old.Gen}); err != nil {
		c.mu.Unlock()
		return false, fmt.Errorf("rag: journal: %w", err)
	}
	delete(c.man.Docs, source)
	err := c.man.remove(old)
	c.mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("rag: manifest: %w", err)
	}
	c.dropChunks(old)
	return true, os.Remove(c.journalPath())
}

// dropChunks removes an old generation from the indexes, the memory and the disk. The
// manifest no longer lists it, so a failure here only leaves unreachable ids that the next
// open removes.
func (c *Collection) dropChunks(old *DocEntry) {
	c.mu.Lock()
	for _, id := range old.Chunks {
		delete(c.chunks, id)
	}
	c.mu.Unlock()
	if err := c.kw.Delete(old.Chunks); err != nil {
		c.log.Warn("rag: removing old chunks from the keyword index", "source", old.Source, "err", err)
	}
	if err := c.vec.Delete(context.Background(), old.Chunks); err != nil {
		c.log.Warn("rag: removing old chunks from the vectors", "source", old.Source, "err", err)
	}
	_ = os.Remove(c.textPath(old.ID, old.Gen))
}

func (c *Collection) journalPath() string { return filepath.Join(c.dir, "pending.json") }

// recover undoes a half-done change and removes every indexed id the manifest does not list,
// then loads the chunks of the manifest's documents. A document whose text or vectors are
// missing is dropped from the manifest, so that the next sync indexes it again.
func (c *Collection) recover(ctx context.Context) error {
	var j pending
	if found, err := readJSON(c.journalPath(), &j); err != nil || found {
		if err != nil {
			c.log.Warn("rag: damaged journal ignored", "err", err)
		}
		cur := c.man.Docs[j.Source]
		for _, gen := range []string{j.NewGen, j.OldGen} {
			if gen != "" && (cur == nil || cur.Gen != gen) {
				if err := c.vec.DeleteGeneration(ctx, j.Doc, gen); err != nil {
					return err
				}
			}
		}
	}
	listed := map[string]bool{}
	for _, d := range c.man.Docs {
		for _, id := range d.Chunks {
			listed[id] = true
		}
	}
	ids, err := c.kw.IDs()
	if err != nil {
		return err
	}
	var stray []string
	for _, id := range ids {
		if !listed[id] {
			stray = append(stray, id)
		}
	}
	if len(stray) > 0 {
		c.log.Info("rag: removing chunks a crash left outside the manifest", "collection", c.meta.Name, "chunks", len(stray))
		if err := c.kw.Delete(stray); err != nil {
			return err
		}
		if err := c.vec.Delete(ctx, stray); err != nil {
			return err
		}
	}
	for src, d := range c.man.Docs {
		var chunks []Chunk
		found, err := readJSON(c.textPath(d.ID, d.Gen), &chunks)
		complete := err == nil && found && len(chunks) == len(d.Chunks)
		for i := 0; complete && i < len(chunks); i++ {
			complete = chunks[i].ID == d.Chunks[i] && c.vec.Index(ctx, chunks[i].ID)
		}
		if !complete {
			c.log.Warn("rag: document incomplete after a crash; the next sync indexes it again", "source", src)
			_ = c.kw.Delete(d.Chunks)
			_ = c.vec.Delete(ctx, d.Chunks)
			delete(c.man.Docs, src)
			if err := c.man.remove(d); err != nil {
				return fmt.Errorf("rag: manifest: %w", err)
			}
			continue
		}
		for _, ch := range chunks {
			c.chunks[ch.ID] = ch
		}
	}
	_ = os.Remove(c.journalPath())
	return nil
}

// Documents lists the collection's documents by source.
func (c *Collection) Documents() []DocEntry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]DocEntry, 0, len(c.man.Docs))
	for _, d := range c.man.Docs {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b DocEntry) int { return strings.Compare(a.Source, b.Source) })
	return out
}

// Info is a collection's summary for listings.
type Info struct {
	Name         string    `json:"name"`
	Paths        []string  `json:"paths,omitempty"`
	Include      []string  `json:"include,omitempty"`
	Exclude      []string  `json:"exclude,omitempty"`
	EmbedModel   string    `json:"embed_model"`
	Documents    int       `json:"documents"`
	Chunks       int       `json:"chunks"`
	NeedsReindex string    `json:"needs_reindex,omitempty"`
	Created      time.Time `json:"created"`
	// Syncing is how far the sync running now is (started by anyone: the folder watch, a
	// rescan, a client); nil when none runs.
	Syncing *Progress `json:"syncing,omitempty"`
}

// Info summarises the collection.
func (c *Collection) Info() Info {
	why := c.NeedsReindex()
	c.mu.RLock()
	defer c.mu.RUnlock()
	return Info{Name: c.meta.Name, Paths: c.meta.Paths, Include: c.meta.Include, Exclude: c.meta.Exclude,
		EmbedModel: c.meta.EmbedModel, Documents: len(c.man.Docs), Chunks: len(c.chunks), NeedsReindex: why, Created: c.meta.Created,
		Syncing: c.current}
}
