//go:build js && wasm

// Command wasm is the browser client: a small JavaScript API over shaders/ that loads a model file
// and draws samples on the visitor's GPU through WebGPU, or on the CPU path: an image model's U-Nets
// on WebAssembly SIMD kernels (simd.go) where the browser runs them, else plain Go.
//
//	await asbm.load("/weights/8gaussians.msgpack")   // → info {dataset, arch, image, shape, nets, adapter, …}
//	await asbm.warmup({device: "gpu"})               // one tiny forward per network: compiles the shaders
//	await asbm.generate({nfe: 8, seed: 1, sampler: "sde", n: 2000})
//	        // 2-D model → {points: Float32Array, ms, adapter, …}
//	        // image model → {images: Float32Array (n×C×H×W, values in about [−1, 1]), shape: [n, C, H, W], …}
//	asbm.onProgress = (step, total, preview) => { … }  // or generate({…, onProgress})
//	await asbm.forward({net: "gen", t, x, device: "gpu"}) // one network call → {out: Float32Array, ms, …} (benchmarks)
//	        // on the CPU path {simd: false} (also for generate and warmup) runs the plain-Go kernels
//	await asbm.params("gen")                         // {name: Float32Array}: the network's parameters
//
// nfe 1 runs the distilled one-step generator; nfe 2…100 runs the backward SDE ("sde"), the
// Heun PF-ODE ("ode") (asbm.md §3.3; the shared sampling conventions) or the ancestral sampler
// ("ancestral", model.Run) with nfe steps; {denoise: true} ends the SDE and the ODE with Tweedie's
// x0 instead of the paper's Euler step (model.SampleOptions.Denoise). The noise
// comes from the same seeded Go PRNG as `backend sample`, so a seed gives the same samples here and
// there.
//
// Every model is sampled by model.SampleCPU (the CPU path) or shaders.SampleGPU (x stays on the
// device) with model.SampleHooks, which give what a page needs: with {preview: k} an image
// model's progress callback gets the current state {images, shape, step} every k steps; the page's
// event loop runs between network calls (no freeze longer than one call); and a batch is split into
// chunks that fit the device's storage-binding limit on the GPU, or a time budget on the CPU,
// without changing the samples.
//
// Concurrency: a js.FuncOf callback runs on the JS event loop, and WebGPU readback awaits a
// promise, so blocking inside the callback would deadlock (syscall/js FuncOf docs). Every API call
// but info() therefore returns a Promise at once and does its work in a goroutine; a mutex keeps one
// load or generate at a time. info() never waits for that mutex: it reads a snapshot.
package main

// main.go is the JavaScript API (load, generate, warmup, info) and model loading; generating is
// generate.go. It is a little over 500 lines because every exported JS function validates its
// arguments here with the error text the page shows.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"syscall/js"

	"asbm/model"
	"asbm/shaders"
	"asbm/weights"
)

// The exported functions live in package-level variables so the garbage collector never frees
// them while JavaScript holds them.
var (
	loadFunc     js.Func
	generateFunc js.Func
	warmupFunc   js.Func
	infoFunc     js.Func
	forwardFunc  js.Func
	paramsFunc   js.Func
)

// api is globalThis.asbm.
var api js.Value

// Limits of generate's arguments.
const (
	maxNFE    = 100
	maxPoints = 10000     // rows of a 2-D model
	maxImages = 256       // rows of an image model (a 16×16 grid)
	maxSeed   = 1<<53 - 1 // the largest integer a JS number holds exactly
)

// loaded is the loaded file and everything built from it.
type loaded struct {
	url                  string
	file                 *weights.File
	bytes                int
	beta0, beta1, sigmaV float64
	sigmaScaled          bool           // the score and generator output σ_t·s (meta score_scale "sigma")
	image                bool           // arch kind "unet": rows are C×H×W images
	cpu                  model.CPUNets  // nil entries: the file lacks that net
	gpu                  shaders.Nets   // built lazily on the current device
	gpuErr               string         // why the networks could not be put on the GPU ("" if they could, or were not tried)
	simd                 simdNets       // the U-Nets on the SIMD kernels, built on the first CPU run
	runs                 map[string]int // generate calls so far, by device ("cpu", "gpu")
}

