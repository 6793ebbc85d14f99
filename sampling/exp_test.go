package sampling

import (
	"fmt"
	"math"
	"testing"
)

func TestExpNeg(t *testing.T) {
	t.Run("accuracy", func(t *testing.T) {
		// A step that is not a multiple of the table's ln2/256 visits every
		// residue; plus the ends of the range.
		worst, at := 0.0, 0.0
		check := func(x float64) {
			want := math.Exp(x)
			if e := math.Abs(expNeg(x)-want) / want; e > worst {
				worst, at = e, x
			}
		}
		for x := 0.0; x >= expMin; x -= 0.000731 {
			check(x)
		}
		for _, x := range []float64{-1e-300, -5e-324, -0.5, -1, -math.Ln2, -699.9999, expMin} {
			check(x)
		}
		if worst > 3e-13 {
			t.Errorf("max relative error %g at x = %v, want <= 3e-13", worst, at)
		}
	})
	for _, tc := range []struct {
		x, want float64
	}{
		{0, 1},
		{math.Copysign(0, -1), 1},
		{expMin - 1e-9, 0},
		{-1e300, 0},
		{math.Inf(-1), 0},
	} {
		t.Run(fmt.Sprintf("exact/x=%v", tc.x), func(t *testing.T) {
			if got := expNeg(tc.x); got != tc.want {
				t.Errorf("expNeg(%v) = %v, want %v", tc.x, got, tc.want)
			}
		})
	}
}
