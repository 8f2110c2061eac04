package eval

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"asbm/backend/asbm"
	"asbm/backend/cli"
	"asbm/backend/fid"
	"asbm/backend/imgdata"
	"asbm/backend/modelfile"
)

// `backend eval --consistency T,…` on an image model: the control's and the scores' error along the
// path (issue 13: where does the PF-ODE's error come from?). Each network is compared with the
// expectation of its bridge-matching target under the process it defines itself (asbm.ControlConsistency,
// asbm.ScoreConsistency); anchors x_t are held-out images carried to t by each model's own forward
// process (ASBM: the controlled SDE on its base; baseline: the memoryless base, u ≡ 0, for which the
// control term is exactly consistent and the PF-ODE's only learned term is the score).

// consistencyReport is what `backend eval --consistency` prints.
type consistencyReport struct {
	Model   string `json:"model"`
	Dataset string `json:"dataset"`
	Device  string `json:"device"`
	Seed    uint64 `json:"seed"`
	// Rows[i] holds the measures at Times[i]: "asbm-control", "asbm-score", "baseline-score" (absent
	// where the file lacks the network).
	Times []float64                     `json:"times"`
	Rows  []map[string]consistencyEntry `json:"rows"`
	Notes []string                      `json:"notes,omitempty"`
	// Seconds is the wall time of the whole measure.
	Seconds float64 `json:"seconds"`
}

// consistencyEntry is one network's asbm.ConsistencyStats at one time plus its PF-ODE drift error
// ½g(t)²·√Err2 (the ODE dx/dt = f + ½g²(u − s) scales both networks' errors by ½g², asbm.md §3.3), in
// the units of dx/dt, comparable across the two bases.
type consistencyEntry struct {
	asbm.ConsistencyStats
	Rel      float64 `json:"rel"`
	DriftRMS float64 `json:"ode_drift_rms_error"`
}

// consistencyOptions are the settings of the measure.
type consistencyOptions struct {
	times                   []float64
	anchors, draws, perUnit int
}

