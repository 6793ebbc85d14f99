package backendtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/modeld-dev/modeld/backend"
)

// The comparisons with the reference, one function per kernel, each a table of shapes.

var (
	nan    = float32(math.NaN())
	posInf = float32(math.Inf(1))
	negInf = float32(math.Inf(-1))
)

// specials are float32 values that data movement must preserve bit for bit.
var specials = []float32{
	nan,
	math.Float32frombits(0x7fc12345), // a quiet NaN with a payload
	math.Float32frombits(0xffc00001), // a negative NaN
	math.Float32frombits(0x7f800001), // a signalling NaN
	posInf,
	negInf,
	float32(math.Copysign(0, -1)),
	math.Float32frombits(1),          // the smallest subnormal
	math.Float32frombits(0x807fffff), // the largest negative subnormal
	math.MaxFloat32,
	-math.MaxFloat32,
}

// withSpecials returns n values from N(0,1) with as many of the specials spread among them as fit.
func withSpecials(rng *rand.Rand, n int) []float32 {
	x := normal(rng, n, 1)
	step := max(1, n/len(specials))
	for k, v := range specials {
		if k*step >= n {
			break
		}
		x[k*step] = v
	}
	return x
}

func testUploadDownload(t *testing.T, open func() backend.Backend) {
	for _, n := range []int{1, 17, 50257} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			p := newPair(t, open)
			x := p.in("x", p.normal(n, 1))
			// Upload into the view of an allocation that already holds sentinels, then read
			// back the view alone and the whole allocation.
			body := withSpecials(p.rng, n)
			for s, b := range p.b {
				b.Upload(x.view[s], body)
			}
			p.sync()
			var view [2][]float32
			for s, b := range p.b {
				view[s] = make([]float32, n)
				b.Download(view[s], x.view[s])
			}
			p.sync()
			for s := range p.b {
				report(t, p.who(s)+": Download of the view x", x.shape, body, view[s], bitExact)
			}
			p.expect(x, body, bitExact)
		})
	}
}

// expectI32 checks that the int32 tensor x holds body on both sides, and that its sentinels are
// intact.
func (p *pair) expectI32(x *tensor, body []int32) {
	p.t.Helper()
	x.done = true
	want := make([]int32, lead+x.n+tail)
	fill(want, sentinelI32)
	copy(want[lead:], body)
	for s, got := range p.readI32(x) {
		for i := range want {
			if got[i] != want[i] {
				p.t.Errorf("%s: int32 %s: element %d of the allocation (view offset %d, view length %d) is %d, want %d",
					p.who(s), x.name, i, lead, x.n, got[i], want[i])
				break
			}
		}
	}
}

func testUploadInt32(t *testing.T, open func() backend.Backend) {
	for _, n := range []int{1, 17, 4099} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			p := newPair(t, open)
			x := p.ids("ids", make([]int32, n))
			body := randIDs(p.rng, n, 1<<16)
			for s, b := range p.b {
				b.UploadInt32(x.view[s], body)
			}
			p.sync()
			p.expectI32(x, body)
		})
	}
}

func testZero(t *testing.T, open func() backend.Backend) {
	for _, n := range []int{1, 33, 3072} {
		t.Run(fmt.Sprintf("dtype=f32/n=%d", n), func(t *testing.T) {
			p := newPair(t, open)
			x := p.in("x", withSpecials(p.rng, n))
			p.run(func(b backend.Backend, s int) { b.Zero(x.at(s)) })
			p.expect(x, make([]float32, n), bitExact)
		})
	}
	t.Run("dtype=i32/n=17", func(t *testing.T) {
		p := newPair(t, open)
		x := p.ids("ids", randIDs(p.rng, 17, 1<<16))
		p.run(func(b backend.Backend, s int) { b.Zero(x.at(s)) })
		p.expectI32(x, make([]int32, 17))
	})
}

