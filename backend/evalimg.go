package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"asbm/backend/asbm"
	"asbm/backend/fid"
	"asbm/backend/imgdata"
	"asbm/backend/metrics"
	"asbm/shaders"
	"asbm/weights"
)

// `backend eval` on an image model (issue 4): FID against the data set's reference for every
// sampler and step count, straightness of PF-ODE paths, the stage-2 loss floor, and the inversion
// test (asbm.md §6.3 items 3–6, with FID standing in for the toy table's sliced W2).

// imgEvalReport is what `backend eval --json` prints for an image model.
type imgEvalReport struct {
	Model    string `json:"model"`
	Dataset  string `json:"dataset"`
	Device   string `json:"device"`   // "cpu", or "gpu (<adapter>)"
	Features string `json:"features"` // the feature network file FIDs are computed with
	// FeatureInput says how generated images reach the feature network's input: "as is", or a
	// centre crop from the model's 32×32 to the classifier's 28×28 (the inverse of imgdata's padding).
	FeatureInput string `json:"feature_input"`
	Reference    string `json:"reference"` // the imgdata spec of the reference images
	N            int    `json:"n"`         // generated images per FID
	Seed         uint64 `json:"seed"`
	NFE          []int  `json:"nfe"`
	// FID[method][i] is the FID of N images drawn with the method at NFE[i] against the reference
	// statistics; null where the method has no such NFE (the distilled generator is one step, ASBM's
	// NFE 1 is the generator's) or the model file lacks the method's network (see Skipped).
	FID     map[string][]*float64 `json:"fid"`
	Skipped map[string]string     `json:"skipped,omitempty"` // method → why it has no numbers
	// Floor is the FID of N real images against the same reference: what a perfect generator
	// scores at this N.
	Floor        fidFloor                `json:"fid_floor"`
	Straightness map[string]imgPathStats `json:"straightness"`
	// TargetVariance is the stage-2 loss floor of asbm.md §6.3.6 for "asbm" and "baseline".
	TargetVariance map[string]lossFloor `json:"target_variance"`
	// Inversion is the inversion test of asbm.md §6.3.3; absent for unlabelled data sets or when the
	// feature network is not a classifier.
	Inversion *inversionStats `json:"inversion,omitempty"`
	Notes     []string        `json:"notes,omitempty"`
	Seconds   float64         `json:"seconds"`
}

// fidFloor is the noise floor of the FID table: N images drawn at random from the training images
// (From) scored against the reference, mean and standard deviation over Repeats draws.
type fidFloor struct {
	From    string `json:"from"`
	N       int    `json:"n"`
	Repeats int    `json:"repeats"`
	// Replace is true when the set holds fewer than N images and the draw repeats some.
	Replace bool    `json:"with_replacement,omitempty"`
	Mean    float64 `json:"mean"`
	SD      float64 `json:"sd"`
}

// imgPathStats is pathStats (asbm.md §6.3.5, the toy report's definition: S summed over all Dim
// values of an image) plus S divided by Dim, which does not grow with the image size.
type imgPathStats struct {
	pathStats
	SPerValue float64 `json:"S_per_value"`
}

// lossFloor is the stage-2 loss of a trained score network on fresh couplings of held-out images
// (asbm.md §6.3.6): the mean over Pairs × Draws rows of mean_j (σ_t·s(t, x_t)_j − y_j)², t ~ U[1e-5, 1],
// with the regression each network was trained on (asbm.BMTuple on the ASBM coupling, asbm.DSMTuple
// for the memoryless baseline). It is the target variance — the irreducible part, what the noisy
// score targets cost — plus the network's own error, so it bounds the target variance from above.
type lossFloor struct {
	Loss  float64 `json:"loss"`
	SE    float64 `json:"se"` // standard error of Loss over the rows
	Pairs int     `json:"pairs"`
	Draws int     `json:"draws"` // (t, x_t) draws per pair
}

// inversionStats is the inversion test (asbm.md §6.3.3) on labelled held-out images: encode x0 with
// the forward SDE (ASBM: the control on its base; baseline: control ≡ 0 on the memoryless base, the
// plain noising process), decode with the backward SDE, and count the decodes the classifier puts in
// x0's labelled class.
type inversionStats struct {
	Pairs int `json:"pairs"`
	// NFE is both the encoder's time points (NFE−1 Euler–Maruyama steps on linspace(0, 1, NFE)) and the
	// decoder's steps.
	NFE int `json:"nfe"`
	// Kept["asbm"], Kept["baseline"]: P(classifier(x0′) = label(x0)).
	Kept map[string]float64 `json:"kept"`
	// Chance is 1/classes: what a decode that forgot x0 entirely scores.
	Chance float64 `json:"chance"`
	// CleanAccuracy is the classifier's accuracy on the held-out x0 themselves: the ceiling.
	CleanAccuracy float64 `json:"clean_accuracy"`
}

