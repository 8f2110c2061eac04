package imgdata

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestResizeArea(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	// Integer factor: each output is the plain mean of its k×k block.
	src := make([]float32, 2*12*12)
	for i := range src {
		src[i] = float32(r.Float64()*2 - 1)
	}
	dst := make([]float32, 2*4*4)
	resizeArea(dst, src, 2, 12, 12, 4, 4)
	for ch := range 2 {
		for oy := range 4 {
			for ox := range 4 {
				var s float64
				for y := range 3 {
					for x := range 3 {
						s += float64(src[ch*144+(3*oy+y)*12+3*ox+x])
					}
				}
				if got := dst[ch*16+oy*4+ox]; math.Abs(float64(got)-s/9) > 1e-6 {
					t.Fatalf("block mean (%d,%d,%d): %v, want %v", ch, oy, ox, got, s/9)
				}
			}
		}
	}
	// Fractional factors, shrinking and enlarging, non-square: the 2-D overlap reference, and
	// the mean is preserved exactly.
	for trial := range 30 {
		sh, sw, dh, dw := 1+r.IntN(40), 1+r.IntN(40), 1+r.IntN(40), 1+r.IntN(40)
		src := make([]float32, sh*sw)
		ref := make([]float64, sh*sw)
		for i := range src {
			src[i] = float32(r.Float64()*2 - 1)
			ref[i] = float64(src[i])
		}
		dst := make([]float32, dh*dw)
		resizeArea(dst, src, 1, sh, sw, dh, dw)
		if d := maxAbsDiff(dst, refArea(ref, sh, sw, dh, dw)); d > 1e-5 {
			t.Errorf("trial %d %d×%d → %d×%d: max |diff| %.2g > 1e-5", trial, sh, sw, dh, dw, d)
		}
		if d := math.Abs(mean(dst) - mean(src)); d > 1e-5 {
			t.Errorf("trial %d %d×%d → %d×%d: mean moved by %.2g", trial, sh, sw, dh, dw, d)
		}
	}
}

func TestPadCentre(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	for range 20 {
		c, h, w := 1+r.IntN(3), 1+r.IntN(9), 1+r.IntN(9)
		s := max(h, w) + r.IntN(6)
		src := make([]float32, c*h*w)
		for i := range src {
			src[i] = float32(1 + r.IntN(9)) // never the background 0
		}
		dst := make([]float32, c*s*s)
		padCentre(dst, src, c, h, w, s, 0)
		// Margins: floor((s-h)/2) rows above, the rest below (likewise columns), and the
		// image copied unchanged in between.
		top, left := (s-h)/2, (s-w)/2
		if s-h-top < top || s-h-top > top+1 || s-w-left < left || s-w-left > left+1 {
			t.Fatalf("margins %d/%d, %d/%d are not centred", top, s-h-top, left, s-w-left)
		}
		for ch := range c {
			for y := range s {
				for x := range s {
					want := float32(0)
					if y >= top && y < top+h && x >= left && x < left+w {
						want = src[ch*h*w+(y-top)*w+x-left]
					}
					if got := dst[ch*s*s+y*s+x]; got != want {
						t.Fatalf("%d×%d×%d in %d: (%d,%d,%d) = %v, want %v", c, h, w, s, ch, y, x, got, want)
					}
				}
			}
		}
	}
}

// randomNRGBA returns a w×h image with random colours and alphas (some fully transparent, some
// opaque).
func randomNRGBA(r *rand.Rand, w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(3, 5, 3+w, 5+h)) // non-zero origin on purpose
	for i := range m.Pix {
		m.Pix[i] = byte(r.Uint32())
	}
	for i := 3; i < len(m.Pix); i += 4 {
		switch r.IntN(4) {
		case 0:
			m.Pix[i] = 0
		case 1:
			m.Pix[i] = 255
		}
	}
	return m
}

