// Package torchref runs the PyTorch reference of the project's U-Net (torch/unet.py, driven by
// torch/unetref.py) from Go: its forward on the same weights file and inputs, to check the engines
// against an implementation nobody here wrote the kernels of, and its training-step time on the same
// arch and batch, the speed anchor `backend bench` compares the CPU engine with.
//
// It needs Debian's python3-torch, python3-numpy and python3-msgpack (no pip registry is reachable
// here, and the pyenv python3 first on PATH on these machines has none of them): Python finds an
// interpreter that can import them.
package torchref

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"asbm/weights"
)

// Install is the command that provides what the reference needs.
const Install = "apt-get install python3-torch python3-numpy python3-msgpack"

var (
	pyOnce sync.Once
	pyPath string
	pyErr  error
)

// Python returns the interpreter to run the reference with: $ASBM_PYTHON when set, else the first of
// /usr/bin/python3 and the python3 on PATH that can import torch, numpy and msgpack. The error says
// what to install.
func Python() (string, error) {
	pyOnce.Do(func() {
		cands := []string{"/usr/bin/python3", "python3"}
		if p := os.Getenv("ASBM_PYTHON"); p != "" {
			cands = []string{p}
		}
		var tried []string
		for _, c := range cands {
			out, err := exec.Command(c, "-c", "import torch, numpy, msgpack").CombinedOutput()
			if err == nil {
				pyPath = c
				return
			}
			tried = append(tried, fmt.Sprintf("%s: %s", c, lastLine(string(out), err)))
		}
		pyErr = fmt.Errorf("no python3 with torch, numpy and msgpack (%s); install them with: %s",
			strings.Join(tried, "; "), Install)
	})
	return pyPath, pyErr
}

func lastLine(out string, err error) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return err.Error()
}

// Script returns the path of torch/unetref.py: under $ASBM_TORCH_DIR when set, else in the first
// folder named torch beside a go.mod found walking up from the working directory (a checkout), else
// beside this package's source file (a binary built from this checkout, run elsewhere).
func Script() (string, error) {
	const name = "unetref.py"
	if d := os.Getenv("ASBM_TORCH_DIR"); d != "" {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("ASBM_TORCH_DIR=%s: %w", d, err)
		}
		return p, nil
	}
	var dirs []string
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dirs = append(dirs, filepath.Join(d, "torch"))
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		dirs = append(dirs, filepath.Join(filepath.Dir(file), "..", "..", "torch"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("torch/%s not found (looked in %s); run from the repository or set ASBM_TORCH_DIR", name, strings.Join(dirs, ", "))
}

// run runs unetref.py with args and returns its standard output; a failure carries its stderr.
func run(args ...string) ([]byte, error) {
	py, err := Python()
	if err != nil {
		return nil, err
	}
	script, err := Script()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(py, append([]string{script}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, errors.New("torchref: " + msg)
	}
	return stdout.Bytes(), nil
}

// Forward evaluates the U-Net stored under prefix ("score.", "" for a single network) in the weights
// file model with PyTorch, on times t (n values) and images x (n·C·H·W, NCHW), and returns f(t, x).
func Forward(model, prefix string, t, x []float32) ([]float32, error) {
	dir, err := os.MkdirTemp("", "torchref")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tp, xp, op := filepath.Join(dir, "t.f32"), filepath.Join(dir, "x.f32"), filepath.Join(dir, "out.f32")
	if err := writeF32(tp, t); err != nil {
		return nil, err
	}
	if err := writeF32(xp, x); err != nil {
		return nil, err
	}
	if _, err := run("forward", "--model", model, "--prefix", prefix, "--t", tp, "--x", xp, "--out", op); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(op)
	if err != nil {
		return nil, err
	}
	if len(b) != 4*len(x) {
		return nil, fmt.Errorf("torchref: the output has %d bytes, want %d", len(b), 4*len(x))
	}
	out := make([]float32, len(x))
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

func writeF32(path string, v []float32) error {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return os.WriteFile(path, b, 0o644)
}

// Result is one benchmark of PyTorch's U-Net on random data: medians in milliseconds of a forward
// under no_grad and of a training step (forward, MSE, backward, AdamW).
type Result struct {
	Torch     string  `json:"torch"`
	Threads   int     `json:"threads"`
	Batch     int     `json:"batch"`
	Params    int     `json:"params"`
	ForwardMS float64 `json:"forward_ms"`
	StepMS    float64 `json:"step_ms"`
}

// BenchStep times PyTorch on the U-Net arch at the given batch with torch.set_num_threads(threads):
// warmup untimed calls of each, then the median of reps.
func BenchStep(arch weights.Arch, batch, warmup, reps, threads int) (Result, error) {
	if arch.Kind != "unet" {
		return Result{}, fmt.Errorf("torchref: BenchStep wants a U-Net, got %q", arch.Kind)
	}
	js, err := json.Marshal(map[string]any{"kind": arch.Kind, "dim": arch.Dim, "channels": arch.Channels,
		"height": arch.Height, "width": arch.Width, "base": arch.Base, "mults": arch.Mults,
		"res_blocks": arch.ResBlocks, "groups": arch.Groups, "time_emb": arch.TimeEmb, "fourier": arch.Fourier})
	if err != nil {
		return Result{}, err
	}
	out, err := run("bench", "--arch", string(js), "--batch", fmt.Sprint(batch), "--warmup", fmt.Sprint(warmup),
		"--reps", fmt.Sprint(reps), "--threads", fmt.Sprint(threads))
	if err != nil {
		return Result{}, err
	}
	var r Result
	if err := json.Unmarshal(bytes.TrimSpace(out), &r); err != nil {
		return Result{}, fmt.Errorf("torchref: bench printed %q: %w", out, err)
	}
	return r, nil
}