// imgEvalOptions are the settings of evaluateImages.
type imgEvalOptions struct {
	n            int
	nfes         []int
	seed         uint64
	device       string // "cpu" or "gpu"
	features     string // feature network file; "" = the shipped one of the data set
	floorRepeats int
	pathSteps    int
	pathPoints   int
	pairs        int
	invNFE       int
	log          io.Writer // one progress line per job
}

// evalProgress receives the image eval's progress lines (a variable so tests can read them).
var evalProgress io.Writer = os.Stderr

// targetDraws is the number of (t, x_t) draws per held-out pair of the stage-2 loss floor.
const targetDraws = 4

// chanceRate is 1/classes of the shipped classifiers, for the help text.
const chanceRate = 0.1

// flagValue returns the value of the flag name in args (-name v, --name v, -name=v, --name=v), or "".
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		s := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if s == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(s, name+"="); ok {
			return v
		}
	}
	return ""
}

// isImageModelFile reports whether path is a readable model file whose networks are U-Nets. Any
// failure reads as "no": the toy path then reports it.
func isImageModelFile(path string) bool {
	if path == "" {
		return false
	}
	f, err := weights.ReadFile(path)
	return err == nil && f.Arch.Kind == "unet"
}

// parseNFEList parses --nfe-list: comma-separated step counts 1 … 1000, no repeats.
func parseNFEList(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 1 || v > 1000 {
			return nil, usagef("--nfe-list wants comma-separated step counts between 1 and 1000, got %q", s)
		}
		if slices.Contains(out, v) {
			return nil, usagef("--nfe-list repeats %d", v)
		}
		out = append(out, v)
	}
	return out, nil
}

// imgEvalFlags are the flags of `backend eval` on an image model.
type imgEvalFlags struct {
	fs                     *flag.FlagSet
	path, jsonOut, nfeList *string
	asJSON, annotate       *bool
	o                      imgEvalOptions
}

func newImgEvalFlags() *imgEvalFlags {
	fs := newFlags("eval")
	f := &imgEvalFlags{fs: fs, o: imgEvalOptions{log: evalProgress}}
	o := &f.o
	f.path = fs.String("model", "", "image model file (written by backend train)")
	f.asJSON = fs.Bool("json", false, "print JSON instead of tables")
	f.jsonOut = fs.String("json-out", "", "also write the JSON report to this file")
	f.annotate = fs.Bool("annotate", false, "also store the JSON report and this command in the model file's metadata "+
		"(keys eval and eval_command; the file is rewritten atomically), so shipped weights carry their metrics")
	fs.IntVar(&o.n, "n", 256, "generated images per FID, and real images of the noise floor; FIDs are comparable only at "+
		"the same n (backend/fid's protocol: 1,000 for quick checks, 5,000 for reported numbers); below the feature width "+
		"(128) the covariance is rank-deficient")
	f.nfeList = fs.String("nfe-list", "1,2,4,8,16,32,100", "step counts of the FID table; NFE 1 is the distilled generator for ASBM")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the sampling noise, the held-out draws and the floor")
	fs.StringVar(&o.device, "device", "cpu", "cpu (plain-Go networks) or gpu (WGSL kernels on native WebGPU: much faster on a real GPU)")
	fs.StringVar(&o.features, "features", "", "FID feature network file (default: the shipped one of the model's data set, "+
		"weights/classifier-mnist.msgpack, weights/classifier-fashion.msgpack or weights/features-emoji.msgpack, "+
		"looked up from the working directory upwards)")
	fs.IntVar(&o.floorRepeats, "floor-repeats", 3, "draws of n real images for the FID noise floor (mean ± SD)")
	fs.IntVar(&o.pathSteps, "path-steps", 50, "Heun steps of the PF-ODE paths of the straightness measure: "+
		"S = Σ_k Δt·E‖(x1 − x0) − (x_{t_k} − x_{t_k+1})/Δt‖² summed over the image's values, and the path length over the chord (asbm.md §6.3.5)")
	fs.IntVar(&o.pathPoints, "path-points", 32, "PF-ODE paths of the straightness measure")
	fs.IntVar(&o.pairs, "pairs", 128, fmt.Sprintf("held-out images of the inversion test and of the stage-2 loss floor "+
		"(target variance: the σ_t-weighted stage-2 loss of the trained score on fresh couplings, %d (t, x_t) draws per image)", targetDraws))
	fs.IntVar(&o.invNFE, "inv-nfe", 50, fmt.Sprintf("time points of the forward-SDE encoder and steps of the backward-SDE decoder "+
		"of the inversion test (P(classifier(decode(encode(x0))) = label(x0)); chance %.1f)", chanceRate))
	return f
}

