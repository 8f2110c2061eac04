package plot

import (
	"bytes"
	"encoding/json"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFIDSummary writes three reports with random FIDs and checks the mean ± SD per entry against a
// direct computation, the table's text, the PNG, and the refusal of reports of another n.
func TestFIDSummary(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(rand.Uint64(), 1))
	nfe := []int{1, 2, 4}
	var paths []string
	vals := map[string][][]float64{} // method → NFE index → per-report values
	for k := 0; k < 3; k++ {
		rep := EvalReport{Model: "m.msgpack", Dataset: "mnist", N: 100, Seed: uint64(k + 1), NFE: nfe, FID: map[string][]*float64{}}
		rep.Floor.Mean = 10 + r.Float64()
		for _, m := range FIDMethods {
			if m.Key == "baseline-ancestral" {
				continue // a report from before the row existed: the table must leave it out
			}
			row := make([]*float64, len(nfe))
			for i := range nfe {
				if m.Key == "distilled" && i > 0 || m.Key == "asbm-sde" && i == 0 {
					continue // the eval's nulls
				}
				v := 20 + 100*r.Float64()
				row[i] = &v
				if vals[m.Key] == nil {
					vals[m.Key] = make([][]float64, len(nfe))
				}
				vals[m.Key][i] = append(vals[m.Key][i], v)
			}
			rep.FID[m.Key] = row
		}
		b, _ := json.Marshal(rep)
		p := filepath.Join(dir, "e"+string(rune('1'+k))+".json")
		os.WriteFile(p, b, 0o644)
		paths = append(paths, p)
	}
	reps, err := ReadEvalReports(paths)
	if err != nil {
		t.Fatal(err)
	}
	s := Summarise(reps)
	for m, rows := range vals {
		for i, v := range rows {
			st := s.FID[m][i]
			if len(v) == 0 {
				if st.N != 0 {
					t.Errorf("%s NFE %d: %d values, want none", m, nfe[i], st.N)
				}
				continue
			}
			mean := (v[0] + v[1] + v[2]) / 3
			sd := math.Sqrt(((v[0]-mean)*(v[0]-mean) + (v[1]-mean)*(v[1]-mean) + (v[2]-mean)*(v[2]-mean)) / 2)
			if st.N != 3 || math.Abs(st.Mean-mean) > 1e-9 || math.Abs(st.SD-sd) > 1e-9 {
				t.Errorf("%s NFE %d: %+v, want mean %g SD %g", m, nfe[i], st, mean, sd)
			}
		}
	}
	var out bytes.Buffer
	pngPath := filepath.Join(dir, "fid.png")
	if err := fidCommand(strings.Join(paths, ","), pngPath, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| ASBM, distilled generator | "+fmtFID(s.FID["distilled"][0].Mean)+" ± ") ||
		!strings.Contains(out.String(), "| ASBM, backward SDE | – |") || !strings.Contains(out.String(), "| ASBM, ancestral | ") ||
		strings.Contains(out.String(), "baseline, ancestral") {
		t.Errorf("table:\n%s", out.String())
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if img, err := png.Decode(f); err != nil || img.Bounds().Dx() < 300 {
		t.Errorf("PNG: %v", err)
	}
	other := EvalReport{Model: "m.msgpack", Dataset: "mnist", N: 200, NFE: nfe, FID: map[string][]*float64{"asbm-sde": {nil, nil, nil}}}
	b, _ := json.Marshal(other)
	bad := filepath.Join(dir, "other.json")
	os.WriteFile(bad, b, 0o644)
	if _, err := ReadEvalReports([]string{paths[0], bad}); err == nil || !strings.Contains(err.Error(), "n = 200") {
		t.Errorf("reports of another n: %v", err)
	}
	other.N, other.Denoise = 100, true
	b, _ = json.Marshal(other)
	os.WriteFile(bad, b, 0o644)
	if _, err := ReadEvalReports([]string{paths[0], bad}); err == nil || !strings.Contains(err.Error(), "denoise true") {
		t.Errorf("reports with and without the denoising step: %v", err)
	}
}
