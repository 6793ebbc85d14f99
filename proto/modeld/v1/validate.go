package modeldv1

import (
	"errors"
	"fmt"
)

// The Validate methods check what a request must satisfy whatever the model: the go-grpc-middleware
// validator interceptor calls them before the handler and answers InvalidArgument with their
// error. Limits that depend on the model or the server's flags are checked by the handlers.

// MaxLogprobs is the largest GenerateRequest.logprobs (OpenAI's top_logprobs limit).
const MaxLogprobs = 20

// Validate checks that exactly one of prompt and prompt_token_ids is given, that logprobs is at
// most MaxLogprobs, and that no stop string is empty.
func (r *GenerateRequest) Validate() error {
	switch {
	case r.GetPrompt() == "" && len(r.GetPromptTokenIds()) == 0:
		return errors.New("the prompt is empty: give prompt or prompt_token_ids")
	case r.GetPrompt() != "" && len(r.GetPromptTokenIds()) > 0:
		return errors.New("give prompt or prompt_token_ids, not both")
	case r.GetLogprobs() > MaxLogprobs:
		return fmt.Errorf("logprobs must be at most %d, got %d", MaxLogprobs, r.GetLogprobs())
	}
	for i, s := range r.GetStop() {
		if s == "" {
			return fmt.Errorf("stop[%d] is empty", i)
		}
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