// client is the state behind the API; mu serialises every call that touches it.
type client struct {
	mu    sync.Mutex
	dev   *shaders.Device
	model *loaded

	snapMu sync.Mutex     // guards snap only, and is never held while waiting
	snap   map[string]any // what info() returns; nil before the first load
}

var cl client

func main() {
	install()
	select {} // keep the Go program, and so the API, alive
}

// install creates globalThis.asbm.
func install() {
	api = js.Global().Get("Object").New()
	loadFunc = js.FuncOf(func(this js.Value, args []js.Value) any {
		return promise(func() (any, error) { return load(args) })
	})
	generateFunc = js.FuncOf(func(this js.Value, args []js.Value) any {
		return promise(func() (any, error) { return generate(args) })
	})
	warmupFunc = js.FuncOf(func(this js.Value, args []js.Value) any {
		return promise(func() (any, error) { return warmup(args) })
	})
	// info runs on the event loop while a generate may hold cl.mu across awaits (or call this very
	// function from its progress callback), so it must not wait for cl.mu: it returns a snapshot.
	infoFunc = js.FuncOf(func(this js.Value, args []js.Value) any {
		cl.snapMu.Lock()
		defer cl.snapMu.Unlock()
		if cl.snap == nil {
			return js.Null()
		}
		return cl.snap
	})
	forwardFunc = js.FuncOf(func(this js.Value, args []js.Value) any {
		return promise(func() (any, error) { return forward(args) })
	})
	paramsFunc = js.FuncOf(func(this js.Value, args []js.Value) any {
		return promise(func() (any, error) { return params(args) })
	})
	api.Set("load", loadFunc)
	api.Set("forward", forwardFunc)
	api.Set("params", paramsFunc)
	api.Set("generate", generateFunc)
	api.Set("warmup", warmupFunc)
	api.Set("info", infoFunc)
	api.Set("onProgress", js.Null())
	api.Set("limits", map[string]any{"maxNFE": maxNFE, "maxPoints": maxPoints, "maxImages": maxImages, "maxSeed": maxSeed})
	js.Global().Set("asbm", api)
}

// promise runs work in a goroutine and returns a Promise settled with its result. A panic in work
// rejects the promise instead of killing the Go program, so the page can report it and go on.
func promise(work func() (any, error)) js.Value {
	var executor js.Func
	executor = js.FuncOf(func(this js.Value, args []js.Value) any {
		resolve, reject := args[0], args[1]
		go func() {
			defer executor.Release()
			defer func() {
				if r := recover(); r != nil {
					reject.Invoke(jsError(fmt.Sprintf("internal error: %v", r)))
				}
			}()
			v, err := work()
			if err != nil {
				reject.Invoke(jsError(err.Error()))
				return
			}
			resolve.Invoke(v)
		}()
		return nil
	})
	return js.Global().Get("Promise").New(executor)
}

func jsError(msg string) js.Value { return js.Global().Get("Error").New(msg) }

// await blocks the calling goroutine (never the event loop) until p settles.
func await(p js.Value) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	onOK := js.FuncOf(func(this js.Value, args []js.Value) any {
		ch <- result{v: arg0(args)}
		return nil
	})
	onErr := js.FuncOf(func(this js.Value, args []js.Value) any {
		e := arg0(args)
		msg := "promise rejected"
		if e.Type() == js.TypeObject && e.Get("message").Type() == js.TypeString {
			msg = e.Get("message").String()
		} else if e.Type() != js.TypeUndefined {
			msg = jsString(e)
		}
		ch <- result{err: errors.New(msg)}
		return nil
	})
	defer onOK.Release()
	defer onErr.Release()
	p.Call("then", onOK, onErr)
	r := <-ch
	return r.v, r.err
}

func arg0(args []js.Value) js.Value {
	if len(args) == 0 {
		return js.Undefined()
	}
	return args[0]
}

// noWebGPUMessage says why WebGPU is unavailable, in words a visitor can act on; "" when
// navigator.gpu exists.
func noWebGPUMessage() string {
	g := js.Global()
	nav := g.Get("navigator")
	if nav.Type() == js.TypeObject && nav.Get("gpu").Type() == js.TypeObject {
		return ""
	}
	msg := "WebGPU is not available in this browser (navigator.gpu is missing)."
	if !g.Get("isSecureContext").Truthy() {
		msg += " WebGPU needs a secure context (HTTPS or localhost)."
	} else {
		msg += " Use a recent Chrome or Edge, or enable WebGPU in Firefox or Safari."
	}
	return msg
}

