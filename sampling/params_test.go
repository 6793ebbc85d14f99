package sampling

import (
	"errors"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// with returns DefaultParams changed by f.
func with(f func(*Params)) Params {
	p := DefaultParams()
	f(&p)
	return p
}

func TestValidate(t *testing.T) {
	const v = 10
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, tc := range []struct {
		name string
		p    Params
		want string // the error message; "" for valid
	}{
		{"default", DefaultParams(), ""},
		{"zero", Params{}, "sampling: top_p must be in (0, 1], got 0"},
		{"greedy", with(func(p *Params) { p.Temperature = 0 }), ""},
		{"all_on", with(func(p *Params) {
			p.Temperature, p.TopK, p.TopP, p.MinP, p.TypicalP = 0.7, 5, 0.9, 0.05, 0.95
			p.RepetitionPenalty, p.PresencePenalty, p.FrequencyPenalty = 1.3, -2, 2
			p.LogitBias = map[int32]float32{0: -100, 9: 100, 3: float32(math.Inf(-1))}
			p.Logprobs, p.TopLogprobs = true, MaxTopLogprobs
		}), ""},
		{"temperature=-1", with(func(p *Params) { p.Temperature = -1 }), "sampling: temperature must be finite and >= 0, got -1"},
		{"temperature=NaN", with(func(p *Params) { p.Temperature = nan }), "sampling: temperature must be finite and >= 0, got NaN"},
		{"temperature=Inf", with(func(p *Params) { p.Temperature = inf }), "sampling: temperature must be finite and >= 0, got +Inf"},
		{"top_k=-1", with(func(p *Params) { p.TopK = -1 }), "sampling: top_k must be >= 0 (0 is off), got -1"},
		{"top_k=above_V", with(func(p *Params) { p.TopK = 1000 }), ""},
		{"top_p=0", with(func(p *Params) { p.TopP = 0 }), "sampling: top_p must be in (0, 1], got 0"},
		{"top_p=1.5", with(func(p *Params) { p.TopP = 1.5 }), "sampling: top_p must be in (0, 1], got 1.5"},
		{"top_p=NaN", with(func(p *Params) { p.TopP = nan }), "sampling: top_p must be in (0, 1], got NaN"},
		{"top_p=tiny", with(func(p *Params) { p.TopP = 1e-30 }), ""},
		{"min_p=1", with(func(p *Params) { p.MinP = 1 }), "sampling: min_p must be in [0, 1), got 1"},
		{"min_p=-0.1", with(func(p *Params) { p.MinP = -0.1 }), "sampling: min_p must be in [0, 1), got -0.1"},
		{"typical_p=0", with(func(p *Params) { p.TypicalP = 0 }), "sampling: typical_p must be in (0, 1], got 0"},
		{"typical_p=1.01", with(func(p *Params) { p.TypicalP = 1.01 }), "sampling: typical_p must be in (0, 1], got 1.01"},
		{"repetition_penalty=0", with(func(p *Params) { p.RepetitionPenalty = 0 }), "sampling: repetition_penalty must be finite and > 0, got 0"},
		{"repetition_penalty=Inf", with(func(p *Params) { p.RepetitionPenalty = inf }), "sampling: repetition_penalty must be finite and > 0, got +Inf"},
		{"presence_penalty=2.5", with(func(p *Params) { p.PresencePenalty = 2.5 }), "sampling: presence_penalty must be in [-2, 2], got 2.5"},
		{"frequency_penalty=-3", with(func(p *Params) { p.FrequencyPenalty = -3 }), "sampling: frequency_penalty must be in [-2, 2], got -3"},
		{"frequency_penalty=NaN", with(func(p *Params) { p.FrequencyPenalty = nan }), "sampling: frequency_penalty must be in [-2, 2], got NaN"},
		{"logit_bias=id_V", with(func(p *Params) { p.LogitBias = map[int32]float32{v: 1} }), "sampling: logit_bias token id 10 is outside [0, 10)"},
		{"logit_bias=id_-1", with(func(p *Params) { p.LogitBias = map[int32]float32{-1: 1} }), "sampling: logit_bias token id -1 is outside [0, 10)"},
		{"logit_bias=NaN", with(func(p *Params) { p.LogitBias = map[int32]float32{2: nan} }), "sampling: logit_bias value for token 2 must be finite or -Inf, got NaN"},
		{"logit_bias=+Inf", with(func(p *Params) { p.LogitBias = map[int32]float32{2: inf} }), "sampling: logit_bias value for token 2 must be finite or -Inf, got +Inf"},
		{"logit_bias=bans_all", with(func(p *Params) {
			p.LogitBias = map[int32]float32{}
			for i := range int32(v) {
				p.LogitBias[i] = -inf
			}
		}), "sampling: logit_bias bans all 10 tokens"},
		{"top_logprobs=21", with(func(p *Params) { p.Logprobs, p.TopLogprobs = true, 21 }), "sampling: top_logprobs must be in [0, 20], got 21"},
		{"top_logprobs_without_logprobs", with(func(p *Params) { p.TopLogprobs = 3 }), "sampling: top_logprobs requires logprobs, got 3 without it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate(v)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				if _, err := New(tc.p, v); err != nil {
					t.Fatalf("New: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want %q", tc.want)
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
			if !errors.Is(err, ErrInvalidParams) {
				t.Errorf("errors.Is(%v, ErrInvalidParams) = false", err)
			}
			var pe *ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("%v is not a *ParamError", err)
			}
			if _, err := New(tc.p, v); !errors.Is(err, ErrInvalidParams) {
				t.Errorf("New: %v, want an ErrInvalidParams error", err)
			}
		})
	}
	t.Run("vocab=0", func(t *testing.T) {
		if err := DefaultParams().Validate(0); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("Validate(0) = %v, want an ErrInvalidInput error", err)
		}
	})
}

func TestParamErrorField(t *testing.T) {
	err := with(func(p *Params) { p.MinP = 2 }).Validate(5)
	var pe *ParamError
	if !errors.As(err, &pe) {
		t.Fatalf("%v is not a *ParamError", err)
	}
	if diff := cmp.Diff(&ParamError{Field: "min_p", Reason: "must be in [0, 1), got 2"}, pe); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
