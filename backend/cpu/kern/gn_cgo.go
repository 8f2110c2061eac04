//go:build cgo

package kern

/*
#cgo CFLAGS: -O3
#pragma GCC optimize ("no-trapping-math", "no-math-errno")
#include <string.h>
#include <math.h>
#cgo LDFLAGS: -lm

// The loops of gn.go in C, written so that GCC vectorises them: no calls and no branches in the
// element loops (clamps are selects, not the libm calls fminf/fmaxf; no-trapping-math lets GCC turn float
// compares into selects), reductions over eight explicit lanes. Each body is compiled twice, for
// AVX2 + FMA and for the baseline, and the first call picks one with __builtin_cpu_supports.

// floor_base is floorf without libm (a call would stop vectorisation and needs -lm): a select on
// the truncation. AVX2 has a floor instruction (vroundps), which __builtin_floorf becomes.
static inline float floor_base(float v) {
	float n = (float)(int)v;
	return n > v ? n - 1.0f : n;
}

#define GN_BODIES(SUFFIX, ATTR, FLOOR) \
ATTR static inline float exp_##SUFFIX(float x) { \
	x = x < -87.3f ? -87.3f : x; \
	x = x > 88.3f ? 88.3f : x; \
	float fx = x * 1.44269504088896341f + 0.5f; \
	float n = FLOOR(fx); \
	x = x - n * 0.693359375f - n * -2.12194440e-4f; \
	float z = x * x; \
	float y = (((((1.9875691500e-4f * x + 1.3981999507e-3f) * x + 8.3334519073e-3f) * x + \
		4.1665795894e-2f) * x + 1.6666665459e-1f) * x + 5.0000001201e-1f) * z + x + 1.0f; \
	int bits = ((int)n + 127) << 23; \
	float p; \
	memcpy(&p, &bits, 4); \
	return y * p; \
} \
ATTR static void gn_fwd_##SUFFIX(const float *x, float *y, float *sig, const float *gamma, \
	const float *beta, int cg, int hw, float mean, float rstd) { \
	for (int c = 0; c < cg; c++) { \
		const float a = gamma[c] * rstd, b = beta[c]; \
		const float *xs = x + (size_t)c * hw; \
		float *ys = y + (size_t)c * hw; \
		if (sig) { \
			float *ss = sig + (size_t)c * hw; \
			for (int j = 0; j < hw; j++) { \
				float u = (xs[j] - mean) * a + b; \
				float s = 1.0f / (1.0f + exp_##SUFFIX(-u)); \
				ss[j] = s; \
				ys[j] = u * s; \
			} \
		} else { \
			for (int j = 0; j < hw; j++) { \
				float u = (xs[j] - mean) * a + b; \
				ys[j] = u / (1.0f + exp_##SUFFIX(-u)); \
			} \
		} \
	} \
} \
ATTR static void gn_bwd_##SUFFIX(const float *x, const float *sig, const float *gy, float *dx, \
	const float *gamma, const float *beta, int cg, int hw, float mean, float rstd, float *dgamma, \
	float *dbeta) { \
	double sumD = 0, sumDX = 0; \
	for (int c = 0; c < cg; c++) { \
		const float g = gamma[c], b = beta[c]; \
		const float *xs = x + (size_t)c * hw, *ss = sig + (size_t)c * hw, *gs = gy + (size_t)c * hw; \
		float *ds = dx + (size_t)c * hw; \
		float sb[8] = {0}, sg[8] = {0}; \
		int j = 0; \
		for (; j + 8 <= hw; j += 8) { \
			for (int l = 0; l < 8; l++) { \
				float xh = (xs[j + l] - mean) * rstd; \
				float u = xh * g + b, s = ss[j + l]; \
				float du = gs[j + l] * s * (1.0f + u * (1.0f - s)); \
				sb[l] += du; \
				sg[l] += du * xh; \
				ds[j + l] = du * g; \
			} \
		} \
		for (; j < hw; j++) { \
			float xh = (xs[j] - mean) * rstd; \
			float u = xh * g + b, s = ss[j]; \
			float du = gs[j] * s * (1.0f + u * (1.0f - s)); \
			sb[0] += du; \
			sg[0] += du * xh; \
			ds[j] = du * g; \
		} \
		float tb = 0, tg = 0; \
		for (int l = 0; l < 8; l++) { tb += sb[l]; tg += sg[l]; } \
		dgamma[c] = tg; \
		dbeta[c] = tb; \
		sumD += (double)g * tb; \
		sumDX += (double)g * tg; \
	} \
	const int n = cg * hw; \
	const float a = (float)(sumD / n), cc = (float)(sumDX / n); \
	for (int j = 0; j < n; j++) { \
		dx[j] = rstd * (dx[j] - a - (x[j] - mean) * rstd * cc); \
	} \
}

GN_BODIES(avx512, __attribute__((target("avx512f,avx512dq,avx512vl,fma"))), __builtin_floorf)
GN_BODIES(avx2, __attribute__((target("avx2,fma"))), __builtin_floorf)
GN_BODIES(base, , floor_base)

// stats: the mean and 1/sqrt(var + eps) of n values in one pass, in double, shifted by the first
// value (so a large mean costs no precision), over eight lanes.
#define STATS_BODY(SUFFIX, ATTR) \
ATTR static void stats_##SUFFIX(const float *v, int n, double eps, double *mean, double *rstd) { \
	const double x0 = v[0]; \
	double s[8] = {0}, q[8] = {0}; \
	int j = 0; \
	for (; j + 8 <= n; j += 8) \
		for (int l = 0; l < 8; l++) { double d = (double)v[j + l] - x0; s[l] += d; q[l] += d * d; } \
	for (; j < n; j++) { double d = (double)v[j] - x0; s[0] += d; q[0] += d * d; } \
	double ss = 0, qq = 0; \
	for (int l = 0; l < 8; l++) { ss += s[l]; qq += q[l]; } \
	const double sd = ss / n; \
	double var = qq / n - sd * sd; \
	if (var < 0) var = 0; \
	*mean = x0 + sd; \
	*rstd = 1.0 / sqrt(var + eps); \
}

STATS_BODY(avx512, __attribute__((target("avx512f,avx512dq,avx512vl,fma"))))
STATS_BODY(avx2, __attribute__((target("avx2,fma"))))
STATS_BODY(base, )

// gn_level: 2 AVX-512, 1 AVX2 + FMA, 0 baseline; -1 until the first call looks. The AVX-512 bodies
// process 16 floats a vector and ran the forward loop about twice as fast as AVX2 where the CPU has it.
static int gn_level = -1;

static void gn_pick(void) {
	if (gn_level < 0) {
		__builtin_cpu_init();
		gn_level = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
			__builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma") ? 2 :
			__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
	}
}

static void gn_fwd(const float *x, float *y, float *sig, const float *gamma, const float *beta,
	int cg, int hw, float mean, float rstd) {
	gn_pick();
	if (gn_level == 2) gn_fwd_avx512(x, y, sig, gamma, beta, cg, hw, mean, rstd);
	else if (gn_level == 1) gn_fwd_avx2(x, y, sig, gamma, beta, cg, hw, mean, rstd);
	else gn_fwd_base(x, y, sig, gamma, beta, cg, hw, mean, rstd);
}

static void gn_bwd(const float *x, const float *sig, const float *gy, float *dx, const float *gamma,
	const float *beta, int cg, int hw, float mean, float rstd, float *dgamma, float *dbeta) {
	gn_pick();
	if (gn_level == 2) gn_bwd_avx512(x, sig, gy, dx, gamma, beta, cg, hw, mean, rstd, dgamma, dbeta);
	else if (gn_level == 1) gn_bwd_avx2(x, sig, gy, dx, gamma, beta, cg, hw, mean, rstd, dgamma, dbeta);
	else gn_bwd_base(x, sig, gy, dx, gamma, beta, cg, hw, mean, rstd, dgamma, dbeta);
}

static void gn_stats(const float *v, int n, double eps, double *mean, double *rstd) {
	gn_pick();
	if (gn_level == 2) stats_avx512(v, n, eps, mean, rstd);
	else if (gn_level == 1) stats_avx2(v, n, eps, mean, rstd);
	else stats_base(v, n, eps, mean, rstd);
}
*/
import "C"

const haveC = true

func fp(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(&s[0])
}

func gnSiLUC(x, y, sig, gamma, beta []float32, hw int, mean, rstd float32) {
	C.gn_fwd(fp(x), fp(y), fp(sig), fp(gamma), fp(beta), C.int(len(gamma)), C.int(hw), C.float(mean), C.float(rstd))
}

func groupStatsC(v []float32, eps float64) (mean, rstd float64) {
	var m, r C.double
	C.gn_stats(fp(v), C.int(len(v)), C.double(eps), &m, &r)
	return float64(m), float64(r)
}

func gnSiLUGradC(x, sig, gy, dx, gamma, beta []float32, hw int, mean, rstd float32, dgamma, dbeta []float32) {
	C.gn_bwd(fp(x), fp(sig), fp(gy), fp(dx), fp(gamma), fp(beta), C.int(len(gamma)), C.int(hw),
		C.float(mean), C.float(rstd), fp(dgamma), fp(dbeta))
}
