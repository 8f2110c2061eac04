// Package imgdata loads the image data sets of the "Images" issue (design.md "Data sets"):
// MNIST (from the GoMNIST Go module), Fashion-MNIST (Debian dataset-fashion-mnist), the colour
// emoji of Debian fonts-noto-color-emoji (PNG bitmaps read out of the font's CBLC/CBDT tables),
// and a user's folder of PNG/JPEG files. Everything is read from local files; nothing is
// downloaded at run time.
//
// Every set comes back as planar float32 pixels in [-1, 1] (N×C×H×W, H = W = size), the range
// the VP prior of asbm.md §1.2 is matched to. Gray sets keep their black background at -1; colour
// sets are composited on white (+1).
package imgdata

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// MaxSize bounds the side length Load accepts: the sets are small-image sets and a larger side
// would only blow up memory (N×C×size² float32 values are held at once).
const MaxSize = 1024

// Set is an image data set held in memory.
type Set struct {
	// Name is the canonical spec the set was loaded from ("mnist:train", "fashion:test",
	// "emoji", "emoji:faces", "dir:/abs/path").
	Name string
	// N images of C channels (1 gray, 3 RGB), H rows by W columns.
	N, C, H, W int
	// Pixels holds the images planar and row-major, N×C×H×W, each value in [-1, 1].
	Pixels []float32
	// Labels holds one class label per image (0–9 for MNIST and Fashion-MNIST); nil when the
	// set is unlabelled.
	Labels []int
}

// Dim returns the number of values in one image, C·H·W.
func (s *Set) Dim() int { return s.C * s.H * s.W }

// Image returns image i as a C×H×W slice that aliases s.Pixels, or nil when i is out of range.
func (s *Set) Image(i int) []float32 {
	if i < 0 || i >= s.N {
		return nil
	}
	d := s.Dim()
	return s.Pixels[i*d : (i+1)*d : (i+1)*d]
}

// Load reads the image set named by spec at size×size pixels.
//
// spec is one of
//   - "mnist", "mnist:train", "mnist:test": handwritten digits, 1 channel, labels 0–9;
//   - "fashion", "fashion:train", "fashion:test": Fashion-MNIST, 1 channel, labels 0–9;
//   - "emoji": the Noto Color Emoji bitmaps, 3 channels, unlabelled; "emoji:faces" only the
//     yellow faces of Unicode's Smileys & Emotion group (faceEmoji, about 110 images);
//   - "dir:PATH" (or just PATH when it is none of the names above and names an existing
//     folder): every PNG/JPEG file under PATH, 3 channels, unlabelled.
//
// The split defaults to train. The 28×28 digit sets are returned as they are for size 28,
// centre-padded with background -1 for size 32 (the usual way to feed them to 32×32 models) and
// area-resampled from 28×28 for any other size. Colour images are composited on white,
// centre-padded to a square with white and area-resampled to size×size.
func Load(spec string, size int) (*Set, error) {
	if size < 1 || size > MaxSize {
		return nil, fmt.Errorf("imgdata: image size %d out of range [1, %d]", size, MaxSize)
	}
	if path, ok := strings.CutPrefix(spec, "dir:"); ok {
		if path == "" {
			return nil, errors.New(`imgdata: "dir:" needs a folder path, e.g. dir:./photos`)
		}
		return loadFolder(path, size)
	}
	name, split, hasSplit := strings.Cut(spec, ":")
	switch name {
	case "mnist", "fashion":
		if !hasSplit {
			split = "train"
		}
		if split != "train" && split != "test" {
			return nil, fmt.Errorf("imgdata: unknown split %q in %q: want %s:train or %s:test", split, spec, name, name)
		}
		if name == "mnist" {
			return loadMNIST(split, size)
		}
		return loadFashion(split, size)
	case "emoji":
		if hasSplit && split != "faces" {
			return nil, fmt.Errorf("imgdata: unknown emoji subset %q in %q: want emoji (all) or emoji:faces (the emoji set has no train/test splits)", split, spec)
		}
		return loadEmoji(emojiFontPath, size, hasSplit)
	}
	if fi, err := os.Stat(spec); err == nil && fi.IsDir() {
		return loadFolder(spec, size)
	}
	return nil, fmt.Errorf("imgdata: unknown data set %q: want mnist[:train|:test], fashion[:train|:test], emoji, emoji:faces, or dir:PATH (a folder of PNG/JPEG images)", spec)
}
