//go:build js && wasm

package main

import (
	"errors"
	"fmt"
	"math"
	"syscall/js"
	"time"

	"asbm/model"
	"asbm/shaders"
)

const (
	// frameBudget is how long Go code may keep the page's thread before it yields to the event
	// loop (so the page paints progress and previews, and stays responsive).
	frameBudget = 30 * time.Millisecond
	// cpuChunkFLOPs is the work of one CPU network call on an image model on the plain-Go kernels:
	// about 20–60 ms of Go in WebAssembly, so a 64-image grid of a 47-MFLOP U-Net does not freeze
	// the page for a whole step.
	cpuChunkFLOPs = 20e6
	// simdChunkFLOPs is the same budget on the SIMD kernels (simd.go), which run the U-Nets 20–50×
	// faster than plain Go (site/bench): about 10–40 ms.
	simdChunkFLOPs = 200e6
	// gpuStorageBinding is the device's maxStorageBufferBindingSize: the binding cannot pass
	// requiredLimits in the browser (design.md), so every device has WebGPU's default, 128 MiB.
	gpuStorageBinding = 128 << 20
)

// request is a checked generate() argument.
type request struct {
	nfe, points int
	nSet        bool // points came from the caller (n or points), not the default
	seed        uint64
	sampler     string // "sde", "ode" or "ancestral"; ignored when nfe is 1
	denoise     bool   // model.SampleOptions.Denoise (default false, the paper's samplers)
	device      string // "cpu" runs the CPU path, "gpu" WebGPU, "" either as loaded
	simd        bool   // the CPU path may use the SIMD kernels (false: the plain-Go reference)
	preview     int    // image models: hand the state to the progress callback every preview steps; 0 never
	onProgress  js.Value
}

// parseRequest checks generate's options object; every rejection names the field and the range.
func parseRequest(args []js.Value) (request, error) {
	r := request{nfe: 1, points: 2000, sampler: "sde", onProgress: js.Undefined()}
	o := arg0(args)
	if o.Type() != js.TypeObject {
		return r, errors.New("generate(options): options must be an object like {nfe: 8, seed: 1, sampler: \"sde\", n: 16}")
	}
	intField := func(name string, lo, hi float64, dst *float64) (bool, error) {
		v := o.Get(name)
		if v.Type() == js.TypeUndefined {
			return false, nil
		}
		if v.Type() != js.TypeNumber {
			return false, fmt.Errorf("generate: %s must be a number, got %s", name, v.Type())
		}
		f := v.Float()
		if math.IsNaN(f) || f != math.Trunc(f) || f < lo || f > hi {
			return false, fmt.Errorf("generate: %s must be an integer in [%g, %g], got %v", name, lo, hi, jsString(v))
		}
		*dst = f
		return true, nil
	}
	nfe, points, n, seed, preview := float64(r.nfe), float64(r.points), 0.0, 0.0, 0.0
	if _, err := intField("nfe", 1, maxNFE, &nfe); err != nil {
		return r, err
	}
	pSet, err := intField("points", 1, maxPoints, &points)
	if err != nil {
		return r, err
	}
	nSet, err := intField("n", 1, maxPoints, &n)
	if err != nil {
		return r, err
	}
	if pSet && nSet && n != points {
		return r, fmt.Errorf("generate: n (%v) and points (%v) disagree: give one of them", n, points)
	}
	if nSet {
		points = n
	}
	if _, err := intField("seed", 0, maxSeed, &seed); err != nil {
		return r, err
	}
	if _, err := intField("preview", 0, maxNFE, &preview); err != nil {
		return r, err
	}
	r.nfe, r.points, r.nSet, r.seed, r.preview = int(nfe), int(points), pSet || nSet, uint64(seed), int(preview)
	if v := o.Get("sampler"); v.Type() != js.TypeUndefined {
		if v.Type() != js.TypeString || (v.String() != "sde" && v.String() != "ode" && v.String() != "ancestral") {
			return r, fmt.Errorf(`generate: sampler must be "sde" (backward SDE), "ode" (PF-ODE, Heun) or "ancestral", got %s`, jsString(v))
		}
		r.sampler = v.String()
	}
	if v := o.Get("denoise"); v.Type() != js.TypeUndefined {
		if v.Type() != js.TypeBoolean {
			return r, fmt.Errorf("generate: denoise must be true or false, got %s", jsString(v))
		}
		r.denoise = v.Bool()
	}
	if v := o.Get("onProgress"); v.Type() != js.TypeUndefined && v.Type() != js.TypeNull {
		if v.Type() != js.TypeFunction {
			return r, fmt.Errorf("generate: onProgress must be a function, got %s", v.Type())
		}
		r.onProgress = v
	}
	dev, err := deviceOption(o)
	if err != nil {
		return r, fmt.Errorf("generate: %v", err)
	}
	r.device = dev
	if r.simd, err = simdOption(o); err != nil {
		return r, fmt.Errorf("generate: %v", err)
	}
	return r, nil
}