func testCopy(t *testing.T, open func() backend.Backend) {
	for _, n := range []int{1, 17, 2304} {
		t.Run(fmt.Sprintf("dtype=f32/n=%d", n), func(t *testing.T) {
			p := newPair(t, open)
			body := withSpecials(p.rng, n)
			src, dst := p.in("src", body), p.out("dst", n)
			p.run(func(b backend.Backend, s int) { b.Copy(dst.at(s), src.at(s)) })
			p.expect(dst, body, bitExact)
		})
	}
	t.Run("dtype=i32/n=33", func(t *testing.T) {
		p := newPair(t, open)
		body := randIDs(p.rng, 33, 1<<16)
		src, dst := p.ids("src", body), p.ids("dst", make([]int32, 33))
		p.run(func(b backend.Backend, s int) { b.Copy(dst.at(s), src.at(s)) })
		p.expectI32(dst, body)
		p.expectI32(src, body)
	})
}

func testGather(t *testing.T, open func() backend.Backend) {
	for _, sh := range []struct{ rows, C, k int }{{1, 1, 1}, {33, 17, 7}, {33, 768, 5}, {4, 3, 9}} {
		t.Run(fmt.Sprintf("rows=%d/c=%d/k=%d", sh.rows, sh.C, sh.k), func(t *testing.T) {
			p := newPair(t, open)
			body := withSpecials(p.rng, sh.rows*sh.C)
			inp := p.in("inp", body, sh.rows, sh.C)
			out := p.out("out", sh.k*sh.C, sh.k, sh.C)
			idx := randIDs(p.rng, sh.k, sh.rows)
			p.run(func(b backend.Backend, s int) { b.Gather(out.at(s), inp.at(s), idx, sh.C) })
			want := make([]float32, sh.k*sh.C)
			for i, r := range idx {
				copy(want[i*sh.C:(i+1)*sh.C], body[int(r)*sh.C:])
			}
			p.expect(out, want, bitExact)
		})
	}
}

var encoderShapes = []struct{ N, C, V, maxT int }{
	{1, 1, 1, 1},
	{5, 17, 33, 7},
	{17, 768, 33, 1024}, // GPT-2's n_embd and n_positions
	{7, 3, 50257, 17},   // GPT-2's vocabulary: the largest token ids
}

func testEncoderForward(t *testing.T, open func() backend.Backend) {
	for _, sh := range encoderShapes {
		N, C, V, maxT := sh.N, sh.C, sh.V, sh.maxT
		t.Run(fmt.Sprintf("n=%d/c=%d/v=%d/maxt=%d", N, C, V, maxT), func(t *testing.T) {
			p := newPair(t, open)
			wte := p.in("wte", p.normal(V*C, 1), V, C)
			wpe := p.in("wpe", p.normal(maxT*C, 1), maxT, C)
			tok, pos := p.ids("tokens", randIDs(p.rng, N, V)), p.ids("positions", randIDs(p.rng, N, maxT))
			out := p.out("out", N*C, N, C)
			p.run(func(b backend.Backend, s int) {
				b.EncoderForward(out.at(s), tok.at(s), pos.at(s), wte.at(s), wpe.at(s), N, C)
			})
			p.check(out, exact)
		})
	}
}

func testEncoderBackward(t *testing.T, open func() backend.Backend) {
	for _, sh := range encoderShapes {
		N, C, V, maxT := sh.N, sh.C, sh.V, sh.maxT
		t.Run(fmt.Sprintf("n=%d/c=%d/v=%d/maxt=%d", N, C, V, maxT), func(t *testing.T) {
			p := newPair(t, open)
			dwte, dwpe := p.grad("dwte", V*C, V, C), p.grad("dwpe", maxT*C, maxT, C)
			dout := p.in("dout", p.normal(N*C, 1), N, C)
			tok, pos := p.ids("tokens", randIDs(p.rng, N, V)), p.ids("positions", randIDs(p.rng, N, maxT))
			p.run(func(b backend.Backend, s int) {
				b.EncoderBackward(dwte.at(s), dwpe.at(s), dout.at(s), tok.at(s), pos.at(s), N, C)
			})
			p.check(dwte, tolEncoderBackward)
			p.check(dwpe, tolEncoderBackward)
		})
	}
}

