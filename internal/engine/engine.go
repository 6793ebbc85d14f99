// Package engine is the generation scheduler: it owns a model's KV cache and runs continuous
// batching over it (after Orca, Yu et al. 2022, and vLLM's scheduler).
//
// One goroutine per engine runs the loop. At every step boundary it drops cancelled sequences,
// admits waiting requests while KV-cache blocks and the sequence limit allow, and runs one
// batched forward over the new tokens of every running sequence: a chunk of each prompt still
// being prefilled (chunked prefill, within the step's token budget) and one token of each
// sequence that is decoding. Then it samples each sequence's next token with the sequence's own
// seeded sampler, detokenizes incrementally (holding back partial UTF-8 and any text that could
// still become a stop string) and hands the chunks to the request's Stream.
//
// KV-cache blocks are reserved at admission for the longest the sequence may grow (prompt plus
// max_new_tokens), so a running sequence never runs out of cache and nothing is preempted; a
// request that could never fit is refused at once with ErrOverloaded. The n sequences of one
// request share their prompt's prefill: the prompt runs once and its cache blocks are copied.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/modeld-dev/modeld/model"
	"github.com/modeld-dev/modeld/sampling"
	"github.com/modeld-dev/modeld/tokenizer"
)

// Config sizes an engine. Zero fields take the defaults in brackets.
type Config struct {
	// MaxBatchTokens is the most new tokens one step runs: every decoding sequence's token
	// plus prompt chunks [512].
	MaxBatchTokens int
	// MaxRunning is the most sequences in the batch at once [64].
	MaxRunning int
	// MaxQueue is the most requests waiting for admission; more get ErrOverloaded [256].
	MaxQueue int
	// MaxN is the largest n (sequences per request) [16].
	MaxN int
	// BlockSize is the number of positions in one KV-cache block [16].
	BlockSize int
	// WeightsBF16 keeps the matmul weights that inference reads in bfloat16, when the backend
	// offers it (model.InferenceOptions.WeightsBF16): half the bytes a decode step reads, logits
	// within a few hundredths of float32's.
	WeightsBF16 bool
	// KVCacheBytes is the memory of the KV cache, in bytes [enough for MaxRunning sequences of
	// the model's full context, at most 1 GiB].
	KVCacheBytes int64
	// Observer is told of each request's admission, each sampled token and each sequence's
	// finish, for metrics; nil observes nothing.
	Observer Observer
}

// Observer receives the events of an engine's requests, for metrics (internal/metrics turns
// them into vLLM's serving metrics). Its methods run on the engine's loop goroutine, between the
// steps of the batch: they must return at once, without blocking or calling the engine, and
// they are called once per generated token, so they should not allocate. A request with n
// sequences is admitted once and has n first tokens and n finishes (vLLM counts each of the n
// as a request of its own).
type Observer interface {
	// Admitted is called when a request joins the batch. queue is its queue time, from Submit
	// to admission (vLLM's request_queue_time_seconds); promptTokens is the length of its
	// prompt in tokens, prefilled once for its n sequences.
	Admitted(queue time.Duration, promptTokens int)
	// FirstToken is called when a sequence samples its first token; ttft is its time to first
	// token (TTFT), from Submit.
	FirstToken(ttft time.Duration)
	// NextToken is called for every later token of a sequence; itl is the inter-token latency,
	// from the sequence's previous token.
	NextToken(itl time.Duration)
	// Finished is called once per sequence that ends with a finish reason (stop, length or
	// cancelled), with its token counts, TTFT and end-to-end latency (Finish.Total). Requests
	// cancelled before admission, and sequences ended by ErrClosed or a failed step, have no
	// finish and are not reported.
	Finished(f Finish)
}

type nopObserver struct{}

func (nopObserver) Admitted(time.Duration, int) {}
func (nopObserver) FirstToken(time.Duration)    {}
func (nopObserver) NextToken(time.Duration)     {}
func (nopObserver) Finished(Finish)             {}

