package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
)

// plotRange is the half-width of the square the scatter plots show, matching the site's canvas.
const plotRange = 4.0

// writeScatterPNG draws 2-D points on a 512×512 white square covering [−4, 4]².
func writeScatterPNG(path string, pts []float32, d int) error {
	if d != 2 {
		return fmt.Errorf("a PNG scatter needs 2-D points; this model has dimension %d (write .csv instead)", d)
	}
	const size = 512
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	dot := color.RGBA{R: 30, G: 80, B: 200, A: 255}
	for i := 0; i+1 < len(pts); i += 2 {
		px := int((float64(pts[i]) + plotRange) / (2 * plotRange) * size)
		py := int((plotRange - float64(pts[i+1])) / (2 * plotRange) * size)
		for dx := -1; dx <= 1; dx++ {
			for dy := -1; dy <= 1; dy++ {
				if x, y := px+dx, py+dy; x >= 0 && x < size && y >= 0 && y < size {
					img.Set(x, y, dot)
				}
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
