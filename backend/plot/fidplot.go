package plot

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"asbm/backend/cli"
)

// EvalReport is the part of `backend eval --json`'s image report that the FID plot reads.
type EvalReport struct {
	Model   string                `json:"model"`
	Dataset string                `json:"dataset"`
	N       int                   `json:"n"`
	Seed    uint64                `json:"seed"`
	NFE     []int                 `json:"nfe"`
	Denoise bool                  `json:"denoise"` // the SDE and ODE rows end with Tweedie's x0
	FID     map[string][]*float64 `json:"fid"`
	Floor   struct {
		Mean float64 `json:"mean"`
		SD   float64 `json:"sd"`
	} `json:"fid_floor"`
}

// FIDMethods are the report's rows in table order, with the legend name each gets.
var FIDMethods = []struct{ Key, Label string }{
	{"asbm-sde", "ASBM, backward SDE"},
	{"asbm-ode", "ASBM, PF-ODE"},
	{"asbm-ancestral", "ASBM, ancestral"},
	{"distilled", "ASBM, distilled generator"},
	{"baseline-sde", "baseline, backward SDE"},
	{"baseline-ode", "baseline, PF-ODE"},
	{"baseline-ancestral", "baseline, ancestral"},
}

// Stat is the mean and sample standard deviation of one table entry over the reports that have it.
type Stat struct {
	Mean, SD float64
	N        int // reports with a value
}

// FIDSummary is several eval reports of one model (different seeds) reduced to mean ± SD.
type FIDSummary struct {
	Model, Dataset string
	Denoise        bool     // the reports' --denoise
	N              int      // images per FID
	Seeds          []uint64 // one per report
	NFE            []int
	FID            map[string][]Stat // method → one Stat per NFE (N = 0: no value)
	Floor          Stat              // mean over the reports of each report's floor mean
}

// ReadEvalReports reads `backend eval --json` image reports and checks that they describe the same
// model (by file name: one may name it by a relative path, another by an absolute one), data set, n
// and NFE list (only the seed may differ).
func ReadEvalReports(paths []string) ([]EvalReport, error) {
	if len(paths) == 0 {
		return nil, cli.Usagef("--eval needs one or more JSON reports (backend eval --json-out)")
	}
	var reps []EvalReport
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, cli.Usagef("--eval %s: %v", p, err)
		}
		var r EvalReport
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s is not a JSON report of backend eval: %v", p, err)
		}
		if len(r.NFE) == 0 || len(r.FID) == 0 {
			return nil, fmt.Errorf("%s has no FID table: is it the report of an image model (backend eval --json-out)?", p)
		}
		if len(reps) > 0 {
			f := reps[0]
			if filepath.Base(r.Model) != filepath.Base(f.Model) || r.Dataset != f.Dataset || r.N != f.N || !slices.Equal(r.NFE, f.NFE) || r.Denoise != f.Denoise {
				return nil, fmt.Errorf("%s (%s, %s, n = %d, NFE %v, denoise %v) does not match %s (%s, %s, n = %d, NFE %v, denoise %v): summarise reports of one model, n, NFE list and --denoise",
					p, r.Model, r.Dataset, r.N, r.NFE, r.Denoise, paths[0], f.Model, f.Dataset, f.N, f.NFE, f.Denoise)
			}
		}
		reps = append(reps, r)
	}
	return reps, nil
}

// Summarise reduces reports to mean ± SD per method and NFE.
func Summarise(reps []EvalReport) FIDSummary {
	f := reps[0]
	s := FIDSummary{Model: f.Model, Dataset: f.Dataset, Denoise: f.Denoise, N: f.N, NFE: f.NFE, FID: map[string][]Stat{}}
	var floors []float64
	for _, r := range reps {
		s.Seeds = append(s.Seeds, r.Seed)
		floors = append(floors, r.Floor.Mean)
	}
	s.Floor = meanSD(floors)
	for _, m := range FIDMethods {
		row := make([]Stat, len(f.NFE))
		for i := range f.NFE {
			var v []float64
			for _, r := range reps {
				if vals := r.FID[m.Key]; i < len(vals) && vals[i] != nil {
					v = append(v, *vals[i])
				}
			}
			row[i] = meanSD(v)
		}
		s.FID[m.Key] = row
	}
	return s
}

// meanSD is the mean and sample SD (n − 1; 0 for one value) of v.
func meanSD(v []float64) Stat {
	if len(v) == 0 {
		return Stat{}
	}
	m, sd := stat.MeanStdDev(v, nil)
	if len(v) == 1 {
		sd = 0
	}
	return Stat{Mean: m, SD: sd, N: len(v)}
}

// has reports whether some report has a value for method.
func (s FIDSummary) has(method string) bool {
	return slices.ContainsFunc(s.FID[method], func(st Stat) bool { return st.N > 0 })
}

