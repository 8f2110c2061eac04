package fid

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"asbm/backend/imgdata"
)

// TestNoiseFloorRows runs the noise-floor rows on Gaussian features where the answers are known:
// two halves of one N(0, I) sample are near 0 apart, and training features shifted by δ are
// ‖δ‖² = 9 from the reference (plus an estimation bias of order d²/n ≈ 0.02 at n = 1,000, d = 4).
func TestNoiseFloorRows(t *testing.T) {
	r := rand.New(rand.NewPCG(71, 1))
	const d, nRef, nTrain = 4, 2001, 3000
	ref := make([]float32, nRef*d)
	for i := range ref {
		ref[i] = float32(r.NormFloat64())
	}
	train := make([]float32, nTrain*d)
	for i := range train {
		train[i] = float32(r.NormFloat64())
		if i%d == 0 {
			train[i] += 3
		}
	}
	rows, err := noiseFloor(ref, train, d, "ref", "train", []int{100, 1000}, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		what   string
		na, nb int
		lo, hi float64
	}{
		{"ref half vs the other half", 1000, 1001, 0, 0.1},
		{"100 of ref half vs the other half", 100, 1001, 0, 0.6},
		{"100 of train vs all of ref", 100, 2001, 8, 10},
		{"1000 of train vs all of ref", 1000, 2001, 8.5, 9.5},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		g := rows[i]
		t.Logf("%-36s %4d vs %4d: %.4f ± %.4f", g.What, g.NA, g.NB, g.Mean, g.SD)
		if g.What != w.what || g.NA != w.na || g.NB != w.nb || g.Repeats != 4 {
			t.Errorf("row %d is %q %d vs %d (%d repeats), want %q %d vs %d (4)", i, g.What, g.NA, g.NB, g.Repeats, w.what, w.na, w.nb)
		}
		if g.Mean < w.lo || g.Mean > w.hi || !(g.SD > 0) {
			t.Errorf("%s: %.4f ± %.4f, want a mean in [%g, %g] and SD > 0", g.What, g.Mean, g.SD, w.lo, w.hi)
		}
	}
	for _, bad := range [][]int{{1}, {1001}} {
		if _, err := noiseFloor(ref, train, d, "ref", "train", bad, 1, 1); err == nil {
			t.Errorf("counts %v: no error", bad)
		}
	}
	if _, err := noiseFloor(ref, nil, d, "ref", "", []int{10}, 0, 1); err == nil {
		t.Error("0 repeats: no error")
	}
}

// TestNoiseFloorErrors: bad arguments are refused before any data is loaded.
func TestNoiseFloorErrors(t *testing.T) {
	rc, _ := NewRandConv(DefaultRandConvArch(), 1)
	for _, c := range []struct {
		dataset string
		counts  []int
		repeats int
	}{{"cifar", []int{10}, 1}, {"emoji", []int{10}, 0}, {"emoji", []int{1}, 1}} {
		if _, err := NoiseFloor(rc, c.dataset, c.counts, c.repeats, 1); err == nil {
			t.Errorf("NoiseFloor(%q, %v, %d): no error", c.dataset, c.counts, c.repeats)
		}
	}
	for _, ds := range []string{"cifar", ""} {
		if _, err := ShippedFile(ds); err == nil {
			t.Errorf("ShippedFile(%q): no error", ds)
		}
		if _, err := ReferenceSpec(ds); err == nil {
			t.Errorf("ReferenceSpec(%q): no error", ds)
		}
		if err := TrainAndSave(ds, t.TempDir()+"/x.msgpack", nil); err == nil || !strings.Contains(err.Error(), "unknown data set") {
			t.Errorf("TrainAndSave(%q): error %v", ds, err)
		}
	}
}

