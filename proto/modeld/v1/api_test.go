package modeldv1_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

// field describes a field as "number cardinality kind", plus " presence" for a
// scalar with explicit presence (proto3 optional).
func field(fd protoreflect.FieldDescriptor) string {
	s := fmt.Sprintf("%d %v %v", fd.Number(), fd.Cardinality(), fd.Kind())
	if fd.IsMap() {
		s = fmt.Sprintf("%d map<%v,%v>", fd.Number(), fd.MapKey().Kind(), fd.MapValue().Kind())
	}
	if fd.HasPresence() && fd.Kind() != protoreflect.MessageKind {
		s += " presence"
	}
	return s
}

// TestContract guards the field names, numbers and types that clients rely on:
// renaming or renumbering one breaks JSON or wire compatibility. Adding fields
// is fine and needs no change here.
func TestContract(t *testing.T) {
	tests := []struct {
		msg    proto.Message
		fields map[string]string
	}{
		{&modeldv1.GenerateRequest{}, map[string]string{
			"model":            "1 optional string",
			"prompt":           "2 optional string",
			"prompt_token_ids": "3 repeated int32",
			"max_new_tokens":   "4 optional uint32",
			"min_new_tokens":   "5 optional uint32",
			"sampling":         "6 optional message",
			"stop":             "7 repeated string",
			"stop_token_ids":   "8 repeated int32",
			"ignore_eos":       "9 optional bool",
			"n":                "10 optional uint32",
			"logprobs":         "11 optional uint32",
			"prompt_logprobs":  "12 optional bool",
		}},
		{&modeldv1.SamplingParams{}, map[string]string{
			"temperature":        "1 optional float presence",
			"top_k":              "2 optional uint32 presence",
			"top_p":              "3 optional float presence",
			"min_p":              "4 optional float presence",
			"typical_p":          "5 optional float presence",
			"repetition_penalty": "6 optional float presence",
			"presence_penalty":   "7 optional float",
			"frequency_penalty":  "8 optional float",
			"logit_bias":         "9 map<int32,float>",
			"seed":               "10 optional uint64 presence",
		}},
		{&modeldv1.GenerateResponse{}, map[string]string{
			"index":           "1 optional uint32",
			"token_ids":       "2 repeated int32",
			"text":            "3 optional string",
			"logprobs":        "4 repeated message",
			"prompt_logprobs": "5 repeated message",
			"finish_reason":   "6 optional enum",
			"stop_reason":     "7 optional string",
			"usage":           "8 optional message",
			"timings":         "9 optional message",
		}},
		{&modeldv1.WatchTrainingJobRequest{}, map[string]string{
			"id":             "1 optional string",
			"after_sequence": "2 optional uint64",
		}},
	}
	for _, tt := range tests {
		md := tt.msg.ProtoReflect().Descriptor()
		t.Run("message="+string(md.Name()), func(t *testing.T) {
			for name, want := range tt.fields {
				fd := md.Fields().ByName(protoreflect.Name(name))
				if fd == nil {
					t.Errorf("field %s is missing", name)
					continue
				}
				if got := field(fd); got != want {
					t.Errorf("field %s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

// TestGenerateRequestJSON checks that a request written with the contract's
// field names decodes as documented: an explicit temperature 0 (greedy) is
// told apart from an unset temperature (default 1.0).
func TestGenerateRequestJSON(t *testing.T) {
	const in = `{
		"model": "gpt2",
		"prompt_token_ids": [15496, 995],
		"max_new_tokens": 8,
		"sampling": {"temperature": 0, "logit_bias": {"50256": -100}},
		"stop": ["\n"],
		"n": 2
	}`
	var req modeldv1.GenerateRequest
	if err := protojson.Unmarshal([]byte(in), &req); err != nil {
		t.Fatalf("protojson.Unmarshal: %v", err)
	}
	s := req.GetSampling()
	if s.Temperature == nil || *s.Temperature != 0 {
		t.Errorf("sampling.temperature = %v, want set to 0", s.Temperature)
	}
	if s.TopP != nil {
		t.Errorf("sampling.top_p is set, want unset")
	}
	if got := s.GetLogitBias()[50256]; got != -100 {
		t.Errorf("sampling.logit_bias[50256] = %v, want -100", got)
	}
	if got := req.GetPromptTokenIds(); len(got) != 2 || got[0] != 15496 || got[1] != 995 {
		t.Errorf("prompt_token_ids = %v, want [15496 995]", got)
	}
	if req.GetModel() != "gpt2" || req.GetMaxNewTokens() != 8 || req.GetN() != 2 || len(req.GetStop()) != 1 {
		t.Errorf("decoded %v, want model, max_new_tokens, n and stop set", &req)
	}

	// Written back with proto names, the contract's names come out.
	out, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&req)
	if err != nil {
		t.Fatalf("protojson.Marshal: %v", err)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(out, &keys); err != nil {
		t.Fatalf("json.Unmarshal(%s): %v", out, err)
	}
	for _, k := range []string{"model", "prompt_token_ids", "max_new_tokens", "sampling", "stop", "n"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("protojson output %s has no key %q", out, k)
		}
	}
}
