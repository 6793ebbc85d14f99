package backendtest

import (
	"fmt"
	"testing"

	"github.com/modeld-dev/modeld/backend"
)

// seqSpec is one sequence of a CachedAttention batch: pos tokens already cached, n new ones.
type seqSpec struct{ pos, n int }

// cachedBatch is a batch that mixes a prefill, a chunked prefill (new tokens after cached ones)
// and one-token decode steps of sequences of different lengths, whose positions fall at the
// start, in the middle and at the end of blocks.
var cachedBatch = []seqSpec{
	{pos: 0, n: 7},  // a prompt prefill
	{pos: 12, n: 1}, // a decode step at the start of a block (BlockSize 4)
	{pos: 3, n: 1},  // a decode step at the end of a block (BlockSize 4)
	{pos: 9, n: 5},  // a chunked prefill over a block boundary
	{pos: 0, n: 1},  // a one-token prompt
	{pos: 37, n: 1}, // a longer sequence, over several blocks of either size
}

func testCachedAttention(t *testing.T, open func() backend.Backend) {
	for _, sh := range []struct{ C, NH, bs int }{{48, 3, 4}, {48, 3, 16}, {17, 1, 4}, {768, 12, 16}} {
		t.Run(fmt.Sprintf("c=%d/nh=%d/block_size=%d", sh.C, sh.NH, sh.bs), func(t *testing.T) {
			testCachedBatch(t, open, sh.C, sh.NH, sh.bs)
		})
	}
	for _, sh := range []struct{ T, C, NH, bs int }{{13, 48, 3, 4}, {21, 768, 12, 16}} {
		t.Run(fmt.Sprintf("check=matches_attention/t=%d/c=%d/nh=%d/block_size=%d", sh.T, sh.C, sh.NH, sh.bs), func(t *testing.T) {
			testCachedMatchesAttention(t, open, sh.T, sh.C, sh.NH, sh.bs)
		})
	}
}

// testCachedBatch runs one CachedAttention over cachedBatch. The sequences' rows are in shuffled
// order, their block tables are shuffled physical blocks, one table has an unused extra block at
// its end, and some blocks belong to no sequence. Every cache position the batch does not write
// starts as a sentinel (or as an earlier token's key and value) and must come back unchanged;
// the positions it writes must hold the new keys and values exactly.
func testCachedBatch(t *testing.T, open func() backend.Backend, C, NH, bs int) {
	p := newPair(t, open)
	const spare = 3 // blocks that no sequence uses
	nblocks := spare
	for i, sp := range cachedBatch {
		nblocks += (sp.pos + sp.n + bs - 1) / bs
		if i == 2 {
			nblocks++ // the extra, unused block at the end of a table
		}
	}
	phys := p.rng.Perm(nblocks)
	seqs := make([]backend.CachedSeq, len(cachedBatch))
	N := 0
	for _, i := range p.rng.Perm(len(cachedBatch)) {
		seqs[i].Row, seqs[i].Len, seqs[i].Pos = N, cachedBatch[i].n, cachedBatch[i].pos
		N += cachedBatch[i].n
	}
	for i := range seqs {
		nb := (seqs[i].Pos + seqs[i].Len + bs - 1) / bs
		if i == 2 {
			nb++
		}
		for range nb {
			seqs[i].Blocks = append(seqs[i].Blocks, int32(phys[0]))
			phys = phys[1:]
		}
	}

	// The cache: sentinels, then the keys and values of the cached positions.
	size := nblocks * bs * C
	k0, v0 := make([]float32, size), make([]float32, size)
	fill(k0, sentinel)
	fill(v0, sentinel)
	slot := func(s backend.CachedSeq, pos int) int { return (int(s.Blocks[pos/bs])*bs + pos%bs) * C }
	for _, s := range seqs {
		for pos := range s.Pos {
			copy(k0[slot(s, pos):], p.normal(C, 1))
			copy(v0[slot(s, pos):], p.normal(C, 1))
		}
	}
	q := p.normal(N*3*C, 1)
	// What the cache must hold afterwards: the new tokens' keys and values at their positions.
	k1, v1 := append([]float32(nil), k0...), append([]float32(nil), v0...)
	for _, s := range seqs {
		for i := range s.Len {
			row := q[(s.Row+i)*3*C:]
			copy(k1[slot(s, s.Pos+i):][:C], row[C:2*C])
			copy(v1[slot(s, s.Pos+i):][:C], row[2*C:3*C])
		}
	}

	qkv := p.in("qkv", q, N, 3*C)
	kc, vc := p.in("cache.K", k0, nblocks, bs, C), p.in("cache.V", v0, nblocks, bs, C)
	out := p.out("out", N*C, N, C)
	p.run(func(b backend.Backend, s int) {
		cache := backend.KVCache{K: kc.at(s), V: vc.at(s), BlockSize: bs}
		b.CachedAttention(out.at(s), qkv.at(s), cache, cloneSeqs(seqs), C, NH)
	})
	p.check(out, tolAttention)
	p.expect(kc, k1, bitExact)
	p.expect(vc, v1, bitExact)
}

