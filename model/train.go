package model

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/modeld-dev/modeld/backend"
)

// layerActs are the activations of one block that the backward pass reads.
type layerActs struct {
	ln1, ln1Mean, ln1Rstd backend.Buffer // (B,T,C), (B,T), (B,T)
	qkv                   backend.Buffer // (B,T,3C)
	att                   backend.Buffer // (B,NH,T,T) softmax probabilities; nil with flash attention
	lse                   backend.Buffer // (B,NH,T) log-sum-exp per query row; flash attention only
	atty                  backend.Buffer // (B,T,C) attention output before c_proj
	residual2             backend.Buffer // (B,T,C) block input + attention
	ln2, ln2Mean, ln2Rstd backend.Buffer // (B,T,C), (B,T), (B,T)
	fch, fchGelu          backend.Buffer // (B,T,4C) MLP hidden before and after GELU
	residual3             backend.Buffer // (B,T,C) block output
}

// Trainer runs training steps of a model on batches of B sequences of T tokens: forward to the
// mean cross-entropy loss, backward to every parameter's gradient, and AdamW. It owns the
// activations, the gradients and the optimizer state (about 3x the parameters plus activations
// that grow with B*T*(C*L + V) and, unless the backend offers [backend.FlashAttention],
// B*NH*T*T*L).
type Trainer struct {
	m     *Model
	B, T  int
	flash backend.FlashAttention // the backend's fused attention, or nil

	tokens, targets, positions backend.Buffer // (B,T) int32
	encoded                    backend.Buffer // (B,T,C)
	acts                       []layerActs
	scratch                    backend.Buffer // (B,T,C) attention and MLP projections
	lnf, lnfMean, lnfRstd      backend.Buffer // (B,T,C), (B,T), (B,T)
	logits, probs              backend.Buffer // (B,T,V); the backward writes dlogits over probs
	losses                     backend.Buffer // (B,T)
	norm                       backend.Buffer // (1) sum of squared gradients

	grads                    backend.Buffer // parameter gradients, in the parameter layout
	dwte, dwpe, dlnfW, dlnfB backend.Buffer
	dlayers                  [][perLayer]backend.Buffer
	dres                     backend.Buffer // (B,T,C) gradient of the residual stream
	dC1, dC2, dC3, dC4, dQKV backend.Buffer // (B,T,C) x4 and (B,T,3C) per-block scratch
	dH, dHGelu               backend.Buffer // (B,T,4C)
	mom, vel                 backend.Buffer // AdamW moments, in the parameter layout
	step                     int            // AdamW steps taken
	count                    int            // non-ignored targets of the last Forward
	hostLosses               []float32
	hasForward               bool
	bufs                     buffers
}

// ErrNonFinite is returned (wrapped) when the loss or the gradient norm is NaN or infinite.
var ErrNonFinite = errors.New("non-finite value")

