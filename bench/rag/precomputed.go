package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// vectorsFile is the name, inside a dataset's folder, of the vectors `make rag-embeddings`
// computes with a real model (bench/rag/realembed) for the texts of `-dump-texts`.
const vectorsFile = "vectors-use-lite.jsonl"

// precomputedHeader is the first line of a vectors file.
type precomputedHeader struct {
	Model    string `json:"model"`
	Package  string `json:"package"`
	License  string `json:"license"`
	Dims     int    `json:"dims"`
	Count    int    `json:"count"`
	Encoding string `json:"encoding"`
}

// precomputedLine is one text's vector: int8 codes (base64) times scale, keyed by the
// sha256 of the text's UTF-8 bytes.
type precomputedLine struct {
	SHA256 string  `json:"sha256"`
	Scale  float32 `json:"scale"`
	Int8   string  `json:"int8"`
}

// Precomputed is a rag.Embedder that serves the vectors a real model computed ahead of time,
// so that quality with that model is measured without the model (nor npm) at hand. A text
// it has no vector for is an error: the file is stale.
type Precomputed struct {
	Path   string
	Header precomputedHeader
	vecs   map[[sha256.Size]byte][]float32
}

// loadPrecomputed reads a vectors file written by bench/rag/realembed/embed.mjs.
func loadPrecomputed(path string) (*Precomputed, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p := &Precomputed{Path: path, vecs: map[[sha256.Size]byte][]float32{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if n == 1 {
			if err := json.Unmarshal(sc.Bytes(), &p.Header); err != nil || p.Header.Dims <= 0 {
				return nil, fmt.Errorf("%s line 1: want a header with the model and its dims (%v)", path, err)
			}
			continue
		}
		var l precomputedLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		key, err := hex.DecodeString(l.SHA256)
		if err != nil || len(key) != sha256.Size {
			return nil, fmt.Errorf("%s line %d: sha256 %q is not 64 hex digits", path, n, l.SHA256)
		}
		codes, err := base64.StdEncoding.DecodeString(l.Int8)
		if err != nil || len(codes) != p.Header.Dims {
			return nil, fmt.Errorf("%s line %d: want %d int8 codes in base64 (%v)", path, n, p.Header.Dims, err)
		}
		v := make([]float32, len(codes))
		for i, c := range codes {
			v[i] = float32(int8(c)) * l.Scale
		}
		p.vecs[[sha256.Size]byte(key)] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(p.vecs) != p.Header.Count {
		return nil, fmt.Errorf("%s: %d vectors, the header says %d", path, len(p.vecs), p.Header.Count)
	}
	return p, nil
}

// Name says which model made the vectors, for the tables.
func (p *Precomputed) Name() string {
	return fmt.Sprintf("%s (%s, %d dims, real model, precomputed in %s)", p.Header.Model, p.Header.Package, p.Header.Dims, p.Path)
}

// Embed implements rag.Embedder from the file; model is not looked at (the file has one).
func (p *Precomputed) Embed(ctx context.Context, _ string, texts []string) ([][]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		v, ok := p.vecs[sha256.Sum256([]byte(t))]
		if !ok {
			return nil, fmt.Errorf("bench/rag: %s has no vector for %q: the dataset changed since the vectors were made; run `make rag-embeddings`", p.Path, abbreviate(t, 60))
		}
		out[i] = append([]float32(nil), v...)
	}
	return out, nil
}

func abbreviate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return strings.TrimSpace(s)
}

// dumpTexts writes the texts the quality run embeds, one JSON string a line, for embed.mjs.
func dumpTexts(path string, ds dataset) error {
	var b strings.Builder
	for _, t := range embeddedTexts(ds) {
		j, err := json.Marshal(t)
		if err != nil {
			return err
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
