package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// matmulShape is one (N, C, OC) case of the matmul tests.
type matmulShape struct{ N, C, OC int }

func (s matmulShape) String() string { return fmt.Sprintf("n=%d/c=%d/oc=%d", s.N, s.C, s.OC) }

// matmulTestShapes returns every combination of the odd sizes, then shapes that cross the GEMM
// block sizes, the small-N forward path's limit, and GPT-2 124M layers (not with -short).
func matmulTestShapes() []matmulShape {
	var shapes []matmulShape
	odd := []int{1, 3, 17, 33, 65}
	for _, n := range odd {
		for _, c := range odd {
			for _, oc := range odd {
				shapes = append(shapes, matmulShape{n, c, oc})
			}
		}
	}
	shapes = append(shapes, matmulShape{9, 100, 57}, matmulShape{4, 31, 1001}, matmulShape{300, 40, 50},
		matmulShape{64, 128, 1100}, matmulShape{3, 256, 2000}, matmulShape{600, 24, 9})
	if testing.Short() {
		return shapes
	}
	return append(shapes,
		matmulShape{8, 768, 2304},
		matmulShape{5, 768, 769},
		matmulShape{257, 513, 97},
		matmulShape{64, 3072, 768},
		matmulShape{300, 40, 1000},
		matmulShape{1, 768, 50257},
		matmulShape{2, 3072, 777},
	)
}

const matmulSentinel = -12345.5

// guarded returns a slice of n random values in [-1, 1) surrounded by 16 sentinels on each side,
// and the whole allocation for checkGuards.
func guarded(rng *rand.Rand, n int) (s, all []float32) {
	all = make([]float32, n+32)
	for i := range all {
		all[i] = matmulSentinel
	}
	s = all[16 : 16+n : 16+n]
	for i := range s {
		s[i] = 2*rng.Float32() - 1
	}
	return s, all
}

// randSlice returns n random values in [-1, 1).
func randSlice(rng *rand.Rand, n int) []float32 { return randScaled(rng, n, 1) }

// randScaled returns n random values in [-1, 1)/sqrt(k). The tests scale one operand of each
// product so, as the weights of a trained network are: each output of a sum over k products is
// then O(1) whatever k is, and so are its partial sums, whose float32 rounding is the difference
// between summation orders.
func randScaled(rng *rand.Rand, n, k int) []float32 {
	scale := 1 / float32(math.Sqrt(float64(max(k, 1))))
	s := make([]float32, n)
	for i := range s {
		s[i] = (2*rng.Float32() - 1) * scale
	}
	return s
}

// checkClose reports the first elements where got and want differ by more than
// 1e-5·(1+|want|), or disagree on NaN, and any sentinel of all that changed. The tolerance covers
// the different float32 summation orders of the naive and fast kernels for sums of up to ~50000
// products of O(1) partial sums (see randScaled); with unscaled data the naive loop's own error
// grows as sqrt(k)·|partial sums|.
func checkClose(t *testing.T, name string, got, want, all []float32) {
	t.Helper()
	bad := 0
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(g) != math.IsNaN(w) || math.Abs(g-w) > 1e-5*(1+math.Abs(w)) {
			if bad < 5 {
				t.Errorf("%s[%d] = %v, want %v (diff %.3g)", name, i, g, w, g-w)
			}
			bad++
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d of %d elements differ", name, bad, len(want))
	}
	for i := range 16 {
		if all[i] != matmulSentinel || all[len(all)-1-i] != matmulSentinel {
			t.Errorf("%s: sentinel around the output overwritten", name)
			break
		}
	}
}

