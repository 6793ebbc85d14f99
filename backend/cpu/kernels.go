package cpu

import (
	"math"

	"github.com/modeld-dev/modeld/backend"
)

// The exported kernels check their arguments, then run the row kernels of ref.go: over all rows
// in the reference backend, spread across cores by parallelFor in the fast one. Matmul
// (matmul.go) and attention (attention.go) have separate fast implementations, and the fast
// softmax, cross-entropy, GELU, LayerNorm (layernorm.go) and AdamW rows run the SIMD kernels of
// vec.go.

// rows runs fn over [0, n): in one call for the reference backend, split across cores for the
// fast one. fn must only write state owned by its rows.
func (b *Backend) rows(n, minChunk int, fn func(lo, hi int)) {
	if !b.fast {
		fn(0, n)
		return
	}
	parallelFor(n, minChunk, fn)
}

// EncoderForward implements backend.Backend.
func (b *Backend) EncoderForward(out, tokens, positions, wte, wpe backend.Buffer, N, C int) {
	const k = "EncoderForward"
	if b.err != nil {
		return
	}
	if C <= 0 || N < 0 {
		b.fail("%s: N=%d C=%d", k, N, C)
		return
	}
	o := b.f32(k, "out", out, N*C)
	tok := b.i32(k, "tokens", tokens, N)
	pos := b.i32(k, "positions", positions, N)
	e := b.f32(k, "wte", wte, wte.Len()/C*C)
	p := b.f32(k, "wpe", wpe, wpe.Len()/C*C)
	if b.err != nil || !b.ids(k, tok, len(e)/C, "token") || !b.ids(k, pos, len(p)/C, "position") {
		return
	}
	b.rows(N, 16, func(lo, hi int) { encoderForward(o, e, p, tok, pos, C, lo, hi) })
}

// ids records an error unless every id is in [0, n).
func (b *Backend) ids(kernel string, ids []int32, n int, what string) bool {
	for i, id := range ids {
		if id < 0 || int(id) >= n {
			b.fail("%s: %s %d at row %d is outside [0, %d)", kernel, what, id, i, n)
			return false
		}
	}
	return true
}

// EncoderBackward implements backend.Backend. It runs on one core in both variants: rows that
// share a token add into the same gradient row.
func (b *Backend) EncoderBackward(dwte, dwpe, dout, tokens, positions backend.Buffer, N, C int) {
	const k = "EncoderBackward"
	if b.err != nil {
		return
	}
	if C <= 0 || N < 0 {
		b.fail("%s: N=%d C=%d", k, N, C)
		return
	}
	de := b.f32(k, "dwte", dwte, dwte.Len()/C*C)
	dp := b.f32(k, "dwpe", dwpe, dwpe.Len()/C*C)
	d := b.f32(k, "dout", dout, N*C)
	tok := b.i32(k, "tokens", tokens, N)
	pos := b.i32(k, "positions", positions, N)
	if b.err != nil || !b.ids(k, tok, len(de)/C, "token") || !b.ids(k, pos, len(dp)/C, "position") {
		return
	}
	encoderBackward(de, dp, d, tok, pos, C, N)
}

// LayerNormForward implements backend.Backend.
func (b *Backend) LayerNormForward(out, mean, rstd, inp, weight, bias backend.Buffer, N, C int) {
	const k = "LayerNormForward"
	if b.err != nil {
		return
	}
	o, m, r := b.f32(k, "out", out, N*C), b.f32(k, "mean", mean, N), b.f32(k, "rstd", rstd, N)
	x, w, bs := b.f32(k, "inp", inp, N*C), b.f32(k, "weight", weight, C), b.f32(k, "bias", bias, C)
	if b.err != nil {
		return
	}
	f := layerNormForward
	if b.fast {
		f = layerNormForwardFast
	}
	b.rows(N, 4, func(lo, hi int) { f(o, m, r, x, w, bs, C, lo, hi) })
}

// LayerNormBackward implements backend.Backend. The fast variant sums each core's weight and
// bias gradients after the rows are done.
func (b *Backend) LayerNormBackward(dinp, dweight, dbias, dout, inp, weight, mean, rstd backend.Buffer, N, C int) {
	const k = "LayerNormBackward"
	if b.err != nil {
		return
	}
	dx, dw, db := b.f32(k, "dinp", dinp, N*C), b.f32(k, "dweight", dweight, C), b.f32(k, "dbias", dbias, C)
	d, x, w := b.f32(k, "dout", dout, N*C), b.f32(k, "inp", inp, N*C), b.f32(k, "weight", weight, C)
	m, r := b.f32(k, "mean", mean, N), b.f32(k, "rstd", rstd, N)
	if b.err != nil {
		return
	}
	if !b.fast {
		layerNormBackward(dx, dw, db, d, x, w, m, r, C, 0, N)
		return
	}
	parallelReduce(N, 16, 2*C, func(lo, hi int, part []float32) {
		layerNormBackwardFast(dx, part[:C], part[C:], d, x, w, m, r, C, lo, hi)
	}, func(part []float32) {
		for i := range C {
			dw[i] += part[i]
			db[i] += part[C+i]
		}
	})
}

