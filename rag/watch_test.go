package rag

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/rag/ragtest"
)

// A watched folder is synced moments after a change, without waiting for a rescan: new files
// and new folders, edits, deletions, and a folder removed and made again.
func TestWatchSyncsAFolderAfterAChange(t *testing.T) {
	settle := watchSettle
	watchSettle = 50 * time.Millisecond
	t.Cleanup(func() { watchSettle = settle })
	docs := t.TempDir()
	write := func(rel, text string) {
		t.Helper()
		p := filepath.Join(docs, rel)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(text), 0o644))
	}
	write("a.txt", "The boiler was serviced in March by the plumber.")
	s, err := Open(t.Context(), Config{Dir: t.TempDir(), EmbedModel: "m", MaxFileSize: 1 << 20,
		Chunk: ChunkOptions{Size: 400, Overlap: 60}, Embed: EmbedOptions{Batch: 4, Concurrency: 1}, Watch: true,
		Collections: []CollectionConfig{{Name: "docs", Paths: []string{docs}}}}, &ragtest.HashEmbedder{Dims: 32}, (&hearthtest.Logs{}).Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c, err := s.Collection("docs")
	if err != nil {
		t.Fatal(err)
	}
	// No rescans (interval 0): whatever is found after the first sync, the watch found.
	hearthtest.Run(t, "rag store", func(ctx context.Context) error { return s.Run(ctx, 0) })
	sources := func() []string {
		var out []string
		c.mu.RLock()
		for src := range c.man.Docs {
			out = append(out, src)
		}
		c.mu.RUnlock()
		slices.Sort(out)
		return out
	}
	want := func(what string, srcs ...string) {
		t.Helper()
		hearthtest.Eventually(t, what, 10*time.Second, func() bool { return slices.Equal(sources(), srcs) })
	}
	want("the first sync", "a.txt")

	write("b.md", "# Zebra\nThe zebra crossing outside is repainted.")
	want("a new file", "a.txt", "b.md")
	ans, err := c.Search(t.Context(), Query{Text: "zebra crossing", Mode: ModeKeyword, TopK: 3})
	if err != nil || len(ans.Results) == 0 || ans.Results[0].Source != "b.md" {
		t.Fatalf("search for the new file's words: %+v, %v", ans.Results, err)
	}

	write("sub/deeper/c.txt", "Insurance renewal is due in June.")
	want("a file in new folders", "a.txt", "b.md", "sub/deeper/c.txt")

	write("a.txt", "The boiler was replaced in October.")
	hearthtest.Eventually(t, "an edit re-indexed", 10*time.Second, func() bool {
		ans, err := c.Search(t.Context(), Query{Text: "replaced October", Mode: ModeKeyword, TopK: 1})
		return err == nil && len(ans.Results) == 1 && ans.Results[0].Source == "a.txt"
	})

	must(t, os.Remove(filepath.Join(docs, "a.txt")))
	want("a deleted file", "b.md", "sub/deeper/c.txt")

	must(t, os.RemoveAll(filepath.Join(docs, "sub")))
	want("a deleted folder", "b.md")
	write("sub/d.txt", "The folder came back with a new note.")
	want("a folder made again under the same name", "b.md", "sub/d.txt")

	write(".notes.swp", "an editor's swap file")
	write("sub/e.txt", "Another note.")
	want("hidden files left out", "b.md", "sub/d.txt", "sub/e.txt")
}

// A collection made while the agent runs (`hearth rag create`) is watched at once, not from
// the next rescan: without rescans (interval 0) a change to its folder must still be synced.
func TestWatchCoversCollectionsCreatedLater(t *testing.T) {
	settle := watchSettle
	watchSettle = time.Millisecond // shorter than the checks' 10 ms, which write again
	t.Cleanup(func() { watchSettle = settle })
	docs := t.TempDir()
	s, err := Open(t.Context(), Config{Dir: t.TempDir(), EmbedModel: "m", MaxFileSize: 1 << 20,
		Chunk: ChunkOptions{Size: 400, Overlap: 60}, Embed: EmbedOptions{Batch: 4, Concurrency: 1}, Watch: true},
		&ragtest.HashEmbedder{Dims: 32}, (&hearthtest.Logs{}).Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	hearthtest.Run(t, "rag store", func(ctx context.Context) error { return s.Run(ctx, 0) })
	c, err := s.Create(t.Context(), CollectionConfig{Name: "docs", Paths: []string{docs}})
	if err != nil {
		t.Fatal(err)
	}
	// Written again on every check: the watch may not be bound yet when the first write lands.
	note := filepath.Join(docs, "note.txt")
	hearthtest.Eventually(t, "a file added after create indexed by the watch", 10*time.Second, func() bool {
		must(t, os.WriteFile(note, []byte("The chimney sweep comes in November."), 0o644))
		return c.Info().Documents == 1
	})
}
