package torchimport

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"asbm/backend/modelfile"
	"asbm/backend/sample"
	"asbm/backend/train"
	"asbm/model"
	"asbm/shaders"
	"asbm/weights"
)

// The PyTorch trainer's tiny runs: a toy MLP and a colour U-Net on a folder of small PNG files (written
// by writePNGs, padded and shrunk to 8×8). Every
// stage-1 phase (init CM, AM, simulated CM, terminal checks), stage 2, the baseline and distillation
// run; batches and simulation chunks are cut so that the last ones are short and uneven across ranks.
var (
	torchToyArgs = []string{"--data", "toy:8gaussians", "--hidden", "16", "--layers", "2", "--fourier", "4",
		"--stage1-epochs", "4", "--am-epochs", "2", "--cm-epochs", "1", "--eval-start", "0", "--eval-samples", "256",
		"--resample", "500", "--sim-batch", "256", "--buffer", "1000", "--forward-nfe", "5", "--cm-nfe", "5",
		"--stage2-epochs", "2", "--couplings", "500", "--stage2-passes", "1", "--stage2-nfe", "5",
		"--distill-epochs", "1", "--distill-samples", "300", "--distill-ode-steps", "3", "--distill-passes", "1",
		"--batch", "96", "--lr", "3e-3", "--ema", "0.9"}
	torchImageArgs = []string{"--size", "8", "--base", "4", "--mults", "1,2",
		"--res-blocks", "1", "--groups", "2", "--time-emb", "8", "--fourier", "3",
		"--stage1-epochs", "3", "--am-epochs", "1", "--cm-epochs", "1", "--eval-start", "0", "--eval-samples", "64",
		"--resample", "90", "--sim-batch", "32", "--buffer", "256", "--forward-nfe", "3", "--cm-nfe", "3",
		"--stage2-epochs", "1", "--couplings", "90", "--stage2-passes", "1", "--stage2-nfe", "3",
		"--distill-epochs", "1", "--distill-samples", "64", "--distill-ode-steps", "2", "--distill-passes", "1",
		"--batch", "32", "--lr", "3e-3", "--ema", "0.9"}
)

// mnist100 is the imgdata fixture's folder (MNIST's idx layout): the image defaults' data set.
func mnist100() string {
	p, _ := filepath.Abs(filepath.Join("..", "imgdata", "testdata", "mnist100"))
	return p
}

// runJobs runs torch/asbm_check.py's jobs file, under torchrun with nproc processes when nproc > 1.
func runJobs(t *testing.T, py, dir, name string, nproc int, jobs []map[string]any) {
	t.Helper()
	_, script := python(t)
	check := filepath.Join(filepath.Dir(script), "asbm_check.py")
	b, _ := json.Marshal(jobs)
	file := filepath.Join(dir, name+".json")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{check, "jobs", file}
	if nproc > 1 {
		// torchrun is the module torch.distributed.run (so it runs under the interpreter that has
		// torch). --standalone picks a free port; the agent polls its workers every 0.5 s, not 5.
		// --redirects/--tee 9:1 name a local rank that does not exist, i.e. no redirection: the
		// plain default "0" crashes torch 1.13's torchrun on Python 3.11 (Std.from_str returns None
		// because Python 3.11 no longer lists an IntFlag's zero member), and this spelling works
		// on every version.
		args = append([]string{"-m", "torch.distributed.run", "--standalone", "--nproc_per_node=" + strconv.Itoa(nproc),
			"--monitor_interval=0.5", "--redirects=9:1", "--tee=9:1"}, args...)
	}
	// A rank that fails leaves the others waiting in a collective: bound the run, not the test binary.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, args...)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("%s (%d process(es)): %.1f s", name, nproc, time.Since(start).Seconds())
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", py, strings.Join(args, " "), err, out)
	}
}

// compareReport is what `asbm_check.py` compare writes: two runs' epoch losses and final parameters.
type compareReport struct {
	World     []int              `json:"world"`
	Epochs    int                `json:"epochs"`
	MaxRel    float64            `json:"max_rel_loss_diff"`
	MedianRel float64            `json:"median_rel_loss_diff"`
	MaxParam  map[string]float64 `json:"max_abs_param_diff"`
	Commands  []string           `json:"commands"`
}

// readCompare reads the compare report at path.
func readCompare(t *testing.T, path string) compareReport {
	t.Helper()
	var cmp compareReport
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &cmp)
	}
	if err != nil {
		t.Fatal(err)
	}
	return cmp
}

