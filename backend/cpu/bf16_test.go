package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/modeld-dev/modeld/backend"
)

// toBF16 rounds every element of x to bfloat16.
func toBF16(x []float32) []uint16 {
	h := make([]uint16, len(x))
	for i, v := range x {
		h[i] = backend.BF16FromF32(v)
	}
	return h
}

func TestMatmulForwardBF16(t *testing.T) {
	for _, ks := range bf16KernelSets() {
		for _, s := range matmulTestShapes() {
			for _, withBias := range []bool{true, false} {
				t.Run(fmt.Sprintf("kernels=%s/%v/bias=%v", ks.name, s, withBias), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(s.N), uint64(s.C*100000+s.OC)))
					inp, weight := randSlice(rng, s.N*s.C), toBF16(randScaled(rng, s.OC*s.C, s.C))
					var bias []float32
					if withBias {
						bias = randSlice(rng, s.OC)
					}
					want := make([]float32, s.N*s.OC)
					matmulForwardBF16Naive(want, inp, weight, bias, s.N, s.C, s.OC)
					out, all := guarded(rng, s.N*s.OC) // random: forward must overwrite
					matmulForwardBF16(&ks, out, inp, weight, bias, s.N, s.C, s.OC)
					checkClose(t, s.String(), out, want, all)
				})
			}
		}
	}
}

// TestMatmulForwardBF16EqualsWidened checks the fast bfloat16 forward against the float32
// forward on the widened weights: the same products, so the same sums up to summation order.
func TestMatmulForwardBF16EqualsWidened(t *testing.T) {
	for _, s := range []matmulShape{{1, 768, 2304}, {8, 3072, 768}, {9, 768, 777}, {64, 768, 3072}} {
		t.Run(s.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, uint64(s.N)))
			inp, bias := randSlice(rng, s.N*s.C), randSlice(rng, s.OC)
			weight := toBF16(randScaled(rng, s.OC*s.C, s.C))
			wide := make([]float32, len(weight))
			widenBF16Go(wide, weight)
			want := make([]float32, s.N*s.OC)
			matmulForward(want, inp, wide, bias, s.N, s.C, s.OC)
			out, all := guarded(rng, s.N*s.OC)
			matmulForwardBF16(&bf16Kernels, out, inp, weight, bias, s.N, s.C, s.OC)
			checkClose(t, s.String(), out, want, all)
		})
	}
}

func TestWidenBF16(t *testing.T) {
	for _, ks := range bf16KernelSets() {
		for _, n := range []int{1, 7, 8, 9, 100, 4099} {
			t.Run(fmt.Sprintf("kernels=%s/n=%d", ks.name, n), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(n), 5))
				src := make([]uint16, n)
				for i := range src {
					src[i] = uint16(rng.Uint32())
				}
				dst, all := guarded(rng, n)
				ks.widen(dst, src)
				for i, h := range src {
					// Widening is a shift: bit-exact, NaN payloads included.
					if got, want := math.Float32bits(dst[i]), uint32(h)<<16; got != want {
						t.Fatalf("widen[%d] of %#04x = %#08x, want %#08x", i, h, got, want)
					}
				}
				checkClose(t, "guards", nil, nil, all)
			})
		}
	}
}

// BenchmarkMatmulForwardBF16 compares the decode matvec (N=1, 8) and the prefill GEMM (N=512) with
// bfloat16 weights (impl=bf16-*) and float32 weights (impl=f32, the backend's float32 path) at
// GPT-2 124M's shapes. GB/s counts the weight bytes streamed, the decode's bound:
//
//	go test ./backend/cpu -run x -bench MatmulForwardBF16
func BenchmarkMatmulForwardBF16(b *testing.B) {
	impls := []string{"f32"}
	for _, ks := range bf16KernelSets() {
		impls = append(impls, "bf16-"+ks.name)
	}
	for _, s := range matmulBenchShapes([]int{1, 8, 512}) {
		for _, impl := range impls {
			if s.N > gemvMaxN && impl == "bf16-go" {
				continue // the same packed GEMM as the others after widening
			}
			b.Run(fmt.Sprintf("impl=%s/%v", impl, s), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(1, 2))
				inp, bias := randSlice(rng, s.N*s.C), randSlice(rng, s.OC)
				weight := randScaled(rng, s.OC*s.C, s.C)
				out := make([]float32, s.N*s.OC)
				var run func()
				bytesPerWeight := 4.0
				if impl == "f32" {
					run = func() { matmulForward(out, inp, weight, bias, s.N, s.C, s.OC) }
				} else {
					h := toBF16(weight)
					bytesPerWeight = 2
					for _, ks := range bf16KernelSets() {
						if impl == "bf16-"+ks.name {
							run = func() { matmulForwardBF16(&ks, out, inp, h, bias, s.N, s.C, s.OC) }
						}
					}
				}
				for b.Loop() {
					run()
				}
				sec := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(2*float64(s.N)*float64(s.C)*float64(s.OC)/sec/1e9, "GFLOP/s")
				b.ReportMetric(bytesPerWeight*float64(s.C)*float64(s.OC)/sec/1e9, "GB/s")
			})
		}
	}
}
