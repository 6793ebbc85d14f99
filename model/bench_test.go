package model_test

import (
	"cmp"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/model"
)

// The GPT-2 124M workloads of ../shared/bench/torch_gpt2.py, with random weights, so that the
// figures can be set beside PyTorch's measured on the same machine:
//
//	go test ./model -run x -bench 'GPT2' -benchtime 5x
//
// MODELD_BENCH_BACKEND names the backend (default cpu), so that the same test binary measures
// the GPU: MODELD_BENCH_BACKEND=cuda (add MODELD_CUDA_TF32=1 for TF32 GEMMs).

// gpt2Small is GPT-2 124M: 50257 tokens, 1024 positions, 12 layers, 12 heads, 768 channels.
var gpt2Small = model.Config{VocabSize: 50257, NPositions: 1024, NEmbd: 768, NLayer: 12, NHead: 12, BOSTokenID: 50256, EOSTokenID: 50256}

// benchBackend opens the backend named by MODELD_BENCH_BACKEND, "cpu" when unset, and closes it
// when the benchmark ends.
func benchBackend(b *testing.B) backend.Backend {
	b.Helper()
	name := cmp.Or(os.Getenv("MODELD_BENCH_BACKEND"), "cpu")
	be, _, err := backend.Open(name)
	if err != nil {
		b.Fatalf("MODELD_BENCH_BACKEND=%s: %v", name, err)
	}
	b.Cleanup(func() {
		if err := be.Close(); err != nil {
			b.Errorf("%s: Close: %v", name, err)
		}
	})
	b.Logf("backend %s", be.Name())
	return be
}

func newBenchModel(b *testing.B, be backend.Backend) *model.Model {
	b.Helper()
	m, err := model.New(be, gpt2Small)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Init(b.Context(), 1234); err != nil {
		b.Fatal(err)
	}
	return m
}

func randomTokens(n int, seed uint64) []int32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(rng.IntN(gpt2Small.VocabSize))
	}
	return ids
}

// reportPeakRSS reports the process's peak resident set size (ru_maxrss), in MB.
func reportPeakRSS(b *testing.B) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MB")
	}
}

// BenchmarkGPT2TrainStep is torch_gpt2.py's train_step: B=4, T=64, forward, cross-entropy,
// backward and AdamW (lr 1e-4, weight decay 0.1 on 2-D tensors).
func BenchmarkGPT2TrainStep(b *testing.B) {
	const B, T = 4, 64
	m := newBenchModel(b, benchBackend(b))
	tr, err := m.NewTrainer(B, T)
	if err != nil {
		b.Fatal(err)
	}
	stream := randomTokens(B*T+1, 7)
	inputs, targets := stream[:B*T], stream[1:]
	opt := model.Optimizer{LearningRate: 1e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1}
	step := func() {
		tr.ZeroGrad()
		if _, err := tr.Forward(b.Context(), inputs, targets); err != nil {
			b.Fatal(err)
		}
		if err := tr.Backward(b.Context(), 1); err != nil {
			b.Fatal(err)
		}
		if _, err := tr.Step(b.Context(), opt); err != nil {
			b.Fatal(err)
		}
	}
	// Two warm-up steps, as torch_gpt2.py takes: the first touches the activations, gradients
	// and AdamW moments for the first time (page faults of about 2 GB).
	step()
	step()
	for b.Loop() {
		step()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/step")
	b.ReportMetric(float64(B*T*b.N)/b.Elapsed().Seconds(), "tokens/s")
	reportPeakRSS(b)
}

// BenchmarkGPT2Prefill is torch_gpt2.py's prefill (logits=all: every position, as
// prompt logprobs need) and prefill_last (logits=last, as generation needs): B=1, T=512.
func BenchmarkGPT2Prefill(b *testing.B) {
	const T = 512
	m := newBenchModel(b, benchBackend(b))
	inf, err := m.NewInference(T)
	if err != nil {
		b.Fatal(err)
	}
	kv, err := m.NewKVCache(T/16, 16)
	if err != nil {
		b.Fatal(err)
	}
	blocks := make([]int32, T/16)
	for i := range blocks {
		blocks[i] = int32(i)
	}
	prompt := randomTokens(T, 3)
	for _, all := range []bool{true, false} {
		name := map[bool]string{true: "logits=all", false: "logits=last"}[all]
		b.Run(name+"/t=512", func(b *testing.B) {
			prefill := func() {
				if _, err := inf.Forward(b.Context(), kv, []model.Seq{{Tokens: prompt, Blocks: blocks, AllLogits: all}}); err != nil {
					b.Fatal(err)
				}
			}
			prefill() // warm-up, as torch_gpt2.py's
			for b.Loop() {
				prefill()
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/prefill")
			reportPeakRSS(b)
		})
	}
}

// BenchmarkGPT2Decode is torch_gpt2.py's decode_b1 and decode_b8: after a 16-token prompt, each
// iteration is one decode step of every sequence through the KV cache (positions 16 to 79,
// then again from 16).
func BenchmarkGPT2Decode(b *testing.B) {
	m := newBenchModel(b, benchBackend(b))
	for _, B := range []int{1, 8} {
		b.Run("batch="+strconv.Itoa(B), func(b *testing.B) {
			const prompt, maxPos, bs = 16, 80, 16
			inf, err := m.NewInference(B * prompt)
			if err != nil {
				b.Fatal(err)
			}
			kv, err := m.NewKVCache(B*maxPos/bs, bs)
			if err != nil {
				b.Fatal(err)
			}
			seqs := make([]model.Seq, B)
			for i := range seqs {
				for j := range maxPos / bs {
					seqs[i].Blocks = append(seqs[i].Blocks, int32(i*maxPos/bs+j))
				}
				seqs[i].Tokens = randomTokens(prompt, uint64(i))
			}
			if _, err := inf.Forward(b.Context(), kv, seqs); err != nil {
				b.Fatal(err)
			}
			for i := range seqs {
				seqs[i].Pos, seqs[i].Tokens = prompt, []int32{int32(i)}
			}
			for b.Loop() {
				if _, err := inf.Forward(b.Context(), kv, seqs); err != nil {
					b.Fatal(err)
				}
				for i := range seqs {
					if seqs[i].Pos++; seqs[i].Pos == maxPos {
						seqs[i].Pos = prompt
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/step")
			b.ReportMetric(float64(B*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
