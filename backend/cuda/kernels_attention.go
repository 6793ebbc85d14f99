package cuda

import (
	"fmt"
	"math"

	"github.com/modeld-dev/modeld/backend"
)

// Attention on the GPU: the plain kernels of backend.Backend and the paged-KV inference
// attention, both in attention.cu / cached_attention.cu, instantiated for head-size bounds of
// 32 and 64 (GPT-2's heads are 64 wide at every size); a wider head records an error.

// maxHeadSize is the widest head the attention kernels are instantiated for.
const maxHeadSize = 64

// headBound checks the attention shape as the CPU backend does (C a positive multiple of NH),
// and that the head fits the kernels, and returns the head size and the suffix of the kernel
// instantiation ("32" or "64"); ok is false after recording an error.
func (b *Backend) headBound(kernel string, C, NH int) (hs int, suffix string, ok bool) {
	switch {
	case NH <= 0 || C <= 0 || C%NH != 0:
		b.failf(kernel, "C=%d is not a positive multiple of NH=%d", C, NH)
		return 0, "", false
	case C/NH > maxHeadSize:
		b.failf(kernel, "head size %d: the CUDA attention kernels take heads of at most %d channels", C/NH, maxHeadSize)
		return 0, "", false
	case C/NH <= 32:
		return C / NH, "32", true
	}
	return C / NH, "64", true
}

// attentionScale is 1/sqrt(HS), rounded as the CPU reference rounds it.
func attentionScale(hs int) float32 { return float32(1 / math.Sqrt(float64(hs))) }

// batchHeads checks that B*NH fits a grid's Y or Z dimension (at most 65535), where the
// attention kernels put it.
func (b *Backend) batchHeads(kernel string, B, NH int) bool {
	if B*NH > 65535 {
		b.failf(kernel, "B*NH=%d (batch %d, %d heads) is over the 65535 the kernels' grid holds", B*NH, B, NH)
		return false
	}
	return true
}

// AttentionForward implements backend.Backend: flash_forward computes out and the log-sum-exp
// of every query row (into a scratch), then attention_probs writes att(B,NH,T,T) =
// exp(score - lse), 0 above the diagonal.
func (b *Backend) AttentionForward(out, att, qkv backend.Buffer, B, T, C, NH int) {
	const k = "AttentionForward"
	if b.failed() {
		return
	}
	hs, d, ok := b.headBound(k, C, NH)
	if !ok || !b.f32(k, "out", out, B*T*C) || !b.f32(k, "att", att, B*NH*T*T) || !b.f32(k, "qkv", qkv, B*T*3*C) ||
		B <= 0 || T <= 0 || !b.batchHeads(k, B, NH) {
		return
	}
	lse := b.scratch(k, backend.F32, B*NH*T)
	if lse == nil {
		return
	}
	scale := attentionScale(hs)
	b.launch("flash_forward_"+d, dim3{X: blocks(T, 64), Y: uint32(B * NH)}, dim3{X: 64}, 0,
		out, lse, qkv, T, C, NH, scale)
	tiles := blocks(T, 32)
	b.launch("attention_probs_"+d, dim3{X: tiles, Y: tiles, Z: uint32(B * NH)}, dim3{X: 32, Y: 8}, 0,
		att, lse, qkv, T, C, NH, scale)
	b.Free(lse)
}

