package cpu

// Matrix multiplication for the linear layers: llm.c's matmul_forward and matmul_backward, each
// with its naive reference next to it.
//
// The fast versions reduce all three products to one packed GEMM, C(M,N) += A(M,K) · B(K,N), in
// the style of BLIS (Van Zee and van de Geijn, "BLIS: A Framework for Rapidly Instantiating BLAS
// Functionality", 2015):
//
//	forward          out(N,OC)      = inp(N,C)      · weight(OC,C)^T (+ bias)  M=N  K=C  N=OC
//	backward input   dinp(N,C)     += dout(N,OC)    · weight(OC,C)             M=N  K=OC N=C
//	backward weight  dweight(OC,C) += dout(N,OC)^T  · inp(N,C)                 M=OC K=N  N=C
//
// K is cut into blocks of at most gemmKC. Operands are packed per K block into panels of mr rows
// of A or nr columns of B, K-major and zero-padded, so that the micro-kernel reads both
// contiguously and keeps an mr×nr block of C in registers (8×48 with AVX-512, 6×16 with AVX2,
// 2×4 in Go). The smaller of M and N is packed once for all workers; the larger is cut into
// chunks of at most gemmChunk that GOMAXPROCS goroutines take from a shared counter, each
// packing its chunk of the other operand and computing its stripe of C over all of K. The
// micro-kernels and the transposing pack of the forward weight are assembly where the CPU has
// AVX-512 or AVX2 (matmul_amd64.s, chosen at run time) and Go otherwise.
//
// Forward with few rows (decode, N <= gemvMaxN) is bound by memory, not arithmetic: packing
// would copy the whole weight, so each output is instead the dot product of a weight row with an
// input row, tasks split OC, and the weight is streamed once.
//
// Numerics: every output is a float32 sum of the same products as the naive loops, in another
// order: per K block, with fused multiply-adds in the assembly kernels, and for the dot
// products in 16 (or 8) lanes added pairwise at the end. The order depends on the shape only,
// never on GOMAXPROCS, so results are reproducible. Against the naive loops the difference is a
// few float32 roundings of the partial sums (about 6e-8·sqrt(K)·|partial sum|; the blocked sums
// are usually the more accurate); the tests require 1e-5·(1+|want|) for sums of O(1) size.

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// matmulForwardNaive computes out(N,OC) = inp(N,C) · weight(OC,C)^T + bias(OC) with plain loops,
// as llm.c's matmul_forward_naive: an algorithmic reference, and a fallback. All matrices are
// row-major float32; bias may be nil. out is overwritten.
func matmulForwardNaive(out, inp, weight, bias []float32, N, C, OC int) {
	for n := range N {
		x := inp[n*C : n*C+C]
		for o := range OC {
			var val float32
			if bias != nil {
				val = bias[o]
			}
			w := weight[o*C : o*C+C]
			for i, xi := range x {
				val += xi * w[i]
			}
			out[n*OC+o] = val
		}
	}
}

// matmulBackwardInputNaive adds dout(N,OC) · weight(OC,C) into dinp(N,C) with plain loops, as
// llm.c's matmul_backward. All matrices are row-major float32; dinp is accumulated into (+=).
func matmulBackwardInputNaive(dinp, dout, weight []float32, N, C, OC int) {
	for n := range N {
		dx := dinp[n*C : n*C+C]
		for o := range OC {
			d := dout[n*OC+o]
			w := weight[o*C : o*C+C]
			for i, wi := range w {
				dx[i] += wi * d
			}
		}
	}
}

// matmulBackwardWeightNaive adds dout(N,OC)^T · inp(N,C) into dweight(OC,C) and the column sums of
// dout into dbias(OC), with plain loops as llm.c's matmul_backward. All matrices are row-major
// float32; dweight and dbias are accumulated into (+=); dbias may be nil.
func matmulBackwardWeightNaive(dweight, dbias, dout, inp []float32, N, C, OC int) {
	for o := range OC {
		dw := dweight[o*C : o*C+C]
		for n := range N {
			d := dout[n*OC+o]
			if dbias != nil {
				dbias[o] += d
			}
			x := inp[n*C : n*C+C]
			for i, xi := range x {
				dw[i] += xi * d
			}
		}
	}
}

