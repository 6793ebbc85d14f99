package sampling

import (
	"errors"
	"fmt"
	"math"
)

// MaxTopLogprobs is the largest Params.TopLogprobs: OpenAI's limit for
// top_logprobs and vLLM's default max_logprobs.
const MaxTopLogprobs = 20

// Params configures a Sampler: the logits processors and warpers of
// Transformers' generate(), OpenAI's penalties and logit bias, the seed and
// the logprobs to return. The fields are named after their
// Transformers/OpenAI counterparts; Validate gives the ranges.
//
// The zero Params is not valid: TopP, TypicalP and RepetitionPenalty are
// multiplicative or probability-mass knobs whose "off" value is 1, and 0
// for them is out of range, so a forgotten field is reported rather than
// silently read as "off" (a top_p of 0 would otherwise mean "keep only the
// top token" to one reader and "no top-p" to another). Start from
// DefaultParams and set what the request sets. A gRPC layer whose proto3
// fields are 0 when unset must map an unset field to its default: proto3
// optional, or 0 read as "default" for those three fields. Temperature
// needs optional (or a documented default): its 0 is valid and means
// greedy, so unset (default 1) and 0 differ.
type Params struct {
	// Temperature divides the logits before the warpers (matches
	// transformers' TemperatureLogitsWarper). Range [0, +Inf); 0 means
	// greedy decoding: the most likely token after the penalties and the
	// bias, ignoring TopK, TopP, MinP and TypicalP. Default 1.
	Temperature float32
	// TopK keeps the TopK most likely tokens and every token tied with the
	// last of them (matches transformers' TopKLogitsWarper). Range
	// [0, +Inf); 0, and any value >= the vocabulary size, is off. Default 0.
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// sums to at least TopP (nucleus sampling; matches transformers'
	// TopPLogitsWarper). Range (0, 1]; 1 is off. Default 1.
	TopP float32
	// MinP removes the tokens whose probability is below MinP times that of
	// the most likely token (matches transformers' MinPLogitsWarper). Range
	// [0, 1); 0 is off. Default 0.
	MinP float32
	// TypicalP keeps the tokens whose information content is closest to the
	// entropy of the distribution, up to a probability mass of TypicalP
	// (locally typical sampling, Meister et al. 2022; matches transformers'
	// TypicalLogitsWarper). Range (0, 1]; 1 is off. Default 1.
	TypicalP float32
	// RepetitionPenalty divides the positive logits and multiplies the
	// negative ones of every token in the prompt or generated so far (CTRL,
	// Keskar et al. 2019; matches transformers'
	// RepetitionPenaltyLogitsProcessor). Range (0, +Inf); 1 is off, above 1
	// discourages repetition. Default 1.
	RepetitionPenalty float32
	// PresencePenalty is subtracted from the logit of every token generated
	// at least once (OpenAI's presence_penalty; the prompt does not count).
	// Range [-2, 2]; 0 is off. Default 0.
	PresencePenalty float32
	// FrequencyPenalty times the number of times a token was generated is
	// subtracted from its logit (OpenAI's frequency_penalty; the prompt
	// does not count). Range [-2, 2]; 0 is off. Default 0.
	FrequencyPenalty float32
	// LogitBias maps token ids in [0, vocabulary size) to a value added to
	// their logits (OpenAI's logit_bias; OpenAI limits the values to
	// [-100, 100], which is the API layer's business). Values may be any
	// finite number or -Inf, which bans the token; NaN and +Inf are invalid,
	// and so is banning every token. nil is off.
	LogitBias map[int32]float32
	// Seed seeds the Sampler's random stream; nil draws a seed at random,
	// so that two requests without a seed differ. Default nil.
	Seed *uint64
	// Logprobs asks for Result.Logprob, the log-probability of the chosen
	// token under the model's distribution. Default false.
	Logprobs bool
	// TopLogprobs asks for that many most likely tokens with their
	// log-probabilities in Result.TopLogprobs (OpenAI's top_logprobs).
	// Range [0, MaxTopLogprobs]; above 0 it requires Logprobs, as OpenAI
	// does. Default 0.
	TopLogprobs int
}

// DefaultParams returns the defaults of OpenAI's and vLLM's sampling
// parameters: temperature 1, top_p 1, typical_p 1, repetition_penalty 1 and
// everything else off, which is plain sampling from the model's
// distribution. (Transformers' GenerationConfig defaults to greedy with
// top_k 50; we follow the serving APIs.)
func DefaultParams() Params {
	return Params{Temperature: 1, TopP: 1, TypicalP: 1, RepetitionPenalty: 1}
}

