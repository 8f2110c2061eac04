package shaders

import (
	"fmt"
	"regexp"
)

// f16 weights. A GPUNet built by NewGPUNetF16 keeps its weight matrices (every parameter of rank ≥ 2:
// conv weights [cout,cin,k,k], linear weights [in,out]) as IEEE halves packed two to a 32-bit word,
// value i in the low half of word i/2 when i is even, in the high half when odd (the little-endian
// layout of the weight files' f16 tensors). conv.wgsl and linear.wgsl read them with
// unpack2x16float, which is core WGSL: unlike an array<f16>, it needs neither the shader-f16
// feature nor a WGSL front end that parses `enable f16;` (the wgpu-native that the binding bundles
// rejects both the directive and the f16 type, and Chromium's SwiftShader adapter offers no
// shader-f16), so the same kernels run, and are tested, on every adapter. Biases, group-norm scales
// and shifts, activations and every sum stay f32: the outputs equal an f32 network's whose weights
// were rounded to f16 (model.Net.ForwardCPU on such a network), up to the f32 summation order.
//
// WGSL has no includes, so each kernel keeps one source and the f16 variant is derived from it:
// the source declares `alias WT = f32;` (the element type of its weight binding, array<WT>) and
// reads weights only through `fn wt(i: u32) -> f32 { return f32(Wt[i]); }`. halfWeightSource
// rewrites exactly those two lines and fails if either is not found exactly once, so a source
// edited without its marker lines cannot silently run its f32 reads on halves.

var (
	wtAliasLine = regexp.MustCompile(`(?m)^alias WT = f32;`)
	wtReadLine  = regexp.MustCompile(`(?m)^fn wt\(i: u32\) -> f32 \{ return f32\(Wt\[i\]\); \}`)
)

const (
	wtAliasHalf = "alias WT = u32;"
	wtReadHalf  = "fn wt(i: u32) -> f32 { return unpack2x16float(Wt[i >> 1u])[i & 1u]; }"
)

// halfWeightSource returns the f16-weight variant of a kernel source written for f32 weights.
func halfWeightSource(name, src string) (string, error) {
	for _, m := range []struct {
		re   *regexp.Regexp
		with string
	}{{wtAliasLine, wtAliasHalf}, {wtReadLine, wtReadHalf}} {
		if c := len(m.re.FindAllStringIndex(src, -1)); c != 1 {
			return "", fmt.Errorf("shaders: kernel %s: cannot derive its f16-weight variant: the line %q occurs %d times, want once", name, m.re.String(), c)
		}
		src = m.re.ReplaceAllLiteralString(src, m.with)
	}
	return src, nil
}

// weightKernel returns the kernel called name compiled from src, or its f16-weight variant (name
// + "_f16") when the weight buffer w holds halves.
func (d *Device) weightKernel(name, src string, w *Buffer, binds []bindKind) (*kernel, error) {
	if w != nil && w.half {
		name += "_f16"
		if d.kernels[name] == nil {
			s, err := halfWeightSource(name, src)
			if err != nil {
				return nil, err
			}
			src = s
		}
	}
	return d.kernel(name, src, binds)
}

// storedAsHalf reports whether NewGPUNetF16 keeps a parameter of this shape in f16: the weight
// matrices (rank ≥ 2), which only conv and linear read. Biases and group-norm parameters (rank 1)
// stay f32: they are a few hundred values and keep the per-channel terms exact.
func storedAsHalf(shape []int) bool { return len(shape) >= 2 }