// matmulForward computes out(N,OC) = inp(N,C) · weight(OC,C)^T + bias(OC), in parallel over
// GOMAXPROCS cores. weight is (OC,C) as PyTorch's nn.Linear; all matrices are row-major float32;
// bias may be nil. out is overwritten. Results match matmulForwardNaive up to float32 summation
// order (see the file comment).
func matmulForward(out, inp, weight, bias []float32, N, C, OC int) {
	matmulForwardWith(&matmulKernels, out, inp, weight, bias, N, C, OC)
}

// matmulBackwardInput adds dout(N,OC) · weight(OC,C) into dinp(N,C) (+=), in parallel over
// GOMAXPROCS cores. All matrices are row-major float32.
func matmulBackwardInput(dinp, dout, weight []float32, N, C, OC int) {
	matmulBackwardInputWith(&matmulKernels, dinp, dout, weight, N, C, OC)
}

// matmulBackwardWeight adds dout(N,OC)^T · inp(N,C) into dweight(OC,C) and the column sums of
// dout(N,OC) into dbias(OC) (both +=), in parallel over GOMAXPROCS cores. All matrices are
// row-major float32; dbias may be nil.
func matmulBackwardWeight(dweight, dbias, dout, inp []float32, N, C, OC int) {
	matmulBackwardWeightWith(&matmulKernels, dweight, dbias, dout, inp, N, C, OC)
}

// matmulForwardWith is matmulForward on the kernels ks (tests run every kernel set the CPU has).
func matmulForwardWith(ks *gemmKernels, out, inp, weight, bias []float32, N, C, OC int) {
	if N <= 0 || OC <= 0 {
		return
	}
	out, inp, weight = out[:N*OC], inp[:N*C], weight[:OC*C]
	if bias != nil {
		bias = bias[:OC]
	}
	if N <= gemvMaxN {
		gemvForward(gemvKernels[float32]{ks.dot8, ks.dot4x4, dotGo}, out, inp, weight, bias, N, C, OC)
		return
	}
	gemm(ks, &gemmOp{
		m: N, n: OC, k: C,
		a: inp, lda: C,
		b: weight, ldb: C, bTrans: true,
		c: out, ldc: OC,
		init: true, bias: bias,
	})
}

// matmulBackwardInputWith is matmulBackwardInput on the kernels ks.
func matmulBackwardInputWith(ks *gemmKernels, dinp, dout, weight []float32, N, C, OC int) {
	if N <= 0 || C <= 0 || OC <= 0 {
		return
	}
	gemm(ks, &gemmOp{
		m: N, n: C, k: OC,
		a: dout[:N*OC], lda: OC,
		b: weight[:OC*C], ldb: C,
		c: dinp[:N*C], ldc: C,
	})
}

// matmulBackwardWeightWith is matmulBackwardWeight on the kernels ks.
func matmulBackwardWeightWith(ks *gemmKernels, dweight, dbias, dout, inp []float32, N, C, OC int) {
	if N <= 0 || OC <= 0 {
		return
	}
	dout = dout[:N*OC]
	if dbias != nil {
		dbias = dbias[:OC]
		// Column sums of dout, split over OC so that each dbias element has one writer and
		// keeps the naive order (n ascending).
		tasks := 1
		if N*OC >= 1<<16 {
			tasks = gemmTasks(OC, 256, OC)
		}
		gemmFor(OC, tasks, func(lo, hi int) {
			for n := range N {
				d := dout[n*OC+lo : n*OC+hi]
				db := dbias[lo:hi]
				for i, v := range d {
					db[i] += v
				}
			}
		})
	}
	if C <= 0 {
		return
	}
	gemm(ks, &gemmOp{
		m: OC, n: C, k: N,
		a: dout, lda: OC, aTrans: true,
		b: inp[:N*C], ldb: C,
		c: dweight[:OC*C], ldc: C,
	})
}

