package kern

import "math"

// The group norm + SiLU loops of the U-Net's gnSiLU ops (backend/cpu/unetops.go), over one group of
// one image: x, y, sig, gy, dx hold cg channels of hw values each, gamma and beta the group's cg
// affine parameters, mean and rstd the group's statistics. With x̂ = (x − mean)·rstd,
// u = γ·x̂ + β, s = sigmoid(u):
//
//	forward:  y = u·s (and sig = s, kept for the gradient, unless sig is nil)
//	backward: du = gy·s·(1 + u·(1 − s)),  dβ_c = Σ du,  dγ_c = Σ du·x̂,  dx̂ = γ·du,
//	          dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))   (means over the whole group)
//
// On the cgo build they are C loops that the compiler vectorises (AVX-512 or AVX2 + FMA when the CPU
// has them, chosen at run time), else the Go loops below (GNSiLUGo, GNSiLUGradGo), which are also the reference
// the C ones are tested against. The SiLU's exponential dominated the pure-Go loops: math.Exp runs in
// float64 and, with its conversions, took about 17 ns a value; a vector polynomial takes under 1.

// GNSiLU runs the forward loop (see above).
func GNSiLU(x, y, sig, gamma, beta []float32, hw int, mean, rstd float32) {
	checkGN(x, y, sig, gamma, beta, hw)
	if useC() {
		gnSiLUC(x, y, sig, gamma, beta, hw, mean, rstd)
		return
	}
	GNSiLUGo(x, y, sig, gamma, beta, hw, mean, rstd)
}

// GNSiLUGrad runs the backward loop (see above): it writes dx and the group's per-channel dγ and dβ.
func GNSiLUGrad(x, sig, gy, dx, gamma, beta []float32, hw int, mean, rstd float32, dgamma, dbeta []float32) {
	checkGN(x, dx, sig, gamma, beta, hw)
	if len(gy) < len(x) || len(dgamma) < len(gamma) || len(dbeta) < len(gamma) {
		panic("kern: GNSiLUGrad: short gy, dgamma or dbeta")
	}
	if useC() {
		gnSiLUGradC(x, sig, gy, dx, gamma, beta, hw, mean, rstd, dgamma, dbeta)
		return
	}
	GNSiLUGradGo(x, sig, gy, dx, gamma, beta, hw, mean, rstd, dgamma, dbeta)
}

// GroupStats returns the mean and 1/√(var + eps) (biased variance) of one group's values, accumulated
// in float64 in one pass over the values shifted by the first one, so a large mean costs no
// precision. v must not be empty.
func GroupStats(v []float32, eps float64) (mean, rstd float64) {
	if len(v) == 0 {
		panic("kern: GroupStats of no values")
	}
	if useC() {
		return groupStatsC(v, eps)
	}
	return GroupStatsGo(v, eps)
}

// GroupStatsGo is GroupStats in Go, four accumulators each to keep the additions' latency chains short.
func GroupStatsGo(v []float32, eps float64) (mean, rstd float64) {
	x0 := float64(v[0])
	var s, q [4]float64
	j := 0
	for ; j+4 <= len(v); j += 4 {
		d0, d1, d2, d3 := float64(v[j])-x0, float64(v[j+1])-x0, float64(v[j+2])-x0, float64(v[j+3])-x0
		s[0] += d0
		s[1] += d1
		s[2] += d2
		s[3] += d3
		q[0] += d0 * d0
		q[1] += d1 * d1
		q[2] += d2 * d2
		q[3] += d3 * d3
	}
	for ; j < len(v); j++ {
		d := float64(v[j]) - x0
		s[0] += d
		q[0] += d * d
	}
	m := float64(len(v))
	sd := (s[0] + s[1] + s[2] + s[3]) / m
	vr := max(0, (q[0]+q[1]+q[2]+q[3])/m-sd*sd)
	return x0 + sd, 1 / math.Sqrt(vr+eps)
}

func checkGN(x, y, sig, gamma, beta []float32, hw int) {
	n := len(gamma) * hw
	if hw < 1 || len(beta) < len(gamma) || len(x) != n || len(y) < n || (sig != nil && len(sig) < n) {
		panic("kern: group norm: x must hold len(gamma)·hw values and y, sig, beta at least as many")
	}
}

// useC reports whether the C loops are built in (and not switched off by ASBM_BLAS=go).
func useC() bool {
	load()
	return haveC && !pureGo.Load()
}

// Exp32 is e^x in float32 by Cephes' expf scheme: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two
// parts so r is exact), e^r by a degree-6 polynomial, 2^n from the exponent bits. Its relative error
// is under 3e-7 on [−87, 88] (TestExp32); x is clamped to [−87.3, 88.3] first, so it never returns
// 0 or +Inf. The C loops use the same scheme.
func Exp32(x float32) float32 {
	const (
		log2e  = 1.44269504088896341
		c1, c2 = 0.693359375, -2.12194440e-4
	)
	x = min(max(x, -87.3), 88.3)
	fx := x*log2e + 0.5
	n := float32(int32(fx))
	if n > fx { // int32() truncates towards zero; floor wanted
		n--
	}
	x -= n * c1
	x -= n * c2
	z := x * x
	y := (((((1.9875691500e-4*x+1.3981999507e-3)*x+8.3334519073e-3)*x+4.1665795894e-2)*x+1.6666665459e-1)*x+5.0000001201e-1)*z + x + 1
	return y * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// Sigmoid32 is 1/(1 + e^−u) in float32.
func Sigmoid32(u float32) float32 { return 1 / (1 + Exp32(-u)) }

// GNSiLUGo is GNSiLU in Go.
func GNSiLUGo(x, y, sig, gamma, beta []float32, hw int, mean, rstd float32) {
	for c, g := range gamma {
		b := beta[c]
		xs, ys := x[c*hw:(c+1)*hw], y[c*hw:(c+1)*hw]
		if sig != nil {
			ss := sig[c*hw : (c+1)*hw]
			for j, xv := range xs {
				u := (xv-mean)*(rstd*g) + b
				s := Sigmoid32(u)
				ss[j] = s
				ys[j] = u * s
			}
			continue
		}
		for j, xv := range xs {
			u := (xv-mean)*(rstd*g) + b
			ys[j] = u * Sigmoid32(u)
		}
	}
}

// GNSiLUGradGo is GNSiLUGrad in Go. Per-channel sums are float32 (at most a few thousand terms), the
// group's sums float64.
func GNSiLUGradGo(x, sig, gy, dx, gamma, beta []float32, hw int, mean, rstd float32, dgamma, dbeta []float32) {
	var sumD, sumDX float64 // Σ dx̂, Σ dx̂·x̂ over the group
	for c, g := range gamma {
		b := beta[c]
		var sg, sb float32
		xs, ss, gs, ds := x[c*hw:(c+1)*hw], sig[c*hw:(c+1)*hw], gy[c*hw:(c+1)*hw], dx[c*hw:(c+1)*hw]
		for j, xv := range xs {
			xh := (xv - mean) * rstd
			u := xh*g + b
			s := ss[j]
			du := gs[j] * s * (1 + u*(1-s))
			sb += du
			sg += du * xh
			ds[j] = du * g // dx̂ for now
		}
		dgamma[c], dbeta[c] = sg, sb
		sumD += float64(g) * float64(sb)
		sumDX += float64(g) * float64(sg)
	}
	m := float64(len(x))
	a, c := float32(sumD/m), float32(sumDX/m)
	for j, xv := range x {
		dx[j] = rstd * (dx[j] - a - (xv-mean)*rstd*c)
	}
}
