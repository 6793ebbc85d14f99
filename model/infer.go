package model

import (
	"context"
	"fmt"

	"github.com/modeld-dev/modeld/backend"
)

// KVCache is a paged key/value cache for every layer of a model (as in vLLM's PagedAttention):
// NumBlocks blocks of BlockSize positions, each holding a key and a value of C floats per layer.
// Which blocks belong to which sequence is the caller's business (the scheduler's block
// tables); the cache is only memory.
type KVCache struct {
	NumBlocks, BlockSize int
	layers               []backend.KVCache
	m                    *Model
}

// KVCacheBytes is the memory of a cache of numBlocks blocks of blockSize positions:
// 2 (key, value) * n_layer * numBlocks * blockSize * n_embd * 4 bytes.
func (c Config) KVCacheBytes(numBlocks, blockSize int) int64 {
	return 2 * int64(c.NLayer) * int64(numBlocks) * int64(blockSize) * int64(c.NEmbd) * 4
}

// NewKVCache allocates a cache of numBlocks blocks of blockSize positions.
func (m *Model) NewKVCache(numBlocks, blockSize int) (*KVCache, error) {
	if numBlocks <= 0 || blockSize <= 0 {
		return nil, fmt.Errorf("model: KV cache of %d blocks of %d positions", numBlocks, blockSize)
	}
	kv := &KVCache{NumBlocks: numBlocks, BlockSize: blockSize, m: m}
	n := numBlocks * blockSize * m.Config.NEmbd
	for range m.Config.NLayer {
		k, err := m.Backend.Alloc(backend.F32, n)
		if err != nil {
			kv.Close()
			return nil, fmt.Errorf("model: KV cache: %w", err)
		}
		v, err := m.Backend.Alloc(backend.F32, n)
		if err != nil {
			m.Backend.Free(k)
			kv.Close()
			return nil, fmt.Errorf("model: KV cache: %w", err)
		}
		kv.layers = append(kv.layers, backend.KVCache{K: k, V: v, BlockSize: blockSize})
	}
	return kv, nil
}

// Close frees the cache.
func (kv *KVCache) Close() {
	for _, l := range kv.layers {
		kv.m.Backend.Free(l.K)
		kv.m.Backend.Free(l.V)
	}
	kv.layers = nil
}

// Seq is one sequence of a cached forward step: a prompt prefill (many tokens) or a decode step
// (one token), at positions [Pos, Pos+len(Tokens)).
type Seq struct {
	// Tokens are the new token ids, at least one.
	Tokens []int32
	// Pos is the number of tokens of the sequence already in the cache.
	Pos int
	// Blocks is the block table: position p lives in block Blocks[p/BlockSize]. It must cover
	// Pos+len(Tokens) positions.
	Blocks []int32
	// AllLogits asks for the logits after every new token (for prompt logprobs); otherwise only
	// after the last.
	AllLogits bool
}

// Inference runs cached forward steps of up to MaxTokens new tokens in all. It owns the
// activations of one step, so one Inference serves one scheduler loop.
type Inference struct {
	MaxTokens int

	m                    *Model
	tokens, positions    backend.Buffer // (maxN) int32
	x, ln, atty, scratch backend.Buffer // (maxN, C)
	mean, rstd           backend.Buffer // (maxN)
	qkv                  backend.Buffer // (maxN, 3C)
	fch                  backend.Buffer // (maxN, 4C)
	last, lnf            backend.Buffer // (maxN, C) rows that produce logits
	logits               backend.Buffer // (maxN, V)
	hostLogits           []float32
	hostTokens, hostPos  []int32
	cseqs                []backend.CachedSeq
	rows                 []int32
	bufs                 buffers
	bf16                 *bf16Weights // nil: the model's float32 weights
}

// NewInference allocates the activations for steps of up to maxTokens new tokens, with the
// model's float32 weights.
func (m *Model) NewInference(maxTokens int) (*Inference, error) {
	return m.NewInferenceWith(context.Background(), maxTokens, InferenceOptions{})
}

// InferenceOptions configure [Model.NewInferenceWith].
type InferenceOptions struct {
	// WeightsBF16 makes the inference read its matmul weights (attention qkv and projection, MLP
	// fc and projection, and wte as the lm_head) in bfloat16, rounded to nearest even from the
	// model's float32 parameters, when the backend offers [backend.BF16Weights]; otherwise the
	// inference keeps float32 weights ([Inference.WeightsDType] says which). Products and sums
	// stay float32. This halves the bytes a decode step streams; on the gpt2-tiny oracle the
	// logits move by at most 0.033 and greedy tokens do not change (TestOracleBF16Weights). The
	// bfloat16 weights are a snapshot taken by NewInferenceWith, which later parameter updates
	// do not reach, and they add half the size of those weights to the model's memory (the
	// float32 parameters stay: the embedding lookup, biases and LayerNorms read them).
	WeightsBF16 bool
}

