package server

import (
	"context"
	"errors"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/modeld-dev/modeld/internal/engine"
	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
	"github.com/modeld-dev/modeld/sampling"
	"github.com/modeld-dev/modeld/tokenizer"
)

// DefaultMaxNewTokens is max_new_tokens when a request leaves it 0 (vLLM's default max_tokens),
// or fewer if the context has less room after the prompt.
const DefaultMaxNewTokens = 16

type generateService struct {
	modeldv1.UnimplementedGenerateServiceServer
	s *Server
}

// engineFor returns the engine of the request's model, the default model when name is empty.
func (s *Server) engineFor(ctx context.Context, name string) (*engine.Engine, error) {
	if name == "" {
		name = s.opt.DefaultModel
	}
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "model is required: this server has no default model")
	}
	e, err := s.opt.Registry.Engine(ctx, name)
	if err != nil {
		return nil, err
	}
	s.markServing()
	return e, nil
}

// Generate streams the generated tokens of every sequence of the request.
func (g *generateService) Generate(req *modeldv1.GenerateRequest, stream grpc.ServerStreamingServer[modeldv1.GenerateResponse]) error {
	ctx := stream.Context()
	log := g.s.log
	e, err := g.s.engineFor(ctx, req.GetModel())
	if err != nil {
		return toStatus(ctx, log, err)
	}
	tok := e.Tokenizer()
	prompt := req.GetPromptTokenIds()
	if req.GetPrompt() != "" {
		if tok == nil {
			return status.Error(codes.FailedPrecondition, "this model has no tokenizer: send prompt_token_ids")
		}
		prompt = tok.Encode(req.GetPrompt())
	}
	if max := g.s.opt.MaxPromptTokens; max > 0 && len(prompt) > max {
		return status.Errorf(codes.InvalidArgument, "the prompt has %d tokens, above this server's limit of %d", len(prompt), max)
	}
	r := engine.Request{
		Prompt:         prompt,
		MaxNewTokens:   int(req.GetMaxNewTokens()),
		MinNewTokens:   int(req.GetMinNewTokens()),
		Sampling:       samplingParams(req.GetSampling(), int(req.GetLogprobs())),
		Stop:           req.GetStop(),
		StopTokenIDs:   req.GetStopTokenIds(),
		IgnoreEOS:      req.GetIgnoreEos(),
		N:              int(req.GetN()),
		PromptLogprobs: req.GetPromptLogprobs(),
	}
	if r.MaxNewTokens == 0 {
		// What the context leaves, at most the default; at least 1, so that a prompt that fills
		// the context gets the engine's error naming the context, not one about max_new_tokens.
		r.MaxNewTokens = max(1, min(DefaultMaxNewTokens, e.Model().Config.NPositions-len(prompt)))
	}
	if max := g.s.opt.MaxNewTokens; max > 0 && r.MaxNewTokens > max {
		return status.Errorf(codes.InvalidArgument, "max_new_tokens %d is above this server's limit of %d", r.MaxNewTokens, max)
	}
	st, err := e.Submit(ctx, r)
	if err != nil {
		return toStatus(ctx, log, err)
	}
	for {
		chunks, err := st.Recv(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return toStatus(ctx, log, err)
		}
		for _, c := range chunks {
			if err := stream.Send(response(tok, r.Prompt, c, r.Sampling.Logprobs)); err != nil {
				return err
			}
		}
	}
}