// withImageEvalHelp adds the image flags to the 2-D eval's --help (the model decides which apply).
func withImageEvalHelp(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "\nwith an image model (--model naming a U-Net file) the flags are instead:")
		fs := newImgEvalFlags().fs
		fs.SetOutput(os.Stderr)
		fs.PrintDefaults()
	}
	return err
}

func runEvalImages(args []string, stdout io.Writer) error {
	f := newImgEvalFlags()
	if err := parseFlags(f.fs, args); err != nil {
		return err
	}
	o, path, nfeList, asJSON, jsonOut := f.o, f.path, f.nfeList, f.asJSON, f.jsonOut
	var err error
	if o.nfes, err = parseNFEList(*nfeList); err != nil {
		return err
	}
	if o.n < 2 || o.n > 100000 {
		return usagef("--n must be between 2 and 100000, got %d", o.n)
	}
	for k, v := range map[string]int{"--path-steps": o.pathSteps, "--path-points": o.pathPoints, "--pairs": o.pairs, "--inv-nfe": o.invNFE} {
		if v < 2 || v > 100000 {
			return usagef("%s must be between 2 and 100000, got %d", k, v)
		}
	}
	if o.floorRepeats < 1 || o.floorRepeats > 1000 {
		return usagef("--floor-repeats must be between 1 and 1000, got %d", o.floorRepeats)
	}
	if o.device != "cpu" && o.device != "gpu" {
		return usagef("--device must be cpu or gpu, got %q", o.device)
	}
	m, err := loadModel(*path)
	if err != nil {
		return err
	}
	start := time.Now()
	rep, err := evaluateImages(m, o)
	if err != nil {
		return err
	}
	rep.Model = *path
	rep.Seconds = time.Since(start).Seconds()
	if err := writeReport(stdout, rep, *jsonOut, *asJSON, func() { printImageReport(stdout, rep) }); err != nil {
		return err
	}
	if *f.annotate {
		return annotateModel(*path, rep, args)
	}
	return nil
}

// annotateModel stores rep (as JSON) and the eval command that produced it in the model file's
// metadata. The file is read again rather than reusing the loaded model, so only the two keys
// change; weights.WriteFile replaces it atomically.
func annotateModel(path string, rep any, args []string) error {
	js, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	f, err := weights.ReadFile(path)
	if err != nil {
		return err
	}
	f.Meta["eval"] = string(js)
	f.Meta["eval_command"] = "backend eval " + strings.Join(args, " ")
	return weights.WriteFile(path, f)
}

// findUpwards returns rel joined to the working directory or the nearest parent that holds it, so the
// shipped files are found from the repository root and from its sub-folders (go test runs in backend/).
func findUpwards(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("the shipped feature network %s is not in the working directory or any folder above it: run from the repository root or pass --features", rel)
		}
		dir = parent
	}
}

// featureInput returns the map from the model's images (arch shape) to the feature network's input
// shape: the identity when they agree, and for the gray digit sets at 32×32 (which imgdata makes by
// padding the 28×28 originals with background) the centre crop back to 28×28. Any other mismatch is an
// error: resampling generated images would score a different thing than the reference.
func featureInput(arch weights.Arch, ex fid.Extractor, dataset, exPath string) (prep func(x []float32, n int) []float32, how string, resampled bool, err error) {
	c, h, w := ex.InputShape()
	if arch.Channels == c && arch.Height == h && arch.Width == w {
		return func(x []float32, _ int) []float32 { return x }, "as is", false, nil
	}
	if (dataset == "mnist" || dataset == "fashion") && c == 1 && arch.Channels == 1 && h == 28 && w == 28 && arch.Height == 32 && arch.Width == 32 {
		return func(x []float32, n int) []float32 { return centreCrop(x, n, 32, 28) }, "centre crop 32×32 → 28×28", false, nil
	}
	// A model smaller than the feature network (16×16 digits for the 28×28 classifier): every
	// image the FID sees, generated or real, is at the model's size and enlarged by the same area
	// resampling, so the reference and the noise floor are loaded at the model's size too (resampled).
	if arch.Channels == c && arch.Height < h && arch.Width < w {
		ah, aw := arch.Height, arch.Width
		return func(x []float32, n int) []float32 { return imgdata.Resize(x, n, c, ah, aw, h, w) },
			fmt.Sprintf("area resampling %d×%d → %d×%d (reference and floor images too, loaded at %d×%d)", ah, aw, h, w, ah, aw), true, nil
	}
	return nil, "", false, usagef("the model is an image model of %d×%d×%d images, the feature network %s takes %d×%d×%d: pass --features with a feature network of the model's shape (FIDs at other shapes are not comparable with the shipped protocol)",
		arch.Channels, arch.Height, arch.Width, exPath, c, h, w)
}

