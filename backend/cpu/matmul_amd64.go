package cpu

// Assembly micro-kernels (matmul_amd64.s), chosen at startup from what CPUID and the OS report.

// matmulKernels is the kernel set that matmulForward, matmulBackwardInput and
// matmulBackwardWeight use: the widest this CPU runs.
var matmulKernels = matmulKernelSets()[0]

// matmulKernelSets returns the kernel sets this CPU can run, fastest first; the portable Go set
// is always last.
func matmulKernelSets() []gemmKernels { return simdKernelSets(gemmAVX512, gemmAVX2, gemmGo) }

// simdKernelSets returns the kernel sets among avx512, avx2 and portable that this CPU runs
// (matmulCPUFeatures), fastest first; portable is always last. The matmul, vector and bfloat16
// kernel sets are chosen with it, so that they agree.
func simdKernelSets[K any](avx512, avx2, portable K) []K {
	var sets []K
	hasAVX2, hasAVX512 := matmulCPUFeatures()
	if hasAVX512 {
		sets = append(sets, avx512)
	}
	if hasAVX2 {
		sets = append(sets, avx2)
	}
	return append(sets, portable)
}

// matmulCPUFeatures reports whether the CPU and OS support AVX2 with FMA, and AVX-512F. (On
// macOS, which enables AVX-512 state lazily, AVX-512 reads as absent and AVX2 is used.)
func matmulCPUFeatures() (avx2, avx512 bool) {
	maxID, _, _, _ := matmulCPUID(0, 0)
	if maxID < 7 {
		return false, false
	}
	_, _, ecx1, _ := matmulCPUID(1, 0)
	const fma, osxsave, avx = 1 << 12, 1 << 27, 1 << 28
	if ecx1&(fma|osxsave|avx) != fma|osxsave|avx {
		return false, false
	}
	_, ebx7, _, _ := matmulCPUID(7, 0)
	xcr0, _ := matmulXGETBV()
	const ymmState = 1<<1 | 1<<2                   // SSE, AVX
	const zmmState = ymmState | 1<<5 | 1<<6 | 1<<7 // opmask, ZMM0-15 upper halves, ZMM16-31
	avx2 = ebx7&(1<<5) != 0 && xcr0&ymmState == ymmState
	avx512 = avx2 && ebx7&(1<<16) != 0 && xcr0&zmmState == zmmState
	return avx2, avx512
}

// gemmAVX512 is the AVX-512 kernel set: an 8×48 micro-kernel (24 zmm accumulators).
var gemmAVX512 = gemmKernels{
	name: "avx512", mr: 8, nr: 48,
	gemm: func(k int, a, b, c []float32, ldc int) {
		if k <= 0 {
			return
		}
		_, _, _ = a[8*k-1], b[48*k-1], c[7*ldc+47]
		gemm8x48AVX512(k, &a[0], &b[0], &c[0], ldc)
	},
	dot8: func(k int, w []float32, ldw int, x []float32, out *[8]float32) {
		kv := k &^ 15
		if kv > 0 {
			_, _ = w[7*ldw+kv-1], x[kv-1]
			dot8AVX512(kv, &w[0], ldw, &x[0], out)
		} else {
			*out = [8]float32{}
		}
		if kv < k {
			for r := range out {
				out[r] += dotGo(x[kv:k], w[r*ldw+kv:r*ldw+k])
			}
		}
	},
	dot4x4: func(k int, w []float32, ldw int, x []float32, ldx int, out *[16]float32) {
		kv := k &^ 15
		if kv > 0 {
			_, _ = w[3*ldw+kv-1], x[3*ldx+kv-1]
			dot4x4AVX512(kv, &w[0], ldw, &x[0], ldx, out)
		} else {
			*out = [16]float32{}
		}
		if kv < k {
			for r := range 4 {
				for s := range 4 {
					out[4*s+r] += dotGo(x[s*ldx+kv:s*ldx+k], w[r*ldw+kv:r*ldw+k])
				}
			}
		}
	},
	packBT: func(dst, b []float32, ldb, k int) {
		kv := k &^ 15
		if kv > 0 {
			_, _ = dst[48*kv-1], b[47*ldb+kv-1]
			for g := range 3 {
				packBT48AVX512(&dst[16*g], &b[16*g*ldb], ldb, kv)
			}
		}
		for p := kv; p < k; p++ {
			d := dst[48*p : 48*p+48]
			for j := range d {
				d[j] = b[j*ldb+p]
			}
		}
	},
	packBN: func(dst, b []float32, ldb, k int) {
		if k > 0 {
			_, _ = dst[48*k-1], b[(k-1)*ldb+47]
			packBN48AVX512(&dst[0], &b[0], ldb, k)
		}
	},
}

