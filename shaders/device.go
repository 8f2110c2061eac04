package shaders

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cogentcore/webgpu/wgpu"
)

// ErrNoAdapter is returned (wrapped) by NewDevice when the host offers no WebGPU adapter.
var ErrNoAdapter = errors.New("no WebGPU adapter found: install mesa-vulkan-drivers (lavapipe) or a GPU driver")

// defaultStorageBinding is WebGPU's default maxStorageBufferBindingSize (128 MiB), used when a host
// does not report the limit.
const defaultStorageBinding = 128 << 20

// Device is one WebGPU device with its queue, the limits the kernels respect and a cache of compiled
// pipelines. Create it with NewDevice and release it with Close. Not safe for concurrent use.
type Device struct {
	gpu     *wgpu.Device
	queue   *wgpu.Queue
	info    string
	soft    bool
	maxBind uint64 // largest storage buffer binding in bytes
	kernels map[string]*kernel
	closed  bool
	host    hostDevice
	f16     bool // granted WebGPU's shader-f16 feature
	f32Only bool // DeviceOptions.F32Only: no f16 weights
}

// DeviceOptions tune NewDeviceOpts. The zero value is what NewDevice uses when ASBM_F32_ONLY is
// unset.
type DeviceOptions struct {
	// F32Only opens the device for the f32 path only: shader-f16 is not requested (HasF16 is false)
	// and NewGPUNetF16 refuses the device, so every network keeps f32 weights. It forces the f32
	// path on any adapter (tests, or a driver whose f16 path misbehaves). NewDevice sets it when the
	// environment variable ASBM_F32_ONLY is "1".
	F32Only bool
}

// NewDevice opens a device with NewDeviceOpts, with DeviceOptions.F32Only set when the
// environment variable ASBM_F32_ONLY is "1" (never in a browser, which has no environment).
func NewDevice() (*Device, error) {
	return NewDeviceOpts(DeviceOptions{F32Only: os.Getenv("ASBM_F32_ONLY") == "1"})
}

// HasF16 reports whether the device was granted WebGPU's shader-f16 feature: NewDeviceOpts requests
// it whenever the adapter offers it (unless F32Only) and falls back to a device without it if that
// request fails. The f16 weights of NewGPUNetF16 do not need it (they are read as packed pairs
// with unpack2x16float, core WGSL); it says whether kernels could also compute in f16.
func (d *Device) HasF16() bool { return d != nil && d.f16 }

// F16Weights reports whether networks on this device may keep f16 weights (NewGPUNetF16): true
// unless the device was opened with DeviceOptions.F32Only.
func (d *Device) F16Weights() bool { return d != nil && !d.f32Only }

// AdapterInfo describes the adapter the device runs on (name, backend, type where the host tells).
func (d *Device) AdapterInfo() string { return d.info }

// IsSoftware reports whether the adapter is a CPU rasteriser (lavapipe/llvmpipe, SwiftShader, a
// fallback adapter). Such adapters are far slower than Go code on the same CPU (design.md), so a
// caller with a CPU path should prefer it and say so.
func (d *Device) IsSoftware() bool { return d.soft }

// softwareName reports whether an adapter description names a known software implementation.
func softwareName(s string) bool {
	s = strings.ToLower(s)
	for _, w := range []string{"llvmpipe", "lavapipe", "swiftshader", "software", "warp", "microsoft basic render"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// usable reports an error when the device was closed or never created.
func (d *Device) usable() error {
	if d == nil || d.gpu == nil {
		return errors.New("shaders: nil device (use NewDevice)")
	}
	if d.closed {
		return errors.New("shaders: device is closed")
	}
	return nil
}

// releaseKernels frees the cached pipelines; the host's Close calls it before dropping the device.
func (d *Device) releaseKernels() {
	for _, k := range d.kernels {
		k.release()
	}
	d.kernels = nil
}

// scoped runs f inside a validation error scope and turns host panics into errors, so that in the
// browser a validation failure anywhere in f (which the binding reports as a nil error) comes back as
// f's error.
func (d *Device) scoped(what string, f func() error) (err error) {
	if err := d.usable(); err != nil {
		return err
	}
	defer d.guard(&err)
	d.pushErrorScope()
	err = f()
	if e := d.popErrorScope(what); err == nil {
		err = e
	}
	return err
}

// wrapf prefixes a binding error with what we were doing.
func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}
