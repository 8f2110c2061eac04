// Package shaders holds the WGSL kernels of the project, the Go code that compiles and launches them,
// and the networks and samplers built from them. The same Go code runs natively (wgpu-native through
// cgo, used by `backend sample --device gpu` and the tests) and in the browser (GOOS=js, the page's
// WebGPU). It is the only package that imports the WebGPU binding; device_native.go and device_js.go
// are the only host-specific files.
//
// The CPU reference of everything here is plain Go in this package: Net.ForwardCPU for the networks
// (the toy MLP, mlp.go, and the image U-Net, unet.go) and SampleCPU for the samplers (also the
// browser's CPU path). The GPU code is tested against them: GPUNet runs either network's forward pass
// (gpumlp.go, unet_gpu.go) and Trainer trains either one (train.go, train_unet.go). Every kernel
// computes in f32; a GPUNet built by NewGPUNetF16 keeps its weight matrices as f16 halves, which
// conv.wgsl and linear.wgsl unpack on read (weightf16.go), and matches ForwardCPU on the network
// with those weights rounded to f16.
//
// Browser callers: every call that waits for the GPU (NewDevice, NewDeviceOpts, Device.Read, GPUNet.Forward,
// SampleGPU) blocks its goroutine on a JavaScript promise. Call them from a goroutine you started, never
// directly inside a js.FuncOf callback, or the page deadlocks. A Device is not safe for concurrent use.
package shaders