func (c Config) withDefaults(mc model.Config) Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxBatchTokens, 512)
	def(&c.MaxRunning, 64)
	def(&c.MaxQueue, 256)
	def(&c.MaxN, 16)
	def(&c.BlockSize, 16)
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.KVCacheBytes <= 0 {
		blocks := c.MaxRunning * ((mc.NPositions + c.BlockSize - 1) / c.BlockSize)
		c.KVCacheBytes = min(mc.KVCacheBytes(blocks, c.BlockSize), 1<<30)
	}
	return c
}

// ErrInvalid is wrapped by errors for a request that can never be served as given: an empty
// prompt, an unknown token id, a prompt plus max_new_tokens beyond the model's context, bad
// sampling parameters, n above the limit. A server maps it to InvalidArgument.
var ErrInvalid = errors.New("invalid request")

// ErrOverloaded is wrapped by errors for a request refused for lack of capacity: the queue is
// full, or the request needs more KV cache than the engine has. A server maps it to
// ResourceExhausted; the client may retry later or with a smaller request.
var ErrOverloaded = errors.New("overloaded")

// ErrClosed is returned by Submit after Close, and ends the streams of requests still running.
var ErrClosed = errors.New("engine closed")

// Request is one generation request: n sequences continuing one prompt.
type Request struct {
	// Prompt holds the prompt's token ids, at least one.
	Prompt []int32
	// MaxNewTokens is the most tokens to generate per sequence, at least 1; the prompt plus
	// MaxNewTokens must fit the model's context (n_positions).
	MaxNewTokens int
	// MinNewTokens bans EOS and the stop token ids until this many tokens are generated
	// (Transformers' MinNewTokensLengthLogitsProcessor).
	MinNewTokens int
	// Sampling configures each sequence's sampler. With Seed set, sequence i draws from seed+i,
	// so the same request gives the same tokens whatever else runs beside it.
	Sampling sampling.Params
	// Stop strings end a sequence when its text contains one; the stop string is not returned.
	// They need a tokenizer.
	Stop []string
	// StopTokenIDs end a sequence when generated; like EOS, their text is not returned.
	StopTokenIDs []int32
	// IgnoreEOS keeps generating after the EOS token.
	IgnoreEOS bool
	// N is the number of sequences, 1 if 0 (Transformers' num_return_sequences).
	N int
	// PromptLogprobs asks for the log-probability of each prompt token after the first, given
	// the tokens before it, in the first chunk.
	PromptLogprobs bool
}

// FinishReason says why a sequence ended.
type FinishReason int

const (
	// FinishStop is EOS, a stop token id or a stop string.
	FinishStop FinishReason = iota + 1
	// FinishLength is max_new_tokens reached.
	FinishLength
	// FinishCancelled is the client's cancellation or deadline.
	FinishCancelled
)

func (r FinishReason) String() string {
	switch r {
	case FinishStop:
		return "stop"
	case FinishLength:
		return "length"
	case FinishCancelled:
		return "cancelled"
	}
	return "FinishReason(" + strconv.Itoa(int(r)) + ")"
}

// Finish ends a sequence's chunks.
type Finish struct {
	Reason FinishReason
	// StopReason is the stop string or stop token id that ended the sequence; "" for EOS and
	// the other reasons (vLLM's stop_reason).
	StopReason string
	// PromptTokens and CompletionTokens count tokens (OpenAI's usage).
	PromptTokens, CompletionTokens int
	// Queue is the time from Submit to admission, TTFT from Submit to the first token of this
	// sequence, Total from Submit to the finish.
	Queue, TTFT, Total time.Duration
}

// Chunk is one piece of a sequence's output.
type Chunk struct {
	// Index is the sequence, in [0, n).
	Index int
	// Tokens are the new token ids, with their logprobs when asked for.
	Tokens []sampling.Result
	// Text is the new text: valid UTF-8, never part of a stop string.
	Text string
	// PromptLogprobs is set on the first chunk of a request that asked for them: one per prompt
	// token after the first, natural log.
	PromptLogprobs []float32
	// Finish is set on the last chunk of a sequence.
	Finish *Finish
}

// Stats is a snapshot of the engine's load.
type Stats struct {
	Running, Waiting           int
	KVBlocksUsed, KVBlocksFree int
}