// fetchBytes downloads url with the page's fetch.
func fetchBytes(url string) ([]byte, error) {
	res, err := await(js.Global().Call("fetch", url))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %v", url, err)
	}
	if !res.Get("ok").Bool() {
		return nil, fmt.Errorf("fetch %s: HTTP %d %s", url, res.Get("status").Int(), res.Get("statusText").String())
	}
	buf, err := await(res.Call("arrayBuffer"))
	if err != nil {
		return nil, fmt.Errorf("read %s: %v", url, err)
	}
	u8 := js.Global().Get("Uint8Array").New(buf)
	b := make([]byte, u8.Length())
	js.CopyBytesToGo(b, u8)
	return b, nil
}

// load implements asbm.load(url | Uint8Array[, {device, name}]): fetch (or take) and decode the
// file, check its schedule, and
// (unless device is "cpu") open the GPU and upload the networks. Without WebGPU it rejects with a
// reason the page can show; the page may then offer the CPU path by calling load(url, {device: "cpu"}).
func load(args []js.Value) (any, error) {
	u := arg0(args)
	// A Uint8Array is the file itself: the page fetched it (from its Cache API copy, or with a
	// progress bar), so the client does not download it a second time.
	isBytes := u.Type() == js.TypeObject && u.InstanceOf(js.Global().Get("Uint8Array"))
	if !isBytes && (u.Type() != js.TypeString || strings.TrimSpace(u.String()) == "") {
		return nil, errors.New("load(url): url must be a non-empty string or a Uint8Array of the file")
	}
	url := "(bytes)"
	if !isBytes {
		url = u.String()
	}
	cpuOnly := false
	if len(args) > 1 && args[1].Type() != js.TypeUndefined && args[1].Type() != js.TypeNull {
		dev, err := deviceOption(args[1])
		if err != nil {
			return nil, fmt.Errorf("load: %v", err)
		}
		cpuOnly = dev == "cpu"
		if n := args[1].Get("name"); isBytes && n.Type() == js.TypeString && n.String() != "" {
			url = n.String() // the name info() reports for a file passed as bytes
		}
	}
	if msg := noWebGPUMessage(); msg != "" && !cpuOnly {
		return nil, errors.New(msg)
	}
	var data []byte
	if isBytes {
		data = make([]byte, u.Length())
		js.CopyBytesToGo(data, u)
	} else {
		var err error
		if data, err = fetchBytes(url); err != nil {
			return nil, err
		}
	}
	f, err := weights.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", url, err)
	}
	m, err := newModel(url, f, len(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", url, err)
	}

	cl.mu.Lock()
	defer cl.mu.Unlock()
	ensureSIMDModule() // once per client: info() says which kernels the CPU path runs
	if cpuOnly {
		cl.setModel(m)
		return cl.info(), nil
	}
	if err := cl.openDevice(); err != nil {
		return nil, err
	}
	if err := cl.upload(m); err != nil {
		// The file is fine and the CPU path can run it; info says why the GPU cannot (an
		// architecture the WGSL kernels do not cover yet, a device lost mid-upload), and a later
		// generate on the GPU tries again.
		m.gpuErr = err.Error()
	}
	cl.setModel(m)
	return cl.info(), nil
}

// deviceOption reads {device: "gpu"|"cpu"} from an options object ("" when absent).
func deviceOption(o js.Value) (string, error) {
	if o.Type() != js.TypeObject {
		return "", errors.New(`options must be an object like {device: "gpu"}`)
	}
	v := o.Get("device")
	if v.Type() == js.TypeUndefined {
		return "", nil
	}
	if v.Type() != js.TypeString || (v.String() != "gpu" && v.String() != "cpu") {
		return "", errors.New(`device must be "gpu" or "cpu"`)
	}
	return v.String(), nil
}