func TestMatmulForward(t *testing.T) {
	for _, ks := range matmulKernelSets() {
		for _, s := range matmulTestShapes() {
			for _, withBias := range []bool{true, false} {
				t.Run(fmt.Sprintf("kernels=%s/%v/bias=%v", ks.name, s, withBias), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(s.N), uint64(s.C*100000+s.OC)))
					inp, weight := randSlice(rng, s.N*s.C), randScaled(rng, s.OC*s.C, s.C)
					var bias []float32
					if withBias {
						bias = randSlice(rng, s.OC)
					}
					want := make([]float32, s.N*s.OC)
					matmulForwardNaive(want, inp, weight, bias, s.N, s.C, s.OC)
					out, all := guarded(rng, s.N*s.OC) // random: forward must overwrite
					matmulForwardWith(&ks, out, inp, weight, bias, s.N, s.C, s.OC)
					checkClose(t, "out", out, want, all)
				})
			}
		}
	}
}

func TestMatmulBackwardInput(t *testing.T) {
	for _, ks := range matmulKernelSets() {
		for _, s := range matmulTestShapes() {
			t.Run(fmt.Sprintf("kernels=%s/%v", ks.name, s), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(s.N), uint64(s.C*100000+s.OC)))
				dout, weight := randScaled(rng, s.N*s.OC, s.OC), randSlice(rng, s.OC*s.C)
				dinp, all := guarded(rng, s.N*s.C) // non-zero: the kernel adds to it
				want := append([]float32(nil), dinp...)
				matmulBackwardInputNaive(want, dout, weight, s.N, s.C, s.OC)
				matmulBackwardInputWith(&ks, dinp, dout, weight, s.N, s.C, s.OC)
				checkClose(t, "dinp", dinp, want, all)
			})
		}
	}
}

func TestMatmulBackwardWeight(t *testing.T) {
	for _, ks := range matmulKernelSets() {
		for _, s := range matmulTestShapes() {
			for _, withBias := range []bool{true, false} {
				t.Run(fmt.Sprintf("kernels=%s/%v/dbias=%v", ks.name, s, withBias), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(s.N), uint64(s.C*100000+s.OC)))
					dout, inp := randScaled(rng, s.N*s.OC, s.N), randSlice(rng, s.N*s.C)
					dweight, allW := guarded(rng, s.OC*s.C)
					wantW := append([]float32(nil), dweight...)
					var dbias, allB, wantB []float32
					if withBias {
						dbias, allB = guarded(rng, s.OC)
						wantB = append([]float32(nil), dbias...)
					}
					matmulBackwardWeightNaive(wantW, wantB, dout, inp, s.N, s.C, s.OC)
					matmulBackwardWeightWith(&ks, dweight, dbias, dout, inp, s.N, s.C, s.OC)
					checkClose(t, "dweight", dweight, wantW, allW)
					if withBias {
						checkClose(t, "dbias", dbias, wantB, allB)
					}
				})
			}
		}
	}
}

// TestMatmulDeterministic checks that the fast kernels give bit-identical results whatever
// GOMAXPROCS is: the split over workers never changes the order in which an output is summed.
func TestMatmulDeterministic(t *testing.T) {
	s := matmulShape{N: 64, C: 300, OC: 1100}
	rng := rand.New(rand.NewPCG(3, 4))
	inp, weight, bias := randSlice(rng, s.N*s.C), randScaled(rng, s.OC*s.C, s.C), randSlice(rng, s.OC)
	dout := randScaled(rng, s.N*s.OC, s.OC)
	run := func(procs int) [][]float32 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		out := make([]float32, s.N*s.OC)
		out1 := make([]float32, 3*s.OC)
		dinp := make([]float32, s.N*s.C)
		dweight, dbias := make([]float32, s.OC*s.C), make([]float32, s.OC)
		matmulForward(out, inp, weight, bias, s.N, s.C, s.OC)
		matmulForward(out1, inp, weight, bias, 3, s.C, s.OC)
		matmulBackwardInput(dinp, dout, weight, s.N, s.C, s.OC)
		matmulBackwardWeight(dweight, dbias, dout, inp, s.N, s.C, s.OC)
		return [][]float32{out, out1, dinp, dweight, dbias}
	}
	one, four := run(1), run(4)
	for i, name := range []string{"out", "out(N=3)", "dinp", "dweight", "dbias"} {
		for j := range one[i] {
			if math.Float32bits(one[i][j]) != math.Float32bits(four[i][j]) {
				t.Errorf("%s[%d]: %v with GOMAXPROCS=1, %v with 4", name, j, one[i][j], four[i][j])
				break
			}
		}
	}
}

