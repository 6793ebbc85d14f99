package cuda

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/modeld-dev/modeld/backend"
)

// GPU benchmarks, timed with CUDA events around the work of each iteration (the GPU's time,
// not the host's), and synced inside the loop:
//
//	go test ./backend/cuda -run x -bench . -benchtime 20x

// timer measures GPU time between two events recorded on the device's stream.
type timer struct {
	d          *device
	start, end uintptr
	ms         float64 // summed over iterations
}

func newTimer(b *testing.B, d *device) *timer {
	b.Helper()
	t := &timer{d: d}
	err := d.do(func() error {
		if err := d.drv.check("cuEventCreate", d.drv.eventCreate(&t.start, eventDefault)); err != nil {
			return err
		}
		return d.drv.check("cuEventCreate", d.drv.eventCreate(&t.end, eventDefault))
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		d.do(func() error {
			d.drv.eventDestroy(t.start)
			d.drv.eventDestroy(t.end)
			return nil
		})
	})
	return t
}

// time runs enqueue (which queues GPU work on h) between the two events, waits, and adds the
// elapsed GPU time.
func (t *timer) time(b *testing.B, h *Backend, enqueue func()) {
	h.enqueue(h.call(func(d *device) error { return d.drv.check("cuEventRecord", d.drv.eventRecord(t.start, d.stream)) }))
	enqueue()
	h.enqueue(h.call(func(d *device) error { return d.drv.check("cuEventRecord", d.drv.eventRecord(t.end, d.stream)) }))
	if err := h.Sync(b.Context()); err != nil {
		b.Fatal(err)
	}
	var ms float32
	err := t.d.do(func() error {
		return t.d.drv.check("cuEventElapsedTime", t.d.drv.eventElapsedTime(&ms, t.start, t.end))
	})
	if err != nil {
		b.Fatal(err)
	}
	t.ms += float64(ms)
}

// report reports the mean GPU time per iteration and, for flops > 0 per iteration, TFLOP/s.
func (t *timer) report(b *testing.B, flops float64) {
	if b.N == 0 || t.ms == 0 {
		return
	}
	per := t.ms / float64(b.N)
	b.ReportMetric(per, "gpu-ms/op")
	if flops > 0 {
		b.ReportMetric(flops/(per/1e3)/1e12, "TFLOP/s")
	}
}

// benchBuffers allocates F32 buffers of the given sizes on h, filled with values uniform in
// [-1, 1) (cheap to make: the LM head shape has 200M of them).
func benchBuffers(b *testing.B, h *Backend, sizes ...int) []backend.Buffer {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	bufs := make([]backend.Buffer, len(sizes))
	for i, n := range sizes {
		buf, err := h.Alloc(backend.F32, n)
		if err != nil {
			b.Fatal(err)
		}
		host := make([]float32, n)
		for j := range host {
			host[j] = rng.Float32()*2 - 1
		}
		h.Upload(buf, host)
		if err := h.Sync(b.Context()); err != nil {
			b.Fatal(err)
		}
		bufs[i] = buf
	}
	return bufs
}

