package shaders

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// groupNormRef is the float64 reference of GroupNorm: y, and μ and rstd per (n, group).
func groupNormRef(x, gamma, beta []float64, n, c, hw, groups int, eps float64) (y, mean, rstd []float64) {
	cg := c / groups
	m := cg * hw
	y = make([]float64, len(x))
	mean = make([]float64, n*groups)
	rstd = make([]float64, n*groups)
	for ng := 0; ng < n*groups; ng++ {
		v := x[ng*m : (ng+1)*m]
		var mu, ss float64
		for _, a := range v {
			mu += a
		}
		mu /= float64(m)
		for _, a := range v {
			ss += (a - mu) * (a - mu)
		}
		r := 1 / math.Sqrt(ss/float64(m)+eps)
		mean[ng], rstd[ng] = mu, r
		c0 := (ng % groups) * cg
		for j, a := range v {
			ch := c0 + j/hw
			y[ng*m+j] = gamma[ch]*(a-mu)*r + beta[ch]
		}
	}
	return y, mean, rstd
}

// groupNormBackwardRef is the float64 reference of GroupNormBackward (the closed form
// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·γ; verified against finite differences below).
func groupNormBackwardRef(dy, x, gamma []float64, n, c, hw, groups int, eps float64) (dx, dgamma, dbeta []float64) {
	beta := make([]float64, c)
	_, mean, rstd := groupNormRef(x, gamma, beta, n, c, hw, groups, eps)
	cg := c / groups
	m := cg * hw
	dx = make([]float64, len(x))
	dgamma = make([]float64, c)
	dbeta = make([]float64, c)
	for ng := 0; ng < n*groups; ng++ {
		c0 := (ng % groups) * cg
		var mg, mgx float64
		for j := 0; j < m; j++ {
			i := ng*m + j
			ch := c0 + j/hw
			xh := (x[i] - mean[ng]) * rstd[ng]
			g := dy[i] * gamma[ch]
			mg += g
			mgx += g * xh
			dgamma[ch] += dy[i] * xh
			dbeta[ch] += dy[i]
		}
		mg /= float64(m)
		mgx /= float64(m)
		for j := 0; j < m; j++ {
			i := ng*m + j
			xh := (x[i] - mean[ng]) * rstd[ng]
			dx[i] = rstd[ng] * (dy[i]*gamma[c0+j/hw] - mg - xh*mgx)
		}
	}
	return dx, dgamma, dbeta
}

func TestGroupNormReferenceGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(rand.Uint64(), 3))
	n, c, hw, groups, eps := 2, 4, 5, 2, 1e-5
	x, gamma, beta, dy := randF64(r, n*c*hw), randF64(r, c), randF64(r, c), randF64(r, n*c*hw)
	dx, dgamma, dbeta := groupNormBackwardRef(dy, x, gamma, n, c, hw, groups, eps)
	f := func() []float64 {
		y, _, _ := groupNormRef(x, gamma, beta, n, c, hw, groups, eps)
		return y
	}
	imageFD(t, "group norm dx", f, x, dy, dx, 1e-6)
	imageFD(t, "group norm dgamma", f, gamma, dy, dgamma, 1e-6)
	imageFD(t, "group norm dbeta", f, beta, dy, dbeta, 1e-6)
}

func TestGroupNormKernels(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 4))
	const eps = 1e-5
	for _, s := range []struct{ n, c, h, w, groups int }{
		{2, 6, 7, 7, 3},   // odd spatial size
		{1, 8, 16, 16, 4}, // 512 values per group: more than one per invocation
		{3, 5, 3, 5, 5},   // one channel per group
		{2, 4, 5, 3, 1},   // one group (layer norm over c·h·w)
	} {
		nx, hw, nstat := s.n*s.c*s.h*s.w, s.h*s.w, s.n*s.groups
		// An offset mean tests the two-pass variance.
		x := uniforms(r, nx, 2, 4)
		gamma, beta, dy := normals(r, s.c, 1), normals(r, s.c, 1), normals(r, nx, 1)
		yRef, meanRef, rstdRef := groupNormRef(f64s(x), f64s(gamma), f64s(beta), s.n, s.c, hw, s.groups, eps)
		dxRef, dgRef, dbRef := groupNormBackwardRef(f64s(dy), f64s(x), f64s(gamma), s.n, s.c, hw, s.groups, eps)

		xb, gb, bb, dyb := upload(t, d, x), upload(t, d, gamma), upload(t, d, beta), upload(t, d, dy)
		yb, mb, rb := alloc(t, d, nx), alloc(t, d, nstat), alloc(t, d, nstat)
		dxb, dgb, dbb := alloc(t, d, nx), alloc(t, d, s.c), alloc(t, d, s.c)
		if err := d.GroupNorm(yb, mb, rb, xb, gb, bb, s.n, s.c, s.h, s.w, s.groups, eps); err != nil {
			t.Fatal(err)
		}
		if err := d.GroupNormBackward(dxb, dgb, dbb, dyb, xb, gb, mb, rb, s.n, s.c, s.h, s.w, s.groups); err != nil {
			t.Fatal(err)
		}
		checkRel(t, d, fmt.Sprintf("group norm %v", s), []relCase{
			{"y", yb, yRef, 1e-5},
			{"mean", mb, meanRef, 1e-5},
			{"rstd", rb, rstdRef, 1e-5},
			{"dx", dxb, dxRef, 1e-4},
			{"dgamma", dgb, dgRef, 1e-4},
			{"dbeta", dbb, dbRef, 1e-4},
		})
	}
}