// NewTrainer allocates a trainer for batches of B sequences of T tokens (T <= n_positions).
func (m *Model) NewTrainer(B, T int) (*Trainer, error) {
	c := m.Config
	if B <= 0 || T <= 0 || T > c.NPositions {
		return nil, fmt.Errorf("model: trainer B=%d T=%d, want B >= 1 and 1 <= T <= n_positions = %d", B, T, c.NPositions)
	}
	tr := &Trainer{m: m, B: B, T: T, hostLosses: make([]float32, B*T)}
	tr.flash, _ = m.Backend.(backend.FlashAttention)
	N, C, V, NH := B*T, c.NEmbd, c.VocabSize, c.NHead
	tr.bufs = buffers{b: m.Backend}
	alloc, f := tr.bufs.alloc, tr.bufs.f32
	tr.tokens, tr.targets, tr.positions = alloc(backend.I32, N), alloc(backend.I32, N), alloc(backend.I32, N)
	tr.encoded = f(N * C)
	tr.acts = make([]layerActs, c.NLayer)
	for l := range tr.acts {
		a := &tr.acts[l]
		a.ln1, a.ln1Mean, a.ln1Rstd = f(N*C), f(N), f(N)
		a.qkv, a.atty, a.residual2 = f(N*3*C), f(N*C), f(N*C)
		if tr.flash != nil {
			a.lse = f(B * NH * T)
		} else {
			a.att = f(B * NH * T * T)
		}
		a.ln2, a.ln2Mean, a.ln2Rstd = f(N*C), f(N), f(N)
		a.fch, a.fchGelu, a.residual3 = f(N*4*C), f(N*4*C), f(N*C)
	}
	tr.scratch = f(N * C)
	tr.lnf, tr.lnfMean, tr.lnfRstd = f(N*C), f(N), f(N)
	tr.logits, tr.probs, tr.losses, tr.norm = f(N*V), f(N*V), f(N), f(1)
	tr.grads = f(m.params.Len())
	tr.dres, tr.dC1, tr.dC2, tr.dC3, tr.dC4, tr.dQKV = f(N*C), f(N*C), f(N*C), f(N*C), f(N*C), f(N*3*C)
	tr.dH, tr.dHGelu = f(N*4*C), f(N*4*C)
	tr.mom, tr.vel = f(m.params.Len()), f(m.params.Len())
	if err := tr.bufs.err; err != nil {
		tr.Close()
		return nil, fmt.Errorf("model: trainer B=%d T=%d: %w", B, T, err)
	}
	tr.dlayers = make([][perLayer]backend.Buffer, c.NLayer)
	m.bindViews(tr.grads, &tr.dwte, &tr.dwpe, &tr.dlnfW, &tr.dlnfB, tr.dlayers)
	pos := make([]int32, N)
	for i := range pos {
		pos[i] = int32(i % T)
	}
	m.Backend.UploadInt32(tr.positions, pos)
	return tr, nil
}

// Close frees the trainer's buffers.
func (tr *Trainer) Close() { tr.bufs.free() }

// Forward runs the model on inputs (B*T token ids, row-major (B,T)) and returns the mean
// cross-entropy loss over the targets (B*T ids, the next token of each input; IgnoreIndex
// positions are skipped, as padding). It fails for an id outside [0, V), for no target at all,
// or with the backend's error.
func (tr *Trainer) Forward(ctx context.Context, inputs, targets []int32) (float64, error) {
	m, c := tr.m, tr.m.Config
	B, T, C, V, NH, L := tr.B, tr.T, c.NEmbd, c.VocabSize, c.NHead, c.NLayer
	N := B * T
	if len(inputs) != N || len(targets) != N {
		return 0, fmt.Errorf("model: forward with %d inputs and %d targets, want B*T = %d", len(inputs), len(targets), N)
	}
	tr.count = 0
	for i := range N {
		if id := inputs[i]; id < 0 || int(id) >= V {
			return 0, fmt.Errorf("model: input token %d at %d is outside [0, %d)", id, i, V)
		}
		if id := targets[i]; id != backend.IgnoreIndex {
			if id < 0 || int(id) >= V {
				return 0, fmt.Errorf("model: target %d at %d is outside [0, %d)", id, i, V)
			}
			tr.count++
		}
	}
	if tr.count == 0 {
		return 0, fmt.Errorf("model: forward with every target ignored")
	}
	b := m.Backend
	b.UploadInt32(tr.tokens, inputs)
	b.UploadInt32(tr.targets, targets)
	b.EncoderForward(tr.encoded, tr.tokens, tr.positions, m.wte, m.wpe, N, C)
	residual := tr.encoded
	for l := range L {
		w, a := &m.layers[l], &tr.acts[l]
		b.LayerNormForward(a.ln1, a.ln1Mean, a.ln1Rstd, residual, w[ln1W], w[ln1B], N, C)
		b.MatmulForward(a.qkv, a.ln1, w[qkvW], w[qkvB], N, C, 3*C)
		if tr.flash != nil {
			tr.flash.FlashAttentionForward(a.atty, a.lse, a.qkv, B, T, C, NH)
		} else {
			b.AttentionForward(a.atty, a.att, a.qkv, B, T, C, NH)
		}
		b.MatmulForward(tr.scratch, a.atty, w[attnProjW], w[attnProjB], N, C, C)
		b.ResidualForward(a.residual2, residual, tr.scratch, N*C)
		b.LayerNormForward(a.ln2, a.ln2Mean, a.ln2Rstd, a.residual2, w[ln2W], w[ln2B], N, C)
		b.MatmulForward(a.fch, a.ln2, w[fcW], w[fcB], N, C, 4*C)
		b.GELUForward(a.fchGelu, a.fch, N*4*C)
		b.MatmulForward(tr.scratch, a.fchGelu, w[fcProjW], w[fcProjB], N, 4*C, C)
		b.ResidualForward(a.residual3, a.residual2, tr.scratch, N*C)
		residual = a.residual3
	}
	b.LayerNormForward(tr.lnf, tr.lnfMean, tr.lnfRstd, residual, m.lnfW, m.lnfB, N, C)
	b.MatmulForward(tr.logits, tr.lnf, m.wte, nil, N, C, V)
	b.CrossEntropyForward(tr.losses, tr.probs, tr.logits, tr.targets, N, V)
	b.Download(tr.hostLosses, tr.losses)
	if err := b.Sync(ctx); err != nil {
		return 0, fmt.Errorf("model: forward: %w", err)
	}
	var sum float64
	for _, l := range tr.hostLosses {
		sum += float64(l)
	}
	tr.hasForward = true
	loss := sum / float64(tr.count)
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return loss, fmt.Errorf("model: loss is %v: %w", loss, ErrNonFinite)
	}
	return loss, nil
}