var layerNormShapes = []struct{ N, C int }{{3, 1}, {3, 17}, {5, 33}, {4, 768}, {2, 3072}}

// layerNormInputs returns inp(N,C) with rows of varied mean and spread, weight(C) and bias(C).
// With narrow, the last row (of several) has mean 0 and standard deviation 0.03.
func layerNormInputs(rng *rand.Rand, N, C int, narrow bool) (inp, weight, bias []float32) {
	inp = make([]float32, N*C)
	for n := range N {
		mu, sigma := rng.NormFloat64(), 0.5+rng.Float64()*2
		if narrow && n == N-1 && N > 1 && C > 1 {
			// A row whose variance (~1e-3) is not much larger than eps (1e-5): a wrong eps, or
			// eps outside the square root, shows.
			mu, sigma = 0, 0.03
		}
		for i := range C {
			inp[n*C+i] = float32(mu + sigma*rng.NormFloat64())
		}
	}
	weight = normal(rng, C, 0.2)
	for i := range weight {
		weight[i]++
	}
	return inp, weight, normal(rng, C, 0.2)
}

func testLayerNormForward(t *testing.T, open func() backend.Backend) {
	run := func(t *testing.T, N, C int, constRow bool) {
		p := newPair(t, open)
		x, w, bs := layerNormInputs(p.rng, N, C, true)
		if constRow {
			// A row of one value (padding): variance 0, rstd 1/sqrt(eps), out = bias.
			fill(x[C:2*C], 0.75)
		}
		inp, weight, bias := p.in("inp", x, N, C), p.in("weight", w), p.in("bias", bs)
		out, mean, rstd := p.out("out", N*C, N, C), p.out("mean", N), p.out("rstd", N)
		p.run(func(b backend.Backend, s int) {
			b.LayerNormForward(out.at(s), mean.at(s), rstd.at(s), inp.at(s), weight.at(s), bias.at(s), N, C)
		})
		p.check(out, tolLayerNorm)
		p.check(mean, tolLayerNorm)
		p.check(rstd, tolLayerNorm)
	}
	for _, sh := range layerNormShapes {
		t.Run(fmt.Sprintf("n=%d/c=%d", sh.N, sh.C), func(t *testing.T) { run(t, sh.N, sh.C, false) })
	}
	t.Run("special=constant_row/n=3/c=33", func(t *testing.T) { run(t, 3, 33, true) })
}

// layerNormStats returns the mean and 1/sqrt(var+1e-5) of each row of inp(N,C), in float64.
func layerNormStats(inp []float32, N, C int) (mean, rstd []float32) {
	mean, rstd = make([]float32, N), make([]float32, N)
	for n := range N {
		var m, v float64
		for _, x := range inp[n*C : (n+1)*C] {
			m += float64(x)
		}
		m /= float64(C)
		for _, x := range inp[n*C : (n+1)*C] {
			v += (float64(x) - m) * (float64(x) - m)
		}
		mean[n], rstd[n] = float32(m), float32(1/math.Sqrt(v/float64(C)+1e-5))
	}
	return mean, rstd
}

func testLayerNormBackward(t *testing.T, open func() backend.Backend) {
	for _, sh := range layerNormShapes {
		N, C := sh.N, sh.C
		t.Run(fmt.Sprintf("n=%d/c=%d", N, C), func(t *testing.T) {
			p := newPair(t, open)
			x, w, _ := layerNormInputs(p.rng, N, C, true)
			m, r := layerNormStats(x, N, C)
			inp, weight, mean, rstd := p.in("inp", x, N, C), p.in("weight", w), p.in("mean", m), p.in("rstd", r)
			dout := p.in("dout", p.normal(N*C, 1), N, C)
			dinp, dweight, dbias := p.grad("dinp", N*C, N, C), p.grad("dweight", C), p.grad("dbias", C)
			p.run(func(b backend.Backend, s int) {
				b.LayerNormBackward(dinp.at(s), dweight.at(s), dbias.at(s), dout.at(s), inp.at(s), weight.at(s), mean.at(s), rstd.at(s), N, C)
			})
			p.check(dinp, tolLayerNormBackward)
			p.check(dweight, tolLayerNormBackward)
			p.check(dbias, tolLayerNormBackward)
		})
	}
}

