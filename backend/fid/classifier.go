package fid

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"asbm/weights"
)

// KindClassifier is the weights.Arch.Kind of a Classifier file.
const KindClassifier = "classifier"

// Classifier is the FID feature network of the labelled gray sets (MNIST, Fashion-MNIST): a small
// convolutional net. Conv level l is a 3×3 convolution with stride 2 and zero padding 1 to
// Base·Mults[l] channels, plus a bias, then ReLU (each level halves the resolution, as in
// RandConv); the last level is flattened (channel, row, column order) and followed by Layers
// fully connected ReLU layers of width Hidden and a linear output layer of one logit per class.
// With no Mults it is a plain MLP. Linear weights are [in, out] (y = x·W + b, model/mlp.go's
// convention), conv weights [cout, cin, 3, 3] (model/unet.go's).
//
// The FID features are the ReLU outputs of the last hidden fully connected layer: the
// penultimate layer, Hidden values per image.
//
// Its arch is weights.Arch{Kind: "classifier", Dim: C·H·W, Channels: C, Height: H, Width: W, Base,
// Mults, Hidden, Layers}; the tensors are c{l}.w [Base·Mults[l], cin, 3, 3] and c{l}.b for each
// conv level, l{k}.w [in, Hidden] and l{k}.b for each hidden layer, out.w [Hidden, classes] and
// out.b [classes].
//
// Inputs are images in the imgdata range [-1, 1]; every pixel is clamped to it first, because
// generated samples overshoot slightly and are shown clamped.
type Classifier struct {
	arch   weights.Arch
	cw, cb [][]float32 // conv level l: [cout, cin, 3, 3] and [cout]
	// w[k] is [in, out] row-major and b[k] has out entries; k = 0..Layers−1 are the hidden
	// layers, k = Layers the output layer.
	w, b [][]float32
	meta map[string]any
}

var _ Extractor = (*Classifier)(nil)

// checkClassifierArch reports an arch no Classifier can have.
func checkClassifierArch(a weights.Arch) error {
	if a.Kind != KindClassifier {
		return fmt.Errorf("fid: arch kind %q, want %q", a.Kind, KindClassifier)
	}
	if a.Channels < 1 || a.Height < 1 || a.Width < 1 || a.Dim != a.Channels*a.Height*a.Width {
		return fmt.Errorf("fid: classifier arch needs channels, height, width ≥ 1 and dim = channels·height·width; got %+v", a)
	}
	if a.Hidden < 1 || a.Layers < 1 {
		return fmt.Errorf("fid: classifier arch needs hidden ≥ 1 and layers ≥ 1; got %+v", a)
	}
	return checkConvLevels(a)
}

// checkConvLevels reports conv levels (Base, Mults) that do not fit the image: at most 8 levels,
// every multiplier ≥ 1, and height and width divisible by 2 per level. No Mults is valid.
func checkConvLevels(a weights.Arch) error {
	if len(a.Mults) == 0 {
		return nil
	}
	if a.Base < 1 || len(a.Mults) > 8 {
		return fmt.Errorf("fid: conv levels need base ≥ 1 and at most 8 mults; got base %d, mults %v", a.Base, a.Mults)
	}
	for _, m := range a.Mults {
		if m < 1 {
			return fmt.Errorf("fid: conv mults must be ≥ 1; got %v", a.Mults)
		}
	}
	if s := 1 << len(a.Mults); a.Height%s != 0 || a.Width%s != 0 {
		return fmt.Errorf("fid: %d stride-2 conv levels halve the image %d times, so height and width must be multiples of %d; got %d×%d", len(a.Mults), len(a.Mults), s, a.Height, a.Width)
	}
	return nil
}

// convShapes lists the names and shapes of the conv levels' parameters.
func convShapes(a weights.Arch) (names []string, shapes [][]int) {
	cin := a.Channels
	for l, m := range a.Mults {
		cout := a.Base * m
		names = append(names, fmt.Sprintf("c%d.w", l), fmt.Sprintf("c%d.b", l))
		shapes = append(shapes, []int{cout, cin, 3, 3}, []int{cout})
		cin = cout
	}
	return names, shapes
}

// convOut returns the channels, height and width after the conv levels.
func convOut(a weights.Arch) (c, h, w int) {
	c, h, w = a.Channels, a.Height, a.Width
	for _, m := range a.Mults {
		c, h, w = a.Base*m, h/2, w/2
	}
	return c, h, w
}

// classifierShapes lists every parameter name and shape: the conv levels, then the fully
// connected layers in order.
func classifierShapes(a weights.Arch, classes int) (names []string, shapes [][]int) {
	names, shapes = convShapes(a)
	c, h, w := convOut(a)
	in := c * h * w
	for l := range a.Layers {
		names = append(names, fmt.Sprintf("l%d.w", l), fmt.Sprintf("l%d.b", l))
		shapes = append(shapes, []int{in, a.Hidden}, []int{a.Hidden})
		in = a.Hidden
	}
	names = append(names, "out.w", "out.b")
	shapes = append(shapes, []int{in, classes}, []int{classes})
	return names, shapes
}