func TestGroupNormErrors(t *testing.T) {
	d := gpu(t)
	x, y, g, b := alloc(t, d, 2*6*4), alloc(t, d, 2*6*4), alloc(t, d, 6), alloc(t, d, 6)
	st, st2 := alloc(t, d, 6), alloc(t, d, 6)
	for name, err := range map[string]error{
		"groups do not divide": d.GroupNorm(y, st, st2, x, g, b, 2, 6, 2, 2, 4, 1e-5),
		"zero groups":          d.GroupNorm(y, st, st2, x, g, b, 2, 6, 2, 2, 0, 1e-5),
		"zero eps":             d.GroupNorm(y, st, st2, x, g, b, 2, 6, 2, 2, 3, 0),
		"NaN eps":              d.GroupNorm(y, st, st2, x, g, b, 2, 6, 2, 2, 3, float32(math.NaN())),
		"short stats":          d.GroupNorm(y, st, st2, x, g, b, 2, 6, 2, 2, 6, 1e-5),
		"aliased output":       d.GroupNorm(x, st, st2, x, g, b, 2, 6, 2, 2, 3, 1e-5),
		"backward short gamma": d.GroupNormBackward(y, g, b, x, x, alloc(t, d, 5), st, st2, 2, 6, 2, 2, 3),
		"backward nil dy":      d.GroupNormBackward(y, g, b, nil, x, g, st, st2, 2, 6, 2, 2, 3),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestGroupNormSiLUKernels checks the fused GN → SiLU pair the U-Net uses (groupNormOp and
// groupNormBackwardOps with silu) on fresh random inputs against the float64 references composed
// by the chain rule (s = SiLU(GN(x)); da = siluBackwardRef(ds, GN(x)), then groupNormBackwardRef on
// da), at group widths of more than one round of CB = 8 channels (12 and 24), positions per channel
// that are no multiple of the 64 invocations and fewer than them, and batches > 1. Tolerances as in
// TestGroupNormKernels: s 1e-5, gradients 1e-4, relative to the largest reference value.
func TestGroupNormSiLUKernels(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 5))
	const eps = 1e-5
	for _, s := range []struct{ n, c, h, w, groups int }{
		{2, 24, 7, 9, 2},   // 12 channels a group (2 rounds, the second partial), 63 positions
		{3, 48, 4, 5, 2},   // 24 channels a group (3 full rounds), 20 positions
		{1, 16, 10, 10, 8}, // 2 channels a group, 100 positions
	} {
		nx, hw, nstat := s.n*s.c*s.h*s.w, s.h*s.w, s.n*s.groups
		x := uniforms(r, nx, -1, 3)
		gamma, beta, ds := uniforms(r, s.c, 0.5, 1.5), normals(r, s.c, 1), normals(r, nx, 1)
		aRef, meanRef, rstdRef := groupNormRef(f64s(x), f64s(gamma), f64s(beta), s.n, s.c, hw, s.groups, eps)
		daRef := siluBackwardRef(f64s(ds), aRef)
		dxRef, dgRef, dbRef := groupNormBackwardRef(daRef, f64s(x), f64s(gamma), s.n, s.c, hw, s.groups, eps)

		xb, gb, bb, dsb := upload(t, d, x), upload(t, d, gamma), upload(t, d, beta), upload(t, d, ds)
		sb, mb, rb := alloc(t, d, nx), alloc(t, d, nstat), alloc(t, d, nstat)
		dxb, dgb, dbb := alloc(t, d, nx), alloc(t, d, s.c), alloc(t, d, s.c)
		err := d.scoped("test", func() error {
			o, err := d.groupNormOp(sb, mb, rb, xb, gb, bb, s.n, s.c, s.h, s.w, s.groups, eps, true)
			if err != nil {
				return err
			}
			ops, err := d.groupNormBackwardOps(dxb, dgb, dbb, dsb, xb, gb, bb, mb, rb, s.n, s.c, s.h, s.w, s.groups, true)
			if err != nil {
				o.release()
				return err
			}
			return d.runAll(append([]*op{o}, ops...))
		})
		if err != nil {
			t.Fatal(err)
		}
		checkRel(t, d, fmt.Sprintf("group norm + SiLU %v", s), []relCase{
			{"s", sb, siluRef(aRef), 1e-5},
			{"mean", mb, meanRef, 1e-5},
			{"rstd", rb, rstdRef, 1e-5},
			{"dx", dxb, dxRef, 1e-4},
			{"dgamma", dgb, dgRef, 1e-4},
			{"dbeta", dbb, dbRef, 1e-4},
		})
	}
}
