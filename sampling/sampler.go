package sampling

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
)

// pcgStream is the second word of every Sampler's PCG state: fixed, so that
// the seed alone decides the stream.
const pcgStream = 0x9e3779b97f4a7c15

// History is the context of one sequence that the penalties read. It is
// read only when RepetitionPenalty, PresencePenalty or FrequencyPenalty is
// on; its ids must then be in [0, vocabulary size).
type History struct {
	// Prompt holds the prompt's token ids; only RepetitionPenalty reads it.
	Prompt []int32
	// Generated holds the tokens generated so far, oldest first; every
	// penalty reads it.
	Generated []int32
}

// TokenLogprob is a token id with its log-probability.
type TokenLogprob struct {
	Token int32
	// Logprob is a natural log, in [-Inf, 0]: -Inf for a banned (-Inf)
	// logit, or one too far below the others for float32.
	Logprob float32
}

// Result is one sampled token.
type Result struct {
	// Token is the chosen id, in [0, vocabulary size).
	Token int32
	// Logprob is the log-probability of Token under the model's own
	// distribution: log_softmax of the raw logits, before any penalty,
	// bias, temperature or filter, as vLLM returns by default. It is 0
	// unless Params.Logprobs is set.
	Logprob float32
	// TopLogprobs holds the Params.TopLogprobs most likely tokens of the
	// same distribution (fewer if the vocabulary is smaller), most likely
	// first, ties broken toward the lower id; nil when not asked for.
	TopLogprobs []TokenLogprob
}

// Sampler draws the tokens of one sequence: it applies the processors and
// warpers of its Params to one row of logits and draws from the result
// with its own random stream (PCG from math/rand/v2). The same seed, Params,
// logits and History give the same tokens whatever else runs in the process
// (for one GOARCH and GOAMD64 level: Go may fuse multiply-adds on some). A
// Sampler holds only its Params and its random stream; the per-call scratch
// (36 bytes per vocabulary entry, 1.8 MB at V = 50257) comes from a pool
// shared by all Samplers. A Sampler is not safe for concurrent use; use one
// per sequence.
type Sampler struct {
	p     Params      // LogitBias and Seed cleared: see bias and seed
	vocab int         // V
	bias  []tokenBias // Params.LogitBias, by ascending id
	seed  uint64
	rng   *rand.Rand
}

type tokenBias struct {
	id int32
	v  float64
}

// New returns a Sampler for p over a vocabulary of vocabSize tokens. It
// returns p.Validate's error if p is out of range. Without p.Seed it seeds
// the stream from the runtime's random source (math/rand/v2's top-level
// generator, seeded unpredictably at start-up); Seed reports the seed used.
// New copies what it needs: later changes to p.LogitBias do not affect it.
func New(p Params, vocabSize int) (*Sampler, error) {
	if err := p.Validate(vocabSize); err != nil {
		return nil, err
	}
	var seed uint64
	if p.Seed != nil {
		seed = *p.Seed
	} else {
		seed = rand.Uint64()
	}
	bias := make([]tokenBias, 0, len(p.LogitBias))
	for id, v := range p.LogitBias {
		bias = append(bias, tokenBias{id, float64(v)})
	}
	slices.SortFunc(bias, func(a, b tokenBias) int { return cmp.Compare(a.id, b.id) })
	p.LogitBias, p.Seed = nil, nil
	return &Sampler{
		p:     p,
		vocab: vocabSize,
		bias:  bias,
		seed:  seed,
		rng:   rand.New(rand.NewPCG(seed, pcgStream)),
	}, nil
}

// Seed returns the seed of the Sampler's random stream: Params.Seed, or the
// one New drew. A new Sampler with this seed and the same Params draws the
// same tokens from the same logits.
func (s *Sampler) Seed() uint64 { return s.seed }