// TestMatmulEmpty checks that zero-sized shapes write nothing outside their (empty) outputs and
// that C=0 sets the forward output to the bias.
func TestMatmulEmpty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, ks := range matmulKernelSets() {
		t.Run("kernels="+ks.name, func(t *testing.T) {
			out, all := guarded(rng, 3*5)
			bias := randSlice(rng, 5)
			matmulForwardWith(&ks, out, nil, nil, bias, 3, 0, 5)
			want := make([]float32, 3*5)
			matmulForwardNaive(want, nil, nil, bias, 3, 0, 5)
			checkClose(t, "out", out, want, all)
			for _, s := range []matmulShape{{0, 4, 5}, {3, 0, 5}, {3, 4, 0}} {
				dinp, allX := guarded(rng, s.N*s.C)
				wantX := append([]float32(nil), dinp...)
				dweight, allW := guarded(rng, s.OC*s.C)
				wantW := append([]float32(nil), dweight...)
				dbias, allB := guarded(rng, s.OC)
				wantB := append([]float32(nil), dbias...)
				dout, inp, w := randSlice(rng, s.N*s.OC), randSlice(rng, s.N*s.C), randSlice(rng, s.OC*s.C)
				matmulBackwardInputNaive(wantX, dout, w, s.N, s.C, s.OC)
				matmulBackwardWeightNaive(wantW, wantB, dout, inp, s.N, s.C, s.OC)
				matmulBackwardInputWith(&ks, dinp, dout, w, s.N, s.C, s.OC)
				matmulBackwardWeightWith(&ks, dweight, dbias, dout, inp, s.N, s.C, s.OC)
				checkClose(t, s.String()+"/dinp", dinp, wantX, allX)
				checkClose(t, s.String()+"/dweight", dweight, wantW, allW)
				checkClose(t, s.String()+"/dbias", dbias, wantB, allB)
			}
		})
	}
}

// matmulBenchShapes are GPT-2 124M's matmuls: the attention qkv (C→3C), attention projection
// (C→C), MLP (C→4C, 4C→C) and LM head (C→V) at decode (N=1, 8), training (N=256: B=4, T=64) and
// prefill (N=512) sizes.
func matmulBenchShapes(ns []int) []matmulShape {
	var shapes []matmulShape
	for _, n := range ns {
		for _, co := range [][2]int{{768, 768}, {768, 2304}, {768, 3072}, {3072, 768}, {768, 50257}} {
			shapes = append(shapes, matmulShape{n, co[0], co[1]})
		}
	}
	return shapes
}

// matmulBenchImpls are the implementations the benchmarks compare: every kernel set (fast is the
// one the backend uses), gonum's blas32 (Gemm without bias or dbias), and the naive loops (only
// where one call takes under a few seconds).
func matmulBenchImpls() []string {
	impls := []string{"fast"}
	for _, ks := range matmulKernelSets()[1:] {
		impls = append(impls, "fast-"+ks.name)
	}
	return append(impls, "gonum", "naive")
}

// benchKernels returns the kernel set of impl "fast" or "fast-NAME".
func benchKernels(impl string) *gemmKernels {
	for _, ks := range matmulKernelSets() {
		if impl == "fast" || impl == "fast-"+ks.name {
			return &ks
		}
	}
	return nil
}

