package backendtest

import "github.com/modeld-dev/modeld/backend"

// FlashShim returns b offering [backend.FlashAttention] by composing its plain AttentionForward
// and AttentionBackward, recomputing the (B,NH,T,T) attention matrix in the backward as a fused
// kernel does; lse is left 0. It lets a caller's FlashAttention path (the model's trainer) be
// tested on a machine without a fused kernel. The shim offers no other optional interface of b
// (such as [backend.BF16Weights]). b must run kernels synchronously (the CPU backends), since
// the shim frees its temporaries when each call returns; it panics if it cannot allocate them.
func FlashShim(b backend.Backend) backend.Backend { return flashShim{b} }

type flashShim struct{ backend.Backend }

func (b flashShim) FlashAttentionForward(out, lse, qkv backend.Buffer, B, T, C, NH int) {
	att, err := b.Alloc(backend.F32, B*NH*T*T)
	if err != nil {
		panic(err) // host memory: a test that cannot allocate cannot go on
	}
	defer b.Free(att)
	b.AttentionForward(out, att, qkv, B, T, C, NH)
	b.Zero(lse)
}

func (b flashShim) FlashAttentionBackward(dqkv, dout, out, lse, qkv backend.Buffer, B, T, C, NH int) {
	att, err1 := b.Alloc(backend.F32, B*NH*T*T)
	tmp, err2 := b.Alloc(backend.F32, B*T*C)
	if err := firstErr(err1, err2); err != nil {
		panic(err)
	}
	defer b.Free(att)
	defer b.Free(tmp)
	b.AttentionForward(tmp, att, qkv, B, T, C, NH)
	b.AttentionBackward(dqkv, dout, qkv, att, B, T, C, NH)
}
