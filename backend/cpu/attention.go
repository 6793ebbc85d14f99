package cpu

// Causal self-attention as blocked matrix products, for the fast backend: AttentionForward,
// AttentionBackward, and the prefill rows of CachedAttention. The reference loops (ref.go) take
// one query at a time and run at 2-6 GFLOP/s.
//
// Each (sequence, head) is a handful of small GEMMs over the head's keys and values, packed once
// per head, computed by a register-blocked micro-kernel (attnKernels: 6×64 in AVX-512, 6×16 in
// AVX2, 2×4 in Go) on blocks of mr queries:
//
//	S  = Q·K^T                      (mr × keys) scores; K packed transposed in panels of nr keys
//	P  = softmax(S·scale)           per row, causally masked, in two passes (max; exp and sum)
//	O  = P·V                        (mr × HS)
//
// and for the backward, with att the saved P (llm.c's attention_backward in matrix form, as in
// FlashAttention-2's backward without the recomputation of P: Dao, "FlashAttention-2", 2023):
//
//	dP = dO·V^T,  dS = P∘(dP - rowsum(P∘dP))·scale,  dQ = dS·K,  dK = dS^T·Q,  dV = P^T·dO
//
// The micro-kernel broadcasts its A operand from memory with any row and depth strides, so that
// queries, score rows and their transposes (dS^T, P^T) are read in place; only the B operands
// (K^T, V, K, Q, dO, V^T) are packed. Score rows are held whole (two-pass softmax, not the online
// softmax of FlashAttention), since AttentionForward must store them as att anyway and a row of
// 1024 keys is 4 KiB.
//
// Numerics: every dot product is a float32 sum with fused multiply-adds in key or channel order,
// the exponential is exp32's polynomial, and sums of exponentials run in SIMD lanes added in a
// fixed order; results depend on the shapes only, never on GOMAXPROCS. The differences from the
// reference are a few float32 roundings, well inside backendtest's tolAttention.

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/modeld-dev/modeld/backend"
)

// attnRows locates the rows of one head's queries, keys, values or gradients: position p's HS
// channels start at data[i*stride+col], where i is p, or with a paged cache (blocks != nil) the
// slot of p in its block, int(blocks[p/bs])*bs + p%bs.
type attnRows struct {
	data   []float32
	stride int
	col    int
	blocks []int32
	bs     int
}

// row returns the hs channels of position p.
func (r *attnRows) row(p, hs int) []float32 {
	if r.blocks != nil {
		p = int(r.blocks[p/r.bs])*r.bs + p%r.bs
	}
	return r.data[p*r.stride+r.col:][:hs]
}

// packRows copies positions [0, n) of src into dst as rows of ld floats (HS channels, then zeros
// up to ld), and zeroes the rows from n up to len(dst)/ld.
func packRows(dst []float32, src *attnRows, n, hs, ld int) {
	for p := range len(dst) / ld {
		d := dst[p*ld : (p+1)*ld]
		if p < n {
			copy(d, src.row(p, hs))
			clear(d[hs:])
		} else {
			clear(d)
		}
	}
}

// packTransposed packs positions [0, n) of src transposed, in panels of nr positions: the
// channel c of position p goes to dst[(p/nr)*hs*nr + c*nr + p%nr], and positions from n up to
// len(dst)/hs are zero. A panel is the B operand (HS × nr, row stride nr) of a product with it.
func packTransposed(dst []float32, src *attnRows, n, hs, nr int) {
	np := len(dst) / hs
	for j0 := 0; j0 < np; j0 += nr {
		panel := dst[j0*hs : (j0+nr)*hs]
		j := 0
		for ; j+4 <= nr && j0+j+4 <= n; j += 4 {
			r0, r1 := src.row(j0+j, hs), src.row(j0+j+1, hs)
			r2, r3 := src.row(j0+j+2, hs), src.row(j0+j+3, hs)
			for c := range hs {
				d := panel[c*nr+j : c*nr+j+4 : c*nr+j+4]
				d[0], d[1], d[2], d[3] = r0[c], r1[c], r2[c], r3[c]
			}
		}
		for ; j < nr; j++ {
			if j0+j < n {
				r := src.row(j0+j, hs)
				for c, v := range r {
					panel[c*nr+j] = v
				}
				continue
			}
			for c := range hs {
				panel[c*nr+j] = 0
			}
		}
	}
}