// Engine serves generation requests for one model. Its methods are safe for concurrent use.
type Engine struct {
	m   *model.Model
	tok *tokenizer.Tokenizer // nil: token-ids mode
	cfg Config
	log *slog.Logger

	inf *model.Inference
	kv  *model.KVCache

	mu      sync.Mutex
	waiting []*request
	closed  bool
	stats   Stats
	wake    chan struct{}
	done    chan struct{}

	// Owned by the loop goroutine.
	running   []*request
	free      []int32 // free KV blocks
	rowBuf    []float32
	stepSeqs  []model.Seq
	stepOwner []stepRow
}

// New starts an engine for m, with tok for text (nil serves token ids only). The engine owns the
// model's backend from now on: nothing else may use it until Close returns.
func New(m *model.Model, tok *tokenizer.Tokenizer, cfg Config, log *slog.Logger) (*Engine, error) {
	cfg = cfg.withDefaults(m.Config)
	if cfg.MaxRunning > cfg.MaxBatchTokens {
		return nil, fmt.Errorf("engine: max running sequences %d above the step's token budget %d", cfg.MaxRunning, cfg.MaxBatchTokens)
	}
	numBlocks := int(cfg.KVCacheBytes / m.Config.KVCacheBytes(1, cfg.BlockSize))
	if numBlocks < 1 {
		return nil, fmt.Errorf("engine: KV cache of %d bytes holds no block of %d positions", cfg.KVCacheBytes, cfg.BlockSize)
	}
	if log == nil {
		log = slog.Default()
	}
	inf, err := m.NewInferenceWith(context.Background(), cfg.MaxBatchTokens, model.InferenceOptions{WeightsBF16: cfg.WeightsBF16})
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	if cfg.WeightsBF16 {
		log.Info("inference weights", "dtype", inf.WeightsDType().String(), "backend", m.Backend.Name())
	}
	kv, err := m.NewKVCache(numBlocks, cfg.BlockSize)
	if err != nil {
		inf.Close()
		return nil, fmt.Errorf("engine: %w", fmt.Errorf("%w: %w", ErrOverloaded, err))
	}
	e := &Engine{m: m, tok: tok, cfg: cfg, log: log, inf: inf, kv: kv,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	for b := numBlocks - 1; b >= 0; b-- {
		e.free = append(e.free, int32(b))
	}
	e.stats.KVBlocksFree = numBlocks
	go e.loop()
	return e, nil
}

// Config returns the engine's configuration with defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// Model returns the served model.
func (e *Engine) Model() *model.Model { return e.m }

// Tokenizer returns the model's tokenizer, nil in token-ids mode.
func (e *Engine) Tokenizer() *tokenizer.Tokenizer { return e.tok }

// Stats returns the load at the last step boundary.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.Waiting = len(e.waiting)
	return s
}

// Close stops the loop: requests still waiting or running end with ErrClosed. It frees the KV
// cache and the activations and returns when the loop has stopped.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		<-e.done
		return
	}
	e.closed = true
	e.mu.Unlock()
	e.signal()
	<-e.done
	e.kv.Close()
	e.inf.Close()
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// blocksFor is the number of KV blocks a sequence of n positions needs.
func (e *Engine) blocksFor(n int) int { return (n + e.cfg.BlockSize - 1) / e.cfg.BlockSize }

