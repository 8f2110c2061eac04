// Package eval is `backend eval`: the quality tables of a model file. For a 2-D model (eval.go):
// sliced W2 to held-out points vs NFE, PF-ODE straightness, the couplings against Sinkhorn's, the
// terminal check and the inversion test. For an image model (evalimg.go: flags and report; nets.go:
// the networks on the CPU or the GPU; images.go: the evaluation itself): FID vs NFE with its noise
// floor, straightness, the stage-2 loss floors and the inversion test (asbm.md §6.3).
package eval

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"asbm/backend/asbm"
	"asbm/backend/cli"
	"asbm/backend/data"
	"asbm/backend/metrics"
	"asbm/backend/modelfile"
	"asbm/backend/sample"
)

// evalNFEs are the step counts of the quality table (issue 2; asbm.md §6.3.4).
var evalNFEs = []int{1, 2, 4, 8, 16, 32, 100}

// evalMethods are the table's rows: ASBM with its three samplers, the distilled generator (NFE 1
// only), and the memoryless baseline with the same three samplers.
var evalMethods = []struct{ name, net, sampler string }{
	{"asbm-sde", "asbm", "sde"},
	{"asbm-ode", "asbm", "ode"},
	{"asbm-ancestral", "asbm", "ancestral"},
	{"distilled", "asbm", "gen"},
	{"baseline-sde", "baseline", "sde"},
	{"baseline-ode", "baseline", "ode"},
	{"baseline-ancestral", "baseline", "ancestral"},
}

// methodNames lists evalMethods' names.
func methodNames() []string {
	var s []string
	for _, me := range evalMethods {
		s = append(s, me.name)
	}
	return s
}

// evalReport is what `backend eval --json` prints.
type evalReport struct {
	Model       string  `json:"model"`
	Dataset     string  `json:"dataset"`
	Points      int     `json:"points"`
	Projections int     `json:"projections"`
	Seed        uint64  `json:"seed"`
	NFE         []int   `json:"nfe"`
	Denoise     bool    `json:"denoise"`   // the SDE and ODE rows end with Tweedie's x0 (sample.Request.Denoise)
	SWDFloor    float64 `json:"swd_floor"` // SWD between two held-out sets of the same size: the noise floor
	// SWD[method][i] is the sliced-Wasserstein-2 distance to held-out data at NFE[i]; null where the
	// method has no such NFE (the distilled generator is one step).
	SWD          map[string][]*float64   `json:"swd"`
	Straightness map[string]pathStats    `json:"straightness"`
	Coupling     map[string]couplingStat `json:"coupling"`
	Inversion    map[string]float64      `json:"inversion,omitempty"`
	Terminal     asbm.TerminalStats      `json:"terminal"`
	Seconds      float64                 `json:"seconds"`
}

// pathStats is the straightness of PF-ODE paths (asbm.md §6.3.5).
type pathStats struct {
	S           float64 `json:"S"`
	LengthRatio float64 `json:"length_ratio"`
	Steps       int     `json:"steps"`
	Points      int     `json:"points"`
}

// couplingStat summarises a data–prior coupling (asbm.md §6.3 items 2 and 7).
type couplingStat struct {
	Dot       float64 `json:"dot"`       // E[x0·x1]
	Transport float64 `json:"transport"` // E‖x0 − x1‖²
	Residual  float64 `json:"residual"`  // E‖x1 − α1 x0‖²
	CrossCov  float64 `json:"cross_cov"` // mean per-coordinate Cov(x0, x1)
}

