// Package torchimport is `backend import`: it reads a PyTorch checkpoint (torch.save's zip of a
// pickle and raw tensor storages) and writes the project's model file, so that networks trained in
// PyTorch (torch/, on a cluster) are sampled by `backend sample`, `backend eval` and the browser.
//
// The checkpoint is a dict (torch/unet.py's save_checkpoint writes it):
//
//	{"format": "asbm-torch", "version": 1,
//	 "arch":   {"kind": "unet", "channels": 3, "height": 32, …},   // weights.Arch's msgpack names
//	 "nets":   {"score": state_dict, "control": …, "gen": …, "baseline": …},  // score required
//	 "meta":   {"dataset": "emoji", "beta0": 0.1, "beta1": 4, "baseline_beta1": 20, "sigma_v": 1,
//	            "score_scale": "sigma", …}}
//
// Meta is copied into the model file. "score_scale" "sigma" (torch/asbm_train.py --score-scale sigma)
// says the score-type networks output σ_t·s and is kept; "raw", like its absence, means they output
// the score itself and leaves no key (backend/train's export writes the same).
//
// The state dicts' keys are the Go parameter names (model.ParamShapes: "in.w", "down0.0.gn1.g", …),
// which torch/unet.py's module tree produces. The pickle is read by gopickle's unpickler, which
// builds values and knows only the classes a checkpoint needs (tensors, storages, OrderedDict): any
// other class is an error, and no code from the file is ever run.
package torchimport

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/nlpodyssey/gopickle/pytorch"
	"github.com/nlpodyssey/gopickle/types"

	"asbm/backend/cli"
	"asbm/backend/modelfile"
	"asbm/model"
	"asbm/weights"
)

// Format is the "format" value of a checkpoint this package reads.
const Format = "asbm-torch"

// netPrefixes maps the checkpoint's network names to the model file's prefixes.
var netPrefixes = []struct{ name, prefix string }{
	{"score", modelfile.Score}, {"control", modelfile.Control}, {"gen", modelfile.Gen}, {"baseline", modelfile.Baseline},
}