// Sample draws the next token from one row of logits, shape (V) with V the
// vocabulary size given to New, given the sequence's History. It does not
// modify logits.
//
// The pipeline, in the order of Transformers' generate(), is described in
// the package documentation. With Temperature 0 Sample returns the first
// (lowest-id) most likely token after the penalties and the bias and
// consumes no randomness; otherwise it consumes exactly one draw of the
// stream.
//
// Errors: ErrInvalidInput for len(logits) != V, a NaN or +Inf logit or a
// History id out of range; ErrNoToken if every logit is -Inf after the
// penalties and the bias. Cost: a few passes over V, no sort (see the
// package documentation), plus O(len(Prompt)+len(Generated)) when a
// penalty is on.
func (s *Sampler) Sample(logits []float32, h History) (Result, error) {
	if len(logits) != s.vocab {
		return Result{}, fmt.Errorf("%w: %d logits for a vocabulary of %d", ErrInvalidInput, len(logits), s.vocab)
	}
	sc := getScratch(s.vocab)
	defer scratchPool.Put(sc)
	rawMax, tok, z, wmin, err := s.run(sc, logits, h)
	if err != nil {
		return Result{}, err
	}
	if z > 0 {
		tok = sc.draw(wmin, s.rng.Float64()*z)
	}
	res := Result{Token: int32(tok)}
	if s.p.Logprobs {
		rawSum := sc.rawSum
		if rawSum == 0 {
			rawSum = sumExp(logits, rawMax)
		}
		res.Logprob, res.TopLogprobs = logprobs(logits, rawMax+math.Log(rawSum), int32(tok), s.p.TopLogprobs)
	}
	return res, nil
}

// run is Sample without the draw. It returns the maximum raw logit and,
// with Temperature 0, the greedy token and z = 0; otherwise it leaves the
// weights in sc.w and returns what filter returns: the tokens to draw from
// are those of sc.w >= wmin, of total weight z > 0.
func (s *Sampler) run(sc *scratch, logits []float32, h History) (rawMax float64, tok int, z, wmin float64, err error) {
	sc.rawSum = 0
	if rawMax, err = scan(logits); err != nil {
		return 0, 0, 0, 0, err
	}
	touched, err := s.process(sc, logits, h)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	if touched {
		tok, z, wmin, err = decide(s, sc, sc.work, maxOf(sc.work))
	} else {
		tok, z, wmin, err = decide(s, sc, logits, rawMax)
		if s.p.Temperature == 1 && !s.topK() && s.p.MinP == 0 {
			// Nothing changed the logits or zeroed a weight before the
			// mass cuts: weigh's sum is the raw softmax's, term for term.
			sc.rawSum = sc.sum
		}
	}
	return rawMax, tok, z, wmin, err
}

// decide returns the greedy token of logits src, whose maximum is m, or
// runs filter on it: see run.
func decide[F float32 | float64](s *Sampler, sc *scratch, src []F, m float64) (tok int, z, wmin float64, err error) {
	if math.IsInf(m, -1) {
		return 0, 0, 0, ErrNoToken
	}
	if s.p.Temperature == 0 {
		return slices.Index(src, F(m)), 0, 0, nil // the first maximum, as torch.argmax
	}
	z, wmin = filter(s, sc, src, m)
	return 0, z, wmin, nil
}

