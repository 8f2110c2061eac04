// Package clitest runs `backend` verbs in-process for the tests of the packages that implement
// them, with the smallest whole training runs as fixtures.
package clitest

import (
	"bytes"
	"path/filepath"
	"testing"

	"asbm/backend/cli"
	"asbm/backend/train"
)

// TinyTrain is a whole training run small enough for a test: every phase runs, on a tiny MLP.
var TinyTrain = []string{"--data", "toy:8gaussians", "--hidden", "16", "--layers", "2", "--fourier", "2",
	"--stage1-epochs", "6", "--am-epochs", "2", "--cm-epochs", "1", "--eval-start", "2", "--eval-samples", "512",
	"--resample", "512", "--buffer", "1024", "--cm-nfe", "20", "--stage2-epochs", "3", "--couplings", "512",
	"--distill-epochs", "2", "--distill-samples", "256", "--distill-ode-steps", "4", "--batch", "128"}

// TinyImageTrain is a whole image run small enough for a test: MNIST resampled to 8×8, a two-level
// U-Net with 4 base channels, every phase a step or two.
var TinyImageTrain = []string{"--data", "mnist", "--size", "8", "--base", "4", "--mults", "1,2", "--groups", "2",
	"--time-emb", "8", "--fourier", "2", "--stage1-epochs", "2", "--am-epochs", "1", "--cm-epochs", "1",
	"--eval-start", "0", "--eval-samples", "32", "--resample", "32", "--buffer", "64", "--forward-nfe", "3",
	"--cm-nfe", "3", "--stage2-epochs", "1", "--couplings", "32", "--stage2-nfe", "3", "--distill-epochs", "1",
	"--distill-samples", "16", "--distill-ode-steps", "2", "--batch", "16"}

// Run runs args (a verb and its flags) against verbs in-process, as `backend` would, and returns the
// exit status and what went to stdout and stderr.
func Run(t *testing.T, verbs map[string]cli.Verb, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(verbs, args, &out, &errb)
	return code, out.String(), errb.String()
}

// TrainTiny trains the TinyTrain model (with extra flags) into dir and returns the model path.
func TrainTiny(t *testing.T, dir string, extra ...string) string {
	t.Helper()
	out := filepath.Join(dir, "m.msgpack")
	args := append(append([]string{"train", "--run", filepath.Join(dir, "run"), "--out", out}, TinyTrain...), extra...)
	if code, _, stderr := Run(t, map[string]cli.Verb{"train": {Run: train.Command}}, args...); code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr)
	}
	return out
}