// centreCrop cuts the centre to×to square out of n one-channel from×from images.
func centreCrop(x []float32, n, from, to int) []float32 {
	off := (from - to) / 2
	out := make([]float32, 0, n*to*to)
	for i := 0; i < n; i++ {
		img := x[i*from*from : (i+1)*from*from]
		for r := off; r < off+to; r++ {
			out = append(out, img[r*from+off:r*from+off+to]...)
		}
	}
	return out
}

// rowSplitNet evaluates a network on parallel slices of its rows. The U-Net treats every image on its
// own (group norm is per image), so the result equals one call on all rows; it only uses the cores.
type rowSplitNet struct {
	net     asbm.Net
	workers int
}

func (s rowSplitNet) Dim() int { return s.net.Dim() }

func (s rowSplitNet) Eval(t, x, out []float32) {
	n, d := len(t), s.net.Dim()
	w := min(s.workers, n)
	if w <= 1 {
		s.net.Eval(t, x, out)
		return
	}
	var wg sync.WaitGroup
	for k := 0; k < w; k++ {
		lo, hi := k*n/w, (k+1)*n/w
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.net.Eval(t[lo:hi], x[lo*d:hi*d], out[lo*d:hi*d])
		}()
	}
	wg.Wait()
}

// gpuEvalNet is a GPU network as an asbm.Net. asbm.Net cannot fail, so the first error is kept in
// *err (shared by the networks of one device) and later calls do nothing; check it after each use.
type gpuEvalNet struct {
	g   *shaders.GPUNet
	err *error
}

func (n gpuEvalNet) Dim() int { return n.g.Arch().Dim }

func (n gpuEvalNet) Eval(t, x, out []float32) {
	if *n.err != nil {
		return
	}
	y, err := n.g.Forward(t, x)
	if err != nil {
		*n.err = err
		return
	}
	copy(out, y)
}

// evalNets are the networks of the path, loss-floor and inversion measures on the chosen device (nil
// where the file lacks one), and a check for a GPU failure.
type evalNets struct {
	score, control, baseline asbm.Net
	check                    func() error
	close                    func()
	adapter                  string
}

func openEvalNets(m *modelFile, device string) (*evalNets, error) {
	if device == "cpu" {
		wrap := func(p string) asbm.Net {
			if n := m.net(p); n != nil {
				return rowSplitNet{n, 2} // this project's machines have 2 cores (see parallel)
			}
			return nil
		}
		return &evalNets{score: wrap(netScore), control: wrap(netControl), baseline: wrap(netBaseline),
			check: func() error { return nil }, close: func() {}}, nil
	}
	dev, err := shaders.NewDevice()
	if err != nil {
		return nil, err
	}
	var gerr error
	var nets []*shaders.GPUNet
	en := &evalNets{adapter: dev.AdapterInfo(), check: func() error { return gerr }, close: func() {
		for _, g := range nets {
			g.Close()
		}
		dev.Close()
	}}
	for _, p := range []struct {
		prefix string
		dst    *asbm.Net
	}{{netScore, &en.score}, {netControl, &en.control}, {netBaseline, &en.baseline}} {
		if m.nets[p.prefix] == nil {
			continue
		}
		g, err := shaders.NewGPUNet(dev, m.nets[p.prefix])
		if err != nil {
			en.close()
			return nil, err
		}
		nets = append(nets, g)
		*p.dst = gpuEvalNet{g, &gerr}
	}
	return en, nil
}

// methodMissing says which networks a method of evalMethods needs and the file lacks, as the "skipped" reason ("" when it has them all).
func methodMissing(m *modelFile, method string) string {
	need := map[string][]string{
		"asbm-sde": {netScore}, "asbm-ode": {netScore, netControl}, "distilled": {netGen},
		"baseline-sde": {netBaseline}, "baseline-ode": {netBaseline},
	}[method]
	var miss []string
	for _, p := range need {
		if m.nets[p] == nil {
			miss = append(miss, strings.TrimSuffix(p, "/"))
		}
	}
	if len(miss) == 0 {
		return ""
	}
	return fmt.Sprintf("the model file has no %s network", strings.Join(miss, " or "))
}

