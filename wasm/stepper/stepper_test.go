package stepper

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"asbm/shaders"
	"asbm/weights"
)

func newRand(t *testing.T) (*rand.Rand, uint64) {
	s := uint64(time.Now().UnixNano())
	t.Logf("seed %d", s)
	return rand.New(rand.NewPCG(s, s>>9)), s
}

var (
	tinyUNet = weights.Arch{Kind: "unet", Dim: 2 * 4 * 4, Channels: 2, Height: 4, Width: 4, Base: 4,
		Mults: []int{1, 2}, ResBlocks: 1, Groups: 2, TimeEmb: 8, Fourier: 3}
	tinyMLP = weights.Arch{Kind: "mlp", Dim: 3, Hidden: 16, Layers: 2, Fourier: 4}
)

// randomNet is a network of arch a with every parameter random, the output layer included (NewNet
// leaves it zero, which would make every score zero and hide mistakes).
func randomNet(t *testing.T, a weights.Arch, r *rand.Rand) *shaders.Net {
	t.Helper()
	m, err := shaders.NewNet(a, r.Uint64())
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range m.Params {
		if strings.HasPrefix(name, "out.") {
			for i := range p {
				p[i] = float32(0.3 * (2*r.Float64() - 1))
			}
		}
	}
	return m
}

type cpuNets struct {
	cpu  shaders.CPUNets
	step Nets
}

func makeNets(t *testing.T, a weights.Arch, r *rand.Rand, control bool) cpuNets {
	var c cpuNets
	c.cpu.Score, c.cpu.Gen = randomNet(t, a, r), randomNet(t, a, r)
	c.step.Score, c.step.Gen = CPU{c.cpu.Score}, CPU{c.cpu.Gen}
	if control {
		c.cpu.Control = randomNet(t, a, r)
		c.step.Control = CPU{c.cpu.Control}
	}
	return c
}

// TestMatchesSampleCPU: for every method, random seeds, sizes, step counts and chunk sizes, Run
// gives bit-identical results to shaders.SampleCPU (the sampler the GPU and `backend sample` are
// tested against), on a U-Net and on an MLP.
func TestMatchesSampleCPU(t *testing.T) {
	r, _ := newRand(t)
	for _, a := range []weights.Arch{tinyUNet, tinyMLP} {
		for _, c := range []struct {
			method  string
			control bool
		}{{"gen", false}, {"sde", false}, {"ode", true}, {"ode", false}} {
			nets := makeNets(t, a, r, c.control)
			n := 1 + r.IntN(7)
			o := shaders.SampleOptions{Points: n, Steps: 1 + r.IntN(5), Method: c.method, Seed: r.Uint64(),
				Beta0: 0.1 * r.Float64(), Beta1: 1 + 10*r.Float64(), SigmaV: 0.5 + r.Float64()}
			want, err := shaders.SampleCPU(nets.cpu, o, nil)
			if err != nil {
				t.Fatal(err)
			}
			chunk := r.IntN(n + 2) // 0 (all), 1 … n+1 (more than n)
			got, err := Run(nets.step, Options{SampleOptions: o, Dim: a.Dim, Chunk: chunk}, Hooks{})
			if err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("%s %s control %v n %d steps %d chunk %d", a.Kind, c.method, c.control, n, o.Steps, chunk)
			if len(got) != len(want) {
				t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
			}
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s: value %d = %v, SampleCPU %v", name, i, got[i], want[i])
				}
			}
			var spread float64
			for _, v := range got {
				spread = math.Max(spread, math.Abs(float64(v-got[0])))
			}
			if spread == 0 {
				t.Fatalf("%s: constant output", name)
			}
		}
	}
}