// MatmulForward implements backend.Backend.
func (b *Backend) MatmulForward(out, inp, weight, bias backend.Buffer, N, C, OC int) {
	const k = "MatmulForward"
	if b.err != nil {
		return
	}
	o, x, w := b.f32(k, "out", out, N*OC), b.f32(k, "inp", inp, N*C), b.f32(k, "weight", weight, OC*C)
	bs := b.optF32(k, "bias", bias, OC)
	if b.err != nil {
		return
	}
	if b.fast {
		matmulForward(o, x, w, bs, N, C, OC)
	} else {
		matmulForwardNaive(o, x, w, bs, N, C, OC)
	}
}

// MatmulBackward implements backend.Backend.
func (b *Backend) MatmulBackward(dinp, dweight, dbias, dout, inp, weight backend.Buffer, N, C, OC int) {
	const k = "MatmulBackward"
	if b.err != nil {
		return
	}
	dx, dw := b.f32(k, "dinp", dinp, N*C), b.optF32(k, "dweight", dweight, OC*C)
	db := b.optF32(k, "dbias", dbias, OC)
	d, x, w := b.f32(k, "dout", dout, N*OC), b.f32(k, "inp", inp, N*C), b.f32(k, "weight", weight, OC*C)
	if b.err != nil {
		return
	}
	if b.fast {
		matmulBackwardInput(dx, d, w, N, C, OC)
		if dw != nil {
			matmulBackwardWeight(dw, db, d, x, N, C, OC)
		} else if db != nil {
			biasBackward(db, d, N, OC)
		}
		return
	}
	matmulBackwardInputNaive(dx, d, w, N, C, OC)
	if dw != nil {
		matmulBackwardWeightNaive(dw, db, d, x, N, C, OC)
	} else if db != nil {
		biasBackward(db, d, N, OC)
	}
}

// heads checks the attention shape and returns the head size.
func (b *Backend) heads(kernel string, C, NH int) int {
	if NH <= 0 || C <= 0 || C%NH != 0 {
		b.fail("%s: C=%d is not a positive multiple of NH=%d", kernel, C, NH)
		return 0
	}
	return C / NH
}

// AttentionForward implements backend.Backend.
func (b *Backend) AttentionForward(out, att, qkv backend.Buffer, B, T, C, NH int) {
	const k = "AttentionForward"
	if b.err != nil {
		return
	}
	b.heads(k, C, NH)
	o, a, q := b.f32(k, "out", out, B*T*C), b.f32(k, "att", att, B*NH*T*T), b.f32(k, "qkv", qkv, B*T*3*C)
	if b.err != nil {
		return
	}
	if b.fast {
		attentionForwardFast(o, a, q, B, T, C, NH)
		return
	}
	attentionForward(o, a, q, T, C, NH, 0, B*NH)
}

// AttentionBackward implements backend.Backend.
func (b *Backend) AttentionBackward(dqkv, dout, qkv, att backend.Buffer, B, T, C, NH int) {
	const k = "AttentionBackward"
	if b.err != nil {
		return
	}
	b.heads(k, C, NH)
	dq, d := b.f32(k, "dqkv", dqkv, B*T*3*C), b.f32(k, "dout", dout, B*T*C)
	q, a := b.f32(k, "qkv", qkv, B*T*3*C), b.f32(k, "att", att, B*NH*T*T)
	if b.err != nil {
		return
	}
	if b.fast {
		attentionBackwardFast(dq, d, q, a, B, T, C, NH)
		return
	}
	attentionBackward(dq, d, q, a, T, C, NH, 0, B*NH)
}

// GELUForward implements backend.Backend.
func (b *Backend) GELUForward(out, inp backend.Buffer, n int) {
	const k = "GELUForward"
	if b.err != nil {
		return
	}
	o, x := b.f32(k, "out", out, n), b.f32(k, "inp", inp, n)
	if b.err != nil {
		return
	}
	f := geluForward
	if b.fast {
		f = vecKern.gelu
	}
	b.rows(n, 4096, func(lo, hi int) { f(o[lo:hi], x[lo:hi]) })
}

// GELUBackward implements backend.Backend.
func (b *Backend) GELUBackward(dinp, inp, dout backend.Buffer, n int) {
	const k = "GELUBackward"
	if b.err != nil {
		return
	}
	dx, x, d := b.f32(k, "dinp", dinp, n), b.f32(k, "inp", inp, n), b.f32(k, "dout", dout, n)
	if b.err != nil {
		return
	}
	f := geluBackward
	if b.fast {
		f = vecKern.geluBackward
	}
	b.rows(n, 4096, func(lo, hi int) { f(dx[lo:hi], x[lo:hi], d[lo:hi]) })
}

