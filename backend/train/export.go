package train

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"asbm/backend/cli"
	"asbm/backend/cpu"
	"asbm/backend/modelfile"
	"asbm/model"
	"asbm/weights"
)

// exportNets maps a checkpoint's finished networks to the model file's prefixes.
var exportNets = []struct{ key, prefix string }{
	{"s", modelfile.Score}, {"u", modelfile.Control}, {"g", modelfile.Gen}, {"b", modelfile.Baseline},
}

// exportModel builds the model file from a run's finished networks: their EMA parameters (the
// released checkpoints are EMA models, asbm.md §3.2) and the metadata needed to sample them.
func exportModel(st *State, f16 bool) (*weights.File, error) {
	if st.Final["s"] == nil {
		return nil, fmt.Errorf("the run has not finished stage 2 (phase %s): there is no score network to export yet", st.Phase)
	}
	c := st.Config
	f := weights.New(c.Arch)
	for _, n := range exportNets {
		state := st.Final[n.key]
		if state == nil {
			continue
		}
		m, err := cpu.New(c.Arch, c.opt(), 0)
		if err != nil {
			return nil, err
		}
		if err := m.SetState(state); err != nil {
			return nil, fmt.Errorf("network %s: %w", n.prefix, err)
		}
		if err := addNet(f, n.prefix, m.EMAParams(), f16); err != nil {
			return nil, err
		}
	}
	name, _ := DataName(c.Data)
	f.Meta["dataset"] = name
	f.Meta["beta0"] = c.Beta0
	f.Meta["beta1"] = c.Beta1
	f.Meta["baseline_beta1"] = c.BaseB1
	f.Meta["sigma_v"] = c.SigmaV
	if c.sigmaScaled() {
		f.Meta["score_scale"] = "sigma" // score/, baseline/ and gen/ output σ_t·s (model.SampleOptions.SigmaScaled)
	}
	f.Meta["seed"] = int64(c.Seed)
	f.Meta["stage"] = st.Phase
	f.Meta["training"] = strings.Join(st.Log, "\n")
	f.Meta["command"] = "backend train " + trainFlags(c)
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		f.Meta["commit"] = strings.TrimSpace(string(out))
	}
	return f, nil
}

// addNet stores every parameter of m under prefix.
func addNet(f *weights.File, prefix string, m *model.Net, f16 bool) error {
	names, shapes := model.ParamShapes(m.Arch)
	for i, name := range names {
		if f16 {
			if err := f.AddF16(prefix+name, shapes[i], m.Params[name]); err != nil {
				return err
			}
		} else {
			f.AddF32(prefix+name, shapes[i], m.Params[name])
		}
	}
	return nil
}

// trainFlags renders the flags that reproduce a run: every configuration flag with its value.
func trainFlags(c Config) string {
	var parts []string
	fs := cli.NewFlags("train")
	bindTrainFlags(fs, &c)
	// Only the flags of the run's network family: --hidden/--layers mean nothing to a U-Net and the
	// U-Net sizes nothing to an MLP.
	skip := map[string]bool{"base": true, "mults": true, "res-blocks": true, "groups": true, "time-emb": true}
	if c.Arch.Kind == "unet" {
		skip = map[string]bool{"hidden": true, "layers": true}
		parts = append(parts, "--size "+strconv.Itoa(c.Arch.Height))
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !skip[f.Name] {
			parts = append(parts, "--"+f.Name+" "+f.Value.String())
		}
	})
	return strings.Join(parts, " ")
}

// ExportCommand is `backend export`: it writes a model file (f32 or f16) from a run's checkpoint.
func ExportCommand(args []string, stdout io.Writer) error {
	fs := cli.NewFlags("export")
	ckpt := fs.String("ckpt", "", "checkpoint written by `backend train` (runs/<data>/checkpoint.msgpack)")
	out := fs.String("out", "", "model file to write")
	f16 := fs.Bool("f16", false, "store the weights as f16 (half the size)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *ckpt == "" || *out == "" {
		return cli.Usagef("--ckpt and --out are required")
	}
	st, err := LoadState(*ckpt)
	if err != nil {
		return err
	}
	if err := writeModel(st, *f16, *out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%s)\n", *out, st.Phase)
	return nil
}

// writeModel exports a run's finished networks to the model file at path (atomically).
func writeModel(st *State, f16 bool, path string) error {
	f, err := exportModel(st, f16)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return weights.WriteFile(path, f)
}
