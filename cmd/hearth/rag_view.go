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
	tenth    int // of the current file's chunks embedded, for the line per tenth
}

// line writes a message on a line of its own, below the bar on a terminal.
func (v *progressView) line(msg string) {
	if v.tty && v.drawn {
		fmt.Fprint(v.w, "\r\033[K")
	}
	fmt.Fprintln(v.w, msg)
	if v.tty && v.drawn {
		v.draw()
	}
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
	if p.Waiting != "" {
		v.line(p.Waiting)
		return
	}
	v.last.FileEmbedded, v.last.FileChunks = p.FileEmbedded, p.FileChunks
	if !v.tty && p.FileChunks > 0 {
		// A large file is minutes to hours of embedding: a line at each tenth of it.
		if tenth := 10 * p.FileEmbedded / p.FileChunks; tenth > v.tenth && tenth < 10 {
			v.tenth = tenth
			fmt.Fprintf(v.w, "[%d/%d] embedding %s: %d of %d chunks\n", v.last.Index, v.last.Total, v.last.File, p.FileEmbedded, p.FileChunks)
		}
		return
	}
	if p.Outcome != "" {
		v.tenth = 0
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
	if r := []rune(file); len(r) > 30 {
		file = "…" + string(r[len(r)-29:])
	}
	if v.last.FileChunks > 0 {
		file += fmt.Sprintf(" (%d/%d)", v.last.FileEmbedded, v.last.FileChunks)
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
