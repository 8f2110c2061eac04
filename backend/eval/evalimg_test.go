package eval

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"asbm/backend/asbm"
	"asbm/backend/cli"
	"asbm/backend/fid"
	"asbm/backend/imgdata"
	"asbm/backend/internal/clitest"
	"asbm/backend/metrics"
	"asbm/backend/modelfile"
	"asbm/backend/sample"
	"asbm/backend/train"
	"asbm/shaders"
	"asbm/weights"
)

// tinyEvalFixture trains the tiny 8×8 MNIST model of clitest.TinyImageTrain and a small classifier for
// 8×8 digits (the shipped ones take 28×28): the feature network --features points the eval at.
func tinyEvalFixture(t *testing.T) (modelPath, featPath string) {
	t.Helper()
	dir := t.TempDir()
	modelPath = filepath.Join(dir, "digits.msgpack")
	args := append([]string{"train", "--run", filepath.Join(dir, "run"), "--out", modelPath}, clitest.TinyImageTrain...)
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr)
	}
	train, err := imgdata.Load("mnist:train", 8)
	if err != nil {
		t.Fatal(err)
	}
	const k = 6000 // a random-enough slice: the training split is shuffled
	sub := &imgdata.Set{Name: train.Name, N: k, C: 1, H: 8, W: 8, Pixels: train.Pixels[:k*64], Labels: train.Labels[:k]}
	c, st, err := fid.TrainClassifier(sub, nil, fid.TrainConfig{Base: 4, Mults: []int{1, 2}, Hidden: 32, Layers: 1,
		Epochs: 2, Batch: 64, LR: 3e-3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("8×8 classifier: train accuracy %.3f (%.1f s)", st.TrainAccuracy, st.Seconds)
	featPath = filepath.Join(dir, "classifier-8.msgpack")
	if err := c.Save(featPath); err != nil {
		t.Fatal(err)
	}
	return modelPath, featPath
}

// tinyEvalArgs keep the image eval of the tiny model to a few seconds.
var tinyEvalArgs = []string{"--n", "64", "--nfe-list", "1,2,4", "--pairs", "32", "--inv-nfe", "4",
	"--path-steps", "4", "--path-points", "8", "--floor-repeats", "2", "--seed", "3"}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// TestEvalImages runs `backend eval` on a tiny MNIST U-Net through the real path (the model file,
// the samplers, a classifier file as the FID feature network, the test split as reference) and
// checks the report: a finite FID for every method × NFE that exists, nulls elsewhere, the noise
// floor, straightness, loss floors and inversion rates in range; one FID and the straightness
// recomputed here from their definitions; the table output; the same FIDs on the GPU sampler.
func TestEvalImages(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a U-Net")
	}
	model, feat := tinyEvalFixture(t)
	var progress bytes.Buffer
	evalProgress = &progress
	defer func() { evalProgress = os.Stderr }()
	args := append([]string{"eval", "--model", model, "--features", feat, "--json"}, tinyEvalArgs...)
	code, stdout, stderr := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, stderr)
	}
	if p := progress.String(); !strings.Contains(p, "[16/16] ") || !strings.Contains(p, "inversion asbm") {
		t.Errorf("progress lines: %q", p)
	}
	var rep imgEvalReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v in %q", err, stdout)
	}
	if slices.ContainsFunc(rep.Notes, func(s string) bool { return strings.Contains(s, "no test split") }) {
		t.Errorf("notes %q say MNIST has no test split", rep.Notes)
	}
	nfes := []int{1, 2, 4}
	if !slices.Equal(rep.NFE, nfes) || rep.N != 64 || rep.Dataset != "mnist" || rep.FeatureInput != "as is" || rep.Reference != "mnist:test" {
		t.Errorf("header: %+v", rep)
	}
	if len(rep.Skipped) != 0 {
		t.Errorf("skipped methods on a complete model: %v", rep.Skipped)
	}
	for _, me := range evalMethods {
		row := rep.FID[me.name]
		if len(row) != len(nfes) {
			t.Fatalf("%s: %d entries, want %d", me.name, len(row), len(nfes))
		}
		for i, v := range row {
			want := !(me.sampler == "gen" && nfes[i] != 1 || me.net == "asbm" && me.sampler != "gen" && nfes[i] == 1)
			if (v != nil) != want || v != nil && !(finite(*v) && *v >= 0) {
				t.Errorf("%s NFE %d: FID %v, want a finite value: %v", me.name, nfes[i], v, want)
			}
		}
	}
	if f := rep.Floor; !(finite(f.Mean) && f.Mean > 0 && f.SD >= 0) || f.N != 64 || f.Repeats != 2 || f.From != "mnist:train" {
		t.Errorf("noise floor %+v", f)
	}
	for _, k := range []string{"asbm-ode", "baseline-ode"} {
		p, ok := rep.Straightness[k]
		if !ok || !(finite(p.S) && p.S >= 0) || !(p.LengthRatio >= 1-1e-6) || p.Steps != 4 || p.Points != 8 ||
			math.Abs(p.SPerValue*64-p.S) > 1e-9*p.S {
			t.Errorf("straightness %s: %+v", k, p)
		}
	}
	for _, k := range []string{"asbm", "baseline"} {
		lf, ok := rep.TargetVariance[k]
		if !ok || !(finite(lf.Loss) && lf.Loss > 0 && lf.SE > 0 && lf.SE < lf.Loss) || lf.Pairs != 32 || lf.Draws != targetDraws {
			t.Errorf("loss floor %s: %+v", k, lf)
		}
	}
	inv := rep.Inversion
	if inv == nil {
		t.Fatal("no inversion test on MNIST")
	}
	if inv.Chance != 0.1 || inv.Pairs != 32 || inv.NFE != 4 || !(inv.CleanAccuracy >= 0 && inv.CleanAccuracy <= 1) {
		t.Errorf("inversion: %+v", inv)
	}
	for _, k := range []string{"asbm", "baseline"} {
		if v, ok := inv.Kept[k]; !ok || !(v >= 0 && v <= 1) || math.Abs(v*32-math.Round(v*32)) > 1e-9 {
			t.Errorf("inversion %s: %v (want k/32 in [0, 1])", k, inv.Kept)
		}
	}

	// References: the ASBM-SDE FID at NFE 2 and the baseline's straightness, recomputed here from
	// the sampler, the feature network and the definitions, with the networks the default device
	// uses (the gorgonia engine), so they must agree exactly; evalOn(…, "ref") below checks the
	// plain-Go networks against the engine.
	m, err := modelfile.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	m.CPUEngine = true
	ex, err := fid.Load(feat)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := fid.ReferenceStats(ex, "mnist")
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := sample.CPU(m, sample.Request{Net: "asbm", Sampler: "sde", NFE: 2, N: 64, Seed: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := fid.Score(ex, ref, imgs, 64)
	if err != nil {
		t.Fatal(err)
	}
	if got := *rep.FID["asbm-sde"][1]; got != want {
		t.Errorf("asbm-sde NFE 2: report %v, recomputed %v", got, want)
	}
	z := asbm.SamplePrior(asbm.NewNoise(3+2), 8, 64)
	traj, err := asbm.SampleODETrajectory(m.Net(modelfile.Baseline), nil, m.BaseVP, z, 4)
	if err != nil {
		t.Fatal(err)
	}
	s, ratio := metrics.Straightness(traj, asbm.BackwardGrid(4), 64)
	if p := rep.Straightness["baseline-ode"]; p.S != s || p.LengthRatio != ratio {
		t.Errorf("baseline straightness: report %v, %v; recomputed %v, %v", p.S, p.LengthRatio, s, ratio)
	}

	// The table, and --json-out writing the same report (same seed: same numbers).
	jsonPath := filepath.Join(t.TempDir(), "eval.json")
	args = append([]string{"eval", "--model", model, "--features", feat, "--json-out", jsonPath}, tinyEvalArgs...)
	code, stdout, stderr = runCLI(t, args...)
	if code != 0 {
		t.Fatalf("eval (table): exit %d: %s", code, stderr)
	}
	for _, s := range []string{"FID ↓ / NFE", "baseline-ode", "noise floor", "straightness", "stage-2 loss floor", "inversion test", "chance 0.100"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("table lacks %q:\n%s", s, stdout)
		}
	}
	var again imgEvalReport
	if b, err := os.ReadFile(jsonPath); err != nil || json.Unmarshal(b, &again) != nil ||
		*again.FID["baseline-ode"][2] != *rep.FID["baseline-ode"][2] || again.Inversion.Kept["asbm"] != inv.Kept["asbm"] {
		t.Errorf("--json-out: %v; the report differs from --json's", err)
	}

	// --methods keeps only the rows asked for, with the values of the full table (each row draws from
	// the seed alone); the rows without the denoising step are the same with --denoise; --fid-only
	// leaves out everything after the table.
	args = append([]string{"eval", "--model", model, "--features", feat, "--json", "--methods", "baseline-ancestral,distilled", "--denoise", "--fid-only"}, tinyEvalArgs...)
	code, stdout, stderr = runCLI(t, args...)
	if code != 0 {
		t.Fatalf("eval --methods: exit %d: %s", code, stderr)
	}
	var part imgEvalReport
	if err := json.Unmarshal([]byte(stdout), &part); err != nil {
		t.Fatal(err)
	}
	if len(part.FID) != 2 || !part.Denoise || rep.Denoise {
		t.Errorf("--methods baseline-ancestral,distilled --denoise: rows %v, denoise %v (full run %v)", cli.SortedKeys(part.FID), part.Denoise, rep.Denoise)
	}
	if len(part.Straightness) != 0 || len(part.TargetVariance) != 0 || part.Inversion != nil || part.Floor != rep.Floor ||
		!slices.ContainsFunc(part.Notes, func(s string) bool { return strings.Contains(s, "--fid-only") }) {
		t.Errorf("--fid-only: straightness %v, loss floors %v, inversion %v, floor %v (full run %v), notes %q",
			part.Straightness, part.TargetVariance, part.Inversion, part.Floor, rep.Floor, part.Notes)
	}
	for _, k := range []string{"baseline-ancestral", "distilled"} {
		for i := range nfes {
			if a, b := part.FID[k][i], rep.FID[k][i]; (a == nil) != (b == nil) || a != nil && *a != *b {
				t.Errorf("--methods: %s NFE %d: FID %v, the full table's %v", k, nfes[i], deref(a), deref(b))
			}
		}
	}

	// The default device samples on the gorgonia engine; the plain-Go reference networks (--device
	// ref) draw the same images to float rounding, so the same FIDs.
	refRep := evalOn(t, model, feat, "ref")
	if refRep.Device != "ref" {
		t.Errorf("--device ref reports device %q", refRep.Device)
	}
	sameFIDs(t, "plain-Go vs engine", refRep, rep)

	// The GPU sampler draws the same images (to float rounding), so the same FIDs.
	if _, err := shaders.NewDevice(); err != nil {
		if os.Getenv("ASBM_REQUIRE_GPU") == "1" {
			t.Fatal(err)
		}
		t.Logf("no WebGPU adapter (%v): GPU eval skipped", err)
		return
	}
	g := evalOn(t, model, feat, "gpu")
	if !strings.HasPrefix(g.Device, "gpu (") || g.Inversion == nil || len(g.Straightness) != 2 {
		t.Errorf("GPU report: %+v", g)
	}
	sameFIDs(t, "GPU vs CPU", g, rep)
}

