package backendtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/cpu"
)

// Finite-difference checks of the backward kernels, run on the reference (which validates the
// oracle itself) and on the backend under test. Each forward kernel defines a scalar loss
// L = sum(out * r) for a fixed random r (cross-entropy: the mean loss over the rows not ignored);
// the backward kernel, given dout = r, must give dL/dx for every element x of every input, which
// is compared with the central difference (L(x+h) - L(x-h)) / (2h).
//
// Numerics, in float32: the truncation error of the central difference is h²/6 times the third
// derivative of L, about 2e-5 for h = 1e-2 and the O(1) inputs used here. The rounding error is
// that of the outputs that depend on x (one row of the forward, at most a few dozen O(1) values,
// each a few ulps off, so |δL| ≲ 1e-5) divided by 2h: about 5e-4. Outputs that do not depend on x
// are computed bit for bit the same in L(x+h) and L(x-h) and cancel. h is applied as the float32
// steps x+h and x-h actually taken, and L is summed in float64. The tolerance
// |analytic - fd| <= 2e-3 + 1e-2·|fd| is four times the worst case above (the CPU backends use
// 3% of it) and still catches any wrong term of a gradient of order 1: a missing factor, a sign,
// a dropped row. h = 1e-3 would make the rounding term 10 times larger, h = 1e-1 the truncation
// term 100 times.
const (
	fdStep = 1e-2
	fdAtol = 2e-3
	fdRtol = 1e-2
)

// fdEnv runs finite-difference checks on one backend.
type fdEnv struct {
	t   *testing.T
	b   backend.Backend
	rng *rand.Rand
}

// fdParam is an input of the forward whose gradient is checked: buf holds val, grad the analytic
// gradient from the backward kernel.
type fdParam struct {
	name string
	buf  backend.Buffer
	val  []float32
	grad []float64
}

func testFiniteDifferences(t *testing.T, open func() backend.Backend) {
	cases := []struct {
		name string
		run  func(e *fdEnv)
	}{
		{"kernel=encoder/n=6/c=3/v=4/maxt=5", func(e *fdEnv) { fdEncoder(e, 6, 3, 4, 5) }},
		{"kernel=layernorm/n=2/c=17", func(e *fdEnv) { fdLayerNorm(e, 2, 17) }},
		{"kernel=matmul/n=3/c=5/oc=4", func(e *fdEnv) { fdMatmul(e, 3, 5, 4) }},
		{"kernel=attention/b=2/t=5/c=6/nh=2", func(e *fdEnv) { fdAttention(e, 2, 5, 6, 2) }},
		{"kernel=gelu/n=33", func(e *fdEnv) { fdGELU(e, 33) }},
		{"kernel=crossentropy/n=4/v=7", func(e *fdEnv) { fdCrossEntropy(e, 4, 7) }},
	}
	backends := []struct {
		name string
		open func() backend.Backend
	}{
		{"reference", func() backend.Backend { return cpu.NewReference() }},
		{"under_test", open},
	}
	for _, bk := range backends {
		for _, c := range cases {
			t.Run(fmt.Sprintf("backend=%s/%s", bk.name, c.name), func(t *testing.T) {
				b := bk.open()
				t.Cleanup(func() {
					if err := b.Close(); err != nil {
						t.Errorf("%s: Close: %v", b.Name(), err)
					}
				})
				c.run(&fdEnv{t: t, b: b, rng: newRand(c.name)})
			})
		}
	}
}

// upload allocates an F32 buffer holding x. x must not change until the next sync.
func (e *fdEnv) upload(x []float32) backend.Buffer {
	e.t.Helper()
	buf, err := e.b.Alloc(backend.F32, len(x))
	if err != nil {
		e.t.Fatalf("%s: Alloc: %v", e.b.Name(), err)
	}
	e.b.Upload(buf, x)
	return buf
}

// uploadIDs allocates an I32 buffer holding x.
func (e *fdEnv) uploadIDs(x []int32) backend.Buffer {
	e.t.Helper()
	buf, err := e.b.Alloc(backend.I32, len(x))
	if err != nil {
		e.t.Fatalf("%s: Alloc: %v", e.b.Name(), err)
	}
	e.b.UploadInt32(buf, x)
	return buf
}

