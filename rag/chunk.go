package rag

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Chunk is one piece of a document as it is indexed and cited.
type Chunk struct {
	// ID is unique in the collection: the document's id, its content generation and the
	// position.
	ID string `json:"id"`
	// Source is the document's path relative to its collection root (or its upload name).
	Source  string   `json:"source"`
	Title   string   `json:"title"`
	Page    int      `json:"page,omitempty"`
	Heading []string `json:"heading,omitempty"`
	// Position is the chunk's index in its document, from 0.
	Position int    `json:"position"`
	Text     string `json:"text"`
}

// ChunkOptions size chunks, in characters (runes).
type ChunkOptions struct {
	Size    int
	Overlap int
}

// Split cuts a document into chunks along its structure: a chunk never spans two sections
// (headings, pages, CSV blocks); within a section paragraphs are packed up to Size, a longer
// paragraph is cut at sentence or word boundaries, and each chunk after the first of a section
// starts with the last Overlap characters of the one before it.
func Split(doc Extracted, o ChunkOptions) []Chunk {
	if o.Size <= 0 {
		o.Size = 1000
	}
	if o.Overlap < 0 || o.Overlap >= o.Size {
		o.Overlap = 0
	}
	var out []Chunk
	for _, sec := range doc.Sections {
		room := o.Size - utf8.RuneCountInString(sec.Prefix)
		if room < o.Size/2 {
			room = o.Size / 2
		}
		for _, piece := range pack(sec.Text, room, o.Overlap) {
			text := piece
			if sec.Prefix != "" {
				text = sec.Prefix + "\n" + piece
			}
			out = append(out, Chunk{Title: doc.Title, Page: sec.Page, Heading: sec.Heading, Position: len(out), Text: text})
		}
	}
	return out
}

// pack groups paragraphs into pieces of at most size runes, with overlap carried over.
func pack(text string, size, overlap int) []string {
	var units []string
	for _, p := range strings.Split(text, "\n\n") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if utf8.RuneCountInString(p) <= size {
			units = append(units, p)
			continue
		}
		units = append(units, cutLong(p, size-overlap)...)
	}
	var pieces []string
	var cur strings.Builder
	curLen := 0
	for _, u := range units {
		ul := utf8.RuneCountInString(u)
		if curLen > 0 && curLen+2+ul > size {
			piece := cur.String()
			pieces = append(pieces, piece)
			cur.Reset()
			curLen = 0
			if tail := tailOf(piece, overlap); tail != "" && utf8.RuneCountInString(tail)+2+ul <= size {
				cur.WriteString(tail)
				curLen = utf8.RuneCountInString(tail)
			}
		}
		if curLen > 0 {
			cur.WriteString("\n\n")
			curLen += 2
		}
		cur.WriteString(u)
		curLen += ul
	}
	if curLen > 0 {
		pieces = append(pieces, cur.String())
	}
	return pieces
}

// cutLong cuts a paragraph longer than size at the last sentence end, else the last space,
// else (CJK text without spaces) anywhere, in the second half of each window.
func cutLong(p string, size int) []string {
	if size < 16 {
		size = 16
	}
	var out []string
	rs := []rune(p)
	for len(rs) > size {
		cut := size
		best := -1
		for i := size; i > size/2; i-- {
			r := rs[i-1]
			if r == '.' || r == '!' || r == '?' || r == '。' || r == '！' || r == '？' || r == '\n' {
				best = i
				break
			}
		}
		if best < 0 {
			for i := size; i > size/2; i-- {
				if unicode.IsSpace(rs[i-1]) {
					best = i
					break
				}
			}
		}
		if best > 0 {
			cut = best
		}
		out = append(out, strings.TrimSpace(string(rs[:cut])))
		rs = rs[cut:]
	}
	if s := strings.TrimSpace(string(rs)); s != "" {
		out = append(out, s)
	}
	return out
}

// tailOf is the last n runes of s, starting at a word boundary when there is one.
func tailOf(s string, n int) string {
	if n <= 0 {
		return ""
	}
	rs := []rune(s)
	if len(rs) <= n {
		return ""
	}
	t := rs[len(rs)-n:]
	for i, r := range t[:len(t)/2] {
		if unicode.IsSpace(r) {
			return strings.TrimSpace(string(t[i+1:]))
		}
	}
	return strings.TrimSpace(string(t))
}