// NewInferenceWith is [Model.NewInference] with options. It fails if the backend cannot allocate
// the activations or the bfloat16 weights, or if ctx ends while the weights are converted.
func (m *Model) NewInferenceWith(ctx context.Context, maxTokens int, opt InferenceOptions) (*Inference, error) {
	if maxTokens <= 0 {
		return nil, fmt.Errorf("model: inference for %d tokens", maxTokens)
	}
	inf := &Inference{MaxTokens: maxTokens, m: m}
	N, C, V := maxTokens, m.Config.NEmbd, m.Config.VocabSize
	inf.bufs = buffers{b: m.Backend}
	alloc := inf.bufs.alloc
	inf.tokens, inf.positions = alloc(backend.I32, N), alloc(backend.I32, N)
	inf.x, inf.ln, inf.atty, inf.scratch = alloc(backend.F32, N*C), alloc(backend.F32, N*C), alloc(backend.F32, N*C), alloc(backend.F32, N*C)
	inf.mean, inf.rstd = alloc(backend.F32, N), alloc(backend.F32, N)
	inf.qkv, inf.fch = alloc(backend.F32, N*3*C), alloc(backend.F32, N*4*C)
	inf.last, inf.lnf = alloc(backend.F32, N*C), alloc(backend.F32, N*C)
	inf.logits = alloc(backend.F32, N*V)
	if err := inf.bufs.err; err != nil {
		inf.Close()
		return nil, fmt.Errorf("model: inference for %d tokens: %w", maxTokens, err)
	}
	if bw, ok := m.Backend.(backend.BF16Weights); ok && opt.WeightsBF16 {
		w, err := m.newBF16Weights(ctx, bw)
		if err != nil {
			inf.Close()
			return nil, fmt.Errorf("model: inference for %d tokens: %w", maxTokens, err)
		}
		inf.bf16 = w
	}
	return inf, nil
}

// WeightsDType is the element type of the matmul weights the inference reads: backend.BF16 or
// backend.F32.
func (inf *Inference) WeightsDType() backend.DType {
	if inf.bf16 != nil {
		return backend.BF16
	}
	return backend.F32
}

// matmul runs out(N,OC) = inp(N,C) · weight(OC,C)^T + bias: with the bfloat16 copy w16 of weight
// when the inference has bfloat16 weights, with the float32 weight otherwise. bias may be nil.
func (inf *Inference) matmul(out, inp, weight, w16, bias backend.Buffer, N, C, OC int) {
	if inf.bf16 != nil {
		inf.bf16.b.MatmulForwardBF16(out, inp, w16, bias, N, C, OC)
		return
	}
	inf.m.Backend.MatmulForward(out, inp, weight, bias, N, C, OC)
}

// Close frees the activations and the bfloat16 weights.
func (inf *Inference) Close() {
	inf.bufs.free()
	if inf.bf16 != nil {
		inf.m.Backend.Free(inf.bf16.all)
		inf.bf16 = nil
	}
}

