package shaders

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"asbm/weights"
)

// hookLog records what a run's SampleHooks saw.
type hookLog struct {
	steps    []int             // every Progress step, in call order
	previews map[int][]float32 // copies of the previews, by step
	pauses   int               // Pause calls so far
	atStep   map[int]int       // Pause calls before Progress(step)
}

// hooks returns SampleHooks that record into l; Progress returns stopErr at step stop (−1: never).
func (l *hookLog) hooks(every, chunk, stop int, stopErr error) SampleHooks {
	l.previews, l.atStep = map[int][]float32{}, map[int]int{}
	return SampleHooks{
		Progress: func(step, total int, x []float32) error {
			l.steps = append(l.steps, step)
			l.atStep[step] = l.pauses
			if x != nil {
				l.previews[step] = append([]float32(nil), x...)
			}
			if step == stop {
				return stopErr
			}
			return nil
		},
		PreviewEvery: every,
		Pause:        func() { l.pauses++ },
		Chunk:        chunk,
	}
}

// netCalls is the number of network evaluations (of all rows) a run makes: runSampler's schedule
// written out (gen: one; sde: one per step; ode: score (+ control) at x and, but on the last step,
// at x̃).
func netCalls(method string, steps int, control bool) int {
	switch method {
	case "gen":
		return 1
	case "sde":
		return steps
	}
	per := 1
	if control {
		per = 2
	}
	return per * (2*steps - 1)
}

// randomNets returns random networks of arch a that move the points noticeably.
func randomNets(tb testing.TB, a weights.Arch, seed uint64, control bool) CPUNets {
	mk := func(s uint64) *Net {
		if a.Kind == "unet" {
			return randomUNet(tb, a, s)
		}
		return randomMLP(tb, a, s, 2)
	}
	n := CPUNets{Score: mk(seed + 1), Gen: mk(seed + 3)}
	if control {
		n.Control = mk(seed + 2)
	}
	return n
}

type hookCase struct {
	method  string
	control bool
}

var hookCases = []hookCase{{"gen", false}, {"sde", false}, {"ode", true}, {"ode", false}}

// TestSampleHooksCPU: with random chunk sizes (always splitting the batch) and preview intervals,
// SampleCPU gives bit-identical samples to an unhooked run; Progress sees steps 0 … total; previews
// come at steps 0, every, 2·every, … < total and hold the state of the float64 reference stopped
// after that many steps (and not that of the step before); Pause follows every network call of
// every chunk.
func TestSampleHooksCPU(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 11))
	for _, a := range []weights.Arch{testUNets[0], testArchs[1]} {
		for _, c := range hookCases {
			nets := randomNets(t, a, r.Uint64(), c.control)
			n := 2 + r.IntN(6)
			chunk, every := 1+r.IntN(n-1), 1+r.IntN(3)
			o := SampleOptions{Points: n, Steps: 1 + r.IntN(5), Method: c.method, Seed: r.Uint64(), Beta0: 0.1, Beta1: 4, SigmaV: 1}
			total := o.Steps
			if c.method == "gen" {
				total = 1
			}
			name := fmt.Sprintf("%s %s control=%v n=%d N=%d chunk=%d every=%d", a.Kind, c.method, c.control, n, total, chunk, every)
			want, err := SampleCPU(nets, o, SampleHooks{})
			if err != nil {
				t.Fatal(err)
			}
			var l hookLog
			got, err := SampleCPU(nets, o, l.hooks(every, chunk, -1, nil))
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s: value %d = %v hooked, %v unhooked", name, i, got[i], want[i])
				}
			}
			if fmt.Sprint(l.steps) != fmt.Sprint(seq(0, total+1, 1)) {
				t.Errorf("%s: progress steps %v, want 0 … %d", name, l.steps, total)
			}
			checkPreviews(t, name, l.previews, seq(0, total, every), nets, o, sampleTol)
			calls := netCalls(c.method, o.Steps, c.control) * ((n + chunk - 1) / chunk)
			if l.pauses != calls || l.atStep[0] != 0 {
				t.Errorf("%s: %d pauses (%d before step 0), want %d (%d network calls × %d chunks) and 0", name, l.pauses, l.atStep[0],
					calls, netCalls(c.method, o.Steps, c.control), (n+chunk-1)/chunk)
			}
		}
	}
}

func seq(lo, hi, step int) []int {
	var s []int
	for i := lo; i < hi; i += step {
		s = append(s, i)
	}
	return s
}

