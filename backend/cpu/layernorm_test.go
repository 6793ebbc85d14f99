package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/modeld-dev/modeld/backend"
)

// The vector LayerNorm and AdamW kernels against the reference row kernels, on every vector
// kernel set this CPU runs, at row lengths that leave every tail of 16 and 8 lanes. The
// tolerances are backendtest's (tolLayerNorm, tolLayerNormBackward, tolAdamW); each test logs
// the largest fraction of its tolerance that it used.

// vecTestSizes are odd lengths around the lane counts, and GPT-2's C and 4C with and without a
// tail.
var vecTestSizes = []int{1, 3, 17, 33, 768, 771, 3072, 3079}

// checkTolFrac is checkTol that also returns the largest |got-want| / (atol + rtol*|want|).
func checkTolFrac(t *testing.T, what string, got, want []float32, atol, rtol float64) float64 {
	t.Helper()
	checkTol(t, what, got, want, atol, rtol)
	var frac float64
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if !math.IsNaN(w) {
			frac = max(frac, math.Abs(g-w)/(atol+rtol*math.Abs(w)))
		}
	}
	return frac
}

func TestLayerNormFast(t *testing.T) {
	forEachVecSet(t, func(t *testing.T) {
		for _, C := range vecTestSizes {
			t.Run(fmt.Sprintf("c=%d", C), func(t *testing.T) {
				const N = 5
				rng := rand.New(rand.NewPCG(uint64(C), 3))
				inp := normalSlice(rng, N*C, 2)
				for i := range inp {
					inp[i] += 0.5 // a mean away from 0, as residual streams have
				}
				weight, bias := normalSlice(rng, C, 1), normalSlice(rng, C, 1)
				want, wantM, wantR := make([]float32, N*C), make([]float32, N), make([]float32, N)
				got, gotM, gotR := normalSlice(rng, N*C, 1), make([]float32, N), make([]float32, N)
				layerNormForward(want, wantM, wantR, inp, weight, bias, C, 0, N)
				layerNormForwardFast(got, gotM, gotR, inp, weight, bias, C, 0, N)
				const atol, rtol = 1e-5, 1e-4 // backendtest's tolLayerNorm
				frac := checkTolFrac(t, "out", got, want, atol, rtol)
				frac = max(frac, checkTolFrac(t, "mean", gotM, wantM, atol, rtol))
				frac = max(frac, checkTolFrac(t, "rstd", gotR, wantR, atol, rtol))

				dout := normalSlice(rng, N*C, 1)
				wantDx, wantDw, wantDb := normalSlice(rng, N*C, 1), normalSlice(rng, C, 1), normalSlice(rng, C, 1)
				gotDx := append([]float32(nil), wantDx...)
				gotDw := append([]float32(nil), wantDw...)
				gotDb := append([]float32(nil), wantDb...)
				layerNormBackward(wantDx, wantDw, wantDb, dout, inp, weight, wantM, wantR, C, 0, N)
				layerNormBackwardFast(gotDx, gotDw, gotDb, dout, inp, weight, wantM, wantR, C, 0, N)
				const batol, brtol = 1e-4, 1e-4 // backendtest's tolLayerNormBackward
				bfrac := checkTolFrac(t, "dinp", gotDx, wantDx, batol, brtol)
				bfrac = max(bfrac, checkTolFrac(t, "dweight", gotDw, wantDw, batol, brtol))
				bfrac = max(bfrac, checkTolFrac(t, "dbias", gotDb, wantDb, batol, brtol))
				t.Logf("tolerance used: forward %.3f, backward %.3f", frac, bfrac)
			})
		}
	})
}

func TestAdamWFast(t *testing.T) {
	forEachVecSet(t, func(t *testing.T) {
		for _, n := range vecTestSizes {
			t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(n), 4))
				g := normalSlice(rng, n, 1e-2)
				p := normalSlice(rng, n, 0.02)
				m, v := make([]float32, n), make([]float32, n)
				gotP, gotM, gotV := append([]float32(nil), p...), make([]float32, n), make([]float32, n)
				var frac float64
				for step := 1; step <= 5; step++ {
					hp := backend.AdamW{LearningRate: 6e-4, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8,
						WeightDecay: 0.1, Step: step, GradScale: 0.7}
					adamW(p, g, m, v, hp)
					vecKern.adamW(gotP, g, gotM, gotV, hp)
					const atol, rtol = 1e-6, 1e-5 // backendtest's tolAdamW
					frac = max(frac, checkTolFrac(t, "params", gotP, p, atol, rtol))
					frac = max(frac, checkTolFrac(t, "m", gotM, m, atol, rtol))
					frac = max(frac, checkTolFrac(t, "v", gotV, v, atol, rtol))
				}
				t.Logf("tolerance used: %.3f", frac)
			})
		}
	})
}
