// Package sampling turns one row of logits, shape (V) float32, into the next
// token id: the logits processors and warpers of Hugging Face Transformers'
// generate(), the penalties and logit bias of OpenAI's API, a seeded random
// stream per sequence, and the logprobs that vLLM returns.
//
// # Pipeline
//
// Sampler.Sample applies, in this order (the order of Transformers'
// _get_logits_processor, processors before warpers):
//
//  1. repetition penalty, over the prompt and the generated tokens, each
//     distinct token once: logit/penalty if the logit is >= 0, logit·penalty
//     if it is < 0 (RepetitionPenaltyLogitsProcessor);
//  2. presence and frequency penalties, over the generated tokens only:
//     logit − count·frequency_penalty − [count > 0]·presence_penalty
//     (the formula of OpenAI's API documentation, as vLLM applies it);
//  3. logit bias, added (OpenAI's logit_bias);
//
// and then, unless Temperature is 0 (greedy: the first most likely token,
// as torch.argmax picks), the warpers, each with min_tokens_to_keep = 1 so
// that at least one token survives:
//
//  4. temperature: logits/T (TemperatureLogitsWarper);
//  5. top-k: keep the k most likely and every token tied with the k-th
//     (TopKLogitsWarper);
//  6. top-p: keep the smallest most-likely-first set whose probability is
//     >= top_p; when a prefix's mass equals top_p exactly no further token
//     is kept (TopPLogitsWarper removes the tokens whose ascending
//     cumulative probability is <= 1 − top_p);
//  7. min-p: remove the tokens with probability < min_p · (top probability)
//     (MinPLogitsWarper);
//  8. typical: order by |−log p − H|, H the entropy, and keep the smallest
//     prefix with probability >= typical_p, plus ties with its last token
//     (TypicalLogitsWarper);
//
// each warper seeing the distribution left by the ones before it,
// renormalised, as Transformers' softmax over the remaining logits does.
// The draw is then from the softmax of what remains.
//
// # Numerics
//
// The pipeline works in float64 on differences from the maximum logit, so a
// tiny temperature (1e-30) or huge logits give the greedy token or the
// right distribution, never NaN: everything at least 700 below the top
// (after temperature) has weight 0. The cuts follow exact arithmetic to
// about 1e-13 relative (the error of the exp used), where Transformers'
// float32 may be off by 1e-7. Among tokens with equal (scaled) logits,
// ranks go to the lower id: torch.sort's order among ties is unspecified.
// NaN and +Inf logits are an error (a model bug); -Inf means "banned" and
// is never drawn.
//
// # Cost
//
// Nothing sorts the vocabulary. Greedy reads the V logits once for their
// maximum and once more, on average half-way, for its first index;
// penalties and bias add a float64 copy to change, and touch only the
// tokens of the History and the bias. Sampling adds one pass that computes
// every weight e^((logit − max)/T) with an inlined exp (for top-p also a
// histogram of the weights, 64 bins per octave) and a draw that stops, on
// average, half-way. Top-k first finds its k-th logit with a heap. The
// top-p and typical cuts find in the histogram the bin where the
// cumulative mass crosses the threshold, collect its tokens in one more
// pass and sort only those; typical adds two passes for the entropy and
// its keys. The scratch memory comes from a pool.
//
// # Randomness
//
// Each Sampler owns a PCG stream (math/rand/v2) seeded from Params.Seed or,
// without one, at random, and every non-greedy token consumes exactly one
// float64 of it. No global random state is used, so a sequence's tokens
// depend only on its seed, Params, logits and History.
//
// # Logprobs
//
// Logprobs are those of the model's own distribution, log_softmax of the
// raw logits before any processor or warper, as vLLM returns by default:
// they do not depend on the sampling knobs, and a prompt's logprobs (see
// Logprobs) and a completion's are on the same scale. With T = 1, no
// penalty, bias, top-k or min-p, they reuse the sum of the sampling
// weights, which is then the same sum.
package sampling
