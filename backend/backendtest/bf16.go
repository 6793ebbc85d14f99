package backendtest

import (
	"fmt"
	"testing"

	"github.com/modeld-dev/modeld/backend"
)

// testBF16Weights checks [backend.BF16Weights]: MatmulForwardBF16 on the backend under test
// against the reference's float32 MatmulForward on the same weights widened to float32. Widening
// is exact and the products are float32, so the float32 matmul tolerance applies unchanged. The
// shapes are matmul_forward's (decode N <= 8 and prefill N > 8, odd sizes, the lm_head), plus
// NaN and ±Inf in the input and the weight, and size errors that must be sticky.
func testBF16Weights(t *testing.T, open func() backend.Backend) {
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
				if !withBias {
					bs = nil
				}
				runBF16(p, x, w, bs, N, C, OC)
			})
		}
	}
	t.Run("special=nan_inf/n=5/c=17/oc=9", func(t *testing.T) {
		const N, C, OC = 5, 17, 9
		p := newPair(t, open)
		x, w, bs := matmulInputs(p.rng, N, C, OC)
		x[1*C+3] = nan
		w[2*C+1], w[4*C+5] = posInf, negInf
		runBF16(p, x, w, bs, N, C, OC)
	})
	t.Run("check=sticky_error", func(t *testing.T) {
		for _, bad := range []string{"weight_size", "weight_dtype"} {
			t.Run("bad="+bad, func(t *testing.T) {
				b := open()
				defer b.Close()
				bw := b.(backend.BF16Weights)
				const N, C, OC = 3, 17, 33
				alloc := func(n int) backend.Buffer {
					buf, err := b.Alloc(backend.F32, n)
					if err != nil {
						t.Fatal(err)
					}
					return buf
				}
				var weight backend.Buffer
				if bad == "weight_size" {
					var err error
					if weight, err = bw.AllocBF16(OC*C - 1); err != nil {
						t.Fatal(err)
					}
				} else {
					weight = alloc(OC * C) // F32, not BF16
				}
				bw.MatmulForwardBF16(alloc(N*OC), alloc(N*C), weight, nil, N, C, OC)
				err1 := b.Sync(t.Context())
				if err1 == nil {
					t.Fatalf("%s: Sync after MatmulForwardBF16 with a bad %s returned nil, want an error", b.Name(), bad)
				}
				x := alloc(3)
				b.GELUForward(x, x, 3)
				if err := b.Sync(t.Context()); err == nil {
					t.Errorf("%s: the error of MatmulForwardBF16 is not sticky (first: %v)", b.Name(), err1)
				}
			})
		}
	})
}

// runBF16 rounds w to bfloat16 and checks the backend under test's MatmulForwardBF16 against the
// reference's MatmulForward on the widened weights. bias may be nil. The BF16 weight is a view
// between sentinels, so that a kernel reading from the allocation's start is caught.
func runBF16(p *pair, x, w, bs []float32, N, C, OC int) {
	p.t.Helper()
	h := make([]uint16, len(w))
	wide := make([]float32, len(w))
	for i, v := range w {
		h[i] = backend.BF16FromF32(v)
		wide[i] = backend.F32FromBF16(h[i])
	}
	bw := p.b[dut].(backend.BF16Weights)
	full, err := bw.AllocBF16(lead + len(h) + tail)
	if err != nil {
		p.t.Fatalf("%s: AllocBF16(%d): %v", p.who(dut), lead+len(h)+tail, err)
	}
	defer p.b[dut].Free(full)
	junk := make([]uint16, max(lead, tail))
	for i := range junk {
		junk[i] = backend.BF16FromF32(float32(sentinel))
	}
	bw.UploadBF16(full.Slice(0, lead), junk[:lead])
	bw.UploadBF16(full.Slice(lead+len(h), tail), junk[:tail])
	weight16 := full.Slice(lead, len(h))
	bw.UploadBF16(weight16, h)
	if weight16.DType() != backend.BF16 || weight16.Len() != len(h) {
		p.t.Fatalf("%s: a BF16 view reports %v, %d elements; want bf16, %d", p.who(dut), weight16.DType(), weight16.Len(), len(h))
	}

	inp, weight := p.in("inp", x, N, C), p.in("weight (widened)", wide, OC, C)
	var bias *tensor
	if bs != nil {
		bias = p.in("bias", bs)
	}
	out := p.out("out", N*OC, N, OC)
	p.run(func(b backend.Backend, s int) {
		if s == ref {
			b.MatmulForward(out.at(s), inp.at(s), weight.at(s), bias.at(s), N, C, OC)
			return
		}
		bw.MatmulForwardBF16(out.at(s), inp.at(s), weight16, bias.at(s), N, C, OC)
	})
	p.check(out, tolMatmul)
}