// attnJob is one call of the fast attention: its arguments and its tasks, run on up to
// GOMAXPROCS goroutines, each with its own scratch gemmBuf (gemmRun's scheduling: tasks are taken
// in order from a shared counter, and a task's result does not depend on who runs it). Jobs are
// pooled with their worker function bound once, so that a call allocates nothing once the pools
// are warm: no closure, counter or WaitGroup per call.
type attnJob struct {
	out, att, qkv   []float32 // forward: out(B,T,C), att(B,NH,T,T), qkv(B,T,3C)
	dqkv, dout      []float32 // backward: dqkv(B,T,3C), dout(B,T,C)
	kc, vc          []float32 // cached: the paged cache of keys and values
	seqs            []backend.CachedSeq
	B, T, C, NH, bs int

	task  func(j *attnJob, buf *gemmBuf, t int) // a method expression: forward, backward or cached
	tasks int
	next  atomic.Int64 // the next task to take
	wg    sync.WaitGroup
	spawn func() // j.worker then wg.Done, bound when the job is made
}

var attnJobs = sync.Pool{New: func() any {
	j := new(attnJob)
	j.spawn = func() {
		j.worker()
		j.wg.Done()
	}
	return j
}}

// runAttnJob runs task over [0, tasks) with the arguments that set put into a pooled job, and
// returns the job to the pool without them.
func runAttnJob(tasks int, task func(j *attnJob, buf *gemmBuf, t int), set func(j *attnJob)) {
	j := attnJobs.Get().(*attnJob)
	set(j)
	j.task, j.tasks = task, tasks
	j.next.Store(0)
	workers := min(runtime.GOMAXPROCS(0), tasks)
	j.wg.Add(max(workers-1, 0))
	for range workers - 1 {
		go j.spawn()
	}
	j.worker()
	j.wg.Wait()
	*j = attnJob{spawn: j.spawn}
	attnJobs.Put(j)
}

// worker runs the job's tasks until none is left.
func (j *attnJob) worker() {
	buf := gemmBufs.Get().(*gemmBuf)
	for {
		t := int(j.next.Add(1) - 1)
		if t >= j.tasks {
			break
		}
		j.task(j, buf, t)
	}
	gemmBufs.Put(buf)
}

// attnForwardHead computes causal attention for one head: M queries q at positions [pos0,
// pos0+M), over the keys k and values v of positions [0, pos0+M), into out (rows of HS). If att
// is not nil, the probabilities of query i are also stored in att[i*ldAtt:][:ldAtt], zero past
// the query's own position.
func attnForwardHead(ks *vecKernels, buf *gemmBuf, q, k, v, out *attnRows, att []float32, ldAtt, M, pos0, hs int) {
	mr, nr := ks.mr, ks.nr
	P := pos0 + M         // keys
	pp := roundUp(P, nr)  // keys, padded to panels
	hp := roundUp(hs, nr) // channels, padded to panels
	scale := float32(1 / math.Sqrt(float64(hs)))
	f := buf.grow(hs*pp + P*hp + mr*pp + mr*hp + mr*hs)
	kt, f := f[:hs*pp], f[hs*pp:]
	vp, f := f[:P*hp], f[P*hp:]
	s, f := f[:mr*pp], f[mr*pp:]
	tile, qe := f[:mr*hp], f[mr*hp:]
	packTransposed(kt, k, P, hs, nr)
	packRows(vp, v, P, hs, hp)
	for i0 := 0; i0 < M; i0 += mr {
		rows := min(mr, M-i0)
		kEnd := pos0 + i0 + rows // keys that the block's last query sees
		ncols := roundUp(kEnd, nr)
		// The queries, read in place (row stride q.stride) unless the block is short.
		a, lda := q.data[i0*q.stride+q.col:], q.stride
		if rows < mr {
			packRows(qe, &attnRows{data: q.data[i0*q.stride:], stride: q.stride, col: q.col}, rows, hs, hs)
			a, lda = qe, hs
		}
		for r := range mr {
			clear(s[r*pp : r*pp+ncols])
		}
		for j0 := 0; j0 < ncols; j0 += nr {
			ks.attn(hs, a, lda, 1, kt[j0*hs:], nr, s[j0:], pp)
		}
		for r := range rows {
			n := pos0 + i0 + r + 1
			row := s[r*pp : r*pp+ncols]
			ks.softmax(row[:n], scale)
			clear(row[n:])
			if att != nil {
				ar := att[(i0+r)*ldAtt : (i0+r+1)*ldAtt]
				copy(ar, row[:n])
				clear(ar[n:])
			}
		}
		clear(tile)
		for c0 := 0; c0 < hp; c0 += nr {
			ks.attn(kEnd, s, pp, 1, vp[c0:], hp, tile[c0:], hp)
		}
		for r := range rows {
			copy(out.row(i0+r, hs), tile[r*hp:r*hp+hs])
		}
	}
}