// sync waits for the backend; an error is fatal.
func (e *fdEnv) sync() {
	e.t.Helper()
	if err := e.b.Sync(e.t.Context()); err != nil {
		e.t.Fatalf("%s: Sync: %v", e.b.Name(), err)
	}
}

// download returns the contents of buf after the enqueued work.
func (e *fdEnv) download(buf backend.Buffer) []float32 {
	e.t.Helper()
	x := make([]float32, buf.Len())
	e.b.Download(x, buf)
	e.sync()
	return x
}

// grad returns an F32 gradient buffer of n random elements and a function that returns what the
// backward added to them, in float64.
func (e *fdEnv) grad(n int) (backend.Buffer, func() []float64) {
	e.t.Helper()
	g0 := normal(e.rng, n, 1)
	buf := e.upload(g0)
	return buf, func() []float64 {
		e.t.Helper()
		g := e.download(buf)
		d := make([]float64, n)
		for i := range g {
			d[i] = float64(g[i]) - float64(g0[i])
		}
		return d
	}
}

// dot is sum(x*r) in float64.
func dot(x, r []float32) float64 {
	var s float64
	for i := range x {
		s += float64(x[i]) * float64(r[i])
	}
	return s
}

// check compares each param's analytic gradient with central differences of loss, which must run
// the forward on the current contents of the params' buffers and return L.
func (e *fdEnv) check(loss func() float64, params ...fdParam) {
	e.t.Helper()
	for _, p := range params {
		var bad []string
		nbad, worst := 0, 0.0
		for i, x := range p.val {
			up, down := float32(float64(x)+fdStep), float32(float64(x)-fdStep)
			p.val[i] = up
			e.b.Upload(p.buf, p.val)
			lp := loss() // syncs, so p.val may change again
			p.val[i] = down
			e.b.Upload(p.buf, p.val)
			lm := loss()
			p.val[i] = x
			fd := (lp - lm) / (float64(up) - float64(down))
			an := p.grad[i]
			tl := fdAtol + fdRtol*math.Abs(fd)
			worst = max(worst, math.Abs(an-fd)/tl)
			if !(math.Abs(an-fd) <= tl) {
				nbad++
				if len(bad) < 5 {
					bad = append(bad, fmt.Sprintf("[%d]: analytic %.6g, finite difference %.6g", i, an, fd))
				}
			}
		}
		e.b.Upload(p.buf, p.val)
		e.sync()
		if nbad > 0 {
			e.t.Errorf("%s: d/d%s: %d of %d elements differ from central differences (h=%g, atol %g, rtol %g):\n\t%s",
				e.b.Name(), p.name, nbad, len(p.val), fdStep, fdAtol, fdRtol, strings.Join(bad, "\n\t"))
		}
		e.t.Logf("d/d%s: worst |analytic-fd| is %.2f of the tolerance", p.name, worst)
	}
}

func fdEncoder(e *fdEnv, N, C, V, maxT int) {
	wte, wpe := normal(e.rng, V*C, 1), normal(e.rng, maxT*C, 1)
	tok, pos := randIDs(e.rng, N, V), randIDs(e.rng, N, maxT)
	r := normal(e.rng, N*C, 1)
	bWte, bWpe, bTok, bPos := e.upload(wte), e.upload(wpe), e.uploadIDs(tok), e.uploadIDs(pos)
	out, dout := e.upload(make([]float32, N*C)), e.upload(r)
	dwte, gotWte := e.grad(V * C)
	dwpe, gotWpe := e.grad(maxT * C)
	e.b.EncoderBackward(dwte, dwpe, dout, bTok, bPos, N, C)
	loss := func() float64 {
		e.b.EncoderForward(out, bTok, bPos, bWte, bWpe, N, C)
		return dot(e.download(out), r)
	}
	e.check(loss, fdParam{"wte", bWte, wte, gotWte()}, fdParam{"wpe", bWpe, wpe, gotWpe()})
}

