package main

import (
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"asbm/backend/internal/clitest"
	"asbm/backend/plot"
	"asbm/backend/train"
	"asbm/weights"
)

// epochLinesByFields is the test's own reading of train.log's epoch lines, by whitespace fields
// rather than the regexp: "<phase> epoch <n> <kind> loss <x> …" for the four training train.Phases.
func epochLinesByFields(t *testing.T, text string) (lines []string, byKey map[string][][2]float64) {
	t.Helper()
	byKey = map[string][][2]float64{}
	for _, l := range strings.Split(text, "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || f[1] != "epoch" || f[4] != "loss" || !slices.Contains(train.Phases[:4], f[0]) {
			continue
		}
		e, err1 := strconv.Atoi(f[2])
		x, err2 := strconv.ParseFloat(f[5], 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("epoch line %q: %v %v", l, err1, err2)
		}
		lines = append(lines, l)
		byKey[f[0]+"/"+f[3]] = append(byKey[f[0]+"/"+f[3]], [2]float64{float64(e), x})
	}
	return lines, byKey
}

// TestLossPlot trains the tiny model of main_test.go (every phase runs) and checks the loss parser on
// the real train.log, the PNG `backend plot` writes from the checkpoint and from the model file with
// --log, and the error cases.
func TestLossPlot(t *testing.T) {
	dir := t.TempDir()
	modelPath := clitest.TrainTiny(t, dir)
	run := filepath.Join(dir, "run")
	ckpt := filepath.Join(run, train.CheckpointName)
	logBytes, err := os.ReadFile(filepath.Join(run, "train.log"))
	if err != nil {
		t.Fatal(err)
	}
	logText := string(logBytes)
	lines, want := epochLinesByFields(t, logText)
	series, skipped := plot.ParseLossLog(logText)

	t.Run("parser", func(t *testing.T) {
		if skipped != 0 {
			t.Errorf("%d losses skipped as non-finite", skipped)
		}
		var keys []string
		points := 0
		for _, s := range series {
			k := s.Phase + "/" + s.Kind
			keys = append(keys, k)
			points += len(s.Epochs)
			var got [][2]float64
			for i := range s.Epochs {
				got = append(got, [2]float64{float64(s.Epochs[i]), s.Losses[i]})
				if !(s.Losses[i] > 0) || math.IsInf(s.Losses[i], 0) {
					t.Errorf("%s epoch %d: loss %g", k, s.Epochs[i], s.Losses[i])
				}
			}
			if !reflect.DeepEqual(got, want[k]) {
				t.Errorf("%s: parsed %v, the log's fields say %v", k, got, want[k])
			}
		}
		// Every phase of the run is present, in training order, stage 1's AM panel before its CM one.
		wantKeys := []string{"stage1/AM", "stage1/CM", "stage2/BM", "baseline/DSM", "distill/distill"}
		if !slices.Equal(keys, wantKeys) {
			t.Errorf("panels %v, want %v", keys, wantKeys)
		}
		if points != len(lines) {
			t.Errorf("%d points parsed from %d epoch lines", points, len(lines))
		}
		// The last epoch of each phase agrees with the checkpoint's phase summaries ("stage2: 3 epochs
		// × …"): train.go always logs a loop's final (Done) epoch.
		f, err := weights.ReadFile(ckpt)
		if err != nil {
			t.Fatal(err)
		}
		summary, _ := f.MetaString("log")
		last := map[string]int{}
		for _, s := range series {
			last[s.Phase] = max(last[s.Phase], s.Epochs[len(s.Epochs)-1])
		}
		for _, l := range strings.Split(summary, "\n") {
			var n int
			name, rest, _ := strings.Cut(l, ": ")
			if _, err := fmt.Sscanf(rest, "%d epochs", &n); err != nil {
				t.Fatalf("summary line %q: %v", l, err)
			}
			if last[name] != n-1 {
				t.Errorf("%s: last logged epoch %d, the summary says %d epochs", name, last[name], n)
			}
		}
		if len(last) != 4 {
			t.Errorf("phases in the log: %v", last)
		}
	})

	t.Run("reruns", func(t *testing.T) {
		// Logs as train.log holds them after a resume (the epochs since the checkpoint replayed), a
		// --from-phase rerun, and an unfinished rerun of stage 1, built from the run's real lines.
		var firstS2 int
		for i, l := range lines {
			if strings.HasPrefix(l, "stage2 ") {
				firstS2 = i
				break
			}
		}
		if firstS2 < 3 {
			t.Fatalf("only %d stage-1 lines", firstS2)
		}
		join := func(parts ...[]string) string {
			var all []string
			for _, p := range parts {
				all = append(all, p...)
			}
			return strings.Join(all, "\n")
		}
		resumed := join(lines[:3], []string{"resuming run/checkpoint.msgpack at phase stage1"}, lines[1:])
		fromPhase := join(lines, lines[firstS2:])
		for name, text := range map[string]string{"resume replay": resumed, "--from-phase stage2": fromPhase} {
			if got, _ := plot.ParseLossLog(text); !reflect.DeepEqual(got, series) {
				t.Errorf("%s: parsed %v, want the single run's %v", name, got, series)
			}
		}
		restarted, _ := plot.ParseLossLog(join(lines, lines[:2]))
		if want, _ := plot.ParseLossLog(join(lines[:2])); !reflect.DeepEqual(restarted, want) || len(want) == 0 {
			t.Errorf("stage 1 rerun in progress: parsed %v, want %v", restarted, want)
		}
	})

	t.Run("line variants", func(t *testing.T) {
		// Logs from before the epoch time was logged, and captured terminals with progress-bar redraws.
		noTime := regexp.MustCompile(` time [^ ;\n]+`).ReplaceAllString(logText, "")
		bar := strings.ReplaceAll(logText, "stage2 epoch", "stage2 ▕███  ▏ 2/3\rstage2 epoch")
		for name, text := range map[string]string{"no time field": noTime, "progress bar": bar} {
			if got, _ := plot.ParseLossLog(text); !reflect.DeepEqual(got, series) {
				t.Errorf("%s: parsed %v, want %v", name, got, series)
			}
		}
		// A NaN loss (logged before train.go stops) is counted and left out.
		f := strings.Fields(lines[1])
		nan := strings.Replace(logText, lines[1], strings.Replace(lines[1], " loss "+f[5]+" ", " loss NaN ", 1), 1)
		got, n := plot.ParseLossLog(nan)
		total := 0
		for _, s := range got {
			total += len(s.Epochs)
		}
		if n != 1 || total != len(lines)-1 {
			t.Errorf("one NaN line: %d skipped, %d points; want 1 and %d", n, total, len(lines)-1)
		}
		if s, _ := plot.ParseLossLog("engine: cpu\nstage3 epoch 1 AM loss 0.1 steps 1 buffer 1\nstage1 epoch x AM loss 1 steps 1 buffer 1"); len(s) != 0 {
			t.Errorf("unknown lines parsed as %v", s)
		}
	})

	t.Run("png", func(t *testing.T) {
		other := filepath.Join(dir, "other.png")
		for _, c := range []struct {
			args []string
			out  string
		}{
			{[]string{"plot", "--model", ckpt}, filepath.Join(run, "checkpoint-loss.png")},
			{[]string{"plot", "--model", modelPath, "--log", filepath.Join(run, "train.log"), "--out", other}, other},
		} {
			code, stdout, stderr := runCLI(t, c.args...)
			if code != 0 || !strings.Contains(stdout, c.out) {
				t.Fatalf("%v: exit %d, stdout %q, stderr %q", c.args, code, stdout, stderr)
			}
			fh, err := os.Open(c.out)
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(fh)
			fh.Close()
			if err != nil {
				t.Fatal(err)
			}
			// Five panels: three columns, two rows of 450×300 px.
			cols, rows := plot.LossGrid(len(series))
			if b := img.Bounds(); cols != 3 || rows != 2 || b.Dx() != 3*plot.LossPanelW || b.Dy() != 2*plot.LossPanelH {
				t.Fatalf("%v: PNG %v for a %d×%d grid, want 1350×600", c.args, b, cols, rows)
			}
			// Each panel draws its curve in the line colour; the sixth cell stays empty.
			for cell := range 6 {
				r := image.Rect(cell%3*plot.LossPanelW, cell/3*plot.LossPanelH, (cell%3+1)*plot.LossPanelW, (cell/3+1)*plot.LossPanelH)
				blue := 0
				for y := r.Min.Y; y < r.Max.Y; y++ {
					for x := r.Min.X; x < r.Max.X; x++ {
						cr, cg, cb, _ := img.At(x, y).RGBA()
						if cr>>8 < 90 && cg>>8 < 130 && cb>>8 > 170 {
							blue++
						}
					}
				}
				if (cell < 5) != (blue > 50) {
					t.Errorf("%v: cell %d has %d curve-coloured pixels", c.args, cell, blue)
				}
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		garbage := filepath.Join(dir, "garbage.log")
		os.WriteFile(garbage, []byte("engine: cpu\nnot a loss line\n"), 0o644)
		lone := filepath.Join(dir, "lone")
		os.MkdirAll(lone, 0o755)
		b, _ := os.ReadFile(ckpt)
		os.WriteFile(filepath.Join(lone, train.CheckpointName), b, 0o644)
		f, err := weights.ReadFile(modelPath)
		if err != nil {
			t.Fatal(err)
		}
		delete(f.Meta, "training")
		noLog := filepath.Join(dir, "nolog.msgpack")
		if err := weights.WriteFile(noLog, f); err != nil {
			t.Fatal(err)
		}
		notModel := filepath.Join(dir, "bad.msgpack")
		os.WriteFile(notModel, []byte("not a model"), 0o644)
		for _, c := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"plot"}, 2, "--model is required"},
			{[]string{"plot", "--model", filepath.Join(dir, "missing.msgpack")}, 2, "no such file"},
			{[]string{"plot", "--model", notModel}, 1, "weights"},
			{[]string{"plot", "--model", modelPath}, 1, "no per-epoch loss lines"},
			{[]string{"plot", "--model", noLog}, 1, "has no training log"},
			{[]string{"plot", "--model", filepath.Join(lone, train.CheckpointName)}, 1, "no train.log beside it"},
			{[]string{"plot", "--model", modelPath, "--log", garbage}, 1, "no parsable loss lines"},
			{[]string{"plot", "--model", modelPath, "--log", filepath.Join(dir, "none.log")}, 2, "no such file"},
		} {
			code, _, stderr := runCLI(t, c.args...)
			if code != c.code || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("%v: exit %d, stderr %q; want exit %d and one line containing %q", c.args, code, stderr, c.code, c.want)
			}
		}
	})
}
