package config

import (
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Rag is question answering over home documents (the rag package): collections of
// documents, each usually bound to a folder, searched by keywords and vectors, and the virtual
// models rag:<collection> that answer from them.
type Rag struct {
	// Dir holds each collection's indexes, extracted text and manifest. Default "" =
	// <node.data_dir>/rag.
	Dir string `yaml:"dir"`
	// EmbedModel makes the vectors; any node of the cluster that has it serves it. Changing it
	// marks collections as needing `hearth rag reindex`. Default "nomic-embed-text".
	EmbedModel string `yaml:"embed_model"`
	// ChatModel writes the answers of rag:<collection>. Default "qwen3:8b".
	ChatModel string `yaml:"chat_model"`
	// NumCtx is the context window asked of the chat model, in tokens (Ollama's num_ctx),
	// capped by the model's own; retrieved sources are fitted into it. Default 8192.
	NumCtx int `yaml:"num_ctx"`
	// TopK is how many chunks a chat retrieves before fitting them into the window. Default 6.
	TopK int `yaml:"top_k"`
	// MaxFileSize is the largest file indexed; larger ones are skipped with the reason.
	// Default "100MiB".
	MaxFileSize ByteSize `yaml:"max_file_size"`
	// ChunkSize is a chunk's length in characters. Default 1000.
	ChunkSize int `yaml:"chunk_size"`
	// ChunkOverlap is how many characters a chunk repeats from the one before. Default 150.
	ChunkOverlap int `yaml:"chunk_overlap"`
	// PDFEngine reads PDFs: "pdfium" (PDFium compiled to WebAssembly, in-process: the best
	// text, CJK included; its first start compiles for several seconds, later ones take
	// about 0.2 s) or "go" (a light pure-Go parser). Default "pdfium".
	PDFEngine string `yaml:"pdf_engine"`
	// EmbedBatch is how many chunks one /api/embed call carries. Default 32.
	EmbedBatch int `yaml:"embed_batch"`
	// EmbedConcurrency is how many /api/embed calls run at once. Default 2.
	EmbedConcurrency int `yaml:"embed_concurrency"`
	// RescanInterval is how often folders are checked for new, changed and deleted files;
	// 0 = only at start and on `hearth rag sync`. Default 10m.
	RescanInterval time.Duration `yaml:"rescan_interval"`
	// Watch syncs a folder a couple of seconds after a file in it changes (inotify). Changes
	// made on another machine of an NFS or SMB share are not seen: rescans find those.
	// Default true.
	Watch bool `yaml:"watch"`
	// Collections are bound to folders on this node; more can be made by API or CLI.
	Collections []RagCollection `yaml:"collections"`
}

// RagCollection is one collection bound to folders.
type RagCollection struct {
	// Name is used in rag:<name>: lower-case letters, digits, '.', '_', '-'. Required.
	Name string `yaml:"name"`
	// Paths are absolute folders indexed with everything under them. Required.
	Paths []string `yaml:"paths"`
	// Include are globs of files to index ("*.pdf", "notes/**"). Default: every supported type.
	Include []string `yaml:"include"`
	// Exclude are globs of files to leave out ("**/tmp/**"). Default none.
	Exclude []string `yaml:"exclude"`
	// ChunkSize and ChunkOverlap override rag.chunk_size and rag.chunk_overlap. Default 0 =
	// the rag section's.
	ChunkSize    int `yaml:"chunk_size"`
	ChunkOverlap int `yaml:"chunk_overlap"`
}

// DirFor is rag.dir, or <dataDir>/rag when it is not set.
func (r Rag) DirFor(dataDir string) string {
	if r.Dir != "" {
		return r.Dir
	}
	return filepath.Join(dataDir, "rag")
}

func defaultRag() Rag {
	return Rag{EmbedModel: "nomic-embed-text", ChatModel: "qwen3:8b", NumCtx: 8192, TopK: 6, MaxFileSize: 100 << 20,
		ChunkSize: 1000, ChunkOverlap: 150, PDFEngine: "pdfium", EmbedBatch: 32, EmbedConcurrency: 2, RescanInterval: 10 * time.Minute, Watch: true}
}

var ragNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

func (c *Agent) validateRag(add func(string, ...any)) {
	r := c.Rag
	if strings.TrimSpace(r.EmbedModel) == "" {
		add("rag.embed_model is empty: name an embedding model such as \"nomic-embed-text\"")
	}
	if strings.TrimSpace(r.ChatModel) == "" {
		add("rag.chat_model is empty: name the model that writes answers, such as \"qwen3:8b\"")
	}
	if r.NumCtx < 512 {
		add("rag.num_ctx %d is too small: sources and the answer must fit; use at least 512 tokens", r.NumCtx)
	}
	if r.TopK < 1 || r.TopK > 100 {
		add("rag.top_k %d: use between 1 and 100", r.TopK)
	}
	if r.MaxFileSize < 1024 {
		add("rag.max_file_size %s is too small: use at least \"1KiB\"", r.MaxFileSize)
	}
	checkChunk := func(key string, size, overlap int) {
		if size < 100 || size > 20000 {
			add("%s.chunk_size %d: use between 100 and 20000 characters", key, size)
		} else if overlap < 0 || overlap > size/2 {
			add("%s.chunk_overlap %d: use between 0 and half the chunk size (%d)", key, overlap, size/2)
		}
	}
	checkChunk("rag", r.ChunkSize, r.ChunkOverlap)
	if r.PDFEngine != "pdfium" && r.PDFEngine != "go" {
		add("rag.pdf_engine %q: use \"pdfium\" or \"go\"", r.PDFEngine)
	}
	if r.EmbedBatch < 1 || r.EmbedBatch > 512 {
		add("rag.embed_batch %d: use between 1 and 512", r.EmbedBatch)
	}
	if r.EmbedConcurrency < 1 || r.EmbedConcurrency > 64 {
		add("rag.embed_concurrency %d: use between 1 and 64", r.EmbedConcurrency)
	}
	if r.RescanInterval < 0 {
		add("rag.rescan_interval must be 0 (no rescans) or more (got %s)", r.RescanInterval)
	}
	seen := map[string]bool{}
	for i, col := range r.Collections {
		key := "rag.collections[" + itoa(i) + "]"
		if !ragNameRE.MatchString(col.Name) {
			add("%s.name %q: use 1-63 lower-case letters, digits, '.', '_' or '-'", key, col.Name)
		} else if seen[col.Name] {
			add("%s.name %q is used twice", key, col.Name)
		}
		seen[col.Name] = true
		if len(col.Paths) == 0 {
			add("%s.paths is empty: give the folders to index", key)
		}
		for j, p := range col.Paths {
			if !filepath.IsAbs(p) {
				add("%s.paths[%d] %q: give an absolute folder", key, j, p)
			}
		}
		for _, g := range append(append([]string(nil), col.Include...), col.Exclude...) {
			if _, err := path.Match(strings.ReplaceAll(g, "**", "*"), ""); err != nil || g == "" {
				add("%s: pattern %q is not a glob such as \"*.pdf\" or \"**/tmp/**\"", key, g)
			}
		}
		if col.ChunkSize != 0 || col.ChunkOverlap != 0 {
			size := col.ChunkSize
			if size == 0 {
				size = r.ChunkSize
			}
			checkChunk(key, size, col.ChunkOverlap)
		}
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