// ErrInvalidParams is wrapped by every error for a Params field out of
// range; the error is a *ParamError. A server maps it to InvalidArgument.
var ErrInvalidParams = errors.New("sampling: invalid params")

// ErrInvalidInput is wrapped by the errors for bad arguments to Sample and
// Logprobs: logits of the wrong length, a NaN or +Inf logit (a model bug;
// -Inf is allowed and means "banned"), a token id outside [0, vocabulary
// size), or a vocabulary size below 1.
var ErrInvalidInput = errors.New("sampling: invalid input")

// ErrNoToken is returned when no token can be sampled: every logit is -Inf
// after the penalties and the logit bias.
var ErrNoToken = errors.New("sampling: every token is banned (all logits are -Inf)")

// ParamError reports a Params field out of range. errors.Is(err,
// ErrInvalidParams) holds for it.
type ParamError struct {
	// Field is the snake_case name of the field, as in OpenAI's API and
	// Transformers' GenerationConfig: "temperature", "top_k", "top_p",
	// "min_p", "typical_p", "repetition_penalty", "presence_penalty",
	// "frequency_penalty", "logit_bias" or "top_logprobs".
	Field string
	// Reason says what is wrong, with the value given.
	Reason string
}

// Error returns "sampling: <field> <reason>", for example
// "sampling: top_p must be in (0, 1], got 1.5".
func (e *ParamError) Error() string { return "sampling: " + e.Field + " " + e.Reason }

// Is reports whether target is ErrInvalidParams.
func (e *ParamError) Is(target error) bool { return target == ErrInvalidParams }

func paramErr(field, format string, args ...any) error {
	return &ParamError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate reports the first field of p out of range for a vocabulary of
// vocabSize tokens, as a *ParamError (wrapping ErrInvalidParams). NaN and
// infinities are out of range everywhere except -Inf in LogitBias, which
// must not ban all vocabSize tokens. A vocabSize below 1 is an
// ErrInvalidInput error.
func (p Params) Validate(vocabSize int) error {
	if vocabSize < 1 {
		return fmt.Errorf("%w: vocabulary size %d, want >= 1", ErrInvalidInput, vocabSize)
	}
	// Each test is written so that NaN fails it.
	switch {
	case !(p.Temperature >= 0 && p.Temperature <= math.MaxFloat32):
		return paramErr("temperature", "must be finite and >= 0, got %v", p.Temperature)
	case p.TopK < 0:
		return paramErr("top_k", "must be >= 0 (0 is off), got %d", p.TopK)
	case !(p.TopP > 0 && p.TopP <= 1):
		return paramErr("top_p", "must be in (0, 1], got %v", p.TopP)
	case !(p.MinP >= 0 && p.MinP < 1):
		return paramErr("min_p", "must be in [0, 1), got %v", p.MinP)
	case !(p.TypicalP > 0 && p.TypicalP <= 1):
		return paramErr("typical_p", "must be in (0, 1], got %v", p.TypicalP)
	case !(p.RepetitionPenalty > 0 && p.RepetitionPenalty <= math.MaxFloat32):
		return paramErr("repetition_penalty", "must be finite and > 0, got %v", p.RepetitionPenalty)
	case !(p.PresencePenalty >= -2 && p.PresencePenalty <= 2):
		return paramErr("presence_penalty", "must be in [-2, 2], got %v", p.PresencePenalty)
	case !(p.FrequencyPenalty >= -2 && p.FrequencyPenalty <= 2):
		return paramErr("frequency_penalty", "must be in [-2, 2], got %v", p.FrequencyPenalty)
	case !(p.TopLogprobs >= 0 && p.TopLogprobs <= MaxTopLogprobs):
		return paramErr("top_logprobs", "must be in [0, %d], got %d", MaxTopLogprobs, p.TopLogprobs)
	case p.TopLogprobs > 0 && !p.Logprobs:
		return paramErr("top_logprobs", "requires logprobs, got %d without it", p.TopLogprobs)
	}
	banned := 0
	for id, b := range p.LogitBias {
		if id < 0 || int(id) >= vocabSize {
			return paramErr("logit_bias", "token id %d is outside [0, %d)", id, vocabSize)
		}
		if math.IsNaN(float64(b)) || math.IsInf(float64(b), 1) {
			return paramErr("logit_bias", "value for token %d must be finite or -Inf, got %v", id, b)
		}
		if math.IsInf(float64(b), -1) {
			banned++
		}
	}
	if banned == vocabSize {
		return paramErr("logit_bias", "bans all %d tokens", vocabSize)
	}
	return nil
}
