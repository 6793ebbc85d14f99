package sampling

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkSample times one sampled token at GPT-2's vocabulary size, with
// standard-normal logits (a flat distribution: top-p 0.95 keeps about 70%
// of the vocabulary, the worst case for the mass cut).
func BenchmarkSample(b *testing.B) {
	const v = 50257
	r := rand.New(rand.NewPCG(1, 2))
	logits := make([]float32, v)
	for i := range logits {
		logits[i] = float32(r.NormFloat64())
	}
	history := History{Prompt: make([]int32, 512), Generated: make([]int32, 256)}
	for i := range history.Prompt {
		history.Prompt[i] = int32(r.IntN(v))
	}
	for i := range history.Generated {
		history.Generated[i] = int32(r.IntN(v))
	}
	with := func(f func(*Params)) Params {
		p := DefaultParams()
		f(&p)
		return p
	}
	for _, bc := range []struct {
		mode string
		p    Params
		h    History
	}{
		{"greedy", with(func(p *Params) { p.Temperature = 0 }), History{}},
		{"plain", DefaultParams(), History{}},
		{"top_k", with(func(p *Params) { p.TopK = 50 }), History{}},
		{"top_p", with(func(p *Params) { p.TopP = 0.95 }), History{}},
		{"min_p", with(func(p *Params) { p.MinP = 0.05 }), History{}},
		{"typical", with(func(p *Params) { p.TypicalP = 0.95 }), History{}},
		{"logprobs", with(func(p *Params) { p.Logprobs, p.TopLogprobs = true, 5 }), History{}},
		{"penalties", with(func(p *Params) {
			p.Temperature, p.TopP = 0.8, 0.95
			p.RepetitionPenalty, p.PresencePenalty, p.FrequencyPenalty = 1.1, 0.5, 0.5
		}), history},
	} {
		b.Run("mode="+bc.mode+"/V=50257", func(b *testing.B) {
			seed := uint64(7)
			bc.p.Seed = &seed
			s, err := New(bc.p, v)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := s.Sample(logits, bc.h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
