package backendtest

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// tol is the tolerance of one comparison: got agrees with want when |got-want| <= atol +
// rtol*|want|, or, with bits, when both have the same bit pattern (data movement must not touch
// NaN payloads, the sign of zero or subnormals).
//
// NaN and ±Inf must agree whatever the tolerance: a NaN wants a NaN, an infinity the same
// infinity, and a finite want a finite got.
type tol struct {
	atol, rtol float64
	bits       bool
}

var (
	// bitExact is for data movement: Upload, Download, Copy, Gather, the KV-cache write.
	bitExact = tol{bits: true}
	// exact is for kernels whose every output is one correctly rounded IEEE operation on the
	// same inputs (a+b), so every backend must get the same float: ±0 compare equal.
	exact = tol{}
)

// within reports whether got agrees with want under tl.
func within(want, got float32, tl tol) bool {
	if tl.bits {
		return math.Float32bits(want) == math.Float32bits(got)
	}
	w, g := float64(want), float64(got)
	switch {
	case math.IsNaN(w):
		return math.IsNaN(g)
	case math.IsInf(w, 0):
		return g == w
	case math.IsNaN(g) || math.IsInf(g, 0):
		return false
	}
	return math.Abs(g-w) <= tl.atol+tl.rtol*math.Abs(w)
}

// comparison compares a tensor with its expected values under a tolerance, in runs of elements
// (chunks of a large tensor), and keeps what a failure message needs.
type comparison struct {
	shape []int
	tl    tol
	n     int      // elements compared
	bad   int      // elements that disagree
	first []string // the first disagreements
	// worst is the largest |got-want| / (atol + rtol*|want|) over the finite elements that
	// agree: how much of the tolerance was used.
	worst float64
}

func newComparison(shape []int, tl tol) *comparison { return &comparison{shape: shape, tl: tl} }

// add compares got with want; off is the flat index of their first element in the tensor.
func (c *comparison) add(off int, want, got []float32) {
	if len(want) != len(got) {
		panic(fmt.Sprintf("backendtest: comparing %d elements with %d", len(got), len(want)))
	}
	c.n += len(want)
	for i := range want {
		if !within(want[i], got[i], c.tl) {
			c.bad++
			if len(c.first) < 6 {
				c.first = append(c.first, fmt.Sprintf("%s: got %v, want %v (diff %.3g)",
					index(c.shape, off+i), got[i], want[i], float64(got[i])-float64(want[i])))
			}
			continue
		}
		w, g := float64(want[i]), float64(got[i])
		if c.tl.bits || math.IsNaN(w) || math.IsInf(w, 0) {
			continue
		}
		if d := math.Abs(g - w); d > 0 {
			c.worst = max(c.worst, d/(c.tl.atol+c.tl.rtol*math.Abs(w)))
		}
	}
}

// report fails t if any element disagreed; what says what was compared.
func (c *comparison) report(t testing.TB, what string) {
	t.Helper()
	if c.bad == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %v: %d of %d elements (%s):", what, c.shape, c.bad, c.n, c.tl)
	for _, m := range c.first {
		b.WriteString("\n\t" + m)
	}
	if c.bad > len(c.first) {
		b.WriteString("\n\t...")
	}
	t.Error(b.String())
}

// report compares got with want under tl and fails t with the first disagreements, if any.
func report(t testing.TB, what string, shape []int, want, got []float32, tl tol) {
	t.Helper()
	c := newComparison(shape, tl)
	c.add(0, want, got)
	c.report(t, what)
}

func (tl tol) String() string {
	if tl.bits {
		return "bit-exact"
	}
	return fmt.Sprintf("atol %.3g, rtol %.3g", tl.atol, tl.rtol)
}

// index formats the flat index i of a row-major tensor of the given shape as [i0,i1,...].
func index(shape []int, i int) string {
	idx := make([]string, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		n := max(shape[d], 1)
		idx[d] = fmt.Sprint(i % n)
		i /= n
	}
	return "[" + strings.Join(idx, ",") + "]"
}