// Submit validates r and queues it. The returned Stream yields the chunks of every sequence;
// the request is cancelled when ctx ends. Errors wrap ErrInvalid, ErrOverloaded or ErrClosed.
func (e *Engine) Submit(ctx context.Context, r Request) (*Stream, error) {
	c := e.m.Config
	if r.N == 0 {
		r.N = 1
	}
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("engine: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	switch {
	case len(r.Prompt) == 0:
		return nil, invalid("the prompt is empty")
	case r.MaxNewTokens < 1:
		return nil, invalid("max_new_tokens must be at least 1, got %d", r.MaxNewTokens)
	case r.MinNewTokens < 0 || r.MinNewTokens > r.MaxNewTokens:
		return nil, invalid("min_new_tokens must be in [0, max_new_tokens = %d], got %d", r.MaxNewTokens, r.MinNewTokens)
	case len(r.Prompt)+r.MaxNewTokens > c.NPositions:
		return nil, invalid("the prompt (%d tokens) plus max_new_tokens (%d) exceeds the model's context of %d tokens",
			len(r.Prompt), r.MaxNewTokens, c.NPositions)
	case r.N < 0 || r.N > e.cfg.MaxN:
		return nil, invalid("n must be in [1, %d], got %d", e.cfg.MaxN, r.N)
	case len(r.Stop) > 0 && e.tok == nil:
		return nil, invalid("stop strings need a tokenizer; this model serves token ids only")
	}
	for i, id := range r.Prompt {
		if id < 0 || int(id) >= c.VocabSize {
			return nil, invalid("prompt token %d at %d is outside the vocabulary [0, %d)", id, i, c.VocabSize)
		}
	}
	for _, id := range r.StopTokenIDs {
		if id < 0 || int(id) >= c.VocabSize {
			return nil, invalid("stop token id %d is outside the vocabulary [0, %d)", id, c.VocabSize)
		}
	}
	for _, s := range r.Stop {
		if s == "" || !utf8.ValidString(s) {
			return nil, invalid("stop strings must be non-empty valid UTF-8, got %q", s)
		}
	}
	if err := r.Sampling.Validate(c.VocabSize); err != nil {
		return nil, fmt.Errorf("engine: %w: %w", ErrInvalid, err)
	}
	need := r.N * e.blocksFor(len(r.Prompt)+r.MaxNewTokens)
	if need > e.kv.NumBlocks {
		return nil, fmt.Errorf("engine: %w: the request needs %d KV-cache blocks of %d positions, the cache has %d",
			ErrOverloaded, need, e.cfg.BlockSize, e.kv.NumBlocks)
	}
	if r.N > e.cfg.MaxRunning {
		return nil, fmt.Errorf("engine: %w: n = %d is above the %d sequences a batch holds", ErrOverloaded, r.N, e.cfg.MaxRunning)
	}
	req := &request{ctx: ctx, r: r, stream: newStream(), submitted: time.Now(), needBlocks: need}
	req.seqs = make([]*seq, r.N)
	for i := range req.seqs {
		p := r.Sampling
		if p.Seed != nil {
			s := *p.Seed + uint64(i)
			p.Seed = &s
		}
		smp, err := sampling.New(p, c.VocabSize)
		if err != nil {
			return nil, fmt.Errorf("engine: %w: %w", ErrInvalid, err)
		}
		sq := &seq{req: req, index: i, sampler: smp, tokens: slices.Clone(r.Prompt)}
		if e.tok != nil {
			sq.dec = e.tok.NewStreamDecoder()
		}
		req.seqs[i] = sq
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	if len(e.waiting) >= e.cfg.MaxQueue {
		return nil, fmt.Errorf("engine: %w: %d requests are waiting already", ErrOverloaded, len(e.waiting))
	}
	e.waiting = append(e.waiting, req)
	e.signal()
	return req.stream, nil
}

// request is a submitted request inside the engine.
type request struct {
	ctx        context.Context
	r          Request
	stream     *Stream
	seqs       []*seq
	submitted  time.Time
	admitted   time.Time
	needBlocks int
	prefilled  int // prompt tokens in the cache of seqs[0]
	promptLP   []float32
	sentFirst  bool
}

// seq is one sequence of a request.
type seq struct {
	req      *request
	index    int
	sampler  *sampling.Sampler
	tokens   []int32 // prompt and generated
	blocks   []int32
	pos      int // tokens in the KV cache
	dec      *tokenizer.StreamDecoder
	text     []byte // decoded generated text
	sent     int    // bytes of text already streamed
	ttft     time.Duration
	last     time.Time // when the latest token was sampled
	finished bool
}

func (s *seq) generated() []int32 { return s.tokens[len(s.req.r.Prompt):] }

// stepRow says which sequence a row of a step's logits belongs to.
type stepRow struct {
	req     *request
	seq     *seq // nil for a prefill chunk (the prompt of seqs[0])
	start   int  // first position of the chunk, for a prefill
	n       int  // new tokens
	allRows bool
}

func (e *Engine) loop() {
	defer close(e.done)
	ctx := context.Background()
	for {
		e.mu.Lock()
		closed := e.closed
		e.mu.Unlock()
		if closed {
			e.failAll(ErrClosed)
			return
		}
		e.dropCancelled()
		e.admit()
		if len(e.running) == 0 {
			e.publishStats()
			<-e.wake
			continue
		}
		if err := e.step(ctx); err != nil {
			e.log.Error("engine step failed", "err", err)
			e.failAll(fmt.Errorf("engine: %w", err))
		}
		e.publishStats()
	}
}

func (e *Engine) publishStats() {
	n := 0
	for _, r := range e.running {
		n += len(r.seqs)
	}
	e.mu.Lock()
	e.stats.Running = n
	e.stats.KVBlocksFree = len(e.free)
	e.stats.KVBlocksUsed = e.kv.NumBlocks - len(e.free)
	e.mu.Unlock()
}

// failAll ends every waiting and running request with err.
func (e *Engine) failAll(err error) {
	e.mu.Lock()
	waiting := e.waiting
	e.waiting = nil
	e.mu.Unlock()
	for _, r := range append(waiting, e.running...) {
		r.stream.fail(err)
		e.release(r)
	}
	e.running = nil
}

// release returns the blocks of r's sequences to the free list.
func (e *Engine) release(r *request) {
	for _, s := range r.seqs {
		e.free = append(e.free, s.blocks...)
		s.blocks = nil
	}
}

// dropCancelled finishes the sequences of requests whose context ended.
func (e *Engine) dropCancelled() {
	e.mu.Lock()
	e.waiting = slices.DeleteFunc(e.waiting, func(r *request) bool {
		if r.ctx.Err() != nil {
			r.stream.fail(r.ctx.Err())
			return true
		}
		return false
	})
	e.mu.Unlock()
	var ended []*request
	e.running = slices.DeleteFunc(e.running, func(r *request) bool {
		if r.ctx.Err() == nil {
			return false
		}
		now := time.Now()
		for _, s := range r.seqs {
			if !s.finished {
				e.finish(s, &Finish{Reason: FinishCancelled}, now)
			}
		}
		e.release(r)
		ended = append(ended, r)
		return true
	})
	e.closeEnded(ended)
}

// closeEnded ends the streams of finished requests once their blocks are back and the stats
// say so, so that a client that saw its stream end sees the engine without it.
func (e *Engine) closeEnded(ended []*request) {
	if len(ended) == 0 {
		return
	}
	e.publishStats()
	for _, r := range ended {
		r.stream.close()
	}
}

// admit moves waiting requests into the batch, in arrival order, while their KV blocks and
// sequences fit.
func (e *Engine) admit() {
	admitted := len(e.running)
	e.mu.Lock()
	running := 0
	for _, r := range e.running {
		running += len(r.seqs)
	}
	for len(e.waiting) > 0 {
		r := e.waiting[0]
		if r.needBlocks > len(e.free) || running+len(r.seqs) > e.cfg.MaxRunning {
			break
		}
		e.waiting = e.waiting[1:]
		per := r.needBlocks / len(r.seqs)
		for _, s := range r.seqs {
			s.blocks = e.free[len(e.free)-per:]
			s.blocks = slices.Clone(s.blocks)
			e.free = e.free[:len(e.free)-per]
		}
		r.admitted = time.Now()
		running += len(r.seqs)
		e.running = append(e.running, r)
	}
	e.mu.Unlock()
	for _, r := range e.running[admitted:] {
		e.cfg.Observer.Admitted(r.admitted.Sub(r.submitted), len(r.r.Prompt))
	}
}

// step runs one batched forward and samples every sequence that produced logits.
func (e *Engine) step(ctx context.Context) error {
	budget := e.cfg.MaxBatchTokens
	e.stepSeqs, e.stepOwner = e.stepSeqs[:0], e.stepOwner[:0]
	// Decodes first: one token per running sequence that has its first token.
	for _, r := range e.running {
		if r.prefilled < len(r.r.Prompt) {
			continue
		}
		for _, s := range r.seqs {
			if s.finished {
				continue
			}
			e.stepSeqs = append(e.stepSeqs, model.Seq{Tokens: s.tokens[s.pos : s.pos+1], Pos: s.pos, Blocks: s.blocks})
			e.stepOwner = append(e.stepOwner, stepRow{req: r, seq: s, n: 1})
			budget--
		}
	}
	// Then prompt chunks, oldest request first, within the remaining budget.
	for _, r := range e.running {
		left := len(r.r.Prompt) - r.prefilled
		if left == 0 || budget == 0 {
			continue
		}
		n := min(left, budget)
		budget -= n
		s0 := r.seqs[0]
		e.stepSeqs = append(e.stepSeqs, model.Seq{Tokens: r.r.Prompt[r.prefilled : r.prefilled+n], Pos: r.prefilled,
			Blocks: s0.blocks, AllLogits: r.r.PromptLogprobs})
		e.stepOwner = append(e.stepOwner, stepRow{req: r, start: r.prefilled, n: n, allRows: r.r.PromptLogprobs})
	}
	if len(e.stepSeqs) == 0 {
		return nil
	}
	logits, err := e.inf.Forward(ctx, e.kv, e.stepSeqs)
	if err != nil {
		return err
	}
	V := e.m.Config.VocabSize
	row := 0
	now := time.Now()
	for _, o := range e.stepOwner {
		rows := 1
		if o.allRows {
			rows = o.n
		}
		block := logits[row*V : (row+rows)*V]
		row += rows
		if o.seq != nil {
			o.seq.pos++
			if err := e.sample(o.seq, block, now); err != nil {
				return err
			}
			continue
		}
		r := o.req
		r.prefilled += o.n
		r.seqs[0].pos = r.prefilled
		if o.allRows {
			e.promptLogprobs(r, o.start, block)
		}
		if r.prefilled < len(r.r.Prompt) {
			continue
		}
		// The prompt is in seqs[0]'s cache: the other sequences copy its blocks and all sample
		// their first token from the last row.
		nb := e.blocksFor(len(r.r.Prompt))
		for _, s := range r.seqs[1:] {
			if err := e.kv.CopyBlocks(s.blocks[:nb], r.seqs[0].blocks[:nb]); err != nil {
				return err
			}
			s.pos = r.prefilled
		}
		last := block[len(block)-V:]
		for _, s := range r.seqs {
			if err := e.sample(s, last, now); err != nil {
				return err
			}
		}
	}
	var ended []*request
	e.running = slices.DeleteFunc(e.running, func(r *request) bool {
		if !r.done() {
			return false
		}
		e.release(r)
		ended = append(ended, r)
		return true
	})
	e.closeEnded(ended)
	return nil
}

// promptLogprobs appends, for each row of a prefill chunk starting at position start, the
// log-probability of the prompt token that the row predicts.
func (e *Engine) promptLogprobs(r *request, start int, rows []float32) {
	V := e.m.Config.VocabSize
	for j := range len(rows) / V {
		next := start + j + 1
		if next >= len(r.r.Prompt) {
			break
		}
		res, err := sampling.Logprobs(rows[j*V:(j+1)*V], r.r.Prompt[next], 0)
		lp := float32(math.NaN())
		if err == nil {
			lp = res.Logprob
		}
		r.promptLP = append(r.promptLP, lp)
	}
}

// sample draws s's next token from its logits row and streams the result.
func (e *Engine) sample(s *seq, logits []float32, now time.Time) error {
	r := s.req
	gen := len(s.generated())
	if gen < r.r.MinNewTokens {
		e.rowBuf = append(e.rowBuf[:0], logits...)
		logits = e.rowBuf
		if !r.r.IgnoreEOS {
			logits[e.m.Config.EOSTokenID] = float32(math.Inf(-1))
		}
		for _, id := range r.r.StopTokenIDs {
			logits[id] = float32(math.Inf(-1))
		}
	}
	res, err := s.sampler.Sample(logits, sampling.History{Prompt: r.r.Prompt, Generated: s.generated()})
	if err != nil {
		return fmt.Errorf("sequence %d: %w", s.index, err)
	}
	s.tokens = append(s.tokens, res.Token)
	if gen == 0 {
		s.ttft = now.Sub(r.submitted)
		e.cfg.Observer.FirstToken(s.ttft)
	} else {
		e.cfg.Observer.NextToken(now.Sub(s.last))
	}
	s.last = now
	ch := Chunk{Index: s.index, Tokens: []sampling.Result{res}}
	if !r.sentFirst {
		ch.PromptLogprobs = r.promptLP
		r.sentFirst = true
	}
	var fin *Finish
	stopString := false
	switch {
	case !r.r.IgnoreEOS && res.Token == int32(e.m.Config.EOSTokenID):
		fin = &Finish{Reason: FinishStop}
	case slices.Contains(r.r.StopTokenIDs, res.Token):
		fin = &Finish{Reason: FinishStop, StopReason: strconv.Itoa(int(res.Token))}
	default:
		if s.dec != nil {
			txt, err := s.dec.Add(res.Token)
			if err != nil {
				return fmt.Errorf("sequence %d: %w", s.index, err)
			}
			s.text = append(s.text, txt...)
			if i, stop := findStop(s.text[s.sent:], r.r.Stop); i >= 0 {
				ch.Text = string(s.text[s.sent : s.sent+i])
				s.sent = len(s.text)
				fin, stopString = &Finish{Reason: FinishStop, StopReason: stop}, true
				break
			}
		}
		if gen+1 == r.r.MaxNewTokens {
			fin = &Finish{Reason: FinishLength}
		}
	}
	if fin == nil {
		end := len(s.text) - holdBack(s.text[s.sent:], r.r.Stop)
		ch.Text = string(s.text[s.sent:end])
		s.sent = end
		r.stream.push(ch)
		return nil
	}
	if !stopString {
		// Release what was held back for the stop strings, and any partial character.
		if s.dec != nil {
			s.text = append(s.text, s.dec.Flush()...)
		}
		ch.Text = string(s.text[s.sent:])
		s.sent = len(s.text)
	}
	ch.Finish = fin
	s.finished = true
	e.fillFinish(s, fin, now)
	r.stream.push(ch)
	return nil
}

// finish ends s with fin, streaming what it held back.
func (e *Engine) finish(s *seq, fin *Finish, now time.Time) {
	s.finished = true
	e.fillFinish(s, fin, now)
	s.req.stream.push(Chunk{Index: s.index, Finish: fin})
}

func (e *Engine) fillFinish(s *seq, fin *Finish, now time.Time) {
	r := s.req
	fin.PromptTokens = len(r.r.Prompt)
	fin.CompletionTokens = len(s.generated())
	if !r.admitted.IsZero() {
		fin.Queue = r.admitted.Sub(r.submitted)
	}
	fin.TTFT = s.ttft
	fin.Total = now.Sub(r.submitted)
	e.cfg.Observer.Finished(*fin)
}

func (r *request) done() bool {
	for _, s := range r.seqs {
		if !s.finished {
			return false
		}
	}
	return true
}

// findStop returns the byte offset in text of the earliest stop string, and which, or -1.
func findStop(text []byte, stops []string) (int, string) {
	at, which := -1, ""
	for _, s := range stops {
		if i := strings.Index(string(text), s); i >= 0 && (at < 0 || i < at) {
			at, which = i, s
		}
	}
	return at, which
}

// holdBack is the length of the longest suffix of text that is a proper prefix of a stop string:
// text that must not be streamed yet, since the next tokens may complete the stop string.
func holdBack(text []byte, stops []string) int {
	n := 0
	for _, s := range stops {
		for k := min(len(s)-1, len(text)); k > n; k-- {
			if strings.HasSuffix(string(text), s[:k]) {
				n = k
				break
			}
		}
	}
	return n
}
