// Package model is GPT-2 (Radford et al., 2019) on a backend.Backend: the configuration and
// parameters in Hugging Face's layout, loading and saving model.safetensors, the training forward
// and backward pass with AdamW (after llm.c's train_gpt2.c), and cached inference for serving.
//
// The model holds no backend-specific code: it allocates buffers and enqueues the kernels of
// package backend, so every backend runs the same model.
package model

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/modeld-dev/modeld/backend"
)

// Model is a GPT-2 language model whose parameters live in one buffer of a backend. A Model and
// everything made from it (trainers, KV caches) must be used from one goroutine at a time,
// like its backend.
type Model struct {
	Config Config
	// Backend runs the kernels and owns the parameter memory.
	Backend backend.Backend

	tensors []tensor
	params  backend.Buffer // every parameter, in layout order
	wte     backend.Buffer // (V, C); also the lm_head weight
	wpe     backend.Buffer // (maxT, C)
	lnfW    backend.Buffer // (C)
	lnfB    backend.Buffer // (C)
	layers  [][perLayer]backend.Buffer
}

// New allocates a model with every parameter zero. Use SetParams, Init or Load to fill it.
func New(b backend.Backend, c Config) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	m := &Model{Config: c, Backend: b, tensors: layout(c)}
	buf, err := b.Alloc(backend.F32, c.NumParams())
	if err != nil {
		return nil, fmt.Errorf("model: parameters: %w", err)
	}
	m.params = buf
	m.layers = make([][perLayer]backend.Buffer, c.NLayer)
	m.bindViews(buf, &m.wte, &m.wpe, &m.lnfW, &m.lnfB, m.layers)
	return m, nil
}

// bindViews points the named views at the tensors of buf, which has the parameter layout (the
// parameters themselves, or their gradients).
func (m *Model) bindViews(buf backend.Buffer, wte, wpe, lnfW, lnfB *backend.Buffer, layers [][perLayer]backend.Buffer) {
	view := func(i int) backend.Buffer { t := m.tensors[i]; return buf.Slice(t.offset, t.numel()) }
	*wte, *wpe = view(0), view(1)
	for l := range layers {
		for j := range perLayer {
			layers[l][j] = view(2 + l*perLayer + j)
		}
	}
	n := len(m.tensors)
	*lnfW, *lnfB = view(n-2), view(n-1)
}

// Close frees the parameter buffer.
func (m *Model) Close() {
	m.Backend.Free(m.params)
}

// Init fills the parameters as GPT-2 and nanoGPT initialise them: weights N(0, 0.02), the two
// projections into the residual stream N(0, 0.02/sqrt(2*n_layer)), LayerNorm weights 1, biases
// 0. The same seed gives the same parameters.
func (m *Model) Init(ctx context.Context, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	host := make([]float32, m.Config.NumParams())
	projStd := 0.02 / math.Sqrt(2*float64(m.Config.NLayer))
	for _, t := range m.tensors {
		dst := host[t.offset : t.offset+t.numel()]
		switch {
		case strings.HasSuffix(t.name, ".bias"):
			// biases stay 0
		case strings.Contains(t.name, "ln_"):
			for j := range dst {
				dst[j] = 1
			}
		default:
			std := 0.02
			if strings.HasSuffix(t.name, "c_proj.weight") {
				std = projStd
			}
			for j := range dst {
				dst[j] = float32(rng.NormFloat64() * std)
			}
		}
	}
	return m.SetParams(ctx, host)
}

// SetParams uploads every parameter from host, in the model's buffer layout (NumParams floats).
func (m *Model) SetParams(ctx context.Context, host []float32) error {
	if len(host) != m.params.Len() {
		return fmt.Errorf("model: SetParams with %d floats, want %d", len(host), m.params.Len())
	}
	m.Backend.Upload(m.params, host)
	return m.Backend.Sync(ctx)
}

// Params downloads every parameter, in the model's buffer layout.
func (m *Model) Params(ctx context.Context) ([]float32, error) {
	host := make([]float32, m.params.Len())
	m.Backend.Download(host, m.params)
	return host, m.Backend.Sync(ctx)
}

// TensorNames lists the checkpoint names of the parameters in safetensors order.
func (m *Model) TensorNames() []string {
	names := make([]string, len(m.tensors))
	for i, t := range m.tensors {
		names[i] = t.name
	}
	return names
}

// HFTensors converts parameters in the buffer layout (as from Params) to the checkpoint layout:
// one slice per tensor in TensorNames order, Conv1D weights transposed back to (C, OC).
func (m *Model) HFTensors(buf []float32) ([][]float32, [][]int) {
	data := make([][]float32, len(m.tensors))
	shapes := make([][]int, len(m.tensors))
	for i, t := range m.tensors {
		data[i] = t.toHF(make([]float32, 0, t.numel()), buf[t.offset:t.offset+t.numel()])
		shapes[i] = t.hfShape()
	}
	return data, shapes
}

// buffers allocates backend buffers and remembers them, so that a trainer or an inference can
// free all of them; after the first error every alloc returns nil and err holds the error.
type buffers struct {
	b    backend.Backend
	list []backend.Buffer
	err  error
}

func (a *buffers) alloc(dt backend.DType, n int) backend.Buffer {
	if a.err != nil {
		return nil
	}
	buf, err := a.b.Alloc(dt, n)
	if err != nil {
		a.err = err
		return nil
	}
	a.list = append(a.list, buf)
	return buf
}

func (a *buffers) f32(n int) backend.Buffer { return a.alloc(backend.F32, n) }

func (a *buffers) free() {
	for _, buf := range a.list {
		a.b.Free(buf)
	}
	a.list = nil
}
