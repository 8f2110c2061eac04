package weights

import (
	"encoding/binary"
	"fmt"
	"math"
)

// New returns an empty file for arch with the magic and current version set and an empty,
// non-nil Meta map.
func New(arch Arch) *File {
	return &File{Magic: Magic, Version: Version, Arch: arch, Meta: map[string]any{}}
}

// Tensor returns the tensor called name, as a pointer into f.Tensors, and whether it exists.
func (f *File) Tensor(name string) (*Tensor, bool) {
	for i := range f.Tensors {
		if f.Tensors[i].Name == name {
			return &f.Tensors[i], true
		}
	}
	return nil, false
}

// Float32 returns the tensor called name decoded to float32 (f16 is widened exactly) with a copy of
// its shape. It checks the byte count against the shape, so it is safe on a File that was built by
// hand rather than by Decode.
func (f *File) Float32(name string) ([]float32, []int, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, nil, fmt.Errorf("weights file has no tensor %q: is it a model file for this network? re-export it with `backend export`", name)
	}
	n, err := checkShape(t.Shape)
	if err != nil {
		return nil, nil, fmt.Errorf("tensor %q: %v", name, err)
	}
	size, err := dtypeSize(t.DType)
	if err != nil {
		return nil, nil, fmt.Errorf("tensor %q: %v", name, err)
	}
	if len(t.Data) != n*size {
		return nil, nil, fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, data has %d", name, t.Shape, t.DType, n*size, len(t.Data))
	}
	v := make([]float32, n)
	if t.DType == "f16" {
		for i := range v {
			v[i] = F16ToF32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	} else {
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	}
	return v, append([]int(nil), t.Shape...), nil
}

// AddF32 appends a float32 tensor stored as f32. It does not check its arguments: Encode validates
// the whole file (shape against data length, NaN/Inf, duplicate names) before writing anything.
func (f *File) AddF32(name string, shape []int, v []float32) {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	f.Tensors = append(f.Tensors, Tensor{Name: name, DType: "f32", Shape: append([]int(nil), shape...), Data: b})
}

// AddF16 appends a tensor stored as IEEE half precision, rounding each value to nearest even.
// It refuses, appending nothing, a shape that does not match len(v), a name already present, and
// any value that is NaN or Inf or whose magnitude rounds past F16Max (65504): clamping would
// silently change the network, so such a tensor has to stay f32.
func (f *File) AddF16(name string, shape []int, v []float32) error {
	if name == "" {
		return fmt.Errorf("weights: AddF16: empty tensor name")
	}
	if _, dup := f.Tensor(name); dup {
		return fmt.Errorf("weights: AddF16: tensor %q already exists", name)
	}
	n, err := checkShape(shape)
	if err != nil {
		return fmt.Errorf("weights: AddF16 %q: %v", name, err)
	}
	if n != len(v) {
		return fmt.Errorf("weights: AddF16 %q: shape %v holds %d values, got %d", name, shape, n, len(v))
	}
	b := make([]byte, 2*len(v))
	for i, x := range v {
		h := F32ToF16(x)
		if !F16IsFinite(h) {
			return fmt.Errorf("weights: AddF16 %q: value %d = %g is not representable in f16 (finite range ±%d): store this tensor as f32", name, i, x, F16Max)
		}
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	f.Tensors = append(f.Tensors, Tensor{Name: name, DType: "f16", Shape: append([]int(nil), shape...), Data: b})
	return nil
}

// MetaFloat returns Meta[key] as a float64 when it is a number of any Go numeric type (msgpack
// decodes numbers into the narrowest type it was written with: int8, uint16, float32, …).
func (f *File) MetaFloat(key string) (float64, bool) {
	switch v := f.Meta[key].(type) {
	case float64:
		return v, true
	case float32:
		return float64(v), true
	case int:
		return float64(v), true
	case int8:
		return float64(v), true
	case int16:
		return float64(v), true
	case int32:
		return float64(v), true
	case int64:
		return float64(v), true
	case uint:
		return float64(v), true
	case uint8:
		return float64(v), true
	case uint16:
		return float64(v), true
	case uint32:
		return float64(v), true
	case uint64:
		return float64(v), true
	}
	return 0, false
}

// MetaInt returns Meta[key] as an int64 when it is an integer of any Go type that fits, or a float
// holding an integral value that fits (a writer may have stored a step count as 2e4).
func (f *File) MetaInt(key string) (int64, bool) {
	switch v := f.Meta[key].(type) {
	case int:
		return int64(v), true
	case int8:
		return int64(v), true
	case int16:
		return int64(v), true
	case int32:
		return int64(v), true
	case int64:
		return v, true
	case uint:
		return int64(v), uint64(v) <= math.MaxInt64
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case uint64:
		return int64(v), v <= math.MaxInt64
	case float32:
		return floatInt(float64(v))
	case float64:
		return floatInt(v)
	}
	return 0, false
}

// floatInt converts x to int64 when it is integral and inside the int64 range.
func floatInt(x float64) (int64, bool) {
	if x != math.Trunc(x) || x < -(1<<63) || x >= 1<<63 {
		return 0, false
	}
	return int64(x), true
}

// MetaString returns Meta[key] when it is a string (or a msgpack bin, read as bytes of text).
func (f *File) MetaString(key string) (string, bool) {
	switch v := f.Meta[key].(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	}
	return "", false
}

// dtypeSize returns the byte width of one value of dtype.
func dtypeSize(dtype string) (int, error) {
	switch dtype {
	case "f32":
		return 4, nil
	case "f16":
		return 2, nil
	}
	return 0, fmt.Errorf("unknown dtype %q (this build reads \"f32\" and \"f16\")", dtype)
}

// checkShape returns the element count of shape after checking it against the format's limits:
// rank 1…MaxRank, every dim ≥ 1, at most MaxElements elements (checked before each multiply, so
// it cannot overflow).
func checkShape(shape []int) (int, error) {
	if len(shape) == 0 || len(shape) > MaxRank {
		return 0, fmt.Errorf("shape %v has rank %d; the format allows 1 to %d dims", shape, len(shape), MaxRank)
	}
	n := 1
	for _, s := range shape {
		if s < 1 {
			return 0, fmt.Errorf("shape %v has a dim %d < 1", shape, s)
		}
		if s > MaxElements || n > MaxElements/s {
			return 0, fmt.Errorf("shape %v has more than %d elements", shape, MaxElements)
		}
		n *= s
	}
	return n, nil
}
