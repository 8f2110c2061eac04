package sample

import (
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"asbm/backend/imgdata"
)

// TestDataNPY writes a folder of PNG images as .npy with `sample --data … --out x.npy` and reads
// it back by the format's definition: the header says float32, C order and [N, C, H, W], the whole
// is padded to 64 bytes, and the values are imgdata's, in the set's order (--n 0) or a subset.
func TestDataNPY(t *testing.T) {
	dir := t.TempDir()
	imgs := filepath.Join(dir, "imgs")
	os.Mkdir(imgs, 0o755)
	for i := range 3 {
		im := image.NewRGBA(image.Rect(0, 0, 6, 6))
		for p := range 36 {
			im.Set(p%6, p/6, color.RGBA{uint8(40 * i), uint8(7 * p), uint8(255 - 30*i), 255})
		}
		f, err := os.Create(filepath.Join(imgs, fmt.Sprintf("%d.png", i)))
		if err != nil {
			t.Fatal(err)
		}
		png.Encode(f, im)
		f.Close()
	}
	set, err := imgdata.Load("dir:"+imgs, 8)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 2} {
		out := filepath.Join(dir, fmt.Sprintf("x%d.npy", n))
		if err := Command([]string{"--data", "dir:" + imgs, "--size", "8", "--n", fmt.Sprint(n), "--out", out}, nil); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if string(b[:8]) != "\x93NUMPY\x01\x00" {
			t.Fatalf("magic %q", b[:8])
		}
		hl := int(binary.LittleEndian.Uint16(b[8:10]))
		header, data := string(b[10:10+hl]), b[10+hl:]
		rows := 3
		if n > 0 {
			rows = n
		}
		want := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, 3, 8, 8), }", rows)
		if (10+hl)%64 != 0 || !strings.HasSuffix(header, "\n") || strings.TrimRight(header, " \n") != want {
			t.Fatalf("--n %d: header %q (%d bytes before the data), want %q padded to 64", n, header, 10+hl, want)
		}
		if len(data) != 4*rows*3*64 {
			t.Fatalf("--n %d: %d data bytes for %d images", n, len(data), rows)
		}
		got := make([]float32, len(data)/4)
		for i := range got {
			got[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
		// Each row is one of the set's images, and with --n 0 the i-th is the set's i-th.
		d := 3 * 64
		for r := range rows {
			match := -1
			for i := range set.N {
				if slices.Equal(got[r*d:(r+1)*d], set.Pixels[i*d:(i+1)*d]) {
					match = i
				}
			}
			if match < 0 || (n == 0 && match != r) {
				t.Errorf("--n %d: row %d is image %d of the set", n, r, match)
			}
		}
	}
	if err := Command([]string{"--data", "dir:" + imgs, "--out", filepath.Join(dir, "x.txt")}, nil); err == nil ||
		!strings.Contains(err.Error(), ".npy") {
		t.Errorf("--out x.txt: error %v, want one naming .png and .npy", err)
	}
}
