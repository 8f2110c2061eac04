package fid

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"gonum.org/v1/gonum/stat"

	"asbm/backend/imgdata"
	"asbm/weights"
)

// Extractor maps images to the feature vectors FID is computed on.
type Extractor interface {
	// Features returns n×FeatureDim() values, row-major, for n images of InputShape() (NCHW,
	// pixels in [-1, 1]; values outside are clamped).
	Features(images []float32, n int) ([]float32, error)
	// FeatureDim is the width of one feature vector.
	FeatureDim() int
	// InputShape returns the C, H, W of the images it takes.
	InputShape() (c, h, w int)
	// Save writes the extractor as a weights file.
	Save(path string) error
}

// Datasets returns the data sets this package has a feature network and a protocol for.
// "emoji-faces" (the emoji:faces subset) is measured with the emoji feature network.
func Datasets() []string { return []string{"mnist", "fashion", "emoji", "emoji-faces"} }

// FeatureDatasets returns the data sets that own a feature network (TrainAndSave's choices).
func FeatureDatasets() []string { return []string{"mnist", "fashion", "emoji"} }

// ShippedFile returns the path, relative to the repository root, of the shipped feature network of
// a data set: weights/classifier-mnist.msgpack, weights/classifier-fashion.msgpack,
// weights/features-emoji.msgpack.
func ShippedFile(dataset string) (string, error) {
	switch dataset {
	case "mnist", "fashion":
		return "weights/classifier-" + dataset + ".msgpack", nil
	case "emoji", "emoji-faces":
		return "weights/features-emoji.msgpack", nil
	}
	return "", unknownDataset(dataset)
}

// ReferenceSpec returns the imgdata spec of a data set's FID reference: the test split for MNIST
// and Fashion-MNIST ("mnist:test", "fashion:test": 10,000 images that neither the generative
// model nor the classifier trained on), the whole set for emoji and its faces subset
// ("emoji", "emoji:faces": no split exists).
func ReferenceSpec(dataset string) (string, error) {
	switch dataset {
	case "mnist", "fashion":
		return dataset + ":test", nil
	case "emoji":
		return "emoji", nil
	case "emoji-faces":
		return "emoji:faces", nil
	}
	return "", unknownDataset(dataset)
}

func unknownDataset(dataset string) error {
	return fmt.Errorf("fid: unknown data set %q: want %s", dataset, strings.Join(Datasets(), ", "))
}

