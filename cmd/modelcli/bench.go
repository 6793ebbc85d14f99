package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

const benchAbout = `Load-test the server like vLLM's benchmark_serving: --concurrency streams run at once until
--requests requests are done or --duration has passed, whichever comes first; then a report.

  TTFT   time from sending a request to the first message that carries tokens
  ITL    inter-token latency: the gap between two successive token-bearing messages of a
         sequence, divided by the tokens of the later message (one entry per token)
  TPOT   time per output token after the first: (E2E - TTFT) / (output tokens - 1), per request
  E2E    end-to-end latency: from sending a request to the end of its stream

Each is given as mean, p50, p90 and p99 in milliseconds over the successful requests; output
tokens/s and requests/s are over the wall time of the whole run.

Without --prompt, each request gets a fresh random prompt of --prompt-len tokens (from --seed):
single-token English words when the model has a tokenizer, token ids in [0, 256) when it has
none. One untimed request runs first; it loads the model and checks the settings. Failed
requests are reported by status code and make the exit code 1; requests cut short by --duration
or Ctrl-C are reported as incomplete.`

// benchOptions are the settings of a bench run.
type benchOptions struct {
	model        string
	concurrency  int
	requests     int
	duration     time.Duration
	prompt       string
	promptLen    int
	maxNewTokens uint32
	ignoreEOS    bool
	seed         uint64
	sampleSeed   bool     // send seed+i as request i's sampling seed
	temperature  *float32 // nil: the server's default
}

// bench implements "modelcli bench".
func (c *cli) bench(ctx context.Context, args []string) error {
	fs := c.flagSet("bench", "[flags]", benchAbout)
	o := benchOptions{}
	var temperature float32
	fs.StringVar(&o.model, "model", "", "`name` of the model to load-test (default: the server's --default-model)")
	fs.IntVar(&o.concurrency, "concurrency", 8, "requests in flight at once")
	fs.IntVar(&o.requests, "requests", 100, "requests to send in all")
	fs.DurationVar(&o.duration, "duration", 10*time.Minute, "stop the run after this long, cancelling the requests in flight; 0 for no limit")
	fs.StringVar(&o.prompt, "prompt", "", "the prompt `text` of every request (default: random prompts of --prompt-len tokens)")
	fs.IntVar(&o.promptLen, "prompt-len", 16, "tokens in each random prompt")
	o.maxNewTokens = 32
	fs.Var(uint32Flag{&o.maxNewTokens}, "max-new-tokens", "tokens to generate per request")
	fs.BoolVar(&o.ignoreEOS, "ignore-eos", true, "keep generating after EOS, so that every request generates --max-new-tokens (--ignore-eos=false to stop at EOS)")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the random prompts; when given, request i also samples with seed+i")
	fs.Var(float32Flag{&temperature}, "temperature", "sampling temperature; 0 is greedy (default: the server's, 1)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usagef("bench: unexpected argument %q (a prompt goes in --prompt)", pos[0])
	case o.concurrency < 1 || o.requests < 1:
		return usagef("bench: --concurrency and --requests must be at least 1")
	case o.prompt == "" && o.promptLen < 1:
		return usagef("bench: --prompt-len must be at least 1")
	case o.maxNewTokens < 1:
		return usagef("bench: --max-new-tokens must be at least 1")
	case o.duration < 0:
		return usagef("bench: --duration must not be negative")
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "seed":
			o.sampleSeed = true
		case "temperature":
			o.temperature = &temperature
		}
	})

	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	gen := modeldv1.NewGenerateServiceClient(conn)
	newRequest, kind, err := c.benchRequests(ctx, gen, o)
	if err != nil {
		return err
	}
	one := func(ctx context.Context, i int) benchSample {
		ctx, cancel := c.callContext(ctx)
		defer cancel()
		return benchOne(ctx, gen, newRequest(i))
	}
	if s := one(ctx, o.requests); s.err != nil {
		return fmt.Errorf("test request: %w", s.err)
	}

	samples, wall := benchRun(ctx, o, one)
	r := newBenchReport(o, kind, samples, wall)
	if c.json() {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if _, err := c.stdout.Write(append(b, '\n')); err != nil {
			return err
		}
	} else if err := r.print(c.stdout); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.Failed > 0 {
		return fmt.Errorf("bench: %d of %d requests failed", r.Failed, r.Completed+r.Failed+r.Incomplete)
	}
	return nil
}