// evalOn runs the short image eval (NFE 1 and 2) of the tiny model on device and returns its report.
func evalOn(t *testing.T, model, feat, device string) imgEvalReport {
	t.Helper()
	args := append([]string{"eval", "--model", model, "--features", feat, "--json", "--device", device}, tinyEvalArgs...)
	args = append(args, "--nfe-list", "1,2", "--pairs", "16", "--inv-nfe", "3", "--path-steps", "3")
	code, stdout, stderr := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("eval --device %s: exit %d: %s", device, code, stderr)
	}
	var r imgEvalReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// sameFIDs checks that got's FIDs (NFE 1, 2) equal want's first ones to 1e-3 relative.
func sameFIDs(t *testing.T, what string, got, want imgEvalReport) {
	t.Helper()
	for _, me := range evalMethods {
		for i := range got.NFE {
			a, b := got.FID[me.name][i], want.FID[me.name][i]
			if (a == nil) != (b == nil) || a != nil && math.Abs(*a-*b) > 1e-3*(1+*b) {
				t.Errorf("%s: %s NFE %d: FID %v, want %v", what, me.name, got.NFE[i], deref(a), deref(b))
			}
		}
	}
}

func deref(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// TestEvalImagesErrors: an image model with the shipped 28×28 features, bad flags, a feature file
// that is not one; and the dispatch's reading of --model.
func TestEvalImagesErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a U-Net")
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "digits.msgpack")
	args := append([]string{"train", "--run", filepath.Join(dir, "run"), "--out", model}, clitest.TinyImageTrain...)
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr)
	}
	// The shipped emoji features take 3×32×32; the model draws 1×8×8 (a smaller gray model would be
	// resampled for the MNIST classifier, but channels are never invented).
	emojiFeat, err := findUpwards("weights/features-emoji.msgpack")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--features", emojiFeat}, 2, "image model of 1×8×8 images"},
		{[]string{"--nfe-list", "1,0"}, 2, "--nfe-list wants comma-separated step counts"},
		{[]string{"--nfe-list", "2,2"}, 2, "--nfe-list repeats 2"},
		{[]string{"--methods", "asbm-sde,asbm-euler"}, 2, `unknown row "asbm-euler"`},
		{[]string{"--device", "tpu"}, 2, "--device must be cpu, ref or gpu"},
		{[]string{"--n", "1"}, 2, "--n must be between 2"},
		{[]string{"--inv-nfe", "1"}, 2, "--inv-nfe must be between 2"},
		{[]string{"--projections", "5"}, 2, "flag provided but not defined: -projections"},
		{[]string{"--features", filepath.Join(dir, "none.msgpack")}, 1, "no such file"},
		{[]string{"--features", model}, 1, "is not a feature network"},
		{[]string{"--consistency", "0,0.5"}, 2, "--consistency wants comma-separated times"},
		{[]string{"--consistency", "0.5", "--consistency-draws", "1"}, 2, "--consistency-draws must be between 2"},
	} {
		code, _, stderr := runCLI(t, append([]string{"eval", "--model", model}, c.args...)...)
		if code != c.code || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line containing %q", c.args, code, stderr, c.code, c.want)
		}
	}
	// Whether the dispatch sees the model under each flag spelling.
	for _, a := range [][]string{{"--model", model}, {"-model", model}, {"--model=" + model}, {"-model=" + model}} {
		if cli.FlagValue(append(a, "--json"), "model") != model {
			t.Errorf("cli.FlagValue(%v) missed the model", a)
		}
	}
	if cli.FlagValue([]string{"--", "--model", model}, "model") != "" || cli.FlagValue([]string{"--models", "x"}, "model") != "" ||
		cli.FlagValue([]string{"model", "x"}, "model") != "" {
		t.Error("flagValue matched past -- or a longer flag name")
	}
}