// Block sizes of the packed GEMM, in elements.
const (
	// gemmKC is the depth of a K block. One packed panel of A (mr×gemmKC) and one of B
	// (gemmKC×nr), what a micro-kernel call reads, fit in L1 together (28 KiB for 8×48);
	// 96 to 256 measured within noise of each other on Zen 5.
	gemmKC = 128
	// gemmChunk is the most rows or columns of the larger dimension one task owns: its packed
	// block, chunk×kc (240 KiB), stays in L2 while the shared operand streams past it.
	gemmChunk = 480
	// gemmStripe bounds a task's stripe of C (elements, 256 KiB), which is read and written
	// once per K block and should stay in L2.
	gemmStripe = 1 << 16
	// gemmSharedMax bounds the packed shared operand (elements): beyond it K is processed in
	// super-blocks, each packed and multiplied in turn.
	gemmSharedMax = 1 << 22
	// gemmMinFlops is the size (2·M·N·K) below which a GEMM runs on the calling goroutine:
	// starting a worker costs a few microseconds.
	gemmMinFlops = 1 << 21
	// gemvMaxN is the largest N for which matmulForward computes dot products instead of
	// packing the weight.
	gemvMaxN = 8
)

// gemmOp describes C(m,n) += A(m,k) · B(k,n) over row-major float32 storage.
type gemmOp struct {
	m, n, k int
	// A[i][p] is a[i*lda+p], or a[p*lda+i] if aTrans.
	a      []float32
	lda    int
	aTrans bool
	// B[p][j] is b[p*ldb+j], or b[j*ldb+p] if bTrans.
	b      []float32
	ldb    int
	bTrans bool
	// C[i][j] is c[i*ldc+j].
	c   []float32
	ldc int
	// init makes the product overwrite C with bias(n) (zero if bias is nil) + A·B instead of
	// adding to it.
	init bool
	bias []float32
}

// gemmKernels is a set of micro-kernels with the panel sizes they need.
type gemmKernels struct {
	name string
	// mr and nr are the rows of A and the columns of B in one packed panel.
	mr, nr int
	// gemm adds A·B to the mr×nr block of C at c (row stride ldc), where a is k×mr (A packed
	// K-major, a[p*mr+i] = A[i][p]) and b is k×nr (b[p*nr+j] = B[p][j]).
	gemm func(k int, a, b, c []float32, ldc int)
	// dot8 sets out[r] = Σ_p w[r*ldw+p]·x[p] for r < 8.
	dot8 func(k int, w []float32, ldw int, x []float32, out *[8]float32)
	// dot4x4 sets out[4*s+r] = Σ_p w[r*ldw+p]·x[s*ldx+p] for r, s < 4.
	dot4x4 func(k int, w []float32, ldw int, x []float32, ldx int, out *[16]float32)
	// packBT, if not nil, packs a full panel of a transposed B: dst[p*nr+j] = b[j*ldb+p] for
	// j < nr, p < k.
	packBT func(dst, b []float32, ldb, k int)
	// packBN, if not nil, packs a full panel of a row-major B: dst[p*nr+j] = b[p*ldb+j] for
	// j < nr, p < k.
	packBN func(dst, b []float32, ldb, k int)
}

// gemmGo is the portable micro-kernel set, used where no assembly kernel applies.
var gemmGo = gemmKernels{
	name: "go", mr: 2, nr: 4,
	gemm:   gemmKernel2x4Go,
	dot8:   dot8Go,
	dot4x4: dot4x4Go,
}

// gemmBuf is reusable packing space, aligned to 64 bytes.
type gemmBuf struct {
	f   []float32 // the aligned part of raw in use
	raw []float32
}

var gemmBufs = sync.Pool{New: func() any { return new(gemmBuf) }}