// benchWords are candidates for random text prompts: common English words that are one token
// each in GPT-2's vocabulary. benchRequests keeps those that are one token for the model.
var benchWords = []string{" the", " of", " and", " to", " in", " a", " is", " that", " for", " it",
	" as", " was", " with", " be", " by", " on", " not", " he", " this", " are", " or", " his"}

// benchRequests returns the function that makes request i of a run, and the kind of its
// prompts: "text" (--prompt), "words" or "token_ids". It asks the server's tokenizer which
// words are one token, so that a prompt of L words is L tokens.
func (c *cli) benchRequests(ctx context.Context, gen modeldv1.GenerateServiceClient, o benchOptions) (func(i int) *modeldv1.GenerateRequest, string, error) {
	base := &modeldv1.GenerateRequest{Model: o.model, MaxNewTokens: o.maxNewTokens, IgnoreEos: o.ignoreEOS}
	if o.temperature != nil {
		base.Sampling = &modeldv1.SamplingParams{Temperature: proto.Float32(*o.temperature)}
	}
	request := func(i int) *modeldv1.GenerateRequest {
		req := proto.CloneOf(base)
		if o.sampleSeed {
			if req.Sampling == nil {
				req.Sampling = &modeldv1.SamplingParams{}
			}
			req.Sampling.Seed = proto.Uint64(o.seed + uint64(i))
		}
		return req
	}
	if o.prompt != "" {
		return func(i int) *modeldv1.GenerateRequest {
			req := request(i)
			req.Prompt = o.prompt
			return req
		}, "text", nil
	}

	var words []string
	for _, w := range benchWords {
		ctx, cancel := c.callContext(ctx)
		resp, err := gen.Tokenize(ctx, &modeldv1.TokenizeRequest{Model: o.model, Text: w})
		cancel()
		if status.Code(err) == codes.FailedPrecondition { // no tokenizer
			break
		}
		if err != nil {
			return nil, "", err
		}
		if len(resp.GetTokenIds()) == 1 {
			words = append(words, w)
		}
	}
	rng := func(i int) *rand.Rand { return rand.New(rand.NewPCG(o.seed, uint64(i))) }
	if len(words) > 0 {
		return func(i int) *modeldv1.GenerateRequest {
			r, req := rng(i), request(i)
			var b strings.Builder
			for range o.promptLen {
				b.WriteString(words[r.IntN(len(words))])
			}
			req.Prompt = b.String()
			return req
		}, "words", nil
	}
	return func(i int) *modeldv1.GenerateRequest {
		r, req := rng(i), request(i)
		req.PromptTokenIds = make([]int32, o.promptLen)
		for j := range req.PromptTokenIds {
			req.PromptTokenIds[j] = r.Int32N(256)
		}
		return req
	}, "token_ids", nil
}

// benchSample is what one request measured.
type benchSample struct {
	err          error
	ttft, e2e    time.Duration
	itl          []time.Duration // one entry per token after the first message's
	tokens       int             // output tokens received
	promptTokens int             // from the final message's usage
}

// benchOne sends req and times its stream.
func benchOne(ctx context.Context, gen modeldv1.GenerateServiceClient, req *modeldv1.GenerateRequest) benchSample {
	var s benchSample
	start := time.Now()
	stream, err := gen.Generate(ctx, req)
	if err != nil {
		s.err = err
		return s
	}
	var last time.Time
	for {
		resp, err := stream.Recv()
		now := time.Now()
		if errors.Is(err, io.EOF) {
			s.e2e = now.Sub(start)
			return s
		}
		if err != nil {
			s.err = err
			return s
		}
		if k := len(resp.GetTokenIds()); k > 0 {
			if s.tokens == 0 {
				s.ttft = now.Sub(start)
			} else {
				gap := now.Sub(last) / time.Duration(k)
				for range k {
					s.itl = append(s.itl, gap)
				}
			}
			s.tokens += k
			last = now
		}
		if u := resp.GetUsage(); u != nil {
			s.promptTokens = int(u.GetPromptTokens())
		}
	}
}

