package plot

import (
	"math"
	"strconv"
	"testing"
)

// TestLossPlotTicks checks the axis tick helpers against their rules on assorted ranges: integer ticks
// are whole numbers, at most about seven labelled, labelled every 1, 2 or 5 × 10^k; log ticks are
// 1..9 × 10^k inside the range with at least two labelled over one decade.
func TestLossPlotTicks(t *testing.T) {
	for _, r := range [][2]float64{{0, 1}, {0, 4}, {-1, 1}, {5, 19}, {0, 39}, {0, 199}, {0, 999}, {3, 12345}} {
		var labelled []float64
		for _, tk := range integerTicks(r[0], r[1]) {
			if tk.Value != math.Trunc(tk.Value) || tk.Value < r[0] || tk.Value > r[1] {
				t.Errorf("%v: tick %g", r, tk.Value)
			}
			if tk.Label != "" {
				if tk.Label != strconv.Itoa(int(tk.Value)) {
					t.Errorf("%v: tick %g labelled %q", r, tk.Value, tk.Label)
				}
				labelled = append(labelled, tk.Value)
			}
		}
		if len(labelled) < 2 || len(labelled) > 7 {
			t.Errorf("%v: labelled ticks %v", r, labelled)
			continue
		}
		step := labelled[1] - labelled[0]
		mant := step / math.Pow(10, math.Floor(math.Log10(step)))
		if mant != 1 && mant != 2 && mant != 5 {
			t.Errorf("%v: tick step %g", r, step)
		}
	}
	for _, r := range [][2]float64{{0.02, 0.3}, {0.0027, 1.15}, {1e-5, 3}, {0.08, 0.9}} {
		ticks := logTicks(r[0], r[1])
		labels := 0
		for _, tk := range ticks {
			e := math.Floor(math.Log10(tk.Value))
			m := tk.Value / math.Pow(10, e)
			if math.Abs(m-math.Round(m)) > 1e-9 || tk.Value < r[0]*(1-1e-9) || tk.Value > r[1]*(1+1e-9) {
				t.Errorf("%v: log tick %g", r, tk.Value)
			}
			if tk.Label != "" {
				labels++
			}
		}
		if labels < 2 {
			t.Errorf("%v: %d labelled log ticks", r, labels)
		}
	}
}