// ResidualForward implements backend.Backend.
func (b *Backend) ResidualForward(out, x, y backend.Buffer, n int) {
	const k = "ResidualForward"
	if b.err != nil {
		return
	}
	o, p, q := b.f32(k, "out", out, n), b.f32(k, "a", x, n), b.f32(k, "b", y, n)
	if b.err != nil {
		return
	}
	b.rows(n, 16384, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			o[i] = p[i] + q[i]
		}
	})
}

// ResidualBackward implements backend.Backend.
func (b *Backend) ResidualBackward(da, db, dout backend.Buffer, n int) {
	const k = "ResidualBackward"
	if b.err != nil {
		return
	}
	p, q, d := b.f32(k, "da", da, n), b.f32(k, "db", db, n), b.f32(k, "dout", dout, n)
	if b.err != nil {
		return
	}
	b.rows(n, 16384, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			p[i] += d[i]
			q[i] += d[i]
		}
	})
}

// CrossEntropyForward implements backend.Backend.
func (b *Backend) CrossEntropyForward(losses, probs, logits, targets backend.Buffer, N, V int) {
	const k = "CrossEntropyForward"
	if b.err != nil {
		return
	}
	l, p := b.f32(k, "losses", losses, N), b.f32(k, "probs", probs, N*V)
	x, t := b.f32(k, "logits", logits, N*V), b.i32(k, "targets", targets, N)
	if b.err != nil || !b.targets(k, t, V) {
		return
	}
	if !b.fast {
		crossEntropyForward(l, p, x, t, V, 0, N)
		return
	}
	b.rows(N, 1, func(lo, hi int) { crossEntropyForwardFast(l, p, x, t, V, lo, hi) })
}

// targets records an error unless every target is in [0, V) or IgnoreIndex.
func (b *Backend) targets(kernel string, t []int32, V int) bool {
	for i, id := range t {
		if id != backend.IgnoreIndex && (id < 0 || int(id) >= V) {
			b.fail("%s: target %d at row %d is outside [0, %d)", kernel, id, i, V)
			return false
		}
	}
	return true
}

// CrossEntropyBackward implements backend.Backend.
func (b *Backend) CrossEntropyBackward(dlogits, probs, targets backend.Buffer, N, V int, scale float32) {
	const k = "CrossEntropyBackward"
	if b.err != nil {
		return
	}
	d, p, t := b.f32(k, "dlogits", dlogits, N*V), b.f32(k, "probs", probs, N*V), b.i32(k, "targets", targets, N)
	if b.err != nil || !b.targets(k, t, V) {
		return
	}
	b.rows(N, 1, func(lo, hi int) { crossEntropyBackward(d, p, t, V, scale, lo, hi) })
}

// AdamWUpdate implements backend.Backend.
func (b *Backend) AdamWUpdate(params, grads, m, v backend.Buffer, n int, hp backend.AdamW) {
	const k = "AdamWUpdate"
	if b.err != nil {
		return
	}
	p, g := b.f32(k, "params", params, n), b.f32(k, "grads", grads, n)
	mm, vv := b.f32(k, "m", m, n), b.f32(k, "v", v, n)
	if b.err != nil {
		return
	}
	if hp.Step < 1 {
		b.fail("%s: step %d, want >= 1", k, hp.Step)
		return
	}
	f := adamW
	if b.fast {
		f = vecKern.adamW
	}
	b.rows(n, 8192, func(lo, hi int) { f(p[lo:hi], g[lo:hi], mm[lo:hi], vv[lo:hi], hp) })
}

// SumSquares implements backend.Backend. The sum is taken in float64.
func (b *Backend) SumSquares(out, in backend.Buffer, n int) {
	const k = "SumSquares"
	if b.err != nil {
		return
	}
	o, x := b.f32(k, "out", out, 1), b.f32(k, "in", in, n)
	if b.err != nil {
		return
	}
	if !b.fast {
		o[0] += float32(sumSquares(x))
		return
	}
	var total float64
	parallelReduce(n, 16384, 1, func(lo, hi int, part []float32) {
		part[0] = float32(sumSquares8(x[lo:hi]))
	}, func(part []float32) { total += float64(part[0]) })
	o[0] += float32(total)
}