// grow makes g.f n elements long, starting on a 64-byte boundary.
func (g *gemmBuf) grow(n int) []float32 {
	const pad = 16 // floats per 64 bytes
	if cap(g.raw) < n+pad {
		g.raw = make([]float32, n+pad)
	}
	off := int((64 - uintptr(unsafe.Pointer(&g.raw[0]))%64) % 64 / 4)
	g.f = g.raw[off : off+n : off+n]
	return g.f
}

// gemmTasks returns how many tasks of at least minItems items (and, if the work allows, of
// about maxItems) to cut n items into: enough for every worker to get several.
func gemmTasks(n, minItems, maxItems int) int {
	workers := runtime.GOMAXPROCS(0)
	maxItems = max(maxItems, 1)
	t := max((n+maxItems-1)/maxItems, 1)
	if workers > 1 {
		t = max(t, min(4*workers, n/max(minItems, 1)))
	}
	return t
}

// gemmFor runs fn(lo, hi) over tasks contiguous, nearly equal ranges of [0, n) (at least one,
// possibly empty), in parallel as gemmRun.
func gemmFor(n, tasks int, fn func(lo, hi int)) {
	tasks = max(tasks, 1)
	gemmRun(tasks, runtime.GOMAXPROCS(0), func(_ *gemmBuf, t int) { fn(t*n/tasks, (t+1)*n/tasks) })
}