// attnBackwardHead adds the gradients of one head's causal attention over T positions into dq,
// dk and dv, given its inputs q, k, v, the gradient of its output do, and the probabilities att
// (row i at att[i*T:], read at columns <= i only).
func attnBackwardHead(ks *vecKernels, buf *gemmBuf, q, k, v, do, dq, dk, dv *attnRows, att []float32, T, hs int) {
	mr, nr := ks.mr, ks.nr
	tm := roundUp(T, mr)  // rows, padded to blocks
	tp := roundUp(T, nr)  // keys, padded to panels
	ld := roundUp(tm, nr) // the row stride of dS, at least tm so that dS^T's blocks stay in a row
	hp := roundUp(hs, nr) // channels, padded to panels
	scale := float32(1 / math.Sqrt(float64(hs)))
	f := buf.grow(hs*tp + 3*tm*hp + tm*ld + mr*hp + mr*mr)
	vt, f := f[:hs*tp], f[hs*tp:]
	kp, f := f[:tm*hp], f[tm*hp:]
	qp, f := f[:tm*hp], f[tm*hp:]
	dop, f := f[:tm*hp], f[tm*hp:]
	ds, f := f[:tm*ld], f[tm*ld:]
	tile, tri := f[:mr*hp], f[mr*hp:]
	packTransposed(vt, v, T, hs, nr)
	packRows(kp, k, T, hs, hp)
	packRows(qp, q, T, hs, hp)
	packRows(dop, do, T, hs, hp)

	// addTile adds the first hs columns of the tile's first rows rows into rows [r0, r0+rows)
	// of dst.
	addTile := func(dst *attnRows, r0, rows int) {
		for r := range rows {
			d := dst.row(r0+r, hs)
			for c, x := range tile[r*hp : r*hp+hs] {
				d[c] += x
			}
		}
	}

	// Query blocks: dP, then dS in place, then dQ.
	for i0 := 0; i0 < T; i0 += mr {
		rows := min(mr, T-i0)
		kEnd := i0 + rows
		ncols := roundUp(kEnd, nr)
		blk := ds[i0*ld:]
		for r := range mr {
			clear(blk[r*ld : r*ld+ncols])
		}
		for j0 := 0; j0 < ncols; j0 += nr {
			ks.attn(hs, dop[i0*hp:], hp, 1, vt[j0*hs:], nr, blk[j0:], ld)
		}
		for r := range rows {
			n := i0 + r + 1
			row := blk[r*ld : r*ld+ncols]
			ks.softmaxBackward(row[:n], att[(i0+r)*T:][:n], scale)
			clear(row[n:])
		}
		clear(tile)
		for c0 := 0; c0 < hp; c0 += nr {
			ks.attn(kEnd, blk, ld, 1, kp[c0:], hp, tile[c0:], hp)
		}
		addTile(dq, i0, rows)
	}

	// Key blocks: dK = dS^T·Q and dV = P^T·dO over the queries at or after the block.
	for j0 := 0; j0 < T; j0 += mr {
		rows := min(mr, T-j0)
		depth := T - j0
		clear(tile)
		for c0 := 0; c0 < hp; c0 += nr {
			ks.attn(depth, ds[j0*ld+j0:], 1, ld, qp[j0*hp+c0:], hp, tile[c0:], hp)
		}
		addTile(dk, j0, rows)
		// P^T's diagonal block from att's lower triangle (tri[p*mr+r] = att[j0+p][j0+r] for
		// r <= p), the rest of the depth from att in place.
		for p := range mr {
			for r := range mr {
				x := float32(0)
				if r <= p && p < rows {
					x = att[(j0+p)*T+j0+r]
				}
				tri[p*mr+r] = x
			}
		}
		clear(tile)
		for c0 := 0; c0 < hp; c0 += nr {
			ks.attn(rows, tri, 1, mr, dop[j0*hp+c0:], hp, tile[c0:], hp)
			if depth > mr {
				ks.attn(depth-mr, att[(j0+mr)*T+j0:], 1, T, dop[(j0+mr)*hp+c0:], hp, tile[c0:], hp)
			}
		}
		addTile(dv, j0, rows)
	}
}

// attentionForwardFast is AttentionForward's fast path: one task per (batch, head).
func attentionForwardFast(out, att, qkv []float32, B, T, C, NH int) {
	runAttnJob(B*NH, (*attnJob).forward, func(j *attnJob) {
		j.out, j.att, j.qkv, j.B, j.T, j.C, j.NH = out, att, qkv, B, T, C, NH
	})
}

