//go:build js

package shaders

import (
	"errors"
	"fmt"
	"strings"
	"syscall/js"
	"unsafe"

	"github.com/cogentcore/webgpu/jsx"
	"github.com/cogentcore/webgpu/wgpu"
)

// hostDevice keeps the JavaScript GPUDevice for what the binding does not expose: error scopes,
// limits, queue completion and destroy.
type hostDevice struct {
	dev js.Value
}

// NewDeviceOpts asks navigator.gpu for a high-performance adapter and a device with default limits
// (the binding cannot pass requiredLimits in the browser), with shader-f16 when the adapter offers it
// and o.F32Only is false; if that request fails it asks again without the feature. It awaits
// promises: call it from a goroutine, never inside a js.FuncOf callback. WebGPU needs a secure
// context (HTTPS or localhost).
func NewDeviceOpts(o DeviceOptions) (d *Device, err error) {
	defer func() {
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("shaders: WebGPU initialisation failed: %v", r)
		}
	}()
	gpu := js.Global().Get("navigator").Get("gpu")
	if !gpu.Truthy() {
		return nil, fmt.Errorf("%w (navigator.gpu is missing: this browser has no WebGPU, or the page is not a secure context)", ErrNoAdapter)
	}
	ad, ok := jsx.Await(gpu.Call("requestAdapter", map[string]any{"powerPreference": "high-performance"}))
	if !ok || !ad.Truthy() {
		return nil, fmt.Errorf("%w (requestAdapter() returned null)", ErrNoAdapter)
	}
	var parts []string
	fallback := ad.Get("isFallbackAdapter").Truthy()
	if info := ad.Get("info"); info.Truthy() {
		for _, k := range []string{"vendor", "architecture", "device", "description"} {
			if v := info.Get(k); v.Type() == js.TypeString && v.String() != "" {
				parts = append(parts, v.String())
			}
		}
		fallback = fallback || info.Get("isFallbackAdapter").Truthy()
	}
	if fallback {
		parts = append(parts, "fallback adapter")
	}
	var dv js.Value
	f16 := !o.F32Only && hasFeature(ad, "shader-f16")
	if f16 {
		// A rejected request (a browser that lists the feature but refuses it) must not cost the
		// GPU path: ask again without it.
		dv, ok = jsx.Await(ad.Call("requestDevice", map[string]any{"requiredFeatures": []any{"shader-f16"}}))
		f16 = ok && dv.Truthy() && hasFeature(dv, "shader-f16")
		if !f16 && ok && dv.Truthy() {
			dv.Call("destroy")
		}
	}
	if !f16 {
		dv, ok = jsx.Await(ad.Call("requestDevice", map[string]any{}))
	}
	if !ok || !dv.Truthy() {
		return nil, errors.New("shaders: the WebGPU adapter refused a device")
	}
	wd := wgpu.NewDevice(dv)
	desc := strings.Join(parts, ", ")
	if desc == "" {
		desc = "WebGPU adapter (the browser gives no details)"
	}
	d = &Device{
		gpu:     &wd,
		queue:   wd.GetQueue(),
		info:    desc,
		soft:    fallback || softwareName(desc),
		kernels: map[string]*kernel{},
		host:    hostDevice{dev: dv},
		f16:     f16,
		f32Only: o.F32Only,
	}
	d.maxBind = defaultStorageBinding
	if v := dv.Get("limits").Get("maxStorageBufferBindingSize"); v.Type() == js.TypeNumber && v.Float() > 0 {
		d.maxBind = uint64(v.Float())
	}
	return d, nil
}

// hasFeature reports whether a GPUAdapter or GPUDevice lists the feature name in its features set.
func hasFeature(v js.Value, name string) bool {
	fs := v.Get("features")
	return fs.Type() == js.TypeObject && fs.Call("has", name).Truthy()
}

// Close destroys the GPUDevice (which frees every buffer it owns; Release is a no-op in the browser).
// Close is idempotent.
func (d *Device) Close() {
	if d == nil || d.closed || d.gpu == nil {
		return
	}
	d.closed = true
	d.releaseKernels()
	d.host.dev.Call("destroy")
}

// pushErrorScope opens a validation error scope: in the browser every Create* returns a nil error
// even when validation fails, so work that must fail loudly is bracketed by a scope.
func (d *Device) pushErrorScope() { d.host.dev.Call("pushErrorScope", "validation") }

// popErrorScope closes the innermost scope and returns its first validation error, prefixed by what.
func (d *Device) popErrorScope(what string) error {
	v, ok := jsx.Await(d.host.dev.Call("popErrorScope"))
	if !ok {
		return fmt.Errorf("shaders: %s: popErrorScope rejected: %v", what, v)
	}
	if v.IsNull() || v.IsUndefined() {
		return nil
	}
	return fmt.Errorf("shaders: %s: WebGPU validation error: %s", what, v.Get("message").String())
}

// wait awaits queue.onSubmittedWorkDone(), which also lets the browser's event loop run (paint
// progress) while a long sampling loop is in flight.
func (d *Device) wait() error {
	v, ok := jsx.Await(d.host.dev.Get("queue").Call("onSubmittedWorkDone"))
	if !ok {
		return fmt.Errorf("shaders: waiting for the GPU failed: %v", v)
	}
	return nil
}

// writeBuffer copies data into buf at offset before any work submitted afterwards, through a
// JavaScript-owned copy. The binding's Queue.WriteBuffer instead passes writeBuffer a view of the
// wasm memory and then converts its other arguments; if that conversion grows the memory (the
// runtime keeps js.Value records outside the heap), the view is detached before writeBuffer reads
// it ("Cannot perform Construct on a detached ArrayBuffer"). js.CopyBytesToJS copies in one call, so
// no growth can intervene. The GPUBuffer is read out of the binding's Buffer, whose only field is
// its js.Value (github.com/cogentcore/webgpu v0.23.0, buffer_js.go); bufferJS checks that and the
// binding's own WriteBuffer is the fallback if a future version changes the layout.
func (d *Device) writeBuffer(buf *wgpu.Buffer, offset uint64, data []byte) error {
	jb, ok := bufferJS(buf)
	if !ok {
		return d.queue.WriteBuffer(buf, offset, data)
	}
	u := js.Global().Get("Uint8Array").New(len(data))
	js.CopyBytesToJS(u, data)
	d.host.dev.Get("queue").Call("writeBuffer", jb, offset, u)
	return nil
}

// bufferJS returns the GPUBuffer behind a binding Buffer, and false when the binding's layout is
// not the single js.Value this package was written against.
func bufferJS(buf *wgpu.Buffer) (js.Value, bool) {
	if buf == nil || unsafe.Sizeof(*buf) != unsafe.Sizeof(js.Value{}) {
		return js.Value{}, false
	}
	v := *(*js.Value)(unsafe.Pointer(buf))
	if c := js.Global().Get("GPUBuffer"); c.Type() != js.TypeFunction || v.Type() != js.TypeObject || !v.InstanceOf(c) {
		return js.Value{}, false
	}
	return v, true
}

// guard converts a JavaScript exception raised through syscall/js (a lost device, a rejected
// mapAsync) into an error instead of crashing the page's Go program.
func (d *Device) guard(err *error) {
	if r := recover(); r != nil {
		if e, ok := r.(error); ok {
			*err = fmt.Errorf("shaders: WebGPU call failed: %w", e)
			return
		}
		*err = fmt.Errorf("shaders: WebGPU call failed: %v", r)
	}
}