// BenchmarkGEMM measures out(N,OC) = inp(N,C)·weight(OC,C)^T at the GPT-2 124M shapes (the
// qkv, MLP-up, attention and MLP-down projections and the LM head over 4096 tokens) and 4096^3,
// in fp32 and TF32. impl=modeld is MatmulForward through the backend (Go, the worker, the
// wrapper); impl=cublas is the same GEMM as one plain cublasSgemm_v2 (fp32) or cublasGemmEx
// (TF32) call on the worker: cuBLAS's own best, so modeld/cublas is our overhead.
func BenchmarkGEMM(b *testing.B) {
	d := needDevice(b)
	for _, sh := range []struct{ N, C, OC int }{
		{4096, 768, 2304}, {4096, 768, 3072}, {4096, 3072, 768}, {4096, 768, 768}, {4096, 768, 50257}, {4096, 4096, 4096},
	} {
		for _, tf32 := range []bool{false, true} {
			prec := map[bool]string{false: "fp32", true: "tf32"}[tf32]
			for _, impl := range []string{"modeld", "cublas"} {
				name := fmt.Sprintf("n=%d/c=%d/oc=%d/precision=%s/impl=%s", sh.N, sh.C, sh.OC, prec, impl)
				b.Run(name, func(b *testing.B) {
					N, C, OC := sh.N, sh.C, sh.OC
					h := newHandle(d, Options{TF32: tf32})
					defer h.Close()
					bufs := benchBuffers(b, h, N*C, OC*C, N*OC)
					inp, weight, out := bufs[0], bufs[1], bufs[2]
					g := forwardGemm(out.(*buffer).ptr, inp.(*buffer).ptr, weight.(*buffer).ptr, N, C, OC)
					run := func() { h.MatmulForward(out, inp, weight, nil, N, C, OC) }
					if impl == "cublas" {
						run = func() { h.enqueue(h.call(func(d *device) error { return plainGemm(d, g, tf32) })) }
					}
					t := newTimer(b, d)
					run() // warm-up: cuBLAS picks and loads its kernel
					if err := h.Sync(b.Context()); err != nil {
						b.Fatal(err)
					}
					for b.Loop() {
						t.time(b, h, run)
					}
					t.report(b, 2*float64(N)*float64(C)*float64(OC))
				})
			}
		}
	}
}

// plainGemm is g as one direct cuBLAS call: cublasSgemm_v2 in fp32, cublasGemmEx with
// CUBLAS_COMPUTE_32F_FAST_TF32 in TF32.
func plainGemm(d *device, g gemm, tf32 bool) error {
	if tf32 {
		return d.blas.run(d.handle, g, cublasCompute32FFastTF32)
	}
	alpha, beta := float32(1), g.beta
	return d.blas.check("cublasSgemm_v2", d.blas.sgemm(d.handle, g.transA, g.transB, g.m, g.n, g.k,
		&alpha, g.a, g.lda, g.b, g.ldb, &beta, g.c, g.ldc))
}

// BenchmarkAttention measures causal self-attention forward and backward at GPT-2 124M's
// training shape, B=4 T=1024 C=768 NH=12: the plain kernels (which write the (B,NH,T,T)
// probabilities) and, when the backend offers backend.FlashAttention, the fused ones. FLOPs
// count the two (T,T,HS) matmuls per head of the forward (4·B·NH·T²·HS, halved by the causal
// mask), twice that for the backward.
func BenchmarkAttention(b *testing.B) {
	d := needDevice(b)
	const B, T, C, NH = 4, 1024, 768, 12
	flops := 4 * float64(B) * float64(NH) * float64(T) * float64(T) * float64(C/NH) / 2
	for _, impl := range []string{"plain", "flash"} {
		for _, pass := range []string{"forward", "backward"} {
			b.Run(fmt.Sprintf("b=%d/t=%d/c=%d/nh=%d/impl=%s/pass=%s", B, T, C, NH, impl, pass), func(b *testing.B) {
				h := newHandle(d, Options{})
				defer h.Close()
				fa, ok := any(h).(backend.FlashAttention)
				if impl == "flash" && !ok {
					b.Skip("the backend does not offer backend.FlashAttention")
				}
				bufs := benchBuffers(b, h, B*T*3*C, B*T*C, B*NH*T*T, B*NH*T, B*T*C, B*T*3*C)
				qkv, out, att, lse, dout, dqkv := bufs[0], bufs[1], bufs[2], bufs[3], bufs[4], bufs[5]
				fwd := func() { h.AttentionForward(out, att, qkv, B, T, C, NH) }
				bwd := func() { h.AttentionBackward(dqkv, dout, qkv, att, B, T, C, NH) }
				if impl == "flash" {
					fwd = func() { fa.FlashAttentionForward(out, lse, qkv, B, T, C, NH) }
					bwd = func() { fa.FlashAttentionBackward(dqkv, dout, out, lse, qkv, B, T, C, NH) }
				}
				run, f := fwd, flops
				if pass == "backward" {
					fwd() // the saved activations
					run, f = bwd, 2*flops
				}
				t := newTimer(b, d)
				run()
				if err := h.Sync(b.Context()); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					t.time(b, h, run)
				}
				t.report(b, f)
			})
		}
	}
}
