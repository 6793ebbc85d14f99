package sampling

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// reference returns the distribution that Sample draws from, computed from
// the definitions, independently of the package's code: float64, math.Exp,
// full sorts, each processor and warper written as the Transformers class
// (or OpenAI formula) does it, on logits where filtered tokens are -Inf.
func reference(logits []float32, h History, p Params) []float64 {
	l := make([]float64, len(logits))
	for i, v := range logits {
		l[i] = float64(v)
	}
	// RepetitionPenaltyLogitsProcessor: gather, where(<0, *p, /p), scatter.
	if r := float64(p.RepetitionPenalty); r != 1 {
		seen := map[int32]bool{}
		for _, t := range slices.Concat(h.Prompt, h.Generated) {
			if !seen[t] {
				seen[t] = true
				if l[t] < 0 {
					l[t] *= r
				} else {
					l[t] /= r
				}
			}
		}
	}
	// OpenAI: mu[j] -= c[j]*alpha_frequency + float(c[j] > 0)*alpha_presence.
	counts := map[int32]int{}
	for _, t := range h.Generated {
		counts[t]++
	}
	for t, c := range counts {
		l[t] -= float64(c)*float64(p.FrequencyPenalty) + float64(p.PresencePenalty)
	}
	for t, b := range p.LogitBias {
		l[t] += float64(b)
	}
	if p.Temperature == 0 {
		probs := make([]float64, len(l))
		probs[slices.Index(l, slices.Max(l))] = 1 // first maximum, as torch.argmax
		return probs
	}
	// TemperatureLogitsWarper.
	for i := range l {
		l[i] /= float64(p.Temperature)
	}
	// TopKLogitsWarper: remove scores < the k-th largest score.
	if p.TopK > 0 && p.TopK < len(l) {
		sorted := slices.Clone(l)
		slices.SortFunc(sorted, func(a, b float64) int { return cmp.Compare(b, a) })
		kth := sorted[p.TopK-1]
		for i := range l {
			if l[i] < kth {
				l[i] = math.Inf(-1)
			}
		}
	}
	// TopPLogitsWarper: sort ascending (ties: higher id first, so that the
	// lower id ranks higher), cumsum of softmax, remove cumsum <= 1 - top_p,
	// always keep the last (most likely) one.
	if p.TopP < 1 {
		probs := softmax(l)
		order := argsort(len(l), func(a, b int) int {
			if c := cmp.Compare(l[a], l[b]); c != 0 {
				return c
			}
			return cmp.Compare(b, a)
		})
		cum := 0.0
		for rank, i := range order[:len(order)-1] {
			cum += probs[i]
			if cum <= 1-float64(p.TopP) {
				l[order[rank]] = math.Inf(-1)
			}
		}
	}
	// MinPLogitsWarper: remove probs < min_p * max prob.
	if p.MinP > 0 {
		probs := softmax(l)
		top := slices.Max(probs)
		for i := range l {
			if probs[i] < float64(p.MinP)*top {
				l[i] = math.Inf(-1)
			}
		}
	}
	// TypicalLogitsWarper.
	if p.TypicalP < 1 {
		probs := softmax(l)
		ent := 0.0
		for _, q := range probs {
			if q > 0 {
				ent -= q * math.Log(q)
			}
		}
		shifted := make([]float64, len(l))
		for i, q := range probs {
			shifted[i] = math.Abs(-math.Log(q) - ent) // +Inf where q = 0
		}
		order := argsort(len(l), func(a, b int) int {
			if c := cmp.Compare(shifted[a], shifted[b]); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		cum, last := 0.0, 0
		for _, i := range order {
			if cum += probs[i]; cum < float64(p.TypicalP) {
				last++
			}
		}
		last = min(last, len(l)-1)
		for rank, i := range order {
			if rank > 0 && shifted[i] > shifted[order[last]] {
				l[i] = math.Inf(-1)
			}
		}
	}
	return softmax(l)
}

func softmax(l []float64) []float64 {
	m := slices.Max(l)
	probs := make([]float64, len(l))
	z := 0.0
	for i, v := range l {
		probs[i] = math.Exp(v - m)
		z += probs[i]
	}
	for i := range probs {
		probs[i] /= z
	}
	return probs
}

func argsort(n int, less func(a, b int) int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, less)
	return order
}

// chiSquareCritical[df] is the chi-square value exceeded with probability
// 1e-6 at df degrees of freedom (mpmath: gammainc(df/2, x/2, inf,
// regularized=True) = 1e-6).
var chiSquareCritical = [...]float64{1: 23.928127, 2: 27.631021, 3: 30.66485, 4: 33.376842, 5: 35.888187}

// TestDistribution draws 100k tokens with a fixed seed for each mode and
// checks the frequencies against reference with Pearson's chi-square test
// at p = 1e-6, and that no token outside the reference's support is drawn.
func TestDistribution(t *testing.T) {
	const draws = 100_000
	// A fixed V = 6 distribution with distinct probabilities
	// (0.383, 0.232, 0.141, 0.095, 0.086, 0.063 at temperature 1).
	logits := []float32{1.5, 1, 0.5, 0.1, 0, -0.3}
	hist := History{Prompt: []int32{0, 5}, Generated: []int32{1, 1, 3}}
	for _, tc := range []struct {
		name string
		p    Params
		h    History
	}{
		{"plain", DefaultParams(), History{}},
		{"temperature=0.5", with(func(p *Params) { p.Temperature = 0.5 }), History{}},
		{"temperature=2", with(func(p *Params) { p.Temperature = 2 }), History{}},
		{"top_k=3", with(func(p *Params) { p.TopK = 3 }), History{}},
		{"top_p=0.7", with(func(p *Params) { p.TopP = 0.7 }), History{}},
		{"min_p=0.3", with(func(p *Params) { p.MinP = 0.3 }), History{}},
		{"typical_p=0.5", with(func(p *Params) { p.TypicalP = 0.5 }), History{}},
		{"typical_p=0.9", with(func(p *Params) { p.TypicalP = 0.9 }), History{}},
		{"combined", with(func(p *Params) {
			p.Temperature, p.TopK, p.TopP, p.MinP, p.TypicalP = 0.8, 5, 0.9, 0.1, 0.95
		}), History{}},
		{"penalties", with(func(p *Params) {
			p.RepetitionPenalty, p.PresencePenalty, p.FrequencyPenalty = 1.5, 0.3, 0.4
			p.LogitBias = map[int32]float32{4: 1, 2: float32(math.Inf(-1))}
		}), hist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := reference(logits, tc.h, tc.p)
			seed := uint64(20240601)
			tc.p.Seed = &seed
			s, err := New(tc.p, len(logits))
			if err != nil {
				t.Fatal(err)
			}
			got := make([]int, len(logits))
			for range draws {
				r, err := s.Sample(logits, tc.h)
				if err != nil {
					t.Fatal(err)
				}
				got[r.Token]++
			}
			chi2, df := 0.0, -1
			for i, p := range want {
				if p == 0 {
					if got[i] != 0 {
						t.Errorf("token %d drawn %d times, want 0 (filtered)", i, got[i])
					}
					continue
				}
				e := p * draws
				chi2 += (float64(got[i]) - e) * (float64(got[i]) - e) / e
				df++
			}
			if df < 1 {
				t.Fatalf("support of %v has one token: test a mode that leaves two or more", want)
			}
			if chi2 > chiSquareCritical[df] {
				t.Errorf("chi-square %.2f > %.2f (df %d, p = 1e-6): counts %v, want probabilities %.4f",
					chi2, chiSquareCritical[df], df, got, want)
			}
		})
	}
}

