package main

import (
	"bytes"
	"errors"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"asbm/backend/internal/clitest"
	"asbm/backend/modelfile"
	"asbm/backend/sample"
	"asbm/backend/train"
	"asbm/model"
	"asbm/shaders"
	"asbm/weights"
)

// runCLI runs the whole command in-process and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return clitest.Run(t, verbs, args...)
}

func TestBadInputGivesOneLineAndExit2(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sample", "--model", "x.msgpack", "--nfe", "0"}, "--nfe must be between 1 and 1000"},
		{[]string{"sample", "--model", filepath.Join(dir, "missing.msgpack")}, "no such file"},
		{[]string{"sample", "--model", "x", "--sampler", "euler"}, "--sampler must be one of"},
		{[]string{"train", "--data", "toy:spiral"}, `unknown data set "toy:spiral"`},
		{[]string{"train", "--data", "mnst"}, `unknown data set "mnst"`},
		{[]string{"train", "--data", "mnist:test"}, "train on the train split"},
		{[]string{"train", "--data", "mnist", "--mults", "1,0"}, "--mults wants comma-separated integers"},
		{[]string{"train", "--data", "mnist", "--size", "3"}, "--size must be between"},
		{[]string{"train", "--data", "mnist", "--groups", "3"}, "divisible by groups"},
		{[]string{"train", "--data", "emoji", "--size", "30"}, "divisible by 2^(levels−1)"},
		{[]string{"train"}, "--data is required"},
		{[]string{"train", "--data", "toy:moons", "--device", "tpu"}, "--device must be"},
		{[]string{"train", "--data", "toy:moons", "--score-scale", "eps"}, "--score-scale is sigma or raw"},
		{[]string{"eval", "--model", filepath.Join(dir, "none.msgpack")}, "no such file"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"sample", "--bogus"}, "flag provided but not defined"},
	} {
		code, _, stderr := runCLI(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line containing %q", c.args, code, stderr, c.want)
		}
	}
	// A file that is not a model: a clear error from the weights reader, exit 1.
	bad := filepath.Join(dir, "bad.msgpack")
	os.WriteFile(bad, []byte("not a model"), 0o644)
	if code, _, stderr := runCLI(t, "sample", "--model", bad); code != 1 || !strings.Contains(stderr, "backend sample:") {
		t.Errorf("garbage model: exit %d, stderr %q", code, stderr)
	}
}

// TestResumeMatchesUninterruptedRun stops a run after every few epochs (as a kill between
// checkpoints would, the checkpoint being written at each stop) and resumes it until done: the
// exported model must equal, bit for bit, that of a run never stopped.
func TestResumeMatchesUninterruptedRun(t *testing.T) {
	if testing.Short() {
		t.Skip("trains twice")
	}
	a := clitest.TrainTiny(t, t.TempDir())
	dir := t.TempDir()
	stopAfter, ckptEveryWas := 2, train.CheckpointEvery
	t.Cleanup(func() { stopAfter, train.CheckpointEvery = 0, ckptEveryWas })
	train.CheckpointEvery = 0
	train.StopAfterEpochs = stopAfter
	defer func() { train.StopAfterEpochs = 0 }()
	out := filepath.Join(dir, "m.msgpack")
	args := append([]string{"train", "--run", filepath.Join(dir, "run"), "--out", out}, clitest.TinyTrain...)
	code, _, stderr := runCLI(t, args...)
	stops := 0
	for code != 0 && strings.Contains(stderr, train.ErrStopAfterEpochs.Error()) && stops < 20 {
		stops++
		code, _, stderr = runCLI(t, "train", "--run", filepath.Join(dir, "run"), "--out", out, "--resume")
	}
	if code != 0 {
		t.Fatalf("after %d stops: exit %d: %s", stops, code, stderr)
	}
	if stops < 4 {
		t.Fatalf("only %d stops: the test did not interrupt every phase", stops)
	}
	fa, err := weights.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := weights.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(fa.Tensors) != len(fb.Tensors) || len(fa.Tensors) != 4*2*3 {
		t.Fatalf("tensor counts %d and %d, want 24 (4 networks × 3 layers × w,b)", len(fa.Tensors), len(fb.Tensors))
	}
	for i := range fa.Tensors {
		if fa.Tensors[i].Name != fb.Tensors[i].Name || !bytes.Equal(fa.Tensors[i].Data, fb.Tensors[i].Data) {
			t.Fatalf("tensor %s differs between the uninterrupted and the resumed run", fa.Tensors[i].Name)
		}
	}
	// Each phase's steps, counted across its resumes (the checkpoint keeps them), are the
	// uninterrupted run's: the "training" lines agree once their wall times are cut off.
	stepsOf := func(f *weights.File) string {
		s, _ := f.MetaString("training")
		return regexp.MustCompile(`(steps), [0-9.hms]+`).ReplaceAllString(s, "$1")
	}
	if a, b := stepsOf(fa), stepsOf(fb); a != b || !strings.Contains(a, " steps") {
		t.Errorf("training metadata: uninterrupted\n%s\nresumed\n%s", a, b)
	}
}