// forward is attentionForwardFast's task bh, the (batch, head) pair b*NH + h.
func (j *attnJob) forward(buf *gemmBuf, bh int) {
	T, C, NH := j.T, j.C, j.NH
	hs := C / NH
	b, h := bh/NH, bh%NH
	x := j.qkv[b*T*3*C : (b+1)*T*3*C]
	q := attnRows{data: x, stride: 3 * C, col: h * hs}
	k := attnRows{data: x, stride: 3 * C, col: C + h*hs}
	v := attnRows{data: x, stride: 3 * C, col: 2*C + h*hs}
	o := attnRows{data: j.out[b*T*C : (b+1)*T*C], stride: C, col: h * hs}
	attnForwardHead(&vecKern, buf, &q, &k, &v, &o, j.att[bh*T*T:(bh+1)*T*T], T, T, 0, hs)
}

// attentionBackwardFast is AttentionBackward's fast path: one task per (batch, head), each
// adding into its own columns of dqkv.
func attentionBackwardFast(dqkv, dout, qkv, att []float32, B, T, C, NH int) {
	runAttnJob(B*NH, (*attnJob).backward, func(j *attnJob) {
		j.dqkv, j.dout, j.qkv, j.att, j.B, j.T, j.C, j.NH = dqkv, dout, qkv, att, B, T, C, NH
	})
}

// backward is attentionBackwardFast's task bh.
func (j *attnJob) backward(buf *gemmBuf, bh int) {
	T, C, NH := j.T, j.C, j.NH
	hs := C / NH
	b, h := bh/NH, bh%NH
	x := j.qkv[b*T*3*C : (b+1)*T*3*C]
	dx := j.dqkv[b*T*3*C : (b+1)*T*3*C]
	q := attnRows{data: x, stride: 3 * C, col: h * hs}
	k := attnRows{data: x, stride: 3 * C, col: C + h*hs}
	v := attnRows{data: x, stride: 3 * C, col: 2*C + h*hs}
	dq := attnRows{data: dx, stride: 3 * C, col: h * hs}
	dk := attnRows{data: dx, stride: 3 * C, col: C + h*hs}
	dv := attnRows{data: dx, stride: 3 * C, col: 2*C + h*hs}
	do := attnRows{data: j.dout[b*T*C : (b+1)*T*C], stride: C, col: h * hs}
	attnBackwardHead(&vecKern, buf, &q, &k, &v, &do, &dq, &dk, &dv, j.att[bh*T*T:(bh+1)*T*T], T, hs)
}

// cachedPrefillMin is the fewest new tokens of a sequence for which CachedAttention's fast path
// runs the blocked per-head attention (one task per head); shorter runs, decode steps above all,
// take the cache-ordered per-token path (cachedAttentionFast, one task per token).
const cachedPrefillMin = 4

// cachedAttentionTasks is CachedAttention's fast path over all sequences, after the cache writes.
// The tasks are numbered sequence by sequence: NH for a sequence of at least cachedPrefillMin new
// tokens, one per token otherwise.
func cachedAttentionTasks(o, q, kc, vc []float32, seqs []backend.CachedSeq, bs, C, NH int) {
	tasks := 0
	for _, s := range seqs {
		tasks += cachedTasks(s, NH)
	}
	runAttnJob(tasks, (*attnJob).cached, func(j *attnJob) {
		j.out, j.qkv, j.kc, j.vc, j.seqs, j.bs, j.C, j.NH = o, q, kc, vc, seqs, bs, C, NH
	})
}

// cachedTasks is the number of tasks of sequence s in cachedAttentionTasks.
func cachedTasks(s backend.CachedSeq, NH int) int {
	if s.Len >= cachedPrefillMin {
		return NH
	}
	return s.Len
}

// cached is cachedAttentionTasks' task t.
func (j *attnJob) cached(buf *gemmBuf, t int) {
	C, NH, bs := j.C, j.NH, j.bs
	hs := C / NH
	i := 0
	for t >= cachedTasks(j.seqs[i], NH) {
		t -= cachedTasks(j.seqs[i], NH)
		i++
	}
	s := j.seqs[i]
	if s.Len < cachedPrefillMin {
		scores := buf.grow(NH * (s.Pos + t + 1))
		cachedAttentionFast(j.out, j.qkv, j.kc, j.vc, s, t, bs, C, NH, scores)
		return
	}
	h := t
	qr := attnRows{data: j.qkv[s.Row*3*C : (s.Row+s.Len)*3*C], stride: 3 * C, col: h * hs}
	k := attnRows{data: j.kc, stride: C, col: h * hs, blocks: s.Blocks, bs: bs}
	v := attnRows{data: j.vc, stride: C, col: h * hs, blocks: s.Blocks, bs: bs}
	out := attnRows{data: j.out[s.Row*C : (s.Row+s.Len)*C], stride: C, col: h * hs}
	attnForwardHead(&vecKern, buf, &qr, &k, &v, &out, nil, 0, s.Len, s.Pos, hs)
}
