package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hearthlab/hearth/rag"
)

// progressView shows an ingest: a bar redrawn in place on a terminal (files, chunks,
// embeddings/s, ETA), one line per file otherwise.
type progressView struct {
	w        io.Writer
	tty      bool
	start    time.Time
	last     rag.Progress
	drawn    bool
	lastDraw time.Time
}

func newProgressView(w io.Writer, tty bool) *progressView {
	return &progressView{w: w, tty: tty, start: time.Now()}
}

func (v *progressView) update(p rag.Progress) {
	if p.Total > 0 {
		v.last.Total = p.Total
	}
	if p.Index > v.last.Index {
		v.last.Index = p.Index
	}
	if p.Embedded > v.last.Embedded {
		v.last.Embedded = p.Embedded
	}
	if p.File != "" {
		v.last.File = p.File
	}
	if !v.tty {
		if p.Outcome != "" {
			line := fmt.Sprintf("[%d/%d] %s %s", p.Index, p.Total, p.Outcome, p.File)
			if p.Chunks > 0 && p.Outcome == rag.Indexed {
				line += fmt.Sprintf(" (%d chunks)", p.Chunks)
			}
			if p.Reason != "" {
				line += ": " + p.Reason
			}
			fmt.Fprintln(v.w, line)
		}
		return
	}
	if p.Outcome == "" && time.Since(v.lastDraw) < 100*time.Millisecond {
		return
	}
	v.draw()
}

func (v *progressView) draw() {
	v.lastDraw = time.Now()
	const width = 24
	done := 0
	if v.last.Total > 0 {
		done = width * v.last.Index / v.last.Total
	}
	elapsed := time.Since(v.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(v.last.Embedded) / elapsed
	}
	eta := "?"
	if v.last.Index > 0 && v.last.Total >= v.last.Index {
		left := time.Duration(elapsed / float64(v.last.Index) * float64(v.last.Total-v.last.Index) * float64(time.Second))
		eta = left.Round(time.Second).String()
	}
	file := v.last.File
	if len(file) > 30 {
		file = "…" + file[len(file)-29:]
	}
	fmt.Fprintf(v.w, "\r\033[K[%s%s] %d/%d files  %d chunks  %.1f emb/s  ETA %s  %s",
		strings.Repeat("#", done), strings.Repeat(".", width-done), v.last.Index, v.last.Total, v.last.Embedded, rate, eta, file)
	v.drawn = true
}

func (v *progressView) finish() {
	if v.tty && v.drawn {
		v.draw()
		fmt.Fprintln(v.w)
	}
}
