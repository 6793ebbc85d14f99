package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

const generateAbout = `Continue PROMPT (the arguments, joined by spaces) or --prompt-ids, and stream the new text to
stdout as it arrives. A summary line goes to stderr at the end: finish reason, prompt and
completion tokens, time to first token and total time, as the server measured them.

Sampling flags that are not given are not sent: the server's defaults apply (temperature 1, no
filters). --temperature 0 is greedy decoding.

With --n 1 the text streams. With --n above 1 the sequences arrive interleaved: each is collected
and printed when the stream ends, as a block headed "=== sequence i ===". A model without a
tokenizer produces no text; its generated token ids are printed instead, space-separated.
--logprobs and --prompt-logprobs are shown only with --output json, which prints every response
message as one protojson line.`

// parseGenerate builds the GenerateRequest of a generate command line. Proto3 optional fields
// are set only if their flag is given (flag.Visit), so that the server's defaults apply.
func (c *cli) parseGenerate(args []string) (*modeldv1.GenerateRequest, error) {
	fs := c.flagSet("generate", "[flags] PROMPT", generateAbout)
	var (
		req = &modeldv1.GenerateRequest{}
		sp  = &modeldv1.SamplingParams{}

		temperature, topP, minP, typicalP, repetitionPenalty float32
		topK                                                 uint32
		seed                                                 uint64
	)
	fs.StringVar(&req.Model, "model", "", "`name` of a loaded model (default: the server's --default-model)")
	fs.Var(idsFlag{&req.PromptTokenIds}, "prompt-ids", "prompt as token `ids`, e.g. 464,3290,318, instead of PROMPT")
	fs.Var(uint32Flag{&req.MaxNewTokens}, "max-new-tokens", "most tokens to generate per sequence (0: the server's default, 16)")
	fs.Var(uint32Flag{&req.MinNewTokens}, "min-new-tokens", "fewest tokens to generate before EOS or a stop may end a sequence")
	fs.Var(float32Flag{&temperature}, "temperature", "sampling temperature in [0, 100]; 0 is greedy (server default 1)")
	fs.Var(uint32Flag{&topK}, "top-k", "keep the k most likely tokens; 0 for no limit")
	fs.Var(float32Flag{&topP}, "top-p", "nucleus sampling: keep the most likely tokens up to this probability mass, in (0, 1]")
	fs.Var(float32Flag{&minP}, "min-p", "keep tokens at least this fraction as likely as the most likely one, in [0, 1]")
	fs.Var(float32Flag{&typicalP}, "typical-p", "locally typical sampling mass, in (0, 1]")
	fs.Var(float32Flag{&repetitionPenalty}, "repetition-penalty", "penalty for tokens already seen, in (0, 10]; above 1 discourages repetition")
	fs.Var(float32Flag{&sp.PresencePenalty}, "presence-penalty", "subtracted once from the logit of each generated token, in [-2, 2]")
	fs.Var(float32Flag{&sp.FrequencyPenalty}, "frequency-penalty", "subtracted from a token's logit per time it was generated, in [-2, 2]")
	fs.Var(biasFlag{&sp.LogitBias}, "logit-bias", "`ID=BIAS,...` added to the logits, e.g. 50256=-100; bias in [-100, 100]")
	fs.Uint64Var(&seed, "seed", 0, "seed of the sampler, for reproducible output (default: chosen by the server)")
	fs.Var(stringsFlag{&req.Stop}, "stop", "`string` that ends a sequence; repeat for several")
	fs.Var(idsFlag{&req.StopTokenIds}, "stop-token-ids", "token `ids` that end a sequence, e.g. 13,198")
	fs.BoolVar(&req.IgnoreEos, "ignore-eos", false, "keep generating after the EOS token")
	fs.Var(uint32Flag{&req.N}, "n", "number of sequences to generate (0 or 1: one)")
	fs.Var(uint32Flag{&req.Logprobs}, "logprobs", "report the log probability of each token and this many alternatives, in [0, 20]")
	fs.BoolVar(&req.PromptLogprobs, "prompt-logprobs", false, "report the log probability of each prompt token")
	pos, err := c.parse(fs, args)
	if err != nil {
		return nil, err
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["temperature"] {
		sp.Temperature = proto.Float32(temperature)
	}
	if set["top-k"] {
		sp.TopK = proto.Uint32(topK)
	}
	if set["top-p"] {
		sp.TopP = proto.Float32(topP)
	}
	if set["min-p"] {
		sp.MinP = proto.Float32(minP)
	}
	if set["typical-p"] {
		sp.TypicalP = proto.Float32(typicalP)
	}
	if set["repetition-penalty"] {
		sp.RepetitionPenalty = proto.Float32(repetitionPenalty)
	}
	if set["seed"] {
		sp.Seed = proto.Uint64(seed)
	}
	if !proto.Equal(sp, &modeldv1.SamplingParams{}) {
		req.Sampling = sp
	}

	req.Prompt = strings.Join(pos, " ")
	switch {
	case req.Prompt != "" && len(req.PromptTokenIds) > 0:
		return nil, usagef("generate: give PROMPT or --prompt-ids, not both")
	case req.Prompt == "" && len(req.PromptTokenIds) == 0:
		return nil, usagef("generate: give a PROMPT or --prompt-ids; run 'modelcli generate -h'")
	}
	return req, nil
}

// sequence is what the stream has brought of one of the request's sequences.
type sequence struct {
	text strings.Builder
	ids  []int32
	last *modeldv1.GenerateResponse // the message with finish_reason; nil until it comes
}

// generate implements "modelcli generate".
func (c *cli) generate(ctx context.Context, args []string) error {
	req, err := c.parseGenerate(args)
	if err != nil {
		return err
	}
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := c.callContext(ctx)
	defer cancel()

	stream, err := modeldv1.NewGenerateServiceClient(conn).Generate(ctx, req)
	if err != nil {
		return err
	}
	n := max(int(req.GetN()), 1)
	seqs := []*sequence{{}} // grown as indices arrive: n is not checked yet
	streaming := n == 1 && !c.json()
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if t := seqs[0].text.String(); streaming && t != "" && !strings.HasSuffix(t, "\n") {
				fmt.Fprintln(c.stderr) // the error goes on its own line
			}
			return err
		}
		if c.json() {
			if err := c.printJSON(resp); err != nil {
				return err
			}
			continue
		}
		if int(resp.GetIndex()) >= n {
			return fmt.Errorf("the server sent sequence index %d for a request of %d", resp.GetIndex(), n)
		}
		for len(seqs) <= int(resp.GetIndex()) {
			seqs = append(seqs, &sequence{})
		}
		s := seqs[resp.GetIndex()]
		s.ids = append(s.ids, resp.GetTokenIds()...)
		s.text.WriteString(resp.GetText())
		if resp.GetFinishReason() != modeldv1.FinishReason_FINISH_REASON_UNSPECIFIED {
			s.last = resp
		}
		if streaming && resp.GetText() != "" {
			if _, err := io.WriteString(c.stdout, resp.GetText()); err != nil {
				return err
			}
			if err := flush(c.stdout); err != nil {
				return err
			}
		}
	}
	if c.json() {
		return nil
	}
	return c.printSequences(seqs, streaming)
}