func TestFitColour(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for trial := range 12 {
		w, h, size := 1+r.IntN(30), 1+r.IntN(30), 1+r.IntN(20)
		n := randomNRGBA(r, w, h)
		// The same pixels as premultiplied RGBA and as paletted (the generic draw path).
		rgba := image.NewRGBA(n.Bounds())
		pal := image.NewPaletted(n.Bounds(), nil)
		for y := n.Bounds().Min.Y; y < n.Bounds().Max.Y; y++ {
			for x := n.Bounds().Min.X; x < n.Bounds().Max.X; x++ {
				rgba.Set(x, y, n.At(x, y))
			}
		}
		pal.Palette = color.Palette{color.NRGBA{10, 200, 30, 255}, color.NRGBA{250, 0, 90, 128}, color.NRGBA{0, 0, 0, 0}}
		for i := range pal.Pix {
			pal.Pix[i] = uint8(r.IntN(3))
		}
		for _, img := range []image.Image{n, rgba, pal} {
			got := make([]float32, 3*size*size)
			fitColour(got, img, size)
			// All three layouts are read directly and composited in float32; 1e-4 is float32
			// rounding, 40 times below one 8-bit level (2/255 in [-1, 1]).
			if d, tol := maxAbsDiff(got, refColour(img, size)), 1e-4; d > tol {
				t.Errorf("trial %d %T %d×%d → %d: max |diff| %.3g > %.3g", trial, img, w, h, size, d, tol)
			}
		}
	}
	// Closed form: an opaque red w×(w/2) bar over white. Red is +1 everywhere; green and blue are
	// -1 on the bar (half the square) and +1 on the padding, so their mean is 0 at any size.
	bar := image.NewNRGBA(image.Rect(0, 0, 40, 20))
	for i := 0; i < len(bar.Pix); i += 4 {
		copy(bar.Pix[i:], []byte{255, 0, 0, 255})
	}
	// Black at alpha 128 over white: 1 - 128/255 in [0, 1], i.e. 1 - 2·128/255 in [-1, 1].
	veil := image.NewNRGBA(image.Rect(0, 0, 7, 7))
	for i := 0; i < len(veil.Pix); i += 4 {
		copy(veil.Pix[i:], []byte{0, 0, 0, 128})
	}
	for _, size := range []int{7, 8, 13, 40} {
		got := make([]float32, 3*size*size)
		fitColour(got, bar, size)
		p := size * size
		if m := mean(got[:p]); math.Abs(m-1) > 1e-6 {
			t.Errorf("bar at %d: red mean %v, want 1", size, m)
		}
		for ch := 1; ch < 3; ch++ {
			if m := mean(got[ch*p : (ch+1)*p]); math.Abs(m) > 1e-5 {
				t.Errorf("bar at %d: channel %d mean %v, want 0", size, ch, m)
			}
		}
		fitColour(got, veil, size)
		want := 1 - 2*128.0/255
		for i, v := range got {
			if math.Abs(float64(v)-want) > 1e-5 {
				t.Fatalf("veil at %d: value %d = %v, want %v", size, i, v, want)
			}
		}
	}
}

func mustWrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeImage encodes img as PNG or JPEG into dir/name.
func writeImage(t *testing.T, dir, name string, img image.Image) {
	t.Helper()
	var buf bytes.Buffer
	var err error
	if strings.HasSuffix(name, ".png") {
		err = png.Encode(&buf, img)
	} else {
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95})
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadFolder(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(13, 14))
	// a.png: a 30×10 opaque bar of gray g; after padding to 30×30 with white the mean of every
	// channel is (g·300 + 255·600)/900 in [0, 255], at any size (area resampling keeps the mean).
	g := uint8(40 + r.IntN(100))
	bar := image.NewGray(image.Rect(0, 0, 30, 10))
	for i := range bar.Pix {
		bar.Pix[i] = g
	}
	writeImage(t, dir, "a.png", bar)
	// b/c.jpg: a flat colour, which JPEG reproduces to within a level or two.
	flat := image.NewRGBA(image.Rect(0, 0, 16, 24))
	fc := color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
	for i := 0; i < len(flat.Pix); i += 4 {
		copy(flat.Pix[i:], []byte{fc.R, fc.G, fc.B, 255})
	}
	writeImage(t, dir, "b/c.jpg", flat)
	// d.png: random transparency, checked against the reference pipeline.
	rnd := randomNRGBA(r, 21, 17)
	writeImage(t, dir, "d.png", rnd)
	// Skipped: not an image, hidden file, hidden folder.
	mustWrite(t, filepath.Join(dir, "notes.txt"), []byte("not an image"))
	writeImage(t, dir, ".hidden.png", bar)
	writeImage(t, dir, ".thumbs/x.png", bar)

	const size = 8
	for _, spec := range []string{"dir:" + dir, dir} {
		s, err := Load(spec, size)
		if err != nil {
			t.Fatal(err)
		}
		checkSet(t, s, 3, 3, size, -1)
		if !strings.HasPrefix(s.Name, "dir:/") {
			t.Errorf("name %q, want dir: and an absolute path", s.Name)
		}
		// Lexical walk order: a.png, b/c.jpg, d.png.
		p := size * size
		wantBar := (float64(g)*300+255*600)/900/127.5 - 1
		for ch := range 3 {
			if m := mean(s.Image(0)[ch*p : (ch+1)*p]); math.Abs(m-wantBar) > 1e-5 {
				t.Errorf("a.png channel %d: mean %v, want %v", ch, m, wantBar)
			}
		}
		// c.jpg is 16×24: padded to 24×24 with white, flat colour over 2/3 of the square.
		for ch, c := range []uint8{fc.R, fc.G, fc.B} {
			want := (float64(c)*2/3+255.0/3)/127.5 - 1
			if m := mean(s.Image(1)[ch*p : (ch+1)*p]); math.Abs(m-want) > 3/127.5 {
				t.Errorf("c.jpg channel %d: mean %v, want %v ± 3 levels", ch, m, want)
			}
		}
		if d := maxAbsDiff(s.Image(2), refColour(rnd, size)); d > 1e-4 {
			t.Errorf("d.png: max |diff| %.2g vs reference", d)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	empty := t.TempDir()
	textOnly := t.TempDir()
	mustWrite(t, filepath.Join(textOnly, "a.txt"), []byte("hello"))
	corrupt := t.TempDir()
	mustWrite(t, filepath.Join(corrupt, "bad.png"), append(slices.Clone(pngMagic), "garbage"...))
	file := filepath.Join(textOnly, "a.txt")
	for _, tc := range []struct {
		spec string
		size int
		want string
	}{
		{"dir:" + empty, 8, empty},
		{"dir:" + textOnly, 8, "holds no decodable PNG or JPEG"},
		{"dir:" + corrupt, 8, "bad.png"},
		{"dir:" + filepath.Join(empty, "missing"), 8, "missing"},
		{"dir:" + file, 8, "not a folder"},
		{"dir:", 8, "needs a folder"},
		{"mnist:val", 32, `unknown split "val"`},
		{"emoji:test", 32, "has no train/test splits"},
		{"cifar10", 32, `unknown data set "cifar10"`},
		{"mnist", 0, "out of range"},
		{"mnist", MaxSize + 1, "out of range"},
	} {
		_, err := Load(tc.spec, tc.size)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q, %d): error %v, want one containing %q", tc.spec, tc.size, err, tc.want)
		}
	}
}

