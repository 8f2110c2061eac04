// Package shaders is the kernel library: the WGSL kernels of the project (forward and backward), the
// device and buffer layer, and the Go code that compiles and launches them, natively (wgpu-native
// through cgo: the WGSL training engine, `backend sample --device gpu`, the tests) and in the browser
// (GOOS=js, the page's WebGPU). It is the only package that imports the WebGPU binding;
// device_native.go and device_js.go are the only host-specific files.
//
// The networks themselves (architectures, parameters, the plain-Go forward) and the samplers live in
// package model, which is also the CPU reference of everything here: model.Net.ForwardCPU for the
// networks and model.SampleCPU for the samplers. The GPU code is tested against them: GPUNet runs
// either network's forward pass (gpumlp.go, unet_gpu.go), Trainer trains either one (train.go,
// train_unet.go), and SampleGPU is an engine (model.Engine) for model.Run, the one sampler. Every
// kernel computes in f32; a GPUNet built by NewGPUNetF16 keeps its weight matrices as f16 halves,
// which conv.wgsl and linear.wgsl unpack on read (weightf16.go), and matches ForwardCPU on the
// network with those weights rounded to f16.
//
// Browser callers: every call that waits for the GPU (NewDevice, NewDeviceOpts, Device.Read, GPUNet.Forward,
// SampleGPU) blocks its goroutine on a JavaScript promise. Call them from a goroutine you started, never
// directly inside a js.FuncOf callback, or the page deadlocks. A Device is not safe for concurrent use.
package shaders
