package cpu_test

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/cpu"
)

// Benchmarks of the kernels other than matmul (matmul_test.go has those), at GPT-2 124M sizes
// for a training step (B=4, T=64), a 512-token prefill and a decode step of 8 sequences:
//
//	go test ./backend/cpu -run x -bench Kernel
//
// Memory-bound kernels report GB/s (bytes read and written), attention GFLOP/s; attention also
// reports its allocations, which are 0 per call once the pools are warm (attnJob).

func randBuf(b *testing.B, be backend.Backend, n int, rng *rand.Rand) backend.Buffer {
	buf, err := be.Alloc(backend.F32, n)
	if err != nil {
		b.Fatal(err)
	}
	host := make([]float32, n)
	for i := range host {
		host[i] = float32(rng.NormFloat64())
	}
	be.Upload(buf, host)
	return buf
}

func sync(b *testing.B, be backend.Backend) {
	if err := be.Sync(b.Context()); err != nil {
		b.Fatal(err)
	}
}

func gbps(b *testing.B, bytes float64) {
	b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

func BenchmarkKernel(b *testing.B) {
	be := cpu.New()
	rng := rand.New(rand.NewPCG(1, 2))
	const C, NH, V = 768, 12, 50257
	for _, N := range []int{256, 512} {
		n := strconv.Itoa(N)
		x, y, out := randBuf(b, be, N*C, rng), randBuf(b, be, N*C, rng), randBuf(b, be, N*C, rng)
		w, bias := randBuf(b, be, C, rng), randBuf(b, be, C, rng)
		mean, rstd := randBuf(b, be, N, rng), randBuf(b, be, N, rng)
		b.Run("kernel=layernorm_forward/n="+n+"/c=768", func(b *testing.B) {
			for b.Loop() {
				be.LayerNormForward(out, mean, rstd, x, w, bias, N, C)
				sync(b, be)
			}
			gbps(b, float64(2*N*C*4))
		})
		dw, db := randBuf(b, be, C, rng), randBuf(b, be, C, rng)
		b.Run("kernel=layernorm_backward/n="+n+"/c=768", func(b *testing.B) {
			for b.Loop() {
				be.LayerNormBackward(y, dw, db, out, x, w, mean, rstd, N, C)
				sync(b, be)
			}
			gbps(b, float64(4*N*C*4))
		})
		h, hg := randBuf(b, be, N*4*C, rng), randBuf(b, be, N*4*C, rng)
		b.Run("kernel=gelu_forward/n="+strconv.Itoa(N*4*C), func(b *testing.B) {
			for b.Loop() {
				be.GELUForward(hg, h, N*4*C)
				sync(b, be)
			}
			gbps(b, float64(2*N*4*C*4))
		})
		b.Run("kernel=gelu_backward/n="+strconv.Itoa(N*4*C), func(b *testing.B) {
			for b.Loop() {
				be.GELUBackward(hg, h, h, N*4*C)
				sync(b, be)
			}
			gbps(b, float64(3*N*4*C*4))
		})
		b.Run("kernel=residual_forward/n="+strconv.Itoa(N*C), func(b *testing.B) {
			for b.Loop() {
				be.ResidualForward(out, x, y, N*C)
				sync(b, be)
			}
			gbps(b, float64(3*N*C*4))
		})
		for _, T := range []int{64, 512} {
			B := N / T
			if B < 1 {
				continue
			}
			qkv, dqkv := randBuf(b, be, N*3*C, rng), randBuf(b, be, N*3*C, rng)
			att := randBuf(b, be, B*NH*T*T, rng)
			flops := float64(B*NH*T*T/2) * float64(C/NH) * 4 // q·k and att·v over the causal half
			name := "/b=" + strconv.Itoa(B) + "/t=" + strconv.Itoa(T) + "/c=768/nh=12"
			b.Run("kernel=attention_forward"+name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					be.AttentionForward(out, att, qkv, B, T, C, NH)
					sync(b, be)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
			b.Run("kernel=attention_backward"+name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					be.AttentionBackward(dqkv, out, qkv, att, B, T, C, NH)
					sync(b, be)
				}
				b.ReportMetric(2*flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
	// Cross-entropy over the vocabulary for a training step's 256 rows.
	const N = 256
	logits, probs := randBuf(b, be, N*V, rng), randBuf(b, be, N*V, rng)
	losses := randBuf(b, be, N, rng)
	targets, err := be.Alloc(backend.I32, N)
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]int32, N)
	for i := range ids {
		ids[i] = int32(rng.IntN(V))
	}
	be.UploadInt32(targets, ids)
	b.Run("kernel=crossentropy_forward/n=256/v=50257", func(b *testing.B) {
		for b.Loop() {
			be.CrossEntropyForward(losses, probs, logits, targets, N, V)
			sync(b, be)
		}
		gbps(b, float64(2*N*V*4))
	})
	b.Run("kernel=crossentropy_backward/n=256/v=50257", func(b *testing.B) {
		for b.Loop() {
			be.CrossEntropyBackward(probs, probs, targets, N, V, 1.0/N)
			sync(b, be)
		}
		gbps(b, float64(2*N*V*4))
	})
	// AdamW over the largest tensor, wte (V, C).
	p, g, m, v := randBuf(b, be, V*C, rng), randBuf(b, be, V*C, rng), randBuf(b, be, V*C, rng), randBuf(b, be, V*C, rng)
	be.Zero(m)
	be.Zero(v)
	step := 0
	b.Run("kernel=adamw/n="+strconv.Itoa(V*C), func(b *testing.B) {
		for b.Loop() {
			step++
			be.AdamWUpdate(p, g, m, v, V*C, backend.AdamW{LearningRate: 1e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1, Step: step, GradScale: 1})
			sync(b, be)
		}
		gbps(b, float64(7*V*C*4))
	})
	// Decode attention: 8 sequences of 512 cached positions, one new token each.
	const bs, ctx = 16, 512
	kc, vc := randBuf(b, be, 8*ctx*C, rng), randBuf(b, be, 8*ctx*C, rng)
	qkv, out := randBuf(b, be, 8*3*C, rng), randBuf(b, be, 8*C, rng)
	seqs := make([]backend.CachedSeq, 8)
	for i := range seqs {
		seqs[i] = backend.CachedSeq{Row: i, Len: 1, Pos: ctx - 1}
		for j := range ctx / bs {
			seqs[i].Blocks = append(seqs[i].Blocks, int32(i*ctx/bs+j))
		}
	}
	b.Run("kernel=cached_attention/seqs=8/pos=512/c=768/nh=12", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			be.CachedAttention(out, qkv, backend.KVCache{K: kc, V: vc, BlockSize: bs}, seqs, C, NH)
			sync(b, be)
		}
		gbps(b, float64(2*8*ctx*C*4)) // the keys and values read
	})
	// Prefill attention: one sequence of 512 new tokens through the cache, as the model's
	// 512-token prefill runs it in every layer.
	pk, pv := randBuf(b, be, ctx*C, rng), randBuf(b, be, ctx*C, rng)
	pq, pout := randBuf(b, be, ctx*3*C, rng), randBuf(b, be, ctx*C, rng)
	prefill := []backend.CachedSeq{{Row: 0, Len: ctx, Pos: 0, Blocks: seqs[0].Blocks}}
	b.Run("kernel=cached_attention/seqs=1/len=512/c=768/nh=12", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			be.CachedAttention(pout, pq, backend.KVCache{K: pk, V: pv, BlockSize: bs}, prefill, C, NH)
			sync(b, be)
		}
		flops := float64(NH*ctx*ctx/2) * float64(C/NH) * 4 // q·k and att·v over the causal half
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}
