package eval

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"asbm/backend/cli"
	"asbm/backend/fid"
	"asbm/backend/imgdata"
	"asbm/backend/modelfile"
	"asbm/backend/sample"
	"asbm/weights"
)

// `backend eval` on an image model (issue 4): FID against the data set's reference for every
// sampler and step count, straightness of PF-ODE paths, the stage-2 loss floor, and the inversion
// test (asbm.md §6.3 items 3–6, with FID standing in for the toy table's sliced W2).

// imgEvalReport is what `backend eval --json` prints for an image model.
type imgEvalReport struct {
	Model    string `json:"model"`
	Dataset  string `json:"dataset"`
	Device   string `json:"device"`   // "cpu", "ref", or "gpu (<adapter>)"
	Features string `json:"features"` // the feature network file FIDs are computed with
	// FeatureInput says how generated images reach the feature network's input: "as is", or a
	// centre crop from the model's 32×32 to the classifier's 28×28 (the inverse of imgdata's padding).
	FeatureInput string `json:"feature_input"`
	Reference    string `json:"reference"` // the imgdata spec of the reference images
	N            int    `json:"n"`         // generated images per FID
	Seed         uint64 `json:"seed"`
	NFE          []int  `json:"nfe"`
	// Denoise says the SDE and ODE rows end with Tweedie's x0 (sample.Request.Denoise); false in
	// reports from before the option, which used the Euler step.
	Denoise bool `json:"denoise"`
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
	denoise      bool            // sample.Request.Denoise for the FID table
	methods      map[string]bool // the FID table's rows (evalMethods names); nil: all
	fidOnly      bool            // stop after the FID table (no paths, couplings, loss floors, inversion)
	device       string          // "cpu", "ref" or "gpu"
	features     string          // feature network file; "" = the shipped one of the data set
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
			return nil, cli.Usagef("--nfe-list wants comma-separated step counts between 1 and 1000, got %q", s)
		}
		if slices.Contains(out, v) {
			return nil, cli.Usagef("--nfe-list repeats %d", v)
		}
		out = append(out, v)
	}
	return out, nil
}

// imgEvalFlags are the flags of `backend eval` on an image model.
type imgEvalFlags struct {
	fs                                           *flag.FlagSet
	path, jsonOut, nfeList, consistency, methods *string
	asJSON, annotate                             *bool
	o                                            imgEvalOptions
	c                                            consistencyOptions
}

func newImgEvalFlags() *imgEvalFlags {
	fs := cli.NewFlags("eval")
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
	f.methods = fs.String("methods", "", "only these rows of the FID table, comma-separated (default all: "+strings.Join(methodNames(), ", ")+")")
	fs.BoolVar(&o.fidOnly, "fid-only", false, "image models: only the FID table and its noise floor (no PF-ODE straightness, "+
		"stage-2 loss floor or inversion test, which take minutes on large networks)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the sampling noise, the held-out draws and the floor")
	fs.BoolVar(&o.denoise, "denoise", false, sample.DenoiseUsage)
	fs.StringVar(&o.device, "device", "cpu", "cpu (the gorgonia training engine, OpenBLAS), ref (the plain-Go reference networks, ~10× slower) or gpu (WGSL kernels on native WebGPU: much faster on a real GPU)")
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
	f.consistency = fs.String("consistency", "", "instead of the FID report, measure each network's self-consistency "+
		"at these comma-separated times in (0, 1), e.g. 0.1,0.3,0.5,0.7,0.9: the error of ASBM's control u_θ, its score s_ψ and "+
		"the baseline's score against the Monte Carlo expectation of their bridge-matching targets under their own "+
		"forward (control) or backward (scores) SDE — where the PF-ODE's drift error comes from")
	fs.IntVar(&f.c.anchors, "consistency-anchors", 32, "held-out images carried to each time t by the model's forward SDE (the anchors x_t)")
	fs.IntVar(&f.c.draws, "consistency-draws", 16, "SDE continuations from each anchor (the Monte Carlo expectation; its variance is subtracted)")
	fs.IntVar(&f.c.perUnit, "consistency-steps", 50, "Euler–Maruyama steps per unit time of the anchors and the continuations")
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
	if err := cli.ParseFlags(f.fs, args); err != nil {
		return err
	}
	o, path, nfeList, asJSON, jsonOut := f.o, f.path, f.nfeList, f.asJSON, f.jsonOut
	var err error
	if o.nfes, err = parseNFEList(*nfeList); err != nil {
		return err
	}
	if *f.methods != "" {
		o.methods = map[string]bool{}
		for _, name := range strings.Split(*f.methods, ",") {
			if !slices.Contains(methodNames(), name) {
				return cli.Usagef("--methods: unknown row %q: want some of %s", name, strings.Join(methodNames(), ", "))
			}
			o.methods[name] = true
		}
	}
	if o.n < 2 || o.n > 100000 {
		return cli.Usagef("--n must be between 2 and 100000, got %d", o.n)
	}
	for k, v := range map[string]int{"--path-steps": o.pathSteps, "--path-points": o.pathPoints, "--pairs": o.pairs, "--inv-nfe": o.invNFE} {
		if v < 2 || v > 100000 {
			return cli.Usagef("%s must be between 2 and 100000, got %d", k, v)
		}
	}
	if o.floorRepeats < 1 || o.floorRepeats > 1000 {
		return cli.Usagef("--floor-repeats must be between 1 and 1000, got %d", o.floorRepeats)
	}
	if o.device != "cpu" && o.device != "ref" && o.device != "gpu" {
		return cli.Usagef("--device must be cpu, ref or gpu, got %q", o.device)
	}
	if *f.consistency != "" {
		return runConsistency(f, stdout)
	}
	m, err := modelfile.Load(*path)
	if err != nil {
		return err
	}
	m.CPUEngine = o.device == "cpu"
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
	return nil, "", false, cli.Usagef("the model is an image model of %d×%d×%d images, the feature network %s takes %d×%d×%d: pass --features with a feature network of the model's shape (FIDs at other shapes are not comparable with the shipped protocol)",
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
