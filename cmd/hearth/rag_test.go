package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/hearthlab/hearth/rag"
	"github.com/hearthlab/hearth/rag/ragtest"
)

// cannedChat answers every chat with a fixed text citing source 1.
type cannedChat struct{}

func (cannedChat) Chat(_ context.Context, _ string, _ []rag.Message, _ map[string]any, onToken func(string) error) (rag.ChatStats, error) {
	for _, t := range []string{"The key is ", "under the blue pot [1]."} {
		if err := onToken(t); err != nil {
			return rag.ChatStats{}, err
		}
	}
	return rag.ChatStats{}, nil
}

func (cannedChat) ContextLength(context.Context, string) (int, error) { return 0, nil }

// ragAgent serves the real RAG API over a store with a deterministic embedder.
func ragAgent(t *testing.T) string {
	t.Helper()
	store, err := rag.Open(t.Context(), rag.Config{Dir: t.TempDir(), EmbedModel: "m", MaxFileSize: 1 << 20,
		Chunk: rag.ChunkOptions{Size: 500, Overlap: 50}}, &ragtest.HashEmbedder{Dims: 32}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	api := &rag.API{Store: store, Answerer: &rag.Answerer{Store: store, Chat: cannedChat{}, Model: "tiny", NumCtx: 4096, TopK: 4}}
	r := chi.NewRouter()
	r.Mount("/rag/v1", api.Handler())
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestRagCommands(t *testing.T) {
	agent := ragAgent(t)
	docs := t.TempDir()
	os.WriteFile(filepath.Join(docs, "house.md"), []byte("# House\n\nThe spare key is under the blue pot."), 0o644)
	os.WriteFile(filepath.Join(docs, "photo.pdf"), []byte("\xff\xd8\xff\xe0 not a pdf"), 0o644)
	extra := filepath.Join(t.TempDir(), "wifi.txt")
	os.WriteFile(extra, []byte("The wifi password is on the router's label."), 0o644)

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"rag", "ls"}, []string{"no collections yet"}},
		{[]string{"rag", "create", "docs", "--path", docs}, []string{
			"created collection docs: chat with it as model rag:docs",
			"[1/2] indexed house.md (1 chunks)",
			"[2/2] skipped photo.pdf: the file is not a PDF (it looks like a JPEG image)",
			"docs: 2 files: 1 indexed (1 chunks), 0 unchanged, 1 skipped, 0 removed, 0 failed",
		}},
		{[]string{"rag", "add", "docs", extra}, []string{"[1/1] indexed " + extra + " (1 chunks)"}},
		{[]string{"rag", "sync", "docs"}, []string{"docs: 2 files: 0 indexed (0 chunks), 1 unchanged, 1 skipped"}},
		{[]string{"rag", "ls"}, []string{"docs", "rag:docs", docs}},
		{[]string{"rag", "query", "docs", "spare key", "--mode", "keyword"}, []string{"1. House (house.md), House  (keyword score"}},
		{[]string{"rag", "query", "docs", "wifi", "--json"}, []string{`"source": "upload/wifi.txt"`}},
		{[]string{"rag", "chat", "docs", "where is the key?"}, []string{"The key is under the blue pot [1].", "Sources:\n[1] House (house.md)"}},
		{[]string{"rag", "reindex", "docs"}, []string{"docs: 2 files: 2 indexed"}},
		{[]string{"rag", "rm", "docs"}, []string{"deleted collection docs"}},
	} {
		out, err := run(append(tc.args, "--agent", agent)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", tc.args, err, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", tc.args, w, out)
			}
		}
	}
	if _, err := run("rag", "query", "nope", "x", "--agent", agent); err == nil || !strings.Contains(err.Error(), `no such collection: "nope"`) {
		t.Errorf("unknown collection: %v", err)
	}
}

func TestProgressBarOnATerminal(t *testing.T) {
	var b strings.Builder
	v := newProgressView(&b, true)
	v.update(rag.Progress{File: "a.pdf", Index: 1, Total: 4, Outcome: rag.Indexed, Chunks: 3, Embedded: 3})
	v.update(rag.Progress{File: "b.pdf", Index: 2, Total: 4, Outcome: rag.Indexed, Chunks: 3, Embedded: 6})
	v.finish()
	if !strings.Contains(b.String(), "\r\033[K[############............] 2/4 files  6 chunks") || !strings.HasSuffix(b.String(), "\n") {
		t.Errorf("bar = %q", b.String())
	}
}
