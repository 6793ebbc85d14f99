package sampling

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var negInf = float32(math.Inf(-1))

// newSeeded returns a Sampler for p with the given seed.
func newSeeded(t testing.TB, p Params, v int, seed uint64) *Sampler {
	t.Helper()
	p.Seed = &seed
	s, err := New(p, v)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tokens returns n tokens drawn by s.
func tokens(t testing.TB, s *Sampler, logits []float32, h History, n int) []int32 {
	t.Helper()
	out := make([]int32, n)
	for i := range out {
		r, err := s.Sample(logits, h)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = r.Token
	}
	return out
}

// support reports which tokens come up in n draws.
func support(t testing.TB, s *Sampler, logits []float32, n int) []bool {
	t.Helper()
	seen := make([]bool, len(logits))
	for _, tok := range tokens(t, s, logits, History{}, n) {
		seen[tok] = true
	}
	return seen
}

func TestGreedy(t *testing.T) {
	greedy := with(func(p *Params) { p.Temperature = 0 })
	for _, tc := range []struct {
		name   string
		p      Params
		logits []float32
		h      History
		want   int32
	}{
		{"max", greedy, []float32{1, 3, 2}, History{}, 1},
		// torch.argmax returns the first of equal maxima.
		{"tie_picks_lowest_id", greedy, []float32{1, 3, 3, 2}, History{}, 1},
		{"tie_all_equal", greedy, []float32{0.5, 0.5, 0.5}, History{}, 0},
		{"ignores_filters", with(func(p *Params) { p.Temperature, p.TopK, p.TopP, p.MinP = 0, 1, 0.1, 0.9 }),
			[]float32{1, 3, 2}, History{}, 1},
		{"neg_inf_allowed", greedy, []float32{negInf, negInf, -5}, History{}, 2},
		{"huge_logits", greedy, []float32{math.MaxFloat32, -math.MaxFloat32, math.MaxFloat32}, History{}, 0},
		{"after_repetition_penalty", with(func(p *Params) { p.Temperature, p.RepetitionPenalty = 0, 2 }),
			[]float32{1, 3, 2}, History{Generated: []int32{1}}, 2}, // 3/2 < 2
		{"after_penalty_tie", with(func(p *Params) { p.Temperature, p.RepetitionPenalty = 0, 2 }),
			[]float32{1, 4, 2}, History{Prompt: []int32{1}}, 1}, // 4/2 = 2: tie, lower id
		{"after_bias", with(func(p *Params) { p.Temperature, p.LogitBias = 0, map[int32]float32{0: 2.5} }),
			[]float32{1, 3, 2}, History{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSeeded(t, tc.p, len(tc.logits), 1)
			got := tokens(t, s, tc.logits, tc.h, 3)
			if diff := cmp.Diff([]int32{tc.want, tc.want, tc.want}, got); diff != "" {
				t.Errorf("tokens (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTinyTemperature: logits/T overflows float32 for a tiny T; the draw
// must still be the greedy token, never NaN or an error. The runner-up is
// 0.1 below the top: at T = 1e-4 its weight is e^-1000, exactly 0.
func TestTinyTemperature(t *testing.T) {
	logits := []float32{1, 3, 2.9, -1e30, negInf}
	for _, temp := range []float32{1e-30, 1e-4, 1e-45} {
		t.Run(fmt.Sprintf("T=%g", temp), func(t *testing.T) {
			p := with(func(p *Params) { p.Temperature, p.Logprobs, p.TopLogprobs = temp, true, 2 })
			s := newSeeded(t, p, len(logits), 9)
			for range 200 {
				r, err := s.Sample(logits, History{})
				if err != nil {
					t.Fatal(err)
				}
				if r.Token != 1 {
					t.Fatalf("token %d, want the greedy 1", r.Token)
				}
				if math.IsNaN(float64(r.Logprob)) {
					t.Fatal("NaN logprob")
				}
			}
		})
	}
}

// TestTopPOne: top_p = 1 must not filter anything (implementations that
// compare a float32 cumulative sum, which can exceed 1, against 1 drop
// tokens): the draw is the inverse CDF of the whole softmax, computed here
// from the same uniform.
func TestTopPOne(t *testing.T) {
	const v, seed = 50257, 77
	r := rand.New(rand.NewPCG(5, 6))
	logits := make([]float32, v)
	for i := range logits {
		logits[i] = float32(r.NormFloat64() * 3)
	}
	probs := reference(logits, History{}, DefaultParams())
	s := newSeeded(t, with(func(p *Params) { p.TopP = 1 }), v, seed)
	u := rand.New(rand.NewPCG(seed, pcgStream)) // the Sampler's stream
	for i := range 200 {
		target, cum, want := u.Float64(), 0.0, int32(-1)
		for id, p := range probs {
			if cum += p; cum > target {
				want = int32(id)
				break
			}
		}
		got, err := s.Sample(logits, History{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Token != want {
			t.Fatalf("draw %d: token %d, want %d", i, got.Token, want)
		}
	}
	sc := getScratch(v)
	defer scratchPool.Put(sc)
	if _, _, _, _, err := s.run(sc, logits, History{}); err != nil {
		t.Fatal(err)
	}
	zeros := 0
	for _, w := range sc.w {
		if w == 0 {
			zeros++
		}
	}
	if zeros != 0 {
		t.Errorf("run: %d of %d weights are 0, want none filtered", zeros, v)
	}
}

// TestTopPBoundary: Transformers removes the tokens whose ascending
// cumulative probability is <= 1 - top_p, so when the top tokens' mass
// equals top_p exactly no further token is kept.
func TestTopPBoundary(t *testing.T) {
	// Exact: equal logits give weights exactly 1, probabilities exactly
	// 1/4, and top_p 0.5 and 0.75 are exact in float32 and float64. Ties
	// rank the lower id first. 1000 draws miss a kept token with
	// probability < 4·(3/4)^1000.
	for _, tc := range []struct {
		topP float32
		want []bool // which tokens can be drawn
	}{
		{0.25, []bool{true, false, false, false}},
		{0.5, []bool{true, true, false, false}},
		{0.75, []bool{true, true, true, false}},
		{0.7500001, []bool{true, true, true, true}},
	} {
		t.Run(fmt.Sprintf("equal_logits/top_p=%v", tc.topP), func(t *testing.T) {
			s := newSeeded(t, with(func(p *Params) { p.TopP = tc.topP }), 4, 1)
			if diff := cmp.Diff(tc.want, support(t, s, []float32{0, 0, 0, 0}, 1000)); diff != "" {
				t.Errorf("support (-want +got):\n%s", diff)
			}
		})
	}
	// Logits log 0.5, log 0.25, log 0.25, the example of the bug reports.
	// In float32, log 0.25 is exactly 2·float32(log 0.5) and float32(log 0.5)
	// is 1.9e-9 below ln 0.5, so in float64 the two small weights are
	// 0.5·(1 − 1.9e-9): the top token holds 0.5 + 4.8e-10 of the mass and
	// the top two 0.75 + 2.4e-10, just above top_p 0.5 and 0.75, and no
	// further token is kept. (In float32 those weights round to exactly 0.5,
	// so Transformers sees probabilities 0.5, 0.25, 0.25 and keeps as many.)
	// Were float32(log 0.5) above ln 0.5, the masses would be just below
	// 0.5 and 0.75 and keeping one more token would be right.
	l := []float32{float32(math.Log(0.5)), float32(math.Log(0.25)), float32(math.Log(0.25))}
	for _, tc := range []struct {
		topP float32
		want []bool
	}{
		{0.5, []bool{true, false, false}},
		{0.75, []bool{true, true, false}},
		{0.76, []bool{true, true, true}},
	} {
		t.Run(fmt.Sprintf("log_probs/top_p=%v", tc.topP), func(t *testing.T) {
			s := newSeeded(t, with(func(p *Params) { p.TopP = tc.topP }), 3, 2)
			if diff := cmp.Diff(tc.want, support(t, s, l, 1000)); diff != "" {
				t.Errorf("support (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMassCut checks the cut on exactly representable weights: the order
// is key descending then id ascending, and the last kept token is the
// first at which the cumulative weight reaches the target.
func TestMassCut(t *testing.T) {
	for _, tc := range []struct {
		name    string
		keys, w []float64
		target  float64
		wantKey float64
		wantID  int
		tied    bool // a token with wantKey ranks after wantID
	}{
		{"exact_equals_target", []float64{0.5, 0.25, 0.25}, []float64{0.5, 0.25, 0.25}, 0.75, 0.25, 1, true},
		{"just_above_target", []float64{0.5, 0.25, 0.25}, []float64{0.5, 0.25, 0.25}, math.Nextafter(0.75, 1), 0.25, 2, false},
		{"first_alone", []float64{0.5, 0.25, 0.25}, []float64{0.5, 0.25, 0.25}, 0.5, 0.5, 0, false},
		{"whole", []float64{0.5, 0.25, 0.25}, []float64{0.5, 0.25, 0.25}, 1, 0.25, 2, false},
		{"unsorted", []float64{0.125, 0.25, 0.125, 0.5}, []float64{0.125, 0.25, 0.125, 0.5}, 0.75, 0.25, 1, false},
		{"ties_by_id", []float64{0.5, 0.5, 0.5, 0.5}, []float64{0.25, 0.25, 0.25, 0.25}, 0.5, 0.5, 1, true},
		{"same_bin", []float64{0.9, 0.9001, 0.90005}, []float64{0.25, 0.25, 0.5}, 0.75, 0.90005, 2, false},
		{"overflow_bin", []float64{1, 1e-20, 0}, []float64{0.5, 0.25, 0.25}, 0.75, 1e-20, 1, false},
		{"rounding_short", []float64{1, 0.5}, []float64{0.5, 0.25}, 0.8, 0, math.MaxInt, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := getScratch(len(tc.keys))
			defer scratchPool.Put(sc)
			clear(sc.bins[:])
			for i, k := range tc.keys {
				sc.w[i] = tc.w[i]
				sc.bins[bin(k)] += tc.w[i]
			}
			key, id, _, tied := sc.massCut(tc.keys, tc.target)
			if key != tc.wantKey || id != tc.wantID || tied != tc.tied {
				t.Errorf("massCut = (%v, %d, tied %v), want (%v, %d, tied %v)", key, id, tied, tc.wantKey, tc.wantID, tc.tied)
			}
		})
	}
	if bin(0.9) != bin(0.90005) || bin(0.9) == bin(0.91) || bin(1e-20) != nBins || bin(0) != nBins || bin(1) != 0 {
		t.Errorf("bins of 0.9, 0.90005, 0.91, 1e-20, 0, 1: %d %d %d %d %d %d, want equal, equal, other, %d, %d, 0",
			bin(0.9), bin(0.90005), bin(0.91), bin(1e-20), bin(0), bin(1), nBins, nBins)
	}
}

func TestTinyTopPKeepsTopToken(t *testing.T) {
	for _, topP := range []float32{1e-9, math.SmallestNonzeroFloat32} {
		t.Run(fmt.Sprintf("top_p=%g", topP), func(t *testing.T) {
			s := newSeeded(t, with(func(p *Params) { p.TopP = topP }), 4, 3)
			if diff := cmp.Diff([]bool{false, false, true, false}, support(t, s, []float32{1, 2, 3, negInf}, 500)); diff != "" {
				t.Errorf("support (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOffValues: top_k 0, top_k >= V and min_p 0 are off: the draws equal
// those of DefaultParams with the same seed.
func TestOffValues(t *testing.T) {
	logits := []float32{0.3, -1, 2, 0, 1.5, negInf, 0.7}
	want := tokens(t, newSeeded(t, DefaultParams(), len(logits), 11), logits, History{}, 300)
	for _, tc := range []struct {
		name string
		p    Params
	}{
		{"top_k=V", with(func(p *Params) { p.TopK = len(logits) })},
		{"top_k=V+1000", with(func(p *Params) { p.TopK = len(logits) + 1000 })},
		{"top_k=6", with(func(p *Params) { p.TopK = 6 })}, // the 6 finite logits
		{"min_p=0", with(func(p *Params) { p.MinP = 0 })},
		{"repetition_penalty=1", with(func(p *Params) { p.RepetitionPenalty = 1 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tokens(t, newSeeded(t, tc.p, len(logits), 11), logits, History{Generated: []int32{2}}, 300)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("tokens (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, tc := range []struct {
		name   string
		p      Params
		logits []float32
		h      History
		want   error
	}{
		{"nan", DefaultParams(), []float32{0, nan, 1}, History{}, ErrInvalidInput},
		{"pos_inf", DefaultParams(), []float32{0, inf, 1}, History{}, ErrInvalidInput},
		{"pos_inf_greedy", with(func(p *Params) { p.Temperature = 0 }), []float32{inf, 0, 1}, History{}, ErrInvalidInput},
		{"short", DefaultParams(), []float32{0, 1}, History{}, ErrInvalidInput},
		{"long", DefaultParams(), []float32{0, 1, 2, 3}, History{}, ErrInvalidInput},
		{"all_neg_inf", DefaultParams(), []float32{negInf, negInf, negInf}, History{}, ErrNoToken},
		{"all_neg_inf_greedy", with(func(p *Params) { p.Temperature = 0 }), []float32{negInf, negInf, negInf}, History{}, ErrNoToken},
		{"bias_bans_the_rest", with(func(p *Params) { p.LogitBias = map[int32]float32{1: negInf, 2: negInf} }),
			[]float32{negInf, 1, 2}, History{}, ErrNoToken},
		{"history_id_too_big", with(func(p *Params) { p.RepetitionPenalty = 1.2 }), []float32{0, 1, 2}, History{Prompt: []int32{3}}, ErrInvalidInput},
		{"history_id_negative", with(func(p *Params) { p.FrequencyPenalty = 1 }), []float32{0, 1, 2}, History{Generated: []int32{1, -1}}, ErrInvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSeeded(t, tc.p, 3, 1)
			_, err := s.Sample(tc.logits, tc.h)
			if !errors.Is(err, tc.want) {
				t.Errorf("Sample: %v, want an error wrapping %v", err, tc.want)
			}
		})
	}
	t.Run("messages", func(t *testing.T) {
		s := newSeeded(t, with(func(p *Params) { p.FrequencyPenalty = 1 }), 3, 1)
		_, err1 := s.Sample([]float32{0, 1, nan}, History{})
		_, err2 := s.Sample([]float32{0, 1, 2}, History{Generated: []int32{0, 7}})
		_, err3 := s.Sample([]float32{0, 1}, History{})
		got := []string{err1.Error(), err2.Error(), err3.Error()}
		want := []string{
			"sampling: invalid input: logits[2] is NaN",
			"sampling: invalid input: history token 7 at 1 is outside [0, 3)",
			"sampling: invalid input: 2 logits for a vocabulary of 3",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("messages (-want +got):\n%s", diff)
		}
	})
	t.Run("history_ignored_without_penalties", func(t *testing.T) {
		s := newSeeded(t, DefaultParams(), 3, 1)
		if _, err := s.Sample([]float32{0, 1, 2}, History{Prompt: []int32{99}}); err != nil {
			t.Errorf("Sample: %v, want nil", err)
		}
	})
	t.Run("neg_inf_never_drawn", func(t *testing.T) {
		s := newSeeded(t, DefaultParams(), 4, 1)
		if diff := cmp.Diff([]bool{false, true, false, true}, support(t, s, []float32{negInf, 1, negInf, 0}, 2000)); diff != "" {
			t.Errorf("support (-want +got):\n%s", diff)
		}
	})
}

// TestProcess checks the processed logits against values computed by
// hand from the Transformers and OpenAI formulas.
func TestProcess(t *testing.T) {
	logits := []float32{2, -2, 0, 1, 4, negInf}
	h := History{Prompt: []int32{0, 0, 5}, Generated: []int32{1, 3, 3}}
	inf := math.Inf(-1)
	for _, tc := range []struct {
		name string
		p    Params
		h    History
		want []float64 // nil: nothing to apply, no copy made
	}{
		{"none", DefaultParams(), h, nil},
		{"penalties_without_history", with(func(p *Params) { p.RepetitionPenalty, p.FrequencyPenalty = 2, 1 }), History{}, nil},
		// Prompt only: the frequency penalty does not read it.
		{"frequency_prompt_only", with(func(p *Params) { p.FrequencyPenalty = 1 }), History{Prompt: h.Prompt}, nil},
		// Each distinct token once: 2/2, -2·2, 1/2; -Inf stays -Inf.
		{"repetition", with(func(p *Params) { p.RepetitionPenalty = 2 }), h, []float64{1, -4, 0, 0.5, 4, inf}},
		{"repetition_below_1", with(func(p *Params) { p.RepetitionPenalty = 0.5 }), h, []float64{4, -1, 0, 2, 4, inf}},
		// Generated only: token 1 once (-0.25 - 0.5), token 3 twice (-0.5 - 0.5).
		{"presence_frequency", with(func(p *Params) { p.PresencePenalty, p.FrequencyPenalty = 0.5, 0.25 }), h,
			[]float64{2, -2.75, 0, 0, 4, inf}},
		{"negative_presence", with(func(p *Params) { p.PresencePenalty = -2 }), h, []float64{2, 0, 0, 3, 4, inf}},
		{"bias", with(func(p *Params) { p.LogitBias = map[int32]float32{4: -1, 2: 0.5, 5: 3, 0: negInf} }), History{},
			[]float64{inf, -2, 0.5, 1, 3, inf}},
		{"all_in_order", with(func(p *Params) {
			p.RepetitionPenalty, p.PresencePenalty, p.FrequencyPenalty = 2, 0.5, 0.25
			p.LogitBias = map[int32]float32{4: -1, 2: 0.5}
		}), h, []float64{1, -4.75, 0.5, -0.5, 3, inf}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSeeded(t, tc.p, len(logits), 1)
			sc := getScratch(len(logits))
			defer scratchPool.Put(sc)
			// A second call must see the same: no state left behind.
			for call := range 2 {
				touched, err := s.process(sc, logits, tc.h)
				if err != nil {
					t.Fatal(err)
				}
				if touched != (tc.want != nil) {
					t.Fatalf("call %d: process reports %v, want %v", call, touched, tc.want != nil)
				}
				if diff := cmp.Diff(tc.want, sc.work); touched && diff != "" {
					t.Errorf("call %d: processed logits (-want +got):\n%s", call, diff)
				}
			}
		})
	}
}

func TestDoesNotModifyLogits(t *testing.T) {
	logits := []float32{2, -2, 0, 1, 4, negInf}
	orig := slices.Clone(logits)
	p := with(func(p *Params) {
		p.Temperature, p.TopK, p.TopP, p.MinP, p.TypicalP = 0.5, 3, 0.9, 0.01, 0.9
		p.RepetitionPenalty, p.FrequencyPenalty, p.LogitBias = 1.3, 1, map[int32]float32{1: 5}
	})
	tokens(t, newSeeded(t, p, len(logits), 1), logits, History{Prompt: []int32{0, 4}, Generated: []int32{1}}, 10)
	if diff := cmp.Diff(orig, logits); diff != "" {
		t.Errorf("logits changed (-before +after):\n%s", diff)
	}
}

func TestSeed(t *testing.T) {
	// Uniform over 1000, top_p keeps 900: two independent sequences of 50
	// agree with probability 900^-50.
	logits := make([]float32, 1000)
	p := with(func(p *Params) { p.TopP = 0.9 })
	t.Run("same_seed_same_tokens", func(t *testing.T) {
		a := newSeeded(t, p, len(logits), 42)
		b := newSeeded(t, p, len(logits), 42)
		other := newSeeded(t, p, len(logits), 43)
		var ta, tb []int32
		for range 50 { // interleaved with another sequence
			ta = append(ta, tokens(t, a, logits, History{}, 1)...)
			tokens(t, other, logits, History{}, 3)
			tb = append(tb, tokens(t, b, logits, History{}, 1)...)
		}
		if diff := cmp.Diff(ta, tb); diff != "" {
			t.Errorf("seed 42 twice (-first +second):\n%s", diff)
		}
		if diff := cmp.Diff(ta, tokens(t, newSeeded(t, p, len(logits), 43), logits, History{}, 50)); diff == "" {
			t.Error("seeds 42 and 43 gave the same 50 tokens")
		}
	})
	// Samplers on other goroutines share the scratch pool, not the stream.
	t.Run("concurrent", func(t *testing.T) {
		const n = 8
		want := make([][]int32, n)
		for i := range n {
			want[i] = tokens(t, newSeeded(t, p, len(logits), uint64(i)), logits, History{}, 100)
		}
		got := make([][]int32, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				seed := uint64(i)
				q := p
				q.Seed = &seed
				s, err := New(q, len(logits))
				if err != nil {
					errs[i] = err
					return
				}
				for range 100 {
					r, err := s.Sample(logits, History{})
					if err != nil {
						errs[i] = err
						return
					}
					got[i] = append(got[i], r.Token)
				}
			})
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("goroutine %d: %v", i, errs[i])
			}
			if diff := cmp.Diff(want[i], got[i]); diff != "" {
				t.Errorf("seed %d concurrently (-sequential +concurrent):\n%s", i, diff)
			}
		}
	})
	t.Run("unseeded_differ", func(t *testing.T) {
		a, err := New(p, len(logits))
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(p, len(logits))
		if err != nil {
			t.Fatal(err)
		}
		ta, tb := tokens(t, a, logits, History{}, 50), tokens(t, b, logits, History{}, 50)
		if diff := cmp.Diff(ta, tb); diff == "" {
			t.Errorf("two unseeded samplers gave the same 50 tokens %v", ta)
		}
		// Seed reports what was drawn: it replays the sequence.
		if diff := cmp.Diff(ta, tokens(t, newSeeded(t, p, len(logits), a.Seed()), logits, History{}, 50)); diff != "" {
			t.Errorf("replay with Seed() (-unseeded +replay):\n%s", diff)
		}
	})
	t.Run("greedy_consumes_no_randomness", func(t *testing.T) {
		s := newSeeded(t, p, len(logits), 42)
		want := tokens(t, s, logits, History{}, 5)
		s = newSeeded(t, p, len(logits), 42)
		s.p.Temperature = 0
		tokens(t, s, logits, History{}, 7)
		s.p.Temperature = 1
		if diff := cmp.Diff(want, tokens(t, s, logits, History{}, 5)); diff != "" {
			t.Errorf("after greedy steps (-want +got):\n%s", diff)
		}
	})
}

func TestLogprobs(t *testing.T) {
	logits := []float32{1, 3, 3, 2, negInf}
	lse := math.Log(math.Exp(1) + 2*math.Exp(3) + math.Exp(2))
	lp := func(l float64) float32 { return float32(l - lse) }
	ninf := float32(math.Inf(-1))
	for _, tc := range []struct {
		name  string
		token int32
		top   int
		want  Result
	}{
		{"token_only", 0, 0, Result{Token: 0, Logprob: lp(1)}},
		{"ties_lower_id_first", 3, 3, Result{Token: 3, Logprob: lp(2), TopLogprobs: []TokenLogprob{
			{1, lp(3)}, {2, lp(3)}, {3, lp(2)}}}},
		{"tie_at_the_cut", 0, 1, Result{Token: 0, Logprob: lp(1), TopLogprobs: []TokenLogprob{{1, lp(3)}}}},
		{"banned_token", 4, 0, Result{Token: 4, Logprob: ninf}},
		{"top_above_V", 2, 7, Result{Token: 2, Logprob: lp(3), TopLogprobs: []TokenLogprob{
			{1, lp(3)}, {2, lp(3)}, {3, lp(2)}, {0, lp(1)}, {4, ninf}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Logprobs(logits, tc.token, tc.top)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Logprobs (-want +got):\n%s", diff)
			}
		})
	}
	for _, tc := range []struct {
		name   string
		logits []float32
		token  int32
		top    int
		want   error
	}{
		{"empty", nil, 0, 0, ErrInvalidInput},
		{"token_negative", logits, -1, 0, ErrInvalidInput},
		{"token_V", logits, 5, 0, ErrInvalidInput},
		{"top_negative", logits, 0, -1, ErrInvalidInput},
		{"top_21", logits, 0, 21, ErrInvalidInput},
		{"nan", []float32{0, float32(math.NaN())}, 0, 0, ErrInvalidInput},
		{"pos_inf", []float32{float32(math.Inf(1)), 0}, 0, 0, ErrInvalidInput},
		{"all_neg_inf", []float32{negInf, negInf}, 0, 0, ErrNoToken},
	} {
		t.Run("error/"+tc.name, func(t *testing.T) {
			if _, err := Logprobs(tc.logits, tc.token, tc.top); !errors.Is(err, tc.want) {
				t.Errorf("Logprobs: %v, want an error wrapping %v", err, tc.want)
			}
		})
	}
	// Sample reports the raw distribution's logprobs whatever the
	// temperature, penalties, bias and filters, whether it reuses the sum
	// of its weights (T = 1, nothing changed or zeroed) or not.
	r := rand.New(rand.NewPCG(8, 8))
	big := make([]float32, 1000)
	for i := range big {
		big[i] = float32(r.NormFloat64() * 2)
	}
	big[7] = negInf
	for _, tc := range []struct {
		name string
		p    Params
		h    History
	}{
		{"plain", DefaultParams(), History{}},
		{"top_p_typical", with(func(p *Params) { p.TopP, p.TypicalP = 0.8, 0.9 }), History{}},
		{"greedy", with(func(p *Params) { p.Temperature = 0 }), History{}},
		{"top_k", with(func(p *Params) { p.TopK = 10 }), History{}},
		{"min_p", with(func(p *Params) { p.MinP = 0.1 }), History{}},
		{"temperature", with(func(p *Params) { p.Temperature = 0.3 }), History{}},
		{"penalties_bias", with(func(p *Params) {
			p.RepetitionPenalty, p.PresencePenalty = 1.7, 1
			p.LogitBias = map[int32]float32{0: 4}
		}), History{Prompt: []int32{3}, Generated: []int32{1}}},
	} {
		t.Run("sample/"+tc.name, func(t *testing.T) {
			tc.p.Logprobs, tc.p.TopLogprobs = true, 2
			s := newSeeded(t, tc.p, len(big), 5)
			for range 20 {
				got, err := s.Sample(big, tc.h)
				if err != nil {
					t.Fatal(err)
				}
				want, err := Logprobs(big, got.Token, 2)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("Sample (-want +got):\n%s", diff)
				}
			}
		})
	}
	// The scratch is pooled: a sum one Sampler reuses must not leak into
	// the next call, here greedy on other logits.
	t.Run("sample/no_stale_sum", func(t *testing.T) {
		plain := newSeeded(t, with(func(p *Params) { p.Logprobs = true }), 3, 1)
		greedy := newSeeded(t, with(func(p *Params) { p.Temperature, p.Logprobs = 0, true }), 3, 1)
		for range 3 {
			if _, err := plain.Sample([]float32{0, 0, 0}, History{}); err != nil {
				t.Fatal(err)
			}
			got, err := greedy.Sample([]float32{5, 1, 1}, History{})
			if err != nil {
				t.Fatal(err)
			}
			want, err := Logprobs([]float32{5, 1, 1}, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("greedy after plain (-want +got):\n%s", diff)
			}
		}
	})
	t.Run("off", func(t *testing.T) {
		got, err := newSeeded(t, DefaultParams(), len(logits), 5).Sample(logits, History{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Logprob != 0 || got.TopLogprobs != nil {
			t.Errorf("Logprob %v, TopLogprobs %v without Params.Logprobs, want 0, nil", got.Logprob, got.TopLogprobs)
		}
	})
	t.Run("large_vocab", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 1))
		big := make([]float32, 50257)
		for i := range big {
			big[i] = float32(r.NormFloat64() * 4)
		}
		z := 0.0
		for _, l := range big {
			z += math.Exp(float64(l))
		}
		for range 20 {
			tok := int32(r.IntN(len(big)))
			got, err := Logprobs(big, tok, 0)
			if err != nil {
				t.Fatal(err)
			}
			if want := float64(big[tok]) - math.Log(z); math.Abs(float64(got.Logprob)-want) > 2e-6 {
				t.Errorf("token %d: logprob %v, want %v ± 2e-6", tok, got.Logprob, want)
			}
		}
	})
}