// WriteTable prints the summary as a Markdown table: "mean ± SD" per entry, "–" where no report has
// a value; a method no report has (the ancestral rows of reports from before it) gets no row.
func (s FIDSummary) WriteTable(w io.Writer) {
	last := "the Euler step (--denoise=false)"
	if s.Denoise {
		last = "Tweedie's x0 (--denoise)"
	}
	fmt.Fprintf(w, "FID ↓ of %s (%s), n = %d per entry, mean ± SD over seeds %v; SDE and ODE end with %s\n\n", s.Model, s.Dataset, s.N, s.Seeds, last)
	fmt.Fprint(w, "| FID ↓ / NFE |")
	for _, n := range s.NFE {
		fmt.Fprintf(w, " %d |", n)
	}
	fmt.Fprint(w, "\n|---|")
	fmt.Fprint(w, strings.Repeat("---|", len(s.NFE)))
	fmt.Fprintln(w)
	for _, m := range FIDMethods {
		if !s.has(m.Key) {
			continue
		}
		fmt.Fprintf(w, "| %s |", m.Label)
		for _, st := range s.FID[m.Key] {
			if st.N == 0 {
				fmt.Fprint(w, " – |")
			} else {
				fmt.Fprintf(w, " %s ± %s |", fmtFID(st.Mean), fmtFID(st.SD))
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\nNoise floor (n real images): %s ± %s\n", fmtFID(s.Floor.Mean), fmtFID(s.Floor.SD))
}

// fmtFID prints three significant digits, at least one decimal.
func fmtFID(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

// fidColours are the methods' colours: ASBM blue shades, the baseline orange ones.
var fidColours = map[string]color.RGBA{
	"asbm-sde":           {R: 30, G: 80, B: 200, A: 255},
	"asbm-ode":           {R: 90, G: 160, B: 240, A: 255},
	"asbm-ancestral":     {R: 40, G: 150, B: 110, A: 255},
	"distilled":          {R: 20, G: 20, B: 120, A: 255},
	"baseline-sde":       {R: 220, G: 110, B: 20, A: 255},
	"baseline-ode":       {R: 240, G: 180, B: 60, A: 255},
	"baseline-ancestral": {R: 180, G: 60, B: 60, A: 255},
}

// WritePNG draws FID against NFE (both axes logarithmic) with one line per method, ±SD error bars
// and the noise floor as a dashed line, and writes it as a PNG of w × h points.
func (s FIDSummary) WritePNG(path string, w, h vg.Length) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("FID vs NFE — %s, n = %d, %d seed(s)", s.Dataset, s.N, len(s.Seeds))
	p.X.Label.Text = "NFE (sampler steps; 1 = the distilled generator)"
	p.Y.Label.Text = "FID (lower is better)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	var ticks []plot.Tick
	for _, n := range s.NFE {
		ticks = append(ticks, plot.Tick{Value: float64(n), Label: strconv.Itoa(n)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Y.Tick.Marker = plot.TickerFunc(logTicks)
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, m := range FIDMethods {
		var pts plotter.XYs
		var errs plotter.YErrors
		for i, st := range s.FID[m.Key] {
			if st.N == 0 || st.Mean <= 0 {
				continue
			}
			pts = append(pts, plotter.XY{X: float64(s.NFE[i]), Y: st.Mean})
			// Error bars stay above zero on the log axis.
			down := min(st.SD, 0.9*st.Mean)
			errs = append(errs, struct{ Low, High float64 }{-down, st.SD})
			lo, hi = min(lo, st.Mean-down), max(hi, st.Mean+st.SD)
		}
		if len(pts) == 0 {
			continue
		}
		c := fidColours[m.Key]
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		line.Color, line.Width = c, vg.Points(1.5)
		switch {
		case strings.HasSuffix(m.Key, "-ode"):
			line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		case strings.HasSuffix(m.Key, "-ancestral"):
			line.Dashes = []vg.Length{vg.Points(1.5), vg.Points(2)}
		}
		points.Color, points.Radius = c, vg.Points(2.5)
		if m.Key == "distilled" {
			points.Shape, points.Radius = draw.PyramidGlyph{}, vg.Points(4)
		}
		bars, err := plotter.NewYErrorBars(struct {
			plotter.XYer
			plotter.YErrorer
		}{pts, errs})
		if err != nil {
			return err
		}
		bars.Color = c
		if len(pts) > 1 {
			p.Add(line)
		}
		p.Add(points, bars)
		p.Legend.Add(m.Label, line, points)
	}
	if s.Floor.Mean > 0 {
		floor, err := plotter.NewLine(plotter.XYs{{X: float64(slices.Min(s.NFE)), Y: s.Floor.Mean}, {X: float64(slices.Max(s.NFE)), Y: s.Floor.Mean}})
		if err != nil {
			return err
		}
		floor.Color, floor.Dashes = color.Gray{Y: 120}, []vg.Length{vg.Points(2), vg.Points(2)}
		p.Add(floor)
		p.Legend.Add("noise floor (real images)", floor)
		lo = min(lo, s.Floor.Mean)
	}
	if math.IsInf(lo, 0) {
		return fmt.Errorf("no FID values to plot")
	}
	p.Y.Min, p.Y.Max = lo/1.3, hi*1.3
	return p.Save(w, h, path)
}

// fidCommand is `backend plot --eval a.json,b.json,…`: FID vs NFE over seeds as a PNG, and the
// mean ± SD table on stdout.
func fidCommand(evalList, out string, stdout io.Writer) error {
	reps, err := ReadEvalReports(strings.Split(evalList, ","))
	if err != nil {
		return err
	}
	s := Summarise(reps)
	if out == "" {
		out = strings.TrimSuffix(strings.Split(evalList, ",")[0], ".json") + "-fid.png"
	}
	if !strings.HasSuffix(strings.ToLower(out), ".png") {
		return cli.Usagef("--out must end in .png, got %q", out)
	}
	if err := s.WritePNG(out, 7*vg.Inch, 4.5*vg.Inch); err != nil {
		return err
	}
	s.WriteTable(stdout)
	fmt.Fprintf(stdout, "\nwrote %s\n", out)
	return nil
}
