package rag

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/rag/ragtest"
)

var errCrash = errors.New("simulated crash")

// folder copies the readable and unreadable testdata files into a fresh folder.
func folder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"report.pdf", "locked.pdf", "photo.pdf", "broken.pdf", "notes.md", "page.html", "bills.csv", "heating-zh.txt", "heating-ru.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), readTestdata(t, name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.MkdirAll(filepath.Join(dir, "office", "tmp"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "office", "lease.docx"), ragtest.DOCX([]ragtest.Para{
		{Style: "Heading1", Text: "Lease agreement"}, {Text: "The deposit is three months of rent, paid to the landlord."}}), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "office", "bomb.docx"), ragtest.ZipBombDOCX(2<<20), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "office", "tmp", "draft.md"), []byte("# Draft\n\nexcluded text about boilers"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "big.txt"), []byte(strings.Repeat("large file ", 20000)), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "empty.txt"), nil, 0o644))
	return dir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func openStore(t *testing.T, dir string, emb Embedder, model string, cols ...CollectionConfig) *Store {
	t.Helper()
	s, err := Open(t.Context(), Config{Dir: dir, EmbedModel: model, MaxFileSize: 100 << 10,
		Chunk: ChunkOptions{Size: 400, Overlap: 60}, Embed: EmbedOptions{Batch: 4, Concurrency: 2}, Collections: cols}, emb, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestSyncIngestsFolderAndSkipsWithReasons(t *testing.T) {
	docs := folder(t)
	emb := &ragtest.HashEmbedder{Dims: 64}
	s := openStore(t, t.TempDir(), emb, "nomic-embed-text", CollectionConfig{Name: "docs", Paths: []string{docs}, Exclude: []string{"**/tmp/**"}})
	var lines []Progress
	rep, err := s.Sync(t.Context(), "docs", func(p Progress) {
		if p.Outcome != "" {
			lines = append(lines, p)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 13 || rep.Indexed != 7 || rep.Skipped != 6 || rep.Failed != 0 {
		t.Fatalf("report: files %d indexed %d skipped %d failed %d, want 13/7/6/0: %+v", rep.Files, rep.Indexed, rep.Skipped, rep.Failed, rep.Items)
	}
	if len(lines) != 13 {
		t.Errorf("%d progress lines, want one per file (13)", len(lines))
	}
	reasons := map[string]string{}
	for _, it := range rep.Items {
		if it.Outcome == Skipped {
			reasons[it.Source] = it.Reason
		}
	}
	for src, want := range map[string]string{
		"locked.pdf":       "password-protected",
		"photo.pdf":        "JPEG",
		"broken.pdf":       "damaged",
		"office/bomb.docx": "zip bomb",
		"big.txt":          "over rag.max_file_size (102400 bytes)",
		"empty.txt":        "the file is empty",
	} {
		if !strings.Contains(reasons[src], want) {
			t.Errorf("%s skipped for %q, want a reason saying %q", src, reasons[src], want)
		}
	}
	c, _ := s.Collection("docs")
	for _, tc := range []struct{ mode, q, want string }{
		{ModeKeyword, "warranty years", "report.pdf"},
		{ModeKeyword, "radiators noise attic", "notes.md"},
		{ModeKeyword, "锅炉压力", "heating-zh.txt"},
		{ModeKeyword, "давление котла", "heating-ru.txt"},
		{ModeVector, "deposit rent landlord", "office/lease.docx"},
		{ModeHybrid, "batteries supermarket", "page.html"},
	} {
		ans, err := c.Search(t.Context(), Query{Text: tc.q, Mode: tc.mode, TopK: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(ans.Results) == 0 || ans.Results[0].Source != tc.want {
			t.Errorf("%s %q: top = %+v, want %s", tc.mode, tc.q, ans.Results, tc.want)
		}
	}
	ans, _ := c.Search(t.Context(), Query{Text: "boiler", Mode: ModeKeyword, TopK: 10})
	for _, r := range ans.Results {
		if strings.Contains(r.Source, "tmp/") {
			t.Errorf("excluded file found: %s", r.Source)
		}
	}
	if ans.Results[0].Page == 0 || ans.Results[0].Title != "Boiler manual" {
		t.Errorf("PDF chunk lost its page or title: %+v", ans.Results[0])
	}
	ans, _ = c.Search(t.Context(), Query{Text: "boiler", TopK: 10, Source: "*.txt"})
	for _, r := range ans.Results {
		if !strings.HasSuffix(r.Source, ".txt") {
			t.Errorf("source filter *.txt let %s through", r.Source)
		}
	}
}

func TestSyncIsIncremental(t *testing.T) {
	docs := t.TempDir()
	must(t, os.WriteFile(filepath.Join(docs, "a.md"), []byte("# A\n\nThe spare key is under the blue pot."), 0o644))
	must(t, os.WriteFile(filepath.Join(docs, "b.md"), []byte("# B\n\nThe wifi password is on the router."), 0o644))
	emb := &ragtest.HashEmbedder{Dims: 64}
	s := openStore(t, t.TempDir(), emb, "m", CollectionConfig{Name: "docs", Paths: []string{docs}})
	ctx := t.Context()
	if rep, err := s.Sync(ctx, "docs", nil); err != nil || rep.Indexed != 2 {
		t.Fatalf("first sync: %+v %v", rep, err)
	}
	calls := emb.Texts.Load()
	rep, err := s.Sync(ctx, "docs", nil)
	if err != nil || rep.Unchanged != 2 || rep.Indexed != 0 || emb.Texts.Load() != calls {
		t.Fatalf("second sync: %+v %v, embedded %d more", rep, err, emb.Texts.Load()-calls)
	}
	must(t, os.WriteFile(filepath.Join(docs, "a.md"), []byte("# A\n\nThe spare key is now in the garage drawer."), 0o644))
	must(t, os.Remove(filepath.Join(docs, "b.md")))
	rep, err = s.Sync(ctx, "docs", nil)
	if err != nil || rep.Indexed != 1 || rep.Removed != 1 {
		t.Fatalf("third sync: %+v %v", rep, err)
	}
	c, _ := s.Collection("docs")
	for q, want := range map[string]int{"blue pot": 0, "garage drawer": 1, "wifi router": 0} {
		ans, _ := c.Search(ctx, Query{Text: q, Mode: ModeKeyword})
		if len(ans.Results) != want {
			t.Errorf("%q: %d results, want %d", q, len(ans.Results), want)
		}
	}
	if n, _ := c.kw.Count(); n != 1 || c.vec.Count() != 1 {
		t.Errorf("indexes hold %d keyword and %d vector chunks, want 1 each", n, c.vec.Count())
	}
}

func TestCrashLeavesOldOrNewDocument(t *testing.T) {
	for _, step := range []string{"vectors", "keyword", "manifest"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			emb := &ragtest.HashEmbedder{Dims: 32}
			ctx := t.Context()
			s := openStore(t, dir, emb, "m", CollectionConfig{Name: "docs"})
			c, _ := s.Collection("docs")
			if _, err := c.Put(ctx, "n.md", "", []byte("old content about apples"), nil); err != nil {
				t.Fatal(err)
			}
			c.crash = func(s string) error {
				if s == step {
					return errCrash
				}
				return nil
			}
			if _, err := c.Put(ctx, "n.md", "", []byte("new content about pears"), nil); !errors.Is(err, errCrash) {
				t.Fatalf("err = %v, want the simulated crash", err)
			}
			s.Close()
			s2 := openStore(t, dir, emb, "m")
			c2, _ := s2.Collection("docs")
			want := map[string]int{"apples": 1, "pears": 0}
			if step == "manifest" {
				want = map[string]int{"apples": 0, "pears": 1}
			}
			for q, n := range want {
				for _, mode := range []string{ModeKeyword, ModeVector} {
					ans, err := c2.Search(ctx, Query{Text: q, Mode: mode, TopK: 5})
					if err != nil {
						t.Fatal(err)
					}
					got := 0
					for _, r := range ans.Results {
						if strings.Contains(r.Text, q) {
							got++
						}
					}
					if got != n {
						t.Errorf("after a crash at %s, %s search %q finds %d, want %d", step, mode, q, got, n)
					}
				}
			}
			kwn, _ := c2.kw.Count()
			if kwn != 1 || c2.vec.Count() != 1 {
				t.Errorf("after the crash: %d keyword and %d vector chunks, want 1 and 1", kwn, c2.vec.Count())
			}
		})
	}
}

func TestEmbedModelChangeNeedsReindex(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	emb := &ragtest.HashEmbedder{Dims: 32}
	s := openStore(t, dir, emb, "old-model", CollectionConfig{Name: "docs"})
	c, _ := s.Collection("docs")
	if _, err := c.Put(ctx, "x.txt", "", []byte("the fuse box is in the cellar"), nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openStore(t, dir, emb, "new-model")
	c2, _ := s2.Collection("docs")
	if why := c2.Info().NeedsReindex; !strings.Contains(why, "hearth rag reindex docs") {
		t.Fatalf("needs_reindex = %q", why)
	}
	if _, err := c2.Search(ctx, Query{Text: "fuse", Mode: ModeVector}); !errors.Is(err, ErrNeedsReindex) {
		t.Errorf("vector search with mixed models: err = %v, want ErrNeedsReindex", err)
	}
	ans, err := c2.Search(ctx, Query{Text: "fuse box"})
	if err != nil || ans.Mode != ModeKeyword || len(ans.Results) != 1 || !strings.Contains(ans.Warning, "reindex") {
		t.Errorf("hybrid before reindex: %+v %v, want keyword results with a warning", ans, err)
	}
	before := emb.Texts.Load()
	rep, err := s2.Reindex(ctx, "docs", nil)
	if err != nil || rep.Indexed != 1 {
		t.Fatalf("reindex: %+v %v", rep, err)
	}
	if emb.Texts.Load() == before {
		t.Error("reindex embedded nothing")
	}
	if c2.Info().NeedsReindex != "" {
		t.Error("still needs reindex after reindex")
	}
	if ans, err := c2.Search(ctx, Query{Text: "fuse box cellar", Mode: ModeVector}); err != nil || len(ans.Results) != 1 {
		t.Errorf("vector search after reindex: %+v %v", ans, err)
	}
}

func TestSyncCancels(t *testing.T) {
	docs := t.TempDir()
	for i := range 20 {
		must(t, os.WriteFile(filepath.Join(docs, string(rune('a'+i))+".txt"), []byte(strings.Repeat("word ", 50+i)), 0o644))
	}
	s := openStore(t, t.TempDir(), &ragtest.HashEmbedder{Dims: 16}, "m", CollectionConfig{Name: "docs", Paths: []string{docs}})
	ctx, cancel := context.WithCancel(t.Context())
	rep, err := s.Sync(ctx, "docs", func(p Progress) {
		if p.Index == 3 && p.Outcome != "" {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || !rep.Canceled || rep.Indexed != 3 {
		t.Fatalf("canceled sync: indexed %d canceled %v err %v, want 3 files then context.Canceled", rep.Indexed, rep.Canceled, err)
	}
	rep, err = s.Sync(t.Context(), "docs", nil)
	if err != nil || rep.Indexed != 17 || rep.Unchanged != 3 {
		t.Fatalf("the next sync finishes the job: %+v %v", rep, err)
	}
}

func TestEmbedModelMissingStopsSync(t *testing.T) {
	docs := t.TempDir()
	must(t, os.WriteFile(filepath.Join(docs, "a.txt"), []byte("hello there"), 0o644))
	emb := &ragtest.HashEmbedder{Models: []string{"other"}, Missing: ErrEmbedModel}
	s := openStore(t, t.TempDir(), emb, "nomic-embed-text", CollectionConfig{Name: "docs", Paths: []string{docs}})
	_, err := s.Sync(t.Context(), "docs", nil)
	if !errors.Is(err, ErrEmbedModel) || !strings.Contains(err.Error(), "ollama pull nomic-embed-text") {
		t.Fatalf("err = %v, want ErrEmbedModel naming ollama pull", err)
	}
}

func TestUploadNames(t *testing.T) {
	s := openStore(t, t.TempDir(), &ragtest.HashEmbedder{Dims: 16}, "m", CollectionConfig{Name: "docs"})
	ctx := t.Context()
	for name, want := range map[string]error{"../etc/passwd": ErrBadName, "a/b.txt": ErrBadName, "": ErrBadName, "ok.txt": nil} {
		_, err := s.Upload(ctx, "docs", name, []byte("some text"))
		if !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("upload %q: err = %v, want %v", name, err, want)
		}
	}
	if _, err := s.Upload(ctx, "docs", "huge.txt", make([]byte, 200<<10)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized upload: err = %v, want ErrTooLarge", err)
	}
	if _, err := s.Upload(ctx, "nope", "a.txt", []byte("x")); !errors.Is(err, ErrNoCollection) {
		t.Errorf("unknown collection: err = %v", err)
	}
}

// TestSearchDuringReindexAndSync: queries keep answering while the vectors are rebuilt and a
// second sync waits for the first (run with -race).
func TestSearchDuringReindexAndSync(t *testing.T) {
	docs := t.TempDir()
	for i := range 12 {
		must(t, os.WriteFile(filepath.Join(docs, string(rune('a'+i))+".md"), []byte("# Note\n\nboiler pressure note number "+strings.Repeat("x", i)), 0o644))
	}
	s := openStore(t, t.TempDir(), &ragtest.HashEmbedder{Dims: 16}, "m", CollectionConfig{Name: "docs", Paths: []string{docs}})
	ctx := t.Context()
	if _, err := s.Sync(ctx, "docs", nil); err != nil {
		t.Fatal(err)
	}
	c, _ := s.Collection("docs")
	done := make(chan error, 3)
	go func() { _, err := s.Reindex(ctx, "docs", nil); done <- err }()
	go func() { _, err := s.Sync(ctx, "docs", nil); done <- err }()
	go func() { _, err := s.Sync(ctx, "docs", nil); done <- err }()
	for i := 0; i < 50; i++ {
		if _, err := c.Search(ctx, Query{Text: "boiler pressure"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	ans, err := c.Search(ctx, Query{Text: "boiler pressure", Mode: ModeVector, TopK: 20})
	if err != nil || len(ans.Results) != 12 {
		t.Fatalf("after the reindex: %d vector results, %v; want all 12", len(ans.Results), err)
	}
}

// A collection made with `hearth rag create --path` stays bound to its folder when the agent
// restarts (its folders are in no config): it is still synced, not turned into uploads only.
func TestCreatedCollectionKeepsFoldersOverRestart(t *testing.T) {
	docs, dir := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(docs, "a.txt"), []byte("The boiler was serviced in March."), 0o644))
	emb := &ragtest.HashEmbedder{Dims: 32}
	s := openStore(t, dir, emb, "m")
	if _, err := s.Create(t.Context(), CollectionConfig{Name: "docs", Paths: []string{docs}, Include: []string{"*.txt"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(t.Context(), "docs", nil); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openStore(t, dir, emb, "m")
	c, err := s.Collection("docs")
	if err != nil {
		t.Fatal(err)
	}
	if info := c.Info(); !slices.Equal(info.Paths, []string{docs}) || !slices.Equal(info.Include, []string{"*.txt"}) {
		t.Fatalf("after a restart paths %q include %q, want [%s] [*.txt]", info.Paths, info.Include, docs)
	}
	must(t, os.WriteFile(filepath.Join(docs, "b.txt"), []byte("The chimney sweep comes in November."), 0o644))
	rep, err := s.Sync(t.Context(), "docs", nil)
	if err != nil || rep.Indexed != 1 || rep.Unchanged != 1 {
		t.Fatalf("sync after a restart: %+v, %v; want b.txt indexed, a.txt unchanged", rep, err)
	}
}

// Links and special files in a folder: a link to a file is indexed as that file; a dangling
// link, a link to a folder (which may loop) and a pipe are skipped with their reasons, never
// silently left out, and the pipe is never opened (reading it would block the sync forever).
func TestSyncLinksAndSpecialFiles(t *testing.T) {
	docs, elsewhere := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(elsewhere, "tax.md"), []byte("# Tax\n\nThe tax return is due on 31 July."), 0o644))
	must(t, os.Symlink(filepath.Join(elsewhere, "tax.md"), filepath.Join(docs, "tax-link.md")))
	must(t, os.Symlink("nowhere.pdf", filepath.Join(docs, "dangling.pdf")))
	must(t, os.Symlink(docs, filepath.Join(docs, "loop")))
	must(t, syscall.Mkfifo(filepath.Join(docs, "pipe.txt"), 0o644))
	s := openStore(t, t.TempDir(), &ragtest.HashEmbedder{Dims: 32}, "m", CollectionConfig{Name: "docs", Paths: []string{docs}})
	rep, err := s.Sync(t.Context(), "docs", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, it := range rep.Items {
		got[it.Source] = string(it.Outcome) + ": " + it.Reason
	}
	for src, want := range map[string]string{
		"tax-link.md":  "indexed: ",
		"dangling.pdf": "skipped: the link points to nowhere.pdf, which cannot be read",
		"loop":         "skipped: a link to a folder is not followed (it may loop): add the folder to the collection's paths",
		"pipe.txt":     "skipped: not a file but a pipe, socket or device",
	} {
		if !strings.HasPrefix(got[src], want) {
			t.Errorf("%s: %q, want %q", src, got[src], want)
		}
	}
	if rep.Files != 4 {
		t.Errorf("%d files, want 4: %+v", rep.Files, rep.Items)
	}
}

// gatedEmbedder embeds one batch, then holds every later call until gate closes.
type gatedEmbedder struct {
	HashEmbedder *ragtest.HashEmbedder
	first        chan struct{} // closed once the first batch is done
	gate         chan struct{}
	once         bool
}

func (g *gatedEmbedder) Embed(ctx context.Context, model string, texts []string) ([][]float32, error) {
	if g.once {
		select {
		case <-g.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	g.once = true
	defer func() {
		select {
		case <-g.first:
		default:
			close(g.first)
		}
	}()
	return g.HashEmbedder.Embed(ctx, model, texts)
}

// While a large file is embedded, Info says which file and how far (`hearth rag ls`), the
// embedding ticks carry the file's own count, and a second sync says it waits for the first
// and gives up when its client goes, instead of hanging silently for hours.
func TestSyncInProgressIsVisible(t *testing.T) {
	docs := t.TempDir()
	must(t, os.WriteFile(filepath.Join(docs, "big.txt"), []byte(strings.Repeat("The household ledger of many years. ", 300)), 0o644))
	emb := &gatedEmbedder{HashEmbedder: &ragtest.HashEmbedder{Dims: 32}, first: make(chan struct{}), gate: make(chan struct{})}
	s, err := Open(t.Context(), Config{Dir: t.TempDir(), EmbedModel: "m", MaxFileSize: 1 << 20,
		Chunk: ChunkOptions{Size: 400, Overlap: 60}, Embed: EmbedOptions{Batch: 4, Concurrency: 1},
		Collections: []CollectionConfig{{Name: "docs", Paths: []string{docs}}}}, emb, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	var ticks []Progress
	done := make(chan error, 1)
	go func() {
		_, err := s.Sync(t.Context(), "docs", func(p Progress) {
			if p.FileChunks > 0 {
				ticks = append(ticks, p)
			}
		})
		done <- err
	}()
	<-emb.first
	c, _ := s.Collection("docs")
	hearthtest.Eventually(t, "the first batch in Info", 5*time.Second, func() bool {
		cur := c.Info().Syncing
		return cur != nil && cur.FileEmbedded == 4
	})
	if cur := c.Info().Syncing; cur.File != "big.txt" || cur.Index != 1 || cur.Total != 1 || cur.FileChunks < 20 {
		t.Errorf("Info().Syncing = %+v, want big.txt, file 1 of 1, 4 of its 20+ chunks", cur)
	}

	ctx, cancel := context.WithCancel(t.Context())
	waiting := make(chan string, 1)
	second := make(chan error, 1)
	go func() {
		_, err := s.Sync(ctx, "docs", func(p Progress) { waiting <- p.Waiting })
		second <- err
	}()
	if w := <-waiting; !strings.HasPrefix(w, "another sync of this collection is running") {
		t.Errorf("waiting = %q", w)
	}
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Errorf("second sync after its client went: %v, want context.Canceled", err)
	}

	close(emb.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c.Info().Syncing != nil {
		t.Errorf("Info().Syncing = %+v after the sync ended, want nil", c.Info().Syncing)
	}
	if len(ticks) == 0 || ticks[len(ticks)-1].FileEmbedded != ticks[len(ticks)-1].FileChunks {
		t.Errorf("embedding ticks %+v, want the last to count every chunk of the file", ticks)
	}
}

// A change to how one format is read re-extracts only that format's documents: a CSV indexed
// by extractor version 1 is read again, a text file is not embedded again.
func TestFormatVersionReindexesOnlyItsFiles(t *testing.T) {
	docs := t.TempDir()
	must(t, os.WriteFile(filepath.Join(docs, "a.txt"), []byte("The boiler was serviced in March."), 0o644))
	must(t, os.WriteFile(filepath.Join(docs, "b.csv"), []byte("Datum;Posten;Betrag\n01.01.2026;Strom;84,20\n"), 0o644))
	s := openStore(t, t.TempDir(), &ragtest.HashEmbedder{Dims: 32}, "m", CollectionConfig{Name: "docs", Paths: []string{docs}})
	if _, err := s.Sync(t.Context(), "docs", nil); err != nil {
		t.Fatal(err)
	}
	c, _ := s.Collection("docs")
	c.mu.Lock()
	for _, d := range c.man.Docs {
		d.ExtractorVersion = 1 // as an agent before CSV's version 2 left them
	}
	c.mu.Unlock()
	rep, err := s.Sync(t.Context(), "docs", nil)
	if err != nil || rep.Indexed != 1 || rep.Unchanged != 1 || len(rep.Items) != 1 || rep.Items[0].Source != "b.csv" {
		t.Fatalf("sync after the CSV reader changed: %+v, %v; want b.csv indexed again, a.txt unchanged", rep, err)
	}
}
