package torchimport

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"asbm/backend/modelfile"
	"asbm/backend/sample"
	"asbm/backend/torchref"
	"asbm/model"
)

// testArch is a small U-Net with two blocks per level, so every kind of parameter (skip convs,
// both levels, mid, up path) is present.
const testArch = `{"kind": "unet", "channels": 3, "height": 8, "width": 8, "base": 4, "mults": [1, 2],
 "res_blocks": 2, "groups": 2, "time_emb": 8, "fourier": 3}`

// python returns the interpreter and unetref.py, or skips (fails with ASBM_REQUIRE_TORCH=1).
func python(t *testing.T) (py, script string) {
	t.Helper()
	py, err := torchref.Python()
	if err == nil {
		script, err = torchref.Script()
	}
	if err != nil {
		if os.Getenv("ASBM_REQUIRE_TORCH") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return py, script
}

func writeF32(t *testing.T, path string, v []float32) {
	t.Helper()
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, v)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readF32(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(b)/4)
	binary.Read(bytes.NewReader(b), binary.LittleEndian, v)
	return v
}

// maxRel is max|a − b| / max|b|.
func maxRel(a, b []float32) float64 {
	var d, s float64
	for i := range b {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
		s = math.Max(s, math.Abs(float64(b[i])))
	}
	return d / math.Max(s, 1e-12)
}

// checkpoint writes a random checkpoint with PyTorch and its reference outputs on random inputs.
func checkpoint(t *testing.T, dir string) (ckpt string, tv, x []float32) {
	t.Helper()
	py, script := python(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 3))
	n := 3
	tv, x = make([]float32, n), make([]float32, n*3*8*8)
	for i := range tv {
		tv[i] = r.Float32()
	}
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	writeF32(t, filepath.Join(dir, "t.f32"), tv)
	writeF32(t, filepath.Join(dir, "x.f32"), x)
	ckpt = filepath.Join(dir, "ckpt.pt")
	cmd := exec.Command(py, script, "checkpoint", "--arch", testArch, "--seed", "7", "--out", ckpt,
		"--t", filepath.Join(dir, "t.f32"), "--x", filepath.Join(dir, "x.f32"), "--ref-dir", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unetref.py checkpoint: %v\n%s", err, out)
	}
	return ckpt, tv, x
}

// TestImportMatchesPyTorch imports a checkpoint PyTorch wrote and checks that the Go forward of every
// network equals PyTorch's own (max relative error 1e-4; f16 storage 3e-3), that `backend import`
// writes a file modelfile loads with the metadata kept, and that `backend sample` draws from it.
func TestImportMatchesPyTorch(t *testing.T) {
	dir := t.TempDir()
	ckpt, tv, x := checkpoint(t, dir)
	for _, f16 := range []bool{false, true} {
		f, err := Read(ckpt, f16)
		if err != nil {
			t.Fatal(err)
		}
		bound := 1e-4
		if f16 {
			bound = 3e-3
		}
		for _, name := range []string{"score", "control", "gen", "baseline"} {
			net, err := model.NetFromFile(f, name+"/")
			if err != nil {
				t.Fatal(err)
			}
			want := readF32(t, filepath.Join(dir, name+".f32"))
			e := maxRel(net.ForwardCPU(tv, x), want)
			t.Logf("%s (f16 %v): max relative error against PyTorch %.2g", name, f16, e)
			if !(e < bound) {
				t.Errorf("%s (f16 %v): Go forward vs PyTorch: max relative error %.3g ≥ %g", name, f16, e, bound)
			}
		}
	}
	out := filepath.Join(dir, "imported.msgpack")
	var stdout bytes.Buffer
	if err := Command([]string{"--from", ckpt, "--out", out, "--f16"}, &stdout); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "score, control, gen, baseline networks") {
		t.Errorf("import printed %q", stdout.String())
	}
	m, err := modelfile.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if m.Dataset() != "test" || m.VP.Beta1 != 4 || m.BaseVP.Beta1 != 20 {
		t.Errorf("metadata: dataset %q, VP %+v, baseline %+v", m.Dataset(), m.VP, m.BaseVP)
	}
	// A checkpoint without score_scale (one from before the flag) is raw: no key in the model file.
	if _, ok := m.File.Meta["score_scale"]; ok || m.SigmaScaled {
		t.Errorf("a checkpoint without score_scale imported with meta score_scale %v (SigmaScaled %v)", m.File.Meta["score_scale"], m.SigmaScaled)
	}
	for _, nfe := range []int{1, 3} {
		imgs, err := sample.CPU(m, sample.Request{Net: "asbm", Sampler: "ode", NFE: nfe, N: 2, Seed: 1}, nil)
		if err != nil || len(imgs) != 2*3*8*8 {
			t.Fatalf("sampling the imported file at NFE %d: %d values, %v", nfe, len(imgs), err)
		}
	}
}