// Load reads a feature network written by Save (a Classifier or a RandConv, by the file's kind).
func Load(path string) (Extractor, error) {
	f, err := weights.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ex Extractor
	switch f.Arch.Kind {
	case KindClassifier:
		ex, err = ClassifierFromFile(f)
	case KindRandConv:
		ex, err = RandConvFromFile(f)
	default:
		err = fmt.Errorf("fid: arch kind %q is not a feature network (want %q or %q): is this a model file?", f.Arch.Kind, KindClassifier, KindRandConv)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ex, nil
}

// SetFeatures returns the features of every image of s, checking that its image shape is the
// extractor's.
func SetFeatures(ex Extractor, s *imgdata.Set) ([]float32, error) {
	if s == nil {
		return nil, errors.New("fid: nil image set")
	}
	c, h, w := ex.InputShape()
	if s.C != c || s.H != h || s.W != w {
		return nil, fmt.Errorf("fid: set %q has %d×%d×%d images, the feature network takes %d×%d×%d", s.Name, s.C, s.H, s.W, c, h, w)
	}
	return ex.Features(s.Pixels, s.N)
}

// ReferenceStats loads the reference images of a data set (ReferenceSpec) at the extractor's size
// and fits the Gaussian of their features.
func ReferenceStats(ex Extractor, dataset string) (*Stats, error) {
	spec, err := ReferenceSpec(dataset)
	if err != nil {
		return nil, err
	}
	_, h, _ := ex.InputShape()
	s, err := imgdata.Load(spec, h)
	if err != nil {
		return nil, err
	}
	feat, err := SetFeatures(ex, s)
	if err != nil {
		return nil, err
	}
	return ComputeStats(feat, ex.FeatureDim())
}

// Score returns the FID of n images (NCHW in [-1, 1], the extractor's shape) against reference
// statistics, which must come from the same extractor (only their width can be checked).
func Score(ex Extractor, ref *Stats, images []float32, n int) (float64, error) {
	if ref == nil || ref.Dim != ex.FeatureDim() {
		return 0, errors.New("fid: reference statistics missing or of another feature width")
	}
	feat, err := ex.Features(images, n)
	if err != nil {
		return 0, err
	}
	st, err := ComputeStats(feat, ex.FeatureDim())
	if err != nil {
		return 0, err
	}
	return FrechetDistance(st, ref)
}

// FloorRow is one line of a noise-floor report: the FID between two disjoint sets of real images
// of sizes NA and NB, as mean and standard deviation over repeated random draws.
type FloorRow struct {
	What     string
	NA, NB   int
	Mean, SD float64
	Repeats  int
}

// NoiseFloor measures the FID that real images score against real images: no generator beats it
// on average, so a model's FID is read against the floor at the same sample counts. The features
// of the reference images (ReferenceSpec) and, for MNIST and Fashion-MNIST, of the training split
// are computed once; then the rows are
//
//   - the reference split's half vs the other half (5,000 vs 5,000 for the test splits, 1,963
//     vs 1,963 for emoji);
//   - n reference images vs the other half, for each n in counts (n ≤ half; n = half is the row
//     above and is not repeated);
//   - MNIST and Fashion-MNIST only: n training images vs the whole test split, for each n in
//     counts — exactly how a generator trained on the training split is scored (ReferenceStats,
//     Score), with a perfect generator.
//
// Each row is repeated with fresh random draws (seeded by seed) and reported as mean ± SD.
func NoiseFloor(ex Extractor, dataset string, counts []int, repeats int, seed uint64) ([]FloorRow, error) {
	if repeats < 1 {
		return nil, fmt.Errorf("fid: %d repeats, want ≥ 1", repeats)
	}
	for _, n := range counts {
		if n < 2 {
			return nil, fmt.Errorf("fid: sample count %d, want ≥ 2", n)
		}
	}
	refSpec, err := ReferenceSpec(dataset)
	if err != nil {
		return nil, err
	}
	_, size, _ := ex.InputShape()
	ref, err := imgdata.Load(refSpec, size)
	if err != nil {
		return nil, err
	}
	refFeat, err := SetFeatures(ex, ref)
	if err != nil {
		return nil, err
	}
	var trainFeat []float32
	trainName := ""
	if strings.HasSuffix(refSpec, ":test") { // the emoji sets have no split
		trainName = dataset + ":train"
		tr, err := imgdata.Load(trainName, size)
		if err != nil {
			return nil, err
		}
		if trainFeat, err = SetFeatures(ex, tr); err != nil {
			return nil, err
		}
	}
	return noiseFloor(refFeat, trainFeat, ex.FeatureDim(), refSpec, trainName, counts, repeats, seed)
}

// noiseFloor computes NoiseFloor's rows from the features of the reference images and, when
// trainFeat is non-nil, of the training images.
func noiseFloor(refFeat, trainFeat []float32, d int, refName, trainName string, counts []int, repeats int, seed uint64) ([]FloorRow, error) {
	if repeats < 1 {
		return nil, fmt.Errorf("fid: %d repeats, want ≥ 1", repeats)
	}
	nRef := len(refFeat) / d
	half := nRef / 2
	for _, n := range counts {
		if n < 2 || n > half {
			return nil, fmt.Errorf("fid: sample count %d outside [2, %d] (half of the %d reference images)", n, half, nRef)
		}
	}
	r := rand.New(rand.NewPCG(seed, 0x464c4f52)) // "FLOR"
	gather := func(src []float32, idx []int) []float32 {
		out := make([]float32, 0, len(idx)*d)
		for _, i := range idx {
			out = append(out, src[i*d:(i+1)*d]...)
		}
		return out
	}
	// row measures one line; draw returns the two feature sets of one repeat.
	var rows []FloorRow
	row := func(what string, na, nb int, draw func() ([]float32, []float32)) error {
		fr := FloorRow{What: what, NA: na, NB: nb, Repeats: repeats}
		vals := make([]float64, repeats)
		for k := range repeats {
			a, b := draw()
			v, err := FID(a, b, d)
			if err != nil {
				return err
			}
			vals[k] = v
		}
		fr.Mean, fr.SD = stat.MeanStdDev(vals, nil)
		if repeats == 1 {
			fr.SD = 0
		}
		rows = append(rows, fr)
		return nil
	}
	if err := row(fmt.Sprintf("%s half vs the other half", refName), half, nRef-half, func() ([]float32, []float32) {
		p := r.Perm(nRef)
		return gather(refFeat, p[:half]), gather(refFeat, p[half:])
	}); err != nil {
		return nil, err
	}
	for _, n := range counts {
		if n == half {
			continue // the row above
		}
		if err := row(fmt.Sprintf("%d of %s half vs the other half", n, refName), n, nRef-half, func() ([]float32, []float32) {
			p := r.Perm(nRef)
			return gather(refFeat, p[:n]), gather(refFeat, p[half:])
		}); err != nil {
			return nil, err
		}
	}
	if trainFeat != nil {
		nTrain := len(trainFeat) / d
		for _, n := range counts {
			if n > nTrain {
				return nil, fmt.Errorf("fid: sample count %d exceeds the %d training images", n, nTrain)
			}
			if err := row(fmt.Sprintf("%d of %s vs all of %s", n, trainName, refName), n, nRef, func() ([]float32, []float32) {
				return gather(trainFeat, r.Perm(nTrain)[:n]), refFeat
			}); err != nil {
				return nil, err
			}
		}
	}
	return rows, nil
}

// TrainAndSave builds the feature network of a data set and writes it to out: for "mnist" and
// "fashion" it trains a Classifier with DefaultTrainConfig on the 28×28 training split and
// measures it on the test split; for "emoji" it draws the RandConv of DefaultRandConvArch from
// seed 1 (nothing to train). Progress goes to log (may be nil).
func TrainAndSave(dataset string, out string, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	switch dataset {
	case "mnist", "fashion":
		start := time.Now()
		train, err := imgdata.Load(dataset+":train", 28)
		if err != nil {
			return err
		}
		test, err := imgdata.Load(dataset+":test", 28)
		if err != nil {
			return err
		}
		cfg := DefaultTrainConfig()
		cfg.Log = log
		c, st, err := TrainClassifier(train, test, cfg)
		if err != nil {
			return err
		}
		c.meta["trained_by"] = fmt.Sprintf("asbm/backend/fid.TrainAndSave(%q)", dataset)
		if err := c.Save(out); err != nil {
			return err
		}
		fmt.Fprintf(log, "fid: %s classifier: train accuracy %.4f, test accuracy %.4f (%d steps, %.0f s); wrote %s\n",
			dataset, st.TrainAccuracy, st.TestAccuracy, st.Steps, time.Since(start).Seconds(), out)
		return nil
	case "emoji":
		rc, err := NewRandConv(DefaultRandConvArch(), 1)
		if err != nil {
			return err
		}
		rc.meta["dataset"] = "emoji"
		rc.meta["trained_by"] = `asbm/backend/fid.TrainAndSave("emoji") (untrained: random weights from seed 1)`
		if err := rc.Save(out); err != nil {
			return err
		}
		fmt.Fprintf(log, "fid: emoji random-conv feature net (%d features, untrained); wrote %s\n", rc.FeatureDim(), out)
		return nil
	}
	return unknownDataset(dataset)
}
