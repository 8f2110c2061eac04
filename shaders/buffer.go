package shaders

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cogentcore/webgpu/wgpu"

	"asbm/weights"
)

// Buffer is a storage buffer of float32 values on a Device, or (inside a GPUNet with f16 weights,
// never handed out) of IEEE half values packed two to a 32-bit word.
type Buffer struct {
	d    *Device
	buf  *wgpu.Buffer
	n    int
	half bool // n f16 values, value i in the low (even i) or high half of word i/2
}

// Len is the number of values the buffer holds.
func (b *Buffer) Len() int { return b.n }

// bytes is the buffer's size: 4 bytes a value, or 2 for halves rounded up to whole 32-bit words
// (WebGPU sizes storage bindings and copies in multiples of 4 bytes).
func (b *Buffer) bytes() uint64 { return bufferBytes(b.n, b.half) }

func bufferBytes(n int, half bool) uint64 {
	if half {
		return uint64(n+1) / 2 * 4
	}
	return uint64(n) * 4
}

// Destroy frees the GPU memory now (the browser's Release is a no-op, so memory is only returned by
// Destroy or by closing the device). Destroy is idempotent.
func (b *Buffer) Destroy() {
	if b == nil || b.buf == nil {
		return
	}
	if !b.d.closed {
		b.buf.Destroy()
		b.buf.Release()
	}
	b.buf = nil
}

// NewBuffer allocates a zero-filled storage buffer of n float32 values that kernels read and write and
// that Upload and Read can copy to and from.
func (d *Device) NewBuffer(n int) (*Buffer, error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	return d.newBuffer(n, false)
}

// newBuffer allocates a zero-filled storage buffer of n float32 values, or of n halves when half.
func (d *Device) newBuffer(n int, half bool) (*Buffer, error) {
	if n < 1 {
		return nil, fmt.Errorf("shaders: buffer of %d values: need at least 1", n)
	}
	kind := "float32"
	if half {
		kind = "f16"
	}
	size := bufferBytes(n, half)
	if size > d.maxBind {
		return nil, fmt.Errorf("shaders: buffer of %d %s values (%d bytes) exceeds the device's storage binding limit of %d bytes; use fewer points", n, kind, size, d.maxBind)
	}
	buf, err := d.gpu.CreateBuffer(&wgpu.BufferDescriptor{
		Label: "asbm storage",
		Usage: wgpu.BufferUsageStorage | wgpu.BufferUsageCopySrc | wgpu.BufferUsageCopyDst,
		Size:  size,
	})
	if err != nil {
		return nil, wrapf(err, "shaders: creating a buffer of %d %s values", n, kind)
	}
	return &Buffer{d: d, buf: buf, n: n, half: half}, nil
}

// newHalfBufferFrom allocates a buffer holding v rounded to IEEE half precision (weights.F32ToF16,
// the rounding of the weight files' f16 tensors, so an f16 tensor widened on load comes back
// unchanged). A value whose magnitude rounds past weights.F16Max is an error, not an infinity.
func (d *Device) newHalfBufferFrom(v []float32, name string) (b *Buffer, err error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	data := make([]byte, bufferBytes(len(v), true))
	for i, x := range v {
		h := weights.F32ToF16(x)
		if !weights.F16IsFinite(h) {
			return nil, fmt.Errorf("shaders: %s value %d = %g does not fit in f16 (finite range ±%d): use f32 weights (NewGPUNet)", name, i, x, weights.F16Max)
		}
		binary.LittleEndian.PutUint16(data[2*i:], h)
	}
	if b, err = d.newBuffer(len(v), true); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			b.Destroy()
			b = nil
		}
	}()
	defer d.guard(&err) // runs first: a host panic becomes err, and the buffer is freed above
	return b, wrapf(d.writeBuffer(b.buf, 0, data), "shaders: uploading %d f16 values", len(v))
}

// newBufferFrom allocates a buffer holding v.
func (d *Device) newBufferFrom(v []float32) (*Buffer, error) {
	b, err := d.NewBuffer(len(v))
	if err != nil {
		return nil, err
	}
	if err := d.Upload(b, v); err != nil {
		b.Destroy()
		return nil, err
	}
	return b, nil
}

// check reports a buffer that is nil, destroyed, from another device, shorter than n values, or
// holding halves: every binding but a weight matrix's (checkWeight) reads float32.
func (d *Device) check(b *Buffer, name string, n int) error {
	if err := d.checkWeight(b, name, n); err != nil {
		return err
	}
	if b.half {
		return fmt.Errorf("shaders: %s buffer holds f16 values; only the weights of conv and linear may", name)
	}
	return nil
}

