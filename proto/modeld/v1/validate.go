package modeldv1

import (
	"errors"
	"fmt"
)

// The Validate methods check what a request must satisfy whatever the model: the go-grpc-middleware
// validator interceptor calls them before the handler and answers InvalidArgument with their
// error. Limits that depend on the model or the server's flags are checked by the handlers.

// Limits of a request, as the .proto files document them.
const (
	// MaxLogprobs is the largest GenerateRequest.logprobs (OpenAI's top_logprobs limit).
	MaxLogprobs = 20
	// MaxStops is the most GenerateRequest.stop strings, each of 1 to MaxStopBytes bytes.
	MaxStops     = 16
	MaxStopBytes = 256
	// MaxStopTokenIDs is the most GenerateRequest.stop_token_ids.
	MaxStopTokenIDs = 64
	// MaxLogitBias is the most SamplingParams.logit_bias entries, each value in
	// [-MaxLogitBiasValue, MaxLogitBiasValue] (OpenAI's limits).
	MaxLogitBias      = 300
	MaxLogitBiasValue = 100
	// MaxChunkBytes is the largest UploadDatasetRequest.chunk, in bytes.
	MaxChunkBytes = 1 << 20
	// MaxDatasetNameBytes is the longest DatasetInfo.name, in bytes.
	MaxDatasetNameBytes = 256
)

// Validate checks that exactly one of prompt and prompt_token_ids is given, that logprobs is at
// most MaxLogprobs, that there are at most MaxStops stop strings of 1 to MaxStopBytes bytes and
// at most MaxStopTokenIDs stop token ids, and that logit_bias has at most MaxLogitBias entries,
// each in [-MaxLogitBiasValue, MaxLogitBiasValue].
func (r *GenerateRequest) Validate() error {
	switch {
	case r.GetPrompt() == "" && len(r.GetPromptTokenIds()) == 0:
		return errors.New("the prompt is empty: give prompt or prompt_token_ids")
	case r.GetPrompt() != "" && len(r.GetPromptTokenIds()) > 0:
		return errors.New("give prompt or prompt_token_ids, not both")
	case r.GetLogprobs() > MaxLogprobs:
		return fmt.Errorf("logprobs must be at most %d, got %d", MaxLogprobs, r.GetLogprobs())
	case len(r.GetStop()) > MaxStops:
		return fmt.Errorf("at most %d stop strings, got %d", MaxStops, len(r.GetStop()))
	case len(r.GetStopTokenIds()) > MaxStopTokenIDs:
		return fmt.Errorf("at most %d stop_token_ids, got %d", MaxStopTokenIDs, len(r.GetStopTokenIds()))
	case len(r.GetSampling().GetLogitBias()) > MaxLogitBias:
		return fmt.Errorf("at most %d logit_bias entries, got %d", MaxLogitBias, len(r.GetSampling().GetLogitBias()))
	}
	for i, s := range r.GetStop() {
		if s == "" || len(s) > MaxStopBytes {
			return fmt.Errorf("stop[%d] has %d bytes, want 1 to %d", i, len(s), MaxStopBytes)
		}
	}
	for id, b := range r.GetSampling().GetLogitBias() {
		if !(b >= -MaxLogitBiasValue && b <= MaxLogitBiasValue) { // NaN fails too
			return fmt.Errorf("logit_bias[%d] = %v, want [%d, %d]", id, b, -MaxLogitBiasValue, MaxLogitBiasValue)
		}
	}
	return nil
}

// Validate checks the part: the info's name has at most MaxDatasetNameBytes bytes, a chunk at
// most MaxChunkBytes. Which part comes first is the handler's business.
func (r *UploadDatasetRequest) Validate() error {
	if n := len(r.GetInfo().GetName()); n > MaxDatasetNameBytes {
		return fmt.Errorf("the dataset name has %d bytes, above %d", n, MaxDatasetNameBytes)
	}
	if n := len(r.GetChunk()); n > MaxChunkBytes {
		return fmt.Errorf("a chunk has %d bytes, above %d: send smaller chunks", n, MaxChunkBytes)
	}
	return nil
}

// Validate checks that the model is named.
func (r *GetModelRequest) Validate() error { return requireName(r.GetName()) }

// Validate checks that the model is named.
func (r *LoadModelRequest) Validate() error { return requireName(r.GetName()) }

// Validate checks that the model is named.
func (r *UnloadModelRequest) Validate() error { return requireName(r.GetName()) }

func requireName(name string) error {
	if name == "" {
		return errors.New("name is required")
	}
	return nil
}
