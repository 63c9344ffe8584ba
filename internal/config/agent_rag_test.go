package config

import (
	"path/filepath"
	"testing"
	"time"
)

func TestRagGood(t *testing.T) {
	def := DefaultAgent()
	if def.Rag.DirFor(def.Node.DataDir) != filepath.Join(def.Node.DataDir, "rag") || def.Rag.EmbedModel != "nomic-embed-text" ||
		def.Rag.NumCtx != 8192 || def.Rag.MaxFileSize != 100<<20 || def.Rag.RescanInterval != 10*time.Minute {
		t.Errorf("defaults: %+v", def.Rag)
	}
	c, err := LoadAgent("testdata/rag.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Rag
	if r.DirFor(c.Node.DataDir) != "/srv/hearth/rag" || r.EmbedModel != "bge-m3" || r.ChatModel != "qwen3:14b" ||
		r.MaxFileSize != 20<<20 || r.RescanInterval != 0 || r.PDFEngine != "go" || r.ChunkSize != 1000 || len(r.Collections) != 2 ||
		r.Collections[0].Exclude[0] != "**/tmp/**" || r.Collections[1].ChunkSize != 500 {
		t.Errorf("got %+v", r)
	}
}

func TestRagExampleConfig(t *testing.T) {
	t.Setenv("HEARTH_LAN_KEY", "example-lan-key-0123456789")
	t.Setenv("HEARTH_CLUSTER_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	t.Setenv("HEARTH_TUNNEL_TOKEN", "tunnel-0123456789abcdef")
	c, err := LoadAgent("../../configs/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def := DefaultAgent().Rag
	r := c.Rag
	if r.EmbedModel != def.EmbedModel || r.ChatModel != def.ChatModel || r.NumCtx != def.NumCtx || r.MaxFileSize != def.MaxFileSize ||
		r.ChunkSize != def.ChunkSize || r.RescanInterval != def.RescanInterval || r.PDFEngine != "pdfium" || len(r.Collections) != 1 || r.Collections[0].Name != "docs" {
		t.Errorf("configs/agent.yaml rag section does not show the defaults: %+v", r)
	}
}

func TestRagBad(t *testing.T) {
	for file, want := range map[string]string{
		"rag": `testdata/rag.bad.yaml: 8 problems:
  rag.embed_model is empty: name an embedding model such as "nomic-embed-text"
  rag.num_ctx 100 is too small: sources and the answer must fit; use at least 512 tokens
  rag.chunk_overlap 900: use between 0 and half the chunk size (500)
  rag.collections[0].name "Docs": use 1-63 lower-case letters, digits, '.', '_' or '-'
  rag.collections[0].paths[0] "documents": give an absolute folder
  rag.collections[1].paths is empty: give the folders to index
  rag.collections[1]: pattern "[a-" is not a glob such as "*.pdf" or "**/tmp/**"
  rag.collections[2].name "docs" is used twice`,
		"rag-size": `testdata/rag-size.bad.yaml:2: "huge" is not a size such as "32MiB" or "1GB"`,
	} {
		_, err := LoadAgent("testdata/" + file + ".bad.yaml")
		if err == nil || err.Error() != want {
			t.Errorf("%s:\n got: %v\nwant: %s", file, err, want)
		}
	}
}