var matmulShapes = []struct {
	N, C, OC int
	noBias   bool // only without bias
}{
	{N: 1, C: 1, OC: 1},
	{N: 3, C: 17, OC: 33},
	{N: 17, C: 33, OC: 3},
	{N: 33, C: 17, OC: 17},
	{N: 4, C: 768, OC: 2304},                // c_attn, a decode step of 4 sequences
	{N: 4, C: 3072, OC: 768},                // mlp c_proj
	{N: 2, C: 768, OC: 50257, noBias: true}, // lm_head (tied to wte, no bias)
	{N: 64, C: 768, OC: 768},                // attn c_proj, a prefill
	{N: 259, C: 257, OC: 481},               // just past common GEMM tile sizes in every dimension
}

// matmulInputs returns inp(N,C) ~ N(0,1), weight(OC,C) ~ N(0,1/C) (so that out is O(1), as
// GPT-2's initialisation) and bias(OC) ~ N(0,0.01).
func matmulInputs(rng *rand.Rand, N, C, OC int) (inp, weight, bias []float32) {
	return normal(rng, N*C, 1), normal(rng, OC*C, 1/math.Sqrt(float64(C))), normal(rng, OC, 0.1)
}

func testMatmulForward(t *testing.T, open func() backend.Backend) {
	for _, sh := range matmulShapes {
		for _, withBias := range []bool{true, false} {
			if withBias && sh.noBias {
				continue
			}
			N, C, OC := sh.N, sh.C, sh.OC
			t.Run(fmt.Sprintf("n=%d/c=%d/oc=%d/bias=%t", N, C, OC, withBias), func(t *testing.T) {
				skipBig(t, OC*C)
				p := newPair(t, open)
				x, w, bs := matmulInputs(p.rng, N, C, OC)
				inp, weight := p.in("inp", x, N, C), p.in("weight", w, OC, C)
				var bias *tensor
				if withBias {
					bias = p.in("bias", bs)
				}
				out := p.out("out", N*OC, N, OC)
				p.run(func(b backend.Backend, s int) {
					b.MatmulForward(out.at(s), inp.at(s), weight.at(s), bias.at(s), N, C, OC)
				})
				p.check(out, tolMatmul)
			})
		}
	}
	// NaN in one input element poisons its row of out; ±Inf in a weight makes its column ±Inf
	// (the sign of the input), or NaN in the NaN row. No input is 0, so no 0·Inf.
	t.Run("special=nan_inf/n=5/c=17/oc=9", func(t *testing.T) {
		const N, C, OC = 5, 17, 9
		p := newPair(t, open)
		x, w, bs := matmulInputs(p.rng, N, C, OC)
		x[1*C+3] = nan
		w[2*C+1], w[4*C+5] = posInf, negInf
		inp, weight, bias := p.in("inp", x, N, C), p.in("weight", w, OC, C), p.in("bias", bs)
		out := p.out("out", N*OC, N, OC)
		p.run(func(b backend.Backend, s int) {
			b.MatmulForward(out.at(s), inp.at(s), weight.at(s), bias.at(s), N, C, OC)
		})
		p.check(out, tolMatmul)
	})
}