// TestImportScoreScale: meta score_scale "sigma" is kept (modelfile then divides the score-type
// networks by σ_t, and `backend sample` draws from the file), "raw" leaves no key, like its absence;
// any other value is refused.
func TestImportScoreScale(t *testing.T) {
	dir := t.TempDir()
	ckpt, _, _ := checkpoint(t, dir)
	v := newCkptVariants(dir, ckpt, "")
	paths := map[string]string{}
	for name, val := range map[string]string{"sigma": `"sigma"`, "raw": `"raw"`, "half": `"half"`, "number": `1.0`} {
		paths[name] = v.add(name, `c["meta"]["score_scale"] = `+val)
	}
	v.write(t)
	drawn := map[string][]float32{}
	for name, want := range map[string]string{"sigma": "sigma", "raw": "", "half": "error", "number": "error"} {
		out := filepath.Join(dir, name+".msgpack")
		var stdout bytes.Buffer
		err := Command([]string{"--from", paths[name], "--out", out}, &stdout)
		if want == "error" {
			if err == nil || !strings.Contains(err.Error(), "score_scale") {
				t.Errorf("%s: error %v, want one naming score_scale", name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m, err := modelfile.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := m.File.MetaString("score_scale")
		if _, present := m.File.Meta["score_scale"]; got != want || present != (want != "") || m.SigmaScaled != (want == "sigma") {
			t.Errorf("%s: imported meta score_scale %q (present %v), SigmaScaled %v; want %q", name, got, present, m.SigmaScaled, want)
		}
		if want == "sigma" && !strings.Contains(stdout.String(), "σ_t·s") {
			t.Errorf("%s: import printed %q", name, stdout.String())
		}
		imgs, err := sample.CPU(m, sample.Request{Net: "baseline", Sampler: "ode", NFE: 2, N: 2, Seed: 1}, nil)
		if err != nil || len(imgs) != 2*3*8*8 {
			t.Fatalf("%s: sampling the imported file: %d values, %v", name, len(imgs), err)
		}
		drawn[name] = imgs
	}
	// The same weights read as σ_t·s are another score: the samplers must not draw the same images.
	if slices.Equal(drawn["sigma"], drawn["raw"]) {
		t.Errorf("the file with score_scale sigma samples exactly as the raw one: the scale is not applied")
	}
}

// TestImportErrors: a state dict with a missing, a mis-shaped and an extra tensor is refused with
// each named; so are a bare state_dict, garbage, a project weights file, a checkpoint without the
// VP, and a pickle naming a class the importer does not know (which it must not run).
func TestImportErrors(t *testing.T) {
	dir := t.TempDir()
	ckpt, _, _ := checkpoint(t, dir)
	v := newCkptVariants(dir, ckpt, "fractions")
	edit := v.add
	garbage := filepath.Join(dir, "garbage.pt")
	os.WriteFile(garbage, []byte("PK\x03\x04 not really a zip"), 0o644)
	type errCase struct {
		path string
		want []string
	}
	var cases []errCase
	for _, c := range []errCase{
		{edit("broken", `sd = c["nets"]["control"]
del sd["in.w"]
sd["mid.conv1.w"] = torch.zeros(2, 2)
sd["down0.0.attn.w"] = torch.zeros(4)`), []string{"network control", "missing in.w", "mis-shaped mid.conv1.w [2 2] (want [8 8 3 3])", "not in this arch (an unsupported layer?) down0.0.attn.w"}},
		{edit("bare", `c = c["nets"]["score"]`), []string{"format", "bare state_dict"}},
		{edit("novp", `del c["meta"]["beta1"]`), []string{`meta has no "beta1"`}},
		{edit("noscore", `del c["nets"]["score"]`), []string{"no score network"}},
		{edit("nets", `c["nets"]["critic"] = c["nets"]["gen"]`), []string{`unknown network "critic"`}},
		{edit("class", `c["meta"]["ratio"] = fractions.Fraction(1, 3)`), []string{"not a PyTorch checkpoint", "Fraction"}},
		{edit("ints", `c["nets"]["gen"]["out.b"] = torch.zeros(3, dtype=torch.int64)`), []string{"out.b", "not floating point"}},
		{garbage, []string{"not a PyTorch checkpoint"}},
	} {
		cases = append(cases, c)
	}
	v.write(t)
	for _, c := range cases {
		_, err := Read(c.path, false)
		t.Logf("%s: %v", filepath.Base(c.path), err)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v, want it to contain %q", filepath.Base(c.path), err, w)
			}
		}
	}
	if err := Command([]string{"--from", filepath.Join(dir, "none.pt"), "--out", filepath.Join(dir, "x.msgpack")}, &bytes.Buffer{}); err == nil ||
		!strings.Contains(err.Error(), "none.pt") {
		t.Errorf("a missing --from: %v", err)
	}
	if err := Command([]string{"--from", ckpt}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--out") {
		t.Errorf("no --out: %v", err)
	}
}

// ckptVariants writes edited copies of a checkpoint, all with one Python process (importing torch
// takes seconds): add queues <name>.pt, the checkpoint after code has run on it as c; write runs the
// queue.
type ckptVariants struct {
	dir string
	src strings.Builder
}

// newCkptVariants starts a queue of variants of ckpt in dir; imports names extra Python modules the
// edits use (comma-separated, or "").
func newCkptVariants(dir, ckpt, imports string) *ckptVariants {
	v := &ckptVariants{dir: dir}
	if imports != "" {
		imports = ", " + imports
	}
	v.src.WriteString("import copy, torch" + imports + "\nc0 = torch.load(" + pyStr(ckpt) + ")\n")
	return v
}

// add queues the variant name and returns its path.
func (v *ckptVariants) add(name, code string) string {
	p := filepath.Join(v.dir, name+".pt")
	v.src.WriteString("c = copy.deepcopy(c0)\n" + code + "\ntorch.save(c, " + pyStr(p) + ")\n")
	return p
}

// write runs the queue.
func (v *ckptVariants) write(t *testing.T) {
	t.Helper()
	py, _ := python(t)
	if out, err := exec.Command(py, "-c", v.src.String()).CombinedOutput(); err != nil {
		t.Fatalf("writing the variants: %v\n%s", err, out)
	}
}

// pyStr quotes s as a Python string literal.
func pyStr(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}