// cloneSeqs returns a deep copy of seqs, so that each side gets its own block tables.
func cloneSeqs(seqs []backend.CachedSeq) []backend.CachedSeq {
	c := make([]backend.CachedSeq, len(seqs))
	for i, s := range seqs {
		c[i] = s
		c[i].Blocks = append([]int32(nil), s.Blocks...)
	}
	return c
}

// testCachedMatchesAttention checks CachedAttention against AttentionForward on each side: one
// sequence of T tokens, run as a prefill of 5 tokens, a chunk of 3 and then one-token decode steps
// through a shuffled block table, must give the rows of causal attention over all T tokens.
func testCachedMatchesAttention(t *testing.T, open func() backend.Backend, T, C, NH, bs int) {
	p := newPair(t, open)
	nblocks := (T+bs-1)/bs + 2
	table := make([]int32, 0, nblocks)
	for _, b := range p.rng.Perm(nblocks)[:(T+bs-1)/bs] {
		table = append(table, int32(b))
	}
	qkv := p.in("qkv", p.normal(T*3*C, 1), T, 3*C)
	want, att := p.out("attention out", T*C, T, C), p.out("att", NH*T*T)
	got := p.out("cached out", T*C, T, C)
	cache0 := make([]float32, nblocks*bs*C)
	fill(cache0, sentinel)
	kc, vc := p.in("cache.K", cache0), p.in("cache.V", cache0)
	p.ignore(att, kc, vc)

	steps := [][2]int{{0, 5}, {5, 3}} // (first token, tokens) of each call
	for pos := 8; pos < T; pos++ {
		steps = append(steps, [2]int{pos, 1})
	}
	p.run(func(b backend.Backend, s int) {
		b.AttentionForward(want.at(s), att.at(s), qkv.at(s), 1, T, C, NH)
		cache := backend.KVCache{K: kc.at(s), V: vc.at(s), BlockSize: bs}
		for _, st := range steps {
			pos, n := st[0], st[1]
			seq := []backend.CachedSeq{{Row: 0, Len: n, Pos: pos, Blocks: table}}
			b.CachedAttention(got.at(s).Slice(pos*C, n*C), qkv.at(s).Slice(pos*3*C, n*3*C), cache, seq, C, NH)
		}
	})
	w, g := p.download(want), p.download(got)
	for s := range p.b {
		report(t, fmt.Sprintf("%s: cached out differs from its own AttentionForward", p.who(s)), got.shape, w[s], g[s], tolAttention)
	}
	p.check(want, tolAttention)
	p.check(got, tolAttention)
}

// testFlashAttention checks a backend's FlashAttentionForward and FlashAttentionBackward against
// the reference's AttentionForward and AttentionBackward: out, and dqkv given the backend's own
// out and lse (lse itself has no reference to compare with). dqkv starts random: the backward adds,
// like every backward kernel.
func testFlashAttention(t *testing.T, open func() backend.Backend) {
	for _, sh := range attentionShapes {
		B, T, C, NH := sh.B, sh.T, sh.C, sh.NH
		t.Run(fmt.Sprintf("b=%d/t=%d/c=%d/nh=%d", B, T, C, NH), func(t *testing.T) {
			p := newPair(t, open)
			fa, ok := p.b[dut].(backend.FlashAttention)
			if !ok {
				t.Fatalf("%s no longer implements backend.FlashAttention", p.b[dut].Name())
			}
			qkv := p.in("qkv", p.normal(B*T*3*C, 1), B, T, 3*C)
			dout := p.in("dout", p.normal(B*T*C, 1), B, T, C)
			out := p.out("out", B*T*C, B, T, C)
			att, lse := p.out("att", B*NH*T*T), p.out("lse", B*NH*T)
			dqkv := p.grad("dqkv", B*T*3*C, B, T, 3*C)
			p.ignore(att, lse)
			p.run(func(b backend.Backend, s int) {
				if s == ref {
					b.AttentionForward(out.at(s), att.at(s), qkv.at(s), B, T, C, NH)
					b.AttentionBackward(dqkv.at(s), dout.at(s), qkv.at(s), att.at(s), B, T, C, NH)
					return
				}
				fa.FlashAttentionForward(out.at(s), lse.at(s), qkv.at(s), B, T, C, NH)
				fa.FlashAttentionBackward(dqkv.at(s), dout.at(s), out.at(s), lse.at(s), qkv.at(s), B, T, C, NH)
			})
			p.check(out, tolAttention)
			p.check(dqkv, tolAttentionBackward)
		})
	}
}
