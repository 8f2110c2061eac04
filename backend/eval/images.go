package eval

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"gonum.org/v1/gonum/stat"

	"asbm/backend/asbm"
	"asbm/backend/cli"
	"asbm/backend/fid"
	"asbm/backend/imgdata"
	"asbm/backend/metrics"
	"asbm/backend/modelfile"
	"asbm/backend/sample"
	"asbm/weights"
)

// heldOutImages draws k images (and their labels, nil when unlabelled) at random from s, which must
// be at the model's shape: the MNIST test split is ordered by writer group, so never take them from
// the front.
func heldOutImages(s *imgdata.Set, arch weights.Arch, k int, seed uint64) ([]float32, []int, error) {
	if s.C != arch.Channels || s.H != arch.Height || s.W != arch.Width {
		return nil, nil, fmt.Errorf("held-out set %s has %d×%d×%d images, the model %d×%d×%d", s.Name, s.C, s.H, s.W, arch.Channels, arch.Height, arch.Width)
	}
	if k > s.N {
		return nil, nil, cli.Usagef("--pairs %d exceeds the %d images of %s", k, s.N, s.Name)
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

// heldOutSpecs returns the imgdata specs of the held-out images (the test split, which neither the
// model nor the classifier trained on) and of the noise floor's real images (the training split) of a
// data set whose FID reference is reference; a set with no split (emoji) uses the reference for both.
func heldOutSpecs(dataset, reference string) (held, floor string) {
	if !strings.HasSuffix(reference, ":test") {
		return reference, reference
	}
	return dataset + ":test", dataset + ":train"
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
	}
	fl.Mean, fl.SD = stat.MeanStdDev(vals, nil)
	if repeats == 1 {
		fl.SD = 0
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

func evaluateImages(m *modelfile.File, o imgEvalOptions) (*imgEvalReport, error) {
	if o.log == nil {
		o.log = io.Discard
	}
	arch := m.Nets[modelfile.Score].Arch
	d := arch.Dim
	dataset := m.Dataset()
	if !slices.Contains(fid.Datasets(), dataset) {
		return nil, fmt.Errorf("%s was trained on %q: FID needs a data set with a reference and a feature network (%s)", m.Path, dataset, strings.Join(fid.Datasets(), ", "))
	}
	rep := &imgEvalReport{Dataset: dataset, Device: o.device, N: o.n, Seed: o.seed, NFE: o.nfes, Denoise: o.denoise,
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
	heldSpec, floorSpec := heldOutSpecs(dataset, rep.Reference)
	if heldSpec != dataset+":test" {
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
		r      sample.Request
	}
	var jobs []job
	for _, me := range evalMethods {
		if o.methods != nil && !o.methods[me.name] {
			continue
		}
		rep.FID[me.name] = make([]*float64, len(o.nfes))
		if why := methodMissing(m, me.name); why != "" {
			rep.Skipped[me.name] = why
			logf("%s skipped: %s", me.name, why)
			continue
		}
		for i, nfe := range o.nfes {
			if r, ok := methodRequest(me.net, me.sampler, nfe, o.n, o.seed, o.denoise); ok {
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
			imgs, adapter, err = sample.GPU(m, j.r)
			mu.Lock()
			rep.Device = "gpu (" + adapter + ")"
			mu.Unlock()
		} else {
			imgs, err = sample.CPU(m, j.r, nil)
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

	if len(rep.Skipped) == 0 {
		rep.Skipped = nil // only the FID table skips methods
	}
	if o.fidOnly {
		rep.Notes = append(rep.Notes, "--fid-only: no straightness, stage-2 loss floor or inversion test")
		return rep, nil
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
	}{{"asbm-ode", nets.score, nets.control, m.VP}, {"baseline-ode", nets.baseline, nil, m.BaseVP}} {
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
		if x1, err = asbm.Encode(nets.control, m.VP, x0, d, o.invNFE, asbm.NewNoise(o.seed+4)); err == nil {
			err = nets.check()
		}
		if err != nil {
			return nil, fmt.Errorf("encoding the held-out images: %w", err)
		}
	}
	if nets.baseline != nil {
		if x1b, err = asbm.Encode(nil, m.BaseVP, x0, d, o.invNFE, asbm.NewNoise(o.seed+4)); err != nil {
			return nil, fmt.Errorf("encoding the held-out images (baseline): %w", err)
		}
	}

	// Target variance: the stage-2 loss floor of each score network (asbm.md §6.3.6).
	if x1 != nil {
		noise := asbm.NewNoise(o.seed + 8)
		lf, err := stage2LossFloor(nets.score, func() (asbm.Tuple, error) { return asbm.BMTuple(m.VP, x0, x1, d, noise) }, o.pairs, targetDraws, d)
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
		lf, err := stage2LossFloor(nets.baseline, func() (asbm.Tuple, error) { return asbm.DSMTuple(m.BaseVP, x0, d, noise) }, o.pairs, targetDraws, d)
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
		}{{"asbm", x1, nets.score, m.VP}, {"baseline", x1b, nets.baseline, m.BaseVP}} {
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
	fmt.Fprintf(w, "last SDE/ODE step: %s\n", lastStep(r.Denoise))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"FID ↓ / NFE"}
	for _, k := range r.NFE {
		head = append(head, fmt.Sprint(k))
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, me := range evalMethods {
		if _, skip := r.Skipped[me.name]; skip || r.FID[me.name] == nil {
			continue // no network, or not asked for (--methods)
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