// AttentionBackward implements backend.Backend with the FlashAttention-2 backward reading the
// saved probabilities att instead of recomputing them: attention_delta_att computes
// delta_t = sum_j att_tj*(dout_t·v_j) into a scratch, attention_backward_dkdv adds the key and
// value gradients (a thread per key), attention_backward_dq the query gradients (a thread per
// query). Deterministic: no atomics.
func (b *Backend) AttentionBackward(dqkv, dout, qkv, att backend.Buffer, B, T, C, NH int) {
	const k = "AttentionBackward"
	if b.failed() {
		return
	}
	hs, d, ok := b.headBound(k, C, NH)
	if !ok || !b.f32(k, "dqkv", dqkv, B*T*3*C) || !b.f32(k, "dout", dout, B*T*C) || !b.f32(k, "qkv", qkv, B*T*3*C) ||
		!b.f32(k, "att", att, B*NH*T*T) || B <= 0 || T <= 0 || !b.batchHeads(k, B, NH) {
		return
	}
	delta := b.scratch(k, backend.F32, B*NH*T)
	if delta == nil {
		return
	}
	scale := attentionScale(hs)
	grid := dim3{X: blocks(T, 64), Y: uint32(B * NH)}
	b.launch("attention_delta_att_"+d, grid, dim3{X: 64}, 0, delta, dout, qkv, att, T, C, NH)
	b.launch("attention_backward_dkdv_"+d, grid, dim3{X: 64}, 0, dqkv, dout, qkv, att, nil, delta, T, C, NH, scale)
	b.launch("attention_backward_dq_"+d, grid, dim3{X: 64}, 0, dqkv, dout, qkv, att, nil, delta, T, C, NH, scale)
	b.Free(delta)
}

// Constants of cached_attention.cu.
const (
	// prefillRows is the number of query rows of one cached_prefill work item (its block size).
	prefillRows = 64
	// decodeChunk is the number of cached positions per split of cached_decode (DECODE_CHUNK).
	decodeChunk = 128
)

// CachedAttention implements backend.Backend over the paged KV cache (cached_attention.cu).
// The host checks the sequences as the CPU backend does and flattens them into one int32
// scratch, uploaded once: the cache slot of every new row (kv_cache_write), the block tables,
// one cached_prefill work item per 64 new tokens of each sequence with Len > 1, and one
// cached_decode item per sequence with Len == 1, whose splits over the cached length are merged
// by cached_decode_combine from a float32 scratch.
func (b *Backend) CachedAttention(out, qkv backend.Buffer, cache backend.KVCache, seqs []backend.CachedSeq, C, NH int) {
	const k = "CachedAttention"
	if b.failed() {
		return
	}
	hs, d, ok := b.headBound(k, C, NH)
	if !ok {
		return
	}
	if qkv == nil {
		b.failf(k, "qkv is nil")
		return
	}
	N := qkv.Len() / (3 * C)
	bs := cache.BlockSize
	if !b.f32(k, "out", out, N*C) || !b.f32(k, "qkv", qkv, N*3*C) {
		return
	}
	if bs <= 0 {
		b.failf(k, "block size %d", bs)
		return
	}
	cacheLen := whole(cache.K, bs*C)
	if !b.f32(k, "cache.K", cache.K, cacheLen) || !b.f32(k, "cache.V", cache.V, cacheLen) {
		return
	}
	nblocks := cacheLen / (bs * C)
	meta, err := flattenSeqs(seqs, N, bs, nblocks)
	if err != nil {
		b.failf(k, "%v", err)
		return
	}
	if meta.rows == 0 {
		return
	}
	ints := b.scratch(k, backend.I32, len(meta.ints))
	if ints == nil {
		return
	}
	b.UploadInt32(ints, meta.ints)
	part := func(off, n int) backend.Buffer { return ints.Slice(off, n) }
	slots := part(0, N)
	tables := part(meta.tables, meta.prefill-meta.tables)
	prefill := part(meta.prefill, meta.decode-meta.prefill)
	decode := part(meta.decode, len(meta.ints)-meta.decode)
	scale := attentionScale(hs)

	b.launch("kv_cache_write", gridFor(N*C), dim3{X: 256}, 0, cache.K, cache.V, qkv, slots, N, C)
	if n := (meta.decode - meta.prefill) / 4; n > 0 {
		b.launch("cached_prefill_"+d, dim3{X: uint32(n), Y: uint32(NH)}, dim3{X: prefillRows}, 0,
			out, qkv, cache.K, cache.V, prefill, tables, C, NH, bs, scale)
	}
	if n := (len(meta.ints) - meta.decode) / 3; n > 0 {
		D := maxHeadSize
		if d == "32" {
			D = 32
		}
		partial := b.scratch(k, backend.F32, n*NH*meta.splits*(D+2))
		if partial != nil {
			b.launch("cached_decode_"+d, dim3{X: uint32(n), Y: uint32(NH), Z: uint32(meta.splits)}, dim3{X: decodeChunk}, 0,
				partial, qkv, cache.K, cache.V, decode, tables, C, NH, bs, scale, meta.splits)
			b.launch("cached_decode_combine_"+d, dim3{X: uint32(n), Y: uint32(NH)}, dim3{X: uint32(D)}, 0,
				out, partial, decode, C, NH, meta.splits)
			b.Free(partial)
		}
	}
	b.Free(ints)
}

