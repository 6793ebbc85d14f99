package modeldv1_test

import (
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

// validGenerate is the documented contract of GenerateRequest.Validate, written as a plain
// conjunction: the oracle of the fuzz target.
func validGenerate(r *modeldv1.GenerateRequest) bool {
	ok := (r.GetPrompt() != "") != (len(r.GetPromptTokenIds()) > 0) &&
		r.GetLogprobs() <= modeldv1.MaxLogprobs &&
		len(r.GetStop()) <= modeldv1.MaxStops &&
		len(r.GetStopTokenIds()) <= modeldv1.MaxStopTokenIDs &&
		len(r.GetSampling().GetLogitBias()) <= modeldv1.MaxLogitBias
	for _, s := range r.GetStop() {
		ok = ok && len(s) >= 1 && len(s) <= modeldv1.MaxStopBytes
	}
	for _, b := range r.GetSampling().GetLogitBias() {
		ok = ok && !math.IsNaN(float64(b)) && math.Abs(float64(b)) <= modeldv1.MaxLogitBiasValue
	}
	return ok
}

// generateRequest builds a request from fuzzed fields: stops is split at '|' (so empty and long
// stop strings and many of them occur), and the counts wrap around the limits.
func generateRequest(prompt string, ids uint8, logprobs uint32, stops string, stopIDs uint8, biasN uint16, bias float32) *modeldv1.GenerateRequest {
	r := &modeldv1.GenerateRequest{Prompt: prompt, Logprobs: logprobs, PromptTokenIds: make([]int32, ids%3), StopTokenIds: make([]int32, stopIDs%(modeldv1.MaxStopTokenIDs+3))}
	if stops != "" {
		r.Stop = strings.Split(stops, "|")
	}
	if biasN > 0 {
		r.Sampling = &modeldv1.SamplingParams{LogitBias: map[int32]float32{}}
		for id := range int32(biasN % (modeldv1.MaxLogitBias + 3)) {
			r.Sampling.LogitBias[id] = 0
		}
		r.Sampling.LogitBias[0] = bias
	}
	return r
}

func FuzzValidateGenerate(f *testing.F) {
	f.Add("hi", uint8(0), uint32(0), "", uint8(0), uint16(0), float32(0))
	f.Add("", uint8(1), uint32(20), "a|b", uint8(64), uint16(300), float32(-100))
	f.Add("", uint8(0), uint32(21), "|", uint8(65), uint16(301), float32(100.001))
	f.Add("x", uint8(2), uint32(1), strings.Repeat("s", 257), uint8(3), uint16(1), float32(math.NaN()))
	f.Add("x", uint8(0), uint32(1), strings.Repeat("a|", 16)+"a", uint8(3), uint16(1), float32(math.Inf(-1)))
	f.Fuzz(func(t *testing.T, prompt string, ids uint8, logprobs uint32, stops string, stopIDs uint8, biasN uint16, bias float32) {
		r := generateRequest(prompt, ids, logprobs, stops, stopIDs, biasN, bias)
		err := r.Validate()
		if want := validGenerate(r); (err == nil) != want {
			t.Fatalf("Validate() = %v, the documented contract says valid=%v, for %v", err, want, r)
		}
	})
}

func FuzzValidateUpload(f *testing.F) {
	f.Add(uint32(0), uint32(0), true)
	f.Add(uint32(modeldv1.MaxDatasetNameBytes), uint32(modeldv1.MaxChunkBytes), false)
	f.Add(uint32(modeldv1.MaxDatasetNameBytes+1), uint32(modeldv1.MaxChunkBytes+1), true)
	f.Fuzz(func(t *testing.T, nameLen, chunkLen uint32, info bool) {
		nameLen %= 2 * modeldv1.MaxDatasetNameBytes
		chunkLen %= 2 * modeldv1.MaxChunkBytes
		r := &modeldv1.UploadDatasetRequest{Part: &modeldv1.UploadDatasetRequest_Chunk{Chunk: make([]byte, chunkLen)}}
		want := chunkLen <= modeldv1.MaxChunkBytes
		if info {
			r.Part = &modeldv1.UploadDatasetRequest_Info{Info: &modeldv1.DatasetInfo{Name: strings.Repeat("n", int(nameLen))}}
			want = nameLen <= modeldv1.MaxDatasetNameBytes
		}
		if err := r.Validate(); (err == nil) != want {
			t.Fatalf("Validate() = %v, want valid=%v (name %d bytes, chunk %d bytes, info %v)", err, want, nameLen, chunkLen, info)
		}
	})
}

// validator is a request with a Validate method, as the validator interceptor calls it.
type validator interface {
	proto.Message
	Validate() error
}

// FuzzValidateWire decodes arbitrary bytes as each validated request type: Validate must not
// panic, and its verdict depends on the message only, so that it survives a marshal round trip
// (the client's bytes and the server's decoding of them are judged alike).
func FuzzValidateWire(f *testing.F) {
	for _, m := range []proto.Message{
		&modeldv1.GenerateRequest{Prompt: "a", Stop: []string{"b"}, Sampling: &modeldv1.SamplingParams{LogitBias: map[int32]float32{1: 5}}},
		&modeldv1.UploadDatasetRequest{Part: &modeldv1.UploadDatasetRequest_Chunk{Chunk: []byte("data")}},
		&modeldv1.GetModelRequest{Name: "tiny"},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range []validator{&modeldv1.GenerateRequest{}, &modeldv1.UploadDatasetRequest{}, &modeldv1.GetModelRequest{},
			&modeldv1.LoadModelRequest{}, &modeldv1.UnloadModelRequest{}} {
			if proto.Unmarshal(data, m) != nil {
				continue
			}
			first := m.Validate()
			b, err := proto.Marshal(m)
			if err != nil {
				t.Fatalf("%T: Marshal after Unmarshal: %v", m, err)
			}
			again := m.ProtoReflect().New().Interface().(validator)
			if err := proto.Unmarshal(b, again); err != nil {
				t.Fatalf("%T: Unmarshal of its own Marshal: %v", m, err)
			}
			if second := again.Validate(); (first == nil) != (second == nil) {
				t.Fatalf("%T: Validate = %v, after a round trip %v", m, first, second)
			}
		}
	})
}

func TestValidateNames(t *testing.T) {
	for _, m := range []validator{&modeldv1.GetModelRequest{}, &modeldv1.LoadModelRequest{}, &modeldv1.UnloadModelRequest{}} {
		if m.Validate() == nil {
			t.Errorf("%T without a name is valid", m)
		}
	}
	if err := (&modeldv1.LoadModelRequest{Name: "tiny"}).Validate(); err != nil {
		t.Errorf("LoadModelRequest{tiny}: %v", err)
	}
}