// parseTimes parses --consistency: comma-separated times in (0, 1).
func parseTimes(s string) ([]float64, error) {
	var out []float64
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || !(v > 0 && v < 1) {
			return nil, cli.Usagef("--consistency wants comma-separated times between 0 and 1 (exclusive), got %q", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// evaluateConsistency runs the measure on a loaded image model.
func evaluateConsistency(m *modelfile.File, o imgEvalOptions, c consistencyOptions) (*consistencyReport, error) {
	if o.log == nil {
		o.log = io.Discard
	}
	arch := m.Nets[modelfile.Score].Arch
	dim := arch.Dim
	dataset := m.Dataset()
	ref, err := fid.ReferenceSpec(dataset)
	if err != nil {
		return nil, err
	}
	heldSpec, _ := heldOutSpecs(dataset, ref)
	held, err := imgdata.Load(heldSpec, arch.Height)
	if err != nil {
		return nil, err
	}
	rep := &consistencyReport{Dataset: dataset, Device: o.device, Seed: o.seed, Times: c.times}
	if c.anchors > held.N {
		rep.Notes = append(rep.Notes, fmt.Sprintf("--consistency-anchors %d exceeds the %d images of %s: using all", c.anchors, held.N, held.Name))
		c.anchors = held.N
	}
	x0, _, err := heldOutImages(held, arch, c.anchors, o.seed)
	if err != nil {
		return nil, err
	}
	nets, err := openEvalNets(m, o.device)
	if err != nil {
		return nil, err
	}
	defer nets.close()
	if nets.control == nil {
		return nil, fmt.Errorf("%s has no control network: the consistency measure needs ASBM's u_θ", m.Path)
	}
	noise := asbm.NewNoise(o.seed ^ 0x636f6e73)
	// anchorsAt carries x0 to time t with the forward SDE of net (nil: the base) on vp.
	anchorsAt := func(net asbm.Net, vp asbm.VP, t float64) ([]float32, error) {
		x := append([]float32(nil), x0...)
		err := asbm.Evolve(net, vp, x, dim, 0, t, asbm.StepsFor(0, t, c.perUnit), noise)
		return x, err
	}
	entry := func(st asbm.ConsistencyStats, vp asbm.VP) consistencyEntry {
		return consistencyEntry{st, st.Rel(), 0.5 * vp.G2(st.T) * math.Sqrt(math.Max(st.Err2, 0))}
	}
	for _, t := range c.times {
		row := map[string]consistencyEntry{}
		xt, err := anchorsAt(nets.control, m.VP, t)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(o.log, "eval: consistency t = %g: asbm control\n", t)
		st, err := asbm.ControlConsistency(nets.control, m.VP, xt, dim, t, c.draws, c.perUnit, noise)
		if err != nil {
			return nil, err
		}
		row["asbm-control"] = entry(st, m.VP)
		fmt.Fprintf(o.log, "eval: consistency t = %g: asbm score\n", t)
		if st, err = asbm.ScoreConsistency(nets.score, m.VP, xt, dim, t, c.draws, c.perUnit, noise); err != nil {
			return nil, err
		}
		row["asbm-score"] = entry(st, m.VP)
		if nets.baseline != nil {
			bt, err := anchorsAt(nil, m.BaseVP, t)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(o.log, "eval: consistency t = %g: baseline score\n", t)
			if st, err = asbm.ScoreConsistency(nets.baseline, m.BaseVP, bt, dim, t, c.draws, c.perUnit, noise); err != nil {
				return nil, err
			}
			row["baseline-score"] = entry(st, m.BaseVP)
		}
		if err := nets.check(); err != nil {
			return nil, err
		}
		rep.Rows = append(rep.Rows, row)
	}
	if nets.baseline == nil {
		rep.Notes = append(rep.Notes, "the model file has no baseline network")
	}
	return rep, nil
}

// printConsistency prints the measure as a table: per time and network, the RMS error against the
// RMS target, their ratio, and the error in PF-ODE drift units.
func printConsistency(w io.Writer, r *consistencyReport) {
	fmt.Fprintf(w, "%s (%s): self-consistency along the path, device %s, seed %d\n", r.Model, r.Dataset, r.Device, r.Seed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "t\tnetwork\tRMS error\t± (1 SE)\tRMS target\terror / target\tRMS net\t½g²·RMS error (ODE drift)\tanchors × draws\tsteps\t")
	for i, t := range r.Times {
		for _, k := range []string{"asbm-control", "asbm-score", "baseline-score"} {
			e, ok := r.Rows[i][k]
			if !ok {
				continue
			}
			rms := math.Sqrt(math.Max(e.Err2, 0))
			// The SE of √Err2 by the delta method (Err2's SE / 2√Err2); Err2's own SE where √ is near 0.
			se := e.SE
			if rms > 0 {
				se = e.SE / (2 * rms)
			}
			fmt.Fprintf(tw, "%.2f\t%s\t%.4g\t%.2g\t%.4g\t%.3f\t%.4g\t%.4g\t%d × %d\t%d\t\n", t, k, rms, se,
				math.Sqrt(e.Target2), e.Rel, math.Sqrt(e.Net2), e.DriftRMS, e.Anchors, e.Draws, e.Steps)
		}
	}
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	fmt.Fprintf(w, "(%.0f s)\n", r.Seconds)
}

// runConsistency is `backend eval --consistency` after the image flags are parsed and checked.
func runConsistency(f *imgEvalFlags, stdout io.Writer) error {
	c := f.c
	var err error
	if c.times, err = parseTimes(*f.consistency); err != nil {
		return err
	}
	for k, v := range map[string]int{"--consistency-anchors": c.anchors, "--consistency-draws": c.draws, "--consistency-steps": c.perUnit} {
		if v < 2 || v > 100000 {
			return cli.Usagef("%s must be between 2 and 100000, got %d", k, v)
		}
	}
	m, err := modelfile.Load(*f.path)
	if err != nil {
		return err
	}
	m.CPUEngine = f.o.device == "cpu"
	start := time.Now()
	rep, err := evaluateConsistency(m, f.o, c)
	if err != nil {
		return err
	}
	rep.Model = *f.path
	rep.Seconds = time.Since(start).Seconds()
	return writeReport(stdout, rep, *f.jsonOut, *f.asJSON, func() { printConsistency(stdout, rep) })
}
