package cpu

// Assembly kernels of attention, softmax and cross-entropy (vec_amd64.s), chosen at startup
// with the matmul kernels (simdKernelSets).

// vecKernelSets returns the vector kernel sets this CPU can run, fastest first; the portable Go
// set is always last.
func vecKernelSets() []vecKernels { return simdKernelSets(vecAVX512, vecAVX2, vecGo) }

// vecAVX512 is the AVX-512 set: a 6×64 attention micro-kernel (24 zmm accumulators) and 16-lane
// exp, max, scale, dot, softmax gradient, GELU, LayerNorm (layernorm_amd64.go) and AdamW
// (adamw_amd64.go), with Go for the last len%16 elements.
var vecAVX512 = vecKernels{
	name: "avx512", mr: 6, nr: 64,
	attn: func(k int, a []float32, ars, aps int, b []float32, ldb int, c []float32, ldc int) {
		if k <= 0 {
			return
		}
		_, _, _ = a[5*ars+(k-1)*aps], b[(k-1)*ldb+63], c[5*ldc+63]
		attn6x64AVX512(k, &a[0], ars, aps, &b[0], ldb, &c[0], ldc)
	},
	max: func(x []float32) float32 {
		n := len(x) &^ 15
		if n == 0 {
			return maxGo(x)
		}
		return max(maxAVX512(&x[0], n), maxGo(x[n:]))
	},
	expSum: func(dst, x []float32, m, s float32) float32 {
		n := len(x) &^ 15
		dst = dst[:len(x)]
		var sum float32
		if n > 0 {
			sum = expSumAVX512(&dst[0], &x[0], n, m, s)
		}
		return sum + expSumGo(dst[n:], x[n:], m, s)
	},
	scale: func(x []float32, s float32) {
		n := len(x) &^ 15
		if n > 0 {
			scaleAVX512(&x[0], n, s)
		}
		scaleGo(x[n:], s)
	},
	dot: func(a, b []float32) float32 {
		n := len(a) &^ 15
		b = b[:len(a)]
		var sum float32
		if n > 0 {
			sum = dotAVX512(&a[0], &b[0], n)
		}
		return sum + dotGo(a[n:], b[n:])
	},
	softmaxGrad: func(d, p []float32, dot, scale float32) {
		n := len(p) &^ 15
		d = d[:len(p)]
		if n > 0 {
			softmaxGradAVX512(&d[0], &p[0], n, dot, scale)
		}
		softmaxGradGo(d[n:], p[n:], dot, scale)
	},
	gelu: func(out, inp []float32) {
		n := len(inp) &^ 15
		out = out[:len(inp)]
		if n > 0 {
			geluAVX512(&out[0], &inp[0], n)
		}
		geluForwardFast(out[n:], inp[n:])
	},
	geluBackward: func(dinp, inp, dout []float32) {
		n := len(inp) &^ 15
		dinp, dout = dinp[:len(inp)], dout[:len(inp)]
		if n > 0 {
			geluBackwardAVX512(&dinp[0], &inp[0], &dout[0], n)
		}
		geluBackwardFast(dinp[n:], inp[n:], dout[n:])
	},
	sum:               sumAVX512Slice,
	sumSqDev:          sumSqDevAVX512Slice,
	layerNorm:         layerNormAVX512Slice,
	layerNormSums:     layerNormSumsAVX512Slice,
	layerNormBackward: layerNormBackwardAVX512Slice,
	adamW:             adamWAVX512Slice,
}