// heldOutImages draws k images (and their labels, nil when unlabelled) at random from s, which must
// be at the model's shape: the MNIST test split is ordered by writer group, so never take them from
// the front.
func heldOutImages(s *imgdata.Set, arch weights.Arch, k int, seed uint64) ([]float32, []int, error) {
	if s.C != arch.Channels || s.H != arch.Height || s.W != arch.Width {
		return nil, nil, fmt.Errorf("held-out set %s has %d×%d×%d images, the model %d×%d×%d", s.Name, s.C, s.H, s.W, arch.Channels, arch.Height, arch.Width)
	}
	if k > s.N {
		return nil, nil, usagef("--pairs %d exceeds the %d images of %s", k, s.N, s.Name)
	}
	perm := rand.New(rand.NewPCG(seed, 0x68656c64)).Perm(s.N)[:k]
	x := make([]float32, 0, k*s.Dim())
	var labels []int
	for _, i := range perm {
		x = append(x, s.Image(i)...)
		if s.Labels != nil {
			labels = append(labels, s.Labels[i])
		}
	}
	return x, labels, nil
}

// fidNoiseFloor scores n images drawn at random from s (at the feature network's shape) against ref,
// repeats times. The draw is without replacement when s holds at least n images; a smaller set
// (emoji:faces has 109) is drawn with replacement, which is exactly a perfect generator of the
// finite set: it too draws each image with probability 1/N, repeats and all.
func fidNoiseFloor(ex fid.Extractor, ref *fid.Stats, s *imgdata.Set, prep func([]float32, int) []float32, n, repeats int, seed uint64) (fidFloor, error) {
	fl := fidFloor{From: s.Name, N: n, Repeats: repeats, Replace: n > s.N}
	var err error
	r := rand.New(rand.NewPCG(seed, 0x666c6f72)) // "flor"
	vals := make([]float64, repeats)
	for k := range vals {
		x := make([]float32, 0, n*s.Dim())
		if fl.Replace {
			for range n {
				x = append(x, s.Image(r.IntN(s.N))...)
			}
		} else {
			for _, i := range r.Perm(s.N)[:n] {
				x = append(x, s.Image(i)...)
			}
		}
		if vals[k], err = fid.Score(ex, ref, prep(x, n), n); err != nil {
			return fl, fmt.Errorf("FID noise floor: %w", err)
		}
		fl.Mean += vals[k] / float64(repeats)
	}
	if repeats > 1 {
		for _, v := range vals {
			fl.SD += (v - fl.Mean) * (v - fl.Mean)
		}
		fl.SD = math.Sqrt(fl.SD / float64(repeats-1))
	}
	return fl, nil
}

// stage2LossFloor is lossFloor for a score network: draws × (tuple of the pairs, loss per row).
func stage2LossFloor(score asbm.Net, tuple func() (asbm.Tuple, error), pairs, draws, d int) (lossFloor, error) {
	var rows []float64
	for range draws {
		tp, err := tuple()
		if err != nil {
			return lossFloor{}, err
		}
		f := make([]float32, len(tp.X))
		score.Eval(tp.T, tp.X, f)
		for i := range tp.T {
			w := float64(tp.W[i])
			var l float64
			for j := i * d; j < (i+1)*d; j++ {
				e := w*float64(f[j]) - float64(tp.Y[j])
				l += e * e
			}
			rows = append(rows, l/float64(d))
		}
	}
	var mean, v float64
	for _, l := range rows {
		mean += l / float64(len(rows))
	}
	for _, l := range rows {
		v += (l - mean) * (l - mean)
	}
	se := math.Sqrt(v / float64(len(rows)-1) / float64(len(rows)))
	return lossFloor{Loss: mean, SE: se, Pairs: pairs, Draws: draws}, nil
}