// gemmAVX2 is the AVX2 kernel set: a 6×16 micro-kernel (12 ymm accumulators).
var gemmAVX2 = gemmKernels{
	name: "avx2", mr: 6, nr: 16,
	gemm: func(k int, a, b, c []float32, ldc int) {
		if k <= 0 {
			return
		}
		_, _, _ = a[6*k-1], b[16*k-1], c[5*ldc+15]
		gemm6x16AVX2(k, &a[0], &b[0], &c[0], ldc)
	},
	dot8: func(k int, w []float32, ldw int, x []float32, out *[8]float32) {
		var r4 [4]float32
		dot4AVX2Go(k, w, ldw, x, &r4)
		copy(out[:4], r4[:])
		dot4AVX2Go(k, w[4*ldw:], ldw, x, &r4)
		copy(out[4:], r4[:])
	},
	dot4x4: func(k int, w []float32, ldw int, x []float32, ldx int, out *[16]float32) {
		var r4 [4]float32
		for s := range 4 {
			dot4AVX2Go(k, w, ldw, x[s*ldx:], &r4)
			copy(out[4*s:4*s+4], r4[:])
		}
	},
}

// dot4AVX2Go sets out[r] = Σ_p w[r*ldw+p]·x[p] for r < 4, with dot4AVX2 on the multiple of 16
// and Go on the rest of k.
func dot4AVX2Go(k int, w []float32, ldw int, x []float32, out *[4]float32) {
	kv := k &^ 15
	if kv > 0 {
		_, _ = w[3*ldw+kv-1], x[kv-1]
		dot4AVX2(kv, &w[0], ldw, &x[0], out)
	} else {
		*out = [4]float32{}
	}
	if kv < k {
		for r := range out {
			out[r] += dotGo(x[kv:k], w[r*ldw+kv:r*ldw+k])
		}
	}
}

// matmulCPUID executes CPUID with EAX=eaxArg, ECX=ecxArg.
//
//go:noescape
func matmulCPUID(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

// matmulXGETBV returns XCR0, the register of OS-enabled state components.
//
//go:noescape
func matmulXGETBV() (eax, edx uint32)

// gemm8x48AVX512 adds A·B to the 8×48 block of C at c (row stride ldc elements), where a is A
// packed k×8 (a[p*8+i]) and b is B packed k×48 (b[p*48+j]). It reads 8k and 48k elements and
// reads and writes 48 elements of each of 8 rows of C. k >= 1.
//
//go:noescape
func gemm8x48AVX512(k int, a, b, c *float32, ldc int)

// dot8AVX512 sets out[r] = Σ_p w[r*ldw+p]·x[p] for r < 8. k must be a multiple of 16.
//
//go:noescape
func dot8AVX512(k int, w *float32, ldw int, x *float32, out *[8]float32)

// dot4x4AVX512 sets out[4*s+r] = Σ_p w[r*ldw+p]·x[s*ldx+p] for r, s < 4. k must be a multiple
// of 16. It prefetches the same columns of w rows 8 to 11 (a hint, which cannot fault).
//
//go:noescape
func dot4x4AVX512(k int, w *float32, ldw int, x *float32, ldx int, out *[16]float32)

// gemm6x16AVX2 adds A·B to the 6×16 block of C at c (row stride ldc elements), where a is A
// packed k×6 (a[p*6+i]) and b is B packed k×16 (b[p*16+j]). k >= 1.
//
//go:noescape
func gemm6x16AVX2(k int, a, b, c *float32, ldc int)

// packBT48AVX512 sets dst[p*48+r] = src[r*lds+p] for r < 16, p < k: a third of a packed
// 48-column panel from a transposed B. k must be a multiple of 16.
//
//go:noescape
func packBT48AVX512(dst, src *float32, lds, k int)

// packBN48AVX512 sets dst[p*48+j] = src[p*lds+j] for j < 48, p < k.
//
//go:noescape
func packBN48AVX512(dst, src *float32, lds, k int)

// dot4AVX2 sets out[r] = Σ_p w[r*ldw+p]·x[p] for r < 4. k must be a multiple of 16.
//
//go:noescape
func dot4AVX2(k int, w *float32, ldw int, x *float32, out *[4]float32)
