package rag

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// ExtractorVersion changes whenever extraction or chunking would give different chunks for
// the same file; documents extracted by an older version are extracted again at the next sync.
const ExtractorVersion = 1

// formatVersions raise ExtractorVersion for one type whose reading changed, so that only its
// files are embedded again (a whole collection can be hours of embedding): CSV 2, which reads
// ';'- and tab-separated tables by their columns.
var formatVersions = map[string]int{".csv": 2}

// extractorVersion is the version a document named source is extracted by.
func extractorVersion(source string) int {
	if v, ok := formatVersions[strings.ToLower(filepath.Ext(source))]; ok {
		return v
	}
	return ExtractorVersion
}

// ErrUnreadable marks a file that is skipped: wrong format, damaged, encrypted, too big, empty.
// The wrapped message says why, for the ingest report.
var ErrUnreadable = errors.New("unreadable")

func unreadable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnreadable, fmt.Sprintf(format, args...))
}

// Section is a run of text under one heading path (and on one page, for PDFs).
type Section struct {
	// Heading is the path of headings above the text, outermost first.
	Heading []string `json:"heading,omitempty"`
	// Page is the 1-based page number (PDF), 0 when the format has no pages.
	Page int `json:"page,omitempty"`
	// Prefix is repeated at the start of every chunk cut from the section (a CSV header).
	Prefix string `json:"prefix,omitempty"`
	Text   string `json:"text"`
}

// Extracted is a document's text, by structure.
type Extracted struct {
	Title    string    `json:"title"`
	Sections []Section `json:"sections"`
}

// Extensions are the file types Extract reads.
var Extensions = []string{".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".csv"}

// Supported reports whether Extract reads files named like name.
func Supported(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	for _, e := range Extensions {
		if e == ext {
			return true
		}
	}
	return false
}

// Extractor turns file contents into sections.
type Extractor struct {
	// CSVRows is how many rows one CSV section holds (0: 20).
	CSVRows int
	// PDF, when set, reads PDFs with PDFium; nil reads them with the pure-Go parser
	// (github.com/ledongthuc/pdf), which is also the fallback when PDFium cannot start.
	PDF *pdfEngine
}

// Close stops the PDF engine, if one was started.
func (x *Extractor) Close() {
	if x.PDF != nil {
		x.PDF.close()
	}
}

// Extract reads data as the type its name says. Errors wrapping ErrUnreadable mean the file
// is to be skipped with that reason.
func (x *Extractor) Extract(name string, data []byte) (Extracted, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return Extracted{}, unreadable("the file is empty")
	}
	ext := strings.ToLower(filepath.Ext(name))
	title := strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	switch ext {
	case ".txt", ".md", ".markdown", ".html", ".htm", ".csv":
		data = decodeBOM(data)
	}
	var doc Extracted
	var err error
	switch ext {
	case ".txt":
		err = needText(data)
		doc = Extracted{Title: title, Sections: []Section{{Text: normalizeText(string(data))}}}
	case ".md", ".markdown":
		if err = needText(data); err == nil {
			doc = extractMarkdown(data)
		}
	case ".html", ".htm":
		if data, err = decodeHTML(data); err != nil {
			break
		}
		if err = needText(data); err == nil {
			doc, err = extractHTML(data)
		}
	case ".pdf":
		doc, err = x.extractPDF(data)
	case ".docx":
		doc, err = extractDOCX(data)
	case ".csv":
		if err = needText(data); err == nil {
			rows := x.CSVRows
			if rows <= 0 {
				rows = 20
			}
			doc, err = extractCSV(data, rows)
		}
	case "":
		return Extracted{}, unreadable("files without an extension are not read (supported: %s)", strings.Join(Extensions, " "))
	default:
		return Extracted{}, unreadable("%s files are not read (supported: %s)", ext, strings.Join(Extensions, " "))
	}
	if err != nil {
		return Extracted{}, err
	}
	if doc.Title == "" {
		doc.Title = title
	}
	doc.Sections = dropEmpty(doc.Sections)
	if len(doc.Sections) == 0 {
		return Extracted{}, unreadable("no text found in the file")
	}
	return doc, nil
}

// needText refuses binary data under a text name (a JPEG named notes.txt): NUL bytes or
// invalid UTF-8 in the first 8 KiB.
func needText(data []byte) error {
	head := data[:min(len(data), 8192)]
	if bytes.IndexByte(head, 0) >= 0 {
		return unreadable("the file holds binary data, not text (%s)", looksLike(data))
	}
	// A cut at the end of head may split a rune.
	for i := 0; i < 4 && len(head) > 0 && !utf8.Valid(head); i++ {
		head = head[:len(head)-1]
	}
	if !utf8.Valid(head) {
		if kind := sniff(data); kind != "" {
			return unreadable("the file is not text (%s)", kind)
		}
		return unreadable("the file is not UTF-8 text: it is probably in an older encoding (Windows-1252, Latin-1, Windows-1251, GBK, Shift-JIS); save it as UTF-8 to index it")
	}
	return nil
}

// sniff names what binary data looks like, for the skip reason ("" when it does not know).
func sniff(data []byte) string {
	switch {
	case bytes.HasPrefix(data, []byte("\xff\xd8\xff")):
		return "it looks like a JPEG image"
	case bytes.HasPrefix(data, []byte("\x89PNG")):
		return "it looks like a PNG image"
	case bytes.HasPrefix(data, []byte("PK\x03\x04")):
		return "it looks like a zip archive"
	case bytes.HasPrefix(data, []byte("%PDF")):
		return "it looks like a PDF"
	default:
		return ""
	}
}

// looksLike is sniff's answer, or "unknown binary data".
func looksLike(data []byte) string {
	if kind := sniff(data); kind != "" {
		return kind
	}
	return "unknown binary data"
}

func normalizeText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.TrimSpace(strings.ReplaceAll(s, "\r", "\n"))
}

func dropEmpty(secs []Section) []Section {
	out := secs[:0]
	for _, s := range secs {
		s.Text = strings.TrimSpace(s.Text)
		if s.Text != "" {
			out = append(out, s)
		}
	}
	return out
}
