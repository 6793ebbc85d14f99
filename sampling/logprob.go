package sampling

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Logprobs returns the log-probability of token under log_softmax(logits),
// and the top most likely tokens with theirs (fewer if len(logits) < top),
// most likely first, ties broken toward the lower id. It is what Sample
// reports with Params.Logprobs, for a token that was not sampled: a server
// computes prompt logprobs with it, calling it for each prompt token after
// the first with the logits of the position before it.
//
// logits has shape (V); -Inf entries have log-probability -Inf. Errors:
// ErrInvalidInput for empty logits, a NaN or +Inf logit, token outside
// [0, V) or top outside [0, MaxTopLogprobs]; ErrNoToken if every logit is
// -Inf. Cost: two passes over V.
func Logprobs(logits []float32, token int32, top int) (Result, error) {
	if len(logits) == 0 {
		return Result{}, fmt.Errorf("%w: empty logits", ErrInvalidInput)
	}
	if token < 0 || int(token) >= len(logits) {
		return Result{}, fmt.Errorf("%w: token %d is outside [0, %d)", ErrInvalidInput, token, len(logits))
	}
	if top < 0 || top > MaxTopLogprobs {
		return Result{}, fmt.Errorf("%w: top %d is outside [0, %d]", ErrInvalidInput, top, MaxTopLogprobs)
	}
	m, nan := math.Inf(-1), uint64(0)
	for _, l := range logits {
		nan |= b2u(l != l)
		if v := float64(l); v > m {
			m = v
		}
	}
	if nan != 0 || m > math.MaxFloat32 {
		return Result{}, badLogit(logits)
	}
	if math.IsInf(m, -1) {
		return Result{}, ErrNoToken
	}
	lp, tops := logprobs(logits, m+math.Log(sumExp(logits, m)), token, top)
	return Result{Token: token, Logprob: lp, TopLogprobs: tops}, nil
}

// sumExp returns the sum of e^(logit − m), m the maximum logit: >= 1.
func sumExp(logits []float32, m float64) float64 {
	z := 0.0
	for _, l := range logits {
		z += expNeg(float64(l) - m)
	}
	return z
}

// logprobs returns log_softmax(logits)[token] and the top most likely
// tokens, given lse = log Σ e^logit.
func logprobs(logits []float32, lse float64, token int32, top int) (float32, []TokenLogprob) {
	lp := float32(float64(logits[token]) - lse)
	if top == 0 {
		return lp, nil
	}
	h := topHeap(make([]int32, 0, top), logits, top)
	slices.SortFunc(h, func(a, b int32) int {
		if c := cmp.Compare(logits[b], logits[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	tops := make([]TokenLogprob, len(h))
	for i, t := range h {
		tops[i] = TokenLogprob{Token: t, Logprob: float32(float64(logits[t]) - lse)}
	}
	return lp, tops
}