// vecAVX2 is the AVX2 set: a 6×16 attention micro-kernel (12 ymm accumulators) and 8-lane max,
// scale, dot, softmax gradient, LayerNorm and AdamW, with Go for the last len%8 elements; exp
// and GELU in Go (AVX2 has no VSCALEFPS, which EXP512 builds 2^k with).
var vecAVX2 = vecKernels{
	name: "avx2", mr: 6, nr: 16,
	attn: func(k int, a []float32, ars, aps int, b []float32, ldb int, c []float32, ldc int) {
		if k <= 0 {
			return
		}
		_, _, _ = a[5*ars+(k-1)*aps], b[(k-1)*ldb+15], c[5*ldc+15]
		attn6x16AVX2(k, &a[0], ars, aps, &b[0], ldb, &c[0], ldc)
	},
	max: func(x []float32) float32 {
		n := len(x) &^ 7
		if n == 0 {
			return maxGo(x)
		}
		return max(maxAVX2(&x[0], n), maxGo(x[n:]))
	},
	expSum: expSumGo,
	scale: func(x []float32, s float32) {
		n := len(x) &^ 7
		if n > 0 {
			scaleAVX2(&x[0], n, s)
		}
		scaleGo(x[n:], s)
	},
	dot: func(a, b []float32) float32 {
		n := len(a) &^ 7
		b = b[:len(a)]
		var sum float32
		if n > 0 {
			sum = dotAVX2(&a[0], &b[0], n)
		}
		return sum + dotGo(a[n:], b[n:])
	},
	softmaxGrad: func(d, p []float32, dot, scale float32) {
		n := len(p) &^ 7
		d = d[:len(p)]
		if n > 0 {
			softmaxGradAVX2(&d[0], &p[0], n, dot, scale)
		}
		softmaxGradGo(d[n:], p[n:], dot, scale)
	},
	gelu:         geluForwardFast,
	geluBackward: geluBackwardFast,

	sum:               sumAVX2Slice,
	sumSqDev:          sumSqDevAVX2Slice,
	layerNorm:         layerNormAVX2Slice,
	layerNormSums:     layerNormSumsAVX2Slice,
	layerNormBackward: layerNormBackwardAVX2Slice,
	adamW:             adamWAVX2Slice,
}

// attn6x64AVX512 adds A·B to the 6×64 block of C: c[r*ldc+j] += Σ_{p<k} a[r*ars+p*aps]·b[p*ldb+j]
// (strides in elements). k >= 1.
//
//go:noescape
func attn6x64AVX512(k int, a *float32, ars, aps int, b *float32, ldb int, c *float32, ldc int)

// attn6x16AVX2 is attn6x64AVX512 for a 6×16 block. k >= 1.
//
//go:noescape
func attn6x16AVX2(k int, a *float32, ars, aps int, b *float32, ldb int, c *float32, ldc int)

// maxAVX512 returns the largest of x[0:n]; n is a positive multiple of 16.
//
//go:noescape
func maxAVX512(x *float32, n int) float32

// expSumAVX512 sets dst[i] = e^((x[i]-m)·s) for i < n and returns their sum, in 16 lanes added
// pairwise at the end; n is a positive multiple of 16.
//
//go:noescape
func expSumAVX512(dst, x *float32, n int, m, s float32) float32

// scaleAVX512 multiplies x[0:n] by s; n is a positive multiple of 16.
//
//go:noescape
func scaleAVX512(x *float32, n int, s float32)

// dotAVX512 returns Σ a[i]·b[i] for i < n, in 16 lanes added pairwise at the end; n is a
// positive multiple of 16.
//
//go:noescape
func dotAVX512(a, b *float32, n int) float32

// geluAVX512 is geluForwardFast over out[0:n], inp[0:n]; n is a positive multiple of 16.
//
//go:noescape
func geluAVX512(out, inp *float32, n int)

// geluBackwardAVX512 is geluBackwardFast over n elements; n is a positive multiple of 16.
//
//go:noescape
func geluBackwardAVX512(dinp, inp, dout *float32, n int)

// softmaxGradAVX512 sets d[i] = p[i]·(d[i]-dot)·scale for i < n; n is a positive multiple of 16.
//
//go:noescape
func softmaxGradAVX512(d, p *float32, n int, dot, scale float32)

// maxAVX2 is maxAVX512 in 8 lanes; n is a positive multiple of 8.
//
//go:noescape
func maxAVX2(x *float32, n int) float32

// scaleAVX2 is scaleAVX512 in 8 lanes; n is a positive multiple of 8.
//
//go:noescape
func scaleAVX2(x *float32, n int, s float32)

// dotAVX2 is dotAVX512 in 8 lanes; n is a positive multiple of 8.
//
//go:noescape
func dotAVX2(a, b *float32, n int) float32

// softmaxGradAVX2 is softmaxGradAVX512 in 8 lanes; n is a positive multiple of 8.
//
//go:noescape
func softmaxGradAVX2(d, p *float32, n int, dot, scale float32)
