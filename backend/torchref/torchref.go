// Package torchref runs the PyTorch reference of the project's U-Net (torch/unet.py, driven by
// torch/unetref.py) from Go: its forward on the same weights file and inputs, to check the engines
// against an implementation whose kernels nobody here wrote, and its training-step time on the same
// arch and batch, the speed anchor `backend bench` compares the CPU engine with.
//
// It runs the script in a child interpreter rather than linking libtorch: Debian's python3-torch is
// the only PyTorch these machines can install (no pip registry is reachable), and a process keeps
// its threads and allocator out of the Go benchmarks. It needs python3-torch, python3-numpy and
// python3-msgpack (the pyenv python3 first on PATH on these machines has none of them): Python
// finds an interpreter that can import them. Tests that need it skip without it unless
// ASBM_REQUIRE_TORCH=1.
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

// Python returns the interpreter to run the reference with: $ASBM_PYTHON when set (and then only
// it), else the first of /usr/bin/python3 and the python3 on PATH that can import torch, numpy and
// msgpack. /usr/bin/python3 comes first because Debian's python3-torch installs there, while the
// python3 first on PATH may be a pyenv one without it. The error names each interpreter tried, why
// it failed, and the apt-get command (Install) that fixes it. The answer is found once per process
// (an import of torch takes a second or two).
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
		pyErr = fmt.Errorf("torchref: no python3 that can import torch, numpy and msgpack (%s); install them with: %s",
			strings.Join(tried, "; "), Install)
	})
	return pyPath, pyErr
}

// lastLine is the last non-empty line of a command's output (a traceback's "ModuleNotFoundError:
// …"), or err when it printed nothing.
func lastLine(out string, err error) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return err.Error()
}

// Script returns the path of torch/unetref.py. The script is not embedded (unetref.py imports
// unet.py beside it, and a trainer may share that), so it is found on disk: under $ASBM_TORCH_DIR
// when set; else in torch/ of the first directory, walking up from the working directory, whose
// go.mod declares module asbm (`go run ./backend bench` and `go test` both run inside the checkout);
// else relative to this source file as runtime.Caller records it (a binary built from a checkout
// and run elsewhere; not with -trimpath, which drops that path).
func Script() (string, error) {
	const name = "unetref.py"
	if d := os.Getenv("ASBM_TORCH_DIR"); d != "" {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("torchref: ASBM_TORCH_DIR=%s: %w", d, err)
		}
		return p, nil
	}
	var dirs []string
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if isModuleRoot(d) {
				dirs = append(dirs, filepath.Join(d, "torch"))
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dirs = append(dirs, filepath.Join(filepath.Dir(file), "..", "..", "torch"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("torchref: torch/%s not found (looked in: %s); run from the repository or set ASBM_TORCH_DIR",
		name, strings.Join(dirs, ", "))
}

// isModuleRoot reports whether dir holds the go.mod of module asbm (another module's go.mod above
// the working directory must not stop the walk with a torch/ folder that is not ours).
func isModuleRoot(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == "asbm"
		}
	}
	return false
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

// Forward evaluates with PyTorch the U-Net stored under prefix ("score/", "control/", …; "" for a
// file holding one network without a prefix, the convention of model.NetFromFile) in the weights
// file model, on n times t and n images x (n·C·H·W values, NCHW), and returns f(t, x) in the layout
// of x. Arguments and results travel through raw float32 files in a temporary directory. A missing
// or mis-shaped tensor, a wrong prefix or a file that is not a weights file gives an error that
// names it (the script's message).
func Forward(model, prefix string, t, x []float32, n int) ([]float32, error) {
	if n < 1 || len(t) != n || len(x)%n != 0 {
		return nil, fmt.Errorf("torchref: Forward wants n ≥ 1 times and n images, got n = %d, %d times, %d values of x", n, len(t), len(x))
	}
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

// writeF32 writes v as raw little-endian float32, the format unetref.py reads.
func writeF32(path string, v []float32) error {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return os.WriteFile(path, b, 0o644)
}

// Result is one benchmark of PyTorch's U-Net on random data: the medians in milliseconds of a
// forward under no_grad and of a training step (forward, MSE, backward, AdamW, zero_grad), the
// torch version, its thread count, the batch and the number of parameters.
type Result struct {
	Torch     string  `json:"torch"`
	Threads   int     `json:"threads"`
	Batch     int     `json:"batch"`
	ForwardMS float64 `json:"forward_ms"`
	StepMS    float64 `json:"step_ms"`
	Params    int     `json:"params"`
}

// BenchStep times PyTorch on the U-Net arch (random weights) at the given batch with
// torch.set_num_threads(threads): warmup untimed calls of each, then the median of reps timed
// ones. warmup is a parameter because PyTorch's first calls at a shape build oneDNN primitives and
// grow its allocator's cache, and how many calls that takes varies with the size; `backend bench`
// passes the warm-up count it uses for the Go engines so both are measured alike.
func BenchStep(arch weights.Arch, batch, warmup, reps, threads int) (Result, error) {
	if arch.Kind != "unet" {
		return Result{}, fmt.Errorf("torchref: BenchStep wants a U-Net, got arch kind %q", arch.Kind)
	}
	if batch < 1 || warmup < 0 || reps < 1 || threads < 1 {
		return Result{}, fmt.Errorf("torchref: BenchStep wants batch, reps, threads ≥ 1 and warmup ≥ 0, got %d, %d, %d, %d",
			batch, reps, threads, warmup)
	}
	// The keys of weights/codec.go's encodeArch, which unet.py reads.
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
