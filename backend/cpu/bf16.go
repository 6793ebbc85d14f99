package cpu

// bfloat16 matmul weights for inference ([backend.BF16Weights]): the weight is stored as the upper
// 16 bits of each float32, widened exactly to float32 as it is read, and multiplied and summed in
// float32 as in matmul.go.
//
// Decode (N <= gemvMaxN) is bound by the bytes of weight it streams, so it runs the dot products
// of gemvForward on the 16-bit weights directly: the assembly kernels (bf16_amd64.s) widen 16
// weights with one vpmovzxwd and a vpslld by 16, then fuse the multiply-add as the float32
// kernels do, and read half the bytes. Larger N (prefill) is bound by arithmetic, so it widens a
// block of weight rows into float32 and runs the packed GEMM on it: a little slower than float32
// weights, by the cost of the widening.

import (
	"fmt"

	"github.com/modeld-dev/modeld/backend"
)

var _ backend.BF16Weights = (*Backend)(nil)

// bf16Buffer is host memory of bfloat16 bit patterns.
type bf16Buffer struct{ h []uint16 }

func (b *bf16Buffer) DType() backend.DType { return backend.BF16 }
func (b *bf16Buffer) Len() int             { return len(b.h) }

func (b *bf16Buffer) Slice(off, n int) backend.Buffer {
	if off < 0 || n < 0 || off+n > len(b.h) {
		panic(fmt.Sprintf("cpu: Slice(%d, %d) of a buffer of %d elements", off, n, len(b.h)))
	}
	return &bf16Buffer{h: b.h[off : off+n : off+n]}
}

// AllocBF16 implements backend.BF16Weights: a zeroed host buffer of n bfloat16 elements. It fails
// for a negative size.
func (b *Backend) AllocBF16(n int) (backend.Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("cpu: alloc of %d elements", n)
	}
	return &bf16Buffer{h: make([]uint16, n)}, nil
}

// UploadBF16 implements backend.BF16Weights.
func (b *Backend) UploadBF16(dst backend.Buffer, src []uint16) {
	copy(b.bf16("UploadBF16", "dst", dst, len(src)), src)
}

// bf16 returns buf's elements after checking that it is a BF16 buffer of this backend with
// exactly n elements; on a mismatch it records the error and returns nil.
func (b *Backend) bf16(kernel, arg string, buf backend.Buffer, n int) []uint16 {
	x, ok := buf.(*bf16Buffer)
	switch {
	case !ok || x == nil:
		b.fail("%s: %s is not a cpu bf16 buffer (%T)", kernel, arg, buf)
	case len(x.h) != n:
		b.fail("%s: %s has %d elements, want %d", kernel, arg, len(x.h), n)
	default:
		return x.h
	}
	return nil
}

// MatmulForwardBF16 implements backend.BF16Weights.
func (b *Backend) MatmulForwardBF16(out, inp, weight, bias backend.Buffer, N, C, OC int) {
	const k = "MatmulForwardBF16"
	if b.err != nil {
		return
	}
	o, x, w := b.f32(k, "out", out, N*OC), b.f32(k, "inp", inp, N*C), b.bf16(k, "weight", weight, OC*C)
	bs := b.optF32(k, "bias", bias, OC)
	if b.err != nil {
		return
	}
	if b.fast {
		matmulForwardBF16(&bf16Kernels, o, x, w, bs, N, C, OC)
	} else {
		matmulForwardBF16Naive(o, x, w, bs, N, C, OC)
	}
}

// matmulForwardBF16Naive computes out(N,OC) = inp(N,C) · weight(OC,C)^T + bias(OC) with plain
// loops, weight in bfloat16 bit patterns widened to float32: the reference of the fast version.
// bias may be nil; out is overwritten.
func matmulForwardBF16Naive(out, inp []float32, weight []uint16, bias []float32, N, C, OC int) {
	for n := range N {
		x := inp[n*C : n*C+C]
		for o := range OC {
			var val float32
			if bias != nil {
				val = bias[o]
			}
			w := weight[o*C : o*C+C]
			for i, xi := range x {
				val += xi * backend.F32FromBF16(w[i])
			}
			out[n*OC+o] = val
		}
	}
}

