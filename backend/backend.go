// Package backend defines the kernel-level interface that the GPT-2 model runs on, and the registry
// that opens an implementation by name.
//
// The interface follows llm.c (train_gpt2.c): one forward and one backward kernel per layer type,
// a fused softmax + cross-entropy, AdamW and a gradient norm, plus the inference attention that reads
// and writes a paged KV cache. A backend owns its memory: the model allocates [Buffer]s, uploads
// parameters and token ids, enqueues kernels and downloads results. Fused kernels that only some
// backends offer are optional interfaces (see [FlashAttention]): backendtest checks them against
// the plain kernels, and callers type-assert for them and compose the plain kernels otherwise
// (the model's trainer uses FlashAttention when the backend offers it).
//
// # Conventions
//
// Shapes are given in llm.c's letters: B batch, T sequence length, C channels (n_embd), NH heads,
// HS = C/NH head size, V vocabulary size, OC output channels, N = B*T rows. Every tensor is row-major
// (C order) float32 unless it says int32 or BF16. Matmul weights are stored (OC, C), PyTorch's nn.Linear
// layout; loaders transpose Hugging Face's Conv1D (C, OC) weights once.
//
// Kernels enqueue work and return nothing. A kernel given inconsistent sizes records an error; the
// first error is sticky and every later [Backend.Sync] returns it (errors are values, as with
// bufio.Writer). Host slices passed to Upload and Download must not be touched until the next Sync
// returns. Backward kernels ADD into their gradient outputs (+=), as in llm.c, so that gradients
// accumulate across micro-batches and residual branches; callers clear them with [Backend.Zero].
package backend

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
)

// DType is the element type of a [Buffer].
type DType uint8

const (
	// F32 is IEEE-754 binary32.
	F32 DType = iota + 1
	// I32 is a signed 32-bit integer (token ids, targets, positions).
	I32
	// BF16 is bfloat16, the upper half of a binary32 (8 exponent and 7 mantissa bits). Only
	// [BF16Weights.AllocBF16] makes buffers of it, to hold matmul weights.
	BF16
)

// Size is the size of one element in bytes.
func (d DType) Size() int {
	if d == BF16 {
		return 2
	}
	return 4
}

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case I32:
		return "i32"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Buffer is a run of elements in a backend's memory. A Buffer is only meaningful to the backend
// that allocated it. Slice returns a view that shares memory, so that one allocation can hold many
// tensors (all parameters in one buffer, as llm.c does).
type Buffer interface {
	// DType is the element type.
	DType() DType
	// Len is the number of elements.
	Len() int
	// Slice returns the view of elements [off, off+n). It panics if the range is outside the
	// buffer, like slicing a Go slice: callers compute offsets from shapes they own.
	Slice(off, n int) Buffer
}

// IgnoreIndex is the target id that [Backend.CrossEntropyForward] skips: no loss and no gradient,
// as in PyTorch's CrossEntropyLoss(ignore_index=-100) and the labels of Hugging Face models.
const IgnoreIndex = -100

// AdamW holds the hyperparameters of one AdamW update (Loshchilov and Hutter, "Decoupled Weight
// Decay Regularization", 2019), in the form used by PyTorch's torch.optim.AdamW and llm.c:
//
//	m = beta1*m + (1-beta1)*g
//	v = beta2*v + (1-beta2)*g*g
//	p -= lr * (m/(1-beta1^t) / (sqrt(v/(1-beta2^t)) + eps) + weight_decay*p)
//
// where g is the gradient times GradScale.
type AdamW struct {
	LearningRate float32
	Beta1        float32
	Beta2        float32
	Eps          float32
	WeightDecay  float32
	// Step is t, counted from 1 for bias correction.
	Step int
	// GradScale multiplies every gradient before use (1 when not clipping; the global-norm clip
	// factor min(1, max_norm/norm) otherwise).
	GradScale float32
}

// CachedSeq describes one sequence of a batch in [Backend.CachedAttention]: Len new tokens in rows
// [Row, Row+Len) of the batch's qkv and output, at positions [Pos, Pos+Len) of the sequence.
// Positions [0, Pos) are already in the KV cache. Blocks is the sequence's block table: logical
// block i (positions [i*BlockSize, (i+1)*BlockSize)) lives in physical block Blocks[i].
type CachedSeq struct {
	Row, Len, Pos int
	Blocks        []int32
}

// KVCache is the paged key/value cache of one layer (as in vLLM's PagedAttention): K and V each
// hold NumBlocks blocks of BlockSize positions of C floats, shape (NumBlocks, BlockSize, C), heads
// interleaved as in the qkv tensor.
type KVCache struct {
	K, V      Buffer
	BlockSize int
}