// TestEvalConsistency runs `backend eval --consistency` on the tiny MNIST U-Net and checks the report's
// plumbing (the measure itself is checked against closed forms in backend/asbm): one row per time with
// the three networks, the counts asked for, finite values, and the drift column equal to ½g(t)²·√Err2
// on each network's own base (ASBM's β_1 for its networks, 20 for the baseline's score).
func TestEvalConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a U-Net")
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "digits.msgpack")
	args := append([]string{"train", "--run", filepath.Join(dir, "run"), "--out", model}, clitest.TinyImageTrain...)
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr)
	}
	code, stdout, stderr := runCLI(t, "eval", "--model", model, "--json", "--consistency", "0.3,0.8",
		"--consistency-anchors", "4", "--consistency-draws", "3", "--consistency-steps", "5")
	if code != 0 {
		t.Fatalf("eval --consistency: exit %d: %s", code, stderr)
	}
	var rep consistencyReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	m, err := modelfile.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Times, []float64{0.3, 0.8}) || len(rep.Rows) != 2 {
		t.Fatalf("times %v, %d rows; want [0.3 0.8] and 2 rows", rep.Times, len(rep.Rows))
	}
	for i, tt := range rep.Times {
		for k, vp := range map[string]asbm.VP{"asbm-control": m.VP, "asbm-score": m.VP, "baseline-score": m.BaseVP} {
			e, ok := rep.Rows[i][k]
			if !ok {
				t.Errorf("t %g: no %s entry", tt, k)
				continue
			}
			end := 0.0
			if k == "asbm-control" {
				end = 1
			}
			if e.T != tt || e.Anchors != 4 || e.Draws != 3 || e.Steps != asbm.StepsFor(tt, end, 5) {
				t.Errorf("t %g %s: entry at t %g with %d anchors × %d draws, %d steps", tt, k, e.T, e.Anchors, e.Draws, e.Steps)
			}
			want := 0.5 * vp.G2(tt) * math.Sqrt(math.Max(e.Err2, 0))
			if !finite(e.Err2) || !finite(e.SE) || e.Net2 <= 0 || math.Abs(e.DriftRMS-want) > 1e-9*(1+want) {
				t.Errorf("t %g %s: Err2 %g SE %g Net2 %g drift %g (want %g)", tt, k, e.Err2, e.SE, e.Net2, e.DriftRMS, want)
			}
		}
	}
	code, stdout, _ = runCLI(t, "eval", "--model", model, "--consistency", "0.5", "--consistency-anchors", "3",
		"--consistency-draws", "2", "--consistency-steps", "4")
	if code != 0 || !strings.Contains(stdout, "baseline-score") || !strings.Contains(stdout, "½g²·RMS error") {
		t.Errorf("table output: exit %d\n%s", code, stdout)
	}
}

