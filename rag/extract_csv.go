package rag

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// extractCSV groups a table's rows in blocks of rows; each row reads "column: value | ...",
// and every block (and every chunk cut from it) starts with the header, so that a chunk still
// says what its numbers are.
func extractCSV(data []byte, rowsPerBlock int) (Extracted, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.Comma = csvDelimiter(data)
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	r.ReuseRecord = false
	header, err := r.Read()
	if err != nil {
		return Extracted{}, unreadable("the CSV header cannot be read: %v", err)
	}
	for i := range header {
		header[i] = strings.TrimSpace(strings.TrimPrefix(header[i], "\ufeff"))
	}
	prefix := "Columns: " + strings.Join(header, ", ")
	var doc Extracted
	var block strings.Builder
	first, line := 2, 1
	n := 0
	flush := func() {
		if n > 0 {
			doc.Sections = append(doc.Sections, Section{Heading: []string{fmt.Sprintf("rows %d-%d", first, line)}, Prefix: prefix, Text: block.String()})
		}
		block.Reset()
		n = 0
		first = line + 1
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Extracted{}, unreadable("the CSV is malformed: %v", err)
		}
		line++
		var row []string
		for i, v := range rec {
			v = strings.TrimSpace(v)
			if v == "" {
				continue
			}
			if i < len(header) && header[i] != "" {
				row = append(row, header[i]+": "+v)
			} else {
				row = append(row, v)
			}
		}
		if len(row) == 0 {
			continue
		}
		block.WriteString(strings.Join(row, " | "))
		block.WriteString("\n")
		if n++; n == rowsPerBlock {
			flush()
		}
	}
	flush()
	return doc, nil
}

// csvDelimiter picks the separator the header line uses most: ',' by default, ';' as Excel
// writes CSV where the decimal mark is a comma (Germany, France, Russia...), or a tab.
func csvDelimiter(data []byte) rune {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	best, most := ',', 0
	quoted := false
	counts := map[rune]int{}
	for _, r := range string(line) {
		switch {
		case r == '"':
			quoted = !quoted
		case !quoted && (r == ',' || r == ';' || r == '\t'):
			counts[r]++
		}
	}
	for _, r := range []rune{',', ';', '\t'} {
		if counts[r] > most {
			best, most = r, counts[r]
		}
	}
	return best
}
