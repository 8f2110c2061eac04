package shaders

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cogentcore/webgpu/wgpu"
)

// Buffer is a storage buffer of float32 values on a Device.
type Buffer struct {
	d   *Device
	buf *wgpu.Buffer
	n   int
}

// Len is the number of float32 values the buffer holds.
func (b *Buffer) Len() int { return b.n }

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
	if n < 1 {
		return nil, fmt.Errorf("shaders: buffer of %d values: need at least 1", n)
	}
	if uint64(n)*4 > d.maxBind {
		return nil, fmt.Errorf("shaders: buffer of %d float32 values (%d bytes) exceeds the device's storage binding limit of %d bytes; use fewer points", n, uint64(n)*4, d.maxBind)
	}
	buf, err := d.gpu.CreateBuffer(&wgpu.BufferDescriptor{
		Label: "asbm storage",
		Usage: wgpu.BufferUsageStorage | wgpu.BufferUsageCopySrc | wgpu.BufferUsageCopyDst,
		Size:  uint64(n) * 4,
	})
	if err != nil {
		return nil, wrapf(err, "shaders: creating a buffer of %d values", n)
	}
	return &Buffer{d: d, buf: buf, n: n}, nil
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

// check reports a buffer that is nil, destroyed, from another device or shorter than n values.
func (d *Device) check(b *Buffer, name string, n int) error {
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

// Read copies b back to the CPU through a MapRead staging buffer and waits for it, after all work
// submitted before. In the browser it awaits a promise: call it from a goroutine.
func (d *Device) Read(b *Buffer) (out []float32, err error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	if err := d.check(b, "read source", 0); err != nil {
		return nil, err
	}
	defer d.guard(&err)
	size := uint64(b.n) * 4
	st, err := d.gpu.CreateBuffer(&wgpu.BufferDescriptor{
		Label: "asbm readback",
		Usage: wgpu.BufferUsageMapRead | wgpu.BufferUsageCopyDst,
		Size:  size,
	})
	if err != nil {
		return nil, wrapf(err, "shaders: creating a readback buffer")
	}
	defer func() {
		st.Destroy()
		st.Release()
	}()
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
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	if err := st.Unmap(); err != nil {
		return nil, wrapf(err, "shaders: unmapping the readback buffer")
	}
	return out, nil
}