// TestCentreCropInvertsPadding: a 28×28 digit padded to 32×32 as imgdata pads it (background −1,
// 2 pixels each side) comes back exactly; featureInput picks the crop only for that case.
func TestCentreCropInvertsPadding(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const n = 3
	orig := make([]float32, n*28*28)
	for i := range orig {
		orig[i] = float32(2*r.Float64() - 1)
	}
	padded := make([]float32, n*32*32)
	for i := range padded {
		padded[i] = -1
	}
	for k := 0; k < n; k++ {
		for y := 0; y < 28; y++ {
			copy(padded[k*1024+(y+2)*32+2:], orig[k*784+y*28:k*784+(y+1)*28])
		}
	}
	if got := centreCrop(padded, n, 32, 28); !slices.Equal(got, orig) {
		t.Error("centre crop does not invert the padding")
	}
	c, err := fid.NewRandConv(weights.Arch{Kind: fid.KindRandConv, Channels: 1, Height: 28, Width: 28, Dim: 784, Base: 2, Mults: []int{1}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	arch := weights.Arch{Kind: "unet", Channels: 1, Height: 32, Width: 32, Dim: 1024}
	if _, how, rs, err := featureInput(arch, c, "mnist", "x"); err != nil || !strings.Contains(how, "crop") || rs {
		t.Errorf("mnist 32→28: %q, %v", how, err)
	}
	if _, _, _, err := featureInput(arch, c, "emoji", "x"); err == nil {
		t.Error("emoji 32×32 gray against 28×28 features: no error")
	}
	// A smaller model: its images (and the real ones, loaded at its size) are enlarged by area
	// resampling, which keeps each image's mean; a constant image stays that constant.
	arch.Height, arch.Width, arch.Dim = 16, 16, 256
	prep, how, rs, err := featureInput(arch, c, "mnist", "x")
	if err != nil || !rs || !strings.Contains(how, "16×16 → 28×28") {
		t.Fatalf("16×16 against 28×28 features: %q, resampled %v, %v", how, rs, err)
	}
	r = rand.New(rand.NewPCG(3, 4))
	x := make([]float32, 2*256)
	for i := range x {
		x[i] = float32(r.Float64()*1.6 - 0.8)
	}
	for i := 256; i < 512; i++ {
		x[i] = 0.25
	}
	y := prep(x, 2)
	if len(y) != 2*784 {
		t.Fatalf("resampled length %d, want %d", len(y), 2*784)
	}
	mean := func(v []float32) (m float64) {
		for _, e := range v {
			m += float64(e) / float64(len(v))
		}
		return m
	}
	if d := math.Abs(mean(y[:784]) - mean(x[:256])); d > 1e-5 {
		t.Errorf("resampling moved the image mean by %g", d)
	}
	for _, v := range y[784:] {
		if math.Abs(float64(v)-0.25) > 1e-6 {
			t.Fatalf("a constant image resampled to %v", v)
		}
	}
	arch.Channels, arch.Dim = 3, 768
	var ue cli.UsageError
	if _, _, _, err := featureInput(arch, c, "mnist", "x"); !errors.As(err, &ue) || !strings.Contains(err.Error(), "--features") {
		t.Errorf("3×16×16 against 1×28×28 features: %v", err)
	}
}

// TestEvalImagesEmojiPartial evaluates a tiny emoji:faces model stripped of its generator and
// baseline, with an 8×8 random-conv feature network: no inversion test (unlabelled, and not a
// classifier), the floor drawn from the 109 faces themselves (with replacement: n = 128), all of
// them held out for the loss floor (--pairs 200 is capped), and the missing methods skipped with a
// reason.
func TestEvalImagesEmojiPartial(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a U-Net")
	}
	dir := t.TempDir()
	full := filepath.Join(dir, "emoji.msgpack")
	train := slices.Clone(clitest.TinyImageTrain)
	train[slices.Index(train, "mnist")] = "emoji:faces"
	evalArgs := slices.Clone(tinyEvalArgs)
	evalArgs[slices.Index(evalArgs, "--n")+1] = "128"
	evalArgs[slices.Index(evalArgs, "--pairs")+1] = "200" // more than the 109 faces: all are used
	if code, _, stderr := runCLI(t, append([]string{"train", "--run", filepath.Join(dir, "run"), "--out", full}, train...)...); code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr)
	}
	f, err := weights.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	part := weights.New(f.Arch)
	part.Meta = f.Meta
	for _, tn := range f.Tensors {
		if !strings.HasPrefix(tn.Name, modelfile.Gen) && !strings.HasPrefix(tn.Name, modelfile.Baseline) {
			part.Tensors = append(part.Tensors, tn)
		}
	}
	model := filepath.Join(dir, "partial.msgpack")
	if err := weights.WriteFile(model, part); err != nil {
		t.Fatal(err)
	}
	rc, err := fid.NewRandConv(weights.Arch{Kind: fid.KindRandConv, Dim: 3 * 64, Channels: 3, Height: 8, Width: 8, Base: 8, Mults: []int{1, 2}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	feat := filepath.Join(dir, "features-8.msgpack")
	if err := rc.Save(feat); err != nil {
		t.Fatal(err)
	}
	evalProgress = io.Discard
	defer func() { evalProgress = os.Stderr }()
	code, stdout, stderr := runCLI(t, append([]string{"eval", "--model", model, "--features", feat, "--json"}, evalArgs...)...)
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, stderr)
	}
	var rep imgEvalReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v in %q", err, stdout)
	}
	if rep.Inversion != nil || rep.Floor.From != "emoji:faces" || rep.Reference != "emoji:faces" || !rep.Floor.Replace || !(rep.Floor.Mean > 0) || rep.Dataset != "emoji-faces" {
		t.Errorf("emoji report: inversion %v, floor %+v, reference %q", rep.Inversion, rep.Floor, rep.Reference)
	}
	for _, me := range evalMethods {
		_, skipped := rep.Skipped[me.name]
		if want := me.net == "baseline" || me.sampler == "gen"; skipped != want {
			t.Errorf("%s: skipped %v, want %v (%v)", me.name, skipped, want, rep.Skipped)
		}
		for i, v := range rep.FID[me.name] {
			want := !skipped && !(me.net == "asbm" && rep.NFE[i] == 1)
			if (v != nil) != want || v != nil && !(finite(*v) && *v >= 0) {
				t.Errorf("%s NFE %d: %v", me.name, rep.NFE[i], deref(v))
			}
		}
	}
	if _, ok := rep.Straightness["baseline-ode"]; ok || len(rep.Straightness) != 1 || len(rep.TargetVariance) != 1 {
		t.Errorf("straightness %v, loss floors %v: want ASBM's only", rep.Straightness, rep.TargetVariance)
	}
	if !slices.ContainsFunc(rep.Notes, func(s string) bool { return strings.Contains(s, "--pairs 200 exceeds the 109 images") }) {
		t.Errorf("notes %q do not say that all 109 faces stand in for --pairs 200", rep.Notes)
	}
	if !slices.ContainsFunc(rep.Notes, func(s string) bool { return strings.Contains(s, "unlabelled") }) {
		t.Errorf("notes %q do not say why the inversion test is missing", rep.Notes)
	}
	if !slices.ContainsFunc(rep.Notes, func(s string) bool { return strings.Contains(s, "emoji-faces has no test split") }) {
		t.Errorf("notes %q do not say that emoji has no test split", rep.Notes)
	}
	// The table run also stores its report in the file (--annotate): the same numbers (same seed),
	// the command, and the networks untouched.
	args := append([]string{"eval", "--model", model, "--features", feat, "--annotate"}, evalArgs...)
	code, stdout, _ = runCLI(t, args...)
	if code != 0 || !strings.Contains(stdout, "distilled: skipped (the model file has no gen network)") ||
		!strings.Contains(stdout, "128 random emoji:faces images, drawn with replacement") {
		t.Errorf("table: exit %d\n%s", code, stdout)
	}
	ann, err := weights.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	var stored imgEvalReport
	if js, _ := ann.MetaString("eval"); json.Unmarshal([]byte(js), &stored) != nil ||
		!reflect.DeepEqual(stored.FID, rep.FID) || stored.Floor != rep.Floor {
		t.Errorf("meta eval: %+v, want the report %+v", stored, rep)
	}
	if c, _ := ann.MetaString("eval_command"); c != "backend "+strings.Join(args, " ") {
		t.Errorf("meta eval_command %q", c)
	}
	if ds, _ := ann.MetaString("dataset"); ds != "emoji-faces" || len(ann.Tensors) != len(part.Tensors) {
		t.Errorf("annotated file lost metadata or tensors: dataset %q, %d tensors (want %d)", ds, len(ann.Tensors), len(part.Tensors))
	}
	for i, tn := range ann.Tensors {
		a, _, _ := ann.Float32(tn.Name)
		b, _, _ := part.Float32(part.Tensors[i].Name)
		if tn.Name != part.Tensors[i].Name || !slices.Equal(a, b) {
			t.Errorf("tensor %s changed", tn.Name)
		}
	}
}

