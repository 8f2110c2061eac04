package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"asbm/weights"
)

// The 2-D network of asbm.md §6.1 (Arch.Kind "mlp"): Fourier time features, Layers hidden layers of
// width Hidden with SiLU, and a linear output layer that starts at zero so the network is identically
// zero at initialisation.
//
// Parameter names and shapes (row-major, y = x·W + b):
//
//	l0.w [Dim+2·Fourier, Hidden], l0.b [Hidden]
//	l{i}.w [Hidden, Hidden], l{i}.b [Hidden]   for i = 1 … Layers−1
//	out.w [Hidden, Dim], out.b [Dim]

// TimeFreq returns ω_k of the k-th Fourier time feature: the features of t are
// sin(ω_k t) for k < F followed by cos(ω_k t) for k < F, with ω_k = π(k+1).
func TimeFreq(k int) float64 { return math.Pi * float64(k+1) }

// InputWidth is the width of the first layer's input: the data plus 2·Fourier time features.
func InputWidth(a weights.Arch) int { return a.Dim + 2*a.Fourier }

// mlpParamShapes lists every parameter of an MLP in a fixed order with its shape.
func mlpParamShapes(a weights.Arch) (names []string, shapes [][]int) {
	in := InputWidth(a)
	for i := 0; i < a.Layers; i++ {
		names = append(names, fmt.Sprintf("l%d.w", i), fmt.Sprintf("l%d.b", i))
		shapes = append(shapes, []int{in, a.Hidden}, []int{a.Hidden})
		in = a.Hidden
	}
	names = append(names, "out.w", "out.b")
	shapes = append(shapes, []int{in, a.Dim}, []int{a.Dim})
	return names, shapes
}

// checkMLPArch reports whether a is an MLP architecture this package can build.
func checkMLPArch(a weights.Arch) error {
	if a.Dim < 1 || a.Hidden < 1 || a.Layers < 1 || a.Fourier < 0 {
		return fmt.Errorf("mlp arch needs dim ≥ 1, hidden ≥ 1, layers ≥ 1, fourier ≥ 0; got %+v", a)
	}
	return nil
}

// initMLP fills m with PyTorch-Linear-style initialisation, U(−1/√in, 1/√in) for weights and
// biases, from a seeded generator, and a zero output layer.
func initMLP(m *Net, r *rand.Rand) {
	names, shapes := ParamShapes(m.Arch)
	for i, name := range names {
		sh := shapes[i]
		p := make([]float32, numel(sh))
		if name != "out.w" && name != "out.b" {
			fanIn := sh[0]
			if len(sh) == 1 {
				fanIn = shapes[i-1][0]
			}
			bound := 1 / math.Sqrt(float64(fanIn))
			for j := range p {
				p[j] = float32((2*r.Float64() - 1) * bound)
			}
		}
		m.Params[name] = p
	}
}

// TimeFeatures writes the 2·F Fourier features of t into dst (asbm.md §6.1).
func TimeFeatures(t float32, F int, dst []float32) {
	for k := 0; k < F; k++ {
		w := TimeFreq(k) * float64(t)
		dst[k] = float32(math.Sin(w))
		dst[F+k] = float32(math.Cos(w))
	}
}

// SiLU is x·sigmoid(x).
func SiLU(x float32) float32 { return x / (1 + float32(math.Exp(-float64(x)))) }

// forwardMLP evaluates an MLP on n = len(t) rows: x is n×Dim, the result n×Dim.
func (m *Net) forwardMLP(t, x []float32) []float32 {
	a := m.Arch
	n := len(t)
	out := make([]float32, n*a.Dim)
	in := InputWidth(a)
	h := make([]float32, in)
	for r := 0; r < n; r++ {
		h = h[:in]
		copy(h, x[r*a.Dim:(r+1)*a.Dim])
		TimeFeatures(t[r], a.Fourier, h[a.Dim:])
		for i := 0; i < a.Layers; i++ {
			h = linear(h, m.Params[fmt.Sprintf("l%d.w", i)], m.Params[fmt.Sprintf("l%d.b", i)], a.Hidden)
			for j := range h {
				h[j] = SiLU(h[j])
			}
		}
		o := linear(h, m.Params["out.w"], m.Params["out.b"], a.Dim)
		copy(out[r*a.Dim:], o)
	}
	return out
}

// linear returns x·W + b for one row x of width len(x) and W of shape [len(x), outW].
func linear(x, w, b []float32, outW int) []float32 {
	y := make([]float32, outW)
	copy(y, b)
	for i, xi := range x {
		row := w[i*outW : (i+1)*outW]
		for j, wij := range row {
			y[j] += xi * wij
		}
	}
	return y
}
