package backend_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/modeld-dev/modeld/backend"
)

func TestBF16FromF32(t *testing.T) {
	one := math.Float32frombits(0x3f800000)
	ulp := float32(1.0 / 128) // bfloat16's spacing just above 1
	for _, c := range []struct {
		name string
		in   float32
		want uint16
	}{
		{"one", one, 0x3f80},
		{"minus_one", -one, 0xbf80},
		{"zero", 0, 0x0000},
		{"minus_zero", float32(math.Copysign(0, -1)), 0x8000},
		{"below_half_ulp", one + ulp/2 - ulp/256, 0x3f80},
		{"tie_to_even_down", one + ulp/2, 0x3f80},
		{"above_half_ulp", one + ulp/2 + ulp/256, 0x3f81},
		{"tie_to_even_up", one + 3*ulp/2, 0x3f82},
		{"negative_rounds_away", -(one + ulp/2 + ulp/256), 0xbf81},
		{"max_float32_overflows", math.MaxFloat32, 0x7f80},
		{"inf", float32(math.Inf(1)), 0x7f80},
		{"minus_inf", float32(math.Inf(-1)), 0xff80},
		{"smallest_subnormal", math.Float32frombits(1), 0x0000},
		{"subnormal_rounds_up", math.Float32frombits(0x00008000 + 1), 0x0001},
	} {
		if got := backend.BF16FromF32(c.in); got != c.want {
			t.Errorf("%s: BF16FromF32(%v) = %#04x, want %#04x", c.name, c.in, got, c.want)
		}
	}
	nan := math.Float32frombits(0x7f800001) // a signalling NaN whose payload is all in the low half
	if got := backend.F32FromBF16(backend.BF16FromF32(nan)); !math.IsNaN(float64(got)) {
		t.Errorf("BF16FromF32(NaN) widens to %v, want NaN", got)
	}
}

// TestBF16FromF32Nearest checks random bit patterns against the definition: the nearer of the
// two bfloat16 neighbours, the even one on a tie.
func TestBF16FromF32Nearest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1 << 20 {
		u := rng.Uint32()
		x := math.Float32frombits(u)
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			continue
		}
		lo := u &^ 0xffff
		down := float64(math.Float32frombits(lo))
		up := float64(math.Float32frombits(lo + 0x10000)) // may be ±Inf: then the tie rule decides
		if lo&0x7fffffff == 0x7f7f0000 {
			up = math.Copysign(math.Pow(2, 128), down) // the rounding boundary past MaxFloat32
		}
		want := uint16(lo >> 16)
		dd, du := math.Abs(float64(x)-down), math.Abs(up-float64(x))
		if du < dd || (du == dd && want&1 == 1) {
			want++
		}
		if got := backend.BF16FromF32(x); got != want {
			t.Fatalf("BF16FromF32(%#08x) = %#04x, want %#04x", u, got, want)
		}
		if w := backend.F32FromBF16(want); backend.BF16FromF32(w) != want {
			t.Fatalf("BF16FromF32(F32FromBF16(%#04x)) is not the identity", want)
		}
	}
}
