package cpu

import (
	"math"

	"github.com/modeld-dev/modeld/backend"
)

// Float32 exp and tanh, and a cache-ordered decode attention, for the fast backend's kernels, where Go's float64 math.Exp
// and math.Tanh cost most of the time (GELU ran at 0.6 GB/s with math.Tanh). The reference
// kernels keep the float64 functions.

const (
	log2e = 1.44269504088896341
	ln2Hi = 0.693359375 // ln 2 split in two (Cephes expf), so that k*ln2Hi is exact
	ln2Lo = -2.12194440e-4
)

// exp32 is e^x in float32 with a relative error below 2e-7 (Cephes' expf: range reduction
// by ln 2 and a degree-6 polynomial). It returns +Inf above 88.72, 0 below -103.97, and NaN
// for NaN.
func exp32(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > 88.72283:
		return float32(math.Inf(1))
	case x < -103.97208:
		return 0
	}
	k := float32(math.Floor(float64(x*log2e + 0.5)))
	r := x - k*ln2Hi - k*ln2Lo
	p := ((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r + 5.0000001201e-1
	p = p*r*r + r + 1
	if k < -126 || k > 127 {
		return float32(math.Ldexp(float64(p), int(k))) // a subnormal result, or near MaxFloat32
	}
	return p * math.Float32frombits(uint32(int32(k)+127)<<23)
}

// tanh32 is tanh(x) = 1 - 2/(e^{2x}+1) in float32, with an absolute error below 3e-7; it is
// exactly +-1 for |x| above about 9, and NaN for NaN.
func tanh32(x float32) float32 {
	return 1 - 2/(exp32(2*x)+1)
}

// geluForwardFast is geluForward with tanh32.
func geluForwardFast(out, inp []float32) {
	for i, x := range inp {
		th := tanh32(geluScale * (x + 0.044715*x*x*x))
		if th == -1 {
			out[i] = 0
			continue
		}
		out[i] = 0.5 * x * (1 + th)
	}
}

// geluBackwardFast is geluBackward with tanh32 and sech^2 = 1 - tanh^2.
func geluBackwardFast(dinp, inp, dout []float32) {
	for i, x := range inp {
		th := tanh32(geluScale * (x + 0.044715*x*x*x))
		local := 0.5 * (1 + th)
		if sech2 := 1 - th*th; sech2 != 0 {
			local += x * 0.5 * sech2 * geluScale * (1 + 3*0.044715*x*x)
		}
		dinp[i] += local * dout[i]
	}
}

// cachedAttentionFast is cachedAttention reordered for the cache: each cached position's key and
// value rows (all heads, C floats) are read once and in order, scores for every head are kept
// in scores (NH*(s.Pos+t+1) floats, reused by the caller), and the dot products and updates
// run with four accumulators. The softmax is the same, per head, with the vector kernels.
func cachedAttentionFast(out, qkv, kc, vc []float32, s backend.CachedSeq, t, bs, C, NH int, scores []float32) {
	hs := C / NH
	scale := float32(1 / math.Sqrt(float64(hs)))
	n := s.Row + t
	P := s.Pos + t + 1 // positions attended
	q := qkv[n*3*C : n*3*C+C]
	for p := range P {
		k := kc[(int(s.Blocks[p/bs])*bs+p%bs)*C:][:C]
		for h := range NH {
			scores[h*P+p] = dotGo(q[h*hs:(h+1)*hs], k[h*hs:(h+1)*hs]) * scale
		}
	}
	for h := range NH {
		vecKern.softmax(scores[h*P:(h+1)*P], 1)
	}
	o := out[n*C : (n+1)*C]
	clear(o)
	for p := range P {
		v := vc[(int(s.Blocks[p/bs])*bs+p%bs)*C:][:C]
		for h := range NH {
			axpy(o[h*hs:(h+1)*hs], v[h*hs:(h+1)*hs], scores[h*P+p])
		}
	}
}

// axpy is y += alpha*x; len(x) >= len(y).
func axpy(y, x []float32, alpha float32) {
	x = x[:len(y)]
	i := 0
	for ; i+4 <= len(y); i += 4 {
		y[i] += alpha * x[i]
		y[i+1] += alpha * x[i+1]
		y[i+2] += alpha * x[i+2]
		y[i+3] += alpha * x[i+3]
	}
	for ; i < len(y); i++ {
		y[i] += alpha * x[i]
	}
}
