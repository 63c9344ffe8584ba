package rag

import (
	"archive/zip"
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
)

// Limits against zip bombs: a .docx's document.xml may unpack to at most maxDocxXML bytes,
// and no more than maxDocxRatio times its compressed size (real documents stay under 20).
const (
	maxDocxXML   = 64 << 20
	maxDocxRatio = 200
)

// extractDOCX reads a Word document's paragraphs, with its Heading/Title styles as the
// heading path, from word/document.xml (archive/zip and encoding/xml: the format needs no
// more).
func extractDOCX(data []byte) (Extracted, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return Extracted{}, unreadable("the file is not a Word document (%s)", looksLike(data))
	}
	var body *zip.File
	for _, f := range zr.File {
		if f.Name == "word/document.xml" {
			body = f
		}
	}
	if body == nil {
		return Extracted{}, unreadable("the zip file has no word/document.xml: not a Word document")
	}
	if body.UncompressedSize64 > maxDocxXML || body.CompressedSize64 > 0 && body.UncompressedSize64/body.CompressedSize64 > maxDocxRatio {
		return Extracted{}, unreadable("the Word document unpacks to %d bytes from %d (a zip bomb?): not read", body.UncompressedSize64, body.CompressedSize64)
	}
	rc, err := body.Open()
	if err != nil {
		return Extracted{}, unreadable("the Word document is damaged: %v", err)
	}
	defer rc.Close()
	// The sizes in the zip directory may lie: read no further than the limit.
	lim := &io.LimitedReader{R: rc, N: int64(min(maxDocxXML, max(body.CompressedSize64, 1)*maxDocxRatio)) + 1}
	doc, err := parseDocxXML(lim)
	if lim.N <= 0 {
		return Extracted{}, unreadable("the Word document unpacks to more than its directory says (a zip bomb?): not read")
	}
	if err != nil {
		return Extracted{}, unreadable("the Word document is damaged: %v", err)
	}
	return doc, nil
}

// parseDocxXML walks WordprocessingML: paragraphs (w:p) of runs (w:t text, w:tab, w:br), each
// styled by w:pStyle; Heading1..9 and Title start a section.
func parseDocxXML(r io.Reader) (Extracted, error) {
	dec := xml.NewDecoder(r)
	var doc Extracted
	var path []string
	var levels []int
	cur := Section{}
	var para strings.Builder
	style := ""
	inText := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Extracted{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "p":
				para.Reset()
				style = ""
			case "pStyle":
				for _, a := range t.Attr {
					if a.Name.Local == "val" {
						style = a.Value
					}
				}
			case "t":
				inText = true
			case "tab":
				para.WriteByte('\t')
			case "br", "cr":
				para.WriteByte('\n')
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "t":
				inText = false
			case "p":
				text := strings.TrimSpace(para.String())
				if text == "" {
					continue
				}
				if level := headingLevel(style); level > 0 {
					if strings.TrimSpace(cur.Text) != "" {
						doc.Sections = append(doc.Sections, cur)
					}
					for len(levels) > 0 && levels[len(levels)-1] >= level {
						levels, path = levels[:len(levels)-1], path[:len(path)-1]
					}
					levels, path = append(levels, level), append(path, text)
					if doc.Title == "" && (level == 1 || strings.EqualFold(style, "title")) {
						doc.Title = text
					}
					cur = Section{Heading: append([]string(nil), path...)}
					continue
				}
				if cur.Text != "" {
					cur.Text += "\n\n"
				}
				cur.Text += text
			}
		case xml.CharData:
			if inText {
				para.Write(t)
			}
		}
	}
	if strings.TrimSpace(cur.Text) != "" {
		doc.Sections = append(doc.Sections, cur)
	}
	return doc, nil
}

// headingLevel is 1..9 for Word's heading styles ("Heading1", "heading 2", "Title" = 1), 0
// for body text.
func headingLevel(style string) int {
	s := strings.ToLower(strings.ReplaceAll(style, " ", ""))
	if s == "title" {
		return 1
	}
	if rest, ok := strings.CutPrefix(s, "heading"); ok && len(rest) == 1 && rest[0] >= '1' && rest[0] <= '9' {
		return int(rest[0] - '0')
	}
	return 0
}
