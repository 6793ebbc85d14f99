package cuda

import (
	"github.com/modeld-dev/modeld/backend"
)

var _ backend.FlashAttention = (*Backend)(nil)

// FlashAttentionForward implements backend.FlashAttention (attention.cu, FlashAttention-2's
// forward, algorithm 1): out(B,T,C) and lse(B,NH,T), the log-sum-exp of each query row's
// scaled scores; no (T,T) matrix is stored. Grid (ceil(T/64), B*NH), a thread per query row.
func (b *Backend) FlashAttentionForward(out, lse, qkv backend.Buffer, B, T, C, NH int) {
	const k = "FlashAttentionForward"
	if b.failed() {
		return
	}
	hs, d, ok := b.headBound(k, C, NH)
	if !ok || !b.f32(k, "out", out, B*T*C) || !b.f32(k, "lse", lse, B*NH*T) || !b.f32(k, "qkv", qkv, B*T*3*C) ||
		B <= 0 || T <= 0 || !b.batchHeads(k, B, NH) {
		return
	}
	b.launch("flash_forward_"+d, dim3{X: blocks(T, 64), Y: uint32(B * NH)}, dim3{X: 64}, 0,
		out, lse, qkv, T, C, NH, attentionScale(hs))
}

// FlashAttentionBackward implements backend.FlashAttention (attention.cu, FlashAttention-2's
// backward, algorithm 2): attention_delta computes delta = rowsum(dout∘out) into a scratch of
// B*NH*T floats, then flash_backward_dkdv (a thread per key) and flash_backward_dq (a thread
// per query) recompute the probabilities exp(score - lse) tile by tile and add into dqkv.
// Deterministic: dq gets its own pass instead of atomics, at the cost of computing the
// probabilities and dout·v twice.
func (b *Backend) FlashAttentionBackward(dqkv, dout, out, lse, qkv backend.Buffer, B, T, C, NH int) {
	const k = "FlashAttentionBackward"
	if b.failed() {
		return
	}
	hs, d, ok := b.headBound(k, C, NH)
	if !ok || !b.f32(k, "dqkv", dqkv, B*T*3*C) || !b.f32(k, "dout", dout, B*T*C) || !b.f32(k, "out", out, B*T*C) ||
		!b.f32(k, "lse", lse, B*NH*T) || !b.f32(k, "qkv", qkv, B*T*3*C) || B <= 0 || T <= 0 || !b.batchHeads(k, B, NH) {
		return
	}
	delta := b.scratch(k, backend.F32, B*NH*T)
	if delta == nil {
		return
	}
	scale := attentionScale(hs)
	b.launch("attention_delta", gridFor(B*NH*T), dim3{X: 256}, 0, delta, dout, out, B, T, C, NH)
	grid := dim3{X: blocks(T, 64), Y: uint32(B * NH)}
	b.launch("flash_backward_dkdv_"+d, grid, dim3{X: 64}, 0, dqkv, dout, qkv, lse, delta, T, C, NH, scale)
	b.launch("flash_backward_dq_"+d, grid, dim3{X: 64}, 0, dqkv, dout, qkv, lse, delta, T, C, NH, scale)
	b.Free(delta)
}
