package fid

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Stats is the Gaussian fitted to a set of feature vectors: the sample mean and the unbiased
// (n − 1) sample covariance, in float64, as pytorch-fid and clean-fid fit them (np.cov).
type Stats struct {
	// N is the number of feature vectors the statistics were computed from.
	N int
	// Dim is the feature width.
	Dim int
	// Mean has Dim entries.
	Mean []float64
	// Cov is the Dim×Dim covariance, row-major (symmetric).
	Cov []float64
}

// ComputeStats fits the Gaussian of the feature rows in feat (n rows of dim values, row-major).
// It needs dim ≥ 1, len(feat) a multiple of dim, n ≥ 2 rows and finite values.
func ComputeStats(feat []float32, dim int) (*Stats, error) {
	if dim < 1 {
		return nil, fmt.Errorf("fid: feature width %d, want ≥ 1", dim)
	}
	if len(feat)%dim != 0 {
		return nil, fmt.Errorf("fid: %d feature values are not a whole number of rows of width %d", len(feat), dim)
	}
	n := len(feat) / dim
	if n < 2 {
		return nil, fmt.Errorf("fid: %d feature rows, a covariance needs at least 2", n)
	}
	mean := make([]float64, dim)
	for i, v := range feat {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("fid: feature value %d (row %d, column %d) is %v", i, i/dim, i%dim, v)
		}
		mean[i%dim] += float64(v)
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	// Centre in float64 before forming the products, so a large common offset does not cancel
	// catastrophically.
	xc := mat.NewDense(n, dim, nil)
	for i := range n {
		row := xc.RawRowView(i)
		for j := range dim {
			row[j] = float64(feat[i*dim+j]) - mean[j]
		}
	}
	var cov mat.SymDense
	cov.SymOuterK(1/float64(n-1), xc.T())
	c := make([]float64, dim*dim)
	for i := range dim {
		for j := range dim {
			c[i*dim+j] = cov.At(i, j)
		}
	}
	return &Stats{N: n, Dim: dim, Mean: mean, Cov: c}, nil
}

// check reports Stats that FrechetDistance cannot use.
func (s *Stats) check(what string) error {
	if s == nil {
		return fmt.Errorf("fid: %s statistics are nil", what)
	}
	if s.Dim < 1 || len(s.Mean) != s.Dim || len(s.Cov) != s.Dim*s.Dim {
		return fmt.Errorf("fid: %s statistics: width %d with %d mean and %d covariance values", what, s.Dim, len(s.Mean), len(s.Cov))
	}
	for _, v := range s.Mean {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("fid: %s statistics: non-finite mean", what)
		}
	}
	for _, v := range s.Cov {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("fid: %s statistics: non-finite covariance", what)
		}
	}
	return nil
}

// FrechetDistance returns the squared Fréchet (2-Wasserstein) distance between the Gaussians
// N(μa, Σa) and N(μb, Σb):
//
//	‖μa − μb‖² + Tr(Σa) + Tr(Σb) − 2·Tr((Σa^{1/2} Σb Σa^{1/2})^{1/2}).
//
// The matrix square roots come from symmetric eigendecompositions (Σa^{1/2} = V·diag(√λ)·Vᵀ, and
// the trace of the outer root is Σ√λ of the symmetric PSD product), with eigenvalues that
// rounding pushed below zero clamped to zero — the same value as the usual sqrtm(Σa·Σb) of
// pytorch-fid, since Σa·Σb is similar to Σa^{1/2} Σb Σa^{1/2}, without its complex-part
// workaround. A result that rounding made slightly negative (identical inputs) is returned as 0.
func FrechetDistance(a, b *Stats) (float64, error) {
	if err := a.check("first"); err != nil {
		return 0, err
	}
	if err := b.check("second"); err != nil {
		return 0, err
	}
	if a.Dim != b.Dim {
		return 0, fmt.Errorf("fid: feature widths differ (%d and %d)", a.Dim, b.Dim)
	}
	d := a.Dim
	var dist float64
	for j := range d {
		dm := a.Mean[j] - b.Mean[j]
		dist += dm * dm
		dist += a.Cov[j*d+j] + b.Cov[j*d+j]
	}
	sa, err := sqrtSym(symOf(a.Cov, d))
	if err != nil {
		return 0, err
	}
	var t, m mat.Dense
	t.Mul(sa, symOf(b.Cov, d))
	m.Mul(&t, sa)
	vals, err := eigvalsSym(symmetrize(&m, d))
	if err != nil {
		return 0, err
	}
	var tr float64
	for _, v := range vals {
		tr += math.Sqrt(math.Max(v, 0))
	}
	dist -= 2 * tr
	return math.Max(dist, 0), nil
}

// FID returns the Fréchet distance between Gaussians fitted (ComputeStats) to two sets of feature
// rows of width dim. Each set needs at least 2 rows; the counts may differ.
func FID(featA, featB []float32, dim int) (float64, error) {
	a, err := ComputeStats(featA, dim)
	if err != nil {
		return 0, fmt.Errorf("first set: %w", err)
	}
	b, err := ComputeStats(featB, dim)
	if err != nil {
		return 0, fmt.Errorf("second set: %w", err)
	}
	return FrechetDistance(a, b)
}

// symOf wraps a row-major d×d symmetric matrix, averaging the two triangles so that a slightly
// asymmetric input (rounding) is read consistently.
func symOf(c []float64, d int) *mat.SymDense {
	s := mat.NewSymDense(d, nil)
	for i := range d {
		for j := i; j < d; j++ {
			s.SetSym(i, j, 0.5*(c[i*d+j]+c[j*d+i]))
		}
	}
	return s
}

// symmetrize returns (m + mᵀ)/2 as a SymDense.
func symmetrize(m *mat.Dense, d int) *mat.SymDense {
	s := mat.NewSymDense(d, nil)
	for i := range d {
		for j := i; j < d; j++ {
			s.SetSym(i, j, 0.5*(m.At(i, j)+m.At(j, i)))
		}
	}
	return s
}

// eigvalsSym returns the eigenvalues of the symmetric matrix s.
func eigvalsSym(s *mat.SymDense) ([]float64, error) {
	var e mat.EigenSym
	if !e.Factorize(s, false) {
		return nil, errors.New("fid: symmetric eigendecomposition did not converge")
	}
	return e.Values(nil), nil
}

// sqrtSym returns the symmetric PSD square root V·diag(√max(λ, 0))·Vᵀ of the symmetric matrix s.
func sqrtSym(s *mat.SymDense) (*mat.Dense, error) {
	var e mat.EigenSym
	if !e.Factorize(s, true) {
		return nil, errors.New("fid: symmetric eigendecomposition did not converge")
	}
	vals := e.Values(nil)
	var v mat.Dense
	e.VectorsTo(&v)
	d := len(vals)
	// (V·diag(√λ))·Vᵀ, scaling V's columns first.
	vs := mat.DenseCopyOf(&v)
	for j, l := range vals {
		r := math.Sqrt(math.Max(l, 0))
		for i := range d {
			vs.Set(i, j, vs.At(i, j)*r)
		}
	}
	var out mat.Dense
	out.Mul(vs, v.T())
	return &out, nil
}