// gemmRun runs task(buf, t) for t in [0, tasks) on min(workers, tasks) goroutines that take
// task numbers from a shared counter; the calling goroutine is one of them. Each goroutine has
// its own scratch space buf.
func gemmRun(tasks, workers int, task func(buf *gemmBuf, t int)) {
	workers = min(workers, tasks)
	var next atomic.Int64
	work := func() {
		buf := gemmBufs.Get().(*gemmBuf)
		for {
			t := int(next.Add(1) - 1)
			if t >= tasks {
				break
			}
			task(buf, t)
		}
		gemmBufs.Put(buf)
	}
	if workers <= 1 {
		work()
		return
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}

// gemm runs op with the kernels ks.
//
// The smaller of M and N is the shared side: its operand (A if M <= N, else B) is packed once
// per K block for all tasks. The larger side is cut into chunks of at most gemmChunk, one task
// each; a task packs its chunk of the other operand per K block and computes its chunk×shared
// stripe of C over all of K. With K blocks inside tasks, every element of C has one writer and
// is summed in the same order whatever the number of workers.
func gemm(ks *gemmKernels, op *gemmOp) {
	m, n, k := op.m, op.n, op.k
	if m <= 0 || n <= 0 {
		return
	}
	if op.init {
		// Every task sets its stripe of C before accumulating; with k == 0 there is
		// nothing else to do.
		if k <= 0 {
			gemmInit(op, 0, m, 0, n)
			return
		}
	}
	if k <= 0 {
		return
	}
	mr, nr := ks.mr, ks.nr
	workers := runtime.GOMAXPROCS(0)
	if 2*float64(m)*float64(n)*float64(k) < gemmMinFlops {
		workers = 1
	}
	sharedA := m <= n
	sharedLen, chunkLen, sp, cp := m, n, mr, nr // lengths and panel sizes
	if !sharedA {
		sharedLen, chunkLen, sp, cp = n, m, nr, mr
	}
	sharedPanels := (sharedLen + sp - 1) / sp
	chunkPanels := (chunkLen + cp - 1) / cp

	// Chunks of the larger side: at most gemmChunk, at most a gemmStripe of C (which every K
	// block reads and writes), and about four per worker.
	maxChunk := max(cp, min(gemmChunk, gemmStripe/sharedLen)/cp*cp)
	tasks := (chunkLen + maxChunk - 1) / maxChunk
	if workers > 1 {
		tasks = max(tasks, min(4*workers, chunkPanels))
	}
	chunk := cp * ((chunkPanels + tasks - 1) / tasks)
	tasks = (chunkLen + chunk - 1) / chunk

	// K blocks, balanced, at most gemmKC; super-blocks of them bound the shared packing.
	blocksK := (k + gemmKC - 1) / gemmKC
	kc := (k + blocksK - 1) / blocksK
	blockLen := sharedPanels * sp * kc // one packed K block of the shared operand
	perSuper := max(1, min(blocksK, gemmSharedMax/blockLen))

	shared := gemmBufs.Get().(*gemmBuf)
	defer gemmBufs.Put(shared)
	for b0 := 0; b0 < blocksK; b0 += perSuper {
		b1 := min(b0+perSuper, blocksK)
		sbuf := shared.grow((b1 - b0) * blockLen)
		// Pack the shared operand, K block by K block, panel by panel.
		units := (b1 - b0) * sharedPanels
		packTasks := 1
		if workers > 1 {
			packTasks = min(units, 4*workers)
		}
		gemmRun(packTasks, workers, func(_ *gemmBuf, t int) {
			for u := t * units / packTasks; u < (t+1)*units/packTasks; u++ {
				b, pnl := b0+u/sharedPanels, u%sharedPanels
				p0 := b * kc
				kEff := min(kc, k-p0)
				dst := sbuf[(b-b0)*blockLen+pnl*sp*kEff:][:sp*kEff]
				if sharedA {
					packAPanel(dst, op, pnl*mr, min(mr, m-pnl*mr), p0, kEff, mr)
				} else {
					packBPanel(ks, dst, op, pnl*nr, min(nr, n-pnl*nr), p0, kEff)
				}
			}
		})
		first := b0 == 0
		gemmRun(tasks, workers, func(buf *gemmBuf, t int) {
			c0 := t * chunk
			cLen := min(chunk, chunkLen-c0)
			if first && op.init {
				if sharedA {
					gemmInit(op, 0, m, c0, c0+cLen)
				} else {
					gemmInit(op, c0, c0+cLen, 0, n)
				}
			}
			own := buf.grow(roundUp(cLen, cp) * kc)
			for b := b0; b < b1; b++ {
				p0 := b * kc
				kEff := min(kc, k-p0)
				sblk := sbuf[(b-b0)*blockLen:][:sharedPanels*sp*kEff]
				oblk := own[:roundUp(cLen, cp)*kEff]
				if sharedA {
					for j := 0; j < cLen; j += nr {
						packBPanel(ks, oblk[j*kEff:(j+nr)*kEff], op, c0+j, min(nr, cLen-j), p0, kEff)
					}
					gemmMacro(ks, op, kEff, sblk, 0, m, oblk, c0, c0+cLen, true)
				} else {
					for i := 0; i < cLen; i += mr {
						packAPanel(oblk[i*kEff:(i+mr)*kEff], op, c0+i, min(mr, cLen-i), p0, kEff, mr)
					}
					gemmMacro(ks, op, kEff, oblk, c0, c0+cLen, sblk, 0, n, false)
				}
			}
		})
	}
}

// gemmInit sets rows [i0, i1) and columns [j0, j1) of C to the bias (or zero).
func gemmInit(op *gemmOp, i0, i1, j0, j1 int) {
	for i := i0; i < i1; i++ {
		row := op.c[i*op.ldc+j0 : i*op.ldc+j1]
		if op.bias != nil {
			copy(row, op.bias[j0:j1])
		} else {
			clear(row)
		}
	}
}

// gemmMacro adds A(rows i0..i1) · B(columns j0..j1) over one K block of depth kEff to C, where
// ap holds the packed A panels from row i0 on and bp the packed B panels from column j0 on.
// The operand that the task packed itself (and holds in L2) is swept by each panel of the
// shared one, which is thus read once: with aOuter, each A panel (in L1) meets every B panel.
func gemmMacro(ks *gemmKernels, op *gemmOp, kEff int, ap []float32, i0, i1 int, bp []float32, j0, j1 int, aOuter bool) {
	mr, nr := ks.mr, ks.nr
	if aOuter {
		for i := i0; i < i1; i += mr {
			for j := j0; j < j1; j += nr {
				gemmBlock(ks, op, kEff, ap[(i-i0)*kEff:(i-i0+mr)*kEff], i, min(mr, i1-i), bp[(j-j0)*kEff:(j-j0+nr)*kEff], j, min(nr, j1-j))
			}
		}
		return
	}
	for j := j0; j < j1; j += nr {
		for i := i0; i < i1; i += mr {
			gemmBlock(ks, op, kEff, ap[(i-i0)*kEff:(i-i0+mr)*kEff], i, min(mr, i1-i), bp[(j-j0)*kEff:(j-j0+nr)*kEff], j, min(nr, j1-j))
		}
	}
}

// gemmBlock adds the product of one packed A panel and one packed B panel to the mrEff×nrEff
// block of C at (i, j).
func gemmBlock(ks *gemmKernels, op *gemmOp, kEff int, apan []float32, i, mrEff int, bpan []float32, j, nrEff int) {
	mr, nr, ldc, c := ks.mr, ks.nr, op.ldc, op.c
	off := i*ldc + j
	if mrEff == mr && nrEff == nr {
		ks.gemm(kEff, apan, bpan, c[off:], ldc)
		return
	}
	// Edge block: compute the whole mr×nr block aside, add the part inside C. (The largest
	// kernel is 8×48.)
	var tile [8 * 48]float32
	t := tile[:mr*nr]
	ks.gemm(kEff, apan, bpan, t, nr)
	for r := range mrEff {
		dst := c[off+r*ldc : off+r*ldc+nrEff]
		for jj, v := range t[r*nr : r*nr+nrEff] {
			dst[jj] += v
		}
	}
}

// packAPanel copies rows [i0, i0+rows) and columns [p0, p0+kEff) of A into dst, K-major
// (dst[p*mr+i]), zero-filling rows past rows up to mr.
func packAPanel(dst []float32, op *gemmOp, i0, rows, p0, kEff, mr int) {
	a, lda := op.a, op.lda
	dst = dst[:kEff*mr]
	if op.aTrans {
		// A[i][p] = a[p*lda+i]: each p is a contiguous run of rows.
		if rows == 8 && mr == 8 {
			for p := range kEff {
				s := a[(p0+p)*lda+i0 : (p0+p)*lda+i0+8 : (p0+p)*lda+i0+8]
				d := dst[p*8 : p*8+8 : p*8+8]
				d[0], d[1], d[2], d[3] = s[0], s[1], s[2], s[3]
				d[4], d[5], d[6], d[7] = s[4], s[5], s[6], s[7]
			}
			return
		}
		for p := range kEff {
			d := dst[p*mr : p*mr+mr]
			copy(d, a[(p0+p)*lda+i0:(p0+p)*lda+i0+rows])
			clear(d[rows:])
		}
		return
	}
	// A[i][p] = a[i*lda+p]: transpose rows into the panel.
	if rows == 8 && mr == 8 {
		r0 := a[(i0+0)*lda+p0 : (i0+0)*lda+p0+kEff]
		r1 := a[(i0+1)*lda+p0 : (i0+1)*lda+p0+kEff]
		r2 := a[(i0+2)*lda+p0 : (i0+2)*lda+p0+kEff]
		r3 := a[(i0+3)*lda+p0 : (i0+3)*lda+p0+kEff]
		r4 := a[(i0+4)*lda+p0 : (i0+4)*lda+p0+kEff]
		r5 := a[(i0+5)*lda+p0 : (i0+5)*lda+p0+kEff]
		r6 := a[(i0+6)*lda+p0 : (i0+6)*lda+p0+kEff]
		r7 := a[(i0+7)*lda+p0 : (i0+7)*lda+p0+kEff]
		for p := range r0 {
			d := dst[p*8 : p*8+8 : p*8+8]
			d[0], d[1], d[2], d[3] = r0[p], r1[p], r2[p], r3[p]
			d[4], d[5], d[6], d[7] = r4[p], r5[p], r6[p], r7[p]
		}
		return
	}
	for i := range rows {
		src := a[(i0+i)*lda+p0 : (i0+i)*lda+p0+kEff]
		for p, v := range src {
			dst[p*mr+i] = v
		}
	}
	for i := rows; i < mr; i++ {
		for p := range kEff {
			dst[p*mr+i] = 0
		}
	}
}

// packBPanel copies rows [p0, p0+kEff) and columns [j0, j0+cols) of B into dst, K-major
// (dst[p*nr+j]), zero-filling columns past cols up to nr = ks.nr.
func packBPanel(ks *gemmKernels, dst []float32, op *gemmOp, j0, cols, p0, kEff int) {
	b, ldb, nr := op.b, op.ldb, ks.nr
	dst = dst[:kEff*nr]
	if op.bTrans && cols == nr && ks.packBT != nil {
		ks.packBT(dst, b[j0*ldb+p0:], ldb, kEff)
		return
	}
	if !op.bTrans && cols == nr && ks.packBN != nil {
		ks.packBN(dst, b[p0*ldb+j0:], ldb, kEff)
		return
	}
	if !op.bTrans {
		for p := range kEff {
			d := dst[p*nr : p*nr+nr]
			copy(d, b[(p0+p)*ldb+j0:(p0+p)*ldb+j0+cols])
			clear(d[cols:])
		}
		return
	}
	// B[p][j] = b[j*ldb+p]: transpose, eight source rows in step.
	j := 0
	for ; j+8 <= cols; j += 8 {
		s0 := b[(j0+j+0)*ldb+p0 : (j0+j+0)*ldb+p0+kEff]
		s1 := b[(j0+j+1)*ldb+p0 : (j0+j+1)*ldb+p0+kEff]
		s2 := b[(j0+j+2)*ldb+p0 : (j0+j+2)*ldb+p0+kEff]
		s3 := b[(j0+j+3)*ldb+p0 : (j0+j+3)*ldb+p0+kEff]
		s4 := b[(j0+j+4)*ldb+p0 : (j0+j+4)*ldb+p0+kEff]
		s5 := b[(j0+j+5)*ldb+p0 : (j0+j+5)*ldb+p0+kEff]
		s6 := b[(j0+j+6)*ldb+p0 : (j0+j+6)*ldb+p0+kEff]
		s7 := b[(j0+j+7)*ldb+p0 : (j0+j+7)*ldb+p0+kEff]
		for p := range s0 {
			d := dst[p*nr+j : p*nr+j+8 : p*nr+j+8]
			d[0], d[1], d[2], d[3] = s0[p], s1[p], s2[p], s3[p]
			d[4], d[5], d[6], d[7] = s4[p], s5[p], s6[p], s7[p]
		}
	}
	for ; j < cols; j++ {
		src := b[(j0+j)*ldb+p0 : (j0+j)*ldb+p0+kEff]
		for p, v := range src {
			dst[p*nr+j] = v
		}
	}
	for ; j < nr; j++ {
		for p := range kEff {
			dst[p*nr+j] = 0
		}
	}
}

// gemvKernels are the dot products gemvForward runs, over weights of element type W: float32, or
// uint16 bfloat16 bit patterns (see bf16.go).
type gemvKernels[W float32 | uint16] struct {
	// dot8 sets out[r] = Σ_p w[r*ldw+p]·x[p] for r < 8.
	dot8 func(k int, w []W, ldw int, x []float32, out *[8]float32)
	// dot4x4 sets out[4*s+r] = Σ_p w[r*ldw+p]·x[s*ldx+p] for r, s < 4.
	dot4x4 func(k int, w []W, ldw int, x []float32, ldx int, out *[16]float32)
	// dot returns Σ_p x[p]·w[p] for one row (the last OC%8 rows); len(w) >= len(x).
	dot func(x []float32, w []W) float32
}

// gemvForward is matmulForward for few rows (N <= gemvMaxN): each output is the dot product of a
// weight row with an input row, computed in groups of 8 weight rows so that a group is read from
// memory once and from L1 for the other input rows. Tasks are ranges of OC, so that even N=1
// uses every core.
func gemvForward[W float32 | uint16](ks gemvKernels[W], out, inp []float32, weight []W, bias []float32, N, C, OC int) {
	groups := OC / 8
	// At least about 2048/C groups per task (64 KiB of float32 weight, 32 KiB of bfloat16); four
	// tasks per worker if there is enough.
	minGroups := max(1, 2048/max(C, 1))
	tasks := 1
	if 2*float64(N)*float64(C)*float64(OC) >= gemmMinFlops && groups > 0 {
		tasks = gemmTasks(groups, minGroups, groups)
	}
	gemmFor(groups, tasks, func(g0, g1 int) {
		var r16 [16]float32
		var r8, b8 [8]float32
		for o := 8 * g0; o < 8*g1; o += 8 {
			w := weight[o*C : (o+8)*C]
			if bias != nil {
				copy(b8[:], bias[o:o+8])
			}
			n := 0
			for ; n+4 <= N; n += 4 {
				x := inp[n*C : (n+4)*C]
				for h := 0; h < 8; h += 4 {
					ks.dot4x4(C, w[h*C:], C, x, C, &r16)
					for s := range 4 {
						d, r := out[(n+s)*OC+o+h:(n+s)*OC+o+h+4], r16[4*s:4*s+4]
						d[0], d[1], d[2], d[3] = r[0]+b8[h], r[1]+b8[h+1], r[2]+b8[h+2], r[3]+b8[h+3]
					}
				}
			}
			for ; n < N; n++ {
				ks.dot8(C, w, C, inp[n*C:(n+1)*C], &r8)
				d := out[n*OC+o : n*OC+o+8]
				for r, v := range r8 {
					d[r] = v + b8[r]
				}
			}
		}
		if g1 == groups {
			// The last OC%8 rows.
			for o := 8 * groups; o < OC; o++ {
				w := weight[o*C : (o+1)*C]
				var b float32
				if bias != nil {
					b = bias[o]
				}
				for n := range N {
					out[n*OC+o] = ks.dot(inp[n*C:(n+1)*C], w) + b
				}
			}
		}
	})
}

// roundUp rounds n up to a multiple of m.
func roundUp(n, m int) int { return (n + m - 1) / m * m }

// gemmKernel2x4Go is the portable micro-kernel: C[i][j] += Σ_p a[p*2+i]·b[p*4+j] for i < 2,
// j < 4, c row-major with stride ldc. Its 8 sums and 6 operands fit in the 15 registers the Go
// compiler allocates on amd64; a 4×4 block spills and runs at half the speed.
func gemmKernel2x4Go(k int, a, b, c []float32, ldc int) {
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	a, b = a[:2*k], b[:4*k]
	for p := range k {
		ap, bp := a[2*p:2*p+2:2*p+2], b[4*p:4*p+4:4*p+4]
		a0, a1 := ap[0], ap[1]
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

// dotGo returns Σ_i x[i]·y[i] for len(x) <= len(y), with four partial sums.
func dotGo(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		xs, ys := x[i:i+4:i+4], y[i:i+4:i+4]
		s0 += xs[0] * ys[0]
		s1 += xs[1] * ys[1]
		s2 += xs[2] * ys[2]
		s3 += xs[3] * ys[3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// dot8Go is the portable dot8: out[r] = Σ_p w[r*ldw+p]·x[p] for r < 8.
func dot8Go(k int, w []float32, ldw int, x []float32, out *[8]float32) {
	x = x[:k]
	for r := range out {
		out[r] = dotGo(x, w[r*ldw:r*ldw+k])
	}
}

// dot4x4Go is the portable dot4x4: out[4*s+r] = Σ_p w[r*ldw+p]·x[s*ldx+p] for r, s < 4.
func dot4x4Go(k int, w []float32, ldw int, x []float32, ldx int, out *[16]float32) {
	for r := range 4 {
		for s := range 4 {
			out[4*s+r] = dotGo(w[r*ldw:r*ldw+k], x[s*ldx:s*ldx+k])
		}
	}
}