// TestSampleCSVAndEngines checks `backend sample` output and that the reference samplers of
// backend/asbm, the plain-Go twin in shaders (the browser's CPU path) and the WGSL sampler on native
// WebGPU give the same points for one seed (the browser test then holds the page to the CLI).
func TestSampleCSVAndEngines(t *testing.T) {
	dir := t.TempDir()
	path := clitest.TrainTiny(t, dir)
	m, err := modelfile.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "sample", "--model", path, "--nfe", "3", "--n", "5", "--seed", "9")
	if code != 0 {
		t.Fatal(stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 6 || lines[0] != "x,y" {
		t.Fatalf("CSV: %q", stdout)
	}
	png := filepath.Join(dir, "s.png")
	if code, _, stderr := runCLI(t, "sample", "--model", path, "--out", png); code != 0 {
		t.Fatal(stderr)
	}
	if b, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("PNG: %v", err)
	}
	cpuNets := model.CPUNets{Score: m.Nets[modelfile.Score], Control: m.Nets[modelfile.Control], Gen: m.Nets[modelfile.Gen]}
	// Each request twice: as trained (raw), then with the same weights read as a σ-scaled file
	// (score_scale "sigma"): sample.CPU divides the networks by σ_t (modelfile.ScoreNet), the twin
	// and the GPU scale the sampler's coefficients (SampleOptions.SigmaScaled).
	requests := []sample.Request{
		{Net: "asbm", Sampler: "sde", NFE: 6, N: 300, Seed: 4},
		{Net: "asbm", Sampler: "ode", NFE: 5, N: 300, Seed: 5},
		{Net: "asbm", Sampler: "sde", NFE: 1, N: 300, Seed: 6},
		{Net: "baseline", Sampler: "ode", NFE: 3, N: 300, Seed: 7},
	}
	rawRef := make([][]float32, len(requests))
	for _, scaled := range []bool{false, true} {
		m.SigmaScaled = scaled
		for i, r := range requests {
			ref, err := sample.CPU(m, r, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !scaled {
				rawRef[i] = ref
			} else if d := maxAbsDiff(ref, rawRef[i]); d < 1e-6 { // the generator only by 1/σ_1 ≈ 1.07
				t.Errorf("%+v: the σ-scaled reading changed the samples by only %g", r, d)
			}
			nets, vp := cpuNets, m.VP
			if r.Net == "baseline" {
				nets, vp = model.CPUNets{Score: m.Nets[modelfile.Baseline]}, m.BaseVP
			}
			twin, err := model.SampleCPU(nets.Nets(), model.SampleOptions{Points: r.N, Steps: r.NFE, Method: r.Method(), Seed: r.Seed,
				Beta0: vp.Beta0, Beta1: vp.Beta1, SigmaV: vp.SigmaV, SigmaScaled: scaled}, model.SampleHooks{})
			if err != nil {
				t.Fatal(err)
			}
			if d := maxAbsDiff(ref, twin); d > 1e-4 {
				t.Errorf("%+v (σ-scaled %v): asbm vs model.SampleCPU differ by %g", r, scaled, d)
			}
			gpu, adapter, err := sample.GPU(m, r)
			if errors.Is(err, shaders.ErrNoAdapter) && os.Getenv("ASBM_REQUIRE_GPU") != "1" {
				t.Logf("no WebGPU adapter: GPU comparison skipped")
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := maxAbsDiff(ref, gpu); d > 1e-4 {
				t.Errorf("%+v (σ-scaled %v) on %s: CPU vs WGSL differ by %g", r, scaled, adapter, d)
			}
		}
	}
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

// TestTrainOnGPUEngineResumesCPUCheckpoint starts a run on the gorgonia engine (OpenBLAS and the C
// loops where they load), stops it, and finishes it on the WGSL engine (native WebGPU): the engines
// share checkpoint keys. Both network kinds: the toy MLP and a tiny image U-Net.
func TestTrainOnGPUEngineResumesCPUCheckpoint(t *testing.T) {
	if _, err := shaders.NewDevice(); err != nil {
		if os.Getenv("ASBM_REQUIRE_GPU") == "1" {
			t.Fatal(err)
		}
		t.Skipf("no WebGPU adapter: %v", err)
	}
	for _, c := range []struct {
		name      string
		args      []string
		stopAfter int // epochs on the CPU before the stop (the tiny image run has only 2 in stage 1)
	}{{"toy", clitest.TinyTrain, 3}, {"image", clitest.TinyImageTrain, 1}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			ckptEveryWas := train.CheckpointEvery
			train.CheckpointEvery, train.StopAfterEpochs = 0, c.stopAfter
			defer func() { train.CheckpointEvery, train.StopAfterEpochs = ckptEveryWas, 0 }()
			out := filepath.Join(dir, "m.msgpack")
			args := append([]string{"train", "--run", filepath.Join(dir, "run"), "--out", out, "--device", "cpu"}, c.args...)
			if code, _, stderr := runCLI(t, args...); code == 0 || !strings.Contains(stderr, train.ErrStopAfterEpochs.Error()) {
				t.Fatalf("first part: exit %d: %s", code, stderr)
			}
			train.StopAfterEpochs = 0
			code, _, stderr := runCLI(t, "train", "--run", filepath.Join(dir, "run"), "--out", out, "--resume", "--device", "gpu")
			if code != 0 {
				t.Fatalf("resume on gpu: exit %d: %s", code, stderr)
			}
			log, _ := os.ReadFile(filepath.Join(dir, "run", "train.log"))
			if !strings.Contains(string(log), "engine: cpu (gorgonia; ") || !strings.Contains(string(log), "engine: gpu (WGSL on") {
				t.Errorf("the log does not name both engines: %s", log)
			}
			m, err := modelfile.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Nets) != 4 {
				t.Fatalf("model has %d networks, want 4", len(m.Nets))
			}
			if c.name == "toy" {
				pts, err := sample.CPU(m, sample.Request{Net: "asbm", Sampler: "ode", NFE: 4, N: 100, Seed: 1}, nil)
				if err != nil || maxAbsDiff(pts, pts) != 0 {
					t.Fatalf("sampling the GPU-trained model: %v", err)
				}
			}
		})
	}
}

