package plot

import (
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"asbm/backend/cli"
	"asbm/backend/train"
	"asbm/weights"
)

// lossLine matches one epoch line of `backend train`, written in runPhase by
//
//	"%s epoch %d %s loss %.5g steps %d buffer %d time %s%s\n"
//
// (training phase, epoch, what it regressed, loss, steps, replay-buffer rows, epoch time, optional
// "; terminal check: …" note). Logs from before the time field was added lack " time …"; both parse.
var lossLine = regexp.MustCompile(`^(\S+) epoch (\d+) (\S+) loss (\S+) steps \d+ buffer \d+(?: time \S+)?(?:;.*)?$`)

// LossSeries is one panel of the plot: the losses logged for one training phase and one regression.
type LossSeries struct {
	Phase  string    // training phase of train.go: stage1, stage2, baseline or distill
	Kind   string    // what the epoch regressed (asbm.Phase): AM, CM, BM, DSM or distill
	Epochs []int     // epoch indices, increasing
	Losses []float64 // the logged mean step loss of each epoch
}

// title names the panel's loss the way asbm.md does.
func (s LossSeries) title() string {
	switch s.Phase + "/" + s.Kind {
	case "stage1/AM":
		return "stage 1: adjoint matching (AM)"
	case "stage1/CM":
		return "stage 1: corrector matching (CM)"
	case "stage2/BM":
		return "stage 2: bridge matching (BM)"
	case "baseline/DSM":
		return "baseline: denoising score matching"
	case "distill/distill":
		return "distillation"
	}
	return s.Phase + ": " + s.Kind
}

// kindOrder puts stage 1's adjoint-matching panel before its corrector-matching one; other train.Phases
// have one regression each.
var kindOrder = []string{"AM", "CM", "BM", "DSM", "distill"}

// lossPoint is one parsed epoch line.
type lossPoint struct {
	epoch int
	kind  string
	loss  float64
}

// ParseLossLog extracts every phase's (epoch, loss) series from a training log (train.log, a captured
// stderr, or a model file's log metadata). Lines that are not epoch lines of a known phase, and
// non-finite losses (which cannot be drawn; training stops on NaN), are skipped; skipped counts the
// latter.
//
// train.log is appended to by every run in its folder, so it can hold epochs twice: a resume after a
// kill replays the epochs since the last checkpoint, and --from-phase reruns a phase and every later
// one. A phase's epoch counter only grows within one run, so an epoch at or below the phase's last one
// (or a phase line after a later phase's lines) starts a rerun: the rerun's lines replace the earlier
// run's from that epoch on, and the later train.Phases' lines, which the rerun will redo, are dropped.
func ParseLossLog(text string) (series []LossSeries, skipped int) {
	byPhase := make([][]lossPoint, len(train.Phases))
	for _, line := range strings.Split(text, "\n") {
		// A captured terminal may hold progress-bar redraws ending in \r before the line proper.
		if i := strings.LastIndexByte(line, '\r'); i >= 0 {
			line = line[i+1:]
		}
		m := lossLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		p := train.PhaseIndex(m[1])
		if p < 0 || m[1] == "done" {
			continue
		}
		epoch, err := strconv.Atoi(m[2])
		if err != nil {
			continue
		}
		loss, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			continue
		}
		pts := byPhase[p]
		later := false
		for _, q := range byPhase[p+1:] {
			later = later || len(q) > 0
		}
		if later || (len(pts) > 0 && epoch <= pts[len(pts)-1].epoch) {
			byPhase[p] = slices.DeleteFunc(pts, func(x lossPoint) bool { return x.epoch >= epoch })
			clear(byPhase[p+1:])
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			skipped++
			continue
		}
		byPhase[p] = append(byPhase[p], lossPoint{epoch, m[3], loss})
	}
	for p, pts := range byPhase {
		var kinds []string
		for _, x := range pts {
			if !slices.Contains(kinds, x.kind) {
				kinds = append(kinds, x.kind)
			}
		}
		slices.SortStableFunc(kinds, func(a, b string) int { return kindRank(a) - kindRank(b) })
		for _, k := range kinds {
			s := LossSeries{Phase: train.Phases[p], Kind: k}
			for _, x := range pts {
				if x.kind == k {
					s.Epochs = append(s.Epochs, x.epoch)
					s.Losses = append(s.Losses, x.loss)
				}
			}
			series = append(series, s)
		}
	}
	return series, skipped
}

// kindRank orders regressions by kindOrder, unknown ones last.
func kindRank(k string) int {
	if i := slices.Index(kindOrder, k); i >= 0 {
		return i
	}
	return len(kindOrder)
}