// checkPreviews compares the previews with the float64 reference stopped at their steps, within
// tol, and checks that the reference moved more than that since the step before (so a preview one
// step late or early would fail).
func checkPreviews(t *testing.T, name string, got map[int][]float32, steps []int, nets CPUNets, o SampleOptions, tol float64) {
	t.Helper()
	if len(got) != len(steps) {
		keys := []int{}
		for k := range got {
			keys = append(keys, k)
		}
		t.Errorf("%s: previews at %v, want %v", name, keys, steps)
	}
	diff := func(a []float32, b []float64) float64 {
		var d float64
		for i := range b {
			d = math.Max(d, math.Abs(float64(a[i])-b[i]))
		}
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		return d
	}
	for _, k := range steps {
		pv, ok := got[k]
		if !ok {
			t.Errorf("%s: no preview at step %d", name, k)
			continue
		}
		ref := literalSampleTo(nets, o, k)
		if len(pv) != len(ref) {
			t.Fatalf("%s: preview at step %d has %d values, want %d", name, k, len(pv), len(ref))
		}
		if d := diff(pv, ref); !(d <= tol) {
			t.Errorf("%s: preview at step %d differs from the reference state by %.3g > %g", name, k, d, tol)
		}
		if k > 0 {
			if d := diff(pv, literalSampleTo(nets, o, k-1)); !(d > 10*tol) {
				t.Errorf("%s: the state barely moved from step %d to %d (%.3g): the check is too weak", name, k-1, k, d)
			}
		}
	}
}

// TestSampleHooksStop: an error from Progress at a random step stops SampleCPU there (no later
// step, no later network call) and comes back unchanged.
func TestSampleHooksStop(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 12))
	nets := randomNets(t, testArchs[1], seed, true)
	stopErr := errors.New("stop here")
	for i := 0; i < 6; i++ {
		n, N := 2+r.IntN(9), 2+r.IntN(6)
		chunk, stop := 1+r.IntN(n), r.IntN(N+1)
		o := SampleOptions{Points: n, Steps: N, Method: "sde", Seed: r.Uint64(), Beta0: 0.1, Beta1: 4, SigmaV: 1}
		var l hookLog
		pts, err := SampleCPU(nets, o, l.hooks(1, chunk, stop, stopErr))
		if !errors.Is(err, stopErr) || pts != nil {
			t.Fatalf("stop at %d of %d: got %d points, error %v; want none and %v", stop, N, len(pts), err, stopErr)
		}
		if last := l.steps[len(l.steps)-1]; last != stop || len(l.steps) != stop+1 {
			t.Errorf("stop at %d: progress steps %v", stop, l.steps)
		}
		if want := stop * ((n + chunk - 1) / chunk); l.pauses != want {
			t.Errorf("stop at %d, chunk %d of %d: %d pauses, want %d", stop, chunk, n, l.pauses, want)
		}
	}
}