// Backend runs the kernels of a GPT-2 forward and backward pass. Implementations are not safe for
// concurrent use: one goroutine drives a backend (the scheduler or the training loop).
type Backend interface {
	// Name is the registry name ("cpu", "cuda").
	Name() string
	// Alloc returns a zeroed buffer of n elements of dtype F32 or I32, or an error: one wrapping
	// [ErrOutOfMemory] when the backend's memory cannot hold it.
	Alloc(dtype DType, n int) (Buffer, error)
	// Free releases a buffer returned by Alloc. Views must not be used afterwards.
	Free(b Buffer)
	// Upload copies src into dst (F32). len(src) must equal dst.Len().
	Upload(dst Buffer, src []float32)
	// UploadInt32 copies src into dst (I32). len(src) must equal dst.Len().
	UploadInt32(dst Buffer, src []int32)
	// Download copies src (F32) into dst once the work before it is done; dst is valid after Sync.
	Download(dst []float32, src Buffer)
	// Sync waits for all enqueued work and returns the first error recorded since the backend
	// was opened (sticky), or ctx.Err() if ctx ends first.
	Sync(ctx context.Context) error
	// Close releases the backend and all its buffers.
	Close() error

	// Zero sets every element of b to 0.
	Zero(b Buffer)
	// Copy copies src into dst; both have the same length.
	Copy(dst, src Buffer)

	// EncoderForward: out(N,C) = wte[tokens[n]] + wpe[positions[n]]; tokens, positions int32 (N),
	// wte (V,C), wpe (maxT,C).
	EncoderForward(out, tokens, positions, wte, wpe Buffer, N, C int)
	// EncoderBackward adds dout(N,C) into the rows of dwte (V,C) and dwpe (maxT,C) that the
	// forward read.
	EncoderBackward(dwte, dwpe, dout, tokens, positions Buffer, N, C int)

	// LayerNormForward normalises each row of inp(N,C) over C (eps 1e-5, biased variance, as
	// torch.nn.LayerNorm): out = (inp-mean)*rstd*weight + bias, and saves mean(N) and rstd(N)
	// for the backward.
	LayerNormForward(out, mean, rstd, inp, weight, bias Buffer, N, C int)
	// LayerNormBackward adds the gradients of inp, weight and bias given dout(N,C).
	LayerNormBackward(dinp, dweight, dbias, dout, inp, weight, mean, rstd Buffer, N, C int)

	// MatmulForward: out(N,OC) = inp(N,C) · weight(OC,C)^T + bias(OC). bias may be nil.
	MatmulForward(out, inp, weight, bias Buffer, N, C, OC int)
	// MatmulBackward adds dinp(N,C) += dout·weight, dweight(OC,C) += dout^T·inp and
	// dbias(OC) += the column sums of dout(N,OC). dbias may be nil (no bias); dweight may be
	// nil (a frozen weight).
	MatmulBackward(dinp, dweight, dbias, dout, inp, weight Buffer, N, C, OC int)

	// AttentionForward is causal multi-head self-attention over the fused qkv(B,T,3C) (query,
	// key, value, each C wide with NH heads of HS channels), scaled by 1/sqrt(HS):
	// out(B,T,C), and att(B,NH,T,T) the softmax probabilities saved for the backward (entries
	// above the diagonal are 0).
	AttentionForward(out, att, qkv Buffer, B, T, C, NH int)
	// AttentionBackward adds into dqkv(B,T,3C) the gradient of the forward given dout(B,T,C).
	AttentionBackward(dqkv, dout, qkv, att Buffer, B, T, C, NH int)

	// GELUForward is the tanh approximation used by GPT-2 (Hugging Face's gelu_new):
	// out = 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3))), over n elements. out may alias inp.
	GELUForward(out, inp Buffer, n int)
	// GELUBackward adds dout*gelu'(inp) into dinp, over n elements.
	GELUBackward(dinp, inp, dout Buffer, n int)

	// ResidualForward: out = a + b, over n elements. out may alias a or b.
	ResidualForward(out, a, b Buffer, n int)
	// ResidualBackward adds dout into both da and db, over n elements.
	ResidualBackward(da, db, dout Buffer, n int)

	// CrossEntropyForward computes probs(N,V) = softmax(logits(N,V)) per row and
	// losses(N) = -log(probs[n, targets[n]]); rows whose target (int32) is IgnoreIndex get loss 0.
	// A target outside [0,V) that is not IgnoreIndex records an error.
	CrossEntropyForward(losses, probs, logits, targets Buffer, N, V int)
	// CrossEntropyBackward writes (not adds) dlogits(N,V) = (probs - onehot(target)) * scale,
	// and 0 on ignored rows; scale is d(loss)/d(per-row loss), 1/count for a mean loss.
	// dlogits may alias probs.
	CrossEntropyBackward(dlogits, probs, targets Buffer, N, V int, scale float32)

	// AdamWUpdate applies one AdamW step to n parameters in params with gradients grads and the
	// moment buffers m and v (all F32, length n).
	AdamWUpdate(params, grads, m, v Buffer, n int, hp AdamW)
	// SumSquares adds the sum of squares of in's n elements into out[0] (F32, length 1), for
	// the global gradient norm sqrt(sum over tensors).
	SumSquares(out, in Buffer, n int)

	// CachedAttention is inference attention over a paged KV cache, for a batch that mixes
	// prompt prefills and one-token decode steps. qkv (N,3C) holds the new tokens of every
	// sequence (see CachedSeq). The kernel first writes each new token's key and value into the
	// cache at its position, then computes out(N,C): each new token attends causally to
	// positions [0, its own] of its sequence, scaled by 1/sqrt(HS).
	CachedAttention(out, qkv Buffer, cache KVCache, seqs []CachedSeq, C, NH int)
	// Gather copies rows idx[i] of inp(N,C) into row i of out(len(idx),C).
	Gather(out, inp Buffer, idx []int32, C int)
}

