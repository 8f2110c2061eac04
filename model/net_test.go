package model_test

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"asbm/model"
	"asbm/weights"
)

// TestNetEvalMatchesOneCall: Eval's split of the rows over goroutines and into chunks of EvalChunkRows
// gives exactly the values of one ForwardCPU call on all rows (rows are independent), for row counts
// that leave one worker, several, and chunks with a remainder.
func TestNetEvalMatchesOneCall(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	a := weights.Arch{Kind: "unet", Dim: 64, Channels: 1, Height: 8, Width: 8, Base: 4, Mults: []int{1, 2},
		ResBlocks: 1, Groups: 2, TimeEmb: 8, Fourier: 2}
	net, err := model.NewNet(a, 7)
	if err != nil {
		t.Fatal(err)
	}
	// NewNet zeroes the output conv (zero-init); give it weights so the check is not 0 == 0.
	r := rand.New(rand.NewPCG(1, 2))
	for _, k := range []string{"out.w", "out.b"} {
		for i := range net.Params[k] {
			net.Params[k][i] = float32(r.NormFloat64())
		}
	}
	for _, n := range []int{1, 5, 130, 2*model.EvalChunkRows + 3*64 + 7} {
		tv := make([]float32, n)
		x := make([]float32, n*a.Dim)
		for i := range tv {
			tv[i] = r.Float32()
		}
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		want := net.ForwardCPU(tv, x)
		got := make([]float32, len(x))
		net.Eval(tv, x, got)
		if !slices.Equal(got, want) || slices.Max(want) == 0 {
			t.Errorf("n = %d: Eval differs from one ForwardCPU call", n)
		}
	}
}