// newModel reads the schedule and builds the CPU copies of the networks the file holds.
func newModel(url string, f *weights.File, n int) (*loaded, error) {
	m := &loaded{url: url, file: f, bytes: n, image: f.Arch.Kind == "unet", runs: map[string]int{}}
	var ok bool
	if m.beta0, ok = f.MetaFloat("beta0"); !ok {
		return nil, errors.New(`meta "beta0" is missing: re-export the model with backend export`)
	}
	if m.beta1, ok = f.MetaFloat("beta1"); !ok {
		return nil, errors.New(`meta "beta1" is missing: re-export the model with backend export`)
	}
	if m.sigmaV, ok = f.MetaFloat("sigma_v"); !ok {
		return nil, errors.New(`meta "sigma_v" is missing: re-export the model with backend export`)
	}
	if !(m.beta0 >= 0 && m.beta1 > 0 && m.sigmaV > 0) || math.IsInf(m.beta1, 0) || math.IsInf(m.sigmaV, 0) {
		return nil, fmt.Errorf("bad schedule in meta: beta0 %g, beta1 %g, sigma_v %g", m.beta0, m.beta1, m.sigmaV)
	}
	var err error
	if m.sigmaScaled, err = model.SigmaScaledMeta(f); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		prefix string
		dst    **model.Net
	}{{"score/", &m.cpu.Score}, {"control/", &m.cpu.Control}, {"gen/", &m.cpu.Gen}} {
		if !hasPrefix(f, p.prefix) {
			continue
		}
		net, err := model.NetFromFile(f, p.prefix)
		if err != nil {
			return nil, err
		}
		*p.dst = net
	}
	if m.cpu.Score == nil && m.cpu.Gen == nil {
		return nil, errors.New(`the file has neither a "score/" nor a "gen/" network: nothing to sample with`)
	}
	return m, nil
}

func hasPrefix(f *weights.File, prefix string) bool {
	for _, t := range f.Tensors {
		if strings.HasPrefix(t.Name, prefix) {
			return true
		}
	}
	return false
}

// openDevice creates the WebGPU device if there is none (first load, or after a failure dropped
// it, which is how a lost device recovers on the next click).
func (c *client) openDevice() error {
	if c.dev != nil {
		return nil
	}
	if msg := noWebGPUMessage(); msg != "" {
		return errors.New(msg)
	}
	d, err := shaders.NewDevice()
	if err != nil {
		return fmt.Errorf("could not start WebGPU: %v", err)
	}
	c.dev = d
	return nil
}

// setModel makes m current and frees the previous model's GPU buffers (Release is a no-op in the
// browser, so buffers are destroyed explicitly).
func (c *client) setModel(m *loaded) {
	if old := c.model; old != nil && old != m {
		for _, g := range []*shaders.GPUNet{old.gpu.Score, old.gpu.Control, old.gpu.Gen} {
			if g != nil {
				g.Close()
			}
		}
		old.gpu = shaders.Nets{}
	}
	c.model = m
	c.refresh()
}

// dropDevice forgets the device and everything on it; the next call starts afresh.
func (c *client) dropDevice() {
	if c.model != nil {
		c.model.gpu = shaders.Nets{}
		delete(c.model.runs, "gpu") // the next GPU run is cold again
	}
	if c.dev != nil {
		c.dev.Close()
		c.dev = nil
	}
	c.refresh()
}

// upload puts m's networks on the current device; on failure it frees what it uploaded. A file
// whose tensors are all f16 keeps its weight matrices in f16 on the GPU too (NewGPUNetF16: half the
// memory, the kernels still compute in f32): they were halves before the load widened them, so no
// value changes and the GPU path still matches the CPU path. Any other file is uploaded as f32.
func (c *client) upload(m *loaded) error {
	newNet := shaders.NewGPUNet
	if weightsDType(m.file) == "f16" && c.dev.F16Weights() {
		newNet = shaders.NewGPUNetF16
	}
	var g shaders.Nets
	free := func() {
		for _, n := range []*shaders.GPUNet{g.Score, g.Control, g.Gen} {
			if n != nil {
				n.Close()
			}
		}
	}
	for _, p := range []struct {
		src *model.Net
		dst **shaders.GPUNet
	}{{m.cpu.Score, &g.Score}, {m.cpu.Control, &g.Control}, {m.cpu.Gen, &g.Gen}} {
		if p.src == nil {
			continue
		}
		gm, err := newNet(c.dev, p.src)
		if err != nil {
			free()
			return fmt.Errorf("upload network to the GPU: %v", err)
		}
		*p.dst = gm
	}
	m.gpu = g
	m.gpuErr = ""
	return nil
}