// samplingParams maps the request's sampling fields onto sampling.Params: an unset optional
// field takes sampling.DefaultParams' value. logprobs > 0 asks for that many alternatives.
func samplingParams(p *modeldv1.SamplingParams, logprobs int) sampling.Params {
	out := sampling.DefaultParams()
	if p == nil {
		p = &modeldv1.SamplingParams{}
	}
	if p.Temperature != nil {
		out.Temperature = p.GetTemperature()
	}
	if p.TopK != nil {
		out.TopK = int(p.GetTopK())
	}
	if p.TopP != nil {
		out.TopP = p.GetTopP()
	}
	if p.MinP != nil {
		out.MinP = p.GetMinP()
	}
	if p.TypicalP != nil {
		out.TypicalP = p.GetTypicalP()
	}
	if p.RepetitionPenalty != nil {
		out.RepetitionPenalty = p.GetRepetitionPenalty()
	}
	out.PresencePenalty = p.GetPresencePenalty()
	out.FrequencyPenalty = p.GetFrequencyPenalty()
	out.LogitBias = p.GetLogitBias()
	if p.Seed != nil {
		seed := p.GetSeed()
		out.Seed = &seed
	}
	if logprobs > 0 {
		out.Logprobs, out.TopLogprobs = true, logprobs
	}
	return out
}

// tokenText is a token's text for a logprob entry: its bytes, with invalid UTF-8 (part of a
// character split across tokens) replaced, since proto strings must be valid UTF-8.
func tokenText(tok *tokenizer.Tokenizer, id int32) (string, []byte) {
	if tok == nil {
		return "", nil
	}
	b, err := tok.TokenBytes(id)
	if err != nil {
		return "", nil
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), b
}

func response(tok *tokenizer.Tokenizer, prompt []int32, c engine.Chunk, logprobs bool) *modeldv1.GenerateResponse {
	resp := &modeldv1.GenerateResponse{Index: uint32(c.Index), Text: c.Text}
	for _, t := range c.Tokens {
		resp.TokenIds = append(resp.TokenIds, t.Token)
	}
	if logprobs {
		for _, t := range c.Tokens {
			text, raw := tokenText(tok, t.Token)
			lp := &modeldv1.TokenLogprob{TokenId: t.Token, Logprob: t.Logprob, Token: text, TokenBytes: raw}
			for _, alt := range t.TopLogprobs {
				text, raw := tokenText(tok, alt.Token)
				lp.TopLogprobs = append(lp.TopLogprobs, &modeldv1.TopLogprob{TokenId: alt.Token, Logprob: alt.Logprob, Token: text, TokenBytes: raw})
			}
			resp.Logprobs = append(resp.Logprobs, lp)
		}
	}
	for i, lp := range c.PromptLogprobs {
		id := prompt[i+1]
		text, _ := tokenText(tok, id)
		resp.PromptLogprobs = append(resp.PromptLogprobs, &modeldv1.PromptLogprob{TokenId: id, Logprob: lp, Token: text})
	}
	if f := c.Finish; f != nil {
		resp.FinishReason = map[engine.FinishReason]modeldv1.FinishReason{
			engine.FinishStop:      modeldv1.FinishReason_FINISH_REASON_STOP,
			engine.FinishLength:    modeldv1.FinishReason_FINISH_REASON_LENGTH,
			engine.FinishCancelled: modeldv1.FinishReason_FINISH_REASON_CANCELLED,
		}[f.Reason]
		resp.StopReason = f.StopReason
		resp.Usage = &modeldv1.Usage{PromptTokens: uint32(f.PromptTokens), CompletionTokens: uint32(f.CompletionTokens)}
		resp.Timings = &modeldv1.Timings{Queue: durationpb.New(f.Queue), TimeToFirstToken: durationpb.New(f.TTFT), Total: durationpb.New(f.Total)}
	}
	return resp
}

// Tokenize returns the token ids of a text under the model's tokenizer.
func (g *generateService) Tokenize(ctx context.Context, req *modeldv1.TokenizeRequest) (*modeldv1.TokenizeResponse, error) {
	e, err := g.s.engineFor(ctx, req.GetModel())
	if err != nil {
		return nil, toStatus(ctx, g.s.log, err)
	}
	tok := e.Tokenizer()
	if tok == nil {
		return nil, status.Error(codes.FailedPrecondition, "this model has no tokenizer")
	}
	return &modeldv1.TokenizeResponse{TokenIds: tok.Encode(req.GetText())}, nil
}