// Pixel size of one panel; the PNG is a grid of them (LossGrid).
const LossPanelW, LossPanelH = 450, 300

// LossGrid lays n panels out in columns and rows: one row up to three panels, then rows of two
// (four panels) or three (five: stage 1 AM and CM, stage 2, baseline, distillation).
func LossGrid(n int) (cols, rows int) {
	switch {
	case n <= 3:
		cols = max(n, 1)
	case n == 4:
		cols = 2
	default:
		cols = 3
	}
	return cols, (n + cols - 1) / cols
}

// writeLossPNG draws one panel per series (loss vs epoch, log-scale y when the series spans more than
// a factor 10) titled with the phase and the data set, and writes the grid as a PNG of
// LossPanelW·cols × LossPanelH·rows pixels.
func writeLossPNG(path string, series []LossSeries, dataset string) error {
	if len(series) == 0 {
		return errors.New("no loss series to plot")
	}
	cols, rows := LossGrid(len(series))
	grid := make([][]*plot.Plot, rows)
	for r := range grid {
		grid[r] = make([]*plot.Plot, cols)
	}
	for i, s := range series {
		p, err := lossPanel(s, dataset)
		if err != nil {
			return fmt.Errorf("%s: %w", s.title(), err)
		}
		grid[i/cols][i%cols] = p
	}
	img := image.NewRGBA(image.Rect(0, 0, LossPanelW*cols, LossPanelH*rows))
	c := vgimg.NewWith(vgimg.UseImage(img))
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadTop: 4, PadBottom: 4, PadLeft: 4, PadRight: 8, PadX: 16, PadY: 12}
	canvases := plot.Align(grid, tiles, dc)
	for r := range grid {
		for k, p := range grid[r] {
			if p != nil {
				p.Draw(canvases[r][k])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// lossPanel builds one series' plot.
func lossPanel(s LossSeries, dataset string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = s.title()
	if dataset != "" {
		p.Title.Text += " — " + dataset
	}
	p.X.Label.Text = "epoch"
	p.Y.Label.Text = "loss"
	p.X.Tick.Marker = plot.TickerFunc(integerTicks)
	p.Add(plotter.NewGrid())
	xys := make(plotter.XYs, len(s.Epochs))
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range xys {
		xys[i].X, xys[i].Y = float64(s.Epochs[i]), s.Losses[i]
		lo, hi = min(lo, s.Losses[i]), max(hi, s.Losses[i])
	}
	line, points, err := plotter.NewLinePoints(xys)
	if err != nil {
		return nil, err
	}
	line.Color = color.RGBA{R: 30, G: 80, B: 200, A: 255}
	line.Width = vg.Points(1.5)
	points.Color = line.Color
	points.Radius = vg.Points(2)
	p.Add(line, points)
	if lo > 0 && hi > 10*lo {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.TickerFunc(logTicks)
	} else if lo >= 0 {
		// Losses are mean squares: a linear axis from 0 shows how far they fell.
		p.Y.Min = 0
		if hi == 0 {
			p.Y.Max = 1
		}
	}
	return p, nil
}

// integerTicks marks whole epochs: labelled ticks every 1, 2 or 5 × 10^k epochs (at most about six),
// unlabelled ones between them at whole epochs. plot.DefaultTicks would label fractional epochs
// ("2.50") on short runs.
func integerTicks(lo, hi float64) []plot.Tick {
	step, minor := 1.0, 1.0
	for k := 1.0; step*6 < hi-lo; k *= 10 {
		// Minor ticks split 1 and 5 × 10^k in fifths, 2 × 10^k in halves.
		for _, c := range []struct{ m, parts float64 }{{1, 5}, {2, 2}, {5, 5}} {
			step, minor = c.m*k, max(c.m*k/c.parts, 1)
			if step*6 >= hi-lo {
				break
			}
		}
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/minor) * minor; v <= hi; v += minor {
		t := plot.Tick{Value: v}
		if math.Mod(v, step) == 0 {
			t.Label = strconv.FormatFloat(v, 'f', 0, 64)
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// logTicks labels powers of ten, and also 2× and 5× them when the axis spans under three decades
// (plot.LogTicks labels only powers of ten, which leaves a 0.02–0.3 axis with one label).
func logTicks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= lo {
		return nil
	}
	few := math.Log10(hi/lo) < 3
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for m := 1; m < 10; m++ {
			// m / 10^−e is the float nearest the decimal for e < 0 (0.3, not m·10^e = 0.30000000000000004).
			v := float64(m) * math.Pow(10, e)
			if e < 0 {
				v = float64(m) / math.Pow(10, -e)
			}
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || (few && (m == 2 || m == 5)) {
				t.Label = strconv.FormatFloat(v, 'g', 3, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// trainingLog returns the log text a model file or checkpoint carries, whether the file is a
// checkpoint (a run's "config" metadata; model files have none), and its data set's name.
func trainingLog(f *weights.File) (text string, checkpoint bool, dataset string) {
	if cfgJSON, ok := f.MetaString("config"); ok {
		var c train.Config
		if json.Unmarshal([]byte(cfgJSON), &c) == nil {
			dataset, _ = train.DataName(c.Data)
		}
		text, _ = f.MetaString("log")
		return text, true, dataset
	}
	text, _ = f.MetaString("training")
	dataset, _ = f.MetaString("dataset")
	return text, false, dataset
}

// Command is `backend plot`: a run's loss curves (--model), or FID vs NFE from eval reports (--eval).
func Command(args []string, stdout io.Writer) error {
	fs := cli.NewFlags("plot")
	modelPath := fs.String("model", "", "model file (weights/*.msgpack) or checkpoint (runs/<x>/checkpoint.msgpack) written by backend train: draws its loss curves")
	logPath := fs.String("log", "", "the run's train.log to read the losses from (default: the file's own log, else the train.log beside a checkpoint)")
	evalList := fs.String("eval", "", "instead of --model: comma-separated JSON reports of `backend eval --json-out` for one image model "+
		"(one per seed): draws FID vs NFE with mean ± SD error bars and prints the mean ± SD table")
	out := fs.String("out", "", "PNG to write (default: the --model path with .msgpack replaced by -loss.png, or the first --eval report's with .json replaced by -fid.png)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *evalList != "" {
		if *modelPath != "" || *logPath != "" {
			return cli.Usagef("--eval draws FID reports; it does not take --model or --log")
		}
		return fidCommand(*evalList, *out, stdout)
	}
	if *modelPath == "" {
		return cli.Usagef("--model is required (a model file or runs/<x>/checkpoint.msgpack), or --eval with eval reports")
	}
	if _, err := os.Stat(*modelPath); err != nil {
		return cli.Usagef("model file %s: %v", *modelPath, err)
	}
	f, err := weights.ReadFile(*modelPath)
	if err != nil {
		return err
	}
	text, checkpoint, dataset := trainingLog(f)
	source := *modelPath
	if *logPath != "" {
		b, err := os.ReadFile(*logPath)
		if err != nil {
			return cli.Usagef("--log %s: %v", *logPath, err)
		}
		text, source = string(b), *logPath
	}
	series, skipped := ParseLossLog(text)
	// The epoch lines go to the run folder's train.log; a checkpoint's own log holds one summary line
	// per finished phase. train.log always sits beside the checkpoint.
	if len(series) == 0 && *logPath == "" && checkpoint {
		sibling := filepath.Join(filepath.Dir(*modelPath), "train.log")
		b, err := os.ReadFile(sibling)
		switch {
		case err == nil:
			text, source = string(b), sibling
			series, skipped = ParseLossLog(text)
		case !errors.Is(err, os.ErrNotExist):
			return err
		}
	}
	if len(series) == 0 {
		switch {
		case *logPath != "" || source != *modelPath:
			return fmt.Errorf("%s has no parsable loss lines (want lines like %q as `backend train` writes to the run's train.log)",
				source, "stage1 epoch 3 AM loss 0.020461 steps 16 buffer 1024 time 32.9s")
		case strings.TrimSpace(text) == "" && !checkpoint:
			return fmt.Errorf("%s has no training log (metadata \"training\"): pass the run's --log runs/<data set>/train.log", *modelPath)
		case checkpoint:
			return fmt.Errorf("%s: no loss lines in its log and no train.log beside it: pass --log", *modelPath)
		default:
			// Model files keep only one summary line per phase; the per-epoch losses are in the run's
			// train.log (runs/<data set> unless --run named another folder).
			run := "runs/<data set>"
			if dataset != "" {
				run = filepath.Join("runs", dataset)
			}
			return fmt.Errorf("%s's training log holds no per-epoch loss lines (only the phase summaries): pass --log %s/train.log or --model %s/checkpoint.msgpack",
				*modelPath, run, run)
		}
	}
	path := *out
	if path == "" {
		path = strings.TrimSuffix(*modelPath, ".msgpack") + "-loss.png"
	}
	if err := writeLossPNG(path, series, dataset); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d panels from %s", path, len(series), source)
	if skipped > 0 {
		fmt.Fprintf(stdout, "; %d non-finite losses not drawn", skipped)
	}
	fmt.Fprintln(stdout, ")")
	return nil
}
