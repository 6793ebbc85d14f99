package cpu

// Assembly kernels of the bfloat16-weight forward (bf16_amd64.s), chosen at startup with the
// float32 kernels (simdKernelSets).

// bf16KernelSets returns the bfloat16 kernel sets this CPU can run, fastest first; the portable
// Go set is always last.
func bf16KernelSets() []bf16KernelSet { return simdKernelSets(bf16AVX512, bf16AVX2, bf16Go) }

// bf16AVX512 widens 16 weights per vpmovzxwd into a zmm register.
var bf16AVX512 = bf16KernelSet{
	name: "avx512",
	gemvKernels: gemvKernels[uint16]{
		dot8: func(k int, w []uint16, ldw int, x []float32, out *[8]float32) {
			kv := k &^ 15
			if kv > 0 {
				_, _ = w[7*ldw+kv-1], x[kv-1]
				dot8BF16AVX512(kv, &w[0], ldw, &x[0], out)
			} else {
				*out = [8]float32{}
			}
			if kv < k {
				for r := range out {
					out[r] += dotBF16Go(x[kv:k], w[r*ldw+kv:r*ldw+k])
				}
			}
		},
		dot4x4: func(k int, w []uint16, ldw int, x []float32, ldx int, out *[16]float32) {
			kv := k &^ 15
			if kv > 0 {
				_, _ = w[3*ldw+kv-1], x[3*ldx+kv-1]
				dot4x4BF16AVX512(kv, &w[0], ldw, &x[0], ldx, out)
			} else {
				*out = [16]float32{}
			}
			if kv < k {
				for r := range 4 {
					for s := range 4 {
						out[4*s+r] += dotBF16Go(x[s*ldx+kv:s*ldx+k], w[r*ldw+kv:r*ldw+k])
					}
				}
			}
		},
		dot: dotBF16Go,
	},
	widen: widenBF16AVX,
}

// bf16AVX2 widens 8 weights per vpmovzxwd into a ymm register.
var bf16AVX2 = bf16KernelSet{
	name: "avx2",
	gemvKernels: gemvKernels[uint16]{
		dot8: func(k int, w []uint16, ldw int, x []float32, out *[8]float32) {
			var r4 [4]float32
			dot4BF16AVX2Go(k, w, ldw, x, &r4)
			copy(out[:4], r4[:])
			dot4BF16AVX2Go(k, w[4*ldw:], ldw, x, &r4)
			copy(out[4:], r4[:])
		},
		dot4x4: func(k int, w []uint16, ldw int, x []float32, ldx int, out *[16]float32) {
			var r4 [4]float32
			for s := range 4 {
				dot4BF16AVX2Go(k, w, ldw, x[s*ldx:], &r4)
				copy(out[4*s:4*s+4], r4[:])
			}
		},
		dot: dotBF16Go,
	},
	widen: widenBF16AVX,
}

// dot4BF16AVX2Go sets out[r] = Σ_p float32(w[r*ldw+p])·x[p] for r < 4, with dot4BF16AVX2 on the
// multiple of 16 and Go on the rest of k.
func dot4BF16AVX2Go(k int, w []uint16, ldw int, x []float32, out *[4]float32) {
	kv := k &^ 15
	if kv > 0 {
		_, _ = w[3*ldw+kv-1], x[kv-1]
		dot4BF16AVX2(kv, &w[0], ldw, &x[0], out)
	} else {
		*out = [4]float32{}
	}
	if kv < k {
		for r := range out {
			out[r] += dotBF16Go(x[kv:k], w[r*ldw+kv:r*ldw+k])
		}
	}
}

// widenBF16AVX sets dst[i] = float32(src[i]) for i < len(dst), with widenBF16AVX2 on the multiple
// of 8 and Go on the rest. (Widening is bound by memory: ymm registers keep up with zmm.)
func widenBF16AVX(dst []float32, src []uint16) {
	n := len(dst)
	src = src[:n]
	nv := n &^ 7
	if nv > 0 {
		widenBF16AVX2(&dst[0], &src[0], nv)
	}
	widenBF16Go(dst[nv:], src[nv:])
}

// dot8BF16AVX512 sets out[r] = Σ_p float32(w[r*ldw+p])·x[p] for r < 8, w in bfloat16 bit
// patterns, ldw in elements. k must be a multiple of 16.
//
//go:noescape
func dot8BF16AVX512(k int, w *uint16, ldw int, x *float32, out *[8]float32)

// dot4x4BF16AVX512 sets out[4*s+r] = Σ_p float32(w[r*ldw+p])·x[s*ldx+p] for r, s < 4, w in
// bfloat16 bit patterns. k must be a multiple of 16. It prefetches the same columns of w rows 8
// to 11 (a hint, which cannot fault).
//
//go:noescape
func dot4x4BF16AVX512(k int, w *uint16, ldw int, x *float32, ldx int, out *[16]float32)

// dot4BF16AVX2 sets out[r] = Σ_p float32(w[r*ldw+p])·x[p] for r < 4, w in bfloat16 bit patterns.
// k must be a multiple of 16.
//
//go:noescape
func dot4BF16AVX2(k int, w *uint16, ldw int, x *float32, out *[4]float32)

// widenBF16AVX2 sets dst[i] = float32(src[i]) for i < n. n must be a positive multiple of 8.
//
//go:noescape
func widenBF16AVX2(dst *float32, src *uint16, n int)
