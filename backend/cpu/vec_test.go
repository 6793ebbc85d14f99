package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/modeld-dev/modeld/backend"
)

// The vector kernels of cross-entropy and GELU against the reference row kernels, and exp, on
// every vector kernel set this CPU runs (forEachVecSet, attention_test.go).

func TestCrossEntropyFast(t *testing.T) {
	forEachVecSet(t, func(t *testing.T) {
		for _, V := range []int{1, 15, 17, 50257} {
			t.Run(fmt.Sprintf("v=%d", V), func(t *testing.T) {
				const N = 3
				rng := rand.New(rand.NewPCG(uint64(V), 9))
				logits := normalSlice(rng, N*V, 3)
				logits[V-1] = float32(math.Inf(-1))
				targets := []int32{0, backend.IgnoreIndex, int32(V / 2)}
				want, wantP := make([]float32, N), make([]float32, N*V)
				got, gotP := make([]float32, N), make([]float32, N*V)
				crossEntropyForward(want, wantP, logits, targets, V, 0, N)
				crossEntropyForwardFast(got, gotP, logits, targets, V, 0, N)
				checkTol(t, "losses", got, want, 1e-4, 1e-5)
				checkTol(t, "probs", gotP, wantP, 1e-7, 3e-4)
			})
		}
	})
}

// TestExpSum checks each set's expSum against math.Exp, with exp32's bound (2e-7 relative) on
// normal results, at the clamp bounds and for the special values.
func TestExpSum(t *testing.T) {
	forEachVecSet(t, func(t *testing.T) {
		var x []float32
		for v := float32(-103.9); v <= 88.7; v += 1.0 / 64 {
			x = append(x, v)
		}
		inf := float32(math.Inf(1))
		x = append(x, 0, -inf, inf, -1e30, 89, -111)
		e := make([]float32, len(x))
		sum := vecKern.expSum(e, x, 0, 1)
		for i, v := range x {
			want := math.Exp(float64(v))
			got := float64(e[i])
			switch {
			case want < 1.2e-38: // subnormal results keep fewer bits
				if math.Abs(got-want) > 1.5e-45 {
					t.Fatalf("exp(%v) = %v, want %v", v, got, want)
				}
			case want > math.MaxFloat32:
				if !math.IsInf(got, 1) {
					t.Fatalf("exp(%v) = %v, want +Inf", v, got)
				}
			case math.Abs(got-want) > 2e-7*want:
				t.Fatalf("exp(%v) = %v, want %v", v, got, want)
			}
		}
		if !math.IsInf(float64(sum), 1) {
			t.Errorf("sum = %v, want +Inf", sum)
		}
		nan := make([]float32, 33)
		nan[3], nan[32] = float32(math.NaN()), float32(math.NaN())
		vecKern.expSum(nan, nan, 0, 1)
		if nan[3] == nan[3] || nan[32] == nan[32] {
			t.Errorf("exp(NaN) = %v, %v", nan[3], nan[32])
		}
	})
}

func TestGELUFast(t *testing.T) {
	forEachVecSet(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 6))
		x := normalSlice(rng, 3075, 3)
		inf := float32(math.Inf(1))
		copy(x[100:], []float32{float32(math.NaN()), inf, 1e30, -1e30, 30, -30, 0, -5, 5})
		want, got := make([]float32, len(x)), make([]float32, len(x))
		geluForward(want, x)
		vecKern.gelu(got, x)
		checkTol(t, "out", got, want, 1e-6, 1e-5)
		dout := normalSlice(rng, len(x), 1)
		want = normalSlice(rng, len(x), 1)
		got = append(got[:0], want...)
		geluBackward(want, x, dout)
		vecKern.geluBackward(got, x, dout)
		checkTol(t, "dinp", got, want, 1e-5, 1e-5)
	})
}

// TestVecRowKernels checks each set's max, scale, dot and softmax gradient against the Go set at
// lengths that leave every tail of 16 and 8 lanes (vecTestSizes, layernorm_test.go).
func TestVecRowKernels(t *testing.T) {
	forEachVecSet(t, func(t *testing.T) {
		for _, n := range vecTestSizes {
			t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(n), 7))
				x, y := normalSlice(rng, n, 1), normalSlice(rng, n, 1)
				if got, want := vecKern.max(x), maxGo(x); got != want {
					t.Errorf("max = %v, want %v", got, want)
				}
				got, want := vecKern.dot(x, y), dotGo(x, y)
				checkTol(t, "dot", []float32{got}, []float32{want}, 1e-5, 1e-5)
				gotX, wantX := append([]float32(nil), x...), append([]float32(nil), x...)
				vecKern.scale(gotX, 0.3)
				scaleGo(wantX, 0.3)
				checkTol(t, "scale", gotX, wantX, 0, 0)
				gotD, wantD := append([]float32(nil), y...), append([]float32(nil), y...)
				vecKern.softmaxGrad(gotD, x, 0.25, 0.125)
				softmaxGradGo(wantD, x, 0.25, 0.125)
				checkTol(t, "softmaxGrad", gotD, wantD, 0, 0)
			})
		}
	})
}
