package shaders

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"asbm/model"
	"asbm/weights"
)

var (
	convBenchArch  = flag.String("convbench.arch", "large", "BenchmarkConvLayers: the U-Net whose convolutions are timed: large (3×32×32, base 32, mults 1,2,2, 2 blocks; backend bench's) or emoji (base 16, 1 block)")
	convBenchN     = flag.Int("convbench.n", 16, "BenchmarkConvLayers: batch size")
	convBenchDirs  = flag.String("convbench.dirs", "forward,bwd-data,bwd-weights", "BenchmarkConvLayers: the directions to time")
	convBenchShape = flag.Bool("convbench.shapes", false, "BenchmarkConvLayers: also log every distinct conv shape's time per direction")
)

// convBenchArchs are the U-Nets BenchmarkConvLayers knows (backend/bench's "large" and "emoji").
var convBenchArchs = map[string]weights.Arch{
	"large": {Kind: "unet", Dim: 3 * 32 * 32, Channels: 3, Height: 32, Width: 32, Base: 32, Mults: []int{1, 2, 2},
		ResBlocks: 2, Groups: 8, TimeEmb: 64, Fourier: 16},
	"emoji": {Kind: "unet", Dim: 3 * 32 * 32, Channels: 3, Height: 32, Width: 32, Base: 16, Mults: []int{1, 2, 2},
		ResBlocks: 1, Groups: 8, TimeEmb: 64, Fourier: 16},
}

// BenchmarkConvLayers times every convolution of a U-Net's forward pass (model.UNetConvs) at one batch
// size, per direction: forward (conv.wgsl), backward-data (conv_bwd_data.wgsl) and backward-weights
// (conv_bwd_weights.wgsl), each direction's layers submitted together. It reports the
// median GFLOP/s of each direction over b.N runs (a training step runs all three). With
// -convbench.shapes it also logs each distinct shape's median time. No assertion: compare within one
// run on one machine, e.g.
//
//	go test ./shaders/ -run '^$' -bench ConvLayers -benchtime 3x -args -convbench.n=16
func BenchmarkConvLayers(b *testing.B) {
	a, ok := convBenchArchs[*convBenchArch]
	if !ok {
		b.Fatalf("-convbench.arch %q: want large or emoji", *convBenchArch)
	}
	n := *convBenchN
	d := gpu(b)
	r := rand.New(rand.NewPCG(5, 6))
	type layer struct {
		s                     model.ConvShape
		x, w, bias, y, dx, dy *Buffer
		dw, db                *Buffer
		fwd, bwdData          *op
		bwdWeight             []*op
	}
	var layers []*layer
	for _, s := range model.UNetConvs(a) {
		nx, ny, nw := n*s.In*s.H*s.W, n*s.Out*s.H*s.W, s.Out*s.In*s.K*s.K
		l := &layer{s: s, x: upload(b, d, normals(r, nx, 1)), w: upload(b, d, normals(r, nw, 0.1)),
			bias: upload(b, d, normals(r, s.Out, 1)), dy: upload(b, d, normals(r, ny, 1)),
			y: alloc(b, d, ny), dx: alloc(b, d, nx), dw: alloc(b, d, nw), db: alloc(b, d, s.Out)}
		var err error
		if l.fwd, err = d.convOp(l.y, l.x, l.w, l.bias, nil, nil, n, s.In, s.Out, s.H, s.W, s.K); err != nil {
			b.Fatal(err)
		}
		if l.bwdData, err = d.convBackwardDataOp(l.dx, l.dy, l.w, n, s.In, s.Out, s.H, s.W, s.K); err != nil {
			b.Fatal(err)
		}
		if l.bwdWeight, err = d.convBackwardWeightsOps(l.dw, l.db, l.dy, l.x, n, s.In, s.Out, s.H, s.W, s.K); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			l.fwd.release()
			l.bwdData.release()
			for _, o := range l.bwdWeight {
				o.release()
			}
		})
		layers = append(layers, l)
	}
	// runOps submits each op in a command buffer of its own, then waits for all: lavapipe 22.3.6
	// segfaulted (in its queue thread) when the 32 forward convolutions of "large" at n = 4, with
	// the direct conv kernel these tiled ones replaced, were recorded into one command buffer and
	// that buffer was submitted a second time; 31 of them, or one command buffer each, ran fine.
	runOps := func(ops []*op) time.Duration {
		t0 := time.Now()
		for _, o := range ops {
			submitAlone(b, d, o)
		}
		if err := d.wait(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	dirs := []struct {
		name string
		pick func(*layer) []*op
	}{
		{"forward", func(l *layer) []*op { return []*op{l.fwd} }},
		{"bwd-data", func(l *layer) []*op { return []*op{l.bwdData} }},
		{"bwd-weights", func(l *layer) []*op { return l.bwdWeight }},
	}
	var flops float64
	for _, l := range layers {
		flops += float64(n) * float64(l.s.FLOPs())
	}
	for _, dir := range dirs {
		if !slices.Contains(strings.Split(*convBenchDirs, ","), dir.name) {
			continue
		}
		var ops []*op
		for _, l := range layers {
			ops = append(ops, dir.pick(l)...)
		}
		runOps(ops) // compile outside the timing
		var sec []float64
		for i := 0; i < b.N; i++ {
			sec = append(sec, runOps(ops).Seconds())
		}
		slices.Sort(sec)
		b.ReportMetric(flops/sec[len(sec)/2]/1e9, dir.name+"-GFLOP/s")
		b.ReportMetric(sec[len(sec)/2]*1e3, dir.name+"-ms")
		if !*convBenchShape {
			continue
		}
		// Per distinct shape: the median of three single-layer runs.
		seen := map[model.ConvShape]bool{}
		var lines []string
		for _, l := range layers {
			if seen[l.s] {
				continue
			}
			seen[l.s] = true
			var t []float64
			for range 3 {
				t = append(t, runOps(dir.pick(l)).Seconds())
			}
			slices.Sort(t)
			f := float64(n) * float64(l.s.FLOPs())
			lines = append(lines, fmt.Sprintf("%s %3d→%3d k%d %2d×%2d: %8.1f ms %6.2f GFLOP/s",
				dir.name, l.s.In, l.s.Out, l.s.K, l.s.H, l.s.W, t[1]*1e3, f/t[1]/1e9))
		}
		b.Logf("n = %d\n%s", n, strings.Join(lines, "\n"))
	}
}

// submitAlone records o in a command buffer of its own and submits it (not waiting for it), keeping
// the op for reuse: the benchmarks time ops one by one.
func submitAlone(tb testing.TB, d *Device, o *op) {
	tb.Helper()
	bt, err := d.begin()
	if err != nil {
		tb.Fatal(err)
	}
	bt.run(o)
	if err := bt.submit(); err != nil {
		tb.Fatal(err)
	}
}