// halves splits s at random into two halves and returns the features of the first, of the second,
// of the second after corrupt has changed each of its images, and — for a labelled set — of a
// mode-dropped second half: its images of classes 0–4 only, cycled to the same count.
func halves(t *testing.T, ex Extractor, s *imgdata.Set, r *rand.Rand, corrupt func(img []float32)) (a, b, bc, bdrop []float32) {
	t.Helper()
	dim := s.Dim()
	p := r.Perm(s.N)
	half, nb := s.N/2, s.N-s.N/2
	pa := make([]float32, 0, half*dim)
	pb := make([]float32, 0, nb*dim)
	var low []int // second-half images of classes 0–4
	for k, i := range p {
		if k < half {
			pa = append(pa, s.Image(i)...)
			continue
		}
		pb = append(pb, s.Image(i)...)
		if s.Labels != nil && s.Labels[i] < 5 {
			low = append(low, i)
		}
	}
	feat := func(px []float32, n int) []float32 {
		f, err := ex.Features(px, n)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a, b = feat(pa, half), feat(pb, nb)
	if len(low) > 0 {
		drop := make([]float32, 0, nb*dim)
		for k := range nb {
			drop = append(drop, s.Image(low[k%len(low)])...)
		}
		bdrop = feat(drop, nb)
	}
	for i := range nb {
		corrupt(pb[i*dim : (i+1)*dim])
	}
	return a, b, feat(pb, nb), bdrop
}

// TestShippedFeaturesSeeCorruption checks, on real data with the shipped feature networks, that
// the FID between two random halves of the reference set (the noise floor: 2.09 ± 0.10 for
// MNIST, 0.75 ± 0.08 for Fashion, 0.016 ± 0.002 for emoji over 5 draws) is far below the FID
// after a plainly visible corruption of one half: N(0, 0.4²) pixel noise (measured 16×, 45× and
// 39× the floor) must give at least 5× the floor, and, for the labelled sets, dropping classes
// 5–9 (mode collapse; measured 50× and 200×) at least 10×.
func TestShippedFeaturesSeeCorruption(t *testing.T) {
	for _, tc := range []struct {
		dataset  string
		size     int
		maxFloor float64
	}{{"mnist", 28, 3}, {"fashion", 28, 1.5}, {"emoji", 32, 0.03}} {
		t.Run(tc.dataset, func(t *testing.T) {
			ex, err := Load(shippedPath(t, tc.dataset))
			if err != nil {
				t.Fatal(err)
			}
			spec, _ := ReferenceSpec(tc.dataset)
			s := loadOrSkip(t, spec, tc.size)
			r := rand.New(rand.NewPCG(72, 1))
			d := ex.FeatureDim()
			a, b, bc, bdrop := halves(t, ex, s, r, func(img []float32) {
				for j := range img {
					img[j] += float32(0.4 * r.NormFloat64())
				}
			})
			floor, err := FID(a, b, d)
			if err != nil {
				t.Fatal(err)
			}
			noisy, err := FID(a, bc, d)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: halves %.4f, noisy half %.4f (%.1f×)", tc.dataset, floor, noisy, noisy/floor)
			if floor > tc.maxFloor {
				t.Errorf("FID between random halves %.4f, want ≤ %g", floor, tc.maxFloor)
			}
			if noisy < 5*floor {
				t.Errorf("FID with a noisy half %.4f, want ≥ 5 × the floor %.4f", noisy, floor)
			}
			if bdrop == nil {
				return
			}
			dropped, err := FID(a, bdrop, d)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: classes 0–4 only %.4f (%.1f×)", tc.dataset, dropped, dropped/floor)
			if dropped < 10*floor {
				t.Errorf("FID with classes 5–9 dropped %.4f, want ≥ 10 × the floor %.4f", dropped, floor)
			}
		})
	}
}

// TestScoreMatchesFID: Score against ReferenceStats is the FID between the scored images' features
// and the whole reference split's.
func TestScoreMatchesFID(t *testing.T) {
	ex, err := Load(shippedPath(t, "mnist"))
	if err != nil {
		t.Fatal(err)
	}
	s := loadOrSkip(t, "mnist:test", 28)
	ref, err := ReferenceStats(ex, "mnist")
	if err != nil {
		t.Fatal(err)
	}
	if ref.N != s.N {
		t.Fatalf("reference statistics of %d images, the test split has %d", ref.N, s.N)
	}
	const n = 1000
	imgs := s.Pixels[:n*s.Dim()]
	got, err := Score(ex, ref, imgs, n)
	if err != nil {
		t.Fatal(err)
	}
	fa, _ := ex.Features(imgs, n)
	fall, _ := SetFeatures(ex, s)
	want, err := FID(fa, fall, ex.FeatureDim())
	if err != nil {
		t.Fatal(err)
	}
	// The MNIST test split is ordered (its first 5,000 images come from other writers than the
	// last 5,000), so its first 1,000 score well above the random-draw floor: draw at random.
	t.Logf("first %d test images vs the test split: FID %.4f", n, got)
	if math.Abs(got-want) > 1e-9*want {
		t.Errorf("Score %.10g, FID of the same features %.10g", got, want)
	}
	small, _ := ComputeStats([]float32{1, 2, 3, 4, 5, 7}, 2)
	if _, err := Score(ex, small, imgs, n); err == nil {
		t.Error("Score against statistics of width 2: no error")
	}
	emoji, _ := NewRandConv(DefaultRandConvArch(), 1)
	if _, err := SetFeatures(emoji, s); err == nil {
		t.Error("SetFeatures of 28×28 gray images with the 32×32 colour net: no error")
	}
}