var matmulBackwardCases = []struct {
	N, C, OC       int
	dweight, dbias bool
}{
	{1, 1, 1, true, true},
	{3, 17, 33, true, true},
	{3, 17, 33, true, false},
	{3, 17, 33, false, true}, // frozen weight, trained bias
	{3, 17, 33, false, false},
	{17, 33, 3, true, true},
	{33, 17, 17, true, false},
	{4, 768, 2304, true, true},
	{4, 768, 2304, false, true},
	{4, 3072, 768, true, true},
	{2, 768, 50257, true, false},
	{64, 768, 768, true, true},
	{259, 257, 481, true, true},
}

func testMatmulBackward(t *testing.T, open func() backend.Backend) {
	for _, c := range matmulBackwardCases {
		N, C, OC := c.N, c.C, c.OC
		t.Run(fmt.Sprintf("n=%d/c=%d/oc=%d/dweight=%t/dbias=%t", N, C, OC, c.dweight, c.dbias), func(t *testing.T) {
			skipBig(t, OC*C)
			p := newPair(t, open)
			x, w, _ := matmulInputs(p.rng, N, C, OC)
			inp, weight := p.in("inp", x, N, C), p.in("weight", w, OC, C)
			// dout ~ N(0, C/OC), so that dinp = dout·weight is O(1) whatever OC.
			dout := p.in("dout", p.normal(N*OC, math.Sqrt(float64(C)/float64(OC))), N, OC)
			dinp := p.grad("dinp", N*C, N, C)
			var dweight, dbias *tensor
			if c.dweight {
				dweight = p.grad("dweight", OC*C, OC, C)
			}
			if c.dbias {
				dbias = p.grad("dbias", OC)
			}
			p.run(func(b backend.Backend, s int) {
				b.MatmulBackward(dinp.at(s), dweight.at(s), dbias.at(s), dout.at(s), inp.at(s), weight.at(s), N, C, OC)
			})
			p.check(dinp, tolMatmul)
			if dweight != nil {
				p.check(dweight, tolMatmul)
			}
			if dbias != nil {
				p.check(dbias, tolMatmul)
			}
		})
	}
}

var attentionShapes = []struct{ B, T, C, NH int }{
	{1, 1, 3, 1},
	{2, 17, 48, 3},
	{3, 5, 33, 3}, // HS=11
	{1, 33, 17, 1},
	{1, 64, 768, 12}, // GPT-2 124M's heads
}