// bf16KernelSet holds the kernels of the bfloat16-weight forward for one instruction set: the
// dot products of gemvForward over bfloat16 weights (decode), and the widening of weight rows to
// float32 for the packed GEMM (prefill).
type bf16KernelSet struct {
	name string
	gemvKernels[uint16]
	// widen sets dst[i] = float32(src[i]) for i < len(dst).
	widen func(dst []float32, src []uint16)
}

// bf16Kernels is the kernel set that MatmulForwardBF16 uses: the widest this CPU runs.
var bf16Kernels = bf16KernelSets()[0]

// bf16Go is the portable kernel set.
var bf16Go = bf16KernelSet{
	name:        "go",
	gemvKernels: gemvKernels[uint16]{dot8: dot8BF16Go, dot4x4: dot4x4BF16Go, dot: dotBF16Go},
	widen:       widenBF16Go,
}

// matmulForwardBF16 computes out(N,OC) = inp(N,C) · weight(OC,C)^T + bias(OC) with weight in
// bfloat16 bit patterns, in parallel over GOMAXPROCS cores, with the kernels ks. bias may be nil;
// out is overwritten. Results match matmulForwardBF16Naive up to float32 summation order, as
// matmulForward's match matmulForwardNaive.
func matmulForwardBF16(ks *bf16KernelSet, out, inp []float32, weight []uint16, bias []float32, N, C, OC int) {
	if N <= 0 || OC <= 0 {
		return
	}
	out, inp, weight = out[:N*OC], inp[:N*C], weight[:OC*C]
	if bias != nil {
		bias = bias[:OC]
	}
	if N <= gemvMaxN {
		gemvForward(ks.gemvKernels, out, inp, weight, bias, N, C, OC)
		return
	}
	if C <= 0 {
		gemm(&matmulKernels, &gemmOp{m: N, n: OC, c: out, ldc: OC, init: true, bias: bias})
		return
	}
	// Blocks of weight rows, widened to float32 (about 4 MB, a multiple of the widest panel),
	// each multiplied by the packed GEMM into its columns of out.
	rows := max(48, (1<<20)/C/48*48)
	buf := gemmBufs.Get().(*gemmBuf)
	defer gemmBufs.Put(buf)
	wf := buf.grow(min(rows, OC) * C)
	for o0 := 0; o0 < OC; o0 += rows {
		n := min(rows, OC-o0)
		w, src := wf[:n*C], weight[o0*C:(o0+n)*C]
		gemmFor(n, gemmTasks(n, 16, n), func(lo, hi int) { ks.widen(w[lo*C:hi*C], src[lo*C:hi*C]) })
		op := &gemmOp{
			m: N, n: n, k: C,
			a: inp, lda: C,
			b: w, ldb: C, bTrans: true,
			c: out[o0:], ldc: OC,
			init: true,
		}
		if bias != nil {
			op.bias = bias[o0 : o0+n]
		}
		gemm(&matmulKernels, op)
	}
}

// dotBF16Go returns Σ_i x[i]·float32(w[i]) for len(x) <= len(w), with four partial sums.
func dotBF16Go(x []float32, w []uint16) float32 {
	w = w[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		xs, ws := x[i:i+4:i+4], w[i:i+4:i+4]
		s0 += xs[0] * backend.F32FromBF16(ws[0])
		s1 += xs[1] * backend.F32FromBF16(ws[1])
		s2 += xs[2] * backend.F32FromBF16(ws[2])
		s3 += xs[3] * backend.F32FromBF16(ws[3])
	}
	for ; i < len(x); i++ {
		s0 += x[i] * backend.F32FromBF16(w[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// dot8BF16Go is the portable dot8.
func dot8BF16Go(k int, w []uint16, ldw int, x []float32, out *[8]float32) {
	x = x[:k]
	for r := range out {
		out[r] = dotBF16Go(x, w[r*ldw:r*ldw+k])
	}
}

// dot4x4BF16Go is the portable dot4x4.
func dot4x4BF16Go(k int, w []uint16, ldw int, x []float32, ldx int, out *[16]float32) {
	for r := range 4 {
		for s := range 4 {
			out[4*s+r] = dotBF16Go(x[s*ldx:s*ldx+k], w[r*ldw:r*ldw+k])
		}
	}
}

// widenBF16Go is the portable widen.
func widenBF16Go(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = backend.F32FromBF16(h)
	}
}
