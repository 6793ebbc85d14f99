package model

import "fmt"

// tensor is one parameter tensor inside the model's single parameter buffer.
type tensor struct {
	// name is the Hugging Face checkpoint name, with the "transformer." prefix.
	name string
	// shape is the shape as stored in the buffer. Matmul weights are (OC, C), the transpose of
	// the checkpoint's Conv1D (C, OC).
	shape []int
	// conv1D marks a matmul weight stored transposed relative to the checkpoint.
	conv1D bool
	// offset is the first element in the parameter buffer.
	offset int
}

func (t tensor) numel() int {
	n := 1
	for _, d := range t.shape {
		n *= d
	}
	return n
}

// hfShape is the shape in the checkpoint.
func (t tensor) hfShape() []int {
	if t.conv1D {
		return []int{t.shape[1], t.shape[0]}
	}
	return t.shape
}

// decays reports whether AdamW's weight decay applies: 2-D tensors only (embeddings and matmul
// weights), the rule of nanoGPT, llm.c and Transformers' Trainer.
func (t tensor) decays() bool { return len(t.shape) == 2 }

// Per-layer tensor indices, in checkpoint order.
const (
	ln1W = iota
	ln1B
	qkvW
	qkvB
	attnProjW
	attnProjB
	ln2W
	ln2B
	fcW
	fcB
	fcProjW
	fcProjB
	perLayer
)

// layout lists every parameter in the order of a GPT-2 model.safetensors: wte, wpe, the blocks
// h.0 ... h.{L-1}, then ln_f.
func layout(c Config) []tensor {
	C := c.NEmbd
	var ts []tensor
	add := func(name string, conv1D bool, shape ...int) {
		off := 0
		if n := len(ts); n > 0 {
			off = ts[n-1].offset + ts[n-1].numel()
		}
		ts = append(ts, tensor{name: "transformer." + name, shape: shape, conv1D: conv1D, offset: off})
	}
	add("wte.weight", false, c.VocabSize, C)
	add("wpe.weight", false, c.NPositions, C)
	for l := range c.NLayer {
		p := fmt.Sprintf("h.%d.", l)
		add(p+"ln_1.weight", false, C)
		add(p+"ln_1.bias", false, C)
		add(p+"attn.c_attn.weight", true, 3*C, C)
		add(p+"attn.c_attn.bias", false, 3*C)
		add(p+"attn.c_proj.weight", true, C, C)
		add(p+"attn.c_proj.bias", false, C)
		add(p+"ln_2.weight", false, C)
		add(p+"ln_2.bias", false, C)
		add(p+"mlp.c_fc.weight", true, 4*C, C)
		add(p+"mlp.c_fc.bias", false, 4*C)
		add(p+"mlp.c_proj.weight", true, C, 4*C)
		add(p+"mlp.c_proj.bias", false, C)
	}
	add("ln_f.weight", false, C)
	add("ln_f.bias", false, C)
	return ts
}

// toHF converts one tensor from the buffer layout to the checkpoint layout (a transpose for
// Conv1D weights), appending to dst.
func (t tensor) toHF(dst, src []float32) []float32 {
	if !t.conv1D {
		return append(dst, src...)
	}
	rows, cols := t.shape[0], t.shape[1]
	for c := range cols {
		for r := range rows {
			dst = append(dst, src[r*cols+c])
		}
	}
	return dst
}

// fromHF is the inverse of toHF: it writes src, in checkpoint layout, into dst.
func (t tensor) fromHF(dst, src []float32) {
	if !t.conv1D {
		copy(dst, src)
		return
	}
	rows, cols := t.shape[0], t.shape[1]
	for c := range cols {
		for r := range rows {
			dst[r*cols+c] = src[c*rows+r]
		}
	}
}
