package shaders

import (
	_ "embed"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cogentcore/webgpu/wgpu"
)

//go:embed timefeat.wgsl
var timefeatWGSL string

//go:embed linear.wgsl
var linearWGSL string

//go:embed update.wgsl
var updateWGSL string

// elementwiseWG is the workgroup size of timefeat.wgsl and update.wgsl.
const elementwiseWG = 256

// maxGroupsPerDim is WebGPU's default maxComputeWorkgroupsPerDimension. Dispatches fold into a 2-D
// (or, for linear, 3-D) grid beyond it. A variable so tests can force folding on small inputs.
var maxGroupsPerDim = 65535

// bindKind is the kind of one binding of a kernel's only bind group.
type bindKind int

const (
	bindUniform bindKind = iota
	bindRead
	bindWrite
)

// kernel is one compiled compute pipeline with its explicit layouts (the browser binding panics on
// automatic layouts).
type kernel struct {
	name  string
	binds []bindKind
	bgl   *wgpu.BindGroupLayout
	pl    *wgpu.PipelineLayout
	pipe  *wgpu.ComputePipeline
	mod   *wgpu.ShaderModule
}

func (k *kernel) release() {
	if k.pipe != nil {
		k.pipe.Release()
	}
	if k.pl != nil {
		k.pl.Release()
	}
	if k.bgl != nil {
		k.bgl.Release()
	}
	if k.mod != nil {
		k.mod.Release()
	}
}

// kernel returns the pipeline called name, compiling src on first use. Compilation and layout errors
// come back as errors on both hosts (through an error scope in the browser).
func (d *Device) kernel(name, src string, binds []bindKind) (k *kernel, err error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	if k := d.kernels[name]; k != nil {
		return k, nil
	}
	defer d.guard(&err)
	k = &kernel{name: name, binds: binds}
	d.pushErrorScope()
	err = k.build(d, src)
	if e := d.popErrorScope("compiling kernel " + name); err == nil {
		err = e
	}
	if err != nil {
		k.release()
		return nil, err
	}
	d.kernels[name] = k
	return k, nil
}

func (k *kernel) build(d *Device, src string) error {
	var err error
	k.mod, err = d.gpu.CreateShaderModule(&wgpu.ShaderModuleDescriptor{
		Label:          k.name,
		WGSLDescriptor: &wgpu.ShaderModuleWGSLDescriptor{Code: src},
	})
	if err != nil {
		return wrapf(err, "shaders: compiling %s", k.name)
	}
	entries := make([]wgpu.BindGroupLayoutEntry, len(k.binds))
	for i, b := range k.binds {
		t := wgpu.BufferBindingTypeUniform
		switch b {
		case bindRead:
			t = wgpu.BufferBindingTypeReadOnlyStorage
		case bindWrite:
			t = wgpu.BufferBindingTypeStorage
		}
		entries[i] = wgpu.BindGroupLayoutEntry{
			Binding:    uint32(i),
			Visibility: wgpu.ShaderStageCompute,
			Buffer:     wgpu.BufferBindingLayout{Type: t},
		}
	}
	k.bgl, err = d.gpu.CreateBindGroupLayout(&wgpu.BindGroupLayoutDescriptor{Label: k.name, Entries: entries})
	if err != nil {
		return wrapf(err, "shaders: bind group layout of %s", k.name)
	}
	k.pl, err = d.gpu.CreatePipelineLayout(&wgpu.PipelineLayoutDescriptor{
		Label:            k.name,
		BindGroupLayouts: []*wgpu.BindGroupLayout{k.bgl},
	})
	if err != nil {
		return wrapf(err, "shaders: pipeline layout of %s", k.name)
	}
	k.pipe, err = d.gpu.CreateComputePipeline(&wgpu.ComputePipelineDescriptor{
		Layout:  k.pl,
		Compute: wgpu.ProgrammableStageDescriptor{Module: k.mod, EntryPoint: "main"},
	})
	return wrapf(err, "shaders: pipeline of %s", k.name)
}

// op is one recorded dispatch: a kernel, its own uniform buffer and bind group, and the grid. Ops are
// built once and replayed every step; only their uniforms change (setUniform).
type op struct {
	d      *Device
	k      *kernel
	uni    *wgpu.Buffer
	bg     *wgpu.BindGroup
	groups [3]uint32
	owned  []*Buffer // scratch buffers only this op's recording uses, destroyed with it
}

