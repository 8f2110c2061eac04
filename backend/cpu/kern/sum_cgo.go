//go:build cgo

package kern

/*
#cgo CFLAGS: -O3

// Eight float64 lanes, so GCC vectorises the float → double conversion and the adds without needing
// -ffast-math to reorder a single accumulator.
#define SUM_BODY(SUFFIX, ATTR) \
ATTR static double sum_##SUFFIX(const float *v, int n) { \
	double a[8] = {0}; \
	int j = 0; \
	for (; j + 8 <= n; j += 8) \
		for (int l = 0; l < 8; l++) a[l] += (double)v[j + l]; \
	for (; j < n; j++) a[0] += (double)v[j]; \
	return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); \
}

SUM_BODY(avx512, __attribute__((target("avx512f,avx512vl"))))
SUM_BODY(avx2, __attribute__((target("avx2"))))
SUM_BODY(base, )

static int sum_level = -1;

static double asbm_sum64(const float *v, int n) {
	if (sum_level < 0) {
		__builtin_cpu_init();
		sum_level = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") ? 2 :
			__builtin_cpu_supports("avx2") ? 1 : 0;
	}
	if (sum_level == 2) return sum_avx512(v, n);
	return sum_level ? sum_avx2(v, n) : sum_base(v, n);
}
*/
import "C"

func sum64C(v []float32) float64 { return float64(C.asbm_sum64(fp(v), C.int(len(v)))) }
