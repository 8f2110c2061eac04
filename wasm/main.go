//go:build js && wasm

// Command wasm is the browser client: a small JavaScript API over shaders/ that loads a model file
// and draws samples on the visitor's GPU through WebGPU.
//
//	await asbm.load("/weights/8gaussians.msgpack")   // → info {dataset, arch, nets, adapter, …}
//	await asbm.generate({nfe: 8, seed: 1, sampler: "sde", points: 2000})
//	                                                  // → {points: Float32Array, ms, adapter, …}
//	asbm.onProgress = (step, total) => { … }
//
// nfe 1 runs the distilled one-step generator; nfe 2…100 runs the backward SDE ("sde") or the
// Heun PF-ODE ("ode") with nfe steps (asbm.md §3.3; the shared sampling conventions). The noise
// comes from the same seeded Go PRNG as `backend sample`, so a seed gives the same points here and
// there.
//
// Concurrency: a js.FuncOf callback runs on the JS event loop, and WebGPU readback awaits a
// promise, so blocking inside the callback would deadlock (syscall/js FuncOf docs). Every API call
// therefore returns a Promise at once and does its work in a goroutine; a mutex keeps one load or
// generate on the GPU at a time.
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"syscall/js"
	"time"

	"asbm/shaders"
	"asbm/weights"
)

// The exported functions live in package-level variables so the garbage collector never frees
// them while JavaScript holds them.
var (
	loadFunc     js.Func
	generateFunc js.Func
	infoFunc     js.Func
)

// api is globalThis.asbm.
var api js.Value

// Limits of generate's arguments.
const (
	maxNFE    = 100
	maxPoints = 10000
	maxSeed   = 1<<53 - 1 // the largest integer a JS number holds exactly
)

// model is the loaded file and everything built from it.
type model struct {
	url                  string
	file                 *weights.File
	bytes                int
	beta0, beta1, sigmaV float64
	cpu                  shaders.CPUNets // nil entries: the file lacks that net
	gpu                  shaders.Nets    // built lazily on the current device
}

// client is the state behind the API; mu serialises every call that touches it.
type client struct {
	mu    sync.Mutex
	dev   *shaders.Device
	model *model
}

var cl client

