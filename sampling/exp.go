package sampling

import "math"

// expTable[j] = 2^(j/256) for j in [0, 256): the table of expNeg.
var expTable = func() (t [256]float64) {
	for j := range t {
		t[j] = math.Exp2(float64(j) / 256)
	}
	return t
}()

const (
	expInvStep     = 256 / math.Ln2 // x in units of ln2/256
	expStep        = math.Ln2 / 256
	expShifter     = 0x1.8p52           // adding it rounds a float64 to an integer
	expShifterBits = 0x4338000000000000 // math.Float64bits(expShifter)
	expMin         = -700               // below it expNeg returns 0
)

// expNeg returns e^x for x <= 0 with a relative error below 3e-13, and 0
// for x < -700 (e^-700 ~ 1e-304, no mass next to the top token's 1) and
// for x = -Inf. It is the inner loop of sampling and logprobs: inlined,
// about 30 instructions against math.Exp's 65 plus a call, and about twice
// as fast.
//
// It writes x = k·ln2/256 + r with k an integer and |r| <= ln2/512, so
// e^x = 2^⌊k/256⌋ · 2^((k mod 256)/256) · e^r: the first factor goes into
// the exponent bits, the second comes from a table, and e^r is its
// degree-3 Taylor polynomial (error r^4/24 < 1.5e-13; rounding k·ln2/256
// adds up to 7e-14 at x = -700). expNeg(0) is 1 exactly.
func expNeg(x float64) float64 {
	if x < expMin {
		return 0
	}
	z := x*expInvStep + expShifter
	k := math.Float64bits(z) - expShifterBits // round(x/expStep), two's complement
	r := x - (z-expShifter)*expStep
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6)))
	// Adding n = ⌊k/256⌋ to the exponent bits scales by 2^n; the result
	// stays normal since x >= -700 keeps n >= -1010. k is 2^64 + k when
	// negative, so k>>8 is 2^56 + n, and <<52 shifts the 2^56 out.
	return math.Float64frombits(math.Float64bits(expTable[k&255]*p) + k>>8<<52)
}