// benchMatmul runs one matmul benchmark over shapes, with run(impl, shape) returning the function
// to time, and reports GFLOP/s counting 2·N·C·OC per call.
func benchMatmul(b *testing.B, shapes []matmulShape, run func(impl string, s matmulShape) func()) {
	for _, impl := range matmulBenchImpls() {
		for _, s := range shapes {
			flops := 2 * float64(s.N) * float64(s.C) * float64(s.OC)
			if impl == "naive" && flops > 2e9 {
				continue
			}
			b.Run(fmt.Sprintf("impl=%s/%v", impl, s), func(b *testing.B) {
				f := run(impl, s)
				for b.Loop() {
					f()
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

func BenchmarkMatmulForward(b *testing.B) {
	benchMatmul(b, matmulBenchShapes([]int{1, 8, 256, 512}), func(impl string, s matmulShape) func() {
		rng := rand.New(rand.NewPCG(1, 2))
		inp, weight, bias := randSlice(rng, s.N*s.C), randSlice(rng, s.OC*s.C), randSlice(rng, s.OC)
		out := make([]float32, s.N*s.OC)
		switch impl {
		case "naive":
			return func() { matmulForwardNaive(out, inp, weight, bias, s.N, s.C, s.OC) }
		case "gonum":
			a := blas32.General{Rows: s.N, Cols: s.C, Stride: s.C, Data: inp}
			w := blas32.General{Rows: s.OC, Cols: s.C, Stride: s.C, Data: weight}
			c := blas32.General{Rows: s.N, Cols: s.OC, Stride: s.OC, Data: out}
			return func() { blas32.Gemm(blas.NoTrans, blas.Trans, 1, a, w, 0, c) }
		}
		ks := benchKernels(impl)
		return func() { matmulForwardWith(ks, out, inp, weight, bias, s.N, s.C, s.OC) }
	})
}

func BenchmarkMatmulBackwardInput(b *testing.B) {
	benchMatmul(b, matmulBenchShapes([]int{256}), func(impl string, s matmulShape) func() {
		rng := rand.New(rand.NewPCG(1, 2))
		dout, weight := randSlice(rng, s.N*s.OC), randSlice(rng, s.OC*s.C)
		dinp := make([]float32, s.N*s.C)
		switch impl {
		case "naive":
			return func() { matmulBackwardInputNaive(dinp, dout, weight, s.N, s.C, s.OC) }
		case "gonum":
			d := blas32.General{Rows: s.N, Cols: s.OC, Stride: s.OC, Data: dout}
			w := blas32.General{Rows: s.OC, Cols: s.C, Stride: s.C, Data: weight}
			c := blas32.General{Rows: s.N, Cols: s.C, Stride: s.C, Data: dinp}
			return func() { blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, d, w, 1, c) }
		}
		ks := benchKernels(impl)
		return func() { matmulBackwardInputWith(ks, dinp, dout, weight, s.N, s.C, s.OC) }
	})
}

func BenchmarkMatmulBackwardWeight(b *testing.B) {
	benchMatmul(b, matmulBenchShapes([]int{256}), func(impl string, s matmulShape) func() {
		rng := rand.New(rand.NewPCG(1, 2))
		dout, inp := randSlice(rng, s.N*s.OC), randSlice(rng, s.N*s.C)
		dweight, dbias := make([]float32, s.OC*s.C), make([]float32, s.OC)
		switch impl {
		case "naive":
			return func() { matmulBackwardWeightNaive(dweight, dbias, dout, inp, s.N, s.C, s.OC) }
		case "gonum":
			d := blas32.General{Rows: s.N, Cols: s.OC, Stride: s.OC, Data: dout}
			x := blas32.General{Rows: s.N, Cols: s.C, Stride: s.C, Data: inp}
			c := blas32.General{Rows: s.OC, Cols: s.C, Stride: s.C, Data: dweight}
			return func() { blas32.Gemm(blas.Trans, blas.NoTrans, 1, d, x, 1, c) }
		}
		ks := benchKernels(impl)
		return func() { matmulBackwardWeightWith(ks, dweight, dbias, dout, inp, s.N, s.C, s.OC) }
	})
}