func Command(args []string, stdout io.Writer) error {
	if isImageModelFile(cli.FlagValue(args, "model")) {
		return runEvalImages(args, stdout) // FID, straightness, inversion: evalimg.go (issue 4)
	}
	fs := cli.NewFlags("eval")
	path := fs.String("model", "", "model file written by `backend train`")
	asJSON := fs.Bool("json", false, "print JSON instead of tables")
	jsonOut := fs.String("json-out", "", "also write the JSON report to this file")
	n := fs.Int("n", 4000, "generated and held-out points per SWD")
	proj := fs.Int("projections", 1000, "random directions of the sliced Wasserstein distance")
	seed := fs.Uint64("seed", 1, "seed of noise, held-out data and projections")
	pathSteps := fs.Int("path-steps", 200, "Heun steps of the straightness trajectories")
	pathPoints := fs.Int("path-points", 500, "trajectories for straightness")
	pairs := fs.Int("pairs", 1500, "points of the coupling, Sinkhorn and inversion tests")
	denoise := fs.Bool("denoise", false, sample.DenoiseUsage)
	if err := cli.ParseFlags(fs, args); err != nil {
		return withImageEvalHelp(err)
	}
	for k, v := range map[string]int{"--n": *n, "--projections": *proj, "--path-steps": *pathSteps, "--path-points": *pathPoints, "--pairs": *pairs} {
		if v < 2 {
			return cli.Usagef("%s must be ≥ 2, got %d", k, v)
		}
	}
	m, err := modelfile.Load(*path)
	if err != nil {
		return err
	}
	if m.Nets[modelfile.Control] == nil || m.Nets[modelfile.Baseline] == nil || m.Nets[modelfile.Gen] == nil {
		return fmt.Errorf("%s lacks a network the table needs (it has %v): train it to the end with `backend train`", *path, cli.SortedKeys(m.Nets))
	}
	if m.Nets[modelfile.Score].Arch.Kind == "unet" { // not reached: Command sends image models to runEvalImages
		return fmt.Errorf("%s is an image model: its flags are those of the image evaluation", *path)
	}
	toy, err := data.Toy(m.Dataset())
	if err != nil {
		return fmt.Errorf("%s: its data set %q: %v", *path, m.Dataset(), err)
	}
	start := time.Now()
	rep, err := evaluate(m, toy, evalOptions{n: *n, proj: *proj, seed: *seed, pathSteps: *pathSteps, pathPoints: *pathPoints, pairs: *pairs, denoise: *denoise})
	if err != nil {
		return err
	}
	rep.Model = *path
	rep.Seconds = time.Since(start).Seconds()
	return writeReport(stdout, rep, *jsonOut, *asJSON, func() { printReport(stdout, rep) })
}

// methodRequest is the sampling sample.Request of one (method, NFE) cell of a quality table, or false for
// a cell the table leaves empty: NFE 1 of ASBM is the distilled generator's row, which has no other.
func methodRequest(net, sampler string, nfe, n int, seed uint64, denoise bool) (sample.Request, bool) {
	if sampler == "gen" && nfe != 1 || sampler != "gen" && net == "asbm" && nfe == 1 {
		return sample.Request{}, false
	}
	if sampler == "gen" {
		sampler = "sde" // sample.Request.method() picks the generator for ASBM at NFE 1
	}
	return sample.Request{Net: net, Sampler: sampler, NFE: nfe, N: n, Seed: seed, Denoise: denoise}, true
}

// lastStep names the samplers' last step for a report's header (sample.Request.Denoise).
func lastStep(denoise bool) string {
	if denoise {
		return "Tweedie's x0 at t = 1/N (--denoise)"
	}
	return "Euler (the paper's; --denoise ends with Tweedie's x0)"
}

// writeReport writes rep as indented JSON to jsonOut when it is set, then to stdout as JSON when
// asJSON, else as the tables printTables draws.
func writeReport(stdout io.Writer, rep any, jsonOut string, asJSON bool, printTables func()) error {
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	js = append(js, '\n')
	if jsonOut != "" {
		if err := os.WriteFile(jsonOut, js, 0o644); err != nil {
			return err
		}
	}
	if asJSON {
		_, err := stdout.Write(js)
		return err
	}
	printTables()
	return nil
}

type evalOptions struct {
	n, proj, pathSteps, pathPoints, pairs int
	seed                                  uint64
	denoise                               bool // sample.Request.Denoise for the SWD table
}

// heldOut draws n data points from their own stream, apart from any training seed.
func heldOut(toy data.Sampler, n int, seed uint64) []float32 {
	x := make([]float32, 2*n)
	toy(rand.New(rand.NewPCG(seed, 0x68656c64)), x)
	return x
}