// FlashAttention is offered by backends with a fused attention that never materialises the
// (T,T) matrix (Dao et al., "FlashAttention", 2022). It replaces AttentionForward and
// AttentionBackward; lse(B,NH,T) holds the log-sum-exp of each query row for the backward.
type FlashAttention interface {
	FlashAttentionForward(out, lse, qkv Buffer, B, T, C, NH int)
	FlashAttentionBackward(dqkv, dout, out, lse, qkv Buffer, B, T, C, NH int)
}

// BF16Weights is offered by backends that can hold matmul weights in bfloat16 for inference,
// halving the bytes that bound a decode step (which reads every weight once per step). Products
// and sums stay float32: only the storage of the weight is rounded. The model uses it when asked
// to (model.InferenceOptions) and falls back to float32 weights otherwise.
type BF16Weights interface {
	// AllocBF16 returns a zeroed BF16 buffer of n elements, or an error (one wrapping
	// [ErrOutOfMemory] when the backend's memory cannot hold it). [Backend.Free] releases it.
	AllocBF16(n int) (Buffer, error)
	// UploadBF16 copies src, bfloat16 bit patterns (see [BF16FromF32]), into dst (BF16).
	// len(src) must equal dst.Len().
	UploadBF16(dst Buffer, src []uint16)
	// MatmulForwardBF16 is [Backend.MatmulForward] with a BF16 weight: out(N,OC) = inp(N,C) ·
	// weight(OC,C)^T + bias(OC), where each weight is widened exactly to float32 and the products
	// are summed in float32. out, inp and bias are F32; bias may be nil. Inconsistent sizes, or a
	// weight that is not BF16, record the backend's sticky error.
	MatmulForwardBF16(out, inp, weight, bias Buffer, N, C, OC int)
}

// BF16FromF32 rounds x to the nearest bfloat16, ties to even, as PyTorch's
// tensor.to(torch.bfloat16) does; values beyond the largest bfloat16 round to ±Inf, and a NaN
// stays a (quiet) NaN. It returns the bit pattern.
func BF16FromF32(x float32) uint16 {
	u := math.Float32bits(x)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40 // NaN: keep the sign and the top of the payload, set quiet
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}

// F32FromBF16 returns the float32 value of the bfloat16 bit pattern h, which is exact.
func F32FromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// ErrUnavailable is returned (wrapped) by Open when the named backend cannot run on this
// machine, e.g. "cuda" without a driver.
var ErrUnavailable = errors.New("backend unavailable")

// ErrOutOfMemory is wrapped by the error of an Alloc that the backend's memory cannot serve
// (a GPU's device memory), so that callers can tell "too big for this device" (the service's
// ResourceExhausted) from a bug.
var ErrOutOfMemory = errors.New("backend out of memory")

// Factory opens a backend; it returns an error wrapping ErrUnavailable when the machine lacks
// what the backend needs.
type Factory func() (Backend, error)

type registration struct {
	factory  Factory
	priority int
}

var (
	mu       sync.Mutex
	registry = map[string]registration{}
)

// Register makes a backend available to Open under name. Priority orders the choice of "auto":
// the highest that opens wins. It panics if name is registered twice (a programming error at init).
func Register(name string, priority int, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic("backend: Register called twice for " + name)
	}
	registry[name] = registration{factory: f, priority: priority}
}

// Names lists the registered backends, highest priority first.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		pi, pj := registry[names[i]].priority, registry[names[j]].priority
		if pi != pj {
			return pi > pj
		}
		return names[i] < names[j]
	})
	return names
}

// Open opens the backend registered under name, or with "auto" the highest-priority backend that
// opens on this machine. For "auto" it also returns why each better backend was skipped, so the
// caller can log it. Open fails for an unknown name.
func Open(name string) (Backend, []error, error) {
	if name != "auto" {
		mu.Lock()
		r, ok := registry[name]
		mu.Unlock()
		if !ok {
			return nil, nil, fmt.Errorf("backend: unknown backend %q (have %s, auto)", name, strings.Join(Names(), ", "))
		}
		b, err := r.factory()
		if err != nil {
			return nil, nil, fmt.Errorf("backend: open %s: %w", name, err)
		}
		return b, nil, nil
	}
	var skipped []error
	for _, n := range Names() {
		mu.Lock()
		r := registry[n]
		mu.Unlock()
		b, err := r.factory()
		if err == nil {
			return b, skipped, nil
		}
		skipped = append(skipped, fmt.Errorf("backend: %s: %w", n, err))
	}
	return nil, skipped, fmt.Errorf("backend: no backend opens: %w", errors.Join(skipped...))
}