// attentionProbs returns the causal softmax att(B,NH,T,T) of qkv(B,T,3C), computed in float64.
func attentionProbs(qkv []float32, B, T, C, NH int) []float32 {
	hs := C / NH
	scale := 1 / math.Sqrt(float64(hs))
	att := make([]float32, B*NH*T*T)
	row := make([]float64, T)
	for b := range B {
		for h := range NH {
			for t := range T {
				q := qkv[(b*T+t)*3*C+h*hs:][:hs]
				maxv := math.Inf(-1)
				for t2 := 0; t2 <= t; t2++ {
					k := qkv[(b*T+t2)*3*C+C+h*hs:][:hs]
					var dot float64
					for i := range hs {
						dot += float64(q[i]) * float64(k[i])
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
					att[((b*NH+h)*T+t)*T+t2] = float32(row[t2] / sum)
				}
			}
		}
	}
	return att
}

func testAttentionForward(t *testing.T, open func() backend.Backend) {
	for _, sh := range attentionShapes {
		B, T, C, NH := sh.B, sh.T, sh.C, sh.NH
		t.Run(fmt.Sprintf("b=%d/t=%d/c=%d/nh=%d", B, T, C, NH), func(t *testing.T) {
			p := newPair(t, open)
			qkv := p.in("qkv", p.normal(B*T*3*C, 1), B, T, 3*C)
			out, att := p.out("out", B*T*C, B, T, C), p.out("att", B*NH*T*T, B, NH, T, T)
			p.run(func(b backend.Backend, s int) { b.AttentionForward(out.at(s), att.at(s), qkv.at(s), B, T, C, NH) })
			p.check(out, tolAttention)
			p.check(att, tolAttention)
		})
	}
}

func testAttentionBackward(t *testing.T, open func() backend.Backend) {
	for _, sh := range attentionShapes {
		B, T, C, NH := sh.B, sh.T, sh.C, sh.NH
		t.Run(fmt.Sprintf("b=%d/t=%d/c=%d/nh=%d", B, T, C, NH), func(t *testing.T) {
			p := newPair(t, open)
			q := p.normal(B*T*3*C, 1)
			qkv := p.in("qkv", q, B, T, 3*C)
			att := p.in("att", attentionProbs(q, B, T, C, NH), B, NH, T, T)
			dout := p.in("dout", p.normal(B*T*C, 1), B, T, C)
			dqkv := p.grad("dqkv", B*T*3*C, B, T, 3*C)
			p.run(func(b backend.Backend, s int) {
				b.AttentionBackward(dqkv.at(s), dout.at(s), qkv.at(s), att.at(s), B, T, C, NH)
			})
			p.check(dqkv, tolAttentionBackward)
		})
	}
}

// bigCase is the number of elements above which a tensor makes a case big: the lm_head weight
// (768×50257, 38.6M elements, 154 MB per copy).
const bigCase = 1 << 24

// skipBig skips a case with a tensor of n > bigCase elements under -short and under the race
// detector, where it takes minutes and gigabytes; it runs the same code as the smaller GPT-2
// shapes, at ten times the size.
func skipBig(t *testing.T, n int) {
	t.Helper()
	if n > bigCase && (testing.Short() || raceEnabled) {
		t.Skipf("a tensor of %d elements: skipped under -short and -race", n)
	}
}

var elementwiseSizes = []int{1, 17, 3073, 50257}

// geluSpecials are GELU inputs whose outputs every backend must agree on: NaN gives NaN, +Inf gives
// +Inf, and large finite inputs (whose cube overflows float32) give x or 0, never NaN. -Inf is
// left out: 0.5·x·(1+tanh) is -Inf·0 there, NaN in the reference.
var geluSpecials = []float32{nan, posInf, 1e30, -1e30, 30, -30, 0, float32(math.Copysign(0, -1)), 1e-30}

func testGELUForward(t *testing.T, open func() backend.Backend) {
	run := func(t *testing.T, inputs func(p *pair) []float32) {
		p := newPair(t, open)
		x := inputs(p)
		n := len(x)
		inp, out := p.in("inp", x), p.out("out", n)
		p.run(func(b backend.Backend, s int) { b.GELUForward(out.at(s), inp.at(s), n) })
		p.check(out, tolGELU)
	}
	for _, n := range elementwiseSizes {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			run(t, func(p *pair) []float32 { return p.normal(n, 3) })
		})
	}
	t.Run("special=nan_inf", func(t *testing.T) {
		run(t, func(p *pair) []float32 { return append(p.normal(8, 3), geluSpecials...) })
	})
}

func testGELUBackward(t *testing.T, open func() backend.Backend) {
	run := func(t *testing.T, inputs func(p *pair) (x, d []float32)) {
		p := newPair(t, open)
		x, d := inputs(p)
		n := len(x)
		inp, dout, dinp := p.in("inp", x), p.in("dout", d), p.grad("dinp", n)
		p.run(func(b backend.Backend, s int) { b.GELUBackward(dinp.at(s), inp.at(s), dout.at(s), n) })
		p.check(dinp, tolGELUBackward)
	}
	for _, n := range elementwiseSizes {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			run(t, func(p *pair) ([]float32, []float32) { return p.normal(n, 3), p.normal(n, 1) })
		})
	}
	t.Run("special=nan_inf", func(t *testing.T) {
		run(t, func(p *pair) ([]float32, []float32) {
			x, d := p.normal(12, 3), p.normal(12, 1)
			x[0] = nan    // NaN input
			d[1] = nan    // NaN gradient
			x[2] = 0.5    // gelu'(0.5) > 0 ...
			d[2] = posInf // ... so +Inf
			x[3], x[4] = 30, -30
			return x, d
		})
	})
}

