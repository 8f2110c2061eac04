package weights

import "math"

// F16Max is the largest finite IEEE 754 half-precision value.
const F16Max = 65504

// F32ToF16 rounds f to the nearest IEEE 754 binary16 value, ties to even, and returns its bits.
// Values whose magnitude rounds above F16Max become ±Inf, values below half the smallest
// subnormal (2^-25) become ±0, and NaN becomes a quiet NaN of the same sign. Callers that must
// not store an infinity (AddF16) check the result with F16IsFinite.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 // quiet NaN; the payload is not kept
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // the half's biased exponent if the value is a normal half
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal half (or zero): the result counts units of 2^-24. The float32 value is
		// m·2^(exp-150) with the implicit bit in m, i.e. m·2^(exp-126) units, so shift right by
		// 126-exp and round the dropped bits to nearest even. f32 subnormals (exp == 0) are
		// below 2^-126 and always round to zero, as does anything with shift > 24 (< 2^-25).
		if exp == 0 {
			return sign
		}
		shift := uint(126 - exp)
		if shift > 24 {
			return sign
		}
		m := mant | 0x800000
		q := m >> shift
		r := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if r > half || (r == half && q&1 == 1) {
			q++ // may carry into 0x400, the smallest normal half: its encoding is the same number
		}
		return sign | uint16(q)
	}
	h := uint32(e)<<10 | mant>>13
	r := mant & 0x1fff
	if r > 0x1000 || (r == 0x1000 && h&1 == 1) {
		h++ // a carry out of the mantissa bumps the exponent, and past 30 gives exactly Inf
	}
	return sign | uint16(h)
}

// F16ToF32 widens the binary16 value with bits h to float32. Every half value, subnormals,
// infinities and NaN payloads included, is exactly representable in float32.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal half mant·2^-24: normalise so the leading one becomes the implicit bit.
	e := uint32(127 - 15 + 1)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}

// F16IsFinite reports whether the binary16 bits h hold a finite value (not ±Inf, not NaN).
func F16IsFinite(h uint16) bool { return h&0x7c00 != 0x7c00 }
