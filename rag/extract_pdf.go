package rag

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/ledongthuc/pdf"
)

// maxPDFPages bounds the pages read from one PDF.
const maxPDFPages = 5000

// extractPDF reads a PDF's text page by page, keeping page numbers: with PDFium when the
// extractor has it and it starts, else with the pure-Go parser.
func (x *Extractor) extractPDF(data []byte) (Extracted, error) {
	if !bytes.HasPrefix(data, []byte("%PDF-")) {
		return Extracted{}, unreadable("the file is not a PDF (%s)", looksLike(data))
	}
	if x.PDF != nil {
		if err := x.PDF.start(); err == nil {
			return x.PDF.extract(data)
		}
	}
	return extractPDFGo(data)
}

// extractPDFGo reads a PDF with github.com/ledongthuc/pdf (pure Go, no start-up cost); it
// panics on some damaged files, which is caught here and reported as a damaged file.
func extractPDFGo(data []byte) (doc Extracted, err error) {
	defer func() {
		if p := recover(); p != nil {
			doc, err = Extracted{}, unreadable("the PDF is damaged: %v", p)
		}
	}()
	r, err := pdf.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return Extracted{}, pdfError(err)
	}
	n := r.NumPage()
	if n > maxPDFPages {
		return Extracted{}, unreadable("the PDF has %d pages, more than the %d read", n, maxPDFPages)
	}
	doc.Title = strings.TrimSpace(r.Trailer().Key("Info").Key("Title").Text())
	for i := 1; i <= n; i++ {
		p := r.Page(i)
		if p.V.IsNull() {
			continue
		}
		text, err := p.GetPlainText(nil)
		if err != nil {
			return Extracted{}, unreadable("the PDF's page %d cannot be read: %v", i, err)
		}
		doc.Sections = append(doc.Sections, Section{Page: i, Text: normalizeText(text)})
	}
	if len(dropEmpty(append([]Section(nil), doc.Sections...))) == 0 {
		return Extracted{}, unreadable("the PDF has no text layer (a scan? hearth does not run OCR)")
	}
	return doc, nil
}

func pdfError(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, pdf.ErrInvalidPassword), strings.Contains(msg, "encryption"):
		return unreadable("the PDF is password-protected or encrypted: save an unprotected copy to index it")
	case strings.HasPrefix(msg, "not a PDF"), strings.HasPrefix(msg, "malformed"):
		return unreadable("the PDF is damaged: %s", msg)
	default:
		return unreadable("the PDF cannot be read: %s", fmt.Sprint(msg))
	}
}
