package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/modeld-dev/modeld/backend"
)

// The fast attention, softmax and cross-entropy against the reference row kernels (ref.go), on
// every vector kernel set this CPU runs: backendtest covers only the widest one, which the
// backend picks.

// forEachVecSet runs f with vecKern set to each kernel set in turn.
func forEachVecSet(t *testing.T, f func(t *testing.T)) {
	saved := vecKern
	t.Cleanup(func() { vecKern = saved })
	for _, ks := range vecKernelSets() {
		t.Run("kernels="+ks.name, func(t *testing.T) {
			vecKern = ks
			f(t)
		})
	}
}

func normalSlice(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * scale)
	}
	return x
}

// checkTol fails unless |got-want| <= atol + rtol*|want| everywhere.
func checkTol(t *testing.T, what string, got, want []float32, atol, rtol float64) {
	t.Helper()
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if math.Abs(g-w) > atol+rtol*math.Abs(w) || math.IsNaN(g) != math.IsNaN(w) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, g, w)
		}
	}
}

// attentionTestShapes covers edge blocks of every set's mr and nr, head sizes that are not a multiple
// of nr, and a prefill-sized head.
var attentionTestShapes = []struct{ B, T, C, NH int }{
	{1, 1, 3, 1}, {2, 7, 22, 2}, {3, 13, 33, 3}, {1, 65, 128, 2}, {2, 70, 96, 1}, {1, 200, 768, 12},
}

func TestAttentionFast(t *testing.T) {
	forEachVecSet(t, func(t *testing.T) {
		for _, sh := range attentionTestShapes {
			B, T, C, NH := sh.B, sh.T, sh.C, sh.NH
			t.Run(fmt.Sprintf("b=%d/t=%d/c=%d/nh=%d", B, T, C, NH), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(T), uint64(C)))
				qkv := normalSlice(rng, B*T*3*C, 1)
				want, wantAtt := make([]float32, B*T*C), make([]float32, B*NH*T*T)
				got, gotAtt := make([]float32, B*T*C), normalSlice(rng, B*NH*T*T, 1)
				attentionForward(want, wantAtt, qkv, T, C, NH, 0, B*NH)
				attentionForwardFast(got, gotAtt, qkv, B, T, C, NH)
				checkTol(t, "out", got, want, 1e-5, 1e-4)
				checkTol(t, "att", gotAtt, wantAtt, 1e-5, 1e-4)

				dout := normalSlice(rng, B*T*C, 1)
				wantD := normalSlice(rng, B*T*3*C, 1)
				gotD := append([]float32(nil), wantD...)
				attentionBackward(wantD, dout, qkv, wantAtt, T, C, NH, 0, B*NH)
				attentionBackwardFast(gotD, dout, qkv, wantAtt, B, T, C, NH)
				checkTol(t, "dqkv", gotD, wantD, 1e-4, 1e-4)

				// The same rows as one prefill of T-3 tokens and a chunk of 3 through a
				// paged cache (block size 4, blocks in reverse order), per sequence.
				if T < 4 {
					return
				}
				const bs = 4
				nb := (T + bs - 1) / bs
				kc, vc := make([]float32, nb*bs*C), make([]float32, nb*bs*C)
				blocks := make([]int32, nb)
				for i := range blocks {
					blocks[i] = int32(nb - 1 - i)
				}
				cached := make([]float32, B*T*C)
				for b := range B {
					for _, st := range [][2]int{{0, T - 3}, {T - 3, 3}} {
						s := backend.CachedSeq{Row: 0, Len: st[1], Pos: st[0], Blocks: blocks}
						qs := qkv[(b*T+st[0])*3*C : (b*T+st[0]+st[1])*3*C]
						cacheWrite(kc, vc, qs, s, bs, C)
						cachedAttentionTasks(cached[(b*T+st[0])*C:(b*T+st[0]+st[1])*C], qs, kc, vc, []backend.CachedSeq{s}, bs, C, NH)
					}
				}
				checkTol(t, "cached out", cached, want, 1e-5, 1e-4)
			})
		}
	})
}