// seqMeta is a CachedAttention batch flattened for the kernels: ints holds, at these offsets,
// slots(N) (the cache row of each new token, -1 for rows no sequence owns), the block tables
// (each sequence's used blocks), prefill items (row0, nrows, pos0, table offset) and decode
// items (row, last position, table offset).
type seqMeta struct {
	ints                    []int32
	tables, prefill, decode int
	// rows is the number of new tokens; splits the most decode splits of any decode item.
	rows, splits int
}

// flattenSeqs checks seqs against N rows and a cache of nblocks blocks of bs positions, with
// the CPU backend's checks and messages, and flattens them.
func flattenSeqs(seqs []backend.CachedSeq, N, bs, nblocks int) (seqMeta, error) {
	var m seqMeta
	used := make([]int, len(seqs))
	for i, s := range seqs {
		if s.Row < 0 || s.Len < 0 || s.Row+s.Len > N || s.Pos < 0 || s.Pos+s.Len > len(s.Blocks)*bs {
			return m, fmt.Errorf("sequence %d (row %d, len %d, pos %d, %d blocks of %d) does not fit %d rows",
				i, s.Row, s.Len, s.Pos, len(s.Blocks), bs, N)
		}
		used[i] = ceilDiv(s.Pos+s.Len, bs)
		for _, blk := range s.Blocks[:used[i]] {
			if blk < 0 || int(blk) >= nblocks {
				return m, fmt.Errorf("sequence %d uses block %d of %d", i, blk, nblocks)
			}
		}
		m.rows += s.Len
	}
	if int64(nblocks)*int64(bs) > math.MaxInt32 {
		return m, fmt.Errorf("a cache of %d blocks of %d positions has more rows than int32 indexes", nblocks, bs)
	}
	ints := make([]int32, N, N+m.rows*4)
	for i := range ints {
		ints[i] = -1
	}
	offs := make([]int, len(seqs))
	m.tables = len(ints)
	for i, s := range seqs {
		offs[i] = len(ints) - m.tables
		ints = append(ints, s.Blocks[:used[i]]...)
		for t := range s.Len {
			pos := s.Pos + t
			ints[s.Row+t] = s.Blocks[pos/bs]*int32(bs) + int32(pos%bs)
		}
	}
	m.prefill = len(ints)
	for i, s := range seqs {
		if s.Len <= 1 {
			continue
		}
		for r := 0; r < s.Len; r += prefillRows {
			ints = append(ints, int32(s.Row+r), int32(min(prefillRows, s.Len-r)), int32(s.Pos+r), int32(offs[i]))
		}
	}
	m.decode = len(ints)
	for i, s := range seqs {
		if s.Len != 1 {
			continue
		}
		ints = append(ints, int32(s.Row), int32(s.Pos), int32(offs[i]))
		m.splits = max(m.splits, ceilDiv(s.Pos+1, decodeChunk))
	}
	m.ints = ints
	return m, nil
}
