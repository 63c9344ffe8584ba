package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

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
	// A folder or a pipe given to add fails at once with what to do; the pipe is not opened
	// (that blocks until something writes to it, past Ctrl-C).
	pipe := filepath.Join(t.TempDir(), "pipe.txt")
	if err := syscall.Mkfifo(pipe, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run("rag", "add", "nope", docs, pipe, "--agent", agent)
	if err == nil || !strings.Contains(out, "failed "+docs+": is a folder: `hearth rag create NAME --path DIR` indexes a folder") ||
		!strings.Contains(out, "failed "+pipe+": is not a file but a pipe, socket or device") {
		t.Errorf("rag add of a folder and a pipe: %v\n%s", err, out)
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

// A large file shows its own progress (a line per tenth without a terminal, its count in the
// bar on one), a sync waiting for another says so, and `rag ls` says how far a sync running
// in the agent is.
func TestProgressOfALargeFile(t *testing.T) {
	var b strings.Builder
	v := newProgressView(&b, false)
	v.update(rag.Progress{Waiting: "another sync of this collection is running"})
	for done := 0; done <= 1000; done += 50 {
		v.update(rag.Progress{File: "Haushaltsbuch groß.txt", Index: 1, Total: 2, FileEmbedded: done, FileChunks: 1000, Embedded: done})
	}
	v.update(rag.Progress{File: "Haushaltsbuch groß.txt", Index: 1, Total: 2, Outcome: rag.Indexed, Chunks: 1000, Embedded: 1000})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 11 || lines[0] != "another sync of this collection is running" ||
		lines[1] != "[1/2] embedding Haushaltsbuch groß.txt: 100 of 1000 chunks" || lines[10] != "[1/2] indexed Haushaltsbuch groß.txt (1000 chunks)" {
		t.Errorf("lines without a terminal:\n%s", b.String())
	}

	b.Reset()
	v = newProgressView(&b, true)
	v.update(rag.Progress{File: "家庭/网络说明-路由器-管理密码-无线网络名称-访客网络-每周一自动更换密码.pdf", Index: 1, Total: 2})
	v.update(rag.Progress{Index: 1, Total: 2, FileEmbedded: 40, FileChunks: 1000, Embedded: 40})
	v.finish() // draws what the 100 ms throttle held back
	if !strings.Contains(b.String(), "(40/1000)") || !utf8.ValidString(b.String()) {
		t.Errorf("bar = %q", b.String())
	}

	b.Reset()
	renderCollections(&b, []rag.Info{{Name: "docs", Paths: []string{"/docs"}, Syncing: &rag.Progress{File: "big.txt", Index: 2, Total: 30, FileEmbedded: 1200, FileChunks: 61000}}})
	if !strings.Contains(b.String(), "docs: syncing, file 2 of 30: big.txt, embedded 1200 of 61000 chunks\n") {
		t.Errorf("rag ls:\n%s", b.String())
	}
}