// TestHooks checks the step sequence, when previews come and what they hold, how often Pause is
// called, and that a Progress error stops the run.
func TestHooks(t *testing.T) {
	r, _ := newRand(t)
	nets := makeNets(t, tinyUNet, r, true)
	for _, method := range []string{"gen", "sde", "ode"} {
		n, steps, every, chunk := 2+r.IntN(4), 2+r.IntN(6), 1+r.IntN(3), 1+r.IntN(3)
		o := Options{SampleOptions: shaders.SampleOptions{Points: n, Steps: steps, Method: method, Seed: r.Uint64(),
			Beta0: 0.1, Beta1: 4, SigmaV: 1}, Dim: tinyUNet.Dim, Chunk: chunk, PreviewEvery: every}
		total := steps
		if method == "gen" {
			total = 1
		}
		var seen []int
		var previews []int
		pauses := 0
		x1 := make([]float32, n*tinyUNet.Dim)
		shaders.FillNoise(shaders.NoiseStream(o.Seed), x1)
		_, err := Run(nets.step, o, Hooks{
			Progress: func(step, tot int, x []float32) error {
				if tot != total {
					t.Errorf("%s: total %d, want %d", method, tot, total)
				}
				seen = append(seen, step)
				if x != nil {
					previews = append(previews, step)
					if len(x) != n*tinyUNet.Dim {
						t.Errorf("%s: preview of %d values", method, len(x))
					}
					if step == 0 {
						for i := range x1 {
							if x[i] != x1[i] {
								t.Fatalf("%s: the step-0 preview is not x1", method)
							}
						}
					}
				}
				return nil
			},
			Pause: func() { pauses++ },
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range seen {
			if s != i {
				t.Fatalf("%s: steps %v, want 0 … %d", method, seen, total)
			}
		}
		if len(seen) != total+1 {
			t.Fatalf("%s: steps %v, want 0 … %d", method, seen, total)
		}
		var want []int
		for s := 0; s < total; s += every {
			want = append(want, s)
		}
		if fmt.Sprint(previews) != fmt.Sprint(want) {
			t.Errorf("%s every %d: previews at %v, want %v", method, every, previews, want)
		}
		calls := map[string]int{"gen": 1, "sde": steps, "ode": 2 * (2*steps - 1)}[method] // ode: score and control, twice per Heun step
		if chunks := (n + chunk - 1) / chunk; pauses != calls*chunks {
			t.Errorf("%s: %d pauses, want %d network calls × %d chunks", method, pauses, calls, chunks)
		}

		stop := errors.New("stop here")
		calls = 0
		_, err = Run(nets.step, o, Hooks{Progress: func(step, _ int, _ []float32) error {
			calls++
			if step == 1 {
				return stop
			}
			return nil
		}})
		if !errors.Is(err, stop) || calls != 2 {
			t.Errorf("%s: a Progress error gave %v after %d calls", method, err, calls)
		}
	}
}

type badNet struct{ n int }

func (b badNet) Forward(t, x []float32) ([]float32, error) { return make([]float32, b.n), nil }

func TestErrors(t *testing.T) {
	r, _ := newRand(t)
	nets := makeNets(t, tinyMLP, r, false)
	ok := Options{SampleOptions: shaders.SampleOptions{Points: 4, Steps: 3, Method: "sde", Beta0: 0.1, Beta1: 4, SigmaV: 1}, Dim: tinyMLP.Dim}
	for _, c := range []struct {
		edit func(o *Options, n *Nets)
		want string
	}{
		{func(o *Options, n *Nets) { o.Points = 0 }, "points = 0"},
		{func(o *Options, n *Nets) { o.Points = shaders.MaxPoints + 1 }, "points ="},
		{func(o *Options, n *Nets) { o.Dim = 0 }, "dim = 0"},
		{func(o *Options, n *Nets) { o.Chunk = -1 }, "must be ≥ 0"},
		{func(o *Options, n *Nets) { o.PreviewEvery = -2 }, "must be ≥ 0"},
		{func(o *Options, n *Nets) { o.Beta1 = math.NaN() }, "must be finite"},
		{func(o *Options, n *Nets) { o.Beta0, o.Beta1 = 0, 0 }, "β0 + β1 > 0"},
		{func(o *Options, n *Nets) { o.SigmaV = 0 }, "σ_v = 0"},
		{func(o *Options, n *Nets) { o.Steps = 0 }, "steps = 0"},
		{func(o *Options, n *Nets) { o.Method = "euler" }, "unknown method"},
		{func(o *Options, n *Nets) { n.Score = nil }, "needs the score network"},
		{func(o *Options, n *Nets) { o.Method, n.Gen = "gen", nil }, "needs the distilled generator"},
		{func(o *Options, n *Nets) { n.Score = badNet{5} }, "returned 5 values for 4 rows of dim 3"},
		{func(o *Options, n *Nets) { n.Score = CPU{} }, "nil network"},
		{func(o *Options, n *Nets) { o.Dim = 2 }, "x has 8 values, 4 rows of dim 3 need 12"},
	} {
		o, n := ok, nets.step
		c.edit(&o, &n)
		if _, err := Run(n, o, Hooks{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want an error containing %q", err, c.want)
		}
	}
	if _, err := Run(nets.step, ok, Hooks{}); err != nil {
		t.Errorf("valid options: %v", err)
	}
}

// TestChunks checks the batch-size helpers against hand-computed sizes.
func TestChunks(t *testing.T) {
	// tinyUNet: levels of 4 channels at 4×4 and 8 at 2×2; the up path concatenates 8 + 8 = 16
	// channels at 2×2, upsamples the 8 to 4×4 and concatenates the 4 of the skip: 12·16 = 192 values.
	if got := RowValues(tinyUNet); got != 192 {
		t.Errorf("RowValues(tinyUNet) = %d, want 192", got)
	}
	if got := RowValues(tinyMLP); got != 16 {
		t.Errorf("RowValues(tinyMLP) = %d, want 16", got)
	}
	mnist := weights.Arch{Kind: "unet", Dim: 784, Channels: 1, Height: 28, Width: 28, Base: 16, Mults: []int{1, 2, 2},
		ResBlocks: 1, Groups: 8, TimeEmb: 64, Fourier: 16}
	// Levels of 16, 32, 32 channels; at 28×28 the up path concatenates 32 + 16 = 48 channels.
	if got := RowValues(mnist); got != 48*28*28 {
		t.Errorf("RowValues(mnist) = %d, want %d", got, 48*28*28)
	}
	if got := GPUChunk(mnist, 128<<20); got != (64<<20)/(4*48*28*28) {
		t.Errorf("GPUChunk(mnist, 128 MiB) = %d", got)
	}
	if got := GPUChunk(mnist, 1000); got != 1 {
		t.Errorf("GPUChunk with a tiny limit = %d, want 1", got)
	}
	if got := GPUChunk(tinyMLP, 1<<40); got != shaders.MaxPoints {
		t.Errorf("GPUChunk with a huge limit = %d, want MaxPoints", got)
	}
	f := FLOPs(mnist)
	if f != shaders.UNetFLOPs(mnist) || f < 40e6 || f > 60e6 {
		t.Errorf("FLOPs(mnist) = %d, want UNetFLOPs ≈ 47e6", f)
	}
	// MLP 3+8 → 16 → 16 → 3: 2·(11·16 + 16·16 + 16·3).
	if got := FLOPs(tinyMLP); got != 2*(11*16+16*16+16*3) {
		t.Errorf("FLOPs(tinyMLP) = %d", got)
	}
	if got := CPUChunk(mnist, 3*f+1); got != 3 {
		t.Errorf("CPUChunk(mnist, 3 rows' FLOPs) = %d, want 3", got)
	}
	if got := CPUChunk(mnist, 1); got != 1 {
		t.Errorf("CPUChunk below one row = %d, want 1", got)
	}
}

// TestGPUNetMatchesCPU runs Run with the WGSL networks (*shaders.GPUNet, native WebGPU) against Run
// on the CPU: float32 kernels vs plain Go, tolerance 1e-4 absolute on values of order 1.
func TestGPUNetMatchesCPU(t *testing.T) {
	if os.Getenv("XDG_RUNTIME_DIR") == "" {
		t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	}
	d, err := shaders.NewDevice()
	if err != nil {
		if os.Getenv("ASBM_REQUIRE_GPU") == "1" {
			t.Fatalf("ASBM_REQUIRE_GPU=1 but no device: %v", err)
		}
		t.Skipf("no WebGPU adapter: %v", err)
	}
	defer d.Close()
	r, _ := newRand(t)
	for _, a := range []weights.Arch{tinyMLP, tinyUNet} {
		nets := makeNets(t, a, r, true)
		var g Nets
		for _, p := range []struct {
			src *shaders.Net
			dst *Net
		}{{nets.cpu.Score, &g.Score}, {nets.cpu.Control, &g.Control}, {nets.cpu.Gen, &g.Gen}} {
			gn, err := shaders.NewGPUNet(d, p.src)
			if err != nil {
				t.Fatal(err)
			}
			defer gn.Close()
			*p.dst = gn
		}
		for _, method := range []string{"gen", "sde", "ode"} {
			n := 1 + r.IntN(5)
			o := Options{SampleOptions: shaders.SampleOptions{Points: n, Steps: 1 + r.IntN(3), Method: method, Seed: r.Uint64(),
				Beta0: 0.1, Beta1: 4, SigmaV: 1}, Dim: a.Dim, Chunk: r.IntN(n + 1)}
			want, err := Run(nets.step, o, Hooks{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := Run(g, o, Hooks{})
			if err != nil {
				t.Fatal(err)
			}
			var diff float64
			for i := range want {
				diff = math.Max(diff, math.Abs(float64(got[i]-want[i])))
			}
			t.Logf("%s %s n %d steps %d: max |GPU − CPU| = %.2g", a.Kind, method, n, o.Steps, diff)
			if !(diff < 1e-4) {
				t.Errorf("%s %s: max |GPU − CPU| = %g ≥ 1e-4", a.Kind, method, diff)
			}
		}
	}
}
