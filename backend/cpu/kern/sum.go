package kern

// Sum64 is the sum of v accumulated in float64 (the gradient of a bias: a sum over every pixel of
// every image). On the cgo build it is a C loop that the compiler vectorises (AVX2 when present);
// Sum64Go is the Go loop and the reference.
func Sum64(v []float32) float64 {
	if len(v) == 0 {
		return 0
	}
	if useC() {
		return sum64C(v)
	}
	return Sum64Go(v)
}

// Sum64Go is Sum64 in Go, over four accumulators so the additions' latency chains overlap.
func Sum64Go(v []float32) float64 {
	var a [4]float64
	j := 0
	for ; j+4 <= len(v); j += 4 {
		a[0] += float64(v[j])
		a[1] += float64(v[j+1])
		a[2] += float64(v[j+2])
		a[3] += float64(v[j+3])
	}
	for ; j < len(v); j++ {
		a[0] += float64(v[j])
	}
	return a[0] + a[1] + a[2] + a[3]
}