// TestReferenceSupport pins the supports that TestDistribution relies on,
// so a change to its distribution that makes a mode trivial is noticed.
func TestReferenceSupport(t *testing.T) {
	logits := []float32{1.5, 1, 0.5, 0.1, 0, -0.3}
	for _, tc := range []struct {
		name string
		p    Params
		want int // tokens with probability > 0
	}{
		{"top_k=3", with(func(p *Params) { p.TopK = 3 }), 3},
		{"top_p=0.7", with(func(p *Params) { p.TopP = 0.7 }), 3},
		{"min_p=0.3", with(func(p *Params) { p.MinP = 0.3 }), 3},
		{"typical_p=0.5", with(func(p *Params) { p.TypicalP = 0.5 }), 3},
		{"typical_p=0.9", with(func(p *Params) { p.TypicalP = 0.9 }), 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			for _, p := range reference(logits, History{}, tc.p) {
				if p > 0 {
					n++
				}
			}
			if n != tc.want {
				t.Errorf("support has %d tokens, want %d", n, tc.want)
			}
		})
	}
}

// TestFilterMatchesReference compares the candidate list (ids and
// normalised weights) with reference on random logits large enough to
// exercise the histogram of the mass cuts, for random combinations of the
// parameters.
func TestFilterMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for c := range 300 {
		v := 1 + r.IntN(3000)
		scale := []float64{0.1, 1, 3, 20}[r.IntN(4)]
		logits := make([]float32, v)
		for i := range logits {
			logits[i] = float32(r.NormFloat64() * scale)
			if r.IntN(20) == 0 {
				logits[i] = float32(math.Round(r.NormFloat64())) // ties
			}
			if r.IntN(50) == 0 {
				logits[i] = float32(math.Inf(-1))
			}
		}
		logits[r.IntN(v)] = 2 // at least one finite logit
		p := DefaultParams()
		p.Temperature = []float32{1, 0.3, 0.7, 1.5, 4}[r.IntN(5)]
		if r.IntN(2) == 0 {
			p.TopK = 1 + r.IntN(v+10)
		}
		if r.IntN(2) == 0 {
			p.TopP = float32(r.Float64())
		}
		if r.IntN(2) == 0 {
			p.MinP = float32(r.Float64() * 0.3)
		}
		if r.IntN(3) == 0 {
			p.TypicalP = float32(r.Float64())
		}
		if p.TopP == 0 || p.TypicalP == 0 {
			continue
		}
		t.Run(fmt.Sprintf("case=%d/V=%d", c, v), func(t *testing.T) {
			want := reference(logits, History{}, p)
			s, err := New(p, v)
			if err != nil {
				t.Fatal(err)
			}
			sc := getScratch(v)
			defer scratchPool.Put(sc)
			_, _, z, wmin, err := s.run(sc, logits, History{})
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float64, v)
			for i, w := range sc.w {
				if w >= wmin {
					got[i] = w / z
				}
			}
			for i := range want {
				if (want[i] > 0) != (got[i] > 0) || math.Abs(got[i]-want[i]) > 1e-9*want[i]+1e-300 {
					t.Fatalf("params %+v: token %d (logit %v): probability %g, want %g",
						p, i, logits[i], got[i], want[i])
				}
			}
		})
	}
}
