//go:build !cgo

package kern

const haveC = false

func gnSiLUC(x, y, sig, gamma, beta []float32, hw int, mean, rstd float32) {
	GNSiLUGo(x, y, sig, gamma, beta, hw, mean, rstd)
}

func gnSiLUGradC(x, sig, gy, dx, gamma, beta []float32, hw int, mean, rstd float32, dgamma, dbeta []float32) {
	GNSiLUGradGo(x, sig, gy, dx, gamma, beta, hw, mean, rstd, dgamma, dbeta)
}

func col2imC(cols, dx []float32, ld, cin, h, w, k, y0, y1 int) {
	Col2ImGo(cols, dx, ld, cin, h, w, k, y0, y1)
}

func sum64C(v []float32) float64 { return Sum64Go(v) }

func groupStatsC(v []float32, eps float64) (mean, rstd float64) { return GroupStatsGo(v, eps) }