func evaluate(m *modelfile.File, toy data.Sampler, o evalOptions) (*evalReport, error) {
	d := m.Nets[modelfile.Score].Arch.Dim
	rep := &evalReport{Dataset: m.Dataset(), Points: o.n, Projections: o.proj, Seed: o.seed, NFE: evalNFEs, Denoise: o.denoise,
		SWD: map[string][]*float64{}, Straightness: map[string]pathStats{}, Coupling: map[string]couplingStat{}}
	ref := heldOut(toy, o.n, o.seed)
	rep.SWDFloor = metrics.SlicedW2(ref, heldOut(toy, o.n, o.seed+1), d, o.proj, o.seed)

	// The SWD table: one job per (method, NFE), run on all cores.
	type job struct {
		method string
		i      int
		r      sample.Request
	}
	var jobs []job
	for _, me := range evalMethods {
		rep.SWD[me.name] = make([]*float64, len(evalNFEs))
		for i, nfe := range evalNFEs {
			if r, ok := methodRequest(me.net, me.sampler, nfe, o.n, o.seed, o.denoise); ok {
				jobs = append(jobs, job{me.name, i, r})
			}
		}
	}
	var mu sync.Mutex
	var firstErr error
	parallel(len(jobs), func(k int) {
		j := jobs[k]
		pts, err := sample.CPU(m, j.r, nil)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			firstErr = err
			return
		}
		v := metrics.SlicedW2(pts, ref, d, o.proj, o.seed)
		rep.SWD[j.method][j.i] = &v
	})
	if firstErr != nil {
		return nil, firstErr
	}

	// Straightness of PF-ODE paths, ASBM against the baseline (asbm.md §6.3.5).
	z := asbm.SamplePrior(asbm.NewNoise(o.seed+2), o.pathPoints, d)
	for _, p := range []struct {
		name           string
		score, control asbm.Net
		vp             asbm.VP
	}{{"asbm-ode", m.Net(modelfile.Score), m.Net(modelfile.Control), m.VP}, {"baseline-ode", m.Net(modelfile.Baseline), nil, m.BaseVP}} {
		traj, err := asbm.SampleODETrajectory(p.score, p.control, p.vp, z, o.pathSteps)
		if err != nil {
			return nil, err
		}
		s, ratio := metrics.Straightness(traj, asbm.BackwardGrid(o.pathSteps), d)
		rep.Straightness[p.name] = pathStats{S: s, LengthRatio: ratio, Steps: o.pathSteps, Points: o.pathPoints}
	}

	// Couplings: the learned ASBM one (data encoded by the forward SDE with the control), the
	// memoryless baseline's, the independent one, and the discrete SB plan (asbm.md §6.3 items 2, 7).
	x0 := heldOut(toy, o.pairs, o.seed+3)
	alpha1 := m.VP.Alpha(1)
	stat := func(s metrics.Stats) couplingStat {
		return couplingStat{Dot: s.Dot, Transport: s.Transport, Residual: s.Residual, CrossCov: s.CrossCov}
	}
	x1, err := asbm.Encode(m.Net(modelfile.Control), m.VP, x0, d, 100, asbm.NewNoise(o.seed+4))
	if err != nil {
		return nil, err
	}
	rep.Coupling["asbm"] = stat(metrics.CouplingStats(x0, x1, d, alpha1))
	x1b, err := asbm.Encode(nil, m.BaseVP, x0, d, 100, asbm.NewNoise(o.seed+4))
	if err != nil {
		return nil, err
	}
	rep.Coupling["baseline"] = stat(metrics.CouplingStats(x0, x1b, d, m.BaseVP.Alpha(1)))
	prior := asbm.SamplePrior(asbm.NewNoise(o.seed+5), o.pairs, d)
	rep.Coupling["independent"] = stat(metrics.CouplingStats(x0, prior, d, alpha1))
	plan, err := metrics.SinkhornSB(x0, prior, d, alpha1, m.VP.Sigma2(1), 1, 2000)
	if err != nil {
		return nil, err
	}
	rep.Coupling["sinkhorn"] = couplingStat{Dot: plan.Dot, Transport: plan.Transport, Residual: plan.Residual, CrossCov: plan.CrossCov}
	if rep.Terminal, err = asbm.TerminalCheck(x1, d, asbm.DefaultPrior(), asbm.NewNoise(o.seed+6), nil); err != nil {
		return nil, err
	}

	// Inversion test (asbm.md §6.3.3): encode with the forward SDE, decode with the backward SDE, and
	// count the points that land in the mode they started from. Only 8gaussians has modes.
	if rep.Dataset == "8gaussians" {
		rep.Inversion = map[string]float64{}
		for _, p := range []struct {
			name  string
			x1    []float32
			score asbm.Net
			vp    asbm.VP
		}{{"asbm", x1, m.Net(modelfile.Score), m.VP}, {"baseline", x1b, m.Net(modelfile.Baseline), m.BaseVP}} {
			back, err := asbm.SampleSDE(p.score, p.vp, p.x1, 100, asbm.NewNoise(o.seed+7), nil)
			if err != nil {
				return nil, err
			}
			kept := 0
			for i := 0; i < o.pairs; i++ {
				if data.NearestMode(x0[2*i:2*i+2]) == data.NearestMode(back[2*i:2*i+2]) {
					kept++
				}
			}
			rep.Inversion[p.name] = float64(kept) / float64(o.pairs)
		}
	}
	return rep, nil
}

