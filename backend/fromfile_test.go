package main

// Tests of starting `backend train` from a finished model file: --distill-from and --init-from.

import (
	"bytes"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"asbm/backend/internal/clitest"
	"asbm/backend/modelfile"
	"asbm/weights"
)

// TestDistillFromModelFile distils a new generator from a finished model file (--distill-from):
// the file's score, control and baseline are carried over bit for bit (the run rebuilds no earlier
// phase), the generator is new, the metadata keeps the file's history and records the new
// distillation's flags; --keep-weights continues the file's generator; bad combinations are usage
// errors.
func TestDistillFromModelFile(t *testing.T) {
	dir := t.TempDir()
	src := clitest.TrainTiny(t, dir)
	before := readWeights(t, src)
	// The same configuration reproduces the file's generator bit for bit: the teacher and the
	// distillation's seed are the original run's.
	assertSameTensors(t, before, trainFile(t, dir, "run1", "--distill-from", src))
	after := readWeights(t, trainFile(t, dir, "run2", "--distill-from", src, "--distill-epochs", "3"))
	if len(after.Tensors) != len(before.Tensors) {
		t.Fatalf("%d tensors, the source has %d", len(after.Tensors), len(before.Tensors))
	}
	for i, tb := range before.Tensors {
		same := tb.Name == after.Tensors[i].Name && bytes.Equal(tb.Data, after.Tensors[i].Data)
		if strings.HasPrefix(tb.Name, modelfile.Gen) == same {
			t.Errorf("%s: unchanged = %v after distilling from the file for 3 epochs", tb.Name, same)
		}
	}
	if cmd, _ := after.MetaString("command"); !strings.Contains(cmd, "--distill-epochs 3") {
		t.Errorf("command %q does not record the override", cmd)
	}
	log, _ := after.MetaString("training")
	srcLog, _ := before.MetaString("training")
	stage1, _, _ := strings.Cut(srcLog, "\n")
	if !strings.HasPrefix(log, stage1+"\n") || !strings.Contains(log, "taken from "+src+" (--distill-from "+src+")") || !strings.Contains(log, "\ndistill: 3 epochs") {
		t.Errorf("training metadata:\n%s", log)
	}
	// --keep-weights: the file's generator trained further at a vanishing learning rate stays put.
	kept := trainFile(t, dir, "run3", "--distill-from", src, "--keep-weights", "--lr", "1e-12", "--distill-epochs", "1")
	assertNetsNear(t, src, kept, 1e-6, modelfile.Gen)
	assertUsageErrors(t,
		usageCase{[]string{"--distill-from", src, "--resume", "--run", filepath.Join(dir, "run2")}, "does not take --resume"},
		usageCase{[]string{"--distill-from", src, "--hidden", "7", "--run", filepath.Join(dir, "run4")}, "do not change the network flags"},
		usageCase{[]string{"--distill-from", src, "--score-scale", "sigma", "--run", filepath.Join(dir, "run5")}, "cannot change here"},
		usageCase{[]string{"--distill-from", filepath.Join(dir, "none.msgpack")}, "none.msgpack"})
}

// TestDistillDMDFromModelFile: --distill-method dmd trains the file's generator further by
// distribution matching (asbm.DMD) and leaves every other network bit for bit; its phase line says so;
// bad DMD flags are usage errors.
func TestDistillDMDFromModelFile(t *testing.T) {
	dir := t.TempDir()
	src := clitest.TrainTiny(t, dir)
	before := readWeights(t, src)
	after := readWeights(t, trainFile(t, dir, "run1", "--distill-from", src, "--keep-weights", "--distill-method", "dmd",
		"--dmd-lr", "1e-3", "--dmd-fake-steps", "2", "--distill-epochs", "2"))
	for i, tb := range before.Tensors {
		same := tb.Name == after.Tensors[i].Name && bytes.Equal(tb.Data, after.Tensors[i].Data)
		if strings.HasPrefix(tb.Name, modelfile.Gen) == same {
			t.Errorf("%s: unchanged = %v after 2 DMD epochs", tb.Name, same)
		}
	}
	if log, _ := after.MetaString("training"); !strings.Contains(log, "\ndistill (DMD): 2 epochs") || !strings.Contains(log, "2 fake-score steps, lr 0.001") {
		t.Errorf("training metadata:\n%s", log)
	}
	assertUsageErrors(t,
		usageCase{[]string{"--distill-from", src, "--distill-method", "sds", "--run", filepath.Join(dir, "run2")}, "--distill-method is regress or dmd"},
		usageCase{[]string{"--distill-from", src, "--distill-method", "dmd", "--dmd-lr", "-1", "--run", filepath.Join(dir, "run3")}, "--dmd-lr"})
}

// trainFile runs `backend train` with args into the run folder dir/run and returns the path of the
// model file it writes (dir/run.msgpack).
func trainFile(t *testing.T, dir, run string, args ...string) string {
	t.Helper()
	out := filepath.Join(dir, run+".msgpack")
	if code, _, stderr := runCLI(t, append([]string{"train", "--run", filepath.Join(dir, run), "--out", out}, args...)...); code != 0 {
		t.Fatalf("train %v: exit %d: %s", args, code, stderr)
	}
	return out
}

