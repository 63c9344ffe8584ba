package rag

import (
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/klippa-app/go-pdfium"
	pdfiumerr "github.com/klippa-app/go-pdfium/errors"
	"github.com/klippa-app/go-pdfium/requests"
	"github.com/klippa-app/go-pdfium/webassembly"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// pdfEngine is PDFium (the PDF engine of Chromium) compiled to WebAssembly and run in-process
// by wazero: pure Go, and better text than a Go parser on real-world PDFs (CID fonts, CJK,
// odd encodings). It starts on the first PDF; its compiled code is cached in CacheDir, so a
// start takes about 0.2 s after the first (which compiles for several seconds). One instance,
// one PDF at a time.
type pdfEngine struct {
	// CacheDir holds wazero's compilation cache ("" compiles at every start).
	CacheDir string
	Log      *slog.Logger

	once sync.Once
	err  error
	pool pdfium.Pool
	inst pdfium.Pdfium

	mu sync.Mutex // PDFium runs one call at a time
}

func (e *pdfEngine) start() error {
	e.once.Do(func() {
		began := time.Now()
		rc := wazero.NewRuntimeConfig().WithCoreFeatures(api.CoreFeaturesV2 | experimental.CoreFeaturesExceptionHandling)
		if e.CacheDir != "" {
			if cache, err := wazero.NewCompilationCacheWithDir(e.CacheDir); err == nil {
				rc = rc.WithCompilationCache(cache)
			}
		}
		e.pool, e.err = webassembly.Init(webassembly.Config{MinIdle: 1, MaxIdle: 1, MaxTotal: 1, RuntimeConfig: rc})
		if e.err == nil {
			e.inst, e.err = e.pool.GetInstance(2 * time.Minute)
		}
		if e.Log != nil {
			e.Log.Info("rag: PDF engine (PDFium, WebAssembly) started", "seconds", time.Since(began).Seconds(), "err", e.err)
		}
	})
	return e.err
}

// close stops the engine if it was started.
func (e *pdfEngine) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inst != nil {
		_ = e.inst.Close()
		e.inst = nil
	}
	if e.pool != nil {
		_ = e.pool.Close()
		e.pool = nil
	}
}

// extract reads a PDF's text page by page.
func (e *pdfEngine) extract(data []byte) (Extracted, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inst == nil {
		return Extracted{}, errors.New("rag: the PDF engine is closed")
	}
	doc, err := e.inst.OpenDocument(&requests.OpenDocument{File: &data})
	switch {
	case errors.Is(err, pdfiumerr.ErrPassword), errors.Is(err, pdfiumerr.ErrSecurity):
		return Extracted{}, unreadable("the PDF is password-protected or encrypted: save an unprotected copy to index it")
	case err != nil:
		return Extracted{}, unreadable("the PDF is damaged: %s", strings.TrimLeft(err.Error(), "0123456789: "))
	}
	defer e.inst.FPDF_CloseDocument(&requests.FPDF_CloseDocument{Document: doc.Document})
	count, err := e.inst.FPDF_GetPageCount(&requests.FPDF_GetPageCount{Document: doc.Document})
	if err != nil {
		return Extracted{}, unreadable("the PDF is damaged: %v", err)
	}
	if count.PageCount > maxPDFPages {
		return Extracted{}, unreadable("the PDF has %d pages, more than the %d read", count.PageCount, maxPDFPages)
	}
	var out Extracted
	if t, err := e.inst.FPDF_GetMetaText(&requests.FPDF_GetMetaText{Document: doc.Document, Tag: "Title"}); err == nil {
		out.Title = strings.TrimSpace(t.Value)
	}
	for i := 0; i < count.PageCount; i++ {
		txt, err := e.inst.GetPageText(&requests.GetPageText{Page: requests.Page{ByIndex: &requests.PageByIndex{Document: doc.Document, Index: i}}})
		if err != nil {
			return Extracted{}, unreadable("the PDF's page %d cannot be read: %v", i+1, err)
		}
		out.Sections = append(out.Sections, Section{Page: i + 1, Text: normalizeText(txt.Text)})
	}
	if len(dropEmpty(append([]Section(nil), out.Sections...))) == 0 {
		return Extracted{}, unreadable("the PDF has no text layer (a scan? hearth does not run OCR)")
	}
	return out, nil
}