// Forward writes the new tokens of every sequence into the cache and returns the logits (R, V):
// for each sequence in order, one row per new token if AllLogits, else one row for its last
// token. The returned slice is reused by the next Forward. It fails for an empty step, more
// than MaxTokens tokens, a token id outside [0, V), a position at or past n_positions, or a
// block table that does not cover the positions.
func (inf *Inference) Forward(ctx context.Context, kv *KVCache, seqs []Seq) ([]float32, error) {
	m, c := inf.m, inf.m.Config
	C, V, NH := c.NEmbd, c.VocabSize, c.NHead
	inf.hostTokens, inf.hostPos = inf.hostTokens[:0], inf.hostPos[:0]
	inf.cseqs, inf.rows = inf.cseqs[:0], inf.rows[:0]
	for i, s := range seqs {
		if len(s.Tokens) == 0 {
			return nil, fmt.Errorf("model: sequence %d has no new tokens", i)
		}
		if s.Pos < 0 || s.Pos+len(s.Tokens) > c.NPositions {
			return nil, fmt.Errorf("model: sequence %d spans positions [%d, %d), past n_positions = %d", i, s.Pos, s.Pos+len(s.Tokens), c.NPositions)
		}
		if need := (s.Pos + len(s.Tokens) + kv.BlockSize - 1) / kv.BlockSize; len(s.Blocks) < need {
			return nil, fmt.Errorf("model: sequence %d has %d blocks, needs %d", i, len(s.Blocks), need)
		}
		row := len(inf.hostTokens)
		for j, id := range s.Tokens {
			if id < 0 || int(id) >= V {
				return nil, fmt.Errorf("model: sequence %d: token %d is outside [0, %d)", i, id, V)
			}
			inf.hostTokens = append(inf.hostTokens, id)
			inf.hostPos = append(inf.hostPos, int32(s.Pos+j))
			if s.AllLogits || j == len(s.Tokens)-1 {
				inf.rows = append(inf.rows, int32(row+j))
			}
		}
		inf.cseqs = append(inf.cseqs, backend.CachedSeq{Row: row, Len: len(s.Tokens), Pos: s.Pos, Blocks: s.Blocks})
	}
	N, R := len(inf.hostTokens), len(inf.rows)
	if N == 0 || N > inf.MaxTokens {
		return nil, fmt.Errorf("model: step of %d tokens, want 1..%d", N, inf.MaxTokens)
	}
	b := m.Backend
	tok, pos := inf.tokens.Slice(0, N), inf.positions.Slice(0, N)
	x, ln, atty, scr := inf.x.Slice(0, N*C), inf.ln.Slice(0, N*C), inf.atty.Slice(0, N*C), inf.scratch.Slice(0, N*C)
	mean, rstd := inf.mean.Slice(0, N), inf.rstd.Slice(0, N)
	qkv, fch := inf.qkv.Slice(0, N*3*C), inf.fch.Slice(0, N*4*C)
	b.UploadInt32(tok, inf.hostTokens)
	b.UploadInt32(pos, inf.hostPos)
	b.EncoderForward(x, tok, pos, m.wte, m.wpe, N, C)
	var w16 [perLayer]backend.Buffer // the layer's bfloat16 matmul weights, if any
	var wte16 backend.Buffer
	if inf.bf16 != nil {
		wte16 = inf.bf16.wte
	}
	for l := range c.NLayer {
		w := &m.layers[l]
		if inf.bf16 != nil {
			w16 = inf.bf16.layers[l]
		}
		b.LayerNormForward(ln, mean, rstd, x, w[ln1W], w[ln1B], N, C)
		inf.matmul(qkv, ln, w[qkvW], w16[qkvW], w[qkvB], N, C, 3*C)
		b.CachedAttention(atty, qkv, kv.layers[l], inf.cseqs, C, NH)
		inf.matmul(scr, atty, w[attnProjW], w16[attnProjW], w[attnProjB], N, C, C)
		b.ResidualForward(x, x, scr, N*C)
		b.LayerNormForward(ln, mean, rstd, x, w[ln2W], w[ln2B], N, C)
		inf.matmul(fch, ln, w[fcW], w16[fcW], w[fcB], N, C, 4*C)
		b.GELUForward(fch, fch, N*4*C)
		inf.matmul(scr, fch, w[fcProjW], w16[fcProjW], w[fcProjB], N, 4*C, C)
		b.ResidualForward(x, x, scr, N*C)
	}
	last, lnf, logits := inf.last.Slice(0, R*C), inf.lnf.Slice(0, R*C), inf.logits.Slice(0, R*V)
	b.Gather(last, x, inf.rows, C)
	b.LayerNormForward(lnf, mean.Slice(0, R), rstd.Slice(0, R), last, m.lnfW, m.lnfB, R, C)
	inf.matmul(logits, lnf, m.wte, wte16, nil, R, C, V)
	if cap(inf.hostLogits) < R*V {
		inf.hostLogits = make([]float32, R*V)
	}
	inf.hostLogits = inf.hostLogits[:R*V]
	b.Download(inf.hostLogits, logits)
	if err := b.Sync(ctx); err != nil {
		return nil, fmt.Errorf("model: inference step: %w", err)
	}
	return inf.hostLogits, nil
}

// CopyBlocks copies the keys and values of blocks src[i] into blocks dst[i] in every layer, so
// that a sequence can start from another's prefix (the n sequences of one request share their
// prompt's prefill).
func (kv *KVCache) CopyBlocks(dst, src []int32) error {
	if len(dst) != len(src) {
		return fmt.Errorf("model: copy of %d blocks into %d", len(src), len(dst))
	}
	n := kv.BlockSize * kv.m.Config.NEmbd
	for i := range src {
		if s, d := src[i], dst[i]; s < 0 || d < 0 || int(s) >= kv.NumBlocks || int(d) >= kv.NumBlocks {
			return fmt.Errorf("model: copy of block %d into %d of %d", s, d, kv.NumBlocks)
		}
	}
	for _, l := range kv.layers {
		for i := range src {
			kv.m.Backend.Copy(l.K.Slice(int(dst[i])*n, n), l.K.Slice(int(src[i])*n, n))
			kv.m.Backend.Copy(l.V.Slice(int(dst[i])*n, n), l.V.Slice(int(src[i])*n, n))
		}
	}
	return nil
}