// readWeights reads the model file at path as it is stored.
func readWeights(t *testing.T, path string) *weights.File {
	t.Helper()
	f, err := weights.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// assertSameTensors fails for every tensor of the model file at path that is not want's, byte for byte.
func assertSameTensors(t *testing.T, want *weights.File, path string) {
	t.Helper()
	got := readWeights(t, path)
	if len(got.Tensors) != len(want.Tensors) {
		t.Fatalf("%d tensors, want %d", len(got.Tensors), len(want.Tensors))
	}
	for i, tb := range want.Tensors {
		if tb.Name != got.Tensors[i].Name || !bytes.Equal(tb.Data, got.Tensors[i].Data) {
			t.Errorf("%s differs from the source file's although no flag changed", tb.Name)
		}
	}
}

// assertNetsNear fails when a parameter of one of the networks nets of the model file got moved by
// more than tol from the source file src's: a run at a vanishing learning rate that continued the
// file's networks (--keep-weights) gives them back.
func assertNetsNear(t *testing.T, src, got string, tol float64, nets ...string) {
	t.Helper()
	b, err := modelfile.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	k, err := modelfile.Load(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, net := range nets {
		for name, v := range b.Nets[net].Params {
			for i := range v {
				if d := math.Abs(float64(v[i] - k.Nets[net].Params[name][i])); d > tol {
					t.Fatalf("--keep-weights: %s %s moved by %g (> %g) at lr 1e-12: it did not start from the file's", net, name, d, tol)
				}
			}
		}
	}
}

// usageCase is a train command line that must fail as a usage error naming want.
type usageCase struct {
	args []string
	want string
}

// assertUsageErrors runs `backend train` on each case's arguments and checks exit 2 and the message.
func assertUsageErrors(t *testing.T, cases ...usageCase) {
	t.Helper()
	for _, c := range cases {
		if code, _, stderr := runCLI(t, append([]string{"train"}, c.args...)...); code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("train %v: exit %d %q, want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}

// TestInitFromModelFile starts new runs at stage 2 from a finished model file (--init-from): with
// the file's own configuration the run retrains stage 2, the baseline and distillation to the
// file's networks bit for bit (their seeds are per phase, and the control is the file's);
// --keep-weights trains the file's networks further (at a vanishing learning rate they stay put,
// so they did start from the file's); the metadata keeps the file's history; bad combinations are
// usage errors.
func TestInitFromModelFile(t *testing.T) {
	dir := t.TempDir()
	src := clitest.TrainTiny(t, dir)
	before := readWeights(t, src)
	same := trainFile(t, dir, "run1", "--init-from", src)
	assertSameTensors(t, before, same)
	srcLog, _ := before.MetaString("training")
	stage1, _, _ := strings.Cut(srcLog, "\n")
	if log, _ := readWeights(t, same).MetaString("training"); !strings.HasPrefix(log, stage1+"\nnetworks of stage 1 taken from "+src+" (--init-from "+src+" --from-phase stage2)\nstage2: ") {
		t.Errorf("training metadata:\n%s", log)
	}
	kept := trainFile(t, dir, "run2", "--init-from", src, "--from-phase", "stage2", "--keep-weights", "--lr", "1e-12",
		"--stage2-epochs", "1", "--distill-epochs", "1")
	assertNetsNear(t, src, kept, 0, modelfile.Control) // taken as it is
	assertNetsNear(t, src, kept, 1e-6, modelfile.Score, modelfile.Baseline, modelfile.Gen)
	log, _ := readWeights(t, kept).MetaString("training")
	if !strings.HasPrefix(log, srcLog+"\nnetworks of stage 1 taken from "+src+", and its later ones continued (--init-from "+src+" --from-phase stage2 --keep-weights)\nstage2: 1 epochs") ||
		strings.Count(log, "(continued from the previous networks, --keep-weights)") != 3 {
		t.Errorf("--keep-weights: training metadata:\n%s", log)
	}
	assertUsageErrors(t,
		usageCase{[]string{"--init-from", src, "--resume", "--run", filepath.Join(dir, "run2")}, "does not take --resume"},
		usageCase{[]string{"--init-from", src, "--from-phase", "stage1", "--run", filepath.Join(dir, "run3")}, "one of stage2, baseline, distill"},
		usageCase{[]string{"--init-from", src, "--distill-from", src, "--run", filepath.Join(dir, "run3")}, "give one form"},
		usageCase{[]string{"--from-phase", "stage2", "--data", "toy:moons", "--run", filepath.Join(dir, "run3")}, "needs --resume or --init-from"},
		usageCase{[]string{"--init-from", src, "--hidden", "7", "--run", filepath.Join(dir, "run3")}, "do not change the network flags"},
		usageCase{[]string{"--init-from", filepath.Join(dir, "none.msgpack")}, "none.msgpack"})
}