// scratch is the per-call working memory of Sample, pooled across Samplers.
type scratch struct {
	work   []float64 // (V) the logits after the penalties and the bias, when they apply
	w      []float64 // (V) e^((logit − max)/T), 0 when filtered out
	key    []float64 // (V) typical's sort key
	mark   []uint32  // (V) epoch stamps: repetition penalty applied this call
	epoch  uint32
	count  []int32 // (V) times generated; all zero between calls
	idx    []int32 // top-k's heap, then the members of a mass cut's bin
	bins   [nBins + 1]float64
	sum    float64 // weigh's sum of sc.w, before the mass cuts
	rawSum float64 // Σ e^(logit − max) of the raw logits, or 0 if not known
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// getScratch returns a scratch sized for a vocabulary of v tokens.
func getScratch(v int) *scratch {
	sc := scratchPool.Get().(*scratch)
	if cap(sc.work) < v {
		*sc = scratch{
			work: make([]float64, v), w: make([]float64, v), key: make([]float64, v),
			mark: make([]uint32, v), count: make([]int32, v), idx: make([]int32, 0, v),
		}
	}
	sc.work, sc.w, sc.key = sc.work[:v], sc.w[:v], sc.key[:v]
	sc.mark, sc.count = sc.mark[:v], sc.count[:v]
	return sc
}

// scan returns the maximum of logits, -Inf if every logit is -Inf. A NaN
// or +Inf logit is an ErrInvalidInput error.
func scan(logits []float32) (float64, error) {
	m, bad := float32(math.Inf(-1)), uint64(0)
	for _, l := range logits {
		bad |= b2u(!(l <= math.MaxFloat32)) // NaN or +Inf
		if l > m {                          // not max(m, l): its NaN handling is a long dependency chain
			m = l
		}
	}
	if bad != 0 {
		return 0, badLogit(logits)
	}
	return float64(m), nil
}

// maxOf returns the maximum of v, which holds no NaN; -Inf if v is empty.
func maxOf(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		if x > m {
			m = x
		}
	}
	return m
}

// badLogit returns the error for the first NaN or +Inf in logits.
func badLogit(logits []float32) error {
	i := slices.IndexFunc(logits, func(l float32) bool { return !(l <= math.MaxFloat32) })
	return fmt.Errorf("%w: logits[%d] is %v", ErrInvalidInput, i, logits[i])
}

// process applies the logits processors, if any would change a logit, to
// a float64 copy of logits in sc.work, and reports whether it did. In
// this order: the repetition penalty over the prompt and the generated
// tokens, each distinct token once (transformers'
// RepetitionPenaltyLogitsProcessor: logit·penalty if logit < 0, else
// logit/penalty); the presence and frequency penalties over the generated
// tokens (OpenAI: logit − count·frequency − [count > 0]·presence); the
// logit bias (added). It works in float64, where Transformers uses the
// logits' float32.
func (s *Sampler) process(sc *scratch, logits []float32, h History) (bool, error) {
	p := &s.p
	rep := p.RepetitionPenalty != 1 && len(h.Prompt)+len(h.Generated) > 0
	freq := (p.PresencePenalty != 0 || p.FrequencyPenalty != 0) && len(h.Generated) > 0
	if !rep && !freq && len(s.bias) == 0 {
		return false, nil
	}
	if rep {
		if err := checkIDs(h.Prompt, len(logits)); err != nil {
			return false, err
		}
	}
	if rep || freq {
		if err := checkIDs(h.Generated, len(logits)); err != nil {
			return false, err
		}
	}
	w := sc.work[:len(logits)]
	for i, l := range logits {
		w[i] = float64(l)
	}
	if rep {
		r := float64(p.RepetitionPenalty)
		if sc.epoch++; sc.epoch == 0 { // wrapped: old stamps could match
			clear(sc.mark)
			sc.epoch = 1
		}
		for _, ids := range [2][]int32{h.Prompt, h.Generated} {
			for _, t := range ids {
				if sc.mark[t] == sc.epoch {
					continue
				}
				sc.mark[t] = sc.epoch
				if l := w[t]; l < 0 {
					w[t] = l * r
				} else {
					w[t] = l / r
				}
			}
		}
	}
	if freq {
		pres, fr := float64(p.PresencePenalty), float64(p.FrequencyPenalty)
		for _, t := range h.Generated {
			sc.count[t]++
		}
		for _, t := range h.Generated {
			if c := sc.count[t]; c > 0 { // first occurrence: apply, then reset
				w[t] -= float64(c)*fr + pres
				sc.count[t] = 0
			}
		}
	}
	for _, b := range s.bias {
		w[b.id] += b.v
	}
	return true, nil
}

// checkIDs returns an ErrInvalidInput error if an id is outside [0, v).
func checkIDs(ids []int32, v int) error {
	for i, t := range ids {
		if t < 0 || int(t) >= v {
			return fmt.Errorf("%w: history token %d at %d is outside [0, %d)", ErrInvalidInput, t, i, v)
		}
	}
	return nil
}