func main() {
	api = js.Global().Get("Object").New()
	loadFunc = js.FuncOf(func(this js.Value, args []js.Value) any {
		return promise(func() (any, error) { return load(args) })
	})
	generateFunc = js.FuncOf(func(this js.Value, args []js.Value) any {
		return promise(func() (any, error) { return generate(args) })
	})
	infoFunc = js.FuncOf(func(this js.Value, args []js.Value) any {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		if cl.model == nil {
			return js.Null()
		}
		return cl.info()
	})
	api.Set("load", loadFunc)
	api.Set("generate", generateFunc)
	api.Set("info", infoFunc)
	api.Set("onProgress", js.Null())
	api.Set("limits", map[string]any{"maxNFE": maxNFE, "maxPoints": maxPoints, "maxSeed": maxSeed})
	js.Global().Set("asbm", api)
	select {} // keep the Go program, and so the API, alive
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
	if cpuOnly {
		cl.setModel(m)
		return cl.info(), nil
	}
	if err := cl.openDevice(); err != nil {
		return nil, err
	}
	if err := cl.upload(m); err != nil {
		cl.dropDevice()
		return nil, err
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
func newModel(url string, f *weights.File, n int) (*model, error) {
	m := &model{url: url, file: f, bytes: n}
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
	for _, p := range []struct {
		prefix string
		dst    **shaders.Net
	}{{"score/", &m.cpu.Score}, {"control/", &m.cpu.Control}, {"gen/", &m.cpu.Gen}} {
		if !hasPrefix(f, p.prefix) {
			continue
		}
		net, err := shaders.NetFromFile(f, p.prefix)
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
func (c *client) setModel(m *model) {
	if old := c.model; old != nil && old != m {
		for _, g := range []*shaders.GPUNet{old.gpu.Score, old.gpu.Control, old.gpu.Gen} {
			if g != nil {
				g.Close()
			}
		}
		old.gpu = shaders.Nets{}
	}
	c.model = m
}

// dropDevice forgets the device and everything on it; the next call starts afresh.
func (c *client) dropDevice() {
	if c.model != nil {
		c.model.gpu = shaders.Nets{}
	}
	if c.dev != nil {
		c.dev.Close()
		c.dev = nil
	}
}

// upload puts m's networks on the current device.
func (c *client) upload(m *model) error {
	var g shaders.Nets
	for _, p := range []struct {
		src *shaders.Net
		dst **shaders.GPUNet
	}{{m.cpu.Score, &g.Score}, {m.cpu.Control, &g.Control}, {m.cpu.Gen, &g.Gen}} {
		if p.src == nil {
			continue
		}
		gm, err := shaders.NewGPUNet(c.dev, p.src)
		if err != nil {
			return fmt.Errorf("upload network to the GPU: %v", err)
		}
		*p.dst = gm
	}
	m.gpu = g
	return nil
}

// info describes the loaded model for the page.
func (c *client) info() map[string]any {
	m := c.model
	a := m.file.Arch
	var nets, samplers []any
	if m.cpu.Score != nil {
		nets = append(nets, "score")
		samplers = append(samplers, "sde")
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
	adapter, software := "", false
	if c.dev != nil {
		adapter, software = c.dev.AdapterInfo(), c.dev.IsSoftware()
	}
	return map[string]any{
		"url":      m.url,
		"bytes":    m.bytes,
		"dataset":  ds,
		"arch":     map[string]any{"kind": a.Kind, "dim": a.Dim, "hidden": a.Hidden, "layers": a.Layers, "fourier": a.Fourier},
		"nets":     nets,
		"samplers": samplers,
		"beta0":    m.beta0,
		"beta1":    m.beta1,
		"sigmaV":   m.sigmaV,
		"adapter":  adapter,
		"software": software, // a CPU rasteriser: the CPU path is faster (design.md)
		"webgpu":   c.dev != nil,
	}
}

// request is a checked generate() argument.
type request struct {
	nfe, points int
	seed        uint64
	sampler     string // "sde" or "ode"; ignored when nfe is 1
	device      string // "cpu" runs the plain-Go twin (reference and fallback), "gpu" WebGPU, "" either as loaded
}

// parseRequest checks generate's options object; every rejection names the field and the range.
func parseRequest(args []js.Value) (request, error) {
	r := request{nfe: 1, points: 2000, sampler: "sde"}
	o := arg0(args)
	if o.Type() != js.TypeObject {
		return r, errors.New("generate(options): options must be an object like {nfe: 8, seed: 1, sampler: \"sde\", points: 2000}")
	}
	intField := func(name string, lo, hi float64, dst *float64) error {
		v := o.Get(name)
		if v.Type() == js.TypeUndefined {
			return nil
		}
		if v.Type() != js.TypeNumber {
			return fmt.Errorf("generate: %s must be a number, got %s", name, v.Type())
		}
		f := v.Float()
		if math.IsNaN(f) || f != math.Trunc(f) || f < lo || f > hi {
			return fmt.Errorf("generate: %s must be an integer in [%g, %g], got %v", name, lo, hi, jsString(v))
		}
		*dst = f
		return nil
	}
	nfe, points, seed := float64(r.nfe), float64(r.points), 0.0
	if err := intField("nfe", 1, maxNFE, &nfe); err != nil {
		return r, err
	}
	if err := intField("points", 1, maxPoints, &points); err != nil {
		return r, err
	}
	if err := intField("seed", 0, maxSeed, &seed); err != nil {
		return r, err
	}
	r.nfe, r.points, r.seed = int(nfe), int(points), uint64(seed)
	if v := o.Get("sampler"); v.Type() != js.TypeUndefined {
		if v.Type() != js.TypeString || (v.String() != "sde" && v.String() != "ode") {
			return r, fmt.Errorf(`generate: sampler must be "sde" (backward SDE) or "ode" (PF-ODE, Heun), got %s`, jsString(v))
		}
		r.sampler = v.String()
	}
	dev, err := deviceOption(o)
	if err != nil {
		return r, fmt.Errorf("generate: %v", err)
	}
	r.device = dev
	return r, nil
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
	o := shaders.SampleOptions{Points: req.points, Steps: req.nfe, Method: req.sampler, Seed: req.seed,
		Beta0: m.beta0, Beta1: m.beta1, SigmaV: m.sigmaV}
	if req.nfe == 1 {
		o.Method, o.Steps = "gen", 1
		if m.cpu.Gen == nil {
			return nil, errors.New("generate: this model has no distilled generator (gen/): choose NFE ≥ 2")
		}
	} else if m.cpu.Score == nil {
		return nil, errors.New("generate: this model has no score network (score/): only NFE 1 works")
	} else if o.Method == "ode" && m.cpu.Control == nil {
		return nil, errors.New("generate: the PF-ODE needs the control network (control/), which this model lacks: use the SDE")
	}

	progress := func(step, total int) {
		if cb := api.Get("onProgress"); cb.Type() == js.TypeFunction {
			cb.Invoke(step, total)
		}
	}
	useCPU := req.device == "cpu" || (req.device == "" && cl.dev == nil && noWebGPUMessage() != "")
	var pts []float32
	adapter := "CPU (Go)"
	start := time.Now()
	if useCPU {
		pts, err = shaders.SampleCPU(m.cpu, o, progress)
	} else {
		if err := cl.openDevice(); err != nil {
			return nil, err
		}
		if m.gpu == (shaders.Nets{}) {
			if err := cl.upload(m); err != nil {
				cl.dropDevice()
				return nil, err
			}
		}
		adapter = cl.dev.AdapterInfo()
		pts, err = shaders.SampleGPU(cl.dev, m.gpu, o, progress)
		if err != nil {
			// Most often a lost device: start over on the next call.
			cl.dropDevice()
			return nil, fmt.Errorf("GPU sampling failed (the next Generate starts the GPU afresh): %v", err)
		}
	}
	if err != nil {
		return nil, err
	}
	ms := float64(time.Since(start).Microseconds()) / 1000
	return map[string]any{
		"points":  float32Array(pts),
		"ms":      ms,
		"adapter": adapter,
		"method":  o.Method,
		"steps":   o.Steps,
		"seed":    float64(req.seed),
	}, nil
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

// jsString is String(v) in JavaScript; Value.Call would panic on a primitive.
func jsString(v js.Value) string { return js.Global().Call("String", v).String() }