func evaluateImages(m *modelFile, o imgEvalOptions) (*imgEvalReport, error) {
	if o.log == nil {
		o.log = io.Discard
	}
	arch := m.nets[netScore].Arch
	d := arch.Dim
	dataset := m.dataset()
	if !slices.Contains(fid.Datasets(), dataset) {
		return nil, fmt.Errorf("%s was trained on %q: FID needs a data set with a reference and a feature network (%s)", m.path, dataset, strings.Join(fid.Datasets(), ", "))
	}
	rep := &imgEvalReport{Dataset: dataset, Device: o.device, N: o.n, Seed: o.seed, NFE: o.nfes,
		FID: map[string][]*float64{}, Skipped: map[string]string{}, Straightness: map[string]imgPathStats{},
		TargetVariance: map[string]lossFloor{}}
	logf := func(format string, a ...any) { fmt.Fprintf(o.log, "eval: "+format+"\n", a...) }

	// The feature network, its input map, and the reference statistics.
	rep.Features = o.features
	if rep.Features == "" {
		rel, err := fid.ShippedFile(dataset)
		if err != nil {
			return nil, err
		}
		if rep.Features, err = findUpwards(rel); err != nil {
			return nil, err
		}
	}
	ex, err := fid.Load(rep.Features)
	if err != nil {
		return nil, err
	}
	toFeat, how, resampled, err := featureInput(arch, ex, dataset, rep.Features)
	if err != nil {
		return nil, err
	}
	rep.FeatureInput = how
	if rep.Reference, err = fid.ReferenceSpec(dataset); err != nil {
		return nil, err
	}
	// Image sets, each loaded once (emoji decodes thousands of PNGs).
	sets := map[string]*imgdata.Set{}
	load := func(spec string, size int) (*imgdata.Set, error) {
		key := fmt.Sprintf("%s@%d", spec, size)
		if sets[key] == nil {
			s, err := imgdata.Load(spec, size)
			if err != nil {
				return nil, err
			}
			sets[key] = s
		}
		return sets[key], nil
	}
	// Held-out images for the loss floor and the inversion test: the test split (neither the model
	// nor the classifier trained on it), or all of emoji, which has no split.
	heldSpec, floorSpec := dataset+":test", dataset+":train"
	if !strings.HasSuffix(rep.Reference, ":test") {
		heldSpec, floorSpec = rep.Reference, rep.Reference
		rep.Notes = append(rep.Notes, dataset+" has no test split: the stage-2 loss floor uses training images")
	}
	held, err := load(heldSpec, arch.Height)
	if err != nil {
		return nil, err
	}
	if o.pairs > held.N {
		// A small set (emoji:faces has 109 images) uses all of its images instead of refusing the
		// default --pairs.
		rep.Notes = append(rep.Notes, fmt.Sprintf("--pairs %d exceeds the %d images of %s: using all %d", o.pairs, held.N, held.Name, held.N))
		o.pairs = held.N
	}
	x0, labels, err := heldOutImages(held, arch, o.pairs, o.seed)
	if err != nil {
		return nil, err
	}
	// The reference statistics, as fid.ReferenceStats computes them, and the noise floor: n training
	// images (emoji: the whole set, which the generator trains on and the reference is) against them.
	t0 := time.Now()
	_, exH, _ := ex.InputShape()
	realH, realPrep := exH, func(x []float32, _ int) []float32 { return x }
	if resampled {
		realH, realPrep = arch.Height, toFeat
	}
	refSet, err := load(rep.Reference, realH)
	if err != nil {
		return nil, err
	}
	refFeat, err := ex.Features(realPrep(refSet.Pixels, refSet.N), refSet.N)
	if err != nil {
		return nil, err
	}
	ref, err := fid.ComputeStats(refFeat, ex.FeatureDim())
	if err != nil {
		return nil, err
	}
	floorSet, err := load(floorSpec, realH)
	if err != nil {
		return nil, err
	}
	if rep.Floor, err = fidNoiseFloor(ex, ref, floorSet, realPrep, o.n, o.floorRepeats, o.seed); err != nil {
		return nil, err
	}
	logf("reference %s and noise floor %.3f ± %.3f at n = %d (%.1f s)", rep.Reference, rep.Floor.Mean, rep.Floor.SD, o.n, time.Since(t0).Seconds())

	// The FID table: one job per (method, NFE); on the CPU two at a time, on the GPU one at a time.
	type job struct {
		method string
		i      int
		r      request
	}
	var jobs []job
	for _, me := range evalMethods {
		rep.FID[me.name] = make([]*float64, len(o.nfes))
		if why := methodMissing(m, me.name); why != "" {
			rep.Skipped[me.name] = why
			logf("%s skipped: %s", me.name, why)
			continue
		}
		for i, nfe := range o.nfes {
			if r, ok := methodRequest(me.net, me.sampler, nfe, o.n, o.seed); ok {
				jobs = append(jobs, job{me.name, i, r})
			}
		}
	}
	var mu sync.Mutex
	var firstErr error
	done := 0
	runJob := func(k int) {
		j := jobs[k]
		t0 := time.Now()
		var imgs []float32
		var err error
		if o.device == "gpu" {
			var adapter string
			imgs, adapter, err = sampleGPU(m, j.r)
			mu.Lock()
			rep.Device = "gpu (" + adapter + ")"
			mu.Unlock()
		} else {
			imgs, err = sampleCPU(m, j.r, nil)
		}
		var v float64
		if err == nil {
			v, err = fid.Score(ex, ref, toFeat(imgs, o.n), o.n)
		}
		mu.Lock()
		defer mu.Unlock()
		done++
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s at NFE %d: %w", j.method, o.nfes[j.i], err)
			}
			return
		}
		rep.FID[j.method][j.i] = &v
		logf("[%d/%d] %s NFE %d: FID %.3f (%.1f s)", done, len(jobs), j.method, o.nfes[j.i], v, time.Since(t0).Seconds())
	}
	if o.device == "gpu" {
		for k := range jobs {
			if runJob(k); firstErr != nil {
				break
			}
		}
	} else {
		parallel(len(jobs), runJob)
	}
	if firstErr != nil {
		return nil, firstErr
	}

	nets, err := openEvalNets(m, o.device)
	if err != nil {
		return nil, err
	}
	defer nets.close()
	if nets.adapter != "" {
		rep.Device = "gpu (" + nets.adapter + ")"
	}

	// Straightness of PF-ODE paths, ASBM against the baseline (asbm.md §6.3.5), from the same x1.
	z := asbm.SamplePrior(asbm.NewNoise(o.seed+2), o.pathPoints, d)
	for _, p := range []struct {
		name           string
		score, control asbm.Net
		vp             asbm.VP
	}{{"asbm-ode", nets.score, nets.control, m.vp}, {"baseline-ode", nets.baseline, nil, m.baseVP}} {
		if p.score == nil || p.name == "asbm-ode" && p.control == nil {
			continue // listed in Skipped already
		}
		t0 := time.Now()
		traj, err := asbm.SampleODETrajectory(p.score, p.control, p.vp, z, o.pathSteps)
		if err == nil {
			err = nets.check()
		}
		if err != nil {
			return nil, fmt.Errorf("straightness of %s: %w", p.name, err)
		}
		s, ratio := metrics.Straightness(traj, asbm.BackwardGrid(o.pathSteps), d)
		rep.Straightness[p.name] = imgPathStats{pathStats{S: s, LengthRatio: ratio, Steps: o.pathSteps, Points: o.pathPoints}, s / float64(d)}
		logf("%s paths: S %.4g, length ratio %.4f (%.1f s)", p.name, s, ratio, time.Since(t0).Seconds())
	}

	// Couplings of the held-out images: the forward SDE with the control (ASBM) and without it on the
	// memoryless base (baseline), from the same noise.
	var x1, x1b []float32
	if nets.control != nil {
		if x1, err = asbm.Encode(nets.control, m.vp, x0, d, o.invNFE, asbm.NewNoise(o.seed+4)); err == nil {
			err = nets.check()
		}
		if err != nil {
			return nil, fmt.Errorf("encoding the held-out images: %w", err)
		}
	}
	if nets.baseline != nil {
		if x1b, err = asbm.Encode(nil, m.baseVP, x0, d, o.invNFE, asbm.NewNoise(o.seed+4)); err != nil {
			return nil, fmt.Errorf("encoding the held-out images (baseline): %w", err)
		}
	}

	// Target variance: the stage-2 loss floor of each score network (asbm.md §6.3.6).
	if x1 != nil {
		noise := asbm.NewNoise(o.seed + 8)
		lf, err := stage2LossFloor(nets.score, func() (asbm.Tuple, error) { return asbm.BMTuple(m.vp, x0, x1, d, noise) }, o.pairs, targetDraws, d)
		if err == nil {
			err = nets.check()
		}
		if err != nil {
			return nil, fmt.Errorf("stage-2 loss floor (asbm): %w", err)
		}
		rep.TargetVariance["asbm"] = lf
	}
	if nets.baseline != nil {
		noise := asbm.NewNoise(o.seed + 8)
		lf, err := stage2LossFloor(nets.baseline, func() (asbm.Tuple, error) { return asbm.DSMTuple(m.baseVP, x0, d, noise) }, o.pairs, targetDraws, d)
		if err == nil {
			err = nets.check()
		}
		if err != nil {
			return nil, fmt.Errorf("stage-2 loss floor (baseline): %w", err)
		}
		rep.TargetVariance["baseline"] = lf
	}
	for _, k := range []string{"asbm", "baseline"} {
		if lf, ok := rep.TargetVariance[k]; ok {
			logf("stage-2 loss floor %s: %.4g ± %.2g", k, lf.Loss, lf.SE)
		}
	}

	// Inversion test (asbm.md §6.3.3): encode with the forward SDE, decode with the backward SDE, and
	// ask the classifier whether the decode kept x0's class.
	cls, isClassifier := ex.(*fid.Classifier)
	switch {
	case labels == nil:
		rep.Notes = append(rep.Notes, fmt.Sprintf("no inversion test: %s is unlabelled", dataset))
	case !isClassifier:
		rep.Notes = append(rep.Notes, fmt.Sprintf("no inversion test: the feature network %s is not a classifier", rep.Features))
	default:
		inv := &inversionStats{Pairs: o.pairs, NFE: o.invNFE, Kept: map[string]float64{}, Chance: 1 / float64(cls.Classes())}
		if inv.CleanAccuracy, err = cls.Accuracy(toFeat(x0, o.pairs), labels, o.pairs); err != nil {
			return nil, err
		}
		for _, p := range []struct {
			name  string
			x1    []float32
			score asbm.Net
			vp    asbm.VP
		}{{"asbm", x1, nets.score, m.vp}, {"baseline", x1b, nets.baseline, m.baseVP}} {
			if p.x1 == nil {
				continue
			}
			t0 := time.Now()
			back, err := asbm.SampleSDE(p.score, p.vp, p.x1, o.invNFE, asbm.NewNoise(o.seed+7), nil)
			if err == nil {
				err = nets.check()
			}
			if err != nil {
				return nil, fmt.Errorf("inversion test (%s): %w", p.name, err)
			}
			if inv.Kept[p.name], err = cls.Accuracy(toFeat(back, o.pairs), labels, o.pairs); err != nil {
				return nil, fmt.Errorf("inversion test (%s): %w", p.name, err)
			}
			logf("inversion %s: class kept %.3f (%.1f s)", p.name, inv.Kept[p.name], time.Since(t0).Seconds())
		}
		rep.Inversion = inv
	}
	if len(rep.Skipped) == 0 {
		rep.Skipped = nil
	}
	return rep, nil
}