func TestSampleHooksErrors(t *testing.T) {
	nets := sampleNets(t, 9)
	o := SampleOptions{Points: 4, Steps: 2, Method: "sde", Seed: 1, Beta0: 0.1, Beta1: 4, SigmaV: 1}
	for _, h := range []SampleHooks{{Chunk: -1}, {PreviewEvery: -2}} {
		if _, err := SampleCPU(nets, o, h); err == nil || !strings.Contains(err.Error(), "must be ≥ 0") {
			t.Errorf("SampleCPU with %+v: %v", h, err)
		}
	}
	// A chunk larger than the batch is the whole batch.
	want, err := SampleCPU(nets, o, SampleHooks{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := SampleCPU(nets, o, SampleHooks{Chunk: 1000})
	if err != nil || maxAbsDiff(got, want) != 0 {
		t.Errorf("chunk > points: diff %v, error %v", maxAbsDiff(got, want), err)
	}
}

// TestSampleHooksGPU: on the WebGPU device, a chunked run with previews at every step matches the
// unchunked, unhooked GPU run within 1e-5 (both float32 on the same kernels; the last chunk is
// shorter than the others, so the padded plan is exercised), the CPU within sampleTol; the
// previews match the reference states; Pause follows every network call; and an error from
// Progress stops the run, leaving the device usable.
func TestSampleHooksGPU(t *testing.T) {
	d := gpu(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 13))
	for _, tc := range []struct {
		a        weights.Arch
		n, chunk int
	}{{testUNets[0], 5, 2}, {testArchs[1], 37, 8}} {
		cpu := randomNets(t, tc.a, r.Uint64(), true)
		var g Nets
		for _, p := range []struct {
			src *Net
			dst **GPUNet
		}{{cpu.Score, &g.Score}, {cpu.Control, &g.Control}, {cpu.Gen, &g.Gen}} {
			gn, err := NewGPUNet(d, p.src)
			if err != nil {
				t.Fatal(err)
			}
			defer gn.Close()
			*p.dst = gn
		}
		for _, c := range hookCases {
			cn, gn := cpu, g
			if !c.control {
				cn.Control, gn.Control = nil, nil
			}
			o := SampleOptions{Points: tc.n, Steps: 3, Method: c.method, Seed: r.Uint64(), Beta0: 0.1, Beta1: 4, SigmaV: 1}
			total := o.Steps
			if c.method == "gen" {
				total = 1
			}
			name := fmt.Sprintf("%s %s control=%v n=%d chunk=%d", tc.a.Kind, c.method, c.control, tc.n, tc.chunk)
			want, err := SampleCPU(cn, o, SampleHooks{})
			if err != nil {
				t.Fatal(err)
			}
			plain, err := SampleGPU(d, gn, o, SampleHooks{})
			if err != nil {
				t.Fatal(err)
			}
			var l hookLog
			got, err := SampleGPU(d, gn, o, l.hooks(1, tc.chunk, -1, nil))
			if err != nil {
				t.Fatal(err)
			}
			dp, dc := maxAbsDiff(got, plain), maxAbsDiff(got, want)
			t.Logf("%s: max|chunked − unchunked GPU| = %.3g, max|chunked GPU − CPU| = %.3g", name, dp, dc)
			if !(dp <= 1e-5) || !(dc <= sampleTol) {
				t.Errorf("%s: chunked GPU differs from unchunked GPU by %.3g (tol 1e-5), from the CPU by %.3g (tol %g)", name, dp, dc, sampleTol)
			}
			if fmt.Sprint(l.steps) != fmt.Sprint(seq(0, total+1, 1)) {
				t.Errorf("%s: progress steps %v", name, l.steps)
			}
			checkPreviews(t, name, l.previews, seq(0, total, 1), cn, o, sampleTol)
			if calls := netCalls(c.method, o.Steps, c.control) * ((tc.n + tc.chunk - 1) / tc.chunk); l.pauses != calls {
				t.Errorf("%s: %d pauses, want %d", name, l.pauses, calls)
			}
		}
		// Stop from the preview at step 2 of 3: the error comes back and the device still samples.
		stopErr := errors.New("stop here")
		o := SampleOptions{Points: tc.n, Steps: 3, Method: "sde", Seed: r.Uint64(), Beta0: 0.1, Beta1: 4, SigmaV: 1}
		var l hookLog
		if pts, err := SampleGPU(d, g, o, l.hooks(1, tc.chunk, 2, stopErr)); !errors.Is(err, stopErr) || pts != nil {
			t.Errorf("%s stop: %d points, error %v; want none and %v", tc.a.Kind, len(pts), err, stopErr)
		}
		if fmt.Sprint(l.steps) != "[0 1 2]" || len(l.previews) != 3 {
			t.Errorf("%s stop: steps %v, %d previews", tc.a.Kind, l.steps, len(l.previews))
		}
		if _, err := SampleGPU(d, g, o, SampleHooks{Chunk: tc.chunk}); err != nil {
			t.Errorf("%s: sampling after a stopped run: %v", tc.a.Kind, err)
		}
	}
}

// TestSampleChunks checks the chunk sizes the browser client asks for.
func TestSampleChunks(t *testing.T) {
	// A U-Net with levels of 4 channels at 4×4 and 8 at 2×2: the up path concatenates 8 + 8 = 16
	// channels at 2×2, upsamples the 8 to 4×4 and concatenates the 4 of the skip: 12·16 = 192 values.
	tinyUNet := weights.Arch{Kind: "unet", Dim: 2 * 4 * 4, Channels: 2, Height: 4, Width: 4, Base: 4,
		Mults: []int{1, 2}, ResBlocks: 1, Groups: 2, TimeEmb: 8, Fourier: 3}
	tinyMLP := weights.Arch{Kind: "mlp", Dim: 3, Hidden: 16, Layers: 2, Fourier: 4}
	if got := rowValues(tinyUNet); got != 192 {
		t.Errorf("rowValues(tinyUNet) = %d, want 192", got)
	}
	if got := rowValues(tinyMLP); got != 16 {
		t.Errorf("rowValues(tinyMLP) = %d, want 16", got)
	}
	mnist := weights.Arch{Kind: "unet", Dim: 784, Channels: 1, Height: 28, Width: 28, Base: 16, Mults: []int{1, 2, 2},
		ResBlocks: 1, Groups: 8, TimeEmb: 64, Fourier: 16}
	// Levels of 16, 32, 32 channels; at 28×28 the up path concatenates 32 + 16 = 48 channels.
	if got := rowValues(mnist); got != 48*28*28 {
		t.Errorf("rowValues(mnist) = %d, want %d", got, 48*28*28)
	}
	if got := GPUChunk(mnist, 128<<20); got != (64<<20)/(4*48*28*28) {
		t.Errorf("GPUChunk(mnist, 128 MiB) = %d", got)
	}
	if got := GPUChunk(mnist, 1000); got != 1 {
		t.Errorf("GPUChunk with a tiny limit = %d, want 1", got)
	}
	if got := GPUChunk(tinyMLP, 1<<40); got != MaxPoints {
		t.Errorf("GPUChunk with a huge limit = %d, want MaxPoints", got)
	}
	f := rowFLOPs(mnist)
	if f != UNetFLOPs(mnist) || f < 40e6 || f > 60e6 {
		t.Errorf("rowFLOPs(mnist) = %d, want UNetFLOPs ≈ 47e6", f)
	}
	// MLP 3+8 → 16 → 16 → 3: 2·(11·16 + 16·16 + 16·3).
	if got := rowFLOPs(tinyMLP); got != 2*(11*16+16*16+16*3) {
		t.Errorf("rowFLOPs(tinyMLP) = %d", got)
	}
	if got := CPUChunk(mnist, 3*f+1); got != 3 {
		t.Errorf("CPUChunk(mnist, 3 rows' FLOPs) = %d, want 3", got)
	}
	if got := CPUChunk(mnist, 1); got != 1 {
		t.Errorf("CPUChunk below one row = %d, want 1", got)
	}
}