// verbs are the commands the eval tests run: training makes their fixtures.
var verbs = map[string]cli.Verb{"train": {Run: train.Command}, "eval": {Run: Command}}

// runCLI runs a verb in-process as `backend` would.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return clitest.Run(t, verbs, args...)
}

func TestEvalJSON(t *testing.T) {
	path := clitest.TrainTiny(t, t.TempDir())
	code, stdout, stderr := runCLI(t, "eval", "--model", path, "--json", "--n", "300", "--projections", "50",
		"--path-steps", "10", "--path-points", "50", "--pairs", "200")
	if code != 0 {
		t.Fatal(stderr)
	}
	var rep evalReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v in %q", err, stdout)
	}
	for _, me := range evalMethods {
		row := rep.SWD[me.name]
		if len(row) != len(evalNFEs) {
			t.Fatalf("%s: %d entries", me.name, len(row))
		}
		for i, v := range row {
			want := !(me.sampler == "gen" && evalNFEs[i] != 1 || me.net == "asbm" && me.sampler != "gen" && evalNFEs[i] == 1)
			if (v != nil) != want || v != nil && !(*v >= 0) {
				t.Errorf("%s NFE %d: %v", me.name, evalNFEs[i], v)
			}
		}
	}
	if rep.Inversion == nil || rep.Coupling["sinkhorn"].Transport <= 0 || rep.Straightness["asbm-ode"].Steps != 10 {
		t.Errorf("incomplete report: %+v", rep)
	}
	jsonPath := filepath.Join(t.TempDir(), "eval.json")
	code, stdout, _ = runCLI(t, "eval", "--model", path, "--n", "300", "--projections", "50",
		"--path-steps", "10", "--path-points", "50", "--pairs", "200", "--json-out", jsonPath)
	if code != 0 || !strings.Contains(stdout, "baseline-ode") || !strings.Contains(stdout, "inversion test") {
		t.Errorf("table: %q", stdout)
	}
	var again evalReport
	if b, err := os.ReadFile(jsonPath); err != nil || json.Unmarshal(b, &again) != nil || *again.SWD["asbm-ode"][2] != *rep.SWD["asbm-ode"][2] {
		t.Errorf("--json-out: %v; the report differs from --json's (same seed)", err)
	}
}