func TestEmoji(t *testing.T) {
	if _, err := os.Stat(emojiFontPath); err != nil {
		skipOrFail(t, "fonts-noto-color-emoji is not installed at %s", emojiFontPath)
	}
	const size = 32
	s, err := Load("emoji", size)
	if err != nil {
		t.Fatal(err)
	}
	checkSet(t, s, -1, 3, size, -1)
	if s.N <= 3000 {
		t.Fatalf("%d emoji, want more than 3000", s.N)
	}
	// Emoji sit on white: the mean is well above the mid-gray 0 but far from all-white, and
	// the images are not flat.
	m := mean(s.Pixels)
	var v float64
	for _, x := range s.Pixels {
		v += (float64(x) - m) * (float64(x) - m)
	}
	sd := math.Sqrt(v / float64(len(s.Pixels)))
	t.Logf("%d emoji at %d×%d: mean pixel %.3f, sd %.3f", s.N, size, size, m, sd)
	if m < 0.05 || m > 0.8 || sd < 0.3 {
		t.Errorf("mean %.3f (want in [0.05, 0.8]) sd %.3f (want > 0.3)", m, sd)
	}
	// A few random emoji against the independent pipeline: generic image.Image access,
	// float64 compositing, 2-D area integration.
	font, err := os.ReadFile(emojiFontPath)
	if err != nil {
		t.Fatal(err)
	}
	glyphs, err := cbdtPNGs(font)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(15, 16))
	for range 4 {
		i := r.IntN(len(glyphs))
		img, err := png.Decode(bytes.NewReader(glyphs[i].PNG))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("emoji %d (glyph %d): %v %T", i, glyphs[i].Glyph, img.Bounds(), img)
		if d := maxAbsDiff(s.Image(i), refColour(img, size)); d > 1e-4 {
			t.Errorf("emoji %d (glyph %d): max |diff| %.2g vs reference", i, glyphs[i].Glyph, d)
		}
	}
}

func TestEmojiMissing(t *testing.T) {
	old := emojiFontPath
	emojiFontPath = filepath.Join(t.TempDir(), "NotoColorEmoji.ttf")
	defer func() { emojiFontPath = old }()
	_, err := Load("emoji", 32)
	if err == nil || !strings.Contains(err.Error(), "apt-get install fonts-noto-color-emoji") {
		t.Errorf("error %v, want the install hint", err)
	}
	// A file that is not a font names the path.
	mustWrite(t, emojiFontPath, []byte("not a font"))
	if _, err := Load("emoji", 32); err == nil || !strings.Contains(err.Error(), emojiFontPath) {
		t.Errorf("error %v, want one naming %s", err, emojiFontPath)
	}
}
