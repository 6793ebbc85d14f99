package cpu

import (
	"math"

	"github.com/modeld-dev/modeld/backend"
)

// vecKernels is a set of SIMD kernels for attention (attention.go), softmax, cross-entropy, GELU,
// LayerNorm (layernorm.go) and AdamW, with the panel sizes of its attention micro-kernel. The
// assembly sets (vec_amd64.go) are chosen with the matmul kernels, from what CPUID reports; vecGo
// is the portable set.
type vecKernels struct {
	name string
	// mr and nr are the rows of A and the columns of B and C of one attn call.
	mr, nr int
	// attn adds A·B to the mr×nr block of C: c[r*ldc+j] += Σ_{p<k} a[r*ars+p*aps]·b[p*ldb+j].
	// A is read in place with any strides (row r, depth p); B is a row-major panel.
	attn func(k int, a []float32, ars, aps int, b []float32, ldb int, c []float32, ldc int)
	// max returns the largest element of x (len(x) >= 1). A NaN in x need not be returned: it
	// reaches the softmax through expSum.
	max func(x []float32) float32
	// expSum sets dst[i] = e^((x[i]-m)·s), with exp32's accuracy, and returns their sum.
	// len(dst) >= len(x); dst may be x.
	expSum func(dst, x []float32, m, s float32) float32
	// scale multiplies x by s.
	scale func(x []float32, s float32)
	// dot returns Σ a[i]·b[i]; len(b) >= len(a).
	dot func(a, b []float32) float32
	// softmaxGrad sets d[i] = p[i]·(d[i]-dot)·scale; len(d) >= len(p).
	softmaxGrad func(d, p []float32, dot, scale float32)
	// gelu and geluBackward are geluForwardFast and geluBackwardFast (fastmath.go).
	gelu         func(out, inp []float32)
	geluBackward func(dinp, inp, dout []float32)
	// sum returns Σ x[i]; sumSqDev returns Σ (x[i]-m)².
	sum      func(x []float32) float32
	sumSqDev func(x []float32, m float32) float32
	// layerNorm sets out[i] = (x[i]-m)·s·w[i] + b[i], rounding as the reference (no fused
	// multiply-add); len(out), len(w), len(b) >= len(x).
	layerNorm func(out, x, w, b []float32, m, s float32)
	// layerNormSums returns Σ w[i]·d[i] and Σ w[i]·d[i]·(x[i]-m)·s; len(x), len(w) >= len(d).
	layerNormSums func(d, x, w []float32, m, s float32) (dnorm, dnormNorm float32)
	// layerNormBackward adds db += d, dw += norm·d and dx += (w·d - dm - norm·dnm)·s, where
	// norm = (x-m)·s, rounding as the reference; every slice is at least len(d) long.
	layerNormBackward func(dx, dw, db, d, x, w []float32, m, s, dm, dnm float32)
	// adamW is one AdamW step over p, g, m, v (len(p) each), rounding as the reference adamW
	// (kernels.go): exact division and square root, no fused multiply-add.
	adamW func(p, g, m, v []float32, hp backend.AdamW)
}

// vecKern is the set that the fast kernels use: the widest this CPU runs.
var vecKern = vecKernelSets()[0]

// vecGo is the portable set: a 2×4 attention micro-kernel (whose 8 sums fit in registers, as
// gemmKernel2x4Go's) and exp32 in plain loops.
var vecGo = vecKernels{
	name: "go", mr: 2, nr: 4,
	attn:         attnKernel2x4Go,
	max:          maxGo,
	expSum:       expSumGo,
	scale:        scaleGo,
	dot:          dotGo,
	softmaxGrad:  softmaxGradGo,
	gelu:         geluForwardFast,
	geluBackward: geluBackwardFast,

	sum:               sumGo,
	sumSqDev:          sumSqDevGo,
	layerNorm:         layerNormGo,
	layerNormSums:     layerNormSumsGo,
	layerNormBackward: layerNormBackwardGo,
	adamW:             adamW,
}

// softmax sets x = softmax(x·scale) (scale > 0): the maximum, then the exponentials and their
// sum, then the normalisation, as the reference's attention rows.
func (ks *vecKernels) softmax(x []float32, scale float32) {
	m := ks.max(x)
	sum := ks.expSum(x, x, m, scale)
	ks.scale(x, 1/sum)
}

// softmaxBackward sets d = p∘(d - Σ p∘d)·scale, the gradient of a softmax row's inputs (before
// the scaling by scale) given its output p and the gradient d of its output.
func (ks *vecKernels) softmaxBackward(d, p []float32, scale float32) {
	ks.softmaxGrad(d, p, ks.dot(p, d), scale)
}

func softmaxGradGo(d, p []float32, dot, scale float32) {
	d = d[:len(p)]
	for i, x := range p {
		d[i] = x * (d[i] - dot) * scale
	}
}

// attnKernel2x4Go is vecGo's attn: mr = 2, nr = 4.
func attnKernel2x4Go(k int, a []float32, ars, aps int, b []float32, ldb int, c []float32, ldc int) {
	if k <= 0 {
		return
	}
	_, _ = a[ars+(k-1)*aps], b[(k-1)*ldb+3]
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	for p := range k {
		a0, a1 := a[p*aps], a[ars+p*aps]
		bp := b[p*ldb : p*ldb+4 : p*ldb+4]
		b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
	}
	r := c[0:4:4]
	r[0], r[1], r[2], r[3] = r[0]+c00, r[1]+c01, r[2]+c02, r[3]+c03
	r = c[ldc : ldc+4 : ldc+4]
	r[0], r[1], r[2], r[3] = r[0]+c10, r[1]+c11, r[2]+c12, r[3]+c13
}

func maxGo(x []float32) float32 {
	m := float32(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	return m
}

// expSumGo sums in four lanes, as the float32 sum of up to 50257 terms (a cross-entropy row)
// loses less that way.
func expSumGo(dst, x []float32, m, s float32) float32 {
	dst = dst[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		e0, e1 := exp32((x[i]-m)*s), exp32((x[i+1]-m)*s)
		e2, e3 := exp32((x[i+2]-m)*s), exp32((x[i+3]-m)*s)
		dst[i], dst[i+1], dst[i+2], dst[i+3] = e0, e1, e2, e3
		s0, s1, s2, s3 = s0+e0, s1+e1, s2+e2, s3+e3
	}
	for ; i < len(x); i++ {
		e := exp32((x[i] - m) * s)
		dst[i] = e
		s0 += e
	}
	return (s0 + s1) + (s2 + s3)
}

func scaleGo(x []float32, s float32) {
	for i := range x {
		x[i] *= s
	}
}

// crossEntropyForwardFast is crossEntropyForward with the vector kernels: the maximum, the
// exponentials and their float32 sum (in SIMD lanes), the normalisation, and the loss
// log(sum) + max - logits[target].
func crossEntropyForwardFast(losses, probs, logits []float32, targets []int32, V, lo, hi int) {
	ks := &vecKern
	for n := lo; n < hi; n++ {
		x := logits[n*V : (n+1)*V]
		p := probs[n*V : (n+1)*V]
		m := ks.max(x)
		sum := ks.expSum(p, x, m, 1)
		ks.scale(p, 1/sum)
		if t := targets[n]; t == backend.IgnoreIndex {
			losses[n] = 0
		} else {
			losses[n] = float32(math.Log(float64(sum)) + float64(m) - float64(x[t]))
		}
	}
}
