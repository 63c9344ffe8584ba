package rag

import (
	"strings"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/text"
)

// extractMarkdown splits Markdown at its headings (goldmark's parse, so that a "#" inside a
// code block is no heading); each block's source text is kept as written.
func extractMarkdown(src []byte) Extracted {
	root := goldmark.New().Parser().Parse(text.NewReader(src))
	var doc Extracted
	var path []string
	levels := []int{}
	cur := &Section{}
	flush := func() {
		if strings.TrimSpace(cur.Text) != "" {
			doc.Sections = append(doc.Sections, *cur)
		}
		cur = &Section{Heading: append([]string(nil), path...)}
	}
	for n := root.FirstChild(); n != nil; n = n.NextSibling() {
		if h, ok := n.(*ast.Heading); ok {
			flush()
			title := strings.TrimSpace(inlineText(h, src))
			for len(levels) > 0 && levels[len(levels)-1] >= h.Level {
				levels = levels[:len(levels)-1]
				path = path[:len(path)-1]
			}
			levels = append(levels, h.Level)
			path = append(path, title)
			if h.Level == 1 && doc.Title == "" {
				doc.Title = title
			}
			cur.Heading = append([]string(nil), path...)
			continue
		}
		if block := blockSource(n, src); block != "" {
			if cur.Text != "" {
				cur.Text += "\n\n"
			}
			cur.Text += block
		}
	}
	flush()
	return doc
}

// blockSource is the source text a block spans, from its first line to its last.
func blockSource(n ast.Node, src []byte) string {
	start, stop := -1, -1
	_ = ast.Walk(n, func(c ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering || c.Type() != ast.TypeBlock {
			return ast.WalkContinue, nil
		}
		lines := c.Lines()
		for i := 0; i < lines.Len(); i++ {
			seg := lines.At(i)
			if start < 0 || seg.Start < start {
				start = seg.Start
			}
			if seg.Stop > stop {
				stop = seg.Stop
			}
		}
		return ast.WalkContinue, nil
	})
	if start < 0 || stop <= start {
		return ""
	}
	return strings.TrimSpace(string(src[start:stop]))
}

// inlineText is the plain text of an inline container (a heading's words without markup).
func inlineText(n ast.Node, src []byte) string {
	var b strings.Builder
	_ = ast.Walk(n, func(c ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch t := c.(type) {
		case *ast.Text:
			b.Write(t.Segment.Value(src))
			if t.SoftLineBreak() || t.HardLineBreak() {
				b.WriteByte(' ')
			}
		case *ast.String:
			b.Write(t.Value)
		case *ast.CodeSpan:
			for cc := t.FirstChild(); cc != nil; cc = cc.NextSibling() {
				if tx, ok := cc.(*ast.Text); ok {
					b.Write(tx.Segment.Value(src))
				}
			}
			return ast.WalkSkipChildren, nil
		}
		return ast.WalkContinue, nil
	})
	return b.String()
}