// refresh rebuilds the snapshot info() returns; call it with c.mu held after any change.
func (c *client) refresh() {
	var snap map[string]any
	if c.model != nil {
		snap = c.info()
	}
	c.snapMu.Lock()
	c.snap = snap
	c.snapMu.Unlock()
}

// info describes the loaded model for the page.
func (c *client) info() map[string]any {
	m := c.model
	a := m.file.Arch
	var nets, samplers []any
	if m.cpu.Score != nil {
		nets = append(nets, "score")
		samplers = append(samplers, "sde", "ancestral")
	}
	if m.cpu.Control != nil {
		nets = append(nets, "control")
	}
	if m.cpu.Score != nil && m.cpu.Control != nil {
		samplers = append(samplers, "ode")
	}
	if m.cpu.Gen != nil {
		nets = append(nets, "gen")
		samplers = append(samplers, "gen")
	}
	ds, _ := m.file.MetaString("dataset")
	adapter, software, shaderF16 := "", false, false
	if c.dev != nil {
		adapter, software, shaderF16 = c.dev.AdapterInfo(), c.dev.IsSoftware(), c.dev.HasF16()
	}
	mults := make([]any, len(a.Mults))
	for i, v := range a.Mults {
		mults[i] = v
	}
	arch := map[string]any{"kind": a.Kind, "dim": a.Dim, "hidden": a.Hidden, "layers": a.Layers, "fourier": a.Fourier,
		"channels": a.Channels, "height": a.Height, "width": a.Width, "base": a.Base, "mults": mults,
		"resBlocks": a.ResBlocks, "groups": a.Groups, "timeEmb": a.TimeEmb}
	params := model.ParamCount(a)
	info := map[string]any{
		"url":        m.url,
		"bytes":      m.bytes,
		"dataset":    ds,
		"arch":       arch,
		"image":      m.image,
		"params":     params,            // per network
		"flops":      model.RowFLOPs(a), // one row's forward pass (multiply and add counted apart)
		"nets":       nets,
		"samplers":   samplers,
		"beta0":      m.beta0,
		"beta1":      m.beta1,
		"sigmaV":     m.sigmaV,
		"scoreScale": map[bool]string{false: "raw", true: "sigma"}[m.sigmaScaled],
		"adapter":    adapter,
		"software":   software, // a CPU rasteriser: the CPU path is faster (design.md)
		"webgpu":     c.dev != nil,
		"gpuError":   m.gpuErr,
		"precision":  precision(m.gpu),
		"shaderF16":  shaderF16, // the device was granted shader-f16 (no kernel needs it yet)
		"weights":    weightsDType(m.file),
		"maxN":       maxPoints,
		// The CPU path's kernels ("wasm SIMD" or "Go"), and why there are no SIMD ones, if so.
		"cpuKernels": cpuKernels(m),
		"simdError":  errString(simdErr),
	}
	if m.image {
		info["shape"] = []any{a.Channels, a.Height, a.Width}
		info["maxN"] = maxImages
	}
	return info
}

// precision says how the GPU networks hold their weights: "f16 weights, f32 compute" when they
// keep the file's f16 weight matrices (upload), else "f32" (f32 files, no networks on the GPU, and
// the CPU path, which widens f16 on load).
func precision(g shaders.Nets) string {
	for _, n := range []*shaders.GPUNet{g.Score, g.Control, g.Gen} {
		if n != nil && n.Precision() == "f16" {
			return "f16 weights, f32 compute"
		}
	}
	return "f32"
}

// weightsDType is how the file stores its tensors: "f32", "f16" or "f16+f32".
func weightsDType(f *weights.File) string {
	seen := map[string]bool{}
	for _, t := range f.Tensors {
		seen[t.DType] = true
	}
	switch {
	case seen["f16"] && seen["f32"]:
		return "f16+f32"
	case seen["f16"]:
		return "f16"
	}
	return "f32"
}

// float32Array copies v into a new JS Float32Array.
func float32Array(v []float32) js.Value {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	arr := js.Global().Get("Float32Array").New(len(v))
	js.CopyBytesToJS(js.Global().Get("Uint8Array").New(arr.Get("buffer")), b)
	return arr
}

// errString is err's message, "" for nil.
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// jsString is String(v) in JavaScript; Value.Call would panic on a primitive.
func jsString(v js.Value) string { return js.Global().Call("String", v).String() }