func fdLayerNorm(e *fdEnv, N, C int) {
	x, w, bs := layerNormInputs(e.rng, N, C, false) // h must be small against the spread
	r := normal(e.rng, N*C, 1)
	inp, weight, bias := e.upload(x), e.upload(w), e.upload(bs)
	out, mean, rstd := e.upload(make([]float32, N*C)), e.upload(make([]float32, N)), e.upload(make([]float32, N))
	dout := e.upload(r)
	dinp, gotInp := e.grad(N * C)
	dweight, gotWeight := e.grad(C)
	dbias, gotBias := e.grad(C)
	e.b.LayerNormForward(out, mean, rstd, inp, weight, bias, N, C)
	e.b.LayerNormBackward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C)
	loss := func() float64 {
		e.b.LayerNormForward(out, mean, rstd, inp, weight, bias, N, C)
		return dot(e.download(out), r)
	}
	e.check(loss, fdParam{"inp", inp, x, gotInp()}, fdParam{"weight", weight, w, gotWeight()},
		fdParam{"bias", bias, bs, gotBias()})
}

func fdMatmul(e *fdEnv, N, C, OC int) {
	x, w, bs := matmulInputs(e.rng, N, C, OC)
	r := normal(e.rng, N*OC, 1)
	inp, weight, bias, out, dout := e.upload(x), e.upload(w), e.upload(bs), e.upload(make([]float32, N*OC)), e.upload(r)
	dinp, gotInp := e.grad(N * C)
	dweight, gotWeight := e.grad(OC * C)
	dbias, gotBias := e.grad(OC)
	e.b.MatmulBackward(dinp, dweight, dbias, dout, inp, weight, N, C, OC)
	loss := func() float64 {
		e.b.MatmulForward(out, inp, weight, bias, N, C, OC)
		return dot(e.download(out), r)
	}
	e.check(loss, fdParam{"inp", inp, x, gotInp()}, fdParam{"weight", weight, w, gotWeight()},
		fdParam{"bias", bias, bs, gotBias()})
}

func fdAttention(e *fdEnv, B, T, C, NH int) {
	q := normal(e.rng, B*T*3*C, 1)
	r := normal(e.rng, B*T*C, 1)
	qkv, out, att, dout := e.upload(q), e.upload(make([]float32, B*T*C)), e.upload(make([]float32, B*NH*T*T)), e.upload(r)
	dqkv, gotQKV := e.grad(B * T * 3 * C)
	e.b.AttentionForward(out, att, qkv, B, T, C, NH)
	e.b.AttentionBackward(dqkv, dout, qkv, att, B, T, C, NH)
	loss := func() float64 {
		e.b.AttentionForward(out, att, qkv, B, T, C, NH)
		return dot(e.download(out), r)
	}
	e.check(loss, fdParam{"qkv", qkv, q, gotQKV()})
}

func fdGELU(e *fdEnv, n int) {
	// Inputs spread over [-4, 4], where GELU bends.
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(-4 + 8*(float64(i)+e.rng.Float64())/float64(n))
	}
	r := normal(e.rng, n, 1)
	inp, out, dout := e.upload(x), e.upload(make([]float32, n)), e.upload(r)
	dinp, gotInp := e.grad(n)
	e.b.GELUBackward(dinp, inp, dout, n)
	loss := func() float64 {
		e.b.GELUForward(out, inp, n)
		return dot(e.download(out), r)
	}
	e.check(loss, fdParam{"inp", inp, x, gotInp()})
}

// fdCrossEntropy checks the gradient of the mean loss over the rows not ignored: L = sum(losses) /
// count, and dlogits from CrossEntropyBackward with scale 1/count. dlogits is written, not added,
// so its gradient buffer starts as poison, not as random values.
func fdCrossEntropy(e *fdEnv, N, V int) {
	x := normal(e.rng, N*V, 2)
	tg, count := crossEntropyTargets(e.rng, N, V)
	logits, targets := e.upload(x), e.uploadIDs(tg)
	losses, probs := e.upload(make([]float32, N)), e.upload(make([]float32, N*V))
	p := make([]float32, N*V)
	fill(p, poison)
	dlogits := e.upload(p)
	e.b.CrossEntropyForward(losses, probs, logits, targets, N, V)
	e.b.CrossEntropyBackward(dlogits, probs, targets, N, V, 1/float32(count))
	d := e.download(dlogits)
	an := make([]float64, len(d))
	for i, v := range d {
		an[i] = float64(v)
	}
	loss := func() float64 {
		e.b.CrossEntropyForward(losses, probs, logits, targets, N, V)
		var sum float64
		for _, l := range e.download(losses) {
			sum += float64(l)
		}
		return sum / float64(count)
	}
	e.check(loss, fdParam{"logits", logits, x, an})
}