// Command is `backend import --from model.pt --out weights/x.msgpack [--f16]`.
func Command(args []string, stdout io.Writer) error {
	fs := cli.NewFlags("import")
	from := fs.String("from", "", "PyTorch checkpoint (torch.save of the dict torch/unet.py's save_checkpoint writes)")
	out := fs.String("out", "", "model file to write (e.g. weights/mymodel.msgpack)")
	f16 := fs.Bool("f16", false, "store the weight tensors as f16 (half the size; what the shipped models use)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" || *out == "" {
		return cli.Usagef("--from and --out are required (for example --from run.pt --out weights/mymodel.msgpack)")
	}
	if _, err := os.Stat(*from); err != nil {
		return cli.Usagef("--from %s: %v", *from, err)
	}
	f, err := Read(*from, *f16)
	if err != nil {
		return err
	}
	if err := weights.WriteFile(*out, f); err != nil {
		return err
	}
	var nets []string
	for _, n := range netPrefixes {
		if _, ok := f.Tensor(n.prefix + "out.w"); ok {
			nets = append(nets, n.name)
		}
	}
	scale := ""
	if sc, _ := f.MetaString("score_scale"); sc == "sigma" {
		scale = "; score, baseline and gen output σ_t·s"
	}
	fmt.Fprintf(stdout, "wrote %s (%s, %s networks, %d parameters each%s)\n", *out, f.Arch.Kind, strings.Join(nets, ", "), model.ParamCount(f.Arch), scale)
	return nil
}

// Read loads the checkpoint at path and returns it as a model file (f32, or f16 weights with f16).
func Read(path string, f16 bool) (*weights.File, error) {
	obj, err := pytorch.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%s is not a PyTorch checkpoint this importer reads (torch.save of a dict of tensors): %v", path, err)
	}
	top, ok := asDict(obj)
	if !ok {
		return nil, fmt.Errorf("%s holds a %T, not the dict {format, arch, nets, meta} that torch/unet.py's save_checkpoint writes", path, obj)
	}
	if v, _ := top["format"].(string); v != Format {
		what := fmt.Sprintf("format %q", v)
		if _, ok := top["format"]; !ok {
			what = `no "format" key`
		}
		return nil, fmt.Errorf("%s: %s, want %q: is it a checkpoint of torch/? (a bare state_dict has no arch: save it with torch/unet.py's save_checkpoint)", path, what, Format)
	}
	archD, ok := asDict(top["arch"])
	if !ok {
		return nil, fmt.Errorf("%s: no \"arch\" dict", path)
	}
	arch, err := readArch(archD)
	if err != nil {
		return nil, fmt.Errorf("%s: arch: %w", path, err)
	}
	if err := model.CheckArch(arch); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	netsD, ok := asDict(top["nets"])
	if !ok {
		return nil, fmt.Errorf("%s: no \"nets\" dict (network name → state_dict)", path)
	}
	f := weights.New(arch)
	for name := range netsD {
		if !slices.ContainsFunc(netPrefixes, func(n struct{ name, prefix string }) bool { return n.name == name }) {
			return nil, fmt.Errorf("%s: unknown network %q (want score, control, gen or baseline)", path, name)
		}
	}
	for _, n := range netPrefixes {
		sd, present := netsD[n.name]
		if !present {
			if n.name == "score" {
				return nil, fmt.Errorf("%s has no score network: nothing could sample it", path)
			}
			continue
		}
		if err := addNet(f, arch, n.prefix, sd, f16); err != nil {
			return nil, fmt.Errorf("%s: network %s: %w", path, n.name, err)
		}
	}
	if metaD, ok := asDict(top["meta"]); ok {
		for k, v := range metaD {
			switch v := v.(type) {
			case string, bool, float64:
				f.Meta[k] = v
			case int:
				f.Meta[k] = int64(v)
			}
		}
	}
	if err := scoreScale(f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, k := range []string{"beta0", "beta1", "sigma_v"} {
		if _, ok := f.MetaFloat(k); !ok {
			return nil, fmt.Errorf("%s: meta has no %q: the samplers need the VP base (beta0, beta1, sigma_v; baseline_beta1 for a baseline)", path, k)
		}
	}
	f.Meta["imported_from"] = path
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// scoreScale checks the meta "score_scale" that torch/asbm_train.py writes (its --score-scale) and keeps
// it only as "sigma" — the score, baseline and gen networks output σ_t·s, which the samplers divide by
// σ_t (model.SigmaScaledMeta) — as backend/train's export does: "raw", or no key (a checkpoint from
// before the flag, or one not written by the trainer), is the unscaled networks, marked by no key.
func scoreScale(f *weights.File) error {
	v, present := f.Meta["score_scale"]
	if !present {
		return nil
	}
	if _, ok := v.(string); !ok {
		return fmt.Errorf("meta score_scale is a %T, want \"sigma\" or \"raw\"", v)
	}
	sigma, err := model.SigmaScaledMeta(f)
	if err != nil {
		return err
	}
	if !sigma {
		delete(f.Meta, "score_scale")
	}
	return nil
}

// addNet checks a state dict against the arch's parameters and stores it under prefix. Every
// problem is listed at once: missing tensors, tensors of the wrong shape, and tensors the arch does
// not have (a layer this project's networks lack).
func addNet(f *weights.File, arch weights.Arch, prefix string, sdObj any, f16 bool) error {
	sd, ok := asDict(sdObj)
	if !ok {
		return fmt.Errorf("not a state_dict (a %T)", sdObj)
	}
	names, shapes := model.ParamShapes(arch)
	var missing, misshaped, extra []string
	values := make([][]float32, len(names))
	for i, name := range names {
		v, ok := sd[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		t, ok := v.(*pytorch.Tensor)
		if !ok {
			misshaped = append(misshaped, fmt.Sprintf("%s (a %T, not a tensor)", name, v))
			continue
		}
		if !slices.Equal(t.Size, shapes[i]) {
			misshaped = append(misshaped, fmt.Sprintf("%s %v (want %v)", name, t.Size, shapes[i]))
			continue
		}
		data, err := tensorData(t)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		values[i] = data
	}
	for k := range sd {
		if !slices.Contains(names, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, "missing "+strings.Join(missing, ", "))
	}
	if len(misshaped) > 0 {
		problems = append(problems, "mis-shaped "+strings.Join(misshaped, ", "))
	}
	if len(extra) > 0 {
		problems = append(problems, "not in this arch (an unsupported layer?) "+strings.Join(extra, ", "))
	}
	if len(problems) > 0 {
		return errors.New("the state_dict does not match the arch: " + strings.Join(problems, "; "))
	}
	for i, name := range names {
		if f16 {
			if err := f.AddF16(prefix+name, shapes[i], values[i]); err != nil {
				return err
			}
		} else {
			f.AddF32(prefix+name, shapes[i], values[i])
		}
	}
	return nil
}

// tensorData returns a tensor's values in row-major order as float32, following its strides (a
// transposed or sliced tensor is read correctly). Float64 values are rounded; integer tensors are
// refused.
func tensorData(t *pytorch.Tensor) ([]float32, error) {
	var at func(i int) float32
	var n int
	switch s := t.Source.(type) {
	case *pytorch.FloatStorage:
		at, n = func(i int) float32 { return s.Data[i] }, len(s.Data)
	case *pytorch.HalfStorage:
		at, n = func(i int) float32 { return s.Data[i] }, len(s.Data)
	case *pytorch.BFloat16Storage:
		at, n = func(i int) float32 { return s.Data[i] }, len(s.Data)
	case *pytorch.DoubleStorage:
		at, n = func(i int) float32 { return float32(s.Data[i]) }, len(s.Data)
	default:
		return nil, fmt.Errorf("storage %T is not floating point", t.Source)
	}
	if len(t.Stride) != len(t.Size) {
		return nil, fmt.Errorf("%d strides for %d dimensions", len(t.Stride), len(t.Size))
	}
	count := 1
	for _, s := range t.Size {
		count *= s
	}
	out := make([]float32, count)
	idx := make([]int, len(t.Size))
	for k := range out {
		off := t.StorageOffset
		for d, i := range idx {
			off += i * t.Stride[d]
		}
		if off < 0 || off >= n {
			return nil, fmt.Errorf("element %d lies outside its storage (%d values)", k, n)
		}
		v := at(off)
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("holds NaN or Inf")
		}
		out[k] = v
		for d := len(idx) - 1; d >= 0; d-- {
			if idx[d]++; idx[d] < t.Size[d] {
				break
			}
			idx[d] = 0
		}
	}
	return out, nil
}

// readArch reads weights.Arch from its msgpack names.
func readArch(d map[string]any) (weights.Arch, error) {
	var a weights.Arch
	kind, ok := d["kind"].(string)
	if !ok {
		return a, errors.New(`no "kind" ("mlp" or "unet")`)
	}
	a.Kind = kind
	ints := map[string]*int{"dim": &a.Dim, "hidden": &a.Hidden, "layers": &a.Layers, "fourier": &a.Fourier,
		"channels": &a.Channels, "height": &a.Height, "width": &a.Width, "base": &a.Base,
		"res_blocks": &a.ResBlocks, "groups": &a.Groups, "time_emb": &a.TimeEmb}
	for k, v := range d {
		switch {
		case k == "kind":
		case k == "mults":
			l, ok := asList(v)
			if !ok {
				return a, fmt.Errorf("mults is a %T, want a list of integers", v)
			}
			for _, x := range l {
				i, ok := x.(int)
				if !ok {
					return a, fmt.Errorf("mults holds a %T, want integers", x)
				}
				a.Mults = append(a.Mults, i)
			}
		case ints[k] != nil:
			i, ok := v.(int)
			if !ok {
				return a, fmt.Errorf("%s is a %T, want an integer", k, v)
			}
			*ints[k] = i
		default:
			return a, fmt.Errorf("unknown field %q", k)
		}
	}
	if a.Kind == "unet" && a.Dim == 0 {
		a.Dim = a.Channels * a.Height * a.Width
	}
	return a, nil
}

// asDict returns a pickled dict (or OrderedDict) with string keys as a Go map.
func asDict(v any) (map[string]any, bool) {
	out := map[string]any{}
	switch d := v.(type) {
	case *types.Dict:
		for _, e := range *d {
			k, ok := e.Key.(string)
			if !ok {
				return nil, false
			}
			out[k] = e.Value
		}
	case *types.OrderedDict:
		for e := d.List.Front(); e != nil; e = e.Next() {
			entry := e.Value.(*types.OrderedDictEntry)
			k, ok := entry.Key.(string)
			if !ok {
				return nil, false
			}
			out[k] = entry.Value
		}
	default:
		return nil, false
	}
	return out, true
}

// asList returns a pickled list or tuple as a slice.
func asList(v any) ([]any, bool) {
	switch l := v.(type) {
	case *types.List:
		return *l, true
	case *types.Tuple:
		return *l, true
	}
	return nil, false
}