func testResidualForward(t *testing.T, open func() backend.Backend) {
	run := func(t *testing.T, alias string, inputs func(p *pair) (a, b []float32)) {
		p := newPair(t, open)
		a, b := inputs(p)
		n := len(a)
		x, y := p.in("a", a), p.in("b", b)
		out := map[string]*tensor{"a": x, "b": y}[alias]
		if out == nil {
			out = p.out("out", n)
		}
		p.run(func(bk backend.Backend, s int) { bk.ResidualForward(out.at(s), x.at(s), y.at(s), n) })
		p.check(out, exact)
	}
	for _, n := range elementwiseSizes {
		for _, alias := range []string{"none", "a", "b"} {
			t.Run(fmt.Sprintf("n=%d/alias=%s", n, alias), func(t *testing.T) {
				run(t, alias, func(p *pair) ([]float32, []float32) { return p.normal(n, 1), p.normal(n, 1) })
			})
		}
	}
	t.Run("special=nan_inf", func(t *testing.T) {
		run(t, "none", func(*pair) ([]float32, []float32) {
			return []float32{nan, posInf, negInf, posInf, 1, 1e38, -0.5},
				[]float32{1, 2, 3, negInf, nan, 1e38, 0.5} // NaN, Inf, -Inf, NaN, NaN, Inf (overflow), 0
		})
	})
}

func testResidualBackward(t *testing.T, open func() backend.Backend) {
	for _, n := range elementwiseSizes {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			p := newPair(t, open)
			da, db, dout := p.grad("da", n), p.grad("db", n), p.in("dout", p.normal(n, 1))
			p.run(func(b backend.Backend, s int) { b.ResidualBackward(da.at(s), db.at(s), dout.at(s), n) })
			p.check(da, exact)
			p.check(db, exact)
		})
	}
}

var crossEntropyShapes = []struct{ N, V int }{{2, 1}, {3, 17}, {5, 33}, {3, 50257}}

// crossEntropyTargets returns N targets in [0,V) that include 0 and V-1, with row 1 set to
// IgnoreIndex when N >= 3; and the number of rows not ignored.
func crossEntropyTargets(rng *rand.Rand, N, V int) ([]int32, int) {
	tg := randIDs(rng, N, V)
	if N >= 3 {
		tg[1] = backend.IgnoreIndex
		return tg, N - 1
	}
	return tg, N
}

func testCrossEntropyForward(t *testing.T, open func() backend.Backend) {
	run := func(t *testing.T, p *pair, x []float32, tg []int32, N, V int) {
		logits, targets := p.in("logits", x, N, V), p.ids("targets", tg)
		losses, probs := p.out("losses", N), p.out("probs", N*V, N, V)
		p.run(func(b backend.Backend, s int) {
			b.CrossEntropyForward(losses.at(s), probs.at(s), logits.at(s), targets.at(s), N, V)
		})
		p.check(losses, tolCrossEntropyLoss)
		p.check(probs, tolCrossEntropyProbs)
	}
	for _, sh := range crossEntropyShapes {
		t.Run(fmt.Sprintf("n=%d/v=%d", sh.N, sh.V), func(t *testing.T) {
			p := newPair(t, open)
			tg, _ := crossEntropyTargets(p.rng, sh.N, sh.V)
			run(t, p, p.normal(sh.N*sh.V, 3), tg, sh.N, sh.V)
		})
	}
	// -Inf logits are masked tokens: probability 0; a row with only its target unmasked has
	// loss 0 and probability 1.
	t.Run("special=neg_inf/n=4/v=33", func(t *testing.T) {
		const N, V = 4, 33
		p := newPair(t, open)
		x := p.normal(N*V, 3)
		tg := []int32{3, 0, 32, 7}
		for i := 10; i < 20; i++ {
			x[0*V+i], x[1*V+i] = negInf, negInf
		}
		for i := range V {
			if i != int(tg[3]) {
				x[3*V+i] = negInf
			}
		}
		run(t, p, x, tg, N, V)
	})
}