// checkWeight is check for a binding that reads float32 or f16 values (weightKernel picks the
// kernel variant that matches).
func (d *Device) checkWeight(b *Buffer, name string, n int) error {
	switch {
	case b == nil || b.buf == nil:
		return fmt.Errorf("shaders: %s buffer is nil or destroyed", name)
	case b.d != d:
		return fmt.Errorf("shaders: %s buffer belongs to another device", name)
	case b.n < n:
		return fmt.Errorf("shaders: %s buffer holds %d values, need %d", name, b.n, n)
	}
	return nil
}

// Upload copies v into the start of b (len(v) ≤ b.Len()). The copy is ordered before any work
// submitted afterwards. An empty v is a no-op (the browser binding panics on empty writes).
func (d *Device) Upload(b *Buffer, v []float32) (err error) {
	if err := d.usable(); err != nil {
		return err
	}
	if err := d.check(b, "upload target", len(v)); err != nil {
		return err
	}
	if len(v) == 0 {
		return nil
	}
	defer d.guard(&err)
	return wrapf(d.writeBuffer(b.buf, 0, wgpu.ToBytes(v)), "shaders: uploading %d values", len(v))
}

// Read copies b back to the CPU (halves widened exactly) through a MapRead staging buffer and waits
// for it, after all work submitted before. In the browser it awaits a promise: call it from a
// goroutine.
func (d *Device) Read(b *Buffer) (out []float32, err error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	if err := d.checkWeight(b, "read source", 0); err != nil {
		return nil, err
	}
	defer d.guard(&err)
	st, err := d.newStaging(b.bytes())
	if err != nil {
		return nil, err
	}
	defer func() {
		st.Destroy()
		st.Release()
	}()
	return d.readVia(b, st)
}

// newStaging creates a MapRead staging buffer of size bytes for readVia.
func (d *Device) newStaging(size uint64) (*wgpu.Buffer, error) {
	st, err := d.gpu.CreateBuffer(&wgpu.BufferDescriptor{
		Label: "asbm readback",
		Usage: wgpu.BufferUsageMapRead | wgpu.BufferUsageCopyDst,
		Size:  size,
	})
	return st, wrapf(err, "shaders: creating a readback buffer")
}

// readVia is Read through the staging buffer st (newStaging, at least b's size), which is unmapped
// again on return so it can be reused: the Trainer reads its loss every step through one, so a step
// creates no buffer.
func (d *Device) readVia(b *Buffer, st *wgpu.Buffer) (out []float32, err error) {
	size := b.bytes()
	enc, err := d.gpu.CreateCommandEncoder(nil)
	if err != nil {
		return nil, wrapf(err, "shaders: readback encoder")
	}
	defer enc.Release()
	if err := enc.CopyBufferToBuffer(b.buf, 0, st, 0, size); err != nil {
		return nil, wrapf(err, "shaders: readback copy")
	}
	cmd, err := enc.Finish(nil)
	if err != nil {
		return nil, wrapf(err, "shaders: readback encoder")
	}
	defer cmd.Release()
	d.queue.Submit(cmd)
	status := wgpu.BufferMapAsyncStatus(math.MaxUint32)
	if err := st.MapAsync(wgpu.MapModeRead, 0, size, func(s wgpu.BufferMapAsyncStatus) { status = s }); err != nil {
		return nil, wrapf(err, "shaders: mapping the readback buffer")
	}
	// Natively the map callback runs inside Poll; in the browser MapAsync has already awaited.
	d.gpu.Poll(true, nil)
	if status != wgpu.BufferMapAsyncStatusSuccess {
		return nil, fmt.Errorf("shaders: mapping the readback buffer failed (status %v); the device may be lost", status)
	}
	raw := st.GetMappedRange(0, uint(size))
	if uint64(len(raw)) != size {
		st.Unmap()
		return nil, errors.New("shaders: readback returned a short mapping")
	}
	// Decode before Unmap: natively raw aliases the mapping.
	out = make([]float32, b.n)
	for i := range out {
		if b.half {
			out[i] = weights.F16ToF32(binary.LittleEndian.Uint16(raw[2*i:]))
		} else {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	}
	if err := st.Unmap(); err != nil {
		return nil, wrapf(err, "shaders: unmapping the readback buffer")
	}
	return out, nil
}