// Losses copies the per-position losses of the last Forward into dst (B*T floats; 0 at ignored
// positions).
func (tr *Trainer) Losses(dst []float32) { copy(dst, tr.hostLosses) }

// Logits downloads the logits (B,T,V) of the last Forward into dst.
func (tr *Trainer) Logits(ctx context.Context, dst []float32) error {
	tr.m.Backend.Download(dst, tr.logits)
	return tr.m.Backend.Sync(ctx)
}

// ZeroGrad clears the parameter gradients. Backward adds into them, so that several batches
// can accumulate before a Step.
func (tr *Trainer) ZeroGrad() {
	tr.m.Backend.Zero(tr.grads)
}

// Backward adds the gradient of lossScale times the last Forward's mean loss into the parameter
// gradients (lossScale is 1/k when accumulating k batches). It must follow a Forward.
func (tr *Trainer) Backward(ctx context.Context, lossScale float32) error {
	if !tr.hasForward {
		return errors.New("model: backward without a forward")
	}
	tr.hasForward = false
	m, c := tr.m, tr.m.Config
	B, T, C, V, NH, L := tr.B, tr.T, c.NEmbd, c.VocabSize, c.NHead, c.NLayer
	N := B * T
	b := m.Backend
	dlogits := tr.probs // written over the probabilities
	b.CrossEntropyBackward(dlogits, tr.probs, tr.targets, N, V, lossScale/float32(tr.count))
	b.Zero(tr.dC1)
	b.MatmulBackward(tr.dC1, tr.dwte, nil, dlogits, tr.lnf, m.wte, N, C, V)
	b.Zero(tr.dres)
	last := tr.encoded
	if L > 0 {
		last = tr.acts[L-1].residual3
	}
	b.LayerNormBackward(tr.dres, tr.dlnfW, tr.dlnfB, tr.dC1, last, m.lnfW, tr.lnfMean, tr.lnfRstd, N, C)
	// dres holds the gradient of each block's output; the residual connections pass it through
	// unchanged, and each branch's backward adds its share into it.
	for l := L - 1; l >= 0; l-- {
		w, dw, a := &m.layers[l], &tr.dlayers[l], &tr.acts[l]
		residual := tr.encoded
		if l > 0 {
			residual = tr.acts[l-1].residual3
		}
		b.Zero(tr.dHGelu)
		b.MatmulBackward(tr.dHGelu, dw[fcProjW], dw[fcProjB], tr.dres, a.fchGelu, w[fcProjW], N, 4*C, C)
		b.Zero(tr.dH)
		b.GELUBackward(tr.dH, a.fch, tr.dHGelu, N*4*C)
		b.Zero(tr.dC2)
		b.MatmulBackward(tr.dC2, dw[fcW], dw[fcB], tr.dH, a.ln2, w[fcW], N, C, 4*C)
		b.LayerNormBackward(tr.dres, dw[ln2W], dw[ln2B], tr.dC2, a.residual2, w[ln2W], a.ln2Mean, a.ln2Rstd, N, C)
		b.Zero(tr.dC3)
		b.MatmulBackward(tr.dC3, dw[attnProjW], dw[attnProjB], tr.dres, a.atty, w[attnProjW], N, C, C)
		b.Zero(tr.dQKV)
		if tr.flash != nil {
			tr.flash.FlashAttentionBackward(tr.dQKV, tr.dC3, a.atty, a.lse, a.qkv, B, T, C, NH)
		} else {
			b.AttentionBackward(tr.dQKV, tr.dC3, a.qkv, a.att, B, T, C, NH)
		}
		b.Zero(tr.dC4)
		b.MatmulBackward(tr.dC4, dw[qkvW], dw[qkvB], tr.dQKV, a.ln1, w[qkvW], N, C, 3*C)
		b.LayerNormBackward(tr.dres, dw[ln1W], dw[ln1B], tr.dC4, residual, w[ln1W], a.ln1Mean, a.ln1Rstd, N, C)
	}
	b.EncoderBackward(tr.dwte, tr.dwpe, tr.dres, tr.tokens, tr.positions, N, C)
	if err := b.Sync(ctx); err != nil {
		return fmt.Errorf("model: backward: %w", err)
	}
	return nil
}

