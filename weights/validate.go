package weights

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// Limits of the format. A file outside them is rejected by Decode and refused by Encode; they are
// far above any model this project ships (the largest is a few million parameters) and low enough
// that a hostile or corrupt file cannot make a reader allocate more than about its own size.
const (
	MaxRank      = 8       // dims per tensor
	MaxElements  = 1 << 28 // elements per tensor, and in all tensors together
	MaxArchValue = 1 << 24 // upper bound of every Arch size field (Dim of a 2048×2048×3 image fits)
	maxMults     = 16      // entries in Arch.Mults
	MaxTensors   = 1 << 16 // tensors per file
	MaxNameLen   = 256     // bytes in a tensor name
	maxKindLen   = 64      // bytes in Arch.Kind
	maxMetaDepth = 16      // nesting of arrays/maps inside Meta
	maxMetaNodes = 1 << 20 // values inside Meta, all levels together
	// maxFileBytes bounds what ReadFile will load: all elements as f32 plus room for meta.
	maxFileBytes = 4*MaxElements + 64<<20
)

// Validate checks f against the format: magic, version, Arch ranges, tensor names (non-empty,
// unique, ≤ MaxNameLen bytes), dtypes, shapes against byte counts, finite values, the size limits,
// and that Meta holds only values the codec can write and read back. Encode runs it before
// writing and Decode after parsing, so both sides enforce one rule set.
func (f *File) Validate() error {
	if f == nil {
		return fmt.Errorf("nil *File")
	}
	if f.Magic != Magic {
		return fmt.Errorf("magic is %q, want %q (create files with weights.New)", f.Magic, Magic)
	}
	if f.Version < 1 || f.Version > Version {
		return fmt.Errorf("version is %d, this build writes and reads 1…%d", f.Version, Version)
	}
	if err := f.Arch.check(); err != nil {
		return err
	}
	if len(f.Tensors) > MaxTensors {
		return fmt.Errorf("%d tensors, the format allows at most %d", len(f.Tensors), MaxTensors)
	}
	// Shapes and the total first, so an oversized file is reported as such rather than by the
	// byte count of its first tensor.
	seen := make(map[string]bool, len(f.Tensors))
	total := 0
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Name == "" {
			return fmt.Errorf("tensor %d has an empty name", i)
		}
		if len(t.Name) > MaxNameLen {
			return fmt.Errorf("tensor %d: name is %d bytes long, the format allows %d", i, len(t.Name), MaxNameLen)
		}
		if seen[t.Name] {
			return fmt.Errorf("duplicate tensor name %q", t.Name)
		}
		seen[t.Name] = true
		if _, err := dtypeSize(t.DType); err != nil {
			return fmt.Errorf("tensor %q: %v", t.Name, err)
		}
		n, err := checkShape(t.Shape)
		if err != nil {
			return fmt.Errorf("tensor %q: %v", t.Name, err)
		}
		if total += n; total > MaxElements {
			return fmt.Errorf("the tensors hold more than %d elements together", MaxElements)
		}
	}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		size, _ := dtypeSize(t.DType)
		n, _ := checkShape(t.Shape)
		if len(t.Data) != n*size {
			return fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, data has %d", t.Name, t.Shape, t.DType, n*size, len(t.Data))
		}
		if i, bad := firstNonFinite(t.DType, t.Data); i >= 0 {
			return fmt.Errorf("tensor %q: value %d (index %v) is %s", t.Name, i, unravel(i, t.Shape), bad)
		}
	}
	return checkMeta(f.Meta)
}

// check reports an Arch whose fields are outside the format's ranges.
func (a Arch) check() error {
	if len(a.Kind) > maxKindLen {
		return fmt.Errorf("arch kind is %d bytes long, the format allows %d", len(a.Kind), maxKindLen)
	}
	for _, fv := range a.intFields() {
		if *fv.v < 0 || *fv.v > MaxArchValue {
			return fmt.Errorf("arch %s = %d is outside [0, %d]", fv.name, *fv.v, MaxArchValue)
		}
	}
	if len(a.Mults) > maxMults {
		return fmt.Errorf("arch mults has %d entries, the format allows at most %d", len(a.Mults), maxMults)
	}
	for i, m := range a.Mults {
		if m < 0 || m > MaxArchValue {
			return fmt.Errorf("arch mults[%d] = %d is outside [0, %d]", i, m, MaxArchValue)
		}
	}
	return nil
}

// firstNonFinite returns the index of the first NaN or ±Inf value in data of dtype, and which it
// is, or -1.
func firstNonFinite(dtype string, data []byte) (int, string) {
	what := func(nan bool) string {
		if nan {
			return "NaN"
		}
		return "±Inf"
	}
	switch dtype {
	case "f32":
		for i := 0; i+4 <= len(data); i += 4 {
			b := binary.LittleEndian.Uint32(data[i:])
			if b&0x7f800000 == 0x7f800000 {
				return i / 4, what(b&0x7fffff != 0)
			}
		}
	case "f16":
		for i := 0; i+2 <= len(data); i += 2 {
			h := binary.LittleEndian.Uint16(data[i:])
			if !F16IsFinite(h) {
				return i / 2, what(h&0x3ff != 0)
			}
		}
	}
	return -1, ""
}

// unravel turns flat row-major index i into per-dim indices of shape.
func unravel(i int, shape []int) []int {
	idx := make([]int, len(shape))
	for k := len(shape) - 1; k >= 0; k-- {
		idx[k] = i % shape[k]
		i /= shape[k]
	}
	return idx
}

// checkMeta reports a Meta value the codec cannot round-trip, by encoding it to nowhere.
func checkMeta(m map[string]any) error {
	e := msgpack.NewEncoder(io.Discard)
	nodes := 0
	return encodeMetaMap(e, m, 0, &nodes)
}