// newOp binds bufs (in the kernel's order after the uniform) and writes the uniform.
func (d *Device) newOp(k *kernel, uniform []byte, bufs []*Buffer, groups [3]uint32) (*op, error) {
	if len(bufs)+1 != len(k.binds) {
		return nil, fmt.Errorf("shaders: kernel %s takes %d buffers, got %d", k.name, len(k.binds)-1, len(bufs))
	}
	for i, b := range bufs {
		if b == nil || b.buf == nil {
			return nil, fmt.Errorf("shaders: kernel %s: buffer %d is nil or destroyed", k.name, i+1)
		}
		if k.binds[i+1] == bindWrite {
			for j, o := range bufs {
				if j != i && o == b {
					return nil, fmt.Errorf("shaders: kernel %s: the output buffer may not also be an input", k.name)
				}
			}
		}
	}
	uni, err := d.gpu.CreateBuffer(&wgpu.BufferDescriptor{
		Label: k.name + " params",
		Usage: wgpu.BufferUsageUniform | wgpu.BufferUsageCopyDst,
		Size:  uint64(len(uniform)),
	})
	if err != nil {
		return nil, wrapf(err, "shaders: uniform of %s", k.name)
	}
	o := &op{d: d, k: k, uni: uni, groups: groups}
	entries := []wgpu.BindGroupEntry{{Binding: 0, Buffer: uni, Size: wgpu.WholeSize}}
	for i, b := range bufs {
		entries = append(entries, wgpu.BindGroupEntry{Binding: uint32(i + 1), Buffer: b.buf, Size: wgpu.WholeSize})
	}
	o.bg, err = d.gpu.CreateBindGroup(&wgpu.BindGroupDescriptor{Label: k.name, Layout: k.bgl, Entries: entries})
	if err != nil {
		o.release()
		return nil, wrapf(err, "shaders: bind group of %s", k.name)
	}
	if err := o.setUniform(uniform); err != nil {
		o.release()
		return nil, err
	}
	return o, nil
}

// setUniform rewrites the op's parameters; the write is ordered before the next submit.
func (o *op) setUniform(u []byte) error {
	return wrapf(o.d.writeBuffer(o.uni, 0, u), "shaders: writing the parameters of %s", o.k.name)
}

func (o *op) release() {
	if o == nil {
		return
	}
	if o.bg != nil {
		o.bg.Release()
	}
	if o.uni != nil && !o.d.closed {
		o.uni.Destroy()
		o.uni.Release()
	}
	for _, b := range o.owned {
		b.Destroy()
	}
	o.bg, o.uni, o.owned = nil, nil, nil
}

// batch records dispatches and copies into one command encoder, submitted at once: WebGPU orders
// dispatches in a pass, so each sees the previous one's writes.
type batch struct {
	d    *Device
	enc  *wgpu.CommandEncoder
	pass *wgpu.ComputePassEncoder
}

func (d *Device) begin() (*batch, error) {
	enc, err := d.gpu.CreateCommandEncoder(nil)
	if err != nil {
		return nil, wrapf(err, "shaders: command encoder")
	}
	return &batch{d: d, enc: enc}, nil
}

// run records one dispatch of o.
func (b *batch) run(o *op) {
	if b.pass == nil {
		b.pass = b.enc.BeginComputePass(nil)
	}
	b.pass.SetPipeline(o.k.pipe)
	b.pass.SetBindGroup(0, o.bg, nil)
	b.pass.DispatchWorkgroups(o.groups[0], o.groups[1], o.groups[2])
}

func (b *batch) endPass() {
	if b.pass != nil {
		b.pass.End()
		// wgpu-native needs the pass released before Finish (gfx-rs/wgpu-native#412).
		b.pass.Release()
		b.pass = nil
	}
}

// copy records a copy of n values from src to dst (outside any compute pass).
func (b *batch) copy(src, dst *Buffer, n int) error {
	b.endPass()
	return wrapf(b.enc.CopyBufferToBuffer(src.buf, 0, dst.buf, 0, uint64(n)*4), "shaders: buffer copy")
}

// submit finishes the encoder and submits it.
func (b *batch) submit() error {
	b.endPass()
	cmd, err := b.enc.Finish(nil)
	b.enc.Release()
	if err != nil {
		return wrapf(err, "shaders: finishing commands")
	}
	b.d.queue.Submit(cmd)
	cmd.Release()
	return nil
}

// discard drops an unsubmitted batch.
func (b *batch) discard() {
	if b.pass != nil {
		b.pass.End()
		b.pass.Release()
		b.pass = nil
	}
	b.enc.Release()
}

// grid1 spreads g workgroups over x and y, each at most maxGroupsPerDim; kernels recover the linear
// index as wid.y·nwg.x + wid.x and skip the overhang.
func grid1(g int) ([3]uint32, error) {
	if g < 1 {
		g = 1
	}
	x := min(g, maxGroupsPerDim)
	y := (g + x - 1) / x
	if y > maxGroupsPerDim {
		return [3]uint32{}, fmt.Errorf("shaders: %d workgroups exceed the dispatch limit", g)
	}
	return [3]uint32{uint32(x), uint32(y), 1}, nil
}

// uniform packs 32-bit parameters into a uniform buffer image, padded to 16 bytes.
type uniform []byte

func (u uniform) u32(v int) uniform { return binary.LittleEndian.AppendUint32(u, uint32(v)) }

func (u uniform) f32(v float32) uniform {
	return binary.LittleEndian.AppendUint32(u, math.Float32bits(v))
}

func (u uniform) bytes() []byte {
	for len(u)%16 != 0 {
		u = append(u, 0)
	}
	return u
}