// pacer hands the page's thread back to the event loop once frameBudget has passed since it last
// did, so a long computation lets the page paint. It is cheap to call often.
type pacer struct{ last time.Time }

func newPacer() *pacer { return &pacer{last: time.Now()} }

func (p *pacer) maybeYield() {
	if time.Since(p.last) >= frameBudget {
		yieldToEventLoop()
		p.last = time.Now()
	}
}

// The yield's MessageChannel and its handler are made once and kept: yields are frequent.
var (
	yieldCh   chan struct{}
	yieldPort js.Value
	yieldFunc js.Func
)

// yieldToEventLoop blocks this goroutine until the event loop has run one task, letting the
// browser render in between. A MessageChannel message, unlike setTimeout(0), is not clamped to
// 4 ms when nested. Only goroutines holding cl.mu call it, one at a time.
func yieldToEventLoop() {
	if yieldCh == nil {
		yieldCh = make(chan struct{}, 1)
		mc := js.Global().Get("MessageChannel")
		if mc.Type() != js.TypeFunction {
			// No MessageChannel (an old runtime): a short sleep also parks every goroutine, which
			// returns control to JavaScript until the timer fires.
			yieldCh = nil
			time.Sleep(time.Millisecond)
			return
		}
		ch := mc.New()
		yieldFunc = js.FuncOf(func(this js.Value, args []js.Value) any {
			select {
			case yieldCh <- struct{}{}:
			default:
			}
			return nil
		})
		ch.Get("port1").Set("onmessage", yieldFunc)
		yieldPort = ch.Get("port2")
	}
	yieldPort.Call("postMessage", 0)
	<-yieldCh
}

// progressFunc returns the callback to report progress to: the request's onProgress, else
// asbm.onProgress (read at each call, so the page may set it at any time).
func progressFunc(req request) func(args ...any) {
	return func(args ...any) {
		cb := req.onProgress
		if cb.Type() != js.TypeFunction && api.Type() == js.TypeObject {
			cb = api.Get("onProgress")
		}
		if cb.Type() != js.TypeFunction {
			return
		}
		// A throwing callback is the page's bug: report it on the console and go on sampling.
		defer func() {
			if r := recover(); r != nil {
				js.Global().Get("console").Call("error", fmt.Sprintf("asbm: onProgress threw: %v", r))
			}
		}()
		cb.Invoke(args...)
	}
}