// newClassifier returns a classifier of arch a with He-normal weights (std √(2/fan_in), suited to
// ReLU; fan_in is cin·9 for a conv) made from the standard normal draws of next, in parameter
// order, and zero biases.
func newClassifier(a weights.Arch, classes int, next func() float64) (*Classifier, error) {
	if err := checkClassifierArch(a); err != nil {
		return nil, err
	}
	if classes < 2 {
		return nil, fmt.Errorf("fid: a classifier needs at least 2 classes, got %d", classes)
	}
	a.Mults = slices.Clone(a.Mults)
	c := &Classifier{arch: a, meta: map[string]any{}}
	_, shapes := classifierShapes(a, classes)
	nConv := len(a.Mults)
	for p := 0; p < len(shapes); p += 2 {
		sh := shapes[p]
		n, fanIn := sh[0]*sh[1], sh[0]
		if p < 2*nConv {
			n, fanIn = sh[0]*sh[1]*9, sh[1]*9
		}
		w := make([]float32, n)
		std := math.Sqrt(2 / float64(fanIn))
		for i := range w {
			w[i] = float32(std * next())
		}
		bias := make([]float32, shapes[p+1][0])
		if p < 2*nConv {
			c.cw, c.cb = append(c.cw, w), append(c.cb, bias)
		} else {
			c.w, c.b = append(c.w, w), append(c.b, bias)
		}
	}
	return c, nil
}

// params returns every parameter slice in classifierShapes order (aliases, not copies).
func (c *Classifier) params() [][]float32 {
	var p [][]float32
	for l := range c.cw {
		p = append(p, c.cw[l], c.cb[l])
	}
	for l := range c.w {
		p = append(p, c.w[l], c.b[l])
	}
	return p
}

// Arch returns the classifier's architecture.
func (c *Classifier) Arch() weights.Arch { return c.arch }

// Classes returns the number of output classes.
func (c *Classifier) Classes() int { return len(c.b[len(c.b)-1]) }

// FeatureDim returns the width of the FID features, Hidden.
func (c *Classifier) FeatureDim() int { return c.arch.Hidden }

// InputShape returns the C, H, W of the images the classifier takes.
func (c *Classifier) InputShape() (ch, h, w int) { return c.arch.Channels, c.arch.Height, c.arch.Width }

// Meta returns the metadata stored with the classifier (data set, accuracy, training settings).
// The map is the classifier's own; do not modify it.
func (c *Classifier) Meta() map[string]any { return c.meta }

// Features returns the penultimate-layer activations (n×FeatureDim, row-major) of the n images
// (n×C×H×W in [-1, 1], NCHW).
func (c *Classifier) Features(images []float32, n int) ([]float32, error) {
	feat, _, err := c.forward(images, n, true, false)
	return feat, err
}

// Logits returns the n×Classes output-layer values of the n images.
func (c *Classifier) Logits(images []float32, n int) ([]float32, error) {
	_, logits, err := c.forward(images, n, false, true)
	return logits, err
}

// Predict returns the most likely class of each of the n images (ties go to the lower class).
func (c *Classifier) Predict(images []float32, n int) ([]int, error) {
	logits, err := c.Logits(images, n)
	if err != nil {
		return nil, err
	}
	k := c.Classes()
	out := make([]int, n)
	for i := range out {
		row := logits[i*k : (i+1)*k]
		out[i] = argmax(row)
	}
	return out, nil
}

// Accuracy returns the fraction of the n images whose predicted class equals labels[i].
func (c *Classifier) Accuracy(images []float32, labels []int, n int) (float64, error) {
	if len(labels) != n {
		return 0, fmt.Errorf("fid: %d labels for %d images", len(labels), n)
	}
	if n == 0 {
		return 0, errors.New("fid: accuracy of zero images")
	}
	pred, err := c.Predict(images, n)
	if err != nil {
		return 0, err
	}
	hit := 0
	for i, p := range pred {
		if p == labels[i] {
			hit++
		}
	}
	return float64(hit) / float64(n), nil
}

// argmax returns the index of the largest value (the first one on ties).
func argmax(row []float32) int {
	best := 0
	for j, v := range row {
		if v > row[best] {
			best = j
		}
	}
	return best
}

// checkImages reports a batch whose length does not match n images of dim values.
func checkImages(images []float32, n, dim int) error {
	if n < 0 {
		return fmt.Errorf("fid: negative image count %d", n)
	}
	if len(images) != n*dim {
		return fmt.Errorf("fid: %d pixel values for %d images of %d values each (want %d)", len(images), n, dim, n*dim)
	}
	return nil
}

