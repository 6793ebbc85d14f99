package sampling

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzSample feeds hostile logits (raw float32 bits: NaN, ±Inf, huge,
// subnormal; with sanitize, NaN becomes -Inf and +Inf the largest float32,
// so that more inputs get past validation) and parameters to New, Sample
// and Logprobs. They must never panic; New fails only with
// ErrInvalidParams or ErrInvalidInput, Sample only with ErrInvalidInput or
// ErrNoToken; a sampled token is in [0, V), not banned, reproducible from
// the seed, and its logprobs are those Logprobs gives.
func FuzzSample(f *testing.F) {
	bits := func(vs ...float32) []byte {
		b := make([]byte, 0, 4*len(vs))
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
		return b
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	f.Add(bits(1, 2, 3), float32(1), 0, float32(1), float32(0), float32(1), float32(1), float32(0), float32(0), int32(0), float32(0), []byte{1}, uint64(1), true, false)
	f.Add(bits(1, nan, 3), float32(0.7), 2, float32(0.9), float32(0.1), float32(0.9), float32(1.2), float32(1), float32(-1), int32(1), float32(-100), []byte{0, 1, 2}, uint64(2), true, true)
	f.Add(bits(-inf, inf, 0), float32(1e-30), 1, float32(1e-9), float32(0.99), float32(1e-9), float32(1e-30), float32(2), float32(2), int32(2), float32(1e30), []byte{}, uint64(3), false, true)
	f.Add(bits(math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 0), float32(math.MaxFloat32), 3, float32(0.5), float32(0.5), float32(0.5), float32(math.MaxFloat32), float32(0), float32(0), int32(0), float32(math.Inf(-1)), []byte{3, 3, 3}, uint64(4), true, false)
	f.Add(bits(-inf, -inf), float32(1), 0, float32(1), float32(0), float32(1), float32(1), float32(0), float32(0), int32(0), float32(0), []byte{}, uint64(5), true, false)
	f.Add([]byte{}, float32(1), 0, float32(1), float32(0), float32(1), float32(1), float32(0), float32(0), int32(0), float32(0), []byte{}, uint64(6), false, false)
	f.Fuzz(func(t *testing.T, raw []byte, temp float32, topK int, topP, minP, typicalP, rep, pres, freq float32,
		biasID int32, biasVal float32, hist []byte, seed uint64, logprobs, sanitize bool) {
		logits := make([]float32, min(len(raw)/4, 1<<14))
		for i := range logits {
			l := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			if sanitize && l != l {
				l = float32(math.Inf(-1))
			} else if sanitize && l > math.MaxFloat32 {
				l = math.MaxFloat32
			}
			logits[i] = l
		}
		v := len(logits)
		h := History{}
		for i, b := range hist { // ids from -1 up, some outside [0, V)
			if i%2 == 0 {
				h.Prompt = append(h.Prompt, int32(b)-1)
			} else {
				h.Generated = append(h.Generated, int32(b)-1)
			}
		}
		p := Params{
			Temperature: temp, TopK: topK, TopP: topP, MinP: minP, TypicalP: typicalP,
			RepetitionPenalty: rep, PresencePenalty: pres, FrequencyPenalty: freq,
			LogitBias: map[int32]float32{biasID: biasVal}, Seed: &seed,
			Logprobs: logprobs, TopLogprobs: 3 * btoi(logprobs),
		}
		s, err := New(p, v)
		if err != nil {
			if !errors.Is(err, ErrInvalidParams) && !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("New: unexpected error %v", err)
			}
			return
		}
		res, err := s.Sample(logits, h)
		if err != nil {
			if !errors.Is(err, ErrInvalidInput) && !errors.Is(err, ErrNoToken) {
				t.Fatalf("Sample: unexpected error %v", err)
			}
			return
		}
		if res.Token < 0 || int(res.Token) >= v {
			t.Fatalf("token %d outside [0, %d)", res.Token, v)
		}
		if math.IsInf(float64(logits[res.Token]), -1) || res.Token == biasID && math.IsInf(float64(biasVal), -1) {
			t.Fatalf("drew banned token %d", res.Token)
		}
		if !(res.Logprob <= 0) {
			t.Fatalf("logprob %v, want <= 0", res.Logprob)
		}
		again, err := New(p, v)
		if err != nil {
			t.Fatal(err)
		}
		if res2, err := again.Sample(logits, h); err != nil || res2.Token != res.Token {
			t.Fatalf("same seed: token %d, %v; want %d", res2.Token, err, res.Token)
		}
		want, err := Logprobs(logits, res.Token, p.TopLogprobs)
		if err != nil {
			t.Fatalf("Logprobs on logits Sample accepted: %v", err)
		}
		if !logprobs {
			want = Result{Token: res.Token}
		}
		if diff := cmp.Diff(want, res); diff != "" {
			t.Fatalf("Sample (-Logprobs +Sample):\n%s", diff)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
