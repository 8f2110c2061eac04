// Package plot draws PNGs: 2-D samples as a scatter, images as a grid (plot.go), and `backend plot`,
// a training run's loss curves with one panel per phase read from its train.log (lossplot.go).
package plot

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"

	"asbm/weights"
)

// plotRange is the half-width of the square the scatter plots show, matching the site's canvas.
const plotRange = 4.0

// WriteScatterPNG draws 2-D points on a 512×512 white square covering [−4, 4]².
func WriteScatterPNG(path string, pts []float32, d int) error {
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
	return writePNG(path, img)
}

// WriteImageGridPNG writes images (n rows of C×H×W values in [-1, 1], channel-major) as a grid
// of ⌈√n⌉ columns with a 2-pixel white gutter, each image scaled up by the smallest integer factor
// that makes the images' columns at least 512 pixels wide (16-pixel images are unreadable at 1×).
func WriteImageGridPNG(path string, imgs []float32, a weights.Arch) error {
	c, h, w := a.Channels, a.Height, a.Width
	if c != 1 && c != 3 {
		return fmt.Errorf("a PNG grid needs 1 or 3 channels; this model has %d (write .csv instead)", c)
	}
	d := c * h * w
	n := len(imgs) / d
	if n == 0 {
		return fmt.Errorf("no images to draw")
	}
	cols := int(math.Ceil(math.Sqrt(float64(n))))
	rows := (n + cols - 1) / cols
	const gutter = 2
	scale := max(1, (512+cols*w-1)/(cols*w))
	cw, ch := w*scale+gutter, h*scale+gutter
	img := image.NewRGBA(image.Rect(0, 0, cols*cw+gutter, rows*ch+gutter))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	pix := func(v float32) uint8 { return uint8(math.Round(float64(min(max((v+1)/2, 0), 1)) * 255)) }
	for k := 0; k < n; k++ {
		x0, y0 := gutter+(k%cols)*cw, gutter+(k/cols)*ch
		im := imgs[k*d : (k+1)*d]
		for y := 0; y < h*scale; y++ {
			for x := 0; x < w*scale; x++ {
				p := (y/scale)*w + x/scale
				r := pix(im[p])
				g, b := r, r
				if c == 3 {
					g, b = pix(im[h*w+p]), pix(im[2*h*w+p])
				}
				img.SetRGBA(x0+x, y0+y, color.RGBA{R: r, G: g, B: b, A: 255})
			}
		}
	}
	return writePNG(path, img)
}

// writePNG encodes img as a PNG file at path.
func writePNG(path string, img image.Image) error {
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
