package rag

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearthlab/hearth/rag/ragtest"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExtractReadable(t *testing.T) {
	docx := ragtest.DOCX([]ragtest.Para{
		{Style: "Title", Text: "Lease agreement"},
		{Text: "The tenant pays rent on the first day of each month."},
		{Style: "Heading2", Text: "Deposit"},
		{Text: "The deposit is three months of rent."},
	})
	tests := []struct {
		name      string
		data      []byte
		title     string
		sections  int
		contains  string
		heading   string // joined with " > " for the section holding contains
		page      int
		notInText string
	}{
		{name: "report.pdf", title: "Boiler manual", sections: 2, contains: "warranty lasts five years", page: 2},
		{name: "notes.md", title: "House notes", sections: 4, contains: "attic makes noise", heading: "House notes > Heating > Radiators"},
		{name: "page.html", title: "Recycling rules", contains: "collection box at the supermarket", heading: "Batteries", notInText: "tracking"},
		{name: "bills.csv", sections: 1, contains: "item: water | amount: 31.00"},
		{name: "heating-zh.txt", sections: 1, contains: "锅炉的压力"},
		// Windows Notepad's "Unicode": UTF-16 with a byte order mark.
		{name: "notepad-utf16.txt", sections: 1, contains: "Guest wifi password: sunflower-42.\nThe printer"},
		// Excel where the decimal mark is a comma: a BOM, ';' between columns.
		{name: "ausgaben-excel.csv", sections: 1, contains: "Datum: 01.02.2026 | Posten: Wasser; Abwasser | Betrag: 31,00"},
		// Saved pages in the charset their <meta> declares.
		{name: "dacha-cp1251.html", title: "Дача", contains: "Ключ от дачи лежит у соседки Марины"},
		{name: "notice-gbk.htm", title: "物业通知", contains: "小区停车费每月三百元"},
		{name: "lease.docx", data: docx, title: "Lease agreement", sections: 2, contains: "three months", heading: "Lease agreement > Deposit"},
	}
	x := &Extractor{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data
			if data == nil {
				data = readTestdata(t, tc.name)
			}
			doc, err := x.Extract(tc.name, data)
			if err != nil {
				t.Fatal(err)
			}
			if tc.title != "" && doc.Title != tc.title {
				t.Errorf("title = %q, want %q", doc.Title, tc.title)
			}
			if tc.sections > 0 && len(doc.Sections) != tc.sections {
				t.Errorf("%d sections, want %d: %+v", len(doc.Sections), tc.sections, doc.Sections)
			}
			var hit *Section
			for i, s := range doc.Sections {
				if strings.Contains(strings.ToLower(s.Text), strings.ToLower(tc.contains)) {
					hit = &doc.Sections[i]
				}
				if tc.notInText != "" && strings.Contains(s.Text, tc.notInText) {
					t.Errorf("section holds %q, which is no content: %q", tc.notInText, s.Text)
				}
			}
			if hit == nil {
				t.Fatalf("no section contains %q: %+v", tc.contains, doc.Sections)
			}
			if tc.heading != "" && strings.Join(hit.Heading, " > ") != tc.heading {
				t.Errorf("heading = %q, want %q", strings.Join(hit.Heading, " > "), tc.heading)
			}
			if hit.Page != tc.page {
				t.Errorf("page = %d, want %d", hit.Page, tc.page)
			}
		})
	}
}

func TestExtractCSVKeepsHeader(t *testing.T) {
	var b strings.Builder
	b.WriteString("name,phone\n")
	for i := range 45 {
		b.WriteString("person" + string(rune('a'+i%26)) + ",555-01" + string(rune('0'+i%10)) + "\n")
	}
	doc, err := (&Extractor{CSVRows: 20}).Extract("phones.csv", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Sections) != 3 {
		t.Fatalf("%d row blocks, want 3 (45 rows by 20)", len(doc.Sections))
	}
	for _, c := range Split(doc, ChunkOptions{Size: 200, Overlap: 20}) {
		if !strings.HasPrefix(c.Text, "Columns: name, phone\n") {
			t.Fatalf("chunk without the header: %q", c.Text)
		}
	}
}

func TestExtractUnreadable(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"locked.pdf", readTestdata(t, "locked.pdf"), "the PDF is password-protected or encrypted: save an unprotected copy to index it"},
		{"photo.pdf", readTestdata(t, "photo.pdf"), "the file is not a PDF (it looks like a JPEG image)"},
		{"broken.pdf", readTestdata(t, "broken.pdf"), "the PDF is damaged: not a PDF file: missing %%EOF"},
		{"bomb.docx", ragtest.ZipBombDOCX(2 << 20), "the Word document unpacks to"},
		{"fake.docx", []byte("just text, not a zip"), "the file is not a Word document (unknown binary data)"},
		{"photo.txt", readTestdata(t, "photo.pdf"), "the file holds binary data, not text (it looks like a JPEG image)"},
		{"empty.md", []byte("  \n\n"), "the file is empty"},
		{"rezept-latin1.txt", readTestdata(t, "rezept-latin1.txt"), "the file is not UTF-8 text: it is probably in an older encoding (Windows-1252, Latin-1, Windows-1251, GBK, Shift-JIS); save it as UTF-8 to index it"},
		{"header-only.csv", []byte("a,b,c\n"), "no text found in the file"},
		{"movie.mkv", []byte("xxxx"), ".mkv files are not read"},
	}
	x := &Extractor{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := x.Extract(tc.name, tc.data)
			if !errors.Is(err, ErrUnreadable) {
				t.Fatalf("err = %v, want ErrUnreadable", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestSplitKeepsStructure(t *testing.T) {
	long := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 60)
	doc := Extracted{Title: "T", Sections: []Section{
		{Heading: []string{"A"}, Page: 3, Text: "short one\n\nshort two"},
		{Heading: []string{"A", "B"}, Text: long},
	}}
	chunks := Split(doc, ChunkOptions{Size: 300, Overlap: 50})
	if len(chunks) < 8 {
		t.Fatalf("%d chunks, want the long section cut in several", len(chunks))
	}
	if chunks[0].Text != "short one\n\nshort two" || chunks[0].Page != 3 || chunks[0].Heading[0] != "A" {
		t.Errorf("first chunk = %+v", chunks[0])
	}
	for i, c := range chunks {
		if c.Position != i || c.Title != "T" {
			t.Errorf("chunk %d: position %d title %q", i, c.Position, c.Title)
		}
		if n := len([]rune(c.Text)); n > 300 {
			t.Errorf("chunk %d has %d runes, over the size 300", i, n)
		}
	}
	// Overlap: the second chunk of the long section starts with words that end the first.
	a, b := chunks[1].Text, chunks[2].Text
	head := b[:20]
	if !strings.Contains(a[len(a)-80:], head) {
		t.Errorf("no overlap: chunk ends %q, next starts %q", a[len(a)-80:], head)
	}
	cjk := Split(Extracted{Sections: []Section{{Text: strings.Repeat("锅炉的压力应保持在一点二到一点五巴之间", 40)}}}, ChunkOptions{Size: 100, Overlap: 10})
	if len(cjk) < 8 {
		t.Errorf("CJK text without spaces gave %d chunks, want it cut by size", len(cjk))
	}
}