// benchRun sends o.requests requests through one, o.concurrency at a time, until they are done,
// o.duration has passed or ctx is cancelled. It returns the samples of the requests it started,
// in no particular order, and the wall time of the run.
func benchRun(ctx context.Context, o benchOptions, one func(ctx context.Context, i int) benchSample) ([]benchSample, time.Duration) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	var (
		next    atomic.Int64
		mu      sync.Mutex
		samples []benchSample
		wg      sync.WaitGroup
	)
	// over reports whether the run is over. It reads the clock as well as ctx.Err, since gRPC fails
	// a call whose deadline has passed a moment before the context's timer fires.
	deadline, hasDeadline := ctx.Deadline()
	over := func() bool { return ctx.Err() != nil || hasDeadline && !time.Now().Before(deadline) }
	start := time.Now()
	for range min(o.concurrency, o.requests) {
		wg.Go(func() {
			var mine []benchSample
			for {
				i := int(next.Add(1) - 1)
				if i >= o.requests || over() {
					break
				}
				s := one(ctx, i)
				if s.err != nil && over() {
					switch status.Code(s.err) {
					case codes.Canceled, codes.DeadlineExceeded:
						s.err = errIncomplete
					}
				}
				mine = append(mine, s)
			}
			mu.Lock()
			samples = append(samples, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return samples, time.Since(start)
}

// errIncomplete marks a request cut short by the end of the run.
var errIncomplete = errors.New("cut short by the end of the run")

// latency summarizes a distribution, in milliseconds.
type latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
}

// summarize returns the mean and percentiles of ds; zeros when ds is empty.
func summarize(ds []time.Duration) latency {
	if len(ds) == 0 {
		return latency{}
	}
	ms := make([]float64, len(ds))
	sum := 0.0
	for i, d := range ds {
		ms[i] = float64(d) / float64(time.Millisecond)
		sum += ms[i]
	}
	slices.Sort(ms)
	return latency{Mean: sum / float64(len(ms)), P50: percentile(ms, 50), P90: percentile(ms, 90), P99: percentile(ms, 99)}
}

// percentile returns the p-th percentile of sorted values, interpolating linearly between the
// two nearest ranks (numpy.percentile's default, which vLLM's benchmark uses).
func percentile(sorted []float64, p float64) float64 {
	r := p / 100 * float64(len(sorted)-1)
	lo, hi := int(math.Floor(r)), int(math.Ceil(r))
	return sorted[lo] + (sorted[hi]-sorted[lo])*(r-float64(lo))
}

// benchReport is the result of a run; --output json prints it as is.
type benchReport struct {
	Model                string            `json:"model"`
	PromptKind           string            `json:"prompt"` // text, words or token_ids
	Concurrency          int               `json:"concurrency"`
	MaxNewTokens         uint32            `json:"max_new_tokens"`
	Requests             int               `json:"requests"`               // asked for
	Completed            int               `json:"completed"`              // successful
	Failed               int               `json:"failed"`                 // ended with an error status
	Incomplete           int               `json:"incomplete"`             // cut short by --duration or Ctrl-C
	DurationS            float64           `json:"duration_s"`             // wall time of the run
	InputTokens          int               `json:"total_input_tokens"`     // of the completed requests
	OutputTokens         int               `json:"total_output_tokens"`    // of the completed requests
	RequestThroughput    float64           `json:"request_throughput"`     // completed requests/s
	OutputThroughput     float64           `json:"output_throughput"`      // output tokens/s
	TotalTokenThroughput float64           `json:"total_token_throughput"` // input + output tokens/s
	TTFT                 latency           `json:"ttft_ms"`
	ITL                  latency           `json:"itl_ms"`
	TPOT                 latency           `json:"tpot_ms"`
	E2E                  latency           `json:"e2el_ms"`
	Errors               map[string]int    `json:"errors,omitempty"`         // failed requests by status code
	ErrorMessages        map[string]string `json:"error_messages,omitempty"` // the first message of each code
}

func newBenchReport(o benchOptions, kind string, samples []benchSample, wall time.Duration) benchReport {
	r := benchReport{Model: cmp.Or(o.model, "(default)"), PromptKind: kind, Concurrency: o.concurrency,
		MaxNewTokens: o.maxNewTokens, Requests: o.requests, DurationS: wall.Seconds()}
	var ttft, itl, tpot, e2e []time.Duration
	for _, s := range samples {
		switch {
		case errors.Is(s.err, errIncomplete):
			r.Incomplete++
			continue
		case s.err != nil:
			r.Failed++
			code := status.Code(s.err).String()
			if r.Errors == nil {
				r.Errors, r.ErrorMessages = map[string]int{}, map[string]string{}
			}
			if r.Errors[code]++; r.Errors[code] == 1 {
				r.ErrorMessages[code] = status.Convert(s.err).Message()
			}
			continue
		}
		r.Completed++
		r.InputTokens += s.promptTokens
		r.OutputTokens += s.tokens
		if s.tokens > 0 {
			ttft = append(ttft, s.ttft)
		}
		if s.tokens > 1 {
			tpot = append(tpot, (s.e2e-s.ttft)/time.Duration(s.tokens-1))
		}
		itl = append(itl, s.itl...)
		e2e = append(e2e, s.e2e)
	}
	if secs := wall.Seconds(); secs > 0 {
		r.RequestThroughput = float64(r.Completed) / secs
		r.OutputThroughput = float64(r.OutputTokens) / secs
		r.TotalTokenThroughput = float64(r.InputTokens+r.OutputTokens) / secs
	}
	r.TTFT, r.ITL, r.TPOT, r.E2E = summarize(ttft), summarize(itl), summarize(tpot), summarize(e2e)
	return r
}

// print writes the report as text, in the manner of vLLM's benchmark_serving.
func (r benchReport) print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "============ modelcli bench ============")
	fmt.Fprintf(tw, "Model:\t%s\n", r.Model)
	fmt.Fprintf(tw, "Prompts:\t%s\n", r.PromptKind)
	fmt.Fprintf(tw, "Concurrency:\t%d\n", r.Concurrency)
	fmt.Fprintf(tw, "Successful requests:\t%d\n", r.Completed)
	fmt.Fprintf(tw, "Failed requests:\t%d\n", r.Failed)
	if r.Incomplete > 0 {
		fmt.Fprintf(tw, "Incomplete requests:\t%d\n", r.Incomplete)
	}
	if n := r.Completed + r.Failed + r.Incomplete; n < r.Requests {
		fmt.Fprintf(tw, "Not sent:\t%d\n", r.Requests-n)
	}
	fmt.Fprintf(tw, "Benchmark duration (s):\t%.2f\n", r.DurationS)
	fmt.Fprintf(tw, "Total input tokens:\t%d\n", r.InputTokens)
	fmt.Fprintf(tw, "Total generated tokens:\t%d\n", r.OutputTokens)
	fmt.Fprintf(tw, "Request throughput (req/s):\t%.2f\n", r.RequestThroughput)
	fmt.Fprintf(tw, "Output token throughput (tok/s):\t%.2f\n", r.OutputThroughput)
	fmt.Fprintf(tw, "Total token throughput (tok/s):\t%.2f\n", r.TotalTokenThroughput)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%-14s%10s%10s%10s%10s\n", "Latency (ms)", "mean", "p50", "p90", "p99")
	for _, row := range []struct {
		name string
		l    latency
	}{{"TTFT", r.TTFT}, {"ITL", r.ITL}, {"TPOT", r.TPOT}, {"E2E", r.E2E}} {
		fmt.Fprintf(w, "%-14s%10.2f%10.2f%10.2f%10.2f\n", row.name, row.l.Mean, row.l.P50, row.l.P90, row.l.P99)
	}
	for _, code := range slices.Sorted(maps.Keys(r.Errors)) {
		fmt.Fprintf(w, "Errors: %d %s, first: %s\n", r.Errors[code], code, r.ErrorMessages[code])
	}
	_, err := fmt.Fprintln(w, "========================================")
	return err
}