// runOne records op in a fresh batch, submits it and frees the op's uniform after the work is queued.
func (d *Device) runOne(o *op) (err error) {
	defer o.release()
	b, err := d.begin()
	if err != nil {
		return err
	}
	b.run(o)
	return b.submit()
}

// runAll records ops in one fresh batch, in order, submits it and frees the ops' uniforms after the
// work is queued.
func (d *Device) runAll(ops []*op) error {
	defer func() {
		for _, o := range ops {
			o.release()
		}
	}()
	b, err := d.begin()
	if err != nil {
		return err
	}
	for _, o := range ops {
		b.run(o)
	}
	return b.submit()
}

// --- timefeat.wgsl ---

func (d *Device) timefeatKernel() (*kernel, error) {
	return d.kernel("timefeat", timefeatWGSL, []bindKind{bindUniform, bindRead, bindRead, bindWrite})
}

// timefeatOp records dst[n×(dim+2F)] = [x | sin | cos] with t read as t[tOffset + row·tStride]. With
// dim = 0 (the U-Net's time embedding input) x is not read; pass any buffer, such as t.
func (d *Device) timefeatOp(dst, x, t *Buffer, n, dim, fourier, tStride, tOffset int) (*op, error) {
	if n < 1 || dim < 0 || fourier < 0 || dim+fourier < 1 {
		return nil, fmt.Errorf("shaders: timefeat needs n ≥ 1, dim ≥ 0, fourier ≥ 0 and dim + fourier ≥ 1; got %d, %d, %d", n, dim, fourier)
	}
	if tStride != 0 && tStride != 1 || tOffset < 0 {
		return nil, fmt.Errorf("shaders: timefeat t stride must be 0 or 1 and offset ≥ 0")
	}
	w := dim + 2*fourier
	for _, c := range []struct {
		b    *Buffer
		name string
		n    int
	}{{dst, "timefeat output", n * w}, {x, "timefeat x", n * dim}, {t, "timefeat t", tOffset + (n-1)*tStride + 1}} {
		if err := d.check(c.b, c.name, c.n); err != nil {
			return nil, err
		}
	}
	k, err := d.timefeatKernel()
	if err != nil {
		return nil, err
	}
	g, err := grid1((n*w + elementwiseWG - 1) / elementwiseWG)
	if err != nil {
		return nil, err
	}
	u := uniform{}.u32(n).u32(dim).u32(fourier).u32(tStride).u32(tOffset).bytes()
	return d.newOp(k, u, []*Buffer{x, t, dst}, g)
}

// TimeFeat runs timefeat.wgsl: dst (n×(dim+2·fourier)) gets the MLP input rows
// [x | sin(ω_k t) | cos(ω_k t)] of x (n×dim) and t (n values), ω_k = π(k+1) (asbm.md §6.1).
func (d *Device) TimeFeat(dst, x, t *Buffer, n, dim, fourier int) error {
	return d.scoped("timefeat", func() error {
		o, err := d.timefeatOp(dst, x, t, n, dim, fourier, 1, 0)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}

// --- update.wgsl ---

func (d *Device) updateKernel() (*kernel, error) {
	return d.kernel("update", updateWGSL, []bindKind{bindUniform, bindRead, bindRead, bindRead, bindWrite})
}

func updateUniform(n int, a, b, c float32) []byte {
	return uniform{}.u32(n).f32(a).f32(b).f32(c).bytes()
}

// updateOp records dst = a·x + b·y + c·z over n values; a nil y or z is replaced by x (its
// coefficient must then be 0, which the callers guarantee).
func (d *Device) updateOp(dst, x, y, z *Buffer, n int) (*op, error) {
	if y == nil {
		y = x
	}
	if z == nil {
		z = x
	}
	for _, c := range []struct {
		b    *Buffer
		name string
	}{{dst, "update output"}, {x, "update x"}, {y, "update y"}, {z, "update z"}} {
		if err := d.check(c.b, c.name, n); err != nil {
			return nil, err
		}
	}
	if n < 1 {
		return nil, fmt.Errorf("shaders: update of %d values", n)
	}
	k, err := d.updateKernel()
	if err != nil {
		return nil, err
	}
	g, err := grid1((n + elementwiseWG - 1) / elementwiseWG)
	if err != nil {
		return nil, err
	}
	return d.newOp(k, updateUniform(n, 0, 0, 0), []*Buffer{x, y, z, dst}, g)
}

// Update runs update.wgsl: dst = a·x + b·y + c·z over dst.Len() values. y or z may be nil (that term
// is dropped: its coefficient is ignored). dst must differ from x, y and z.
func (d *Device) Update(dst, x, y, z *Buffer, a, b, c float32) error {
	if err := d.check(dst, "update output", 0); err != nil {
		return err
	}
	if y == nil {
		b = 0
	}
	if z == nil {
		c = 0
	}
	return d.scoped("update", func() error {
		o, err := d.updateOp(dst, x, y, z, dst.n)
		if err != nil {
			return err
		}
		if err := o.setUniform(updateUniform(dst.n, a, b, c)); err != nil {
			o.release()
			return err
		}
		return d.runOne(o)
	})
}