// parallel runs f(0) … f(n−1) on two workers (this project's machines have 2 cores; more would only
// contend).
func parallel(n int, f func(int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				f(k)
			}
		}()
	}
	for k := 0; k < n; k++ {
		next <- k
	}
	close(next)
	wg.Wait()
}

// tableRow is one row of a metric-vs-NFE table: the method's name, then each value in format, "–"
// where a method has no entry at that NFE.
func tableRow(name string, vals []*float64, format string) []string {
	row := []string{name}
	for _, v := range vals {
		if v == nil {
			row = append(row, "–")
		} else {
			row = append(row, fmt.Sprintf(format, *v))
		}
	}
	return row
}

func printReport(w io.Writer, r *evalReport) {
	fmt.Fprintf(w, "model %s (data set %s): sliced W2 to %d held-out points, %d projections, seed %d\n", r.Model, r.Dataset, r.Points, r.Projections, r.Seed)
	fmt.Fprintf(w, "noise floor (two held-out sets): %.4f; last SDE/ODE step: %s\n\n", r.SWDFloor, lastStep(r.Denoise))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"SWD ↓ / NFE"}
	for _, k := range r.NFE {
		head = append(head, fmt.Sprint(k))
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, me := range evalMethods {
		fmt.Fprintln(tw, strings.Join(tableRow(me.name, r.SWD[me.name], "%.4f"), "\t")+"\t")
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PF-ODE paths\tstraightness S ↓\tlength ratio ↓\t")
	for _, k := range []string{"asbm-ode", "baseline-ode"} {
		p := r.Straightness[k]
		fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t\n", k, p.S, p.LengthRatio)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "coupling\tE[x0·x1]\tE‖x0−x1‖²\tE‖x1−α1x0‖²\tcross-cov\t")
	for _, k := range []string{"asbm", "sinkhorn", "baseline", "independent"} {
		c := r.Coupling[k]
		fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t%.4f\t%.4f\t\n", k, c.Dot, c.Transport, c.Residual, c.CrossCov)
	}
	tw.Flush()
	t := r.Terminal
	fmt.Fprintf(w, "\nterminal marginal of the forward SDE: λmax %.3f (prior samples %.3f), E‖x1‖² error %.1f%%, Var‖x1‖² error %.1f%%, pass %v\n",
		t.LambdaMax, t.LambdaPrior, 100*t.MeanErr, 100*t.VarErr, t.Pass)
	if r.Inversion != nil {
		fmt.Fprintf(w, "inversion test (SDE encode → SDE decode, same mode kept; chance 0.125): asbm %.3f, baseline %.3f\n",
			r.Inversion["asbm"], r.Inversion["baseline"])
	}
	fmt.Fprintf(w, "(%.0f s)\n", r.Seconds)
}