// CachedAttention implements backend.Backend.
func (b *Backend) CachedAttention(out, qkv backend.Buffer, cache backend.KVCache, seqs []backend.CachedSeq, C, NH int) {
	const k = "CachedAttention"
	if b.err != nil {
		return
	}
	b.heads(k, C, NH)
	if b.err != nil {
		return
	}
	N := qkv.Len() / (3 * C)
	o, q := b.f32(k, "out", out, N*C), b.f32(k, "qkv", qkv, N*3*C)
	bs := cache.BlockSize
	if bs <= 0 {
		b.fail("%s: block size %d", k, bs)
		return
	}
	kc := b.f32(k, "cache.K", cache.K, cache.K.Len()/(bs*C)*bs*C)
	vc := b.f32(k, "cache.V", cache.V, len(kc))
	if b.err != nil {
		return
	}
	nblocks := len(kc) / (bs * C)
	for i, s := range seqs {
		if s.Row < 0 || s.Len < 0 || s.Row+s.Len > N || s.Pos < 0 || s.Pos+s.Len > len(s.Blocks)*bs {
			b.fail("%s: sequence %d (row %d, len %d, pos %d, %d blocks of %d) does not fit %d rows",
				k, i, s.Row, s.Len, s.Pos, len(s.Blocks), bs, N)
			return
		}
		for _, blk := range s.Blocks[:(s.Pos+s.Len+bs-1)/bs] {
			if blk < 0 || int(blk) >= nblocks {
				b.fail("%s: sequence %d uses block %d of %d", k, i, blk, nblocks)
				return
			}
		}
	}
	for _, s := range seqs {
		cacheWrite(kc, vc, q, s, bs, C)
	}
	if b.fast {
		cachedAttentionTasks(o, q, kc, vc, seqs, bs, C, NH)
		return
	}
	for _, s := range seqs {
		for t := range s.Len {
			cachedAttention(o, q, kc, vc, s, t, bs, C, NH)
		}
	}
}

// Gather implements backend.Backend.
func (b *Backend) Gather(out, inp backend.Buffer, idx []int32, C int) {
	const k = "Gather"
	if b.err != nil {
		return
	}
	if C <= 0 {
		b.fail("%s: C=%d", k, C)
		return
	}
	o, x := b.f32(k, "out", out, len(idx)*C), b.f32(k, "inp", inp, inp.Len()/C*C)
	if b.err != nil || !b.ids(k, idx, len(x)/C, "row") {
		return
	}
	for i, r := range idx {
		copy(o[i*C:(i+1)*C], x[int(r)*C:(int(r)+1)*C])
	}
}

// biasBackward adds the column sums of dout(N,OC) into dbias(OC).
func biasBackward(dbias, dout []float32, N, OC int) {
	for n := range N {
		row := dout[n*OC : (n+1)*OC]
		for o, d := range row {
			dbias[o] += d
		}
	}
}

func sumSquares(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return s
}

// sumSquares8 is sumSquares with eight independent float64 sums, added pairwise at the end: the
// single chain of dependent adds in sumSquares runs at one element per add latency (~0.75 G/s, a
// quarter of the memory's speed), eight chains keep the adder busy. The order of the additions
// depends only on len(x).
func sumSquares8(x []float32) float64 {
	var s [8]float64
	i := 0
	for ; i+8 <= len(x); i += 8 {
		v := x[i : i+8 : i+8]
		s[0] += float64(v[0]) * float64(v[0])
		s[1] += float64(v[1]) * float64(v[1])
		s[2] += float64(v[2]) * float64(v[2])
		s[3] += float64(v[3]) * float64(v[3])
		s[4] += float64(v[4]) * float64(v[4])
		s[5] += float64(v[5]) * float64(v[5])
		s[6] += float64(v[6]) * float64(v[6])
		s[7] += float64(v[7]) * float64(v[7])
	}
	for j, v := range x[i:] {
		s[j] += float64(v) * float64(v)
	}
	return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

// adamW is one AdamW step over a slice; see backend.AdamW for the formula.
func adamW(p, g, m, v []float32, hp backend.AdamW) {
	c1, c2 := adamWBias(hp)
	for i := range p {
		grad := g[i] * hp.GradScale
		mi := hp.Beta1*m[i] + (1-hp.Beta1)*grad
		vi := hp.Beta2*v[i] + (1-hp.Beta2)*grad*grad
		m[i], v[i] = mi, vi
		mhat := mi / c1
		vhat := vi / c2
		p[i] -= hp.LearningRate * (mhat/(float32(math.Sqrt(float64(vhat)))+hp.Eps) + hp.WeightDecay*p[i])
	}
}

// adamWBias returns AdamW's bias corrections 1 - beta1^t and 1 - beta2^t, computed as llm.c does
// (in float32).
func adamWBias(hp backend.AdamW) (c1, c2 float32) {
	c1 = 1 - float32(math.Pow(float64(hp.Beta1), float64(hp.Step)))
	c2 = 1 - float32(math.Pow(float64(hp.Beta2), float64(hp.Step)))
	return c1, c2
}
