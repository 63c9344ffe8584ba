package rag

import (
	"bytes"
	"flag"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearthlab/hearth/rag/ragtest"
)

var update = flag.Bool("update", false, "write the generated files in testdata")

// TestGenerateTestdata writes the binary test files (run with -update); without -update it
// checks that the committed ones are what the generators make.
func TestGenerateTestdata(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	for i := range 8 {
		img.Set(i, i, color.RGBA{200, 10, 10, 255})
	}
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, img, nil); err != nil {
		t.Fatal(err)
	}
	report := ragtest.PDF("Boiler manual", [][]string{
		{"Boiler manual", "The boiler pressure should stay between 1.2 and 1.5 bar.", "Bleed the radiators every autumn."},
		{"Warranty", "The warranty lasts five years from installation.", "Service the boiler once a year."},
	}, "")
	files := map[string][]byte{
		"report.pdf": report,
		"locked.pdf": ragtest.PDF("Bank statement", [][]string{{"Account balance 1234 EUR"}}, "secret"),
		"photo.pdf":  jpg.Bytes(),
		"broken.pdf": report[:len(report)/2],
	}
	for name, want := range files {
		p := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s: %v (run go test ./rag -run TestGenerateTestdata -update)", p, err)
		}
		if name != "photo.pdf" && !bytes.Equal(got, want) {
			t.Errorf("%s differs from its generator: run go test ./rag -run TestGenerateTestdata -update", p)
		}
	}
}
