package imgdata

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// emojiFontPath is where Debian's fonts-noto-color-emoji installs the font; a variable so tests
// can point it elsewhere.
var emojiFontPath = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"

// fitColour composites img over white, centre-pads it with white to a square and area-resamples
// that to size×size, writing 3×size×size planar RGB values in [-1, 1] to dst. White, not black,
// because transparent emoji pixels are meant to show the page behind them; the padding is
// treated as transparent too, so it matches the emoji background. Compositing is done in float
// (not with 8-bit draw.Over) so half-transparent edges keep full precision.
func fitColour(dst []float32, img image.Image, size int) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	s := max(w, h)
	left, top := (s-w)/2, (s-h)/2
	// at returns the alpha-premultiplied colour and alpha in [0, 1] of pixel (x, y) counted
	// from the image origin. The layouts PNG decoding yields (NRGBA, RGBA, and Paletted, which is
	// what Noto Color Emoji's bitmaps decode to) are read directly; anything else (JPEG's YCbCr,
	// gray) is converted to RGBA first, which is exact for opaque 8-bit sources.
	var at func(x, y int) (r, g, bl, a float32)
	switch m := img.(type) {
	case *image.NRGBA:
		at = func(x, y int) (float32, float32, float32, float32) {
			p := m.Pix[m.PixOffset(b.Min.X+x, b.Min.Y+y):]
			a := float32(p[3]) / 255
			return float32(p[0]) / 255 * a, float32(p[1]) / 255 * a, float32(p[2]) / 255 * a, a
		}
	case *image.Paletted:
		// Palette entries at full 16-bit precision; indices past the palette read as
		// transparent (the PNG decoder rejects them anyway).
		pal := make([][4]float32, 256)
		for i, c := range m.Palette[:min(len(m.Palette), 256)] {
			r, g, bl, a := c.RGBA()
			pal[i] = [4]float32{float32(r) / 65535, float32(g) / 65535, float32(bl) / 65535, float32(a) / 65535}
		}
		at = func(x, y int) (float32, float32, float32, float32) {
			c := pal[m.Pix[m.PixOffset(b.Min.X+x, b.Min.Y+y)]]
			return c[0], c[1], c[2], c[3]
		}
	default:
		rgba, ok := img.(*image.RGBA)
		origin := b.Min
		if !ok {
			rgba = image.NewRGBA(image.Rect(0, 0, w, h))
			draw.Draw(rgba, rgba.Bounds(), img, b.Min, draw.Src)
			origin = image.Point{}
		}
		at = func(x, y int) (float32, float32, float32, float32) {
			p := rgba.Pix[rgba.PixOffset(origin.X+x, origin.Y+y):]
			return float32(p[0]) / 255, float32(p[1]) / 255, float32(p[2]) / 255, float32(p[3]) / 255
		}
	}
	planes := make([]float32, 3*s*s)
	for i := range planes {
		planes[i] = 1 // white
	}
	for y := range h {
		for x := range w {
			r, g, bl, a := at(x, y)
			// Over white: premultiplied colour plus the white showing through.
			o := (top+y)*s + left + x
			planes[o] = r + 1 - a
			planes[s*s+o] = g + 1 - a
			planes[2*s*s+o] = bl + 1 - a
		}
	}
	for i, v := range planes {
		planes[i] = 2*v - 1
	}
	if s == size {
		copy(dst, planes)
	} else {
		resizeArea(dst, planes, 3, s, s, size, size)
	}
	clampUnit(dst[:3*size*size])
}

// loadEmoji reads the colour bitmaps of the largest strike of the CBDT font at path: every one,
// or with faces only those of the faceEmoji code points the font maps, in that list's order.
func loadEmoji(path string, size int, faces bool) (*Set, error) {
	font, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("imgdata: Noto Color Emoji not found at %s: install it with `apt-get install fonts-noto-color-emoji` (./build.sh test does)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("imgdata: emoji: %w", err)
	}
	glyphs, err := cbdtPNGs(font)
	if err != nil {
		return nil, fmt.Errorf("imgdata: emoji font %s: %w", path, err)
	}
	name := "emoji"
	if faces {
		name = "emoji:faces"
		if glyphs, err = faceGlyphs(font, glyphs); err != nil {
			return nil, fmt.Errorf("imgdata: emoji font %s: %w", path, err)
		}
	}
	d := 3 * size * size
	s := &Set{Name: name, N: len(glyphs), C: 3, H: size, W: size, Pixels: make([]float32, len(glyphs)*d)}
	for i, g := range glyphs {
		img, err := png.Decode(bytes.NewReader(g.PNG))
		if err != nil {
			return nil, fmt.Errorf("imgdata: emoji font %s: glyph %d: %w", path, g.Glyph, err)
		}
		fitColour(s.Image(i), img, size)
	}
	return s, nil
}

// decodeImage decodes data as PNG or JPEG, chosen by its magic bytes. ok is false, with no
// error, when data is neither (the file is skipped); a file that claims to be one but does not
// decode is an error.
func decodeImage(data []byte) (img image.Image, ok bool, err error) {
	switch {
	case bytes.HasPrefix(data, pngMagic):
		img, err = png.Decode(bytes.NewReader(data))
	case bytes.HasPrefix(data, []byte{0xff, 0xd8, 0xff}):
		img, err = jpeg.Decode(bytes.NewReader(data))
	default:
		return nil, false, nil
	}
	if err == nil && img.Bounds().Empty() {
		err = errors.New("empty image")
	}
	return img, true, err
}

// loadFolder reads every PNG/JPEG file under dir (recursively, in lexical path order, skipping
// names that start with '.') as an unlabelled RGB set. Files of other types are skipped; a
// PNG/JPEG that does not decode is an error naming it.
func loadFolder(dir string, size int) (*Set, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("imgdata: folder %s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("imgdata: image folder %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("imgdata: %s is not a folder", dir)
	}
	d := 3 * size * size
	s := &Set{Name: "dir:" + abs, C: 3, H: size, W: size}
	err = filepath.WalkDir(abs, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != abs && strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() {
			return nil
		}
		if !e.Type().IsRegular() {
			// Follow links to files; skip sockets, devices and links to folders.
			fi, err := os.Stat(path)
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		img, ok, err := decodeImage(data)
		if !ok {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		s.Pixels = append(s.Pixels, make([]float32, d)...)
		s.N++
		fitColour(s.Image(s.N-1), img, size)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("imgdata: image folder %s: %w", dir, err)
	}
	if s.N == 0 {
		return nil, fmt.Errorf("imgdata: image folder %s holds no decodable PNG or JPEG images", dir)
	}
	return s, nil
}
