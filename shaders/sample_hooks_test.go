package shaders

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"asbm/model"
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
func (l *hookLog) hooks(every, chunk, stop int, stopErr error) model.SampleHooks {
	l.previews, l.atStep = map[int][]float32{}, map[int]int{}
	return model.SampleHooks{
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

// netCalls is the number of network evaluations (of all rows) a run makes: model.Run's schedule
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
func randomNets(tb testing.TB, a weights.Arch, seed uint64, control bool) model.CPUNets {
	mk := func(s uint64) *model.Net {
		if a.Kind == "unet" {
			return randomUNet(tb, a, s)
		}
		return randomMLP(tb, a, s, 2)
	}
	n := model.CPUNets{Score: mk(seed + 1), Gen: mk(seed + 3)}
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
// model.SampleCPU gives bit-identical samples to an unhooked run; Progress sees steps 0 … total; previews
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
			o := model.SampleOptions{Points: n, Steps: 1 + r.IntN(5), Method: c.method, Seed: r.Uint64(), Beta0: 0.1, Beta1: 4, SigmaV: 1}
			total := o.Steps
			if c.method == "gen" {
				total = 1
			}
			name := fmt.Sprintf("%s %s control=%v n=%d N=%d chunk=%d every=%d", a.Kind, c.method, c.control, n, total, chunk, every)
			want, err := model.SampleCPU(nets.Nets(), o, model.SampleHooks{})
			if err != nil {
				t.Fatal(err)
			}
			var l hookLog
			got, err := model.SampleCPU(nets.Nets(), o, l.hooks(every, chunk, -1, nil))
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
func checkPreviews(t *testing.T, name string, got map[int][]float32, steps []int, nets model.CPUNets, o model.SampleOptions, tol float64) {
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

// TestSampleHooksStop: an error from Progress at a random step stops model.SampleCPU there (no later
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
		o := model.SampleOptions{Points: n, Steps: N, Method: "sde", Seed: r.Uint64(), Beta0: 0.1, Beta1: 4, SigmaV: 1}
		var l hookLog
		pts, err := model.SampleCPU(nets.Nets(), o, l.hooks(1, chunk, stop, stopErr))
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
	o := model.SampleOptions{Points: 4, Steps: 2, Method: "sde", Seed: 1, Beta0: 0.1, Beta1: 4, SigmaV: 1}
	for _, h := range []model.SampleHooks{{Chunk: -1}, {PreviewEvery: -2}} {
		if _, err := model.SampleCPU(nets.Nets(), o, h); err == nil || !strings.Contains(err.Error(), "must be ≥ 0") {
			t.Errorf("SampleCPU with %+v: %v", h, err)
		}
	}
	// A chunk larger than the batch is the whole batch.
	want, err := model.SampleCPU(nets.Nets(), o, model.SampleHooks{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := model.SampleCPU(nets.Nets(), o, model.SampleHooks{Chunk: 1000})
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
			src *model.Net
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
			o := model.SampleOptions{Points: tc.n, Steps: 3, Method: c.method, Seed: r.Uint64(), Beta0: 0.1, Beta1: 4, SigmaV: 1}
			total := o.Steps
			if c.method == "gen" {
				total = 1
			}
			name := fmt.Sprintf("%s %s control=%v n=%d chunk=%d", tc.a.Kind, c.method, c.control, tc.n, tc.chunk)
			want, err := model.SampleCPU(cn.Nets(), o, model.SampleHooks{})
			if err != nil {
				t.Fatal(err)
			}
			plain, err := SampleGPU(d, gn, o, model.SampleHooks{})
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
		o := model.SampleOptions{Points: tc.n, Steps: 3, Method: "sde", Seed: r.Uint64(), Beta0: 0.1, Beta1: 4, SigmaV: 1}
		var l hookLog
		if pts, err := SampleGPU(d, g, o, l.hooks(1, tc.chunk, 2, stopErr)); !errors.Is(err, stopErr) || pts != nil {
			t.Errorf("%s stop: %d points, error %v; want none and %v", tc.a.Kind, len(pts), err, stopErr)
		}
		if fmt.Sprint(l.steps) != "[0 1 2]" || len(l.previews) != 3 {
			t.Errorf("%s stop: steps %v, %d previews", tc.a.Kind, l.steps, len(l.previews))
		}
		if _, err := SampleGPU(d, g, o, model.SampleHooks{Chunk: tc.chunk}); err != nil {
			t.Errorf("%s: sampling after a stopped run: %v", tc.a.Kind, err)
		}
	}
}
