package backendtest

import (
	"fmt"
	"math"
	"testing"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/cpu"
)

// TestReferenceAgainstFloat64 measures the float32 error of the reference against float64
// computations of the same formulas, at the largest reductions of the suite's tables, and
// requires it to use at most a quarter of each tolerance: a backend whose error is of the same
// size then passes with a margin of two or more. This is the measurement behind tolerances.go,
// and it also checks the reference's forward formulas against independent code.
func TestReferenceAgainstFloat64(t *testing.T) {
	const budget = 0.25
	rng := newRand(t.Name())
	b := cpu.NewReference()
	up := func(x []float32) backend.Buffer {
		buf, _ := b.Alloc(backend.F32, len(x))
		b.Upload(buf, x)
		return buf
	}
	zeros := func(n int) backend.Buffer { buf, _ := b.Alloc(backend.F32, n); return buf }
	down := func(buf backend.Buffer) []float32 {
		x := make([]float32, buf.Len())
		b.Download(x, buf)
		if err := b.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		return x
	}
	expect := func(what string, got []float32, want []float64, tl tol) {
		t.Helper()
		var worst float64
		for i := range got {
			worst = max(worst, math.Abs(float64(got[i])-want[i])/(tl.atol+tl.rtol*math.Abs(want[i])))
		}
		t.Logf("%s: the reference's error is %.3f of the tolerance (%s)", what, worst, tl)
		if !(worst <= budget) {
			t.Errorf("%s: the reference's error is %.3f of the tolerance (%s), want <= %g", what, worst, tl, budget)
		}
	}

	for _, sh := range []struct{ N, C, OC int }{{4, 3072, 768}, {2, 768, 50257}} {
		N, C, OC := sh.N, sh.C, sh.OC
		big := OC*C > bigCase // dweight is then left out: 154 MB, and sums of only N terms
		if big && (testing.Short() || raceEnabled) {
			t.Logf("matmul n=%d c=%d oc=%d: skipped under -short and -race", N, C, OC)
			continue
		}
		x, w, bs := matmulInputs(rng, N, C, OC)
		d := normal(rng, N*OC, math.Sqrt(float64(C)/float64(OC)))
		out, dinp, db := zeros(N*OC), zeros(N*C), zeros(OC)
		var dw backend.Buffer
		var dw64 []float64
		if !big {
			dw, dw64 = zeros(OC*C), make([]float64, OC*C)
		}
		bx, bw, bd := up(x), up(w), up(d)
		b.MatmulForward(out, bx, bw, up(bs), N, C, OC)
		b.MatmulBackward(dinp, dw, db, bd, bx, bw, N, C, OC)
		o64, di64, db64 := make([]float64, N*OC), make([]float64, N*C), make([]float64, OC)
		for n := range N {
			for o := range OC {
				v, g := float64(bs[o]), float64(d[n*OC+o])
				db64[o] += g
				for i := range C {
					v += float64(x[n*C+i]) * float64(w[o*C+i])
					di64[n*C+i] += g * float64(w[o*C+i])
					if dw64 != nil {
						dw64[o*C+i] += g * float64(x[n*C+i])
					}
				}
				o64[n*OC+o] = v
			}
		}
		name := fmt.Sprintf("matmul n=%d c=%d oc=%d", N, C, OC)
		expect(name+" out", down(out), o64, tolMatmul)
		expect(name+" dinp", down(dinp), di64, tolMatmul)
		if dw != nil {
			expect(name+" dweight", down(dw), dw64, tolMatmul)
		}
		expect(name+" dbias", down(db), db64, tolMatmul)
	}

	for _, sh := range []struct{ N, C int }{{4, 768}, {2, 3072}} {
		N, C := sh.N, sh.C
		x, w, bs := layerNormInputs(rng, N, C, true)
		d := normal(rng, N*C, 1)
		m32, r32 := layerNormStats(x, N, C)
		out, mean, rstd, dinp, dw, db := zeros(N*C), zeros(N), zeros(N), zeros(N*C), zeros(C), zeros(C)
		bx, bw := up(x), up(w)
		b.LayerNormForward(out, mean, rstd, bx, bw, up(bs), N, C)
		b.LayerNormBackward(dinp, dw, db, up(d), bx, bw, up(m32), up(r32), N, C)
		o64, m64, r64 := make([]float64, N*C), make([]float64, N), make([]float64, N)
		di64, dw64, db64 := make([]float64, N*C), make([]float64, C), make([]float64, C)
		for n := range N {
			row, dout := x[n*C:(n+1)*C], d[n*C:(n+1)*C]
			var m, v float64
			for _, xi := range row {
				m += float64(xi)
			}
			m /= float64(C)
			for _, xi := range row {
				v += (float64(xi) - m) * (float64(xi) - m)
			}
			s := 1 / math.Sqrt(v/float64(C)+1e-5)
			m64[n], r64[n] = m, s
			for i, xi := range row {
				o64[n*C+i] = (float64(xi)-m)*s*float64(w[i]) + float64(bs[i])
			}
			// The backward from the given (float32) mean and rstd.
			m, s = float64(m32[n]), float64(r32[n])
			var dm, dnm float64
			for i, xi := range row {
				dn := float64(w[i]) * float64(dout[i])
				dm += dn
				dnm += dn * (float64(xi) - m) * s
			}
			dm /= float64(C)
			dnm /= float64(C)
			for i, xi := range row {
				norm := (float64(xi) - m) * s
				db64[i] += float64(dout[i])
				dw64[i] += norm * float64(dout[i])
				di64[n*C+i] = (float64(w[i])*float64(dout[i]) - dm - norm*dnm) * s
			}
		}
		name := fmt.Sprintf("layernorm n=%d c=%d", N, C)
		expect(name+" out", down(out), o64, tolLayerNorm)
		expect(name+" mean", down(mean), m64, tolLayerNorm)
		expect(name+" rstd", down(rstd), r64, tolLayerNorm)
		expect(name+" dinp", down(dinp), di64, tolLayerNormBackward)
		expect(name+" dweight", down(dw), dw64, tolLayerNormBackward)
		expect(name+" dbias", down(db), db64, tolLayerNormBackward)
	}

	{
		const B, T, C, NH = 1, 64, 768, 12
		const hs = C / NH
		q := normal(rng, B*T*3*C, 1)
		out, att := zeros(B*T*C), zeros(B*NH*T*T)
		b.AttentionForward(out, att, up(q), B, T, C, NH)
		a64 := attentionProbs64(q, B, T, C, NH)
		o64 := make([]float64, B*T*C)
		for h := range NH {
			for t1 := range T {
				for t2 := 0; t2 <= t1; t2++ {
					for i := range hs {
						o64[t1*C+h*hs+i] += a64[(h*T+t1)*T+t2] * float64(q[t2*3*C+2*C+h*hs+i])
					}
				}
			}
		}
		expect("attention t=64 c=768 nh=12 out", down(out), o64, tolAttention)
		expect("attention t=64 c=768 nh=12 att", down(att), a64, tolAttention)
	}

	{
		const N, V = 3, 50257
		x := normal(rng, N*V, 3)
		tg := randIDs(rng, N, V)
		losses, probs := zeros(N), zeros(N*V)
		targets, _ := b.Alloc(backend.I32, N)
		b.UploadInt32(targets, tg)
		b.CrossEntropyForward(losses, probs, up(x), targets, N, V)
		l64, p64 := make([]float64, N), make([]float64, N*V)
		for n := range N {
			row := x[n*V : (n+1)*V]
			maxv := math.Inf(-1)
			for _, v := range row {
				maxv = max(maxv, float64(v))
			}
			var sum float64
			for _, v := range row {
				sum += math.Exp(float64(v) - maxv)
			}
			for i, v := range row {
				p64[n*V+i] = math.Exp(float64(v)-maxv) / sum
			}
			l64[n] = math.Log(sum) + maxv - float64(row[tg[n]])
		}
		expect("crossentropy n=3 v=50257 losses", down(losses), l64, tolCrossEntropyLoss)
		expect("crossentropy n=3 v=50257 probs", down(probs), p64, tolCrossEntropyProbs)
	}

	{
		const n = 50257
		x, d := normal(rng, n, 3), normal(rng, n, 1)
		out, dinp := zeros(n), zeros(n)
		bx := up(x)
		b.GELUForward(out, bx, n)
		b.GELUBackward(dinp, bx, up(d), n)
		o64, di64 := make([]float64, n), make([]float64, n)
		k := math.Sqrt(2 / math.Pi)
		for i, x32 := range x {
			v := float64(x32)
			th := math.Tanh(k * (v + 0.044715*v*v*v))
			o64[i] = 0.5 * v * (1 + th)
			di64[i] = (0.5*(1+th) + 0.5*v*(1-th*th)*k*(1+3*0.044715*v*v)) * float64(d[i])
		}
		expect("gelu n=50257 out", down(out), o64, tolGELU)
		expect("gelu n=50257 dinp", down(dinp), di64, tolGELUBackward)
	}
}

// attentionProbs64 is attentionProbs without the rounding to float32.
func attentionProbs64(qkv []float32, B, T, C, NH int) []float64 {
	hs := C / NH
	scale := 1 / math.Sqrt(float64(hs))
	att := make([]float64, B*NH*T*T)
	for b := range B {
		for h := range NH {
			for t := range T {
				row := att[((b*NH+h)*T+t)*T:][:T]
				maxv := math.Inf(-1)
				for t2 := 0; t2 <= t; t2++ {
					var dot float64
					for i := range hs {
						dot += float64(qkv[(b*T+t)*3*C+h*hs+i]) * float64(qkv[(b*T+t2)*3*C+C+h*hs+i])
					}
					row[t2] = dot * scale
					maxv = max(maxv, row[t2])
				}
				var sum float64
				for t2 := 0; t2 <= t; t2++ {
					row[t2] = math.Exp(row[t2] - maxv)
					sum += row[t2]
				}
				for t2 := 0; t2 <= t; t2++ {
					row[t2] /= sum
				}
			}
		}
	}
	return att
}
