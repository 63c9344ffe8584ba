package rag

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Progress is one step of an ingest, for progress bars and per-file lines.
type Progress struct {
	Collection string `json:"collection"`
	// File is the document's source (on embedding ticks too, which have no Outcome).
	File string `json:"file,omitempty"`
	// Index and Total count files (Total is known once the folders are walked).
	Index int `json:"index"`
	Total int `json:"total"`
	// Outcome is set once a file is done.
	Outcome Outcome `json:"outcome,omitempty"`
	Reason  string  `json:"reason,omitempty"`
	Chunks  int     `json:"chunks,omitempty"`
	// Embedded counts chunks embedded so far in this run.
	Embedded int `json:"embedded"`
	// FileEmbedded of FileChunks of the current file are embedded (embedding ticks): a large
	// file is hours of embedding on a small machine.
	FileEmbedded int `json:"file_embedded,omitempty"`
	FileChunks   int `json:"file_chunks,omitempty"`
	// Waiting says that this sync waits for another of the same collection to end.
	Waiting string `json:"waiting,omitempty"`
}

// Report is what a sync did.
type Report struct {
	Collection string      `json:"collection"`
	Files      int         `json:"files"`
	Indexed    int         `json:"indexed"`
	Unchanged  int         `json:"unchanged"`
	Skipped    int         `json:"skipped"`
	Removed    int         `json:"removed"`
	Failed     int         `json:"failed"`
	Chunks     int         `json:"chunks"`
	Items      []PutResult `json:"items"`
	Seconds    float64     `json:"seconds"`
	Canceled   bool        `json:"canceled,omitempty"`
}

func (r *Report) add(p PutResult) {
	switch p.Outcome {
	case Indexed:
		r.Indexed++
		r.Chunks += p.Chunks
	case Unchanged:
		r.Unchanged++
		return
	case Skipped:
		r.Skipped++
	case Removed:
		r.Removed++
	case Failed:
		r.Failed++
	}
	r.Items = append(r.Items, p)
}

// found is a file of a collection's folders; skip, when set, is why it is not read.
type found struct{ source, path, skip string }

// walk lists the collection's files: supported ones, or any the include patterns name (those
// that cannot be read are reported as skipped); hidden files and folders are left out. A link
// to a file is read as that file; a link to a folder is not followed (it may loop) but
// reported, as is a pipe or device under a document's name (reading it could block forever).
func walk(ctx context.Context, meta collectionMeta) ([]found, error) {
	var out []found
	for _, root := range meta.Paths {
		root = filepath.Clean(root)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p == root {
					return err
				}
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if p != root && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			src := filepath.ToSlash(rel)
			if len(meta.Paths) > 1 {
				src = filepath.Base(root) + "/" + src
			}
			skip, folder := notAFile(p, d)
			// A link to a folder has no document's name, but leaving it out would lose its
			// files without a word.
			if folder && !excluded(meta, src) || !folder && selected(meta, src) {
				out = append(out, found{source: src, path: p, skip: skip})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("rag: collection %s: reading folder %s: %w", meta.Name, root, err)
		}
	}
	return out, nil
}

// notAFile says why the entry at p is not read as a document ("" for a file or a link to one),
// and whether it is a link to a folder.
func notAFile(p string, d fs.DirEntry) (string, bool) {
	switch {
	case d.Type().IsRegular():
		return "", false
	case d.Type()&fs.ModeSymlink != 0:
		st, err := os.Stat(p)
		switch {
		case err != nil:
			target, _ := os.Readlink(p)
			return fmt.Sprintf("the link points to %s, which cannot be read: %v", target, err), false
		case st.IsDir():
			return "a link to a folder is not followed (it may loop): add the folder to the collection's paths to index it", true
		case !st.Mode().IsRegular():
			return "the link points to a pipe, socket or device, not a file", false
		}
		return "", false
	}
	return "not a file but a pipe, socket or device", false
}

func excluded(meta collectionMeta, src string) bool {
	for _, ex := range meta.Exclude {
		if Glob(ex, src) {
			return true
		}
	}
	return false
}

func selected(meta collectionMeta, src string) bool {
	if excluded(meta, src) {
		return false
	}
	if len(meta.Include) == 0 {
		return Supported(src)
	}
	for _, in := range meta.Include {
		if Glob(in, src) {
			return true
		}
	}
	return false
}