func printImageReport(w io.Writer, r *imgEvalReport) {
	fmt.Fprintf(w, "model %s (data set %s) on %s: FID of %d images (seed %d) against %s, features %s (input %s)\n",
		r.Model, r.Dataset, r.Device, r.N, r.Seed, r.Reference, r.Features, r.FeatureInput)
	drawn := ""
	if r.Floor.Replace {
		drawn = ", drawn with replacement"
	}
	fmt.Fprintf(w, "noise floor (%d random %s images%s, %d draws): %.3f ± %.3f; FIDs compare only at the same n and feature file\n\n",
		r.Floor.N, r.Floor.From, drawn, r.Floor.Repeats, r.Floor.Mean, r.Floor.SD)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"FID ↓ / NFE"}
	for _, k := range r.NFE {
		head = append(head, fmt.Sprint(k))
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, me := range evalMethods {
		if _, skip := r.Skipped[me.name]; skip {
			continue
		}
		fmt.Fprintln(tw, strings.Join(tableRow(me.name, r.FID[me.name], "%.3f"), "\t")+"\t")
	}
	tw.Flush()
	for _, me := range evalMethods {
		if why, skip := r.Skipped[me.name]; skip {
			fmt.Fprintf(w, "%s: skipped (%s)\n", me.name, why)
		}
	}
	fmt.Fprintln(w)
	if len(r.Straightness) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "PF-ODE paths\tstraightness S ↓\tS per value ↓\tlength ratio ↓\t")
		for _, k := range []string{"asbm-ode", "baseline-ode"} {
			if p, ok := r.Straightness[k]; ok {
				fmt.Fprintf(tw, "%s\t%.4g\t%.4g\t%.4f\t\n", k, p.S, p.SPerValue, p.LengthRatio)
			}
		}
		tw.Flush()
		for _, p := range r.Straightness {
			fmt.Fprintf(w, "(%d paths of %d Heun steps from the same x1)\n\n", p.Points, p.Steps)
			break
		}
	}
	if len(r.TargetVariance) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "stage-2 loss floor (target variance bound) ↓\tloss\t± SE\t")
		for _, k := range []string{"asbm", "baseline"} {
			if lf, ok := r.TargetVariance[k]; ok {
				fmt.Fprintf(tw, "%s\t%.4g\t%.2g\t\n", k, lf.Loss, lf.SE)
			}
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	if inv := r.Inversion; inv != nil {
		fmt.Fprintf(w, "inversion test (%d held-out images, SDE encode %d points → SDE decode %d steps; class kept by the classifier):\n", inv.Pairs, inv.NFE, inv.NFE)
		var parts []string
		for _, k := range []string{"asbm", "baseline"} {
			if v, ok := inv.Kept[k]; ok {
				parts = append(parts, fmt.Sprintf("%s %.3f", k, v))
			}
		}
		fmt.Fprintf(w, "  %s; chance %.3f, classifier on the clean images %.3f\n", strings.Join(parts, ", "), inv.Chance, inv.CleanAccuracy)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "(%.0f s)\n", r.Seconds)
}