// Grads downloads the parameter gradients, in the model's buffer layout.
func (tr *Trainer) Grads(ctx context.Context) ([]float32, error) {
	host := make([]float32, tr.grads.Len())
	tr.m.Backend.Download(host, tr.grads)
	return host, tr.m.Backend.Sync(ctx)
}

// Optimizer is the AdamW configuration of a Step, with the names and defaults of Hugging Face's
// TrainingArguments (learning_rate 5e-5, adam_beta1 0.9, adam_beta2 0.999, adam_epsilon 1e-8,
// weight_decay 0, max_grad_norm 1).
type Optimizer struct {
	LearningRate float64
	Beta1, Beta2 float64
	Eps          float64
	// WeightDecay is decoupled weight decay, applied to 2-D tensors only (embeddings and matmul
	// weights; not biases or LayerNorm), as nanoGPT, llm.c and Transformers' Trainer do.
	WeightDecay float64
	// MaxGradNorm clips the global L2 norm of the gradients to this value before the update
	// (torch.nn.utils.clip_grad_norm_); 0 turns clipping off.
	MaxGradNorm float64
}

// DefaultOptimizer returns TrainingArguments' defaults.
func DefaultOptimizer() Optimizer {
	return Optimizer{LearningRate: 5e-5, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1}
}

// Step applies one AdamW update with the accumulated gradients and returns their global L2
// norm before clipping. A NaN or infinite norm returns ErrNonFinite and leaves the parameters
// unchanged.
func (tr *Trainer) Step(ctx context.Context, opt Optimizer) (float64, error) {
	b := tr.m.Backend
	b.Zero(tr.norm)
	b.SumSquares(tr.norm, tr.grads, tr.grads.Len())
	var sq [1]float32
	b.Download(sq[:], tr.norm)
	if err := b.Sync(ctx); err != nil {
		return 0, fmt.Errorf("model: gradient norm: %w", err)
	}
	norm := math.Sqrt(float64(sq[0]))
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm, fmt.Errorf("model: gradient norm is %v: %w", norm, ErrNonFinite)
	}
	scale := 1.0
	if opt.MaxGradNorm > 0 && norm > opt.MaxGradNorm {
		// clip_grad_norm_ multiplies by max_norm / (norm + 1e-6).
		scale = opt.MaxGradNorm / (norm + 1e-6)
	}
	tr.step++
	hp := backend.AdamW{
		LearningRate: float32(opt.LearningRate), Beta1: float32(opt.Beta1), Beta2: float32(opt.Beta2),
		Eps: float32(opt.Eps), Step: tr.step, GradScale: float32(scale),
	}
	for _, t := range tr.m.tensors {
		hp.WeightDecay = 0
		if t.decays() {
			hp.WeightDecay = float32(opt.WeightDecay)
		}
		n := t.numel()
		b.AdamWUpdate(tr.m.params.Slice(t.offset, n), tr.grads.Slice(t.offset, n),
			tr.mom.Slice(t.offset, n), tr.vel.Slice(t.offset, n), n, hp)
	}
	if err := b.Sync(ctx); err != nil {
		return norm, fmt.Errorf("model: AdamW: %w", err)
	}
	return norm, nil
}
