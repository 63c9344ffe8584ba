//go:build ignore

// mkicons draws the app's PNG icons into static/icons/ (run by go generate; the PNGs are
// committed, so go build needs nothing).
package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
)

func main() {
	for _, size := range []int{192, 512} {
		for _, maskable := range []bool{false, true} {
			b, err := icon(size, maskable)
			if err == nil {
				err = os.WriteFile("static"+iconPath(size, maskable), b, 0o644)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	}
}

func iconPath(size int, maskable bool) string {
	if maskable {
		return fmt.Sprintf("/icons/maskable-%d.png", size)
	}
	return fmt.Sprintf("/icons/icon-%d.png", size)
}

// icon draws the app's icon: a flame on a warm square (maskable: on a full bleed, the flame
// inside the safe circle). Drawn at start-up, so no binary image sits in the repository.
func icon(size int, maskable bool) ([]byte, error) {
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	s := float64(size)
	radius := s * 0.22
	if maskable {
		radius = 0
	}
	bg1, bg2 := color.NRGBA{0x2b, 0x1a, 0x12, 0xff}, color.NRGBA{0x5a, 0x2a, 0x14, 0xff}
	flameScale := 0.62
	if maskable {
		flameScale = 0.48
	}
	for y := range size {
		for x := range size {
			fx, fy := float64(x)+0.5, float64(y)+0.5
			if !insideRounded(fx, fy, s, radius) {
				continue
			}
			t := fy / s
			c := lerp(bg1, bg2, t)
			// The flame: a teardrop whose tip points up, with a hotter core.
			u := (fx - s/2) / (s * flameScale / 2)
			v := (fy - s*0.56) / (s * flameScale / 2)
			if d := drop(u, v); d < 1 {
				c = lerp(color.NRGBA{0xff, 0x8a, 0x1f, 0xff}, color.NRGBA{0xff, 0x4d, 0x1a, 0xff}, v*0.5+0.5)
				if drop(u*1.8, (v-0.35)*1.8) < 1 {
					c = color.NRGBA{0xff, 0xd3, 0x6b, 0xff}
				}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("webapp: draw icon: %w", err)
	}
	return buf.Bytes(), nil
}

// drop is < 1 inside a teardrop centred at the origin, tip up, unit size.
func drop(u, v float64) float64 {
	if v >= 0 {
		return math.Hypot(u, v*1.1)
	}
	w := 1 + v*0.9 // narrows towards the tip
	if w <= 0.02 {
		return 2
	}
	return math.Hypot(u/w, v/1.25)
}

func insideRounded(x, y, s, r float64) bool {
	if r == 0 {
		return true
	}
	cx, cy := math.Min(math.Max(x, r), s-r), math.Min(math.Max(y, r), s-r)
	return math.Hypot(x-cx, y-cy) <= r
}

func lerp(a, b color.NRGBA, t float64) color.NRGBA {
	t = math.Max(0, math.Min(1, t))
	m := func(x, y uint8) uint8 { return uint8(float64(x) + (float64(y)-float64(x))*t) }
	return color.NRGBA{m(a.R, b.R), m(a.G, b.G), m(a.B, b.B), 0xff}
}