// TestResumeFromPhaseRetrainsOnlyLaterPhases reruns the distillation of a finished run with other
// settings: the score, control and baseline stay as they were, the generator changes.
func TestResumeFromPhaseRetrainsOnlyLaterPhases(t *testing.T) {
	dir := t.TempDir()
	first := clitest.TrainTiny(t, dir)
	before, err := weights.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "again.msgpack")
	code, _, stderr := runCLI(t, "train", "--run", filepath.Join(dir, "run"), "--resume", "--from-phase", "distill",
		"--distill-epochs", "3", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	after, err := weights.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for i, tb := range before.Tensors {
		same := bytes.Equal(tb.Data, after.Tensors[i].Data)
		if strings.HasPrefix(tb.Name, modelfile.Gen) == same {
			t.Errorf("%s: unchanged = %v after rerunning the distillation", tb.Name, same)
		}
	}
	if cmd, _ := after.MetaString("command"); !strings.Contains(cmd, "--distill-epochs 3") {
		t.Errorf("meta command does not record the override: %q", cmd)
	}
	if code, _, stderr := runCLI(t, "train", "--run", filepath.Join(dir, "run"), "--resume", "--data", "toy:moons"); code != 2 || !strings.Contains(stderr, "is a run on toy:8gaussians") {
		t.Errorf("resume with another data set: exit %d %q", code, stderr)
	}
	if code, _, stderr := runCLI(t, "train", "--data", "toy:moons", "--from-phase", "stage2"); code != 2 || !strings.Contains(stderr, "--from-phase needs --resume") {
		t.Errorf("--from-phase without --resume: exit %d %q", code, stderr)
	}
	// The score networks' parametrisation cannot change under finished ones (the generator would
	// read a raw score as σ-scaled); retraining them from stage 2 may change it.
	if code, _, stderr := runCLI(t, "train", "--run", filepath.Join(dir, "run"), "--resume", "--from-phase", "distill", "--score-scale", "sigma"); code != 2 || !strings.Contains(stderr, "trained with --score-scale raw") {
		t.Errorf("--score-scale changed under finished score networks: exit %d %q", code, stderr)
	}
	sigmaOut := filepath.Join(dir, "sigma.msgpack")
	if code, _, stderr := runCLI(t, "train", "--run", filepath.Join(dir, "run"), "--resume", "--from-phase", "stage2", "--score-scale", "sigma", "--out", sigmaOut); code != 0 {
		t.Fatalf("--from-phase stage2 --score-scale sigma: exit %d: %s", code, stderr)
	}
	if f, err := weights.ReadFile(sigmaOut); err != nil {
		t.Fatal(err)
	} else if sc, _ := f.MetaString("score_scale"); sc != "sigma" {
		t.Errorf("retrained from stage 2 with --score-scale sigma: meta score_scale %q", sc)
	}
}

