//go:build js && wasm

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"syscall/js"
	"time"

	"asbm/model"
	"asbm/shaders"
)

// netByName returns the loaded model's network "score", "control" or "gen" on the CPU and on the
// GPU (nil until uploaded).
func netByName(m *loaded, name string) (*model.Net, *shaders.GPUNet, error) {
	switch name {
	case "score":
		return m.cpu.Score, m.gpu.Score, nil
	case "control":
		return m.cpu.Control, m.gpu.Control, nil
	case "gen":
		return m.cpu.Gen, m.gpu.Gen, nil
	}
	return nil, nil, fmt.Errorf(`net must be "score", "control" or "gen", got %q`, name)
}

// float32FromJS copies a Float32Array into Go.
func float32FromJS(v js.Value, what string) ([]float32, error) {
	if v.Type() != js.TypeObject || !v.InstanceOf(js.Global().Get("Float32Array")) {
		return nil, fmt.Errorf("%s must be a Float32Array", what)
	}
	n := v.Get("length").Int()
	b := make([]byte, 4*n)
	js.CopyBytesToGo(b, js.Global().Get("Uint8Array").New(v.Get("buffer"), v.Get("byteOffset"), v.Get("byteLength")))
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

// forward implements asbm.forward({net, t, x, device, simd}): one call of one network of the loaded
// model on n rows (t: a Float32Array of n times, x: one of n·dim values, images C×H×W
// channel-major), for benchmarks and for checking other runtimes against this one. It resolves
// with {out, ms, device, adapter, kernels (CPU path: "wasm SIMD" or "Go")}; on the GPU ms includes
// the upload of t and x and the read-back of out.
func forward(args []js.Value) (any, error) {
	o := arg0(args)
	if o.Type() != js.TypeObject {
		return nil, errors.New(`forward: pass {net: "gen", t: Float32Array, x: Float32Array, device: "gpu"|"cpu"}`)
	}
	dev, err := deviceOption(o)
	if err != nil {
		return nil, fmt.Errorf("forward: %v", err)
	}
	useSIMD, err := simdOption(o)
	if err != nil {
		return nil, fmt.Errorf("forward: %v", err)
	}
	t, err := float32FromJS(o.Get("t"), "forward: t")
	if err != nil {
		return nil, err
	}
	x, err := float32FromJS(o.Get("x"), "forward: x")
	if err != nil {
		return nil, err
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	m := cl.model
	if m == nil {
		return nil, errors.New("forward: no model loaded: call asbm.load(url) first")
	}
	name := "gen"
	if v := o.Get("net"); v.Type() == js.TypeString {
		name = v.String()
	}
	cpuNet, _, err := netByName(m, name)
	if err != nil {
		return nil, fmt.Errorf("forward: %v", err)
	}
	if cpuNet == nil {
		return nil, fmt.Errorf("forward: the model has no %s network", name)
	}
	n, d := len(t), m.file.Arch.Dim
	if n < 1 || n > maxImages || len(x) != n*d {
		return nil, fmt.Errorf("forward: want 1 to %d times and n·%d values of x; got %d times, %d values", maxImages, d, n, len(x))
	}
	useCPU := dev == "cpu" || (dev == "" && cl.dev == nil)
	start := time.Now()
	var out []float32
	adapter, device, kernels := "CPU (Go)", "cpu", ""
	if useCPU {
		nets, k := cpuEvaluators(m, useSIMD)
		ev := map[string]model.Evaluator{"score": nets.Score, "control": nets.Control, "gen": nets.Gen}[name]
		out, kernels = make([]float32, len(x)), k
		ev.Eval(t, x, out)
	} else {
		if err := cl.ensureGPU(m); err != nil {
			return nil, err
		}
		_, g, _ := netByName(m, name)
		if out, err = g.Forward(t, x); err != nil {
			cl.dropDevice()
			return nil, fmt.Errorf("GPU forward failed (the next call starts the GPU afresh): %v", err)
		}
		adapter, device = cl.dev.AdapterInfo(), "gpu"
	}
	res := map[string]any{"out": float32Array(out), "ms": float64(time.Since(start).Microseconds()) / 1000,
		"device": device, "adapter": adapter}
	if useCPU {
		res["kernels"] = kernels // "wasm SIMD" or "Go"
	}
	return res, nil
}

// params implements asbm.params(net): the network's parameters as {name: Float32Array} (an f16 file's
// halves widened to f32, as the CPU path holds them), so another runtime can build the same network.
func params(args []js.Value) (any, error) {
	name := "gen"
	if len(args) > 0 && args[0].Type() == js.TypeString {
		name = args[0].String()
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	m := cl.model
	if m == nil {
		return nil, errors.New("params: no model loaded: call asbm.load(url) first")
	}
	net, _, err := netByName(m, name)
	if err != nil {
		return nil, fmt.Errorf("params: %v", err)
	}
	if net == nil {
		return nil, fmt.Errorf("params: the model has no %s network", name)
	}
	res := map[string]any{}
	for k, v := range net.Params {
		res[k] = float32Array(v)
	}
	return res, nil
}