// printSequences ends the text output of generate: the blocks of n > 1 sequences, the token ids
// of sequences without text, and the summary lines on stderr.
func (c *cli) printSequences(seqs []*sequence, streamed bool) error {
	var out strings.Builder
	endsLine := true
	for i := range seqs {
		s := seqs[i]
		body := s.text.String()
		if body == "" && len(s.ids) > 0 {
			body = formatIDs(s.ids, " ") + "\n"
		}
		if streamed {
			if s.text.Len() == 0 {
				out.WriteString(body)
			} else {
				endsLine = strings.HasSuffix(body, "\n")
			}
			continue
		}
		fmt.Fprintf(&out, "=== sequence %d ===\n%s", i, body)
		if !strings.HasSuffix(body, "\n") {
			out.WriteString("\n")
		}
	}
	if _, err := io.WriteString(c.stdout, out.String()); err != nil {
		return err
	}
	if err := flush(c.stdout); err != nil {
		return err
	}
	if !endsLine {
		// Streamed text is written exactly as generated; end the terminal's line on stderr, so
		// that the summary starts on its own line and stdout stays the model's output.
		fmt.Fprintln(c.stderr)
	}
	for i := range seqs {
		prefix := ""
		if !streamed {
			prefix = fmt.Sprintf("sequence %d: ", i)
		}
		fmt.Fprintln(c.stderr, prefix+summary(seqs[i].last))
	}
	return nil
}

// summary is the one-line report of a sequence's last message.
func summary(last *modeldv1.GenerateResponse) string {
	if last == nil {
		return "finish=unknown (the stream ended without a final message)"
	}
	s := fmt.Sprintf("finish=%s", enumName(last.GetFinishReason().String(), "FINISH_REASON_"))
	if r := last.GetStopReason(); r != "" {
		s += fmt.Sprintf(" stop_reason=%q", r)
	}
	u, t := last.GetUsage(), last.GetTimings()
	s += fmt.Sprintf(" prompt_tokens=%d completion_tokens=%d", u.GetPromptTokens(), u.GetCompletionTokens())
	if t != nil {
		s += fmt.Sprintf(" ttft=%s total=%s", fmtDuration(t.GetTimeToFirstToken().AsDuration()), fmtDuration(t.GetTotal().AsDuration()))
	}
	return s
}

// enumName is an enum value's name without its prefix, in lower case: "length" for
// FINISH_REASON_LENGTH.
func enumName(name, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

// fmtDuration rounds d to three significant digits or so: 1.23ms, 45.6ms, 1.234s.
func fmtDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= 100*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

const tokenizeAbout = `Print the token ids of TEXT (the arguments, joined by spaces) under the model's tokenizer,
space-separated, exactly as generate encodes a prompt. The model need not be loaded.`

// tokenize implements "modelcli tokenize".
func (c *cli) tokenize(ctx context.Context, args []string) error {
	fs := c.flagSet("tokenize", "[--model M] TEXT", tokenizeAbout)
	model := fs.String("model", "", "`name` of the model whose tokenizer to use (default: the server's --default-model)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("tokenize: give the TEXT to tokenize")
	}
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	resp, err := modeldv1.NewGenerateServiceClient(conn).Tokenize(ctx, &modeldv1.TokenizeRequest{Model: *model, Text: strings.Join(pos, " ")})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	_, err = fmt.Fprintln(c.stdout, formatIDs(resp.GetTokenIds(), " "))
	return err
}