// TestKeepWeightsContinuesPhases trains a finished run's baseline and generator further with
// --keep-weights: with a learning rate of 1e-12 their live parameters must stay where the first run
// left them (a fresh start would be a new initialisation), the earlier train.Phases' networks are kept
// bit for bit, and the log records both runs of each continued phase.
func TestKeepWeightsContinuesPhases(t *testing.T) {
	dir := t.TempDir()
	clitest.TrainTiny(t, dir)
	ckpt := filepath.Join(dir, "run", train.CheckpointName)
	before, err := train.LoadState(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "train", "--run", filepath.Join(dir, "run"), "--resume", "--from-phase", "baseline",
		"--keep-weights", "--lr", "1e-12", "--out", filepath.Join(dir, "more.msgpack"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	after, err := train.LoadState(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	for net, state := range before.Final {
		for k, v := range state {
			w := after.Final[net][k]
			if len(w) != len(v) {
				t.Fatalf("%s %s: %d values, want %d", net, k, len(w), len(v))
			}
			worst := 0.0
			for i := range v {
				worst = math.Max(worst, math.Abs(float64(w[i]-v[i])))
			}
			continued := (net == "b" || net == "g") && strings.HasPrefix(k, "param/")
			switch {
			case (net == "u" || net == "s") && worst != 0:
				t.Errorf("%s %s changed by %g: earlier train.Phases must be kept as they were", net, k, worst)
			case continued && worst > 1e-6:
				t.Errorf("%s %s moved by %g at lr 1e-12: the phase did not continue from its network", net, k, worst)
			}
		}
	}
	if len(after.Warm) != 0 {
		t.Errorf("warm starts left after the run: %v", after.Warm)
	}
	var cont []string
	for _, l := range after.Log {
		if strings.Contains(l, "(continued from the previous networks, --keep-weights)") {
			cont = append(cont, strings.SplitN(l, ":", 2)[0])
		}
	}
	if !slices.Equal(cont, []string{"baseline", "distill"}) || len(after.Log) != len(before.Log)+2 {
		t.Errorf("log:\n%s", strings.Join(after.Log, "\n"))
	}
	if code, _, stderr := runCLI(t, "train", "--run", filepath.Join(dir, "run"), "--resume", "--keep-weights"); code != 2 ||
		!strings.Contains(stderr, "--keep-weights needs --from-phase") {
		t.Errorf("--keep-weights without --from-phase: exit %d %q", code, stderr)
	}
}

// TestTrainAndSampleImages trains the tiny U-Net on MNIST through every phase and stop/resume,
// then samples an image grid: the model file carries the U-Net arch, and the grid PNG has the
// size the arch implies.
func TestTrainAndSampleImages(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a U-Net")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "digits.msgpack")
	run := filepath.Join(dir, "run")
	args := append([]string{"train", "--run", run, "--out", out, "--f16", "--stop-after", "stage1", "--score-scale", "sigma"}, clitest.TinyImageTrain...)
	code, _, stderr := runCLI(t, args...)
	logText, _ := os.ReadFile(filepath.Join(run, "train.log"))
	if code != 0 || !strings.Contains(string(logText), "stopped after stage1") {
		t.Fatalf("train --stop-after stage1: exit %d: %s\nlog:\n%s", code, stderr, logText)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("--stop-after wrote a model file")
	}
	// The resume names neither --out nor --f16: the run's own are kept.
	if code, _, stderr := runCLI(t, "train", "--resume", "--run", run); code != 0 {
		t.Fatalf("train --resume: exit %d: %s", code, stderr)
	}
	f, err := weights.ReadFile(out)
	if err != nil {
		t.Fatalf("the resumed run did not write the first command's --out: %v", err)
	}
	for _, tn := range f.Tensors {
		if tn.DType != "f16" && strings.HasSuffix(tn.Name, ".w") && len(tn.Shape) > 1 {
			t.Errorf("tensor %s is %s: the resume dropped the first command's --f16", tn.Name, tn.DType)
			break
		}
	}
	want := weights.Arch{Kind: "unet", Dim: 64, Channels: 1, Height: 8, Width: 8, Base: 4, Mults: []int{1, 2},
		ResBlocks: 1, Groups: 2, TimeEmb: 8, Fourier: 2}
	if !f.Arch.Equal(want) {
		t.Fatalf("model arch %+v, want %+v", f.Arch, want)
	}
	// Every phase's line in the "training" metadata ends with its steps and wall time.
	training, _ := f.MetaString("training")
	lines := strings.Split(training, "\n")
	if len(lines) != 4 {
		t.Errorf("training metadata has %d lines, want one per phase:\n%s", len(lines), training)
	}
	stepsAndTime := regexp.MustCompile(`; [1-9][0-9]* steps, [0-9.hms]+$`)
	for _, l := range lines {
		if !stepsAndTime.MatchString(l) {
			t.Errorf("training line %q lacks the phase's steps and wall time", l)
		}
	}
	// The resume kept the stored --score-scale: the file says its score networks are σ-scaled.
	if sc, _ := f.MetaString("score_scale"); sc != "sigma" {
		t.Errorf("meta score_scale = %q, want sigma", sc)
	}
	if cmd, _ := f.MetaString("command"); !strings.Contains(cmd, "--mults 1,2") || !strings.Contains(cmd, "--size 8") || !strings.Contains(cmd, "--score-scale sigma") || strings.Contains(cmd, "--hidden") {
		t.Errorf("meta command %q does not reproduce the image run", cmd)
	}
	for _, nfe := range []string{"1", "3"} {
		gridPath := filepath.Join(dir, "grid"+nfe+".png")
		if code, _, stderr := runCLI(t, "sample", "--model", out, "--nfe", nfe, "--n", "4", "--out", gridPath); code != 0 {
			t.Fatalf("sample --nfe %s: exit %d: %s", nfe, code, stderr)
		}
		fh, err := os.Open(gridPath)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		// 2×2 grid of 8×8 images scaled ×32 (⌈512/(2·8)⌉) with 2-pixel gutters: 2·(256+2)+2 = 518.
		if cfg.Width != 518 || cfg.Height != 518 {
			t.Errorf("grid PNG is %d×%d, want 518×518", cfg.Width, cfg.Height)
		}
	}
	// backend eval on image models is tested in evalimg_test.go.
}

// TestBench runs `backend bench` on the small U-Net at a tiny batch (PyTorch off, so the test does
// not depend on it) and checks the table and the ceiling line; bad flags are usage errors.
func TestBench(t *testing.T) {
	code, stdout, stderr := runCLI(t, "bench", "--arch", "small", "--batches", "2", "--reps", "1", "--warmup", "1", "--torch", "off")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"CPU matrix multiply:", "sgemm 1024³", "U-Net small:", "conv GFLOP/s", "PyTorch / ours"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("bench output lacks %q:\n%s", want, stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^\s+small\s+cpu\s+2\s+[0-9.]+`).MatchString(stdout) {
		t.Errorf("bench output has no row for small/cpu/2:\n%s", stdout)
	}
	for _, args := range [][]string{{"--arch", "huge"}, {"--batches", "0"}, {"--torch", "maybe"}, {"--device", "tpu"}, {"--warmup", "-1"}} {
		if code, _, stderr := runCLI(t, append([]string{"bench"}, args...)...); code != 2 || stderr == "" {
			t.Errorf("bench %v: exit %d (%q), want a usage error", args, code, stderr)
		}
	}
}

// TestSampleRealImages draws a grid of real images (`backend sample --data`), the picture set beside
// a model's samples, and refuses --data with --model or a non-PNG output.
func TestSampleRealImages(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "real.png")
	if code, _, stderr := runCLI(t, "sample", "--data", "mnist", "--size", "8", "--n", "6", "--seed", "2", "--out", out); code != 0 {
		t.Fatal(stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// 6 images of 8×8 in a 3-column grid of 2 rows, whatever the gutter: wider than 3·8, taller than 2·8.
	if b := img.Bounds(); b.Dx() < 24 || b.Dy() < 16 || b.Dx() <= b.Dy() {
		t.Errorf("grid of 6 8×8 images is %v", b)
	}
	for _, c := range [][]string{
		{"sample", "--data", "mnist", "--model", "x.msgpack", "--out", out},
		{"sample", "--data", "mnist", "--out", filepath.Join(dir, "real.csv")},
		{"sample", "--data", "mnist", "--size", "2", "--out", out},
	} {
		if code, _, stderr := runCLI(t, c...); code != 2 || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want a usage error", c, code, stderr)
		}
	}
}