// TestTorchTrainer trains the toy and the image net with torch/asbm_train.py on two processes
// (torchrun, DDP over gloo) and on one, then checks that
//   - the two runs agree (epoch losses and final parameters up to float rounding: asbm/dist.py);
//   - `backend import` reads the DDP run's checkpoint, and the Go CPU forward, the WGSL forward
//     (native WebGPU) and PyTorch's forward of every network agree within 1e-4 relative error;
//   - `backend sample` draws from the imported file with every sampler, the image run's with its
//     σ-scaled score networks (the image defaults' --score-scale sigma, kept in the metadata);
//   - the trainer's defaults are backend train's (DefaultConfig, DefaultImageConfig);
//   - asbm/png.py decodes the PNG files Go's image/png writes to the same pixels;
//   - a run stopped on two processes and resumed on one ends where the one-process run ends;
//   - a --phase-seconds run equals the run asked for the epochs it ran, and --init-from trains a
//     model file's networks further.
func TestTorchTrainer(t *testing.T) {
	py, _ := python(t)
	dir := t.TempDir()
	start := time.Now()
	runs := map[string][]string{"toy": torchToyArgs, "image": torchImageArgs}
	var ddp, one []map[string]any
	pngs := filepath.Join(dir, "pngs")
	want := writePNGs(t, pngs)
	runs["image"] = append([]string{"--data", "dir:" + pngs}, runs["image"]...)
	for _, k := range []string{"toy", "image"} {
		ddp = append(ddp, map[string]any{"train": append([]string{"--run", filepath.Join(dir, k+"2")}, runs[k]...)})
		one = append(one, map[string]any{"train": append([]string{"--run", filepath.Join(dir, k+"1"), "--threads", "1"}, runs[k]...)})
	}
	// A run stopped in stage 2 on two processes and resumed on one (its streams are per epoch, so the
	// world size may change at a resume).
	resumed := filepath.Join(dir, "toyR")
	ddp = append(ddp, map[string]any{"train": append([]string{"--run", resumed, "--stop-after-epochs", "5"}, runs["toy"]...)})
	one = append(one, map[string]any{"train": []string{"--resume", "--run", resumed, "--threads", "1"}},
		map[string]any{"compare": []string{resumed, filepath.Join(dir, "toy1"), filepath.Join(dir, "cmp-resume.json")}})
	// A run whose stage 2 and distillation --phase-seconds cuts to one epoch each, on two processes
	// (rank 0 decides for both), against the same run asked for one epoch of each on one process.
	capped, uncut := filepath.Join(dir, "toyCap"), filepath.Join(dir, "toyOne")
	ddp = append(ddp, map[string]any{"train": append(append([]string{"--run", capped}, runs["toy"]...),
		"--stage2-epochs", "5", "--distill-epochs", "3", "--phase-seconds", "stage2=1e-9,distill=1e-9")})
	one = append(one, map[string]any{"train": append(append([]string{"--run", uncut, "--threads", "1"}, runs["toy"]...),
		"--stage2-epochs", "1", "--distill-epochs", "1")},
		map[string]any{"compare": []string{capped, uncut, filepath.Join(dir, "cmp-cap.json")}})
	runJobs(t, py, dir, "ddp", 2, ddp)

	// --init-from: the DDP toy run's networks as a model file, trained further from stage 2 at a
	// learning rate too small to move them, so every network must come back as the file's.
	src, err := Read(filepath.Join(dir, "toy2", "model.pt"), false)
	if err != nil {
		t.Fatal(err)
	}
	srcPath, initRun := filepath.Join(dir, "toy2.msgpack"), filepath.Join(dir, "toyInit")
	if err := weights.WriteFile(srcPath, src); err != nil {
		t.Fatal(err)
	}
	one = append(one, map[string]any{"train": append(append([]string{"--run", initRun, "--threads", "1"}, runs["toy"]...),
		"--init-from", srcPath, "--from-phase", "stage2", "--lr", "1e-12")})

	// Inputs of the forward comparison, and the single-process runs, comparisons, PyTorch forwards
	// and the trainer's defaults in one more Python process.
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))
	shapes := map[string]int{"toy": 2, "image": 3 * 64}
	inputs := map[string][2][]float32{}
	for k, d := range shapes {
		n := 5
		tv, x := make([]float32, n), make([]float32, n*d)
		for i := range tv {
			tv[i] = r.Float32()
		}
		tv[0] = 1 // the corrector's and the generator's time
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		inputs[k] = [2][]float32{tv, x}
		writeF32(t, filepath.Join(dir, k+"-t.f32"), tv)
		writeF32(t, filepath.Join(dir, k+"-x.f32"), x)
		os.MkdirAll(filepath.Join(dir, "ref-"+k), 0o755)
		one = append(one,
			map[string]any{"compare": []string{filepath.Join(dir, k+"2"), filepath.Join(dir, k+"1"), filepath.Join(dir, "cmp-"+k+".json")}},
			map[string]any{"forward": map[string]string{"ckpt": filepath.Join(dir, k+"2", "model.pt"),
				"t": filepath.Join(dir, k+"-t.f32"), "x": filepath.Join(dir, k+"-x.f32"), "out_dir": filepath.Join(dir, "ref-"+k)}})
	}
	os.MkdirAll(filepath.Join(dir, "decoded"), 0o755)
	one = append(one,
		map[string]any{"png": []string{pngs, filepath.Join(dir, "decoded")}},
		map[string]any{"config": []any{[]string{"--data", "toy:8gaussians"}, filepath.Join(dir, "cfg-toy.json")}},
		map[string]any{"config": []any{[]string{"--data", "idx:" + mnist100()}, filepath.Join(dir, "cfg-image.json")}})
	runJobs(t, py, dir, "one", 1, one)

	t.Run("png", func(t *testing.T) {
		for name, rgba := range want {
			got, err := os.ReadFile(filepath.Join(dir, "decoded", name+".rgba"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, rgba) {
				t.Errorf("%s: asbm/png.py decodes other pixels than Go's image/png encoded", name)
			}
		}
	})
	t.Run("resume", func(t *testing.T) {
		cmp := readCompare(t, filepath.Join(dir, "cmp-resume.json"))
		t.Logf("stopped after 5 epochs on 2 processes, resumed on 1, vs 1 process throughout: losses %.2g, parameters %v", cmp.MaxRel, cmp.MaxParam)
		if cmp.Epochs != 9 || !(cmp.MaxRel < 1e-5) {
			t.Errorf("the resumed run: %d epochs, losses differ by %.3g relative", cmp.Epochs, cmp.MaxRel)
		}
		for net, d := range cmp.MaxParam {
			if !(d < 1e-5) {
				t.Errorf("the resumed run's %s differs by %.3g", net, d)
			}
		}
	})
	t.Run("phase-seconds", func(t *testing.T) {
		cmp := readCompare(t, filepath.Join(dir, "cmp-cap.json"))
		// 4 stage-1 epochs, then one each of stage 2, the baseline (stage 2's count) and distillation.
		if cmp.Epochs != 7 || !(cmp.MaxRel < 1e-5) {
			t.Errorf("the capped run: %d epochs (want 7), losses differ by %.3g relative from the uncapped one", cmp.Epochs, cmp.MaxRel)
		}
		for net, d := range cmp.MaxParam {
			if !(d < 1e-5) {
				t.Errorf("the capped run's %s differs by %.3g", net, d)
			}
		}
		if len(cmp.Commands) != 2 || cmp.Commands[0] != cmp.Commands[1] || !strings.Contains(cmp.Commands[0], "--stage2-epochs 1 ") ||
			!strings.Contains(cmp.Commands[0], "--distill-epochs 1 ") {
			t.Errorf("the capped run's command should be the uncapped run's, with the epochs it ran:\n%q", cmp.Commands)
		}
	})
	t.Run("init-from", func(t *testing.T) {
		f, err := Read(filepath.Join(initRun, "model.pt"), false)
		if err != nil {
			t.Fatal(err)
		}
		for _, tn := range src.Tensors {
			want, _, err := src.Float32(tn.Name)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := f.Float32(tn.Name)
			if err != nil {
				t.Fatal(err)
			}
			// The control is stage 1's and taken as is; the others moved by at most lr × steps.
			tol := 1e-6
			if strings.HasPrefix(tn.Name, "control/") {
				tol = 0
			}
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); !(d <= tol) {
					t.Fatalf("%s[%d]: %g after --init-from, the file has %g", tn.Name, i, got[i], want[i])
				}
			}
		}
		jsonl, err := os.ReadFile(filepath.Join(initRun, "train.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		phases := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(string(jsonl)), "\n") {
			var e struct{ Phase string }
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatal(err)
			}
			phases[e.Phase]++
		}
		training, _ := f.MetaString("training")
		command, _ := f.MetaString("command")
		if phases["stage1"] != 0 || phases["stage2"] != 2 || phases["baseline"] != 2 || phases["distill"] != 1 ||
			!strings.HasPrefix(training, "init: ") || !strings.Contains(command, "--init-from "+srcPath+" --from-phase stage2 ") {
			t.Errorf("epochs by phase %v; training %q; command %q", phases, training, command)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		want := map[string]train.Config{"toy": train.DefaultConfig(), "image": train.DefaultImageConfig("idx:"+mnist100(), 1, 28)}
		w := want["toy"]
		w.Data = "toy:8gaussians"
		want["toy"] = w
		for k, w := range want {
			b, err := os.ReadFile(filepath.Join(dir, "cfg-"+k+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var got train.Config
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("%s: %v\n%s", k, err, b)
			}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("%s: asbm_train.py --print-config\n%+v\nbackend train's defaults\n%+v", k, got, w)
			}
		}
	})

	var dev *shaders.Device
	if d, err := shaders.NewDevice(); err == nil {
		dev = d
		defer dev.Close()
		t.Logf("WebGPU adapter: %s", dev.AdapterInfo())
	} else if os.Getenv("ASBM_REQUIRE_GPU") == "1" {
		t.Fatalf("ASBM_REQUIRE_GPU=1 but no WebGPU device: %v", err)
	} else {
		t.Logf("no WebGPU device (%v): the WGSL forward is not checked", err)
	}
	for _, k := range []string{"toy", "image"} {
		t.Run(k, func(t *testing.T) {
			cmp := readCompare(t, filepath.Join(dir, "cmp-"+k+".json"))
			t.Logf("DDP (%d processes) vs one process, %d epochs: epoch losses max relative difference %.2g (median %.2g); final parameters max |Δ| %v",
				cmp.World[0], cmp.Epochs, cmp.MaxRel, cmp.MedianRel, cmp.MaxParam)
			if cmp.World[0] != 2 || cmp.World[1] != 1 || cmp.Epochs < 5 {
				t.Errorf("compared worlds %v over %d epochs", cmp.World, cmp.Epochs)
			}
			if !(cmp.MaxRel < 1e-5) {
				t.Errorf("DDP and single-process epoch losses differ by %.3g relative (want float rounding, < 1e-5)", cmp.MaxRel)
			}
			for net, d := range cmp.MaxParam {
				if !(d < 1e-5) {
					t.Errorf("%s: DDP and single-process parameters differ by %.3g", net, d)
				}
			}

			ckpt := filepath.Join(dir, k+"2", "model.pt")
			f, err := Read(ckpt, false)
			if err != nil {
				t.Fatal(err)
			}
			in := inputs[k]
			for _, name := range []string{"score", "control", "gen", "baseline"} {
				net, err := model.NetFromFile(f, name+"/")
				if err != nil {
					t.Fatal(err)
				}
				want := readF32(t, filepath.Join(dir, "ref-"+k, name+".f32"))
				goCPU := net.ForwardCPU(in[0], in[1])
				e := maxRel(goCPU, want)
				msg := fmt.Sprintf("%s %s: max relative error vs PyTorch: Go CPU %.2g", k, name, e)
				if !(e < 1e-4) {
					t.Errorf("%s %s: Go CPU forward vs PyTorch: max relative error %.3g ≥ 1e-4", k, name, e)
				}
				if dev != nil {
					g, err := shaders.NewGPUNet(dev, net)
					if err != nil {
						t.Fatal(err)
					}
					wgsl, err := g.Forward(in[0], in[1])
					g.Close()
					if err != nil {
						t.Fatal(err)
					}
					e, e2 := maxRel(wgsl, want), maxRel(wgsl, goCPU)
					msg += fmt.Sprintf(", WGSL %.2g (WGSL vs Go CPU %.2g)", e, e2)
					if !(e < 1e-4) || !(e2 < 1e-4) {
						t.Errorf("%s %s: WGSL forward: max relative error %.3g vs PyTorch, %.3g vs Go CPU (want < 1e-4)", k, name, e, e2)
					}
				}
				t.Log(msg)
			}

			out := filepath.Join(dir, k+".msgpack")
			if err := Command([]string{"--from", ckpt, "--out", out}, &bytes.Buffer{}); err != nil {
				t.Fatal(err)
			}
			m, err := modelfile.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			wantName := map[string]string{"toy": "8gaussians", "image": "pngs"}[k]
			if m.Dataset() != wantName || m.VP.Beta1 != 4 || m.BaseVP.Beta1 != 20 || m.VP.Beta0 != 0.1 {
				t.Errorf("metadata: dataset %q, VP %+v, baseline %+v", m.Dataset(), m.VP, m.BaseVP)
			}
			if ws, _ := m.File.MetaFloat("world_size"); ws != 2 {
				t.Errorf("meta world_size %v, want 2", ws)
			}
			// The image run has the image defaults' --score-scale sigma (its score, baseline and gen output
			// σ_t·s, and the samplers below divide by σ_t); the toy's raw leaves no key.
			sc, _ := m.File.MetaString("score_scale")
			_, present := m.File.Meta["score_scale"]
			if wantSigma := k == "image"; m.SigmaScaled != wantSigma || present != wantSigma || (wantSigma && sc != "sigma") {
				t.Errorf("meta score_scale %q (present %v), SigmaScaled %v; want sigma only for the image run", sc, present, m.SigmaScaled)
			}
			d := shapes[k]
			for _, req := range []sample.Request{
				{Net: "asbm", Sampler: "sde", NFE: 3, N: 4, Seed: 1}, {Net: "asbm", Sampler: "ode", NFE: 2, N: 4, Seed: 1},
				{Net: "asbm", Sampler: "sde", NFE: 1, N: 4, Seed: 1}, {Net: "baseline", Sampler: "ode", NFE: 2, N: 4, Seed: 1},
			} {
				pts, err := sample.CPU(m, req, nil)
				if err != nil || len(pts) != 4*d {
					t.Fatalf("%+v: %d values, %v", req, len(pts), err)
				}
				for _, v := range pts {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatalf("%+v: a sample is not finite", req)
					}
				}
			}
			if k == "toy" {
				// The verb itself: CSV of 5 points.
				var csv bytes.Buffer
				if err := sample.Command([]string{"--model", out, "--n", "5", "--nfe", "4"}, &csv); err != nil {
					t.Fatal(err)
				}
				if lines := strings.Split(strings.TrimSpace(csv.String()), "\n"); len(lines) != 6 || lines[0] != "x,y" {
					t.Errorf("backend sample printed %q", csv.String())
				}
			}
		})
	}
	t.Logf("wall time %.1f s", time.Since(start).Seconds())
}