// generate implements asbm.generate(options).
func generate(args []js.Value) (any, error) {
	req, err := parseRequest(args)
	if err != nil {
		return nil, err
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	m := cl.model
	if m == nil {
		return nil, errors.New("generate: no model loaded: call asbm.load(url) first")
	}
	if m.image {
		if !req.nSet {
			req.points = 1
		}
		if req.points > maxImages {
			return nil, fmt.Errorf("generate: n must be an integer in [1, %d] for an image model, got %d", maxImages, req.points)
		}
	}
	o := model.SampleOptions{Points: req.points, Steps: req.nfe, Method: req.sampler, Seed: req.seed,
		Beta0: m.beta0, Beta1: m.beta1, SigmaV: m.sigmaV, SigmaScaled: m.sigmaScaled, Denoise: req.denoise}
	if req.nfe == 1 {
		o.Method, o.Steps = "gen", 1
		if m.cpu.Gen == nil {
			return nil, errors.New("generate: the loaded file has no distilled generator (gen/): choose NFE ≥ 2")
		}
	} else if m.cpu.Score == nil {
		return nil, errors.New("generate: the loaded file has no score network (score/): only NFE 1 works")
	} else if o.Method == "ode" && m.cpu.Control == nil {
		return nil, errors.New("generate: the PF-ODE needs the control network (control/), which the loaded file lacks: use the SDE")
	}

	useCPU := req.device == "cpu" || (req.device == "" && cl.dev == nil && noWebGPUMessage() != "")
	device := "gpu"
	if useCPU {
		device = "cpu"
	} else if err := cl.ensureGPU(m); err != nil {
		return nil, err
	}
	first := m.runs[device] == 0
	var nets model.Nets // the CPU path's networks, on the SIMD kernels where they run
	kernels := ""
	if useCPU {
		nets, kernels = cpuEvaluators(m, req.simd)
	}
	report := progressFunc(req)
	pace := newPacer()
	// One sampler loop for every model and device (model.Run): chunks that fit the
	// device's storage-binding limit on the GPU, or a time budget on the CPU; a pause after every
	// network call so the page paints; previews of the state for image models.
	a := m.file.Arch
	hooks := model.SampleHooks{Chunk: model.GPUChunk(a, gpuStorageBinding), Pause: pace.maybeYield}
	if useCPU {
		budget := int64(cpuChunkFLOPs)
		if kernels == kernelsSIMD {
			budget = simdChunkFLOPs
		}
		hooks.Chunk = model.CPUChunk(a, budget)
	}
	shape := []any{req.points, a.Channels, a.Height, a.Width}
	if m.image {
		hooks.PreviewEvery = req.preview
	}
	hooks.Progress = func(step, total int, x []float32) error {
		if x != nil {
			report(step, total, map[string]any{"images": float32Array(x), "shape": shape, "step": step})
		} else {
			report(step, total)
		}
		pace.maybeYield()
		return nil
	}
	start := time.Now()
	var out []float32
	adapter := "CPU (Go)"
	if useCPU {
		out, err = model.SampleCPU(nets, o, hooks)
	} else {
		// x stays on the device; it is read back only for previews and at the end.
		out, err = shaders.SampleGPU(cl.dev, m.gpu, o, hooks)
	}
	if err != nil {
		if !useCPU {
			// Most often a lost device: start over on the next call.
			cl.dropDevice()
			return nil, fmt.Errorf("GPU sampling failed (the next Generate starts the GPU afresh): %v", err)
		}
		return nil, err
	}
	ms := float64(time.Since(start).Microseconds()) / 1000
	if !useCPU {
		adapter = cl.dev.AdapterInfo()
	}
	m.runs[device]++
	res := map[string]any{
		"ms":      ms,
		"adapter": adapter,
		"device":  device,
		"first":   first, // the first generate of this model on this device: pipelines, plans and caches are cold
		"method":  o.Method,
		"steps":   o.Steps,
		"seed":    float64(req.seed),
		"n":       req.points,
	}
	if useCPU {
		res["kernels"] = kernels // "wasm SIMD" or "Go"
	}
	if m.image {
		res["images"] = float32Array(out)
		res["shape"] = shape
	} else {
		res["points"] = float32Array(out)
	}
	return res, nil
}

// ensureGPU opens the device and uploads m's networks if that has not been done; its errors say
// whether the GPU or the model is the problem.
func (c *client) ensureGPU(m *loaded) error {
	if err := c.openDevice(); err != nil {
		return err
	}
	if m.gpu != (shaders.Nets{}) {
		return nil
	}
	if err := c.upload(m); err != nil {
		m.gpuErr = err.Error()
		c.refresh()
		return fmt.Errorf("the GPU path cannot run this model (use the CPU path): %v", err)
	}
	c.refresh()
	return nil
}

// warmup implements asbm.warmup({device}): one forward of one row through every network of the
// loaded model on the chosen path, so the first Generate does not pay for compiling the shaders
// (GPU) or for first-touch allocation (CPU). It resolves with {ms, device}.
func warmup(args []js.Value) (any, error) {
	dev, useSIMD := "", true
	if len(args) > 0 && args[0].Type() != js.TypeUndefined && args[0].Type() != js.TypeNull {
		var err error
		if dev, err = deviceOption(args[0]); err != nil {
			return nil, fmt.Errorf("warmup: %v", err)
		}
		if useSIMD, err = simdOption(args[0]); err != nil {
			return nil, fmt.Errorf("warmup: %v", err)
		}
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	m := cl.model
	if m == nil {
		return nil, errors.New("warmup: no model loaded: call asbm.load(url) first")
	}
	useCPU := dev == "cpu" || (dev == "" && cl.dev == nil)
	start := time.Now()
	x := make([]float32, m.file.Arch.Dim)
	t := []float32{0.5}
	if useCPU {
		// On the SIMD kernels this also places the weights in the module's memory.
		nets, _ := cpuEvaluators(m, useSIMD)
		out := make([]float32, len(x))
		for _, n := range []model.Evaluator{nets.Score, nets.Control, nets.Gen} {
			if n != nil {
				n.Eval(t, x, out)
			}
		}
	} else {
		if err := cl.ensureGPU(m); err != nil {
			return nil, err
		}
		for _, n := range []*shaders.GPUNet{m.gpu.Score, m.gpu.Control, m.gpu.Gen} {
			if n == nil {
				continue
			}
			if _, err := n.Forward(t, x); err != nil {
				cl.dropDevice()
				return nil, fmt.Errorf("GPU warm-up failed (the next call starts the GPU afresh): %v", err)
			}
		}
	}
	device := "gpu"
	if useCPU {
		device = "cpu"
	}
	return map[string]any{"ms": float64(time.Since(start).Microseconds()) / 1000, "device": device}, nil
}
