package rag

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hearthlab/hearth/internal/logging"
)

// Errors the API turns into statuses.
var (
	ErrNoCollection = errors.New("no such collection")
	ErrExists       = errors.New("collection exists")
	ErrBadName      = errors.New("bad name")
	ErrTooLarge     = errors.New("file too large")
	// ErrEmbedModel: the embed model is not on any node (the Embedder wraps it).
	ErrEmbedModel = errors.New("embed model unavailable")
)

// Config is the RAG store's settings (the agent fills it from its rag section).
type Config struct {
	// Dir holds one directory per collection.
	Dir        string
	EmbedModel string
	// MaxFileSize is the largest file read, in bytes.
	MaxFileSize int64
	Chunk       ChunkOptions
	Embed       EmbedOptions
	// Collections are created (or re-bound to their folders) at Open.
	Collections []CollectionConfig
	// PDFium reads PDFs with PDFium (WebAssembly, started on the first PDF, its compiled code
	// cached under Dir/.pdfium-cache); false uses the pure-Go parser only.
	PDFium bool
	// Watch syncs a folder-bound collection a moment after a file under its folders changes
	// (inotify; changes made on another machine of an NFS or SMB share are not seen, and
	// wait for Run's rescans).
	Watch bool
}

// CollectionConfig binds a collection to folders.
type CollectionConfig struct {
	Name    string   `json:"name"`
	Paths   []string `json:"paths,omitempty"`
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	// Chunk overrides the store's chunking (zero: the store's).
	Chunk ChunkOptions `json:"chunk,omitzero"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// ValidName checks a collection name: it becomes a directory and the model name rag:NAME.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: collection name %q: use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", ErrBadName, name)
	}
	return nil
}

// Store is every collection of this node.
type Store struct {
	cfg Config
	log *slog.Logger
	emb Embedder
	x   *Extractor

	mu   sync.RWMutex
	cols map[string]*Collection

	// created hears of a collection made by Create, so that Run watches its folders at once
	// rather than at the next rescan.
	created chan struct{}
}

// Open opens every collection under cfg.Dir and creates the configured ones.
func Open(ctx context.Context, cfg Config, emb Embedder, logger *slog.Logger) (*Store, error) {
	s := &Store{cfg: cfg, log: logging.OrDiscard(logger), emb: emb, x: &Extractor{}, cols: map[string]*Collection{},
		created: make(chan struct{}, 1)}
	if cfg.PDFium {
		s.x.PDF = &pdfEngine{CacheDir: filepath.Join(cfg.Dir, ".pdfium-cache"), Log: s.log}
	}
	// rag.dir is made with the first collection: an agent without RAG leaves no trace.
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("rag: rag.dir %s: %w", cfg.Dir, err)
	}
	bound := map[string]CollectionConfig{}
	for _, cc := range cfg.Collections {
		bound[cc.Name] = cc
	}
	for _, e := range entries {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue
		}
		cc, ok := bound[e.Name()]
		if !ok {
			cc = CollectionConfig{Name: e.Name()}
		}
		if _, err := s.open(ctx, cc, ok); err != nil {
			s.Close()
			return nil, err
		}
	}
	for _, cc := range cfg.Collections {
		if _, ok := s.cols[cc.Name]; !ok {
			if _, err := s.open(ctx, cc, true); err != nil {
				s.Close()
				return nil, err
			}
		}
	}
	return s, nil
}

func (s *Store) open(ctx context.Context, cc CollectionConfig, rebind bool) (*Collection, error) {
	if err := ValidName(cc.Name); err != nil {
		return nil, err
	}
	meta := collectionMeta{Name: cc.Name, EmbedModel: s.cfg.EmbedModel}
	if rebind {
		meta.Paths, meta.Include, meta.Exclude = cc.Paths, cc.Include, cc.Exclude
		meta.Chunk = cc.Chunk
	}
	if meta.Chunk == (ChunkOptions{}) {
		meta.Chunk = s.cfg.Chunk
	}
	c, err := openCollection(ctx, filepath.Join(s.cfg.Dir, cc.Name), meta, rebind, s.emb, s.cfg.Embed, s.x, s.log)
	if err != nil {
		return nil, err
	}
	c.model = s.cfg.EmbedModel
	s.mu.Lock()
	s.cols[cc.Name] = c
	s.mu.Unlock()
	return c, nil
}

// Collection returns the named collection.
func (s *Store) Collection(name string) (*Collection, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.cols[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q (GET /rag/v1/collections or `hearth rag ls` lists them)", ErrNoCollection, name)
	}
	return c, nil
}

// Names lists the collections, sorted.
func (s *Store) Names() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.cols))
	for n := range s.cols {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// List summarises every collection.
func (s *Store) List() []Info {
	var out []Info
	for _, n := range s.Names() {
		if c, err := s.Collection(n); err == nil {
			out = append(out, c.Info())
		}
	}
	return out
}

// Create makes a new collection, bound to folders when cc.Paths is set.
func (s *Store) Create(ctx context.Context, cc CollectionConfig) (*Collection, error) {
	if err := ValidName(cc.Name); err != nil {
		return nil, err
	}
	for _, p := range cc.Paths {
		st, err := os.Stat(p)
		if err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%w: path %q is not a folder this agent can read", ErrBadName, p)
		}
	}
	s.mu.RLock()
	_, exists := s.cols[cc.Name]
	s.mu.RUnlock()
	if exists {
		return nil, fmt.Errorf("%w: %q already exists", ErrExists, cc.Name)
	}
	c, err := s.open(ctx, cc, true)
	if err == nil && len(cc.Paths) > 0 {
		select {
		case s.created <- struct{}{}:
		default: // Run has not taken the last one yet; it binds every collection when it does
		}
	}
	return c, err
}

// Remove deletes a collection and everything hearth stored for it (never the folder's files).
func (s *Store) Remove(name string) error {
	s.mu.Lock()
	c, ok := s.cols[name]
	delete(s.cols, name)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoCollection, name)
	}
	c.write.Lock()
	defer c.write.Unlock()
	_ = c.Close()
	return os.RemoveAll(c.dir)
}

// Close releases every collection.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.cols {
		_ = c.Close()
	}
	clear(s.cols)
	s.x.Close()
}

// Run re-syncs every folder-bound collection at start and then every interval until ctx
// ends; with Config.Watch, also a moment (watchSettle) after a change under its folders.
func (s *Store) Run(ctx context.Context, interval time.Duration) error {
	var fw *folderWatch
	if s.cfg.Watch {
		var err error
		if fw, err = newFolderWatch(s.log); err != nil {
			s.log.Warn("rag: cannot watch folders for changes: they are synced every rag.rescan_interval only", "err", err)
		}
		defer fw.close()
	}
	syncOne := func(n string) {
		rep, err := s.Sync(ctx, n, nil)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, ErrNoCollection):
		case err != nil:
			s.log.Warn("rag: sync failed", "collection", n, "err", err)
		case rep.Indexed+rep.Removed+rep.Skipped+rep.Failed > 0:
			s.log.Info("rag: synced", "collection", n, "indexed", rep.Indexed, "removed", rep.Removed,
				"skipped", rep.Skipped, "failed", rep.Failed, "unchanged", rep.Unchanged)
		}
	}
	// bound are the folder-bound collections, each watched (a new pair walks its folders once).
	bound := func() []string {
		var names []string
		for _, n := range s.Names() {
			c, err := s.Collection(n)
			if err != nil {
				continue
			}
			paths := c.Info().Paths
			if len(paths) == 0 {
				continue
			}
			names = append(names, n)
			if fw != nil {
				for _, root := range paths {
					fw.bind(n, root)
				}
			}
		}
		return names
	}
	syncAll := func() {
		for _, n := range bound() {
			if ctx.Err() != nil {
				return
			}
			syncOne(n)
		}
	}
	syncAll()
	if interval <= 0 && fw == nil {
		return nil
	}
	var rescan <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		rescan = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-rescan:
			syncAll()
		case ev, ok := <-fw.events():
			if !ok {
				fw = nil // closed under us: rescans only
				continue
			}
			fw.note(ev)
		case err, ok := <-fw.errors():
			if !ok {
				fw = nil
				continue
			}
			fw.lost(err)
		case <-s.created:
			bound()
		case <-fw.settled():
			for _, n := range fw.take() {
				syncOne(n)
			}
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// Upload indexes one file sent by a client, as "upload/NAME".
func (s *Store) Upload(ctx context.Context, collection, filename string, data []byte) (PutResult, error) {
	c, err := s.Collection(collection)
	if err != nil {
		return PutResult{}, err
	}
	if err := validUploadName(filename); err != nil {
		return PutResult{}, err
	}
	if s.cfg.MaxFileSize > 0 && int64(len(data)) > s.cfg.MaxFileSize {
		return PutResult{}, fmt.Errorf("%w: %s is %d bytes, over rag.max_file_size (%d bytes)", ErrTooLarge, filename, len(data), s.cfg.MaxFileSize)
	}
	return c.Put(ctx, "upload/"+filename, "", data, nil)
}

func validUploadName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("%w: the upload has no file name: send it as a multipart file with a name", ErrBadName)
	case slices.ContainsFunc([]rune(name), func(r rune) bool { return r == '/' || r == '\\' || r == 0 }):
		return fmt.Errorf("%w: file name %q: a plain name without folders or \"../\" is required", ErrBadName, name)
	case len(name) > 255:
		return fmt.Errorf("%w: file name is longer than 255 bytes", ErrBadName)
	}
	return nil
}