// forward runs the network on n images in plain Go, split over the cores by rows. It returns the
// penultimate activations and/or the logits as asked.
func (c *Classifier) forward(images []float32, n int, wantFeat, wantLogits bool) (feat, logits []float32, err error) {
	a := c.arch
	if err := checkImages(images, n, a.Dim); err != nil {
		return nil, nil, err
	}
	k := c.Classes()
	if wantFeat {
		feat = make([]float32, n*a.Hidden)
	}
	if wantLogits {
		logits = make([]float32, n*k)
	}
	parallelRows(n, func(r0, r1 int) {
		x := make([]float32, a.Dim)
		h := make([]float32, a.Hidden)
		h2 := make([]float32, a.Hidden)
		for r := r0; r < r1; r++ {
			for j, v := range images[r*a.Dim : (r+1)*a.Dim] {
				x[j] = min(max(v, -1), 1)
			}
			in := x
			cin, ih, iw := a.Channels, a.Height, a.Width
			for l, m := range a.Mults {
				in = conv3x3s2ReLU(in, c.cw[l], c.cb[l], cin, a.Base*m, ih, iw)
				cin, ih, iw = a.Base*m, ih/2, iw/2
			}
			for l := range a.Layers {
				linear(h, in, c.w[l], c.b[l])
				for j, v := range h {
					h[j] = max(v, 0)
				}
				in = h
				h, h2 = h2, h
			}
			if wantFeat {
				copy(feat[r*a.Hidden:], in)
			}
			if wantLogits {
				linear(logits[r*k:(r+1)*k], in, c.w[a.Layers], c.b[a.Layers])
			}
		}
	})
	return feat, logits, nil
}

// linear writes y = x·W + b for one row x, with W [len(x), len(y)] row-major. The i-outer loop
// walks W row by row (contiguous), which is what keeps this plain-Go product reasonably fast.
func linear(y, x, w, b []float32) {
	m := len(y)
	copy(y, b)
	for i, xi := range x {
		if xi == 0 {
			continue // about half of the ReLU outputs are exactly 0
		}
		row := w[i*m : (i+1)*m : (i+1)*m]
		for j := range y {
			y[j] += xi * row[j]
		}
	}
}

// parallelRows runs fn over [0, n) split into contiguous blocks, one per core.
func parallelRows(n int, fn func(r0, r1 int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		r0, r1 := n*w/workers, n*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(r0, r1)
		}()
	}
	wg.Wait()
}

// File returns the classifier as a weights file (f32 tensors, the metadata copied).
func (c *Classifier) File() *weights.File {
	f := weights.New(c.arch)
	names, shapes := classifierShapes(c.arch, c.Classes())
	for i, p := range c.params() {
		f.AddF32(names[i], shapes[i], p)
	}
	for k, v := range c.meta {
		f.Meta[k] = v
	}
	return f
}

// Save writes the classifier to path (weights.WriteFile: atomic).
func (c *Classifier) Save(path string) error {
	return weights.WriteFile(path, c.File())
}

// ClassifierFromFile builds the classifier stored in f, checking its arch and every tensor's shape.
func ClassifierFromFile(f *weights.File) (*Classifier, error) {
	if f == nil {
		return nil, errors.New("fid: nil weights file")
	}
	if err := checkClassifierArch(f.Arch); err != nil {
		return nil, err
	}
	ob, shape, err := f.Float32("out.b")
	if err != nil {
		return nil, fmt.Errorf("fid: classifier: %w", err)
	}
	if len(shape) != 1 || shape[0] < 2 {
		return nil, fmt.Errorf("fid: classifier: out.b has shape %v, want [classes ≥ 2]", shape)
	}
	a := f.Arch
	a.Mults = slices.Clone(a.Mults)
	c := &Classifier{arch: a, meta: map[string]any{}}
	names, shapes := classifierShapes(a, len(ob))
	nConv := len(a.Mults)
	for i, name := range names {
		v, sh, err := f.Float32(name)
		if err != nil {
			return nil, fmt.Errorf("fid: classifier: %w", err)
		}
		if !slices.Equal(sh, shapes[i]) {
			return nil, fmt.Errorf("fid: classifier: tensor %s has shape %v, the arch needs %v", name, sh, shapes[i])
		}
		switch {
		case i < 2*nConv && i%2 == 0:
			c.cw = append(c.cw, v)
		case i < 2*nConv:
			c.cb = append(c.cb, v)
		case i%2 == 0:
			c.w = append(c.w, v)
		default:
			c.b = append(c.b, v)
		}
	}
	for k, v := range f.Meta {
		c.meta[k] = v
	}
	return c, nil
}

// LoadClassifier reads a classifier written by Save.
func LoadClassifier(path string) (*Classifier, error) {
	f, err := weights.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ClassifierFromFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