// writePNGs writes 24 small PNG files of the colour types Go's encoder produces — RGBA with alpha,
// RGB (opaque), gray, and a palette with a transparent entry — smooth ramps with noise, so the encoder
// picks varied row filters, 10×12 so the loader pads them to a square. It returns each file's pixels
// as non-premultiplied RGBA bytes.
func writePNGs(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 15))
	pal := color.Palette{color.NRGBA{0, 0, 0, 0}, color.NRGBA{255, 0, 0, 255}, color.NRGBA{0, 200, 50, 128},
		color.NRGBA{20, 40, 250, 255}, color.NRGBA{255, 255, 255, 255}}
	out := map[string][]byte{}
	for i := 0; i < 24; i++ {
		rect := image.Rect(0, 0, 10, 12)
		var img image.Image
		px := func(x, y, c int) uint8 { return uint8((x*23 + y*11 + c*70 + i*9 + r.IntN(9)) % 256) }
		switch i % 4 {
		case 0, 1:
			m := image.NewNRGBA(rect)
			for y := 0; y < 12; y++ {
				for x := 0; x < 10; x++ {
					a := uint8(255)
					if i%4 == 0 {
						a = px(x, y, 3)
					}
					m.SetNRGBA(x, y, color.NRGBA{px(x, y, 0), px(x, y, 1), px(x, y, 2), a})
				}
			}
			img = m
		case 2:
			m := image.NewGray(rect)
			for y := 0; y < 12; y++ {
				for x := 0; x < 10; x++ {
					m.SetGray(x, y, color.Gray{px(x, y, 0)})
				}
			}
			img = m
		default:
			m := image.NewPaletted(rect, pal)
			for y := 0; y < 12; y++ {
				for x := 0; x < 10; x++ {
					m.SetColorIndex(x, y, uint8((x+y+r.IntN(2))%len(pal)))
				}
			}
			img = m
		}
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("img%02d.png", i)
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		rgba := make([]byte, 0, 4*10*12)
		for y := 0; y < 12; y++ {
			for x := 0; x < 10; x++ {
				c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
				rgba = append(rgba, c.R, c.G, c.B, c.A)
			}
		}
		out[name] = rgba
	}
	return out
}