// Sync brings a folder-bound collection in line with its folders: new and changed files are
// indexed, unchanged ones cost a hash, deleted ones are removed. An unreadable file is
// skipped with its reason and the rest goes on; ctx cancels between files (and embedding
// batches), leaving every finished file indexed.
func (s *Store) Sync(ctx context.Context, name string, progress func(Progress)) (Report, error) {
	start := time.Now()
	c, err := s.Collection(name)
	if err != nil {
		return Report{}, err
	}
	if why := c.NeedsReindex(); why != "" {
		return Report{}, fmt.Errorf("%w: %s", ErrNeedsReindex, why)
	}
	if progress == nil {
		progress = func(Progress) {}
	}
	if err := c.waitSync(ctx, name, progress); err != nil {
		return Report{}, err
	}
	defer c.endSync()
	report := progress
	progress = func(p Progress) {
		c.setCurrent(p)
		report(p)
	}
	c.mu.RLock()
	meta := c.meta
	c.mu.RUnlock()
	rep := Report{Collection: name}
	if len(meta.Paths) == 0 {
		rep.Items = []PutResult{}
		return rep, nil
	}
	files, err := walk(ctx, meta)
	if err != nil {
		return rep, err
	}
	rep.Files = len(files)
	seen := map[string]bool{}
	embedded := 0
	for i, f := range files {
		if ctx.Err() != nil {
			rep.Canceled = true
			break
		}
		seen[f.source] = true
		p := Progress{Collection: name, File: f.source, Index: i + 1, Total: len(files)}
		c.setCurrent(Progress{Collection: name, File: f.source, Index: i + 1, Total: len(files), Embedded: embedded})
		res, err := s.putFile(ctx, c, f, func(done, total int) {
			progress(Progress{Collection: name, File: f.source, Index: i + 1, Total: len(files), Embedded: embedded + done,
				FileEmbedded: done, FileChunks: total})
		})
		if err != nil {
			if ctx.Err() != nil {
				rep.Canceled = true
				break
			}
			if errors.Is(err, ErrEmbedModel) || errors.Is(err, ErrNeedsReindex) {
				return rep, err
			}
			res = PutResult{Source: f.source, Outcome: Failed, Reason: err.Error()}
		}
		if res.Outcome == Indexed {
			embedded += res.Chunks
		}
		rep.add(res)
		p.Outcome, p.Reason, p.Chunks, p.Embedded = res.Outcome, res.Reason, res.Chunks, embedded
		progress(p)
	}
	if !rep.Canceled {
		for _, d := range c.Documents() {
			if d.Path == "" || seen[d.Source] {
				continue
			}
			if ok, err := c.Delete(ctx, d.Source); err != nil {
				rep.add(PutResult{Source: d.Source, Outcome: Failed, Reason: err.Error()})
			} else if ok {
				rep.add(PutResult{Source: d.Source, Outcome: Removed, Chunks: len(d.Chunks)})
				progress(Progress{Collection: name, File: d.Source, Outcome: Removed, Total: len(files), Embedded: embedded})
			}
		}
	}
	if rep.Items == nil {
		rep.Items = []PutResult{}
	}
	rep.Seconds = time.Since(start).Seconds()
	if rep.Canceled {
		return rep, ctx.Err()
	}
	return rep, nil
}

const waitingForSync = "another sync of this collection is running (the folder watch, a rescan or another client): " +
	"this one starts when it ends; `hearth rag ls` shows how far it is"

// waitSync takes the collection's sync slot, saying so through progress when another sync
// holds it; ctx gives up the wait.
func (c *Collection) waitSync(ctx context.Context, name string, progress func(Progress)) error {
	select {
	case c.syncing <- struct{}{}:
		return nil
	default:
	}
	progress(Progress{Collection: name, Waiting: waitingForSync})
	select {
	case c.syncing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// setCurrent keeps p as the running sync's step, for Info.
func (c *Collection) setCurrent(p Progress) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current = &p
}

func (c *Collection) endSync() {
	c.mu.Lock()
	c.current = nil
	c.mu.Unlock()
	<-c.syncing
}

func (s *Store) putFile(ctx context.Context, c *Collection, f found, onEmbed func(done, total int)) (PutResult, error) {
	if f.skip != "" {
		return PutResult{Source: f.source, Outcome: Skipped, Reason: f.skip}, nil
	}
	st, err := os.Stat(f.path)
	if err != nil {
		return PutResult{Source: f.source, Outcome: Skipped, Reason: "cannot read the file: " + err.Error()}, nil
	}
	if s.cfg.MaxFileSize > 0 && st.Size() > s.cfg.MaxFileSize {
		return PutResult{Source: f.source, Outcome: Skipped,
			Reason: fmt.Sprintf("the file is %d bytes, over rag.max_file_size (%d bytes)", st.Size(), s.cfg.MaxFileSize)}, nil
	}
	if !Supported(f.source) {
		return PutResult{Source: f.source, Outcome: Skipped,
			Reason: fmt.Sprintf("%s files are not read (supported: %s)", filepath.Ext(f.source), strings.Join(Extensions, " "))}, nil
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return PutResult{Source: f.source, Outcome: Skipped, Reason: "cannot read the file: " + err.Error()}, nil
	}
	return c.Put(ctx, f.source, f.path, data, onEmbed)
}

// Reindex embeds every chunk again with the configured embed model, from the extracted
// text (files are not read again).
func (s *Store) Reindex(ctx context.Context, name string, progress func(Progress)) (Report, error) {
	start := time.Now()
	c, err := s.Collection(name)
	if err != nil {
		return Report{}, err
	}
	if progress == nil {
		progress = func(Progress) {}
	}
	c.write.Lock()
	defer c.write.Unlock()
	if err := c.vec.Reset(c.emb, c.model); err != nil {
		return Report{}, err
	}
	docs := c.Documents()
	rep := Report{Collection: name, Files: len(docs), Items: []PutResult{}}
	embedded := 0
	for i, d := range docs {
		c.mu.RLock()
		texts := make([]string, len(d.Chunks))
		for j, id := range d.Chunks {
			texts[j] = IndexText(c.chunks[id])
		}
		c.mu.RUnlock()
		vecs, err := embedAll(ctx, c.emb, c.model, texts, c.eo, nil)
		if err != nil {
			return rep, err
		}
		if err := c.vec.Add(context.WithoutCancel(ctx), d.ID, d.Gen, d.Chunks, vecs); err != nil {
			return rep, err
		}
		embedded += len(texts)
		rep.add(PutResult{Source: d.Source, Outcome: Indexed, Chunks: len(texts)})
		progress(Progress{Collection: name, File: d.Source, Index: i + 1, Total: len(docs), Outcome: Indexed, Chunks: len(texts), Embedded: embedded})
		if i == 0 && len(vecs) > 0 {
			c.mu.Lock()
			c.meta.Dims = len(vecs[0])
			c.mu.Unlock()
		}
	}
	c.mu.Lock()
	c.meta.EmbedModel = c.model
	err = writeJSON(filepath.Join(c.dir, "meta.json"), c.meta)
	c.mu.Unlock()
	rep.Seconds = time.Since(start).Seconds()
	return rep, err
}
