//go:build !js

package shaders

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/cogentcore/webgpu/wgpu"
)

// hostDevice holds what wgpu-native needs released besides the device.
type hostDevice struct {
	instance *wgpu.Instance
	adapter  *wgpu.Adapter
}

var quietLog sync.Once

// NewDeviceOpts opens the preferred native WebGPU adapter (Vulkan, Metal, DX12 or GL through
// wgpu-native; on a machine without a GPU, Mesa's lavapipe) with WebGPU's default limits, the same
// limits a browser grants, so native tests exercise what the page will get. It requests shader-f16
// when the adapter offers it and o.F32Only is false (lavapipe offers it), and opens a device
// without it if that request fails.
func NewDeviceOpts(o DeviceOptions) (*Device, error) {
	// wgpu-native logs harmless warnings (no windowing system, no EGL config) at its default level;
	// validation errors still come back as Go errors.
	quietLog.Do(func() {
		wgpu.SetLogLevel(wgpu.LogLevelError)
		// The Vulkan loader prints "XDG_RUNTIME_DIR is invalid" on every instance when it is unset
		// (headless servers, CI); any writable folder silences it.
		if os.Getenv("XDG_RUNTIME_DIR") == "" {
			os.Setenv("XDG_RUNTIME_DIR", os.TempDir())
		}
	})
	inst := wgpu.CreateInstance(nil)
	if inst == nil {
		return nil, ErrNoAdapter
	}
	ad, err := inst.RequestAdapter(&wgpu.RequestAdapterOptions{PowerPreference: wgpu.PowerPreferenceHighPerformance})
	if err != nil || ad == nil {
		inst.Release()
		if err != nil {
			return nil, fmt.Errorf("%w (%v)", ErrNoAdapter, err)
		}
		return nil, ErrNoAdapter
	}
	info := ad.GetInfo()
	var dev *wgpu.Device
	f16 := !o.F32Only && ad.HasFeature(wgpu.FeatureNameShaderF16)
	if f16 {
		dev, err = ad.RequestDevice(&wgpu.DeviceDescriptor{RequiredFeatures: []wgpu.FeatureName{wgpu.FeatureNameShaderF16}})
		f16 = err == nil && dev != nil && dev.HasFeature(wgpu.FeatureNameShaderF16)
		if !f16 && err == nil && dev != nil {
			dev.Release()
		}
	}
	if !f16 {
		dev, err = ad.RequestDevice(nil)
	}
	if err != nil || dev == nil {
		ad.Release()
		inst.Release()
		return nil, fmt.Errorf("shaders: adapter %q refused a device: %v", info.Name, err)
	}
	d := &Device{
		gpu:     dev,
		queue:   dev.GetQueue(),
		info:    describe(info),
		soft:    info.AdapterType == wgpu.AdapterTypeCPU || softwareName(info.Name+" "+info.DriverDescription),
		kernels: map[string]*kernel{},
		host:    hostDevice{instance: inst, adapter: ad},
		f16:     f16,
		f32Only: o.F32Only,
	}
	d.maxBind = dev.GetLimits().Limits.MaxStorageBufferBindingSize
	if d.maxBind == 0 || d.maxBind == wgpu.LimitU64Undefined {
		d.maxBind = defaultStorageBinding
	}
	return d, nil
}

// describe names an adapter from the fields wgpu-native fills in (it often reports hex ids as names,
// and the driver description as the useful part, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)").
func describe(info wgpu.AdapterInfo) string {
	var parts []string
	for _, s := range []string{info.Name, info.DriverDescription, info.VendorName, info.Architecture} {
		if s != "" && !strings.HasPrefix(s, "0x") && !slices.Contains(parts, s) {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("adapter %#x:%#x", info.VendorId, info.DeviceId))
	}
	return fmt.Sprintf("%s (%s, %s)", strings.Join(parts, ", "), info.BackendType, info.AdapterType)
}

// Close releases the pipelines, the queue, the device, the adapter and the instance. Buffers still
// alive become unusable; destroy them first when you can. Close is idempotent.
func (d *Device) Close() {
	if d == nil || d.closed || d.gpu == nil {
		return
	}
	d.closed = true
	d.releaseKernels()
	d.queue.Release()
	d.gpu.Release()
	d.host.adapter.Release()
	d.host.instance.Release()
}

// pushErrorScope and popErrorScope bracket work whose validation errors must surface as Go errors.
// Natively the binding already wraps every Create*, WriteBuffer, MapAsync and Finish in its own
// validation scope and returns the error, so these are no-ops here.
func (d *Device) pushErrorScope() {}

func (d *Device) popErrorScope(string) error { return nil }

// wait blocks until the queue has finished all submitted work.
func (d *Device) wait() error {
	d.gpu.Poll(true, nil)
	return nil
}

// writeBuffer copies data into buf at offset before any work submitted afterwards.
func (d *Device) writeBuffer(buf *wgpu.Buffer, offset uint64, data []byte) error {
	return d.queue.WriteBuffer(buf, offset, data)
}

// guard turns a host panic into an error. Natively a panic is a bug and must stay loud.
func (d *Device) guard(*error) {}