// softmaxRows returns the softmax of each row of logits(N,V), computed in float64.
func softmaxRows(logits []float32, N, V int) []float32 {
	probs := make([]float32, N*V)
	for n := range N {
		x := logits[n*V : (n+1)*V]
		maxv := math.Inf(-1)
		for _, v := range x {
			maxv = max(maxv, float64(v))
		}
		var sum float64
		for _, v := range x {
			sum += math.Exp(float64(v) - maxv)
		}
		for i, v := range x {
			probs[n*V+i] = float32(math.Exp(float64(v)-maxv) / sum)
		}
	}
	return probs
}

func testCrossEntropyBackward(t *testing.T, open func() backend.Backend) {
	for _, sh := range crossEntropyShapes {
		for _, alias := range []bool{false, true} {
			N, V := sh.N, sh.V
			t.Run(fmt.Sprintf("n=%d/v=%d/alias=%t", N, V, alias), func(t *testing.T) {
				p := newPair(t, open)
				tg, count := crossEntropyTargets(p.rng, N, V)
				scale := 1 / float32(count) // a mean over the rows not ignored
				probs, targets := p.in("probs", softmaxRows(p.normal(N*V, 3), N, V), N, V), p.ids("targets", tg)
				// dlogits is written, not added: it starts from poison, or is probs itself.
				dlogits := probs
				if !alias {
					dlogits = p.out("dlogits", N*V, N, V)
				}
				p.run(func(b backend.Backend, s int) {
					b.CrossEntropyBackward(dlogits.at(s), probs.at(s), targets.at(s), N, V, scale)
				})
				p.check(dlogits, tolCrossEntropyBackward)
			})
		}
	}
}

func testAdamW(t *testing.T, open func() backend.Backend) {
	const steps = 5
	for _, n := range []int{1, 17, 50257} {
		for _, wd := range []float32{0, 0.1} {
			for _, gs := range []float32{1, 0.37} {
				t.Run(fmt.Sprintf("n=%d/weight_decay=%g/grad_scale=%g/steps=%d", n, wd, gs, steps), func(t *testing.T) {
					p := newPair(t, open)
					params, m, v := p.grad("params", n), p.in("m", make([]float32, n)), p.in("v", make([]float32, n))
					grads := p.in("grads", make([]float32, n))
					var g []float32
					for step := 1; step <= steps; step++ {
						g = p.normal(n, 1)
						for i := 3; i < n; i += 4 {
							g[i] *= 1e-6 // sqrt(v) ~ 1e-6, where eps (1e-8) shows
						}
						hp := backend.AdamW{
							LearningRate: 1e-3 * (1 - 0.1*float32(step)), // a decaying schedule
							Beta1:        0.9, Beta2: 0.999, Eps: 1e-8,
							WeightDecay: wd, Step: step, GradScale: gs,
						}
						p.run(func(b backend.Backend, s int) {
							b.Upload(grads.at(s), g)
							b.AdamWUpdate(params.at(s), grads.at(s), m.at(s), v.at(s), n, hp)
						})
					}
					p.check(params, tolAdamW)
					p.check(m, tolAdamW)
					p.check(v, tolAdamW)
					p.expect(grads, g, bitExact) // AdamW reads the gradients only
				})
			}
		}
	}
}

func testSumSquares(t *testing.T, open func() backend.Backend) {
	for _, n := range []int{1, 17, 50257, 768 * 3072} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			p := newPair(t, open)
			// out starts at 2.5 and takes two tensors: SumSquares adds.
			out := p.in("out", []float32{2.5})
			x, y := p.in("x", p.normal(n, 1)), p.in("y", p.normal(n, 0.01))
			p.run(func(b backend.Backend, s int) {
				b.SumSquares(out.at(s), x.at(s), n)
				b.SumSquares(out.at(s), y.at(s), n)
			})
			p.check(out, tolSumSquares)
		})
	}
}
