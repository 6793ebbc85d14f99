package cpu

import (
	"math"
	"testing"
)

// TestExp32 checks exp32 against math.Exp over every float32 in steps of 2^-10 across its
// range, and at the edges.
func TestExp32(t *testing.T) {
	worst := 0.0
	for x := float32(-103.9); x <= 88.7; x += 1.0 / 1024 {
		want := math.Exp(float64(x))
		got := float64(exp32(x))
		if want < 1.2e-38 { // subnormal results keep fewer bits
			if math.Abs(got-want) > 1.5e-45 {
				t.Fatalf("exp32(%v) = %v, want %v", x, got, want)
			}
			continue
		}
		worst = max(worst, math.Abs(got-want)/want)
	}
	if worst > 2e-7 {
		t.Errorf("exp32: worst relative error %g, want <= 2e-7", worst)
	}
	for _, tc := range []struct{ x, want float32 }{
		{0, 1}, {float32(math.Inf(1)), float32(math.Inf(1))}, {float32(math.Inf(-1)), 0}, {89, float32(math.Inf(1))}, {-104, 0},
	} {
		if got := exp32(tc.x); got != tc.want {
			t.Errorf("exp32(%v) = %v, want %v", tc.x, got, tc.want)
		}
	}
	if nan := float32(math.NaN()); exp32(nan) == exp32(nan) {
		t.Errorf("exp32(NaN) is not NaN")
	}
}

func TestTanh32(t *testing.T) {
	worst := 0.0
	for x := float32(-20); x <= 20; x += 1.0 / 4096 {
		worst = max(worst, math.Abs(float64(tanh32(x))-math.Tanh(float64(x))))
	}
	if worst > 3e-7 {
		t.Errorf("tanh32: worst absolute error %g, want <= 3e-7", worst)
	}
	if tanh32(float32(math.Inf(1))) != 1 || tanh32(float32(math.Inf(-1))) != -1 {
		t.Errorf("tanh32(+-Inf) = %v, %v", tanh32(float32(math.Inf(1))), tanh32(float32(math.Inf(-1))))
	}
}
